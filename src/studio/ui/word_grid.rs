//! The image with a layer's grid over it and each cell's word written inside its cell,
//! and beside it the reconstruction and the difference with the same grid. The Generate
//! panel draws its frames' words with the same [`paint_words`].

use eframe::egui::{self, Color32, FontId, Rect, Sense, Stroke, StrokeKind};

use super::super::{relevance, Cell, StudioApp};
use crate::codebook::vocabulary::Vocabulary;
use crate::pyramid::Pyramid;

/// How many nearest alternative words a cell offers.
const ALTERNATIVES: usize = 5;
/// Words are never drawn smaller than this (points): a word that does not fit on one line
/// goes on two, hyphenated, and one too long for that is shortened with an ellipsis (the
/// magnified hover shows it whole).
const MIN_FONT: f32 = 9.0;
/// A character's width as a share of the font size (proportional font, lower case).
const CHAR_WIDTH: f32 = 0.55;
const MAX_FONT: f32 = 22.0;
/// Font size of the hovered word, drawn magnified above its cell.
const MAGNIFIED_FONT: f32 = 22.0;
const SELECTED: Color32 = Color32::from_rgb(255, 200, 0);
/// Fill of a marked cell (a word that changed at the frame's step).
const MARKED: Color32 = Color32::from_rgba_premultiplied(90, 60, 0, 90);

impl StudioApp {
    /// The original image with the selected layer's words; hover shows a cell's details,
    /// a click opens it in the word editor.
    pub(super) fn word_grid_ui(&mut self, ui: &mut egui::Ui, side: f32) {
        let (Some(view), Some(document)) = (&self.view, &self.document) else { return };
        let codebook = self.model.codebook().clone();
        let vocabulary = codebook.vocabulary();
        let pyramid = document.pyramid();
        let layer = self.settings.layer;
        let s = pyramid.shape().grid_size(layer);
        let (rect, _) = ui.allocate_exact_size(egui::vec2(side, side), Sense::hover());
        let painter = ui.painter_at(rect);
        paint_words(&painter, rect, view.original.id(), pyramid, layer, vocabulary, |_| false);
        let mut hovered = None;
        let mut clicked = None;
        for row in 0..s {
            for col in 0..s {
                let cell = Cell { layer, row, col };
                let cell_rect = cell_rect(rect, s, row, col);
                let word = vocabulary.word(pyramid.word(layer, row, col));
                let response = ui.interact(cell_rect, egui::Id::unique(("word cell", cell)), Sense::click());
                response.widget_info(|| {
                    let label = format!("layer {layer}, row {}, column {}: {word}", row + 1, col + 1);
                    egui::WidgetInfo::labeled(egui::Role::Button, true, label)
                });
                if response.clicked() {
                    clicked = Some(cell);
                }
                if response.hovered() {
                    hovered = Some((cell, response));
                }
            }
        }
        if let Some(cell) = self.editor.cell.filter(|c| c.layer == layer) {
            let selected = cell_rect(rect, s, cell.row, cell.col);
            painter.rect_stroke(selected, 0.0, Stroke::new(3.0, SELECTED), StrokeKind::Inside);
            if std::mem::take(&mut self.editor.reveal_cell) {
                ui.scroll_to_rect(selected, None);
            }
        }
        if let Some((cell, _)) = &hovered {
            let word = vocabulary.word(pyramid.word(layer, cell.row, cell.col));
            magnify(ui, rect, cell_rect(rect, s, cell.row, cell.col), word);
        }
        self.hovered = hovered.as_ref().map(|(cell, _)| *cell);
        if let Some((cell, response)) = hovered {
            let alternatives = self.alternatives(cell);
            response.on_hover_ui(|ui| self.cell_details_ui(ui, cell, &alternatives));
        }
        if let Some(cell) = clicked {
            self.open_cell(cell);
        }
    }

    /// Reconstruction from the chosen prefix and its difference to the original, stacked.
    pub(super) fn reconstruction_ui(&self, ui: &mut egui::Ui, side: f32) {
        let Some(view) = &self.view else { return };
        let k = self.settings.prefix_layers;
        // An edit's prefix on screen arrives before the others: show it at once.
        let current = self.document.as_ref().map(|d| d.version());
        let preview = self.preview.as_ref().filter(|p| Some(p.version) == current && p.layers == k);
        let (psnr, texture) = match preview {
            Some(p) => (p.psnr_db, p.texture.id()),
            None => (view.decoded.psnr_db[k - 1], view.prefixes[k - 1]),
        };
        ui.label(format!("Reconstruction from layers 1–{k}  (PSNR {})", super::decibels(psnr)));
        self.gridded_image_ui(ui, texture, side);
        ui.label("Difference |original − reconstruction|");
        self.gridded_image_ui(ui, view.differences[k - 1].id(), side);
    }

