//! Everything that changes the studio's state goes through [`Command`]: menus, shortcuts,
//! clicks and tests all queue commands, and [`StudioApp::handle`] carries them out.

use std::path::PathBuf;

use eframe::egui;

use super::document::Document;
use super::file_dialog::{Answer, Request};
use super::{Cell, StudioApp};
use crate::pyramid::Pyramid;

pub enum Command {
    /// Ask the file dialog for an image, then open it.
    PickImage,
    Open(PathBuf),
    SelectLayer(usize),
    /// Move the selected cell (the word editor's) by rows and columns, staying in the grid;
    /// with none selected, select the layer's top-left cell.
    MoveSelection {
        rows: isize,
        cols: isize,
    },
    SetPrefixLayers(usize),
    SetWord {
        cell: Cell,
        word: u32,
    },
    /// Every occurrence of `from` in `layer` becomes `to`.
    ReplaceInLayer {
        layer: usize,
        from: u32,
        to: u32,
    },
    /// The whole pyramid, from the text editor.
    ReplacePyramid(Pyramid),
    Undo,
    Redo,
    /// Back to the pyramid the encoder produced.
    Reset,
    /// Refine the pyramid's appearance words (as edited) against the decoder, in the
    /// background; the result is an undoable edit.
    Refine,
    /// Ask the file dialog where, then write.
    Export(ExportKind),
    /// Start a generation with the Generate panel's form.
    Generate,
    /// Stop the generation after its next frame, keeping the frames so far.
    CancelGeneration,
    /// Show frame `index` of the generation's timeline.
    ShowFrame(usize),
    /// The layer whose words the Generate panel draws over the frame.
    SelectFrameLayer(usize),
    /// Play (true) or pause the timeline.
    PlayFrames(bool),
    /// Open frame `index` as the studio's document, to edit its words and export it.
    OpenFrame(usize),
    /// Ask the file dialog where, then write generated frames.
    ExportFrames(FrameExport),
    /// Ask the file dialog for a support image and add it, labelled from its file name.
    AddSupportImage,
    RemoveSupportImage(usize),
    /// Ask the file dialog for a support set and replace the current one with it.
    LoadSupport(SupportSource),
    /// Ask the file dialog for the image to classify.
    PickQueryImage,
    /// Classify the open image (the default query).
    QueryOpenImage,
    Classify,
    /// Ask the file dialog for the second image of a mix.
    PickMixImage,
    /// Encode this image as the second of a mix.
    OpenMixImage(PathBuf),
    /// Ask the file dialog where, then write the decoded mix as PNG.
    ExportMix,
    /// Ask the file dialog for a folder, then open it in the gallery.
    PickFolder,
    /// Index a folder's images and show them in the gallery.
    OpenFolder(PathBuf),
    /// Stop indexing the gallery's folder (the images so far stay).
    CancelIndexing,
    /// Caption the open image with the Describe panel's settings.
    Caption,
    /// Ask the Describe panel's question about the open image.
    Ask,
    CancelDescribe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameExport {
    /// The frame on the timeline, as PNG.
    Current,
    /// Every frame as `frame-NNN.png` in a chosen folder.
    AllPng,
    /// Every frame as one animated GIF.
    Gif,
}

/// What the answer of the open file dialog is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choosing {
    OpenImage,
    Export(ExportKind),
    ExportFrames(FrameExport),
    SupportImage,
    Support(SupportSource),
    QueryImage,
    MixImage,
    ExportMix,
    Folder,
}

/// Where a support set comes from ([`crate::tasks::fewshot::read_support`] reads both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SupportSource {
    /// A folder with one subfolder of images per class.
    Folder,
    /// A text file of `label<TAB>image path` lines.
    List,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    /// The shown reconstruction at the model's resolution.
    Reconstruction,
    /// The shown reconstruction enlarged without smoothing.
    ReconstructionUpscaled,
    PyramidText,
    /// The original and every layer prefix's reconstruction side by side.
    ContactSheet,
}

fn image_request(title: &str) -> Request {
    Request::Image { title: title.to_string() }
}

impl StudioApp {
    /// Opens a file dialog whose answer goes to `purpose` (see [`Self::poll_dialog`]).
    pub(super) fn ask(&mut self, request: Request, purpose: Choosing) {
        if self.dialog.open(request) {
            self.choosing = Some(purpose);
        } else {
            self.notify_error("a file dialog is already open: answer or cancel it first".into());
        }
    }

    /// Shows the open file dialog and acts on its answer once there is one.
    pub(super) fn poll_dialog(&mut self, ctx: &egui::Context) {
        let answer = self.dialog.poll(ctx);
        if let Some(notice) = self.dialog.take_notice() {
            self.notify(notice);
        }
        let Some(answer) = answer else { return };
        let (Answer::Chosen(path), Some(purpose)) = (answer, self.choosing.take()) else { return };
        match purpose {
            Choosing::OpenImage => self.handle(Command::Open(path)),
            Choosing::Export(kind) => self.export_to(kind, &path),
            Choosing::ExportFrames(kind) => self.export_frames_to(kind, &path),
            Choosing::SupportImage => self.add_support_path(path),
            Choosing::Support(_) => self.load_support_from(&path),
            Choosing::QueryImage => self.classification.query = Some(path),
            Choosing::MixImage => self.handle(Command::OpenMixImage(path)),
            Choosing::ExportMix => self.export_mix_to(&path),
            Choosing::Folder => self.handle(Command::OpenFolder(path)),
        }
    }

