//! Choosing files sits behind [`FileDialog`]: the studio asks for a file with a
//! [`Request`] and polls for the answer every frame, so it keeps painting while a dialog
//! is open. [`SystemDialog`] shows the platform's dialog (rfd, run on its own thread and
//! awaited through a poll-promise) and, where that cannot be shown (no desktop portal
//! answers, as on a bare X server), says so once and uses the studio's own file browser
//! ([`FileBrowser`]) from then on. Tests hand `scripted_dialog::ScriptedDialog` the files they chose (the `testing` feature). All of
//! them go through the same commands.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui;
use poll_promise::Promise;

use super::ui::file_browser::FileBrowser;

/// Image file extensions the open dialog offers (what `image_io::load` reads).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"];

/// A native dialog that answers "cancelled" sooner than this was never shown: nobody
/// cancels a dialog that fast, but rfd answers at once when no portal is there.
const FASTEST_HUMAN_ANSWER: Duration = Duration::from_millis(1000);

/// What the studio asks the user for.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// An image to open.
    Image { title: String },
    /// An existing file with one of `extensions` (without the dot).
    File { title: String, extensions: Vec<String> },
    /// A folder, to read from or to write into.
    Folder { title: String },
    /// Where to save a file: the proposed name, its extension (without the dot), and the
    /// folder the dialog starts in (the last folder used where `None`).
    Save { title: String, file_name: String, extension: String, folder: Option<PathBuf> },
}

impl Request {
    pub fn title(&self) -> &str {
        match self {
            Self::Image { title } | Self::File { title, .. } | Self::Folder { title } | Self::Save { title, .. } => {
                title
            }
        }
    }
}

/// The answer to an open dialog, once it has one.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Chosen(PathBuf),
    Cancelled,
}

pub trait FileDialog {
    /// Starts a dialog. Returns false, and starts nothing, while another one is open.
    fn open(&mut self, request: Request) -> bool;
    /// Shows the open dialog for this frame (an in-app one draws itself) and returns its
    /// answer once there is one; `None` while it is still open or when none is.
    fn poll(&mut self, ctx: &egui::Context) -> Option<Answer>;
    /// Whether a dialog is open.
    fn is_open(&self) -> bool;
    /// A message for the status bar, given once (the native dialog could not be shown).
    fn take_notice(&mut self) -> Option<String> {
        None
    }
}

/// The platform's dialog where it works, else the in-app browser; both start in the
/// folder of the last file chosen.
#[derive(Default)]
pub struct SystemDialog {
    folder: Option<PathBuf>,
    /// The native dialog answered too fast to have been shown: use the in-app one.
    native_unavailable: bool,
    open: Option<Open>,
    notice: Option<String>,
}

enum Open {
    Native { request: Request, started: Instant, promise: Promise<Option<PathBuf>> },
    InApp { request: Request, browser: Box<FileBrowser> },
}

impl SystemDialog {
    /// Starts with the in-app browser, as where no native dialog can be shown.
    pub fn in_app_only() -> Self {
        Self { native_unavailable: true, ..Self::default() }
    }

    /// Dialogs start in `folder` until a file is chosen elsewhere.
    pub fn starting_in(self, folder: impl Into<PathBuf>) -> Self {
        Self { folder: Some(folder.into()), ..self }
    }

    fn start_folder(&self, request: &Request) -> Option<PathBuf> {
        match request {
            Request::Save { folder: Some(folder), .. } => Some(folder.clone()),
            _ => self.folder.clone(),
        }
    }

    fn native(&self, request: Request) -> Open {
        let mut dialog = rfd::AsyncFileDialog::new().set_title(request.title());
        if let Some(folder) = self.start_folder(&request) {
            dialog = dialog.set_directory(folder);
        }
        let owned = request.clone();
        let promise = Promise::spawn_thread("file dialog", move || {
            let handle = match owned {
                Request::Image { .. } => pollster::block_on(dialog.add_filter("images", IMAGE_EXTENSIONS).pick_file()),
                Request::File { extensions, .. } => {
                    pollster::block_on(dialog.add_filter("files", &extensions).pick_file())
                }
                Request::Folder { .. } => pollster::block_on(dialog.pick_folder()),
                Request::Save { file_name, extension, .. } => pollster::block_on(
                    dialog.set_file_name(file_name).add_filter(extension.clone(), &[extension]).save_file(),
                ),
            };
            handle.map(|h| h.path().to_path_buf())
        });
        Open::Native { request, started: Instant::now(), promise }
    }

    fn in_app(&self, request: Request) -> Open {
        let start = self.start_folder(&request).or_else(|| std::env::current_dir().ok()).unwrap_or_default();
        Open::InApp { browser: Box::new(FileBrowser::new(request.clone(), start)), request }
    }

    fn remember(&mut self, chosen: &Path, request: &Request) {
        let folder = if matches!(request, Request::Folder { .. }) { Some(chosen) } else { chosen.parent() };
        if let Some(folder) = folder.filter(|f| !f.as_os_str().is_empty()) {
            self.folder = Some(folder.to_path_buf());
        }
    }
}

impl FileDialog for SystemDialog {
    fn open(&mut self, request: Request) -> bool {
        if self.open.is_some() {
            return false;
        }
        self.open = Some(if self.native_unavailable { self.in_app(request) } else { self.native(request) });
        true
    }

    fn poll(&mut self, ctx: &egui::Context) -> Option<Answer> {
        let answer = match self.open.take()? {
            Open::Native { request, started, promise } => match promise.try_take() {
                Err(promise) => {
                    // Keep painting (and polling) while the native dialog is up.
                    ctx.request_repaint_after(Duration::from_millis(100));
                    self.open = Some(Open::Native { request, started, promise });
                    return None;
                }
                Ok(None) if started.elapsed() < FASTEST_HUMAN_ANSWER => {
                    self.native_unavailable = true;
                    self.notice = Some(
                        "the system file dialog could not be shown (no desktop portal answered); using the studio's \
                         own file browser"
                            .to_string(),
                    );
                    self.open = Some(self.in_app(request));
                    return None;
                }
                Ok(chosen) => (request, chosen),
            },
            Open::InApp { request, mut browser } => match browser.show(ctx) {
                None => {
                    self.open = Some(Open::InApp { request, browser });
                    return None;
                }
                Some(Answer::Chosen(path)) => (request, Some(path)),
                Some(Answer::Cancelled) => (request, None),
            },
        };
        let (request, chosen) = answer;
        Some(match chosen {
            Some(path) => {
                let path = with_extension(path, &request);
                self.remember(&path, &request);
                Answer::Chosen(path)
            }
            None => Answer::Cancelled,
        })
    }

    fn is_open(&self) -> bool {
        self.open.is_some()
    }

    fn take_notice(&mut self) -> Option<String> {
        self.notice.take()
    }
}

/// A save target typed without its extension gets the requested one.
fn with_extension(path: PathBuf, request: &Request) -> PathBuf {
    match request {
        Request::Save { extension, .. } if path.extension().is_none() => path.with_extension(extension),
        _ => path,
    }
}