    /// An image with the selected layer's grid lines and the hovered cell marked.
    fn gridded_image_ui(&self, ui: &mut egui::Ui, texture: egui::TextureId, side: f32) {
        let (rect, _) = ui.allocate_exact_size(egui::vec2(side, side), Sense::hover());
        let painter = ui.painter_at(rect);
        painter.image(texture, rect, unit_uv(), Color32::WHITE);
        let s = self.model.shape().grid_size(self.settings.layer);
        let line = Stroke::new(1.0, Color32::from_white_alpha(60));
        for i in 1..s {
            let t = i as f32 / s as f32;
            painter.vline(rect.left() + t * rect.width(), rect.y_range(), line);
            painter.hline(rect.x_range(), rect.top() + t * rect.height(), line);
        }
        for (cell, color) in [(self.hovered, Color32::WHITE), (self.editor.cell, SELECTED)] {
            if let Some(cell) = cell.filter(|c| c.layer == self.settings.layer) {
                painter.rect_stroke(
                    cell_rect(rect, s, cell.row, cell.col),
                    0.0,
                    Stroke::new(2.0, color),
                    StrokeKind::Inside,
                );
            }
        }
    }

    /// The hover card of a cell: word, token id, layer, quantization error, relevance and
    /// the nearest alternative words.
    fn cell_details_ui(&self, ui: &mut egui::Ui, cell: Cell, alternatives: &[u32]) {
        let (Some(document), Some(view)) = (&self.document, &self.view) else { return };
        let vocabulary = self.model.codebook().vocabulary();
        let word = document.pyramid().word(cell.layer, cell.row, cell.col);
        let s = document.pyramid().shape().grid_size(cell.layer);
        ui.heading(vocabulary.word(word));
        ui.label(format!("token id {}", vocabulary.token_id(word)));
        ui.label(format!("layer {}, row {}, column {} of {s} x {s}", cell.layer, cell.row + 1, cell.col + 1));
        if view.version == document.version() {
            let error = view.decoded.cell_errors[cell.layer - 1][cell.row * s + cell.col];
            ui.label(format!("quantization error (mean squared, zhat_{} vs z): {error:.4}", cell.layer));
        }
        match relevance::relevance(document, word) {
            Ok(r) => ui.label(format!("relevance to the image: {r:.3}")),
            Err(reason) => ui.label(format!("relevance: n/a ({reason})")),
        };
        let words: Vec<&str> = alternatives.iter().map(|&w| vocabulary.word(w)).collect();
        ui.label(format!("nearest alternatives: {}", words.join(", ")));
    }

    /// The words nearest to a cell's SAQ target (given the current pyramid's upper layers),
    /// without the cell's own word; cached for the view shown.
    pub(super) fn alternatives(&mut self, cell: Cell) -> Vec<u32> {
        let (Some(view), Some(document)) = (&self.view, &self.document) else { return Vec::new() };
        let current = document.pyramid().word(cell.layer, cell.row, cell.col);
        let codebook = self.model.codebook();
        let found = self.alternatives.entry(cell).or_insert_with(|| {
            let s = document.pyramid().shape().grid_size(cell.layer);
            let dim = codebook.dim();
            let start = (cell.row * s + cell.col) * dim;
            let target = &view.decoded.targets[cell.layer - 1][start..start + dim];
            codebook.nearest_k(target, ALTERNATIVES + 1).into_iter().map(|(word, _)| word).collect()
        });
        found.iter().copied().filter(|&w| w != current).take(ALTERNATIVES).collect()
    }
}

/// `texture` in `rect`, dimmed, with the grid of `layer` over it and each cell's word of
/// `pyramid` written inside its cell; cells for which `marked` is true are highlighted.
pub(super) fn paint_words(
    painter: &egui::Painter,
    rect: Rect,
    texture: egui::TextureId,
    pyramid: &Pyramid,
    layer: usize,
    vocabulary: &Vocabulary,
    marked: impl Fn(Cell) -> bool,
) {
    painter.image(texture, rect, unit_uv(), Color32::WHITE);
    // Dim the image a little so white words read on light images too.
    painter.rect_filled(rect, 0.0, Color32::from_black_alpha(70));
    let s = pyramid.shape().grid_size(layer);
    for row in 0..s {
        for col in 0..s {
            let cell_rect = cell_rect(rect, s, row, col);
            if marked(Cell { layer, row, col }) {
                painter.rect_filled(cell_rect, 0.0, MARKED);
                painter.rect_stroke(cell_rect, 0.0, Stroke::new(2.0, SELECTED), StrokeKind::Inside);
            } else {
                painter.rect_stroke(
                    cell_rect,
                    0.0,
                    Stroke::new(1.0, Color32::from_white_alpha(90)),
                    StrokeKind::Inside,
                );
            }
            let (text, size) =
                fitted_label(cell_rect.width(), cell_rect.height(), vocabulary.word(pyramid.word(layer, row, col)));
            let font = FontId::proportional(size);
            let clipped = painter.with_clip_rect(cell_rect.shrink(1.0));
            let center = cell_rect.center();
            clipped.text(
                center + egui::vec2(1.0, 1.0),
                egui::Align2::CENTER_CENTER,
                &text,
                font.clone(),
                Color32::BLACK,
            );
            clipped.text(center, egui::Align2::CENTER_CENTER, &text, font, Color32::WHITE);
        }
    }
}

