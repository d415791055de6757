//! The studio: open an image, read its pyramid of words layer by layer over the image, edit
//! words and see the decoder's answer at once, compare layer prefixes, export.
//!
//! One file per job: [`StudioApp`] (here) owns the state and splits each frame into
//! `logic` (outcomes of background work, shortcuts, commands; no drawing) and `ui`
//! (the panels in [`ui`], which only draw and queue [`Command`]s). Model work runs on the
//! [`worker`] thread, the frozen LLM's ([`generation`], [`classification`]) on the
//! [`llm_worker`] thread; files are chosen through [`file_dialog`].

mod background;
pub mod classification;
mod commands;
pub mod describe;
pub mod devices;
pub mod document;
mod export;
pub mod file_dialog;
pub mod gallery;
pub mod generation;
pub mod llm_worker;
mod menu_commands;
pub mod mixing;
mod relevance;
#[cfg(feature = "testing")]
pub mod scripted_dialog;
pub mod state;
mod ui;
mod view;
mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use eframe::egui;

pub use crate::gpu::DeviceChoice;
use classification::Classification;
pub use commands::{Command, ExportKind, FrameExport, SupportSource};
use devices::Devices;
use document::Document;
use file_dialog::{FileDialog, SystemDialog};
use generation::{GenerateForm, Generation, RunState};
use llm_worker::LlmWorker;
use menu_commands::MenuCommand;
use state::Settings;
use view::View;
use worker::{Outcome, Worker};

use crate::model::{Refinement, SpaeModel};
use crate::pyramid::text::ParseError;
use crate::pyramid::Pyramid;

/// The image the studio opens on, so a first run shows words at once.
pub const SAMPLE_IMAGE: &str = "assets/samples/cat-face.png";

/// One cell of one layer of the pyramid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cell {
    pub layer: usize,
    pub row: usize,
    pub col: usize,
}

/// Where the frozen LLM stands: it loads on the first generation or classification.
#[derive(Clone, Debug, PartialEq)]
pub enum LlmStatus {
    NotLoaded,
    Loading,
    Ready { secs: f64 },
    Failed(String),
}

/// A message for the user; errors stay until dismissed or replaced.
pub struct Notice {
    pub text: String,
    pub is_error: bool,
}

/// The word editor and the pyramid text editor: what the user is typing, not yet applied.
#[derive(Default)]
struct Editor {
    cell: Option<Cell>,
    word: String,
    /// A word that is not in the vocabulary, with the words spelled most like it.
    unknown: Option<(String, Vec<String>)>,
    text: String,
    /// The pyramid the text was written from; the text follows the document until the user
    /// types in it.
    text_version: Option<document::Version>,
    text_edited: bool,
    text_error: Option<ParseError>,
    /// Give the word box the keyboard focus on the next frame (Enter on a selected cell).
    focus_word: bool,
    /// Scroll the zoomed word grid to the selected cell on the next frame (it moved).
    reveal_cell: bool,
}

pub struct StudioApp {
    model: Arc<SpaeModel>,
    settings: Settings,
    worker: Worker,
    dialog: Box<dyn FileDialog>,
    /// What the open file dialog's answer is for.
    choosing: Option<commands::Choosing>,
    document: Option<Document>,
    /// The latest decode of the document (possibly of an older revision while one runs).
    view: Option<View>,
    /// PSNR per prefix and mean quantization error per layer of the encoded pyramid, for
    /// the plots' comparison with the edited one.
    encoded_summary: Option<view::Summary>,
    /// The image being read and encoded.
    opening: Option<PathBuf>,
    /// The version whose decode failed, so the studio does not wait for it forever.
    failed: Option<document::Version>,
    next_document_id: u64,
    editor: Editor,
    commands: Vec<Command>,
    notice: Option<Notice>,
    hovered: Option<Cell>,
    /// Nearest words to each cell's SAQ target, for the view shown; filled on hover.
    alternatives: HashMap<Cell, Vec<u32>>,
    encode_secs: Option<f64>,
    decode_secs: Option<f64>,
    /// The latest edit's revision and when it was made, until its images are on screen.
    edit_started: Option<(document::Version, std::time::Instant)>,
    /// From the latest edit to its image on screen (the prefix shown), in seconds.
    edit_secs: Option<f64>,
    /// From the latest edit to all its prefixes and measurements on screen, in seconds.
    edit_all_secs: Option<f64>,
    /// The revision being refined in the background ([`Command::Refine`]).
    refining: Option<document::Version>,
    /// The shown prefix of an edit whose other prefixes are still decoding.
    preview: Option<view::PreviewView>,
    /// The GPU decoder's texture layers (empty when decoding on the CPU).
    gpu_images: Vec<egui::TextureId>,
    /// Where decodes run, for the status bar.
    device_status: String,
    /// Where images are encoded, for the status bar.
    encode_status: String,
    /// The GPU the gallery encodes on (none: the CPU).
    encode_gpu: Option<crate::gpu::Gpu>,
    llm: LlmWorker,
    llm_status: LlmStatus,
    /// Numbers generation and classification runs, so stale outcomes are dropped.
    next_run: u64,
    generate_form: GenerateForm,
    generation: Option<Generation>,
    /// The layer whose words the Generate panel draws over the frame.
    frame_layer: usize,
    classification: Classification,
    mixing: mixing::Mixing,
    describe_form: describe::DescribeForm,
    description: Option<describe::Description>,
    gallery: Option<gallery::Gallery>,
    /// The context, so background work started by a command can wake the UI.
    ctx: egui::Context,
    /// The window title last sent, so it is sent again only when it changes.
    shown_title: String,
}

