//! Generation in the studio: the form, a run on the LLM thread whose frames stream in as
//! they are made, the timeline that steps through them, and opening a frame as the
//! studio's document.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use eframe::egui;
use image::RgbImage;

use super::llm_worker::{self, DecodedFrame, GenerateJob};
use super::worker::{AdoptJob, Job};
use super::{Cell, StudioApp};
use crate::pyramid::{Pyramid, PyramidShape};
use crate::tasks::context_pool::Task;
use crate::tasks::denoising::{Frame, Options};

/// Seconds each frame is shown while the timeline plays (2 frames per second).
const PLAY_INTERVAL: f64 = 0.5;

/// What the user asks for, as the Generate panel edits it.
pub struct GenerateForm {
    /// What to generate (text to image).
    pub prompt: String,
    pub task: Task,
    pub options: Options,
    /// In-context examples drawn from the pool.
    pub examples: usize,
}

impl Default for GenerateForm {
    fn default() -> Self {
        Self { prompt: "cat face".into(), task: Task::TextToImage, options: Options::default(), examples: 6 }
    }
}

/// One step of a generation as the studio shows it.
pub struct GeneratedFrame {
    pub frame: Frame,
    /// The frame completed to a whole pyramid.
    pub pyramid: Pyramid,
    /// The pyramid decoded.
    pub image: RgbImage,
    pub texture: egui::TextureHandle,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    Running,
    Finished,
    /// Stopped by the user; the frames made so far are kept.
    Cancelled,
    Failed(String),
}

/// A generation, running or done, and where its timeline stands.
pub struct Generation {
    run: u64,
    /// What it was asked, for file names and the teacher: the prompt or the source's name.
    pub name: String,
    pub task: Task,
    pub options: Options,
    pub frames: Vec<GeneratedFrame>,
    /// The frame on screen.
    pub shown: usize,
    pub state: RunState,
    cancel: Arc<AtomicBool>,
    playing: bool,
    /// While playing: when the shown frame was last advanced (egui time, seconds); `None`
    /// until the first tick.
    advanced_at: Option<f64>,
}

impl Generation {
    pub fn is_running(&self) -> bool {
        self.state == RunState::Running
    }

    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// A file-name stem for the generation: its name in lower case, words joined by dashes.
    pub fn file_stem(&self) -> String {
        let words: Vec<String> =
            self.name.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
        if words.is_empty() {
            "generated".into()
        } else {
            words.join("-")
        }
    }

    /// A file-name stem for frame `step`.
    pub fn frame_stem(&self, step: usize) -> String {
        format!("{}-step-{step:02}", self.file_stem())
    }
}

/// The cells of a frame's changed words: `changed` are positions in the frame's words,
/// layer after layer.
pub fn changed_cells(shape: &PyramidShape, changed: &[usize]) -> Vec<Cell> {
    changed
        .iter()
        .filter_map(|&position| {
            let layer = (1..=shape.layers()).find(|&l| position < shape.tokens_in_prefix(l))?;
            let index = position - shape.tokens_in_prefix(layer - 1);
            let s = shape.grid_size(layer);
            Some(Cell { layer, row: index / s, col: index % s })
        })
        .collect()
}

impl StudioApp {
    /// Starts a generation from the form; an image-to-image task starts from the open image.
    pub(super) fn run_generation(&mut self) {
        if self.generation.as_ref().is_some_and(Generation::is_running) {
            return;
        }
        let form = &self.generate_form;
        let source = self.document.as_ref().map(|d| (d.original.clone(), d.path.clone()));
        let name = match (form.task, &source) {
            (Task::TextToImage, _) => form.prompt.trim().to_string(),
            (task, Some((_, path))) => {
                let stem = path.file_stem().map_or("image".into(), |s| s.to_string_lossy().into_owned());
                format!("{stem} {task:?}")
            }
            (task, None) => {
                self.notify_error(format!("{task:?} starts from the open image: open one first"));
                return;
            }
        };
        let run = self.next_run;
        self.next_run += 1;
        let cancel = Arc::new(AtomicBool::new(false));
        self.llm.send(llm_worker::Job::Generate(GenerateJob {
            run,
            task: form.task,
            prompt: form.prompt.clone(),
            source: source.map(|(image, _)| image).filter(|_| form.task != Task::TextToImage),
            examples: form.examples,
            options: form.options.clone(),
            cancel: cancel.clone(),
        }));
        self.generation = Some(Generation {
            run,
            name,
            task: form.task,
            options: form.options.clone(),
            frames: Vec::new(),
            shown: 0,
            state: RunState::Running,
            cancel,
            playing: false,
            advanced_at: None,
        });
    }

