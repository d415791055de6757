//! The Classify panel: labelled support images, the query image and the layers written
//! into the prompt; the LLM's answer with every class's score and the prompt it read.

use eframe::egui;
use egui_plot::{Bar, BarChart, Plot};

use super::super::{Command, StudioApp, SupportSource};
use crate::llm::log_softmax;
use crate::tasks::fewshot;

/// Height of the prompt's scrolling box.
const PROMPT_HEIGHT: f32 = 180.0;
/// Height of the class scores' bar plot.
const SCORES_HEIGHT: f32 = 140.0;
/// Width of a support image's file name and of its label.
const NAME_WIDTH: f32 = 160.0;

impl StudioApp {
    pub(super) fn classify_panel_ui(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            self.classify_form_ui(ui);
            ui.separator();
            self.classify_result_ui(ui);
        });
    }

    /// The support images with their labels, the query, the layers, and Run.
    fn classify_form_ui(&mut self, ui: &mut egui::Ui) {
        self.llm_status_ui(ui);
        ui.heading("Support images");
        let mut commands = Vec::new();
        let running = self.classification.is_running();
        if self.classification.support.is_empty() {
            ui.label("Add labelled examples: at least two classes, one image or more each.");
        }
        for (i, image) in self.classification.support.iter_mut().enumerate() {
            ui.horizontal(|ui| {
                let name = image.path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
                let size = egui::vec2(NAME_WIDTH, ui.spacing().interact_size.y);
                let label = ui.add_sized(size, egui::Label::new(&name).truncate());
                let label = label.on_hover_text(image.path.display().to_string());
                egui::TextEdit::singleline(&mut image.label)
                    .hint_text("class label")
                    .desired_width(NAME_WIDTH)
                    .show(ui)
                    .response
                    .response
                    .labelled_by(label.id);
                if ui.small_button("Remove").on_hover_text(format!("remove {name}")).clicked() {
                    commands.push(Command::RemoveSupportImage(i));
                }
            });
        }
        ui.horizontal(|ui| {
            if ui.button("Add support image…").clicked() {
                commands.push(Command::AddSupportImage);
            }
            if ui.button("Load support folder…").on_hover_text("one subfolder of images per class").clicked() {
                commands.push(Command::LoadSupport(SupportSource::Folder));
            }
            if ui.button("Load support list…").on_hover_text("a text file of label<TAB>image path lines").clicked() {
                commands.push(Command::LoadSupport(SupportSource::List));
            }
        });
        ui.separator();
        ui.horizontal(|ui| {
            let query = match (&self.classification.query, &self.document) {
                (Some(path), _) => path.display().to_string(),
                (None, Some(document)) => format!("the open image ({})", document.path.display()),
                (None, None) => "the open image (none is open)".into(),
            };
            ui.label(format!("Query: {query}"));
        });
        ui.horizontal(|ui| {
            if ui.button("Choose query image…").clicked() {
                commands.push(Command::PickQueryImage);
            }
            if ui.add_enabled(self.classification.query.is_some(), egui::Button::new("Use the open image")).clicked() {
                commands.push(Command::QueryOpenImage);
            }
        });
        let layers = self.model.shape().layers();
        ui.add(egui::Slider::new(&mut self.classification.layers, 1..=layers).text("layers per image"));
        ui.horizontal(|ui| {
            if ui.add_enabled(!running, egui::Button::new("Run classification")).clicked() {
                commands.push(Command::Classify);
            }
            if running {
                ui.spinner();
                ui.label("classifying…");
            }
        });
        self.commands.extend(commands);
    }

    /// The answer, the class scores (a bar plot of each class's share and the sorted
    /// calibrated scores) and the prompt.
    fn classify_result_ui(&self, ui: &mut egui::Ui) {
        let result = match &self.classification.result {
            None => return,
            Some(Err(message)) => {
                ui.colored_label(ui.visuals().error_fg_color, message);
                return;
            }
            Some(Ok(result)) => result,
        };
        ui.heading(format!("Answer: {}", result.classes[result.answer]));
        let shares: Vec<f64> = log_softmax(&result.scores).iter().map(|&l| f64::from(l).exp()).collect();
        let bars =
            shares.iter().enumerate().map(|(i, &share)| Bar::new(i as f64, share).name(&result.classes[i])).collect();
        let names = result.classes.clone();
        Plot::new("class scores")
            .height(SCORES_HEIGHT)
            .include_y(0.0)
            .include_y(1.0)
            .y_axis_label("share among the classes")
            .x_axis_formatter(move |mark, _| {
                let i = mark.value.round();
                match (i - mark.value).abs() < 1e-6 && i >= 0.0 {
                    true => names.get(i as usize).cloned().unwrap_or_default(),
                    false => String::new(),
                }
            })
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .show(ui, |plot_ui| plot_ui.bar_chart(BarChart::new("share", bars).width(0.6)));
        let mut order: Vec<usize> = (0..result.classes.len()).collect();
        order.sort_by(|&a, &b| result.scores[b].total_cmp(&result.scores[a]));
        ui.label(format!(
            "Each class name's calibrated score (its log-probability after the prompt, less that without the query's \
             words), {}:",
            fewshot::orderings_phrase(result.orderings)
        ));
        for i in order {
            let text = format!("{:>9.3}  {}", result.scores[i], result.classes[i]);
            let text = egui::RichText::new(text).monospace();
            ui.label(if i == result.answer { text.strong() } else { text });
        }
        ui.label(format!("Prompt ({} tokens, the examples in their first ordering):", result.prompt_tokens));
        egui::ScrollArea::vertical().max_height(PROMPT_HEIGHT).show(ui, |ui| {
            ui.add(egui::TextEdit::multiline(&mut result.prompt.as_str()).code_editor().desired_width(f32::INFINITY));
        });
    }
}
