//! Helpers for tests that drive the studio through egui_kittest.

use egui_kittest::Harness;
use spae::studio::StudioApp;

/// Steps until the worker's results are on screen (bounded at five minutes: a decode on
/// lavapipe takes a few seconds, many more on a loaded machine).
pub fn wait_for_worker(harness: &mut Harness<'_, StudioApp>) {
    // One frame first: a command queued by the last input is handled in the next frame.
    harness.step();
    wait_until(harness, "the studio's worker", |app| !app.is_busy());
}

/// Steps until `done` holds for the app (bounded at fifteen minutes: the first caption encodes
/// the pool's words), then two more frames;
/// `what` names the wait in the failure message.
pub fn wait_until(harness: &mut Harness<'_, StudioApp>, what: &str, done: impl Fn(&StudioApp) -> bool) {
    let start = std::time::Instant::now();
    while !done(harness.state()) {
        // A guard against a hung worker, not a speed check: lavapipe on a slow or busy
        // machine has taken over 5 minutes for the gallery's 24 images.
        assert!(start.elapsed() < std::time::Duration::from_secs(900), "timed out waiting for {what}");
        harness.step();
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    harness.run_steps(2);
}
