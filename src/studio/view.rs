//! What is on screen for a decoded pyramid: the decode itself and its images as textures.

use eframe::egui;
use image::RgbImage;

use super::document::{Document, Version};
use super::worker::{Decoded, Preview};

pub struct View {
    pub version: Version,
    pub decoded: Decoded,
    pub original: egui::TextureHandle,
    /// One per layer prefix, like `decoded.prefixes`: the GPU decoder's texture layers, or
    /// textures uploaded from a CPU decode.
    pub prefixes: Vec<egui::TextureId>,
    /// The uploaded textures of a CPU decode, alive while shown.
    _uploaded: Vec<egui::TextureHandle>,
    /// |original - prefix| per pixel and channel, one per layer prefix.
    pub differences: Vec<egui::TextureHandle>,
}

impl View {
    /// The view of `decoded`; `gpu_images` are the GPU decoder's texture layers, drawn
    /// as they are when the decode ran there.
    pub fn new(ctx: &egui::Context, document: &Document, decoded: Decoded, gpu_images: &[egui::TextureId]) -> Self {
        let texture = |name: String, rgb: &RgbImage| texture(ctx, name, rgb);
        let uploaded: Vec<_> = match decoded.on_gpu && gpu_images.len() >= decoded.prefixes.len() {
            true => Vec::new(),
            false => decoded.prefixes.iter().enumerate().map(|(i, p)| texture(format!("prefix-{i}"), p)).collect(),
        };
        let prefixes = match uploaded.is_empty() {
            true => gpu_images[..decoded.prefixes.len()].to_vec(),
            false => uploaded.iter().map(|t| t.id()).collect(),
        };
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
            _uploaded: uploaded,
            differences,
            decoded,
        }
    }
}

/// The prefix on screen of an edit whose other prefixes are still decoding.
pub struct PreviewView {
    pub version: Version,
    pub layers: usize,
    pub psnr_db: f64,
    pub texture: egui::TextureHandle,
}

impl PreviewView {
    pub fn new(ctx: &egui::Context, preview: Preview) -> Self {
        let texture = texture(ctx, "preview", &preview.image);
        Self { version: preview.version, layers: preview.layers, psnr_db: preview.psnr_db, texture }
    }
}

/// `rgb` as a texture, drawn with nearest sampling: the model's pixels are few, and
/// smoothing would hide them.
pub fn texture(ctx: &egui::Context, name: impl Into<String>, rgb: &RgbImage) -> egui::TextureHandle {
    let pixels = egui::ColorImage::from_rgb([rgb.width() as usize, rgb.height() as usize], rgb.as_raw());
    ctx.load_texture(name, pixels, egui::TextureOptions::NEAREST)
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
