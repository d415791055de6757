//! Plots of the current image: PSNR against the number of layers decoded, quantization
//! error per layer (encoded and edited pyramids), and the relevance of the upper layers'
//! words to the image.

use eframe::egui;
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints};

use super::super::{relevance, view::Summary, StudioApp};

/// Width of the plots' y axes, in points.
const Y_AXIS_WIDTH: f32 = 40.0;
/// The semantic layers (docs/method.md section 4: L_sem = 3) whose words' relevance is plotted.
const SEMANTIC_LAYERS: usize = 3;

impl StudioApp {
    pub(super) fn plots_ui(&self, ui: &mut egui::Ui, height: f32) {
        let (Some(view), Some(document), Some(encoded)) = (&self.view, &self.document, &self.encoded_summary) else {
            return;
        };
        let edited = Summary::of(&view.decoded);
        let width = (ui.available_width() - 2.0 * ui.spacing().item_spacing.x) / 3.0;
        // An infinite PSNR (an image equal to the original) has no place on a plot.
        let series = |values: &[f64]| -> PlotPoints<'static> {
            values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, &v)| [(i + 1) as f64, v]).collect()
        };
        ui.horizontal_top(|ui| {
            let psnr_title = if document.generated {
                "PSNR (dB) against the frame's decode from all layers"
            } else {
                "PSNR (dB) against layers decoded"
            };
            plot(ui, "psnr", psnr_title, width, height, |plot_ui| {
                plot_ui.line(Line::new("encoded", series(&encoded.psnr_db)));
                plot_ui.line(Line::new("edited", series(&edited.psnr_db)));
            });
            plot(ui, "error", "quantization error per layer (mean over cells)", width, height, |plot_ui| {
                plot_ui.line(Line::new("encoded", series(&encoded.mean_cell_error)));
                plot_ui.line(Line::new("edited", series(&edited.mean_cell_error)));
            });
            let pyramid = document.pyramid();
            let relevances: Result<Vec<f64>, &str> = (1..=SEMANTIC_LAYERS.min(pyramid.shape().layers()))
                .flat_map(|layer| pyramid.layer(layer).iter())
                .map(|&word| relevance::relevance(document, word).map(f64::from))
                .collect();
            match relevances {
                Ok(values) => plot(ui, "relevance", "relevance of layers 1–3's words", width, height, |plot_ui| {
                    let bars = values.iter().enumerate().map(|(i, &r)| Bar::new(i as f64, r)).collect();
                    plot_ui.bar_chart(BarChart::new("relevance", bars));
                }),
                Err(reason) => {
                    ui.vertical(|ui| {
                        ui.set_width(width);
                        ui.label("relevance of layers 1–3's words: n/a");
                        ui.add(egui::Label::new(egui::RichText::new(reason).small()).wrap());
                    });
                }
            }
        });
    }
}

fn plot<'a>(
    ui: &mut egui::Ui,
    id: &str,
    title: &str,
    width: f32,
    height: f32,
    build: impl FnOnce(&mut egui_plot::PlotUi<'a>) + 'a,
) {
    ui.vertical(|ui| {
        ui.set_width(width);
        // Cut short in a narrow window (whole on hover), so the plots keep their share.
        ui.add(egui::Label::new(title).truncate());
        Plot::new(id)
            .width(width)
            .height(height - ui.text_style_height(&egui::TextStyle::Body))
            .legend(Legend::default())
            // Wide enough for "0.018" and "-1.0": the axis then keeps its width from frame
            // to frame instead of following the previous frame's labels.
            .y_axis_min_width(Y_AXIS_WIDTH)
            .x_axis_label("layers")
            .allow_scroll(false)
            .show(ui, build);
    });
}
