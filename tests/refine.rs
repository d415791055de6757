//! Refining the appearance words against the decoder (docs/method.md section 3a) on the
//! shipped model and real images: the errors it reports are the decoder's, no image gets
//! worse, the named layers stay the branch's, and rounds go finest layer first.

mod common;

use std::path::Path;

use candle_core::Tensor;
use spae::image_io;
use spae::model::SpaeModel;
use spae::pyramid::{saq, Pyramid};

fn shipped_model() -> SpaeModel {
    SpaeModel::load(Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::DEFAULT_MODEL_DIR), common::codebook())
        .unwrap()
}

fn sample_pixels(model: &SpaeModel) -> (Vec<image::RgbImage>, Tensor) {
    let resolution = model.config().resolution as u32;
    let images: Vec<image::RgbImage> = ["cat-face.png", "red-apple.png", "sunflower.png", "automobile.png"]
        .iter()
        .map(|n| image_io::prepare(&image_io::load(&common::sample(n)).unwrap(), resolution))
        .collect();
    let pixels = image_io::to_tensor(&images).unwrap();
    (images, pixels)
}

/// The sum of squared differences between one image's pixels and the decoding of all
/// layers of its pyramid, image by image through the public path.
fn error_of(model: &SpaeModel, pixels: &Tensor, index: usize, pyramid: &Pyramid) -> f64 {
    let zhat = saq::dequantize(std::slice::from_ref(pyramid), model.codebook(), model.shape().layers()).unwrap();
    let decoded: Vec<f32> = model.decode_latent(&zhat).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let original: Vec<f32> = pixels.get(index).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    decoded.iter().zip(&original).map(|(a, b)| f64::from(a - b).powi(2)).sum()
}

fn differing(a: &Pyramid, b: &Pyramid, layer: usize) -> usize {
    a.layer(layer).iter().zip(b.layer(layer)).filter(|(x, y)| x != y).count()
}

#[test]
fn refinement_lowers_the_decoder_s_error_and_keeps_the_named_words() {
    let model = shipped_model();
    let (_, pixels) = sample_pixels(&model);
    let (_, quantized) = model.quantize(&pixels).unwrap();
    let saq_pyramids = quantized.pyramids.clone();
    let mut pyramids = quantized.pyramids;
    let refinement = model.refine(&pixels, &mut pyramids, 6).unwrap();

    let named = model.named_layers();
    assert_eq!(named, 3, "the shipped model's branch names layers 1-3");
    let mut changed = 0;
    for (i, (before, after)) in saq_pyramids.iter().zip(&pyramids).enumerate() {
        let (was, is) = (error_of(&model, &pixels, i, before), error_of(&model, &pixels, i, after));
        for (reported, computed) in [(refinement.error_before[i], was), (refinement.error_after[i], is)] {
            assert!((f64::from(reported) - computed).abs() <= 1e-3 * computed, "{reported} against {computed}");
        }
        assert!(is <= was, "image {i}: the error rose from {was} to {is}");
        let values = 3.0 * 64.0 * 64.0;
        let (psnr_before, psnr_after) = refinement.psnr_db(i);
        for (psnr, error) in [(psnr_before, was), (psnr_after, is)] {
            let expected = 10.0 * (4.0 * values / error).log10();
            assert!((psnr - expected).abs() < 1e-3, "image {i}: PSNR {psnr} against {expected}");
        }
        for layer in 1..=named {
            assert_eq!(before.layer(layer), after.layer(layer), "named layer {layer} changed");
        }
        changed += (1..=model.shape().layers()).map(|l| differing(before, after, l)).sum::<usize>();
    }
    assert_eq!(refinement.words_changed, changed);
    assert!(changed > 0, "six rounds changed no word");
    let (was, is): (f32, f32) = (refinement.error_before.iter().sum(), refinement.error_after.iter().sum());
    assert!(is < 0.97 * was, "six rounds lowered the summed error only from {was} to {is}");
}

#[test]
fn rounds_start_at_the_finest_layer_and_none_change_nothing() {
    let model = shipped_model();
    let (images, pixels) = sample_pixels(&model);
    let (_, quantized) = model.quantize(&pixels).unwrap();

    let mut unchanged = quantized.pyramids.clone();
    let none = model.refine(&pixels, &mut unchanged, 0).unwrap();
    assert_eq!(unchanged, quantized.pyramids);
    assert_eq!(none.error_after, none.error_before);
    assert_eq!(none.words_changed, 0);

    let layers = model.shape().layers();
    let mut one = quantized.pyramids.clone();
    model.refine(&pixels, &mut one, 1).unwrap();
    let touched: Vec<usize> =
        (1..=layers).filter(|&l| quantized.pyramids.iter().zip(&one).any(|(a, b)| differing(a, b, l) > 0)).collect();
    assert_eq!(touched, vec![layers], "one round works on the finest layer only");

    // Encoding one image refined is the batch's refinement of that image.
    let single = model.encode_refined(&images[1], 1).unwrap();
    assert_eq!(single, one[1]);
    assert_eq!(model.encode_refined(&images[1], 0).unwrap(), model.encode(&images[1]).unwrap());
}

#[test]
fn refinement_refuses_pyramids_that_do_not_fit() {
    let model = shipped_model();
    let (_, pixels) = sample_pixels(&model);
    let (_, quantized) = model.quantize(&pixels).unwrap();
    let mut three = quantized.pyramids[..3].to_vec();
    let error = model.refine(&pixels, &mut three, 1).unwrap_err().to_string();
    assert!(error.contains("4 images for 3 pyramids"), "{error}");
}
