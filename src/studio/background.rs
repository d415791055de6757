//! A background thread the UI talks to through two channels: the UI sends jobs and, each
//! frame, takes the outcomes that arrived; every outcome wakes the UI for a repaint. The
//! model worker, the LLM worker and the gallery's indexing each run on one.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use eframe::egui;

pub struct Background<Job, Outcome> {
    jobs: Sender<Job>,
    outcomes: Receiver<Outcome>,
    /// Kept so the thread is owned here; a thread waiting for jobs ends when `jobs` is dropped.
    _thread: JoinHandle<()>,
}

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
    /// Starts thread `name` running `body` with the job queue and the reporter; `ctx` is
    /// the UI woken for every outcome.
    pub fn start(
        name: &str,
        ctx: egui::Context,
        body: impl FnOnce(Receiver<Job>, Reporter<Outcome>) + Send + 'static,
    ) -> Self {
        let (jobs, job_rx) = mpsc::channel();
        let (outcome_tx, outcomes) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(job_rx, Reporter { outcomes: outcome_tx, ctx }))
            .unwrap_or_else(|e| panic!("cannot spawn the studio's {name} thread: {e}"));
        Self { jobs, outcomes, _thread: thread }
    }

    /// Queues a job. A thread that has finished its work (the gallery's) drops it.
    pub fn send(&self, job: Job) {
        let _ = self.jobs.send(job);
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
