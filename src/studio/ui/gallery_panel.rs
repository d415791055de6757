//! The Gallery panel: a folder's images as thumbnails with their layer-1 and layer-2
//! words, a word search that highlights the cells holding the word, and a click that opens
//! an image in the editor.

use eframe::egui::{self, Color32, Rect, Sense, Stroke, StrokeKind};

use super::super::gallery::{IndexState, Item};
use super::super::{Command, StudioApp};
use super::display_name;
use crate::pyramid::PyramidShape;

/// Side of a thumbnail, in points.
const THUMBNAIL: f32 = 112.0;
const HIGHLIGHT: Color32 = Color32::from_rgb(255, 200, 0);

impl StudioApp {
    pub(super) fn gallery_panel_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if ui.button("Open folder…").clicked() {
                self.commands.push(Command::PickFolder);
            }
            match &self.gallery {
                Some(gallery) => ui.label(format!("folder: {}", gallery.folder.display())),
                None => ui.label("(no folder yet: open one, drop one on the window, or start with spae-studio DIR)"),
            };
        });
        let Some(gallery) = &mut self.gallery else { return };
        ui.horizontal(|ui| {
            let fraction = if gallery.total == 0 { 0.0 } else { gallery.done as f32 / gallery.total as f32 };
            match &gallery.state {
                IndexState::Running => {
                    ui.add(
                        egui::ProgressBar::new(fraction)
                            .desired_width(220.0)
                            .text(format!("encoding {}/{}", gallery.done, gallery.total)),
                    );
                    if ui.button("Cancel").clicked() {
                        self.commands.push(Command::CancelIndexing);
                    }
                }
                IndexState::Finished => {
                    ui.label(format!("{} images indexed", gallery.items.len()));
                }
                IndexState::Cancelled => {
                    ui.label(format!(
                        "cancelled after {} of {} files ({} images shown); open the folder again to go on",
                        gallery.done,
                        gallery.total,
                        gallery.items.len()
                    ));
                }
                IndexState::Failed(message) => {
                    ui.colored_label(ui.visuals().error_fg_color, format!("indexing failed: {message}"));
                }
            }
        });
        ui.horizontal(|ui| {
            ui.label("Find a word:");
            ui.add(egui::TextEdit::singleline(&mut gallery.query).hint_text("e.g. cat").desired_width(160.0));
        });
        let shown = gallery.shown();
        let word = gallery.query.trim().to_string();
        if !word.is_empty() {
            let cells: usize = shown.iter().map(|(_, cells)| cells.len()).sum();
            ui.label(format!(
                "{} of {} images hold \"{word}\" ({cells} cells in all), most first; highlighted where it sits",
                shown.len(),
                gallery.items.len()
            ));
        }
        if !gallery.skipped.is_empty() {
            egui::CollapsingHeader::new(format!("{} skipped (not images, or unreadable)", gallery.skipped.len())).show(
                ui,
                |ui| {
                    for entry in &gallery.skipped {
                        ui.label(format!("{}: {}", entry.file, entry.skipped.as_deref().unwrap_or_default()));
                    }
                },
            );
        }
        ui.separator();
        let shape = self.model.shape().clone();
        let mut clicked = None;
        egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
            // Rows of as many thumbnails as the panel is wide.
            let spacing = ui.spacing().item_spacing.x;
            let columns = (((ui.available_width() + spacing) / (THUMBNAIL + spacing)) as usize).max(1);
            for row in shown.chunks(columns) {
                ui.horizontal_top(|ui| {
                    for (i, cells) in row {
                        let item = &gallery.items[*i];
                        if let Some(path) = thumbnail_ui(ui, &shape, item, cells) {
                            clicked = Some(path);
                        }
                    }
                });
                ui.add_space(spacing);
            }
        });
        if let Some(path) = clicked {
            self.commands.push(Command::Open(path));
        }
    }
}

/// One image of the gallery: its thumbnail with the cells that hold the searched word
/// outlined, its name and its layer-1 and layer-2 words. Returns its path when clicked.
fn thumbnail_ui(
    ui: &mut egui::Ui,
    shape: &PyramidShape,
    item: &Item,
    cells: &[crate::tasks::word_index::CellAt],
) -> Option<std::path::PathBuf> {
    let mut clicked = None;
    ui.vertical(|ui| {
        ui.set_width(THUMBNAIL);
        let (rect, response) = ui.allocate_exact_size(egui::vec2(THUMBNAIL, THUMBNAIL), Sense::click());
        let painter = ui.painter_at(rect);
        match &item.thumbnail {
            Some(texture) => {
                let uv = Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
                painter.image(texture.id(), rect, uv, Color32::WHITE);
            }
            None => {
                painter.rect_filled(rect, 0.0, ui.visuals().faint_bg_color);
            }
        }
        for &(layer, row, col) in cells {
            let cell = rect.width() / shape.grid_size(layer) as f32;
            let cell_rect = Rect::from_min_size(
                rect.min + egui::vec2(col as f32 * cell, row as f32 * cell),
                egui::vec2(cell, cell),
            );
            painter.rect_stroke(cell_rect, 0.0, Stroke::new(2.0, HIGHLIGHT), StrokeKind::Inside);
        }
        if response.on_hover_text(format!("open {} in the editor", item.path.display())).clicked() {
            clicked = Some(item.path.clone());
        }
        ui.add(egui::Label::new(egui::RichText::new(display_name(&item.path)).small()).truncate());
        if let Some(words) = &item.entry.words {
            let top = words.first().map_or(String::new(), |w| w.join(" "));
            ui.add(egui::Label::new(egui::RichText::new(top).strong()).truncate());
            if let Some(second) = words.get(1) {
                ui.add(egui::Label::new(egui::RichText::new(second.join(" ")).small()).truncate());
            }
        }
        if !cells.is_empty() {
            ui.label(egui::RichText::new(format!("{} cells", cells.len())).small());
        }
    });
    clicked
}
