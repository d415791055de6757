//! GPU encoding (WGSL kernels through wgpu: the CNN, the semantic branch's teacher and
//! projector, SAQ with the fused nearest-word search) against the CPU path
//! (`SpaeModel::quantize`): every layer's token ids are equal and the latent agrees to
//! within 1e-4, on the samples, pool images, edited and synthetic inputs, and a second
//! configuration. Runs on whatever adapter wgpu finds; in `.ci/run` that is Mesa's
//! lavapipe (software Vulkan).

mod common;

use std::path::Path;

use image::{Rgb, RgbImage};
use spae::gpu::{EncodeDevice, EncodedBatch, Gpu, GpuEncoder};
use spae::image_io;
use spae::model::config::{BranchMode, SemanticBranchConfig};
use spae::model::{SpaeConfig, SpaeModel};
use spae::pyramid::CellTarget;
use spae::tasks::context_pool::Pool;

const LATENT_TOLERANCE: f32 = 1e-4;

fn gpu() -> Gpu {
    Gpu::headless().expect("no GPU adapter: install mesa-vulkan-drivers for lavapipe (see .ci/run)")
}

fn shipped_model() -> SpaeModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::DEFAULT_MODEL_DIR);
    SpaeModel::load(dir, common::codebook()).expect("load the shipped model")
}

fn sample(name: &str, resolution: u32) -> RgbImage {
    image_io::prepare(&image_io::load(&common::sample(name)).unwrap(), resolution)
}

/// Encodes `images` on both paths and checks the token ids of every layer and the latent;
/// returns the largest latent difference.
fn assert_parity(encoder: &GpuEncoder, model: &SpaeModel, images: &[RgbImage], what: &str) -> f32 {
    let gpu = encoder.encode(images).unwrap();
    let (latent, cpu) = model.quantize(&image_io::to_tensor(images).unwrap()).unwrap();
    assert_eq!(gpu.pyramids.len(), images.len());
    for (i, (g, c)) in gpu.pyramids.iter().zip(&cpu.pyramids).enumerate() {
        for layer in 1..=model.shape().layers() {
            assert_eq!(g.layer(layer), c.layer(layer), "{what}, image {i}, layer {layer}: the words differ");
        }
    }
    // z, then each layer's targets where the semantic branch names them.
    assert_eq!(gpu.latent.named.len(), latent.named.len(), "{what}: the named layers differ");
    let flat = |t: &candle_core::Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let mut worst = 0.0f32;
    for (g, c) in std::iter::once((&gpu.latent.z, &latent.z)).chain(gpu.latent.named.iter().zip(&latent.named)) {
        assert_eq!(g.dims(), c.dims(), "{what}: shapes differ");
        worst = flat(g).iter().zip(&flat(c)).map(|(g, c)| (g - c).abs()).fold(worst, f32::max);
    }
    eprintln!("{what}: {} images on {}, latent differs by at most {worst:.2e}", images.len(), encoder.gpu().adapter);
    assert!(worst <= LATENT_TOLERANCE, "{what}: the latent differs by {worst}");
    worst
}