    pub(super) fn handle(&mut self, command: Command) {
        let layers = self.model.shape().layers();
        let changed = match command {
            Command::PickImage => {
                self.ask(image_request("Open an image"), Choosing::OpenImage);
                false
            }
            Command::Open(path) => {
                let document = self.next_document_id;
                self.next_document_id += 1;
                self.opening = Some(path.clone());
                self.worker.send(super::worker::Job::Encode { path, document });
                false
            }
            Command::SelectLayer(layer) => {
                self.settings.layer = layer.clamp(1, layers);
                if self.editor.cell.is_some_and(|cell| cell.layer != self.settings.layer) {
                    self.editor.cell = None;
                }
                false
            }
            Command::MoveSelection { rows, cols } => {
                let layer = self.settings.layer;
                let last = self.model.shape().grid_size(layer) as isize - 1;
                let cell = match self.editor.cell.filter(|c| c.layer == layer) {
                    Some(c) => Cell {
                        layer,
                        row: (c.row as isize + rows).clamp(0, last) as usize,
                        col: (c.col as isize + cols).clamp(0, last) as usize,
                    },
                    None => Cell { layer, row: 0, col: 0 },
                };
                self.open_cell(cell);
                self.editor.reveal_cell = true;
                false
            }
            Command::SetPrefixLayers(count) => {
                self.settings.prefix_layers = count.clamp(1, layers);
                false
            }
            Command::Export(kind) => {
                self.export(kind);
                false
            }
            Command::Generate => {
                self.run_generation();
                false
            }
            Command::CancelGeneration => {
                self.cancel_generation();
                false
            }
            Command::ShowFrame(index) => {
                self.show_frame(index);
                false
            }
            Command::SelectFrameLayer(layer) => {
                self.frame_layer = layer.clamp(1, layers);
                false
            }
            Command::PlayFrames(play) => {
                self.play_frames(play);
                false
            }
            Command::OpenFrame(index) => {
                self.open_frame(index);
                false
            }
            Command::ExportFrames(kind) => {
                self.export_frames(kind);
                false
            }
            Command::AddSupportImage => {
                self.add_support_image();
                false
            }
            Command::RemoveSupportImage(index) => {
                if index < self.classification.support.len() {
                    self.classification.support.remove(index);
                }
                false
            }
            Command::LoadSupport(source) => {
                self.load_support(source);
                false
            }
            Command::PickQueryImage => {
                self.ask(image_request("Choose the image to classify"), Choosing::QueryImage);
                false
            }
            Command::QueryOpenImage => {
                self.classification.query = None;
                false
            }
            Command::Classify => {
                self.run_classification();
                false
            }
            Command::PickMixImage => {
                self.pick_mix_image();
                false
            }
            Command::OpenMixImage(path) => {
                self.open_mix_image(path);
                false
            }
            Command::ExportMix => {
                self.export_mix();
                false
            }
            Command::PickFolder => {
                self.ask(Request::Folder { title: "Open a folder of images".into() }, Choosing::Folder);
                false
            }
            Command::OpenFolder(folder) => {
                self.open_folder(folder);
                false
            }
            Command::Caption => {
                self.run_describe(false);
                false
            }
            Command::Ask => {
                self.run_describe(true);
                false
            }
            Command::CancelDescribe => {
                self.cancel_describe();
                false
            }
            Command::CancelIndexing => {
                if let Some(gallery) = &self.gallery {
                    gallery.cancel();
                }
                false
            }
            Command::SetWord { cell, word } => self.edit(|doc| doc.set_word(cell.layer, cell.row, cell.col, word)),
            Command::ReplaceInLayer { layer, from, to } => self.edit(|doc| doc.replace_in_layer(layer, from, to) > 0),
            Command::ReplacePyramid(pyramid) => self.edit(|doc| doc.replace(pyramid)),
            Command::Undo => self.edit(Document::undo),
            Command::Redo => self.edit(Document::redo),
            Command::Reset => self.edit(Document::reset),
            Command::Refine => {
                self.start_refining();
                false
            }
        };
        if changed {
            if let Some(document) = &self.document {
                self.edit_started = Some((document.version(), std::time::Instant::now()));
                self.edit_secs = None;
            }
            self.after_edit();
        }
    }

    /// Sends the open document's pyramid to be refined, unless a refinement is running.
    fn start_refining(&mut self) {
        let Some(document) = &self.document else { return };
        if self.refining.is_some() {
            return;
        }
        let version = document.version();
        self.worker.send(super::worker::Job::Refine(super::worker::RefineJob {
            version,
            pyramid: document.pyramid().clone(),
            original: document.original.clone(),
        }));
        self.refining = Some(version);
        self.notify(format!(
            "refining the appearance words against the decoder ({} rounds)…",
            crate::model::DEFAULT_REFINE_ROUNDS
        ));
    }

    /// Applies an edit to the open document; false when none is open or nothing changed.
    fn edit(&mut self, change: impl FnOnce(&mut Document) -> bool) -> bool {
        self.document.as_mut().is_some_and(change)
    }

    /// Re-decodes, and shows the edited word in the word editor.
    fn after_edit(&mut self) {
        if let (Some(cell), Some(document)) = (self.editor.cell, &self.document) {
            let word = document.pyramid().word(cell.layer, cell.row, cell.col);
            self.editor.word = self.model.codebook().vocabulary().word(word).to_string();
        }
        self.editor.unknown = None;
        self.request_decode();
    }
}
