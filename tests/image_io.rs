//! Reading, preparing and converting images.

mod common;

use image::{Rgb, RgbImage, Rgba, RgbaImage};
use spae::image_io;

#[test]
fn transparency_is_composited_on_the_fixed_background() {
    let mut rgba = RgbaImage::new(2, 1);
    rgba.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
    rgba.put_pixel(1, 0, Rgba([100, 200, 0, 128]));
    let rgb = image_io::composite(&rgba);
    assert_eq!(rgb.get_pixel(0, 0), &image_io::BACKGROUND);
    let a = 128.0 / 255.0;
    let expected: [u8; 3] = std::array::from_fn(|c| {
        ([100.0, 200.0, 0.0][c] * a + image_io::BACKGROUND.0[c] as f32 * (1.0 - a)).round() as u8
    });
    assert_eq!(rgb.get_pixel(1, 0).0, expected);
}

#[test]
fn prepare_centre_crops_then_resizes() {
    // 30 x 10: left and right 10 columns red, centre 10 columns green.
    let image =
        RgbImage::from_fn(30, 10, |x, _| if (10..20).contains(&x) { Rgb([0, 255, 0]) } else { Rgb([255, 0, 0]) });
    let prepared = image_io::prepare(&image.into(), 4);
    assert_eq!(prepared.dimensions(), (4, 4));
    assert!(prepared.pixels().all(|p| p.0 == [0, 255, 0]), "only the centre square survives");
    let sample = image_io::prepare(&image_io::load(&common::sample("red-apple.png")).unwrap(), 64);
    assert_eq!(sample.dimensions(), (64, 64));
}

#[test]
fn tensor_conversion_round_trips() {
    let image = RgbImage::from_fn(5, 3, |x, y| Rgb([x as u8 * 50, y as u8 * 100, 7]));
    let tensor = image_io::to_tensor(&[image.clone(), image.clone()]).unwrap();
    assert_eq!(tensor.dims(), &[2, 3, 3, 5]);
    let v: f32 = tensor.get(1).unwrap().get(0).unwrap().get(0).unwrap().get(4).unwrap().to_scalar().unwrap();
    assert!((v - (200.0 / 127.5 - 1.0)).abs() < 1e-6);
    assert_eq!(image_io::from_tensor(&tensor).unwrap(), vec![image.clone(), image]);
}

#[test]
fn bad_files_are_refused_with_clear_messages() {
    let dir = std::env::temp_dir().join(format!("spae-image-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let huge = dir.join("huge.png");
    RgbImage::new(image_io::MAX_SIDE + 1, 1).save(&huge).unwrap();
    let message = format!("{:#}", image_io::load(&huge).unwrap_err());
    assert!(message.contains("the limit is 16384 on each side"), "{message}");

    let corrupt = dir.join("corrupt.png");
    let mut bytes = std::fs::read(common::sample("cat-face.png")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&corrupt, &bytes).unwrap();
    let message = format!("{:#}", image_io::load(&corrupt).unwrap_err());
    assert!(message.contains("corrupt"), "{message}");

    let text = dir.join("notes.png");
    std::fs::write(&text, "just text").unwrap();
    let message = format!("{:#}", image_io::load(&text).unwrap_err());
    assert!(message.contains("cannot open") && message.contains("notes.png"), "{message}");

    let message = format!("{:#}", image_io::load(&dir.join("absent.png")).unwrap_err());
    assert!(message.contains("cannot read"), "{message}");
}

#[test]
fn save_png_writes_a_decodable_file_and_reports_unwritable_paths() {
    let dir = std::env::temp_dir().join(format!("spae-image-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = RgbImage::from_fn(8, 8, |x, y| Rgb([x as u8 * 30, y as u8 * 30, 99]));
    let path = dir.join("out.png");
    image_io::save_png(&image, &path).unwrap();
    assert_eq!(image::open(&path).unwrap().to_rgb8(), image);
    let message = format!("{:#}", image_io::save_png(&image, &dir.join("no/such/dir/out.png")).unwrap_err());
    assert!(message.contains("cannot write"), "{message}");
}
