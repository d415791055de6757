//! GPU decoding (WGSL kernels through wgpu) against candle's CPU decoder: every layer
//! prefix of a real encoded pyramid, edited pyramids, and a second configuration, agree
//! to within 1e-3 per pixel on the 0..1 scale. Runs on whatever adapter wgpu finds; in
//! `.ci/run` that is Mesa's lavapipe (software Vulkan).

mod common;

use std::path::Path;

use spae::gpu::{Gpu, GpuDecoder};
use spae::image_io;
use spae::model::SpaeModel;
use spae::pyramid::saq;
use spae::pyramid::Pyramid;

const TOLERANCE: f32 = 1e-3;

fn gpu() -> Gpu {
    Gpu::headless().expect("no GPU adapter: install mesa-vulkan-drivers for lavapipe (see .ci/run)")
}

fn shipped_model() -> SpaeModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::DEFAULT_MODEL_DIR);
    SpaeModel::load(dir, common::codebook()).expect("load the shipped model")
}

fn encode_sample(model: &SpaeModel, name: &str) -> Pyramid {
    let image = image_io::load(&common::sample(name)).unwrap();
    model.encode(&image_io::prepare(&image, model.config().resolution as u32)).unwrap()
}

/// The CPU decoder's output for each item, clamped to -1..1 like the GPU's read-back.
fn cpu_pixels(model: &SpaeModel, items: &[(&Pyramid, usize)]) -> Vec<f32> {
    items
        .iter()
        .flat_map(|(pyramid, layers)| {
            let zhat = saq::dequantize(std::slice::from_ref(*pyramid), model.codebook(), *layers).unwrap();
            let pixels = model.decode_latent(&zhat).unwrap();
            pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(|v| v.clamp(-1.0, 1.0))
        })
        .collect()
}

/// Largest per-pixel difference on the 0..1 scale (half the difference on -1..1).
fn max_difference(decoder: &GpuDecoder, model: &SpaeModel, items: &[(&Pyramid, usize)]) -> f32 {
    let gpu = decoder.decode(items).unwrap();
    let cpu = cpu_pixels(model, items);
    assert_eq!(gpu.pixels.len(), cpu.len());
    let worst = gpu.pixels.iter().zip(&cpu).map(|(g, c)| (g - c).abs() / 2.0).fold(0.0, f32::max);
    eprintln!("{} images on {}: largest difference {worst:.2e}", items.len(), decoder.gpu().adapter);
    worst
}

