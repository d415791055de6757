//! `spae-studio`: the desktop studio. At this stage it opens the shipped model, encodes a
//! sample image and shows the image beside its reconstruction from every layer prefix.

use std::path::Path;

use anyhow::Result;
use eframe::egui;

use spae::model::SpaeModel;
use spae::{image_io, paths};

const SAMPLE: &str = "assets/samples/cat-face.png";
const SHOWN_SIDE: f32 = 256.0;

struct Studio {
    original: egui::TextureHandle,
    prefixes: Vec<egui::TextureHandle>,
    status: String,
}

impl Studio {
    fn new(ctx: &egui::Context, model: &SpaeModel) -> Result<Self> {
        let image = image_io::prepare(&image_io::load(Path::new(SAMPLE))?, model.config().resolution as u32);
        let start = std::time::Instant::now();
        let pyramid = model.encode(&image)?;
        let encode_ms = start.elapsed().as_secs_f64() * 1e3;
        let texture = |name: String, rgb: &image::RgbImage| {
            let pixels = egui::ColorImage::from_rgb([rgb.width() as usize, rgb.height() as usize], rgb.as_raw());
            ctx.load_texture(name, pixels, egui::TextureOptions::NEAREST)
        };
        let prefixes = (1..=model.shape().layers())
            .map(|layers| Ok(texture(format!("prefix-{layers}"), &model.decode(&pyramid, layers)?)))
            .collect::<Result<Vec<_>>>()?;
        let top = model.codebook().vocabulary().word(pyramid.word(1, 0, 0)).to_string();
        Ok(Self {
            original: texture("original".into(), &image),
            prefixes,
            status: format!(
                "model: {} | vocabulary {} words | CPU | encode {encode_ms:.0} ms | top word: {top}",
                model.source(),
                model.codebook().len()
            ),
        })
    }
}

impl eframe::App for Studio {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::Panel::bottom("status").show(ui, |ui| ui.label(&self.status));
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.vertical(|ui| {
                    ui.heading("Original");
                    ui.add(egui::Image::new(&self.original).fit_to_exact_size(egui::vec2(SHOWN_SIDE, SHOWN_SIDE)));
                });
                ui.vertical(|ui| {
                    ui.heading("Reconstruction (all layers)");
                    let full = self.prefixes.last().expect("at least one layer");
                    ui.add(egui::Image::new(full).fit_to_exact_size(egui::vec2(SHOWN_SIDE, SHOWN_SIDE)));
                });
            });
            ui.heading("Layer prefixes 1..6");
            ui.horizontal(|ui| {
                for (i, texture) in self.prefixes.iter().enumerate() {
                    ui.vertical(|ui| {
                        ui.label(format!("{} layer(s)", i + 1));
                        ui.add(egui::Image::new(texture).fit_to_exact_size(egui::vec2(128.0, 128.0)));
                    });
                }
            });
        });
    }
}

fn main() -> Result<()> {
    spae::allocator::keep_freed_memory();
    let model = SpaeModel::open(Path::new(paths::DEFAULT_MODEL_DIR), Path::new(paths::LLM_GGUF), true)?;
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([1000.0, 640.0]).with_title("SPAE Studio"),
        ..Default::default()
    };
    eframe::run_native(
        "SPAE Studio",
        options,
        Box::new(move |cc| Ok(Box::new(Studio::new(&cc.egui_ctx, &model)?) as Box<dyn eframe::App>)),
    )
    .map_err(|e| anyhow::anyhow!("the studio window failed: {e}"))
}
