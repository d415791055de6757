//! Pixels in and out: reading any image the `image` crate decodes (with limits), centre
//! cropping, resizing, compositing transparency on a fixed background, and converting
//! to and from the model's tensors.

use std::io::Cursor;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor};
use image::{
    imageops::FilterType, DynamicImage, GenericImageView, GrayImage, ImageBuffer, ImageFormat, ImageReader, Limits,
    Luma, Pixel, Rgb, RgbImage, RgbaImage,
};

/// Largest accepted width or height of an input image.
pub const MAX_SIDE: u32 = 16_384;
/// Largest allocation the decoder may make for one image.
const MAX_DECODE_BYTES: u64 = 1 << 30;
/// Files larger than this are not read at all (a folder may hold a video or a disk image).
pub const MAX_FILE_BYTES: u64 = 512 << 20;
/// Transparent pixels are composited on this light grey (docs/data.md), in training and use alike.
pub const BACKGROUND: Rgb<u8> = Rgb([224, 224, 224]);
// Grey images with alpha are composited in one channel (see `prepare`).
const _: () = assert!(BACKGROUND.0[0] == BACKGROUND.0[1] && BACKGROUND.0[1] == BACKGROUND.0[2]);

/// Reads and decodes an image file, refusing absurd dimensions before decoding.
pub fn load(path: &Path) -> Result<DynamicImage> {
    let size = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    if size > MAX_FILE_BYTES {
        bail!("{} is {} MiB; image files over {} MiB are refused", path.display(), size >> 20, MAX_FILE_BYTES >> 20);
    }
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
    if reader.format() == Some(ImageFormat::Jpeg) {
        check_jpeg(bytes)?;
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().context("the image data is corrupt or unsupported")
}

/// The image crate's JPEG decoder fills what a truncated or damaged file lacks with grey
/// and succeeds; zune-jpeg's strict mode (the same decoder) refuses such data instead.
fn check_jpeg(bytes: &[u8]) -> Result<()> {
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(zune_core::bytestream::ZCursor::new(bytes), options);
    decoder.decode().map(drop).map_err(|e| anyhow!("the JPEG data is truncated or corrupt ({e:?})"))
}

/// [`load`], then [`prepare`], taking the decoded image by value: an RGBA image is then
/// composited in place, so a 16,384 px RGBA file needs no second full-size copy.
pub fn load_prepared(path: &Path, resolution: u32) -> Result<RgbImage> {
    Ok(match load(path)? {
        DynamicImage::ImageRgba8(mut rgba) => {
            for pixel in rgba.pixels_mut() {
                let Rgb([r, g, b]) = blend(pixel.0);
                pixel.0 = [r, g, b, 255];
            }
            let (x, y, side) = centre_square(rgba.width(), rgba.height());
            let view = image::imageops::crop_imm(&rgba, x, y, side, side);
            DynamicImage::ImageRgba8(fit(&*view, resolution)).to_rgb8()
        }
        image => prepare(&image, resolution),
    })
}

/// Composites on [`BACKGROUND`], centre-crops to a square and resizes to `resolution`.
///
/// Memory stays near the decoded image's own size: an RGB or grey image is resized through
/// a view of its square, grey with alpha is composited into a grey square (the background
/// is grey too), any other straight into an RGB square; never into a full-size RGBA copy.
/// The pixels are the same as compositing the whole RGBA image, cropping and resizing
/// (resizing works channel by channel).
pub fn prepare(image: &DynamicImage, resolution: u32) -> RgbImage {
    let (x, y, side) = centre_square(image.width(), image.height());
    match image {
        DynamicImage::ImageRgb8(rgb) => fit(&*image::imageops::crop_imm(rgb, x, y, side, side), resolution),
        DynamicImage::ImageLuma8(luma) => {
            grey_to_rgb(&fit(&*image::imageops::crop_imm(luma, x, y, side, side), resolution))
        }
        DynamicImage::ImageLumaA8(luma) => {
            let grey = GrayImage::from_fn(side, side, |i, j| {
                let [v, a] = luma.get_pixel(x + i, y + j).0;
                Luma([blend([v, v, v, a]).0[0]])
            });
            grey_to_rgb(&fit(&grey, resolution))
        }
        DynamicImage::ImageRgba8(rgba) => {
            fit(&RgbImage::from_fn(side, side, |i, j| blend(rgba.get_pixel(x + i, y + j).0)), resolution)
        }
        other => fit(&RgbImage::from_fn(side, side, |i, j| blend(other.get_pixel(x + i, y + j).0)), resolution),
    }
}

/// The centred square of a `width` x `height` image: its corner and side.
fn centre_square(width: u32, height: u32) -> (u32, u32, u32) {
    let side = width.min(height);
    ((width - side) / 2, (height - side) / 2, side)
}

/// A square image (or view of one) at `resolution`: copied if it is that size already,
/// else resized.
fn fit<I>(square: &I, resolution: u32) -> ImageBuffer<I::Pixel, Vec<<I::Pixel as Pixel>::Subpixel>>
where
    I: GenericImageView,
    I::Pixel: 'static,
{
    if square.width() == resolution {
        ImageBuffer::from_fn(resolution, resolution, |x, y| square.get_pixel(x, y))
    } else {
        image::imageops::resize(square, resolution, resolution, FilterType::CatmullRom)
    }
}

fn grey_to_rgb(grey: &GrayImage) -> RgbImage {
    RgbImage::from_fn(grey.width(), grey.height(), |x, y| Rgb([grey.get_pixel(x, y).0[0]; 3]))
}

/// Alpha-composites an RGBA image over [`BACKGROUND`].
pub fn composite(rgba: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| blend(rgba.get_pixel(x, y).0))
}

/// One RGBA pixel over [`BACKGROUND`].
fn blend(p: [u8; 4]) -> Rgb<u8> {
    let a = p[3] as f32 / 255.0;
    Rgb(std::array::from_fn(|c| (p[c] as f32 * a + BACKGROUND.0[c] as f32 * (1.0 - a)).round() as u8))
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

/// Enlarges an image by a whole factor, each pixel a square block (no smoothing).
pub fn upscale(image: &RgbImage, factor: u32) -> RgbImage {
    RgbImage::from_fn(image.width() * factor, image.height() * factor, |x, y| *image.get_pixel(x / factor, y / factor))
}

/// An image encoded as PNG.
pub fn png_bytes(image: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png).context("cannot encode the PNG")?;
    Ok(bytes)
}

/// Encodes an image as PNG and writes it atomically.
pub fn save_png(image: &RgbImage, path: &Path) -> Result<()> {
    crate::atomic_file::write(path, &png_bytes(image)?)
}
