//! The Describe panel: the frozen LLM captions the open image or answers a question about
//! it, after examples from the pool; the examples and the prompt are shown on demand.

use eframe::egui;

use super::super::describe::DescribeState;
use super::super::{Command, StudioApp};

/// The most examples the panel offers (16 with 4 layers each, about 1,600 tokens, fit
/// the LLM's context).
const MAX_EXAMPLES: usize = 16;

impl StudioApp {
    pub(super) fn describe_panel_ui(&mut self, ui: &mut egui::Ui) {
        self.llm_status_ui(ui);
        ui.label(
            "The LLM reads the open image's words after examples from the pool (their words and their caption, or \
             the data's answer to the question) and writes one line. The questions the examples can answer come \
             from the data: what is it, which category, which main colour, photo or drawing.",
        );
        let layers = self.model.shape().layers();
        let form = &mut self.describe_form;
        ui.add(egui::Slider::new(&mut form.caption_layers, 1..=layers).text("layers per image: caption"));
        ui.add(egui::Slider::new(&mut form.ask_layers, 1..=layers).text("layers per image: question"))
            .on_hover_text("Layer 4's appearance words carry colours, which the upper layers leave out");
        ui.add(egui::Slider::new(&mut form.examples, 1..=MAX_EXAMPLES).text("examples"));
        let running = self.description.as_ref().is_some_and(|d| d.is_running());
        ui.horizontal(|ui| {
            if ui.add_enabled(!running, egui::Button::new("Caption")).clicked() {
                self.commands.push(Command::Caption);
            }
            ui.separator();
            let label = ui.label("Question:");
            ui.add(egui::TextEdit::singleline(&mut self.describe_form.question).desired_width(220.0))
                .labelled_by(label.id);
            if ui.add_enabled(!running, egui::Button::new("Ask")).clicked() {
                self.commands.push(Command::Ask);
            }
            if running && ui.button("Cancel").clicked() {
                self.commands.push(Command::CancelDescribe);
            }
        });
        ui.separator();
        let Some(description) = &self.description else { return };
        let asked = description.question.as_deref().map_or("Caption".to_string(), |q| format!("Q: {q}"));
        match &description.state {
            DescribeState::Running => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!("{asked}: the first run encodes the pool's words, then the LLM writes…"));
                });
            }
            DescribeState::Failed(message) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("{asked}: {message}"));
            }
            DescribeState::Done(done) => {
                ui.label(asked);
                ui.heading(if done.answer.is_empty() { "(an empty line)" } else { &done.answer });
                egui::CollapsingHeader::new(format!("the {} examples (nearest words first)", done.examples.len()))
                    .show(ui, |ui| {
                        ui.label(format!("each answers \"{}\" from the data", done.answered));
                        for (words, text) in &done.examples {
                            ui.label(format!("{words} -> {text}"));
                        }
                    });
                egui::CollapsingHeader::new(format!("the prompt ({} tokens)", done.prompt_tokens)).show(ui, |ui| {
                    egui::ScrollArea::vertical().max_height(220.0).show(ui, |ui| {
                        ui.add(egui::Label::new(egui::RichText::new(&done.prompt).monospace()).wrap());
                    });
                });
            }
        }
    }
}
