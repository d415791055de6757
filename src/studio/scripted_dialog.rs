//! A [`FileDialog`] for tests (the `testing` feature): it answers with the paths a test
//! queued, and keeps the requests it was asked.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use eframe::egui;

use super::file_dialog::{Answer, FileDialog, Request};

/// Answers dialogs with paths queued by a test; an empty queue is a cancelled dialog.
/// Clones share the queue and the log of requests, so a test keeps one clone and gives
/// the other to the studio.
#[derive(Clone, Default)]
pub struct ScriptedDialog {
    answers: Arc<Mutex<VecDeque<PathBuf>>>,
    requests: Arc<Mutex<Vec<Request>>>,
    open: bool,
}

impl ScriptedDialog {
    /// The answer to the next dialog, whichever kind it is.
    pub fn answer_next(&self, path: impl Into<PathBuf>) {
        self.answers.lock().expect("dialog queue").push_back(path.into());
    }

    /// Every request made so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("dialog log").clone()
    }
}

impl FileDialog for ScriptedDialog {
    fn open(&mut self, request: Request) -> bool {
        if self.open {
            return false;
        }
        self.requests.lock().expect("dialog log").push(request);
        self.open = true;
        true
    }

    fn poll(&mut self, _ctx: &egui::Context) -> Option<Answer> {
        if !std::mem::take(&mut self.open) {
            return None;
        }
        Some(match self.answers.lock().expect("dialog queue").pop_front() {
            Some(path) => Answer::Chosen(path),
            None => Answer::Cancelled,
        })
    }

    fn is_open(&self) -> bool {
        self.open
    }
}