    pub(super) fn cancel_generation(&mut self) {
        if let Some(generation) = self.generation.as_ref().filter(|g| g.is_running()) {
            generation.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// A frame arrived: keep it, and follow it when the timeline was at the newest frame.
    pub(super) fn receive_frame(&mut self, ctx: &egui::Context, run: u64, decoded: DecodedFrame) {
        let Some(generation) = self.generation.as_mut().filter(|g| g.run == run) else {
            return;
        };
        let texture = super::view::texture(ctx, format!("frame-{}", decoded.frame.step), &decoded.image);
        let following = generation.frames.is_empty() || generation.shown + 1 == generation.frames.len();
        generation.frames.push(GeneratedFrame {
            frame: decoded.frame,
            pyramid: decoded.pyramid,
            image: decoded.image,
            texture,
        });
        if following && !generation.is_playing() {
            generation.shown = generation.frames.len() - 1;
        }
    }

    /// The generation ended: finished, cancelled or failed.
    pub(super) fn finish_generation(&mut self, run: u64, state: RunState) {
        let Some(generation) = self.generation.as_mut().filter(|g| g.run == run) else {
            return;
        };
        generation.state = state.clone();
        if let RunState::Failed(message) = state {
            self.notify_error(format!("generation failed: {message}"));
        }
    }

    pub(super) fn show_frame(&mut self, index: usize) {
        if let Some(generation) = &mut self.generation {
            generation.shown = index.min(generation.frames.len().saturating_sub(1));
        }
    }

    pub(super) fn play_frames(&mut self, play: bool) {
        let Some(generation) = &mut self.generation else {
            return;
        };
        if play && generation.shown + 1 >= generation.frames.len() && !generation.is_running() {
            generation.shown = 0; // playing from the end starts again
        }
        generation.playing = play;
        generation.advanced_at = None;
    }

    /// Advances a playing timeline every [`PLAY_INTERVAL`]; stops at the last frame once
    /// the run has ended.
    pub(super) fn tick_timeline(&mut self, ctx: &egui::Context) {
        let Some(generation) = self.generation.as_mut().filter(|g| g.playing) else {
            return;
        };
        let now = ctx.input(|i| i.time);
        let advanced_at = *generation.advanced_at.get_or_insert(now);
        if now - advanced_at >= PLAY_INTERVAL {
            if generation.shown + 1 < generation.frames.len() {
                generation.shown += 1;
                generation.advanced_at = Some(now);
            } else if !generation.is_running() {
                generation.playing = false;
                return;
            }
        }
        let wait = PLAY_INTERVAL - (now - generation.advanced_at.unwrap_or(now));
        ctx.request_repaint_after(std::time::Duration::from_secs_f64(wait.clamp(0.0, PLAY_INTERVAL)));
    }

    /// Opens a frame as the studio's document: its pyramid to edit, its decode as the
    /// original.
    pub(super) fn open_frame(&mut self, index: usize) {
        let Some(generation) = &self.generation else {
            return;
        };
        let Some(frame) = generation.frames.get(index) else {
            return;
        };
        let path = PathBuf::from(format!("{}.png", generation.frame_stem(frame.frame.step)));
        let job = AdoptJob {
            path: path.clone(),
            document: self.next_document_id,
            original: frame.image.clone(),
            pyramid: frame.pyramid.clone(),
            text: generation.name.clone(),
        };
        self.next_document_id += 1;
        self.opening = Some(path);
        self.worker.send(Job::Adopt(job));
    }
}
