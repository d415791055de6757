//! Choosing files sits behind [`FileDialog`]: the studio uses the native dialog (rfd), tests
//! hand it the files they chose, and both go through the same commands.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Image file extensions the open dialog offers (what `image_io::load` reads).
const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"];

pub trait FileDialog {
    /// An image to open, or `None` when the user cancelled.
    fn pick_image(&mut self) -> Option<PathBuf>;
    /// Any file with one of `extensions` (without the dot).
    fn pick_file(&mut self, title: &str, extensions: &[&str]) -> Option<PathBuf>;
    /// A folder (to read from or write into).
    fn pick_folder(&mut self, title: &str) -> Option<PathBuf>;
    /// Where to save a file of the given kind (`extension` without the dot).
    fn save_file(&mut self, title: &str, file_name: &str, extension: &str) -> Option<PathBuf>;
}

/// The platform's own dialog (XDG portal on Linux), blocking while it is open.
#[derive(Default)]
pub struct NativeDialog {
    /// The folder the last pick was in, where the next dialog starts.
    folder: Option<PathBuf>,
}

impl NativeDialog {
    fn dialog(&self) -> rfd::FileDialog {
        let dialog = rfd::FileDialog::new();
        match &self.folder {
            Some(folder) => dialog.set_directory(folder),
            None => dialog,
        }
    }

    fn remember(&mut self, picked: Option<PathBuf>) -> Option<PathBuf> {
        if let Some(folder) = picked.as_ref().and_then(|p| p.parent()) {
            self.folder = Some(folder.to_path_buf());
        }
        picked
    }
}

impl FileDialog for NativeDialog {
    fn pick_image(&mut self) -> Option<PathBuf> {
        let picked = self.dialog().set_title("Open an image").add_filter("images", IMAGE_EXTENSIONS).pick_file();
        self.remember(picked)
    }

    fn pick_file(&mut self, title: &str, extensions: &[&str]) -> Option<PathBuf> {
        let picked = self.dialog().set_title(title).add_filter("files", extensions).pick_file();
        self.remember(picked)
    }

    fn pick_folder(&mut self, title: &str) -> Option<PathBuf> {
        let picked = self.dialog().set_title(title).pick_folder();
        // The next dialog starts in the folder itself, not its parent.
        if let Some(folder) = &picked {
            self.folder = Some(folder.clone());
        }
        picked
    }

    fn save_file(&mut self, title: &str, file_name: &str, extension: &str) -> Option<PathBuf> {
        let picked =
            self.dialog().set_title(title).set_file_name(file_name).add_filter(extension, &[extension]).save_file();
        self.remember(picked)
    }
}

/// Answers dialogs with paths queued by a test; an empty queue is a cancelled dialog.
/// Clones share the queue, so a test keeps one clone and gives the other to the studio.
#[derive(Clone, Default)]
pub struct ScriptedDialog {
    answers: Arc<Mutex<VecDeque<PathBuf>>>,
}

impl ScriptedDialog {
    /// The answer to the next dialog, whichever kind it is.
    pub fn answer_next(&self, path: impl Into<PathBuf>) {
        self.answers.lock().expect("dialog queue").push_back(path.into());
    }

    fn next(&mut self) -> Option<PathBuf> {
        self.answers.lock().expect("dialog queue").pop_front()
    }
}

impl FileDialog for ScriptedDialog {
    fn pick_image(&mut self) -> Option<PathBuf> {
        self.next()
    }

    fn pick_file(&mut self, _title: &str, _extensions: &[&str]) -> Option<PathBuf> {
        self.next()
    }

    fn pick_folder(&mut self, _title: &str) -> Option<PathBuf> {
        self.next()
    }

    fn save_file(&mut self, _title: &str, _file_name: &str, _extension: &str) -> Option<PathBuf> {
        self.next()
    }
}
