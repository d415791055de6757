//! The Generate panel: the form, Run and Cancel with the run's progress, and the timeline
//! of its frames: each frame's decode with the words that changed at its step highlighted,
//! the corruption schedule with the step marked, opening a frame in the editor, exports.

use std::collections::HashSet;

use eframe::egui;
use egui_plot::{Line, Plot, PlotPoints, Points, VLine};

use super::super::generation::{changed_cells, Generation, RunState};
use super::super::llm_worker::{missing_pool_message, pool_exists};
use super::super::{Command, FrameExport, StudioApp};
use super::word_grid::paint_words;
use crate::tasks::context_pool::Task;

/// Width of the form column.
const FORM_WIDTH: f32 = 270.0;
/// Side of the frame's image with its words.
const FRAME_SIDE: f32 = 420.0;
/// The plot of the corruption schedule.
const PLOT_SIZE: egui::Vec2 = egui::vec2(300.0, 220.0);
const MAX_STEPS: usize = 32;
const MAX_EXAMPLES: usize = 16;

fn task_name(task: Task) -> &'static str {
    match task {
        Task::TextToImage => "Text to image",
        Task::Outpaint => "Outpaint (complete the right half)",
        Task::Deblur => "Deblur",
    }
}

impl StudioApp {
    pub(super) fn generate_panel_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(FORM_WIDTH);
                self.generate_form_ui(ui);
            });
            ui.separator();
            ui.vertical(|ui| self.timeline_ui(ui));
        });
    }

    fn generate_form_ui(&mut self, ui: &mut egui::Ui) {
        self.llm_status_ui(ui);
        let pool = pool_exists();
        if !pool {
            ui.colored_label(ui.visuals().error_fg_color, missing_pool_message());
        }
        let running = self.generation.as_ref().is_some_and(Generation::is_running);
        let layers = self.model.shape().layers();
        let open_image =
            self.document.as_ref().and_then(|d| d.path.file_name()).map(|n| n.to_string_lossy().into_owned());
        let form = &mut self.generate_form;
        ui.add_enabled_ui(!running, |ui| {
            egui::ComboBox::from_label("task").selected_text(task_name(form.task)).show_ui(ui, |ui| {
                for task in [Task::TextToImage, Task::Outpaint, Task::Deblur] {
                    ui.selectable_value(&mut form.task, task, task_name(task));
                }
            });
            if form.task == Task::TextToImage {
                let label = ui.label("Prompt:");
                ui.text_edit_singleline(&mut form.prompt).labelled_by(label.id);
            } else {
                ui.label(format!("Source: the open image ({})", open_image.as_deref().unwrap_or("none")));
            }
            let options = &mut form.options;
            ui.add(egui::Slider::new(&mut options.steps, 1..=MAX_STEPS).text("steps"));
            ui.add(egui::Slider::new(&mut options.layers, 1..=layers).text("layers"));
            options.ar_layers = options.ar_layers.min(options.layers);
            ui.add(egui::Slider::new(&mut options.ar_layers, 0..=options.layers).text("AR layers"));
            ui.add(egui::Slider::new(&mut options.temperature, 0.0..=2.0).text("temperature"));
            ui.add(egui::Slider::new(&mut form.examples, 1..=MAX_EXAMPLES).text("examples"));
            ui.horizontal(|ui| {
                ui.add(egui::DragValue::new(&mut options.seed));
                ui.label("seed");
            });
        });
        ui.horizontal(|ui| {
            if ui.add_enabled(!running && pool, egui::Button::new("Run")).clicked() {
                self.commands.push(Command::Generate);
            }
            if ui.add_enabled(running, egui::Button::new("Cancel")).clicked() {
                self.commands.push(Command::CancelGeneration);
            }
        });
        let Some(generation) = &self.generation else {
            return;
        };
        let total = generation.options.steps;
        let done = generation.frames.last().map_or(0, |f| f.frame.step);
        let progress = egui::ProgressBar::new(done as f32 / total as f32).text(format!("step {done} of {total}"));
        ui.add(progress.animate(running));
        match &generation.state {
            RunState::Running if generation.frames.is_empty() => ui.label("preparing the examples…"),
            RunState::Running => ui.label("generating…"),
            RunState::Finished => ui.label(format!("done: {} frames", generation.frames.len())),
            RunState::Cancelled => {
                ui.label(format!("cancelled after step {done}; its {} frames are kept", generation.frames.len()))
            }
            RunState::Failed(message) => ui.colored_label(ui.visuals().error_fg_color, message),
        };
    }

    /// The frames one by one: previous, play, next and a slider; the frame with its words;
    /// the corruption schedule; what to do with the frame.
    fn timeline_ui(&mut self, ui: &mut egui::Ui) {
        let Some(generation) = &self.generation else {
            ui.label("Run a generation: its frames appear here as they are made.");
            return;
        };
        if generation.frames.is_empty() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("waiting for the first frame");
            });
            return;
        }
        let (count, shown) = (generation.frames.len(), generation.shown);
        let mut commands = Vec::new();
        ui.horizontal(|ui| {
            if ui.add_enabled(shown > 0, egui::Button::new("Previous")).clicked() {
                commands.push(Command::ShowFrame(shown - 1));
            }
            let playing = generation.is_playing();
            if ui.button(if playing { "Pause" } else { "Play" }).clicked() {
                commands.push(Command::PlayFrames(!playing));
            }
            if ui.add_enabled(shown + 1 < count, egui::Button::new("Next")).clicked() {
                commands.push(Command::ShowFrame(shown + 1));
            }
            let mut index = shown;
            if ui.add(egui::Slider::new(&mut index, 0..=count - 1).text("frame")).changed() {
                commands.push(Command::ShowFrame(index));
            }
        });
        let frame = &generation.frames[shown];
        let steps = generation.options.steps;
        ui.label(format!(
            "step {} of {steps}: {} of {} words changed, outlined (examples' corruption {:.2})",
            frame.frame.step,
            frame.frame.changed.len(),
            frame.frame.words.len(),
            frame.frame.corruption
        ));
        let generated = generation.options.layers;
        let layer = self.frame_layer.min(generated);
        ui.horizontal(|ui| {
            ui.label("words of");
            for l in 1..=generated {
                if ui.selectable_label(l == layer, format!("layer {l}")).clicked() {
                    commands.push(Command::SelectFrameLayer(l));
                }
            }
        });
        let shape = self.model.shape();
        let changed: HashSet<_> = changed_cells(shape, &frame.frame.changed).into_iter().collect();
        ui.horizontal_top(|ui| {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(FRAME_SIDE, FRAME_SIDE), egui::Sense::hover());
            let vocabulary = self.model.codebook().vocabulary();
            paint_words(&ui.painter_at(rect), rect, frame.texture.id(), &frame.pyramid, layer, vocabulary, |cell| {
                changed.contains(&cell)
            });
            ui.vertical(|ui| {
                ui.label("Corruption of the examples by step (r_t)");
                corruption_plot(ui, generation, frame.frame.step);
                ui.add_space(8.0);
                if ui.button("Open in editor").on_hover_text("edit this frame's words in the studio").clicked() {
                    commands.push(Command::OpenFrame(shown));
                }
                let exports = [
                    (FrameExport::Current, "Export frame (PNG)…"),
                    (FrameExport::AllPng, "Export all frames (PNG)…"),
                    (FrameExport::Gif, "Export animated GIF…"),
                ];
                for (kind, label) in exports {
                    if ui.button(label).clicked() {
                        commands.push(Command::ExportFrames(kind));
                    }
                }
            });
        });
        self.commands.extend(commands);
    }
}

/// r_t against the step (the random start counts as fully corrupted), the shown step marked.
fn corruption_plot(ui: &mut egui::Ui, generation: &Generation, step: usize) {
    let options = &generation.options;
    let rate = |t: usize| {
        if t == 0 {
            1.0
        } else {
            options.corruption(t - 1) as f64
        }
    };
    let schedule: PlotPoints = (0..=options.steps).map(|t| [t as f64, rate(t)]).collect();
    Plot::new("corruption schedule")
        .width(PLOT_SIZE.x)
        .height(PLOT_SIZE.y)
        .x_axis_label("step")
        .include_y(0.0)
        .include_y(1.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .show(ui, |plot_ui| {
            plot_ui.line(Line::new("r_t", schedule));
            plot_ui.vline(VLine::new("shown step", step as f64));
            plot_ui.points(Points::new("shown step", vec![[step as f64, rate(step)]]).radius(5.0));
        });
}