fn unit_uv() -> Rect {
    Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0))
}

fn cell_rect(image: Rect, s: usize, row: usize, col: usize) -> Rect {
    let cell = image.width() / s as f32;
    Rect::from_min_size(image.min + egui::vec2(col as f32 * cell, row as f32 * cell), egui::vec2(cell, cell))
}

/// How a word is written in a cell `width` x `height` points: the text (one line, two
/// hyphenated lines, or shortened with an ellipsis) and its font size, the largest up to
/// [`MAX_FONT`] that fits, never below [`MIN_FONT`].
pub(super) fn fitted_label(width: f32, height: f32, word: &str) -> (String, f32) {
    let usable = width * 0.92;
    let size_for =
        |chars: usize, lines: f32| (usable / (CHAR_WIDTH * chars.max(1) as f32)).min(height * 0.9 / (1.25 * lines));
    let chars = word.chars().count();
    let one_line = size_for(chars, 1.0).min(height * 0.45);
    if one_line >= MIN_FONT {
        return (word.to_string(), one_line.min(MAX_FONT));
    }
    let half = chars.div_ceil(2);
    let two_lines = size_for(half + 1, 2.0);
    if chars >= 4 && two_lines >= MIN_FONT {
        let first: String = word.chars().take(half).collect();
        let second: String = word.chars().skip(half).collect();
        return (format!("{first}-\n{second}"), two_lines.min(MAX_FONT));
    }
    let fits = (usable / (CHAR_WIDTH * MIN_FONT)).floor() as usize;
    let kept: String = word.chars().take(fits.saturating_sub(1).max(1)).collect();
    (format!("{kept}…"), MIN_FONT)
}

/// The hovered word, large, in a box above its cell (below it in the image's top row).
fn magnify(ui: &egui::Ui, image: Rect, cell: Rect, word: &str) {
    let painter =
        ui.ctx().layer_painter(egui::LayerId::new(egui::Order::Foreground, egui::Id::unique("magnified word")));
    let galley = painter.layout_no_wrap(word.to_string(), FontId::proportional(MAGNIFIED_FONT), Color32::WHITE);
    let size = galley.size() + egui::vec2(12.0, 6.0);
    let above = cell.top() - size.y / 2.0 - 2.0;
    let y = if above - size.y / 2.0 < image.top() { cell.bottom() + size.y / 2.0 + 2.0 } else { above };
    let box_rect = Rect::from_center_size(egui::pos2(cell.center().x, y), size);
    painter.rect_filled(box_rect, 4.0, Color32::from_black_alpha(220));
    painter.galley(box_rect.min + egui::vec2(6.0, 3.0), galley, Color32::WHITE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_fit_on_one_line_two_lines_or_shortened() {
        // A short word in a big cell: one line, as large as allowed.
        assert_eq!(fitted_label(200.0, 200.0, "cat"), ("cat".to_string(), MAX_FONT));
        // "perennial" in a 37-point cell (layer 6 at the usual size): 37 * 0.92 / (0.55 * 9)
        // = 6.9 points on one line, too small; on two lines of 5 it is 37 * 0.92 / (0.55 * 6).
        let (text, size) = fitted_label(37.0, 37.0, "perennial");
        assert_eq!(text, "peren-\nnial");
        assert!((size - 37.0 * 0.92 / (0.55 * 6.0)).abs() < 1e-4, "{size}");
        // Too long for two lines: shortened to what fits at the smallest size, marked.
        let (text, size) = fitted_label(20.0, 20.0, "affiliations");
        let fits = (20.0f32 * 0.92 / (0.55 * MIN_FONT)).floor() as usize;
        assert_eq!(text, format!("{}…", &"affiliations"[..fits - 1]));
        assert_eq!(size, MIN_FONT);
    }
}