#[test]
fn the_shipped_model_encodes_as_on_the_cpu() {
    let model = shipped_model();
    assert!(model.branch().is_some(), "the shipped model has a semantic branch, which this test covers");
    let resolution = model.config().resolution as u32;
    let encoder = GpuEncoder::new(gpu(), &model, 4).unwrap();
    let samples: Vec<RgbImage> = ["automobile.png", "cat-face.png", "red-apple.png", "sunflower.png"]
        .iter()
        .map(|name| sample(name, resolution))
        .collect();
    assert_parity(&encoder, &model, &samples, "samples");

    // Pool images spread over the pool, as one batch larger than the encoder's (two
    // submissions).
    let pool = Pool::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::POOL), resolution).unwrap();
    let pool_images: Vec<RgbImage> = (0..6).map(|i| pool.image(i * pool.len() / 6).clone()).collect();
    assert_parity(&encoder, &model, &pool_images, "pool");

    // An edited image (a painted block over the apple) and synthetic ones: flat grey, a
    // gradient, and seeded noise.
    let mut edited = samples[2].clone();
    for y in 10..30 {
        for x in 20..50 {
            edited.put_pixel(x, y, Rgb([20, 40, 220]));
        }
    }
    let flat = RgbImage::from_pixel(resolution, resolution, Rgb([128, 128, 128]));
    let gradient = RgbImage::from_fn(resolution, resolution, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, 90]));
    let noise_values = common::random_values((3 * resolution * resolution) as usize, 5, 1.0);
    let noise = RgbImage::from_fn(resolution, resolution, |x, y| {
        let i = ((y * resolution + x) * 3) as usize;
        Rgb([0, 1, 2].map(|c| ((noise_values[i + c] + 1.0) * 127.5).clamp(0.0, 255.0) as u8))
    });
    assert_parity(&encoder, &model, &[edited, flat, gradient, noise], "edited and synthetic");
}

#[test]
fn another_configuration_encodes_as_on_the_cpu() {
    // The small config (weighted layers) with dilated cell targets and no branch.
    let config = SpaeConfig { cell_target: CellTarget::Dilated, semantic_branch: None, ..common::small_config() };
    let model = SpaeModel::from_seed(config, common::codebook(), 7).unwrap();
    let encoder = GpuEncoder::new(gpu(), &model, 2).unwrap();
    let mut images: Vec<RgbImage> =
        ["automobile.png", "sunflower.png", "cat-face.png", "red-apple.png"].iter().map(|n| sample(n, 32)).collect();
    assert_parity(&encoder, &model, &images[..2], "second configuration");

    // A device that dispatches at most 600 workgroups along an axis: the step widest along
    // the batch axis (the last convolution, 576 / 4 channel blocks per image) fits four
    // images, so a batch of five goes in two submissions, with the same words.
    let narrow = Gpu::headless_with_limits(|limits| limits.max_compute_workgroups_per_dimension = 600).unwrap();
    let encoder = GpuEncoder::new(narrow, &model, 8).unwrap();
    assert_eq!(encoder.max_batch(), 4);
    images.push(RgbImage::from_pixel(32, 32, Rgb([200, 30, 30])));
    assert_parity(&encoder, &model, &images, "second configuration, dispatch-limited");
}

#[test]
fn a_small_branch_added_or_naming_the_upper_words_encodes_as_on_the_cpu() {
    // A small model whose branch (the teacher at 64 px, a 2 x 2 grid) shapes layers 1-2,
    // added to the latent and naming those layers' words.
    for mode in [BranchMode::Add, BranchMode::Name] {
        let branch = SemanticBranchConfig { teacher_input: 64, hidden: 32, layers: 2, mode };
        let config = SpaeConfig {
            resolution: 32,
            channels: vec![16, 32],
            layers: 4,
            semantic_branch: Some(branch),
            ..SpaeConfig::default()
        };
        let model = SpaeModel::from_seed(config, common::codebook(), 3).unwrap();
        {
            let data = model.varmap().data().lock().unwrap();
            for (name, seed, scale) in [("branch.project_out.weight", 1, 0.2), ("branch.layer_offsets", 2, 0.3)] {
                let var = &data[name];
                let values = common::random_values(var.elem_count(), seed, scale);
                var.set(&candle_core::Tensor::from_vec(values, var.dims(), &candle_core::Device::Cpu).unwrap())
                    .unwrap();
            }
        }
        let encoder = GpuEncoder::new(gpu(), &model, 2).unwrap();
        let images: Vec<RgbImage> = ["automobile.png", "red-apple.png"].iter().map(|n| sample(n, 32)).collect();
        assert_parity(&encoder, &model, &images, &format!("small branch, {mode:?}"));
    }
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let model = shipped_model();
    let encoder = GpuEncoder::new(gpu(), &model, 1).unwrap();
    let wrong = RgbImage::new(65, 64);
    let error = encoder.encode(&[wrong]).err().expect("refused");
    assert!(format!("{error}").contains("not 65 x 64"), "{error}");
    let error = encoder.encode(&[]).err().expect("refused");
    assert!(format!("{error}").contains("nothing to encode"), "{error}");
    // The encoder still works after refusing.
    let image = sample("cat-face.png", model.config().resolution as u32);
    assert_parity(&encoder, &model, &[image], "after refusals");
}

