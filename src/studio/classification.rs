//! Few-shot classification in the studio: labelled support images, a query image (the
//! open image unless another is chosen), and the LLM's reading of them on the LLM thread.

use std::path::{Path, PathBuf};

use super::commands::{Choosing, SupportSource};
use super::file_dialog::Request;
use super::llm_worker::{self, Classified, ClassifyJob, ImageSource};
use super::StudioApp;
use crate::data::class_name;
use crate::tasks::fewshot;

/// A support image and its class label, as the user typed it.
pub struct SupportImage {
    pub path: PathBuf,
    pub label: String,
}

/// The Classify panel's state.
pub struct Classification {
    pub support: Vec<SupportImage>,
    /// The query image file; `None`: the open image.
    pub query: Option<PathBuf>,
    /// Layers of each image's pyramid written into the prompt.
    pub layers: usize,
    /// The run being waited for.
    running: Option<u64>,
    /// The latest answer, or why there is none.
    pub result: Option<Result<Classified, String>>,
}

impl Default for Classification {
    fn default() -> Self {
        Self { support: Vec::new(), query: None, layers: 2, running: None, result: None }
    }
}

impl Classification {
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Class names in first-seen order, and each support image's class.
    fn classes(&self) -> (Vec<String>, Vec<(PathBuf, usize)>) {
        let mut classes: Vec<String> = Vec::new();
        let support = self
            .support
            .iter()
            .map(|image| {
                let label = image.label.trim();
                let class = classes.iter().position(|c| c == label).unwrap_or_else(|| {
                    classes.push(label.to_string());
                    classes.len() - 1
                });
                (image.path.clone(), class)
            })
            .collect();
        (classes, support)
    }
}

/// A label guessed from a file name: "red-apple.png" is "red apple".
fn label_of(path: &Path) -> String {
    class_name(&path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
}

impl StudioApp {
    pub(super) fn add_support_image(&mut self) {
        self.ask(Request::Image { title: "Add a support image".into() }, Choosing::SupportImage);
    }

    /// Adds a support image, labelled from its file name.
    pub(super) fn add_support_path(&mut self, path: PathBuf) {
        let label = label_of(&path);
        self.classification.support.push(SupportImage { path, label });
    }

    /// Asks for a folder of class folders or a `label<TAB>path` list to replace the
    /// support set with.
    pub(super) fn load_support(&mut self, source: SupportSource) {
        let request = match source {
            SupportSource::Folder => Request::Folder { title: "Load a support folder (one folder per class)".into() },
            SupportSource::List => Request::File {
                title: "Load a support list (label<TAB>image path lines)".into(),
                extensions: vec!["txt".into(), "tsv".into()],
            },
        };
        self.ask(request, Choosing::Support(source));
    }

    /// Replaces the support set by the one read from `path`.
    pub(super) fn load_support_from(&mut self, path: &Path) {
        match fewshot::read_support(path) {
            Ok((classes, images)) => {
                self.classification.support = images
                    .into_iter()
                    .map(|(path, class)| SupportImage { path, label: classes[class].clone() })
                    .collect();
            }
            Err(e) => self.notify_error(format!("{e:#}")),
        }
    }

    pub(super) fn run_classification(&mut self) {
        if self.classification.is_running() {
            return;
        }
        if let Some(image) = self.classification.support.iter().find(|image| image.label.trim().is_empty()) {
            let message = format!("the support image {} has no label", image.path.display());
            self.classification.result = Some(Err(message));
            return;
        }
        let query = match (&self.classification.query, &self.document) {
            (Some(path), _) => ImageSource::File(path.clone()),
            (None, Some(document)) => ImageSource::Prepared(document.original.clone()),
            (None, None) => {
                self.classification.result = Some(Err("no query image: open an image or choose one".into()));
                return;
            }
        };
        let (classes, support) = self.classification.classes();
        let run = self.next_run;
        self.next_run += 1;
        self.classification.running = Some(run);
        self.llm.send(llm_worker::Job::Classify(ClassifyJob {
            run,
            classes,
            support,
            query,
            layers: self.classification.layers,
        }));
    }

    pub(super) fn receive_classification(&mut self, run: u64, result: Result<Classified, String>) {
        if self.classification.running == Some(run) {
            self.classification.running = None;
            self.classification.result = Some(result);
        }
    }
}
