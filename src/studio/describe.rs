//! Captions and answers about the open image: the frozen LLM writes them after examples
//! from the pool whose words are nearest the image's ([`crate::tasks::captioning`]), on the LLM
//! worker, cancellable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::llm_worker::{DescribeJob, DescribedAnswer, Job};
use super::StudioApp;
use crate::tasks::captioning;

/// What the Describe panel asks, as the user sets it.
pub struct DescribeForm {
    /// The question for Ask (a caption needs none).
    pub question: String,
    /// Layers of each image in a caption's prompt.
    pub caption_layers: usize,
    /// Layers of each image in a question's prompt.
    pub ask_layers: usize,
    pub examples: usize,
}

impl Default for DescribeForm {
    fn default() -> Self {
        Self {
            question: "What is it?".into(),
            caption_layers: captioning::CAPTION_LAYERS,
            ask_layers: captioning::QUESTION_LAYERS,
            examples: 8,
        }
    }
}

pub enum DescribeState {
    Running,
    Done(DescribedAnswer),
    Failed(String),
}

/// The latest caption or answer, running or done.
pub struct Description {
    pub run: u64,
    /// None: a caption.
    pub question: Option<String>,
    pub state: DescribeState,
    cancel: Arc<AtomicBool>,
}

impl Description {
    pub fn is_running(&self) -> bool {
        matches!(self.state, DescribeState::Running)
    }
}

impl StudioApp {
    /// Captions the open image (`ask` false) or asks the form's question about it.
    pub(super) fn run_describe(&mut self, ask: bool) {
        let Some(document) = &self.document else {
            self.notify_error("open an image first: the LLM describes the open image".into());
            return;
        };
        if let Some(running) = self.description.as_ref().filter(|d| d.is_running()) {
            running.cancel.store(true, Ordering::Relaxed);
        }
        let question = ask.then(|| self.describe_form.question.trim().to_string());
        let run = self.next_run;
        self.next_run += 1;
        let cancel = Arc::new(AtomicBool::new(false));
        self.llm.send(Job::Describe(DescribeJob {
            run,
            image: document.original.clone(),
            layers: if ask { self.describe_form.ask_layers } else { self.describe_form.caption_layers },
            examples: self.describe_form.examples,
            question: question.clone(),
            cancel: cancel.clone(),
        }));
        self.description = Some(Description { run, question, state: DescribeState::Running, cancel });
    }

    pub(super) fn cancel_describe(&mut self) {
        if let Some(description) = &self.description {
            description.cancel.store(true, Ordering::Relaxed);
        }
    }

    pub(super) fn receive_description(&mut self, run: u64, result: Result<DescribedAnswer, String>) {
        let Some(description) = self.description.as_mut().filter(|d| d.run == run) else { return };
        description.state = match result {
            Ok(answer) => DescribeState::Done(answer),
            Err(message) => DescribeState::Failed(message),
        };
    }

    pub fn description(&self) -> Option<&Description> {
        self.description.as_ref()
    }

    pub fn describe_form_mut(&mut self) -> &mut DescribeForm {
        &mut self.describe_form
    }
}
