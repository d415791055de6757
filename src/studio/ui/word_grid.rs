//! The image with a layer's grid over it and each cell's word written inside its cell,
//! and beside it the reconstruction and the difference with the same grid. The Generate
//! panel draws its frames' words with the same [`paint_words`].

use eframe::egui::{self, Color32, FontId, Rect, Sense, Stroke, StrokeKind};

use super::super::{relevance, Cell, StudioApp};
use crate::pyramid::Pyramid;
use crate::vocabulary::Vocabulary;

/// How many nearest alternative words a cell offers.
const ALTERNATIVES: usize = 5;
/// Words are never drawn smaller than this (points); longer words are clipped to their cell.
const MIN_FONT: f32 = 6.0;
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
            painter.rect_stroke(
                cell_rect(rect, s, cell.row, cell.col),
                0.0,
                Stroke::new(3.0, SELECTED),
                StrokeKind::Inside,
            );
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
        let psnr = view.decoded.psnr_db[k - 1];
        ui.label(format!("Reconstruction from layers 1–{k}  (PSNR {psnr:.1} dB)"));
        self.gridded_image_ui(ui, view.prefixes[k - 1], side);
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
            let word = vocabulary.word(pyramid.word(layer, row, col));
            let font = fitted_font(cell_rect, word);
            let clipped = painter.with_clip_rect(cell_rect.shrink(1.0));
            let center = cell_rect.center();
            clipped.text(
                center + egui::vec2(1.0, 1.0),
                egui::Align2::CENTER_CENTER,
                word,
                font.clone(),
                Color32::BLACK,
            );
            clipped.text(center, egui::Align2::CENTER_CENTER, word, font, Color32::WHITE);
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

/// The largest font at which `word` fits its cell's width (proportional glyphs are about
/// 0.55 em wide), within [`MIN_FONT`]..[`MAX_FONT`].
fn fitted_font(cell: Rect, word: &str) -> FontId {
    let by_width = cell.width() * 0.92 / (0.55 * word.len().max(1) as f32);
    FontId::proportional(by_width.min(cell.height() * 0.45).clamp(MIN_FONT, MAX_FONT))
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