impl StudioApp {
    /// The studio on `model`, opening `image`, decoding where `use_gpu` says; settings come
    /// from eframe's storage.
    pub fn new(
        cc: &eframe::CreationContext<'_>,
        model: Arc<SpaeModel>,
        dialog: Box<dyn FileDialog>,
        image: &Path,
        use_gpu: DeviceChoice,
    ) -> Self {
        let mut settings = Settings::stored(cc.storage);
        settings.fit_to(model.shape().layers());
        let devices = Devices::open(cc, &model, use_gpu);
        let worker = worker::start(model.clone(), devices.decoder, devices.encoder, cc.egui_ctx.clone());
        let llm = llm_worker::start(model.clone(), cc.egui_ctx.clone());
        let model_layers = model.shape().layers();
        let mut app = Self {
            model,
            settings,
            worker,
            dialog,
            choosing: None,
            document: None,
            view: None,
            encoded_summary: None,
            opening: None,
            failed: None,
            next_document_id: 0,
            editor: Editor::default(),
            commands: Vec::new(),
            notice: None,
            hovered: None,
            alternatives: HashMap::new(),
            encode_secs: None,
            decode_secs: None,
            edit_started: None,
            edit_secs: None,
            edit_all_secs: None,
            refining: None,
            preview: None,
            gpu_images: devices.images,
            device_status: devices.decode_status,
            encode_status: devices.encode_status,
            encode_gpu: devices.gpu,
            llm,
            llm_status: LlmStatus::NotLoaded,
            next_run: 0,
            generate_form: GenerateForm::default(),
            generation: None,
            frame_layer: 1,
            classification: Classification::default(),
            mixing: mixing::Mixing::new(model_layers),
            describe_form: describe::DescribeForm::default(),
            description: None,
            gallery: None,
            ctx: cc.egui_ctx.clone(),
            shown_title: String::new(),
        };
        if image.is_dir() {
            // A folder: the gallery, beside the last image (or the sample) in the editor.
            app.handle(Command::OpenFolder(image.to_path_buf()));
            let last = app.settings.last_file().map(Path::to_path_buf);
            app.handle(Command::Open(last.unwrap_or_else(|| crate::paths::resolve(SAMPLE_IMAGE))));
        } else {
            app.handle(Command::Open(image.to_path_buf()));
        }
        app
    }

    /// Queues a command, as a click in the UI would.
    pub fn command(&mut self, command: Command) {
        self.commands.push(command);
    }

    /// True while an image is being encoded or refined or the shown images lag the edited
    /// pyramid (or the shown mix lags the mix asked for).
    pub fn is_busy(&self) -> bool {
        let waiting_for_decode = self.document.as_ref().is_some_and(|doc| {
            let version = doc.version();
            self.view.as_ref().map(|v| v.version) != Some(version) && self.failed != Some(version)
        });
        let waiting_for_mix = self.settings.show_mix && self.mixing.second.is_some() && !self.mix_is_current();
        self.opening.is_some()
            || self.refining.is_some()
            || self.mixing.opening.is_some()
            || waiting_for_decode
            || waiting_for_mix
    }

    pub fn document(&self) -> Option<&Document> {
        self.document.as_ref()
    }

    /// The reconstruction on screen: the current prefix of the latest decode.
    pub fn shown_reconstruction(&self) -> Option<&image::RgbImage> {
        Some(&self.view.as_ref()?.decoded.prefixes[self.settings.prefix_layers - 1])
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_ref()
    }

