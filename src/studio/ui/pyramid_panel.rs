//! The pyramid panel (layers, prefix slider, history, the editors) and the strip of layer
//! prefix reconstructions under the image.

use eframe::egui;

use super::super::{Command, StudioApp};
use super::STRIP_HEIGHT;

impl StudioApp {
    pub(super) fn pyramid_panel_ui(&mut self, ui: &mut egui::Ui) {
        let shape = self.model.shape().clone();
        ui.heading("Pyramid");
        ui.label("Show the words of layer:");
        for layer in 1..=shape.layers() {
            let s = shape.grid_size(layer);
            let label = format!("Layer {layer}: {s}x{s}, {} words", shape.tokens_in_layer(layer));
            if ui.selectable_label(self.settings.layer == layer, label).clicked() {
                self.commands.push(Command::SelectLayer(layer));
            }
        }
        ui.separator();
        let mut prefix = self.settings.prefix_layers;
        let slider = egui::Slider::new(&mut prefix, 1..=shape.layers()).text("layers decoded (coarse to fine)");
        if ui.add(slider).changed() {
            self.commands.push(Command::SetPrefixLayers(prefix));
        }
        let zoom = egui::Slider::new(&mut self.settings.zoom, 1.0..=crate::studio::state::MAX_ZOOM)
            .text("word grid zoom (scroll to pan)");
        ui.add(zoom).on_hover_text("arrow keys move the selected cell; Enter edits its word");
        ui.separator();
        ui.horizontal(|ui| self.history_buttons_ui(ui));
        ui.separator();
        self.word_editor_ui(ui);
        if self.settings.show_text_editor {
            ui.separator();
            self.text_editor_ui(ui);
        }
    }

    /// Every prefix's reconstruction with its PSNR; a click decodes the main view from it.
    pub(super) fn prefix_strip_ui(&mut self, ui: &mut egui::Ui) {
        let Some(view) = &self.view else { return };
        let count = view.prefixes.len();
        let spacing = ui.spacing().item_spacing.x;
        let label_height = 2.0 * ui.text_style_height(&egui::TextStyle::Body);
        let side = ((ui.available_width() - spacing * count as f32) / count as f32).min(STRIP_HEIGHT - label_height);
        let mut chosen = None;
        ui.horizontal_top(|ui| {
            for (i, &texture) in view.prefixes.iter().enumerate() {
                let k = i + 1;
                ui.vertical(|ui| {
                    let current = k == self.settings.prefix_layers;
                    ui.set_width(side);
                    let decibels = super::decibels(view.decoded.psnr_db[i]);
                    // The short form where the long one would not fit (a narrow window).
                    let text = if side >= 140.0 {
                        format!("layers 1–{k}: {decibels}")
                    } else {
                        format!("1–{k}: {decibels}")
                    };
                    let rich = if current { egui::RichText::new(&text).strong() } else { egui::RichText::new(&text) };
                    // Cut short with an ellipsis in a narrow window, never wrapped letter by letter.
                    ui.add(egui::Label::new(rich).truncate()).on_hover_text(format!("layers 1–{k}: {decibels}"));
                    let image = egui::Image::new(egui::load::SizedTexture::new(texture, [side, side]))
                        .fit_to_exact_size(egui::vec2(side, side))
                        .sense(egui::Sense::click());
                    let response = ui.add(image).on_hover_text(format!("decode the main view from layers 1–{k}"));
                    if current {
                        ui.painter().rect_stroke(
                            response.rect,
                            0.0,
                            ui.visuals().selection.stroke,
                            egui::StrokeKind::Outside,
                        );
                    }
                    if response.clicked() {
                        chosen = Some(k);
                    }
                });
            }
        });
        if let Some(k) = chosen {
            self.commands.push(Command::SetPrefixLayers(k));
        }
    }
}