#[test]
fn a_device_too_small_for_the_encoder_is_refused_with_the_buffer_named() {
    // A device that binds at most 1 MB per buffer: the codebook (37.7 MB) cannot fit.
    let small = Gpu::headless_with_limits(|limits| {
        limits.max_storage_buffer_binding_size = 1 << 20;
        limits.max_buffer_size = 1 << 20;
    })
    .unwrap();
    let model = shipped_model();
    let error = GpuEncoder::new(small, &model, 1).err().expect("the encoder cannot fit");
    let message = format!("{error:#}");
    assert!(message.contains("at most 1.0 MB") && message.contains("buffer needs"), "{message}");
}

#[test]
fn a_lost_device_falls_back_to_the_cpu_for_that_batch_and_later_ones() {
    let model = shipped_model();
    let gpu = gpu();
    let handle = gpu.device.clone();
    let mut device = EncodeDevice::gpu(GpuEncoder::new(gpu, &model, 2).unwrap());
    let images: Vec<RgbImage> = ["cat-face.png", "red-apple.png"].iter().map(|n| sample(n, 64)).collect();
    let cpu = EncodedBatch::on_cpu(&model, &images).unwrap();
    let first = device.encode(&model, &images).unwrap();
    assert!(device.on_gpu() && device.take_failure().is_none());
    assert_eq!(first.pyramids, cpu.pyramids);
    handle.destroy();
    let second = device.encode(&model, &images).unwrap();
    assert!(!device.on_gpu(), "still on a destroyed device");
    let reason = device.take_failure().expect("the failure is reported");
    assert!(!reason.is_empty());
    assert_eq!(second.pyramids, cpu.pyramids, "the CPU encodes the batch that met the error");
    let third = device.encode(&model, &images[..1]).unwrap();
    assert!(device.take_failure().is_none(), "reported once, and the GPU is not retried");
    assert_eq!(third.pyramids[0], cpu.pyramids[0]);
}

#[test]
fn a_folder_indexed_in_gpu_batches_equals_the_cpu_index() {
    use spae::tasks::word_index;
    use std::sync::atomic::AtomicBool;
    let model = shipped_model();
    let folder = common::fresh_dir("gpu-index");
    for name in ["automobile.png", "cat-face.png", "red-apple.png", "sunflower.png"] {
        std::fs::copy(common::sample(name), folder.join(name)).unwrap();
    }
    std::fs::write(folder.join("notes.png"), b"not an image").unwrap();
    let never = AtomicBool::new(false);
    let mut on_gpu = EncodeDevice::gpu(GpuEncoder::new(gpu(), &model, word_index::INDEX_BATCH).unwrap());
    let gpu_index = word_index::index_folder(&model, &mut on_gpu, &folder, None, &never, |_| {}).unwrap();
    assert!(on_gpu.on_gpu() && on_gpu.take_failure().is_none());
    let mut seen = Vec::new();
    let cpu_index =
        word_index::index_folder(&model, &mut EncodeDevice::cpu(), &folder, None, &never, |i| seen.push(i.done))
            .unwrap();
    assert_eq!(seen, vec![1, 2, 3, 4, 5], "every file reported, in order");
    assert_eq!(gpu_index, cpu_index);
    assert_eq!(gpu_index.images().count(), 4);
    assert_eq!(gpu_index.skipped().count(), 1);
}
