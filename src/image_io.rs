//! Pixels in and out: reading any image the `image` crate decodes (with limits), centre
//! cropping, resizing, compositing transparency on a fixed background, and converting
//! to and from the model's tensors.

use std::io::Cursor;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use image::{imageops::FilterType, DynamicImage, ImageReader, Limits, Rgb, RgbImage, RgbaImage};

/// Largest accepted width or height of an input image.
pub const MAX_SIDE: u32 = 16_384;
/// Largest allocation the decoder may make for one image.
const MAX_DECODE_BYTES: u64 = 1 << 30;
/// Transparent pixels are composited on this light grey (DATA.md), in training and use alike.
pub const BACKGROUND: Rgb<u8> = Rgb([224, 224, 224]);

/// Reads and decodes an image file, refusing absurd dimensions before decoding.
pub fn load(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode(&bytes).with_context(|| format!("cannot open {} as an image", path.display()))
}

/// Decodes an encoded image (PNG, JPEG, ...) from memory with the same limits as [`load`].
pub fn decode(bytes: &[u8]) -> Result<DynamicImage> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    if reader.format().is_none() {
        bail!("not a format the image reader recognises");
    }
    let (width, height) = reader.into_dimensions().context("the file is not a readable image")?;
    if width > MAX_SIDE || height > MAX_SIDE {
        bail!("the image is {width} x {height} pixels; the limit is {MAX_SIDE} on each side");
    }
    if width == 0 || height == 0 {
        bail!("the image is empty ({width} x {height})");
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().context("the image data is corrupt or unsupported")
}

/// Composites on [`BACKGROUND`], centre-crops to a square and resizes to `resolution`.
pub fn prepare(image: &DynamicImage, resolution: u32) -> RgbImage {
    let rgb = composite(&image.to_rgba8());
    let side = rgb.width().min(rgb.height());
    let x = (rgb.width() - side) / 2;
    let y = (rgb.height() - side) / 2;
    let square = image::imageops::crop_imm(&rgb, x, y, side, side).to_image();
    if side == resolution {
        square
    } else {
        image::imageops::resize(&square, resolution, resolution, FilterType::CatmullRom)
    }
}

/// Alpha-composites an RGBA image over [`BACKGROUND`].
pub fn composite(rgba: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = p[3] as f32 / 255.0;
        Rgb(std::array::from_fn(|c| (p[c] as f32 * a + BACKGROUND.0[c] as f32 * (1.0 - a)).round() as u8))
    })
}

/// Images (all the same size) to a `batch x 3 x H x W` tensor in -1..1.
pub fn to_tensor(images: &[RgbImage]) -> Result<Tensor> {
    let (w, h) = images[0].dimensions();
    let mut data = Vec::with_capacity(images.len() * 3 * (w * h) as usize);
    for image in images {
        if image.dimensions() != (w, h) {
            bail!("images of different sizes in one batch");
        }
        for c in 0..3 {
            data.extend(image.pixels().map(|p| p.0[c] as f32 / 127.5 - 1.0));
        }
    }
    Ok(Tensor::from_vec(data, (images.len(), 3, h as usize, w as usize), &Device::Cpu)?)
}

/// A `batch x 3 x H x W` tensor in -1..1 to images, clamping out-of-range values.
pub fn from_tensor(pixels: &Tensor) -> Result<Vec<RgbImage>> {
    let (batch, _, h, w) = pixels.dims4()?;
    Ok(from_planes(&pixels.flatten_all()?.to_vec1()?, batch, h, w))
}

/// `batch x 3 x H x W` values in -1..1, channel planes one after another, to images,
/// clamping out-of-range values.
pub fn from_planes(data: &[f32], batch: usize, h: usize, w: usize) -> Vec<RgbImage> {
    let plane = h * w;
    (0..batch)
        .map(|b| {
            let base = b * 3 * plane;
            RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let i = y as usize * w + x as usize;
                Rgb(std::array::from_fn(|c| to_byte(data[base + c * plane + i])))
            })
        })
        .collect()
}

fn to_byte(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Encodes an image as PNG and writes it atomically.
/// Enlarges an image by a whole factor, each pixel a square block (no smoothing).
pub fn upscale(image: &RgbImage, factor: u32) -> RgbImage {
    RgbImage::from_fn(image.width() * factor, image.height() * factor, |x, y| *image.get_pixel(x / factor, y / factor))
}

pub fn save_png(image: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .context("cannot encode the PNG")?;
    crate::atomic_file::write(path, &bytes)
}
