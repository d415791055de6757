//! The whole pyramid as text (the core's text format): edit freely, apply, and see a parse
//! error at its line with the vocabulary's suggestions.

use eframe::egui;

use super::super::{Command, StudioApp};
use crate::pyramid::text as pyramid_text;

impl StudioApp {
    pub(super) fn text_editor_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Pyramid as text");
        let Some(document) = &self.document else { return };
        let vocabulary = self.model.codebook().vocabulary();
        if !self.editor.text_edited && self.editor.text_version != Some(document.version()) {
            self.editor.text = pyramid_text::format(document.pyramid(), vocabulary);
            self.editor.text_version = Some(document.version());
            self.editor.text_error = None;
        }
        let error_line = self.editor.text_error.as_ref().map(|e| e.line);
        // No wrapping: each line is a row of the grid, and wrapped rows would hide the grid.
        let mut layouter = |ui: &egui::Ui, text: &dyn egui::TextBuffer, _wrap_width: f32| {
            let mut job = egui::text::LayoutJob::default();
            let font = egui::TextStyle::Monospace.resolve(ui.style());
            for (i, line) in text.as_str().split_inclusive('\n').enumerate() {
                let mut format = egui::TextFormat::simple(font.clone(), ui.visuals().text_color());
                if Some(i + 1) == error_line {
                    format.background = ui.visuals().error_fg_color.gamma_multiply(0.35);
                }
                job.append(line, 0.0, format);
            }
            ui.fonts_mut(|fonts| fonts.layout_job(job))
        };
        let label = ui.label("Edit any word, then apply:");
        let width = ui.available_width();
        let response = egui::ScrollArea::both()
            .max_height(320.0)
            .show(ui, |ui| {
                egui::TextEdit::multiline(&mut self.editor.text)
                    .code_editor()
                    .desired_width(width)
                    .layouter(&mut layouter)
                    .show(ui)
                    .response
                    .response
                    .labelled_by(label.id)
            })
            .inner;
        if response.changed() {
            self.editor.text_edited = true;
        }
        if let Some(error) = &self.editor.text_error {
            ui.colored_label(ui.visuals().error_fg_color, error.to_string());
            if !error.suggestions.is_empty() {
                ui.label(format!("did you mean: {}", error.suggestions.join(", ")));
            }
        }
        ui.horizontal(|ui| {
            if ui.add_enabled(self.editor.text_edited, egui::Button::new("Apply text")).clicked() {
                match pyramid_text::parse(&self.editor.text, document.pyramid().shape(), vocabulary) {
                    Ok(pyramid) => {
                        self.commands.push(Command::ReplacePyramid(pyramid));
                        self.editor.text_edited = false;
                        self.editor.text_error = None;
                    }
                    Err(error) => self.editor.text_error = Some(error),
                }
            }
            if ui.add_enabled(self.editor.text_edited, egui::Button::new("Discard text changes")).clicked() {
                self.editor.text_edited = false;
                self.editor.text_version = None;
            }
        });
    }
}
