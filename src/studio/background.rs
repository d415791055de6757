//! A background thread the UI talks to through two channels: the UI sends jobs and, each
//! frame, takes the outcomes that arrived; every outcome wakes the UI for a repaint. The
//! model worker, the LLM worker and the gallery's indexing each run on one.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use eframe::egui;

pub struct Background<Job, Outcome> {
    name: &'static str,
    /// Taken when the studio closes: a thread waiting for jobs then ends.
    jobs: Option<Sender<Job>>,
    outcomes: Receiver<Outcome>,
    /// Disconnected when the thread's body has returned (or panicked).
    finished: Receiver<()>,
    /// Kept so the thread is owned here.
    _thread: JoinHandle<()>,
}

/// How long closing the studio waits for a thread to finish the job it is on.
const CLOSING_WAIT: Duration = Duration::from_secs(5);

/// The thread's side of the outcome channel.
pub struct Reporter<Outcome> {
    outcomes: Sender<Outcome>,
    ctx: egui::Context,
}

impl<Outcome> Reporter<Outcome> {
    /// Sends an outcome and wakes the UI; false once the studio is gone (the thread
    /// should then stop).
    pub fn send(&self, outcome: Outcome) -> bool {
        let sent = self.outcomes.send(outcome).is_ok();
        self.ctx.request_repaint();
        sent
    }
}

impl<Job: Send + 'static, Outcome: Send + 'static> Background<Job, Outcome> {
    /// Starts thread `spae-studio-{name}` running `body` with the job queue and the reporter; `ctx` is
    /// the UI woken for every outcome.
    pub fn start(
        name: &'static str,
        ctx: egui::Context,
        body: impl FnOnce(Receiver<Job>, Reporter<Outcome>) + Send + 'static,
    ) -> Self {
        let (jobs, job_rx) = mpsc::channel();
        let (outcome_tx, outcomes) = mpsc::channel();
        let (running, finished) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("spae-studio-{name}"))
            .spawn(move || {
                let _running = running;
                body(job_rx, Reporter { outcomes: outcome_tx, ctx })
            })
            .unwrap_or_else(|e| panic!("cannot spawn the studio's {name} thread: {e}"));
        Self { name, jobs: Some(jobs), outcomes, finished, _thread: thread }
    }

    /// Queues a job. A thread that takes jobs only stops when this is dropped, or when it
    /// panicked: then this panics too, with its name, rather than leave the UI waiting.
    pub fn send(&self, job: Job) {
        if self.jobs.as_ref().is_none_or(|jobs| jobs.send(job).is_err()) {
            panic!("the studio's {} thread stopped", self.name);
        }
    }

    /// Every outcome that arrived since the last poll.
    pub fn poll(&self) -> Vec<Outcome> {
        self.outcomes.try_iter().collect()
    }

    /// The next outcome, waiting at most `timeout` for it.
    #[cfg(test)]
    pub fn wait(&self, timeout: std::time::Duration) -> Option<Outcome> {
        self.outcomes.recv_timeout(timeout).ok()
    }
}

impl<Job, Outcome> Drop for Background<Job, Outcome> {
    /// Ends the thread's job queue and waits a little for the job it is on: a thread left
    /// running on the GPU driver while the process exits can crash the exit.
    fn drop(&mut self) {
        self.jobs = None;
        let _ = self.finished.recv_timeout(CLOSING_WAIT);
    }
}
