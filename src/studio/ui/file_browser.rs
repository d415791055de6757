//! The studio's own file browser, for where the platform's dialog cannot be shown: a
//! window listing a folder (folders first, then the files the request accepts), with a
//! path field, Up, a file-name field, and Open / Save / Choose this folder / Cancel.
//! (The egui_file crate was tried first: its titles and icons are emoji that egui 0.37's
//! bundled fonts do not have.)

use std::path::{Path, PathBuf};

use eframe::egui;

use crate::studio::file_dialog::{Answer, Request};

/// A folder listing stops here (a browser is not a search tool).
const MAX_ENTRIES: usize = 5_000;

struct Entry {
    name: String,
    is_dir: bool,
}

pub struct FileBrowser {
    request: Request,
    folder: PathBuf,
    folder_edit: String,
    entries: Result<Vec<Entry>, String>,
    truncated: bool,
    /// The file or folder name chosen in the list or typed.
    name: String,
}

impl FileBrowser {
    /// A browser for `request` showing `folder`.
    pub fn new(request: Request, folder: PathBuf) -> Self {
        let name = match &request {
            Request::Save { file_name, .. } => file_name.clone(),
            _ => String::new(),
        };
        let mut browser = Self {
            request,
            folder: PathBuf::new(),
            folder_edit: String::new(),
            entries: Ok(Vec::new()),
            truncated: false,
            name,
        };
        browser.go_to(folder);
        browser
    }

    fn go_to(&mut self, folder: PathBuf) {
        self.folder_edit = folder.display().to_string();
        match read_folder(&folder, &self.request) {
            Ok((entries, truncated)) => {
                self.entries = Ok(entries);
                self.truncated = truncated;
                self.folder = folder;
            }
            Err(e) => self.entries = Err(format!("cannot list {}: {e}", folder.display())),
        }
        if !matches!(self.request, Request::Save { .. }) {
            self.name.clear();
        }
    }

    /// What the chosen name and the request make: the path to answer with, if it is one.
    fn target(&self) -> Option<PathBuf> {
        let name = self.name.trim();
        match &self.request {
            Request::Folder { .. } => {
                Some(if name.is_empty() { self.folder.clone() } else { self.folder.join(name) }).filter(|p| p.is_dir())
            }
            Request::Image { .. } | Request::File { .. } => {
                Some(self.folder.join(name)).filter(|p| !name.is_empty() && p.is_file())
            }
            Request::Save { extension, .. } => {
                let path = self.folder.join(name);
                (!name.is_empty() && !path.is_dir()).then(|| {
                    if path.extension().is_none() {
                        path.with_extension(extension)
                    } else {
                        path
                    }
                })
            }
        }
    }

    /// Draws the browser; its answer once the user chose or cancelled.
    pub fn show(&mut self, ctx: &egui::Context) -> Option<Answer> {
        let mut answer = None;
        let mut open = true;
        let mut enter: Option<PathBuf> = None;
        egui::Window::new(self.request.title().to_string())
            .collapsible(false)
            .default_size([620.0, 440.0])
            .open(&mut open)
            .show(ctx, |ui| {
                ui.horizontal(|ui| {
                    if ui.button("Up").on_hover_text("the parent folder").clicked() {
                        enter = self.folder.parent().map(Path::to_path_buf);
                    }
                    let field = ui.add(
                        egui::TextEdit::singleline(&mut self.folder_edit)
                            .desired_width(f32::INFINITY)
                            .hint_text("folder"),
                    );
                    if field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                        enter = Some(PathBuf::from(self.folder_edit.trim()));
                    }
                });
                ui.separator();
                let list_height = (ui.available_height() - 70.0).max(120.0);
                egui::ScrollArea::vertical().max_height(list_height).auto_shrink([false, false]).show(ui, |ui| {
                    match &self.entries {
                        Err(message) => {
                            ui.colored_label(ui.visuals().error_fg_color, message);
                        }
                        Ok(entries) if entries.is_empty() => {
                            ui.weak("(nothing to show here)");
                        }
                        Ok(entries) => {
                            for entry in entries {
                                let label = if entry.is_dir { format!("{}/", entry.name) } else { entry.name.clone() };
                                let response = ui.selectable_label(self.name == entry.name, label);
                                if response.clicked() {
                                    self.name = entry.name.clone();
                                }
                                if response.double_clicked() {
                                    if entry.is_dir {
                                        enter = Some(self.folder.join(&entry.name));
                                    } else {
                                        answer = self.target().map(Answer::Chosen);
                                    }
                                }
                            }
                            if self.truncated {
                                ui.weak(format!("(only the first {MAX_ENTRIES} entries are listed)"));
                            }
                        }
                    }
                });
                ui.separator();
                ui.horizontal(|ui| {
                    let label =
                        if matches!(self.request, Request::Folder { .. }) { "Folder name:" } else { "File name:" };
                    let label = ui.label(label);
                    let field = ui
                        .add(egui::TextEdit::singleline(&mut self.name).desired_width(f32::INFINITY))
                        .labelled_by(label.id);
                    if field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                        answer = self.target().map(Answer::Chosen);
                    }
                });
                ui.horizontal(|ui| {
                    if ui.button("Cancel").clicked() {
                        answer = Some(Answer::Cancelled);
                    }
                    let confirm = match self.request {
                        Request::Folder { .. } => "Choose this folder",
                        Request::Save { .. } => "Save",
                        Request::Image { .. } | Request::File { .. } => "Open",
                    };
                    let target = self.target();
                    if ui.add_enabled(target.is_some(), egui::Button::new(confirm)).clicked() {
                        answer = target.map(Answer::Chosen);
                    }
                    if let Some(target) = &self.target() {
                        ui.weak(target.display().to_string());
                    }
                });
            });
        if let Some(folder) = enter {
            self.go_to(folder);
        }
        if !open || ctx.input(|i| i.key_pressed(egui::Key::Escape)) {
            return Some(Answer::Cancelled);
        }
        answer
    }
}

/// A folder's entries the request can use: folders, and files with an accepted extension
/// (all files for a save), hidden ones left out, folders first, by name.
fn read_folder(folder: &Path, request: &Request) -> std::io::Result<(Vec<Entry>, bool)> {
    let mut entries = Vec::new();
    let mut truncated = false;
    for entry in std::fs::read_dir(folder)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let is_dir = entry.path().is_dir();
        if is_dir || accepts(request, &entry.path()) {
            if entries.len() == MAX_ENTRIES {
                truncated = true;
                break;
            }
            entries.push(Entry { name, is_dir });
        }
    }
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase())));
    Ok((entries, truncated))
}

fn accepts(request: &Request, path: &Path) -> bool {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    match request {
        Request::Image { .. } => {
            crate::studio::file_dialog::IMAGE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(extension))
        }
        Request::File { extensions, .. } => extensions.iter().any(|e| e.eq_ignore_ascii_case(extension)),
        Request::Folder { .. } => false,
        Request::Save { .. } => true,
    }
}