#[test]
fn every_layer_prefix_matches_the_cpu_decoder() {
    let model = shipped_model();
    let decoder = GpuDecoder::new(gpu(), &model, model.shape().layers()).unwrap();
    for name in ["cat-face.png", "sunflower.png"] {
        let pyramid = encode_sample(&model, name);
        let items: Vec<_> = (1..=model.shape().layers()).map(|k| (&pyramid, k)).collect();
        let difference = max_difference(&decoder, &model, &items);
        assert!(difference <= TOLERANCE, "{name}: GPU and CPU differ by {difference}");
        // The images the studio shows, as bytes, are the CPU's up to rounding at a boundary.
        let gpu_images = decoder.read_pixels(items.len()).unwrap().images();
        let cpu_images = items.iter().map(|(p, k)| model.decode(p, *k).unwrap());
        for (g, c) in gpu_images.iter().zip(cpu_images) {
            let worst = g.as_raw().iter().zip(c.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            assert!(worst <= 1, "{name}: bytes differ by {worst}");
        }
    }
}

#[test]
fn edited_pyramids_match_the_cpu_decoder() {
    let model = shipped_model();
    let decoder = GpuDecoder::new(gpu(), &model, 3).unwrap();
    let original = encode_sample(&model, "red-apple.png");
    let vocabulary = model.codebook().len() as u32;
    let mut edited = original.clone();
    // Words changed in the top layer, a middle layer and the last layer, including the
    // vocabulary's first and last rows.
    edited.set_word(1, 0, 0, vocabulary - 1);
    edited.set_word(3, 2, 1, 0);
    edited.set_word(6, 15, 15, 1234);
    edited.set_word(6, 0, 7, 9876);
    let mut replaced = original.clone();
    for row in 0..8 {
        for col in 0..8 {
            replaced.set_word(4, row, col, ((row * 8 + col) * 211) as u32 % vocabulary);
        }
    }
    let items = [(&edited, 6), (&replaced, 4), (&original, 6)];
    let difference = max_difference(&decoder, &model, &items);
    assert!(difference <= TOLERANCE, "GPU and CPU differ by {difference}");
    // The edits change the picture (the comparison is not of identical images).
    let gpu = decoder.read_pixels(3).unwrap().images();
    assert_ne!(gpu[0], gpu[2]);
}

#[test]
fn another_configuration_matches_the_cpu_decoder() {
    let model = SpaeModel::from_seed(common::small_config(), common::codebook(), 7).unwrap();
    let decoder = GpuDecoder::new(gpu(), &model, 2).unwrap();
    let image = image_io::load(&common::sample("automobile.png")).unwrap();
    let pyramid = model.encode(&image_io::prepare(&image, 32)).unwrap();
    for (a, b) in [(6, 2), (5, 4)] {
        let difference = max_difference(&decoder, &model, &[(&pyramid, a), (&pyramid, b)]);
        assert!(difference <= TOLERANCE, "GPU and CPU differ by {difference}");
    }
    // A decoder grown alone (three residual blocks a level against the encoder's two).
    let grown_config = spae::model::SpaeConfig { decoder_res_blocks: Some(3), ..common::small_config() };
    let grown = SpaeModel::from_seed(grown_config, common::codebook(), 7).unwrap();
    let grown_decoder = GpuDecoder::new(gpu(), &grown, 1).unwrap();
    let difference = max_difference(&grown_decoder, &grown, &[(&pyramid, 6)]);
    assert!(difference <= TOLERANCE, "GPU and CPU differ by {difference} for the grown decoder");
    // The same words under the plain mean decode visibly otherwise: the weights count.
    let plain_config = spae::model::SpaeConfig { layer_weights: None, ..common::small_config() };
    let plain_model = SpaeModel::from_seed(plain_config, common::codebook(), 7).unwrap();
    let words = (1..=6).map(|l| pyramid.layer(l).to_vec()).collect();
    let plain = Pyramid::new(plain_model.shape().clone(), words).unwrap();
    let weighted = decoder.decode(&[(&pyramid, 6)]).unwrap().pixels;
    let unweighted = cpu_pixels(&plain_model, &[(&plain, 6)]);
    let apart = weighted.iter().zip(&unweighted).map(|(g, c)| (g - c).abs() / 2.0).fold(0.0, f32::max);
    assert!(apart > 10.0 * TOLERANCE, "weighted and plain means decode alike ({apart})");
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let model = shipped_model();
    let decoder = GpuDecoder::new(gpu(), &model, 2).unwrap();
    let pyramid = encode_sample(&model, "cat-face.png");
    let too_many = decoder.submit(&[(&pyramid, 6), (&pyramid, 5), (&pyramid, 4)]).unwrap_err();
    assert!(format!("{too_many}").contains("at most 2"), "{too_many}");
    let layers = decoder.submit(&[(&pyramid, 7)]).unwrap_err();
    assert!(format!("{layers}").contains("7 layers"), "{layers}");
    let mut outside = pyramid.clone();
    outside.set_word(2, 1, 1, model.codebook().len() as u32);
    let word = decoder.submit(&[(&outside, 6)]).unwrap_err();
    assert!(format!("{word}").contains("outside"), "{word}");
    // The decoder still works after refusing.
    assert!(max_difference(&decoder, &model, &[(&pyramid, 6)]) <= TOLERANCE);
}