    pub fn llm_status(&self) -> &LlmStatus {
        &self.llm_status
    }

    /// The Generate panel's form, as the user fills it in.
    pub fn generate_form_mut(&mut self) -> &mut GenerateForm {
        &mut self.generate_form
    }

    /// The latest generation, running or done.
    pub fn generation(&self) -> Option<&Generation> {
        self.generation.as_ref()
    }

    pub fn classification(&self) -> &Classification {
        &self.classification
    }

    /// The Classify panel's state, as the user fills it in.
    pub fn classification_mut(&mut self) -> &mut Classification {
        &mut self.classification
    }

    /// Where decodes run: "GPU: <adapter>" or "CPU (<why>)".
    pub fn device_status(&self) -> &str {
        &self.device_status
    }

    pub fn encode_status(&self) -> &str {
        &self.encode_status
    }

    /// Seconds from the latest edit to its image on screen (the prefix shown, as a texture).
    pub fn edit_secs(&self) -> Option<f64> {
        self.edit_secs
    }

    /// Seconds from the latest edit to every prefix, the plots and the strip on screen.
    pub fn edit_all_secs(&self) -> Option<f64> {
        self.edit_all_secs
    }

    /// Whether the main reconstruction on screen is of the document as it is now (the
    /// other prefixes may still be decoding).
    pub fn shows_current_edit(&self) -> bool {
        let Some(document) = &self.document else { return false };
        let version = Some(document.version());
        self.view.as_ref().map(|v| v.version) == version || self.preview.as_ref().map(|p| p.version) == version
    }

    /// Whether the images on screen came from the GPU decoder's textures.
    pub fn shown_on_gpu(&self) -> bool {
        self.view.as_ref().is_some_and(|view| view.decoded.on_gpu)
    }

    /// The GPU encoder failed (`what`): images are encoded on the CPU from now on, the
    /// gallery's included.
    fn encoder_fell_back(&mut self, what: &str) {
        self.encode_status = "CPU (after a GPU error)".into();
        self.encode_gpu = None;
        self.notify_error(format!("{what}; encoding on the CPU from now on, nothing is lost"));
    }

    fn note_gpu_failure(&mut self, decoded: &worker::Decoded) {
        if let Some(reason) = &decoded.gpu_failure {
            self.gpu_images.clear();
            self.device_status = "CPU (after a GPU error)".into();
            self.notify_error(format!(
                "the GPU decoder failed ({reason}); decoding on the CPU from now on, the pyramid is kept"
            ));
        }
    }

    fn receive(&mut self, ctx: &egui::Context, outcome: Outcome) {
        match outcome {
            Outcome::Encoded(encoded) => {
                self.settings.remember_file(&encoded.path);
                self.show_encoded(ctx, encoded);
            }
            Outcome::Adopted(adopted) => {
                self.show_encoded(ctx, adopted);
                if let Some(document) = &mut self.document {
                    document.generated = true;
                }
            }
            Outcome::OpenFailed(path, message) => {
                self.opening = None;
                self.settings.recent_files.retain(|p| p != &path);
                let kept = if self.document.is_some() { "; the current image and its edits are kept" } else { "" };
                self.notify_error(format!("cannot open {}: {message}{kept}", path.display()));
            }
            Outcome::Decoded(decoded) => {
                self.note_gpu_failure(&decoded);
                let Some(document) = &self.document else { return };
                if decoded.version.document != document.version().document {
                    return; // a decode of an image that is no longer open
                }
                self.decode_secs = Some(decoded.decode_secs);
                let version = decoded.version;
                self.view = Some(View::new(ctx, document, decoded, &self.gpu_images));
                self.alternatives.clear();
                self.preview = None;
                if let Some((_, started)) = self.edit_started.filter(|(edited, _)| *edited == version) {
                    let secs = started.elapsed().as_secs_f64();
                    self.edit_all_secs = Some(secs);
                    self.edit_secs.get_or_insert(secs);
                    self.edit_started = None;
                }
            }
            Outcome::Preview(preview) => {
                let Some(document) = &self.document else { return };
                if preview.version != document.version() {
                    return; // an older revision, or another image
                }
                if let Some((_, started)) = self.edit_started.filter(|(edited, _)| *edited == preview.version) {
                    self.edit_secs = Some(started.elapsed().as_secs_f64());
                }
                self.preview = Some(view::PreviewView::new(ctx, preview));
            }
            Outcome::DecodeFailed(version, message) => {
                self.failed = Some(version);
                self.notify_error(format!("decoding failed: {message}"));
            }
            Outcome::MixImage { path, original, pyramid } => self.receive_mix_image(ctx, path, original, pyramid),
            Outcome::Mixed { pyramid, image } => self.receive_mix(ctx, pyramid, image),
            Outcome::MixFailed(message) => {
                self.mixing.opening = None;
                self.notify_error(message);
            }
            Outcome::EncoderFellBack(reason) => self.encoder_fell_back(&format!("the GPU encoder failed ({reason})")),
            Outcome::Refined { version, pyramid, refinement } => self.receive_refined(version, pyramid, &refinement),
            Outcome::RefineFailed(message) => {
                self.refining = None;
                self.notify_error(message);
            }
        }
    }

