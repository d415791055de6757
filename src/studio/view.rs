//! What is on screen for a decoded pyramid: the decode itself and its images as textures.

use eframe::egui;
use image::RgbImage;

use super::document::{Document, Version};
use super::worker::Decoded;

pub struct View {
    pub version: Version,
    pub decoded: Decoded,
    pub original: egui::TextureHandle,
    /// One per layer prefix, like `decoded.prefixes`.
    pub prefixes: Vec<egui::TextureHandle>,
    /// |original - prefix| per pixel and channel, one per layer prefix.
    pub differences: Vec<egui::TextureHandle>,
}

impl View {
    pub fn new(ctx: &egui::Context, document: &Document, decoded: Decoded) -> Self {
        let texture = |name: String, rgb: &RgbImage| {
            let pixels = egui::ColorImage::from_rgb([rgb.width() as usize, rgb.height() as usize], rgb.as_raw());
            // Nearest: the model's pixels are few, and smoothing would hide them.
            ctx.load_texture(name, pixels, egui::TextureOptions::NEAREST)
        };
        let prefixes = decoded.prefixes.iter().enumerate().map(|(i, p)| texture(format!("prefix-{i}"), p)).collect();
        let differences = decoded
            .prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| texture(format!("difference-{i}"), &difference(&document.original, p)))
            .collect();
        Self {
            version: decoded.version,
            original: texture("original".into(), &document.original),
            prefixes,
            differences,
            decoded,
        }
    }
}

fn difference(a: &RgbImage, b: &RgbImage) -> RgbImage {
    RgbImage::from_fn(a.width(), a.height(), |x, y| {
        let (p, q) = (a.get_pixel(x, y).0, b.get_pixel(x, y).0);
        image::Rgb([0, 1, 2].map(|c| p[c].abs_diff(q[c])))
    })
}

/// A decode in numbers, for the plots.
pub struct Summary {
    pub psnr_db: Vec<f64>,
    /// Mean over a layer's cells of the cell quantization error.
    pub mean_cell_error: Vec<f64>,
}

impl Summary {
    pub fn of(decoded: &Decoded) -> Self {
        let mean = |errors: &Vec<f32>| errors.iter().map(|&e| e as f64).sum::<f64>() / errors.len() as f64;
        Self { psnr_db: decoded.psnr_db.clone(), mean_cell_error: decoded.cell_errors.iter().map(mean).collect() }
    }
}
