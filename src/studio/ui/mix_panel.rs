//! The Mix panel: the open image, a second image, and the decode of a pyramid that takes
//! some layers from each.

use eframe::egui;

use super::super::{Command, StudioApp};
use super::display_name;

/// Side of each of the three images, in points.
const IMAGE_SIDE: f32 = 192.0;

impl StudioApp {
    pub(super) fn mix_panel_ui(&mut self, ui: &mut egui::Ui) {
        let layers = self.model.shape().layers();
        ui.label(
            "Take layers 1..k from one pyramid and the rest from the other: SPAE means the upper layers to \
             say what the image shows and the lower ones how it looks; a mix shows what this model's layers carry.",
        );
        ui.horizontal(|ui| {
            if ui.button("Choose the second image…").clicked() {
                self.commands.push(Command::PickMixImage);
            }
            match (&self.mixing.opening, &self.mixing.second) {
                (Some(path), _) => {
                    ui.spinner();
                    ui.label(format!("encoding {}", path.display()));
                }
                (None, Some(second)) => {
                    ui.label(format!("second image: {}", display_name(&second.path)))
                        .on_hover_text(second.path.display().to_string());
                }
                (None, None) => {
                    ui.label("(none yet)");
                }
            }
        });
        let (Some(document), Some(view)) = (&self.document, &self.view) else {
            ui.label("Open an image first: it is the mix's first pyramid.");
            return;
        };
        let first_name = display_name(&document.path);
        let second_name = self.mixing.second.as_ref().map_or("second image".to_string(), |s| display_name(&s.path));
        let (upper, lower) =
            if self.mixing.reversed { (&second_name, &first_name) } else { (&first_name, &second_name) };
        ui.separator();
        let mixing = &mut self.mixing;
        ui.add(egui::Slider::new(&mut mixing.split, 0..=layers).text(format!("layers 1..k from {upper}")));
        ui.horizontal(|ui| {
            ui.label("Swap one layer:");
            let shown = mixing.swapped.map_or("none".to_string(), |l| format!("layer {l}"));
            egui::ComboBox::from_id_salt("mix swapped layer").selected_text(shown).show_ui(ui, |ui| {
                ui.selectable_value(&mut mixing.swapped, None, "none");
                for layer in 1..=layers {
                    ui.selectable_value(&mut mixing.swapped, Some(layer), format!("layer {layer}"));
                }
            });
            if ui.button("Exchange the two").on_hover_text("take the upper layers from the other image").clicked() {
                mixing.reversed = !mixing.reversed;
            }
        });
        let from_second = mixing.from_second(layers);
        let sources: Vec<String> = from_second
            .iter()
            .enumerate()
            .map(|(i, &second)| format!("{}: {}", i + 1, if second { &second_name } else { &first_name }))
            .collect();
        ui.label(format!(
            "Layer sources: {}  ({upper} gives layers 1..{}, {lower} the rest)",
            sources.join(", "),
            mixing.split
        ));
        ui.separator();
        let side = IMAGE_SIDE.min((ui.available_width() - 4.0 * ui.spacing().item_spacing.x) / 3.0).max(64.0);
        let size = egui::vec2(side, side);
        let first_texture = view.prefixes[layers - 1];
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.label(format!("{first_name} (open, as edited)"));
                ui.add(egui::Image::new(egui::load::SizedTexture::new(first_texture, size)));
            });
            ui.vertical(|ui| {
                ui.label(second_name.clone());
                match &self.mixing.second {
                    Some(second) => ui.add(egui::Image::new(egui::load::SizedTexture::new(second.texture.id(), size))),
                    None => ui.allocate_response(size, egui::Sense::hover()),
                };
            });
            ui.vertical(|ui| {
                ui.label("Mix");
                match (&self.mixing.mixed, self.mixing.second.is_some()) {
                    (Some(mixed), true) => {
                        ui.add(egui::Image::new(egui::load::SizedTexture::new(mixed.texture.id(), size)));
                    }
                    _ => {
                        ui.allocate_ui(size, |ui| ui.label("choose a second image"));
                    }
                }
            });
        });
        let current = self.mix_is_current();
        ui.horizontal(|ui| {
            if ui.add_enabled(current, egui::Button::new("Export the mix (PNG)…")).clicked() {
                self.commands.push(Command::ExportMix);
            }
            if self.mixing.second.is_some() && !current {
                ui.spinner();
                ui.label("decoding the mix");
            }
        });
    }
}
