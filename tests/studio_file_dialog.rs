//! The studio's file dialog without a desktop portal: the native dialog's failure is
//! noticed and said once, and the in-app browser opens, saves and cancels.

mod common;

use std::path::PathBuf;

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use spae::studio::file_dialog::{Answer, FileDialog, Request, SystemDialog};

struct Probe {
    dialog: SystemDialog,
    answers: Vec<Answer>,
    notices: Vec<String>,
}

fn harness(dialog: SystemDialog) -> Harness<'static, Probe> {
    Harness::builder().with_size([900.0, 700.0]).build_ui_state(
        |ui, probe: &mut Probe| {
            ui.label("probe");
            if let Some(answer) = probe.dialog.poll(ui.ctx()) {
                probe.answers.push(answer);
            }
            probe.notices.extend(probe.dialog.take_notice());
        },
        Probe { dialog, answers: Vec::new(), notices: Vec::new() },
    )
}

fn samples() -> PathBuf {
    common::sample("cat-face.png").parent().unwrap().to_path_buf()
}

#[test]
fn the_in_app_browser_lists_images_and_opens_the_chosen_one() {
    let mut harness = harness(SystemDialog::in_app_only().starting_in(samples()));
    assert!(harness.state_mut().dialog.open(Request::Image { title: "Open an image".into() }));
    assert!(!harness.state_mut().dialog.open(Request::Folder { title: "another".into() }), "one dialog at a time");
    harness.run_steps(3);
    harness.get_by_label("Open an image");
    assert!(harness.query_by_label_contains("LICENSE.md").is_none(), "only images are listed");
    harness.get_by_label("red-apple.png").click();
    harness.run_steps(2);
    harness.get_by_label("Open").click();
    harness.run_steps(2);
    assert_eq!(harness.state().answers, vec![Answer::Chosen(common::sample("red-apple.png"))]);
    assert!(!harness.state().dialog.is_open());
    assert!(harness.query_by_label("Open an image").is_none(), "the browser closed");
}

#[test]
fn the_in_app_browser_saves_with_the_extension_and_cancels() {
    let dir = common::fresh_dir("in-app-save");
    let mut harness = harness(SystemDialog::in_app_only());
    let request = Request::Save {
        title: "Export the reconstruction".into(),
        file_name: "photo-6-layers".into(),
        extension: "png".into(),
        folder: Some(dir.clone()),
    };
    assert!(harness.state_mut().dialog.open(request));
    harness.run_steps(3);
    harness.get_by_label("Save").click();
    harness.run_steps(2);
    assert_eq!(harness.state().answers, vec![Answer::Chosen(dir.join("photo-6-layers.png"))]);

    assert!(harness.state_mut().dialog.open(Request::Folder { title: "Export every frame into a folder".into() }));
    harness.run_steps(3);
    harness.get_by_label("Cancel").click();
    harness.run_steps(2);
    assert_eq!(harness.state().answers[1], Answer::Cancelled);
    assert!(!harness.state().dialog.is_open());
}

#[test]
fn without_a_desktop_portal_the_native_dialog_falls_back_once() {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
        // A session bus may run a portal, whose real dialog would wait for a person.
        eprintln!("skipped: a D-Bus session is running here");
        return;
    }
    let mut harness = harness(SystemDialog::default().starting_in(samples()));
    assert!(harness.state_mut().dialog.open(Request::Image { title: "Open an image".into() }));
    let start = std::time::Instant::now();
    while harness.state().notices.is_empty() && harness.state().answers.is_empty() {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "the native dialog never answered");
        harness.step();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(harness.state().answers, Vec::<Answer>::new(), "no portal is not a cancelled dialog");
    assert_eq!(harness.state().notices.len(), 1);
    assert!(harness.state().notices[0].contains("could not be shown"), "{}", harness.state().notices[0]);
    harness.run_steps(3);
    assert!(harness.state().dialog.is_open(), "the in-app browser took over");
    harness.get_by_label("Cancel").click();
    harness.run_steps(2);
    assert_eq!(harness.state().answers, vec![Answer::Cancelled]);

    // The next dialog goes straight to the browser, without a second notice.
    assert!(harness.state_mut().dialog.open(Request::Image { title: "Open an image".into() }));
    harness.run_steps(3);
    harness.get_by_label("Open an image");
    assert_eq!(harness.state().notices.len(), 1);
}
