//! Core speed: nearest-word search (exact, and the 8-bit search training uses) against a
//! plain matrix product, a convolution's weight gradient in the two operand layouts, and
//! encode latency per image on the CPU (decode latency is in `benches/decode.rs`). Run
//! with `cargo bench --bench core`.
//!
//! Throughput is reported in elements/s where one element is one floating-point
//! operation, so "Gelem/s" reads as GFLOP/s.

use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spae::codebook::quantized::{QuantizedIndex, QuantizedOptions};
use spae::codebook::vocabulary;
use spae::codebook::Codebook;
use spae::model::{SpaeConfig, SpaeModel};
use spae::pyramid::saq;
use spae::pyramid::{CellTarget, PyramidShape};
use spae::{image_io, paths};

fn codebook() -> Arc<Codebook> {
    Arc::new(Codebook::load(paths::LLM_GGUF, vocabulary::DEFAULT_RULE, vocabulary::DEFAULT_SIZE).expect("codebook"))
}

/// Deterministic targets shaped like one image's 597 SAQ queries.
fn targets(count: usize, dim: usize) -> Vec<f32> {
    let mut state = 12345u64;
    (0..count * dim)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.6
        })
        .collect()
}

fn search(c: &mut Criterion) {
    let codebook = codebook();
    let (n, dim, m) = (codebook.len(), codebook.dim(), 597);
    let flops = 2 * m * n * dim;
    let queries = targets(m, dim);
    let mut group = c.benchmark_group("search");
    group.throughput(Throughput::Elements(flops as u64));
    group.bench_function("nearest_597_queries", |b| b.iter(|| codebook.nearest(&queries)));
    let quantized = QuantizedIndex::new(&codebook, QuantizedOptions::default()).unwrap();
    group.bench_function("quantized_597_queries", |b| b.iter(|| quantized.nearest(&codebook, &queries)));
    let lhs = Tensor::from_slice(&queries, (m, dim), &Device::Cpu).unwrap();
    let rhs = codebook.embeddings().t().unwrap();
    group.bench_function("candle_matmul_597x576x16384", |b| b.iter(|| lhs.matmul(&rhs).unwrap()));
    group.bench_function("candle_matmul_argmin_597", |b| b.iter(|| lhs.matmul(&rhs).unwrap().argmax(1).unwrap()));
    group.finish();

    // A training batch's lower layer: 16 images x 256 cells, exact and quantized.
    let m = 16 * 256;
    let queries = targets(m, dim);
    let mut group = c.benchmark_group("search_batch_layer");
    group.sample_size(10);
    group.throughput(Throughput::Elements((2 * m * n * dim) as u64));
    group.bench_function("nearest_4096_queries", |b| b.iter(|| codebook.nearest(&queries)));
    group.bench_function("quantized_4096_queries", |b| b.iter(|| quantized.nearest(&codebook, &queries)));
    group.finish();

    // SAQ over a whole latent: the layer order must not multiply the search cost.
    let shape = PyramidShape::new(16, 6).unwrap();
    let z = Tensor::from_vec(targets(16 * 16, dim), (1, dim, 16, 16), &Device::Cpu).unwrap();
    let mut group = c.benchmark_group("saq");
    group.throughput(Throughput::Elements(flops as u64));
    group.bench_function("quantize_one_latent", |b| {
        b.iter(|| saq::quantize(&z, &codebook, &shape, CellTarget::Mean).unwrap())
    });
    group.finish();
}

/// One image's weight gradient of the decoder's last 3 x 3 convolutions (32 channels in
/// and out, 64 x 64 positions: dW is 32 x 289 over 4,096 positions) on one thread, as
/// training runs them: `dY . P^T` (both operands run along the positions, which gemm
/// packs element by element) against `P . dY^T` with dY transposed first (what
/// `compute::conv` does).
fn weight_gradient(c: &mut Criterion) {
    use spae::compute::matmul::{product, transpose, View};
    let (o, rows, positions) = (32, 289, 4096);
    let patches = targets(rows * positions, 1);
    let grad = targets(o * positions, 1);
    let mut group = c.benchmark_group("conv_weight_gradient");
    group.throughput(Throughput::Elements((2 * o * rows * positions) as u64));
    let mut dweight = vec![0f32; o * rows];
    group.bench_function("dy_times_patches_transposed", |b| {
        b.iter(|| {
            let (lhs, rhs) = (View::rows(&grad, positions), View::transposed(&patches, positions));
            product(o, positions, rows, lhs, rhs, &mut dweight, rows, false, false)
        })
    });
    let mut grad_t = vec![0f32; positions * o];
    group.bench_function("patches_times_dy_transposed_first", |b| {
        b.iter(|| {
            transpose(&grad, o, positions, &mut grad_t);
            let (lhs, rhs) = (View::rows(&patches, positions), View::rows(&grad_t, o));
            product(rows, positions, o, lhs, rhs, &mut dweight, o, false, false)
        })
    });
    group.finish();
}

/// Encoding one image with the default config (the semantic branch runs the teacher at
/// 128 px), at a 256 px teacher input, and with the CNN alone: side by side in one run.
fn autoencoder(c: &mut Criterion) {
    let image = image_io::prepare(&image_io::load(Path::new("assets/samples/cat-face.png")).unwrap(), 64);
    let mut group = c.benchmark_group("image");
    group.sample_size(20);
    let default = SpaeConfig::default();
    let mut teacher_256 = default.clone();
    if let Some(branch) = teacher_256.semantic_branch.as_mut() {
        branch.teacher_input = 256;
    }
    let cnn_only = SpaeConfig { semantic_branch: None, ..default.clone() };
    for (name, config) in
        [("encode_64px", default), ("encode_64px_teacher_256", teacher_256), ("encode_64px_cnn_only", cnn_only)]
    {
        let model = SpaeModel::from_seed(config, codebook(), 0).unwrap();
        group.bench_function(name, |b| b.iter(|| model.encode(&image).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, search, weight_gradient, autoencoder);
criterion_main!(benches);