    /// A refined pyramid becomes an undoable edit of the revision it was made from; one
    /// for a revision no longer shown (edited meanwhile, another image) is dropped.
    fn receive_refined(&mut self, version: document::Version, pyramid: Pyramid, refinement: &Refinement) {
        self.refining = None;
        if self.document.as_ref().map(Document::version) != Some(version) {
            self.notify("the refinement was dropped: the pyramid changed while it ran".to_string());
            return;
        }
        let (before, after) = refinement.psnr_db(0);
        self.notify(format!(
            "refined: {} word(s) changed, the decoder's PSNR {before:.2} -> {after:.2} dB (Undo takes it back)",
            refinement.words_changed,
        ));
        self.handle(Command::ReplacePyramid(pyramid));
    }

    /// An encoded (or adopted) pyramid becomes the open document.
    fn show_encoded(&mut self, ctx: &egui::Context, encoded: worker::Encoded) {
        self.opening = None;
        self.encode_secs = Some(encoded.encode_secs);
        let mut document = Document::new(
            encoded.decoded.version.document,
            encoded.path,
            encoded.original,
            encoded.latent,
            encoded.pyramid,
        );
        document.relevance = encoded.relevance;
        self.decode_secs = Some(encoded.decoded.decode_secs);
        self.encoded_summary = Some(view::Summary::of(&encoded.decoded));
        self.note_gpu_failure(&encoded.decoded);
        self.view = Some(View::new(ctx, &document, encoded.decoded, &self.gpu_images));
        self.alternatives.clear();
        self.editor = Editor::default();
        self.document = Some(document);
    }

    fn receive_llm(&mut self, ctx: &egui::Context, outcome: llm_worker::Outcome) {
        use llm_worker::Outcome;
        match outcome {
            Outcome::LoadingLlm => self.llm_status = LlmStatus::Loading,
            Outcome::LlmLoaded { secs } => self.llm_status = LlmStatus::Ready { secs },
            Outcome::LlmFailed(message) => self.llm_status = LlmStatus::Failed(message),
            Outcome::Frame { run, frame } => self.receive_frame(ctx, run, frame),
            Outcome::Generated { run, cancelled } => {
                self.finish_generation(run, if cancelled { RunState::Cancelled } else { RunState::Finished });
            }
            Outcome::GenerateFailed { run, message } => self.finish_generation(run, RunState::Failed(message)),
            Outcome::Classified { run, classified } => self.receive_classification(run, Ok(classified)),
            Outcome::ClassifyFailed { run, message } => self.receive_classification(run, Err(message)),
            Outcome::Described { run, result } => self.receive_description(run, result),
        }
    }

    fn request_decode(&mut self) {
        let Some(document) = &self.document else { return };
        self.worker.send(worker::Job::Decode(worker::DecodeJob {
            version: document.version(),
            pyramid: document.pyramid().clone(),
            latent: document.latent.clone(),
            original: document.original.clone(),
            shown: Some(self.settings.prefix_layers),
        }));
    }

    fn notify(&mut self, text: String) {
        self.notice = Some(Notice { text, is_error: false });
    }

    fn notify_error(&mut self, text: String) {
        self.notice = Some(Notice { text, is_error: true });
    }

