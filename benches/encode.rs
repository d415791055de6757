//! Encode latency, GPU (WGSL kernels through wgpu) against CPU (candle and the fused
//! nearest-word search), with the shipped model (CNN + semantic branch): one image (the
//! studio's case), and a batch of 64 (many images at once, as the gallery's batches of 16
//! are, only larger). Every row goes from prepared pixels to pyramids and
//! latents on the CPU side: GPU times include uploading the pixels, the whole encoder and
//! SAQ's six layers in one submission, and reading the token ids and the latent back.
//! Prints the adapter. Run with `cargo bench --bench encode`; the GPU rows need an
//! adapter (lavapipe counts, as a correctness path: it is slower than the CPU, and on a
//! software adapter the batch row, about 8 minutes an iteration on 2 cores, is skipped).

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use spae::codebook::vocabulary;
use spae::codebook::Codebook;
use spae::gpu::{EncodedBatch, Gpu, GpuEncoder};
use spae::model::SpaeModel;
use spae::{image_io, paths};

const BATCH: usize = 64;

fn encode(c: &mut Criterion) {
    // As the spae and spae-studio programs do at start-up.
    spae::compute::allocator::keep_freed_memory();
    let codebook = Arc::new(
        Codebook::load(paths::LLM_GGUF, vocabulary::DEFAULT_RULE, vocabulary::DEFAULT_SIZE).expect("codebook"),
    );
    let model = SpaeModel::load(paths::DEFAULT_MODEL_DIR, codebook).expect("the shipped model");
    let samples = ["automobile.png", "cat-face.png", "red-apple.png", "sunflower.png"]
        .map(|name| image_io::prepare(&image_io::load(&Path::new("assets/samples").join(name)).unwrap(), 64));
    let one = &samples[..1];
    let batch: Vec<_> = samples.iter().cycle().take(BATCH).cloned().collect();

    let mut group = c.benchmark_group("encode");
    group.sample_size(10);
    group.bench_function("cpu_1_image", |b| b.iter(|| EncodedBatch::on_cpu(&model, one).unwrap()));
    group.bench_function("cpu_64_images", |b| b.iter(|| EncodedBatch::on_cpu(&model, &batch).unwrap()));
    match Gpu::headless() {
        Ok(gpu) => {
            eprintln!("GPU adapter: {}", gpu.adapter);
            let software = gpu.software;
            let encoder = GpuEncoder::new(gpu, &model, BATCH).unwrap();
            eprintln!("up to {} images per submission", encoder.max_batch());
            group.bench_function("gpu_1_image", |b| b.iter(|| encoder.encode(one).unwrap()));
            if software {
                eprintln!("gpu_64_images skipped: the adapter is software");
            } else {
                group.bench_function("gpu_64_images", |b| b.iter(|| encoder.encode(&batch).unwrap()));
            }
        }
        Err(e) => eprintln!("no GPU rows: {e:#}"),
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
