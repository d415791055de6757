//! Decode latency, GPU (WGSL kernels through wgpu) against CPU (candle), with the shipped
//! model: one image from all six layers, and the studio's case of all six layer prefixes
//! of one pyramid at once. GPU times include writing the token ids and waiting for the
//! GPU to finish; `read_back` adds copying the pixels to the CPU (the studio draws the
//! texture itself and reads pixels back only for PSNR and export).
//! Run with `cargo bench --bench decode`; the GPU rows need an adapter (lavapipe counts).

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use spae::codebook::Codebook;
use spae::gpu::{Gpu, GpuDecoder};
use spae::model::SpaeModel;
use spae::{image_io, paths, vocabulary};

fn decode(c: &mut Criterion) {
    let codebook = Arc::new(Codebook::load(paths::LLM_GGUF, vocabulary::DEFAULT_SIZE).expect("codebook"));
    let model = SpaeModel::load(paths::DEFAULT_MODEL_DIR, codebook).expect("the shipped model");
    let image = image_io::prepare(&image_io::load(Path::new("assets/samples/cat-face.png")).unwrap(), 64);
    let pyramid = model.encode(&image).unwrap();
    let layers = model.shape().layers();
    let prefixes: Vec<_> = (1..=layers).map(|k| (&pyramid, k)).collect();

    let mut group = c.benchmark_group("decode");
    group.sample_size(20);
    group.bench_function("cpu_1_image", |b| b.iter(|| model.decode(&pyramid, layers).unwrap()));
    // The studio's CPU path: one prefix at a time (a batch of six is three times slower).
    group.bench_function("cpu_6_prefixes", |b| {
        b.iter(|| (1..=layers).map(|k| model.decode(&pyramid, k).unwrap()).collect::<Vec<_>>())
    });
    match Gpu::headless() {
        Ok(gpu) => {
            eprintln!("GPU adapter: {}", gpu.adapter);
            let decoder = GpuDecoder::new(gpu, &model, layers).unwrap();
            group.bench_function("gpu_1_image", |b| b.iter(|| decoder.submit(&[(&pyramid, layers)]).unwrap()));
            group.bench_function("gpu_6_prefixes", |b| b.iter(|| decoder.submit(&prefixes).unwrap()));
            group.bench_function("gpu_6_prefixes_read_back", |b| b.iter(|| decoder.decode(&prefixes).unwrap()));
        }
        Err(e) => eprintln!("no GPU rows: {e:#}"),
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