    /// "name (edited) - SPAE Studio" in the window's title bar.
    fn update_title(&mut self, ctx: &egui::Context) {
        let title = match &self.document {
            Some(document) => {
                let edited = if document.is_edited() { " (edited)" } else { "" };
                format!("{}{edited} - SPAE Studio", ui::display_name(&document.path))
            }
            None => "SPAE Studio".to_string(),
        };
        if title != self.shown_title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.shown_title = title;
        }
    }

    /// The window title the studio asks for.
    pub fn title(&self) -> &str {
        &self.shown_title
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        use egui::{Key, Modifiers};
        let text_focused = ctx.text_edit_focused();
        for entry in MenuCommand::WITH_SHORTCUTS {
            let Some(shortcut) = entry.shortcut() else { continue };
            if !(text_focused && entry.yields_to_text_boxes()) && ctx.input_mut(|i| i.consume_shortcut(&shortcut)) {
                self.commands.push(entry.command());
            }
        }
        if !text_focused {
            // Arrow keys move the selected cell, Enter starts editing its word.
            let moves =
                [(Key::ArrowUp, -1, 0), (Key::ArrowDown, 1, 0), (Key::ArrowLeft, 0, -1), (Key::ArrowRight, 0, 1)];
            for (key, rows, cols) in moves {
                if ctx.input_mut(|i| i.consume_key(Modifiers::NONE, key)) {
                    self.commands.push(Command::MoveSelection { rows, cols });
                }
            }
            if self.editor.cell.is_some() && ctx.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Enter)) {
                self.editor.focus_word = true;
            }
        }
        let dropped = ctx.input(|i| i.raw.dropped_files.first().map(|file| file.path().to_path_buf()));
        if let Some(path) = dropped {
            self.commands.push(if path.is_dir() { Command::OpenFolder(path) } else { Command::Open(path) });
        }
    }
}

impl eframe::App for StudioApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        for outcome in self.worker.poll() {
            self.receive(ctx, outcome);
        }
        for outcome in self.llm.poll() {
            self.receive_llm(ctx, outcome);
        }
        if let Some(reason) = self.gallery.as_mut().and_then(|gallery| gallery.poll(ctx)) {
            self.encoder_fell_back(&format!("the gallery's GPU encoder failed ({reason})"));
        }
        self.tick_timeline(ctx);
        self.update_mix();
        self.shortcuts(ctx);
        self.update_title(ctx);
        for command in std::mem::take(&mut self.commands) {
            self.handle(command);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.studio_ui(ui);
        self.poll_dialog(ui.ctx());
        if !self.commands.is_empty() {
            // Commands queued while drawing are handled by the next frame's logic.
            ui.ctx().request_repaint();
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, Settings::KEY, &self.settings);
    }
}

/// What the studio starts on: `spae-studio [IMAGE] [--model DIR] [--llm FILE]`.
pub struct Launch {
    /// The image to open, or a folder to open in the gallery; none: the last image opened
    /// (if it still exists), else the shipped sample.
    pub image: Option<PathBuf>,
    /// The model folder; none: the shipped model (an initialised one, labelled untrained,
    /// where it is missing).
    pub model: Option<PathBuf>,
    /// The LLM whose embeddings are the codebook; none: the shipped one.
    pub llm: Option<PathBuf>,
}

/// Opens the model and runs the studio window. Paths the user named that do not exist are
/// refused here, naming them, before any window opens.
pub fn run(launch: &Launch) -> Result<()> {
    for (path, what) in [(&launch.image, "image"), (&launch.model, "model folder"), (&launch.llm, "LLM file")] {
        if let Some(path) = path {
            anyhow::ensure!(path.exists(), "the {what} {} does not exist", path.display());
        }
    }
    if let Some(image) = &launch.image {
        anyhow::ensure!(
            image.is_file() || image.is_dir(),
            "{} is neither a file nor a folder: name an image, or a folder for the gallery",
            image.display()
        );
    }
    let model_dir = launch.model.clone().unwrap_or_else(|| crate::paths::resolve(crate::paths::DEFAULT_MODEL_DIR));
    let llm = launch.llm.clone().unwrap_or_else(|| crate::paths::resolve(crate::paths::LLM_GGUF));
    let model = Arc::new(SpaeModel::open(&model_dir, &llm, launch.model.is_none())?);
    let image = launch.image.clone();
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([1480.0, 980.0])
            .with_title("SPAE Studio")
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "SPAE Studio",
        options,
        Box::new(move |cc| {
            // No image named: the last one opened, else the shipped sample.
            let image = image
                .or_else(|| Settings::stored(cc.storage).last_file().map(Path::to_path_buf))
                .unwrap_or_else(|| crate::paths::resolve(SAMPLE_IMAGE));
            let dialog = Box::new(SystemDialog::default());
            let app = StudioApp::new(cc, model, dialog, &image, devices::choice_from_env());
            Ok(Box::new(app) as Box<dyn eframe::App>)
        }),
    )
    .map_err(|e| anyhow::anyhow!("the studio window failed: {e}"))
}
