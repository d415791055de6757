//! Truncated and damaged image files are refused (naming the file) in every format the
//! project reads, and the memory-bounded conversion gives the same pixels as compositing
//! the whole image first.

mod common;

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use spae::image_io;

/// A 96 x 80 picture with detail everywhere (so every part of the file matters).
fn picture() -> RgbaImage {
    let cat = image_io::prepare(&image::open(common::sample("cat-face.png")).unwrap(), 64);
    RgbaImage::from_fn(96, 80, |x, y| {
        let p = cat.get_pixel(x % 64, y % 64).0;
        Rgba([p[0] ^ (x as u8 * 3), p[1], p[2].wrapping_add(y as u8 * 5), 255])
    })
}

fn encoded(format: ImageFormat) -> Vec<u8> {
    let picture = DynamicImage::ImageRgba8(picture());
    let picture = match format {
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(picture.to_rgb8()),
        _ => picture,
    };
    let mut bytes = Vec::new();
    picture.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

const FORMATS: [(ImageFormat, &str); 5] = [
    (ImageFormat::Jpeg, "jpg"),
    (ImageFormat::Png, "png"),
    (ImageFormat::Gif, "gif"),
    (ImageFormat::WebP, "webp"),
    (ImageFormat::Tiff, "tiff"),
];

#[test]
fn whole_files_of_every_format_decode() {
    for (format, _) in FORMATS {
        let image = image_io::decode(&encoded(format)).unwrap_or_else(|e| panic!("{format:?}: {e:#}"));
        assert_eq!((image.width(), image.height()), (96, 80), "{format:?}");
    }
}

#[test]
fn truncated_files_of_every_format_are_refused_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("spae-truncated-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (format, extension) in FORMATS {
        let whole = encoded(format);
        // Cuts through the header, the middle and near the end of the pixel data.
        for share in [0.05, 0.3, 0.5, 0.8, 0.95] {
            let cut = (whole.len() as f64 * share) as usize;
            let path = dir.join(format!("cut-{cut}.{extension}"));
            std::fs::write(&path, &whole[..cut]).unwrap();
            match image_io::load(&path) {
                Ok(_) => panic!("{format:?} cut to {cut} of {} bytes was accepted", whole.len()),
                Err(e) => {
                    let message = format!("{e:#}");
                    assert!(message.contains(&path.display().to_string()), "{message}");
                }
            }
        }
    }
}

#[test]
fn a_jpeg_cut_just_after_its_headers_is_refused() {
    // The case from the report, `head -c 400 photo.jpg > t.jpg`, used to encode as grey:
    // the headers are whole, the compressed scan is cut short.
    let photo = encoded(ImageFormat::Jpeg);
    let scan = photo.windows(2).position(|w| w == [0xFF, 0xDA]).expect("a start-of-scan marker");
    let message = format!("{:#}", image_io::decode(&photo[..scan + 100]).unwrap_err());
    assert!(message.contains("truncated or corrupt"), "{message}");
}

#[test]
fn damaged_jpeg_entropy_data_is_refused() {
    let mut photo = encoded(ImageFormat::Jpeg);
    // Overwrite a stretch of the compressed scan (after the headers) with marker bytes
    // that cannot occur there.
    let start = photo.len() / 2;
    for byte in &mut photo[start..start + 64] {
        *byte = 0xFF;
    }
    assert!(image_io::decode(&photo).is_err());
}

/// The conversion as it was before it was made memory-bounded: the whole image to RGBA,
/// composited, cropped, resized.
fn reference_prepare(image: &DynamicImage, resolution: u32) -> RgbImage {
    let rgb = image_io::composite(&image.to_rgba8());
    let side = rgb.width().min(rgb.height());
    let square =
        image::imageops::crop_imm(&rgb, (rgb.width() - side) / 2, (rgb.height() - side) / 2, side, side).to_image();
    if side == resolution {
        square
    } else {
        image::imageops::resize(&square, resolution, resolution, image::imageops::FilterType::CatmullRom)
    }
}

#[test]
fn prepare_gives_the_same_pixels_for_every_colour_type() {
    let rgba = RgbaImage::from_fn(90, 70, |x, y| Rgba([x as u8 * 2, y as u8 * 3, (x * y) as u8, (x * 7 + y) as u8]));
    let base = DynamicImage::ImageRgba8(rgba);
    let variants = [
        DynamicImage::ImageRgba8(base.to_rgba8()),
        DynamicImage::ImageRgb8(base.to_rgb8()),
        DynamicImage::ImageLuma8(base.to_luma8()),
        DynamicImage::ImageLumaA8(base.to_luma_alpha8()),
        DynamicImage::ImageRgb16(base.to_rgb16()),
        DynamicImage::ImageRgba16(base.to_rgba16()),
        DynamicImage::ImageRgba32F(base.to_rgba32f()),
    ];
    for image in &variants {
        for resolution in [16, 64, 70] {
            assert_eq!(
                image_io::prepare(image, resolution),
                reference_prepare(image, resolution),
                "{:?} at {resolution}",
                image.color()
            );
        }
    }
    // The file path, where an RGBA image is composited in place.
    let dir = std::env::temp_dir().join(format!("spae-prepare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, image) in variants.iter().enumerate() {
        let path = dir.join(format!("variant-{i}.png"));
        if image.save(&path).is_ok() {
            let decoded = image::open(&path).unwrap();
            for resolution in [16, 70] {
                assert_eq!(
                    image_io::load_prepared(&path, resolution).unwrap(),
                    reference_prepare(&decoded, resolution),
                    "{:?}",
                    decoded.color()
                );
            }
        }
    }
    let tall = DynamicImage::ImageRgb8(RgbImage::from_fn(30, 50, |x, y| Rgb([x as u8 * 8, y as u8 * 5, 7])));
    assert_eq!(image_io::prepare(&tall, 8), reference_prepare(&tall, 8));
}

#[test]
fn damaged_png_data_is_refused_by_its_checksums() {
    let mut png = encoded(ImageFormat::Png);
    // A byte inside the first IDAT chunk's compressed data: its CRC no longer matches.
    let idat = png.windows(4).position(|w| w == b"IDAT").expect("an IDAT chunk");
    png[idat + 40] ^= 0x5A;
    assert!(image_io::decode(&png).is_err());
}
