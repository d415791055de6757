//! Decode latency, GPU (WGSL kernels through wgpu) against CPU (candle), with the shipped
//! model: one image from all six layers, and the studio's case of all six layer prefixes
//! of one pyramid at once. GPU times include writing the token ids and waiting for the
//! GPU to finish; `read_back` adds copying the pixels to the CPU (the studio draws the
//! texture itself and reads pixels back only for PSNR and export).
//! `studio_edit_to_image` is the studio's own path, driven headless through egui_kittest
//! with the CPU decoder: a word edit (the command a click queues), then every prefix
//! decoded (the one on screen first), PSNR, quantization errors, SAQ targets and textures;
//! the time until all of it is on screen. The studio measures each edit itself as well, to
//! its image on screen and to all prefixes, and the bench prints the last one.
//! Run with `cargo bench --bench decode`; the GPU rows need an adapter (lavapipe counts).

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use spae::codebook::vocabulary;
use spae::codebook::Codebook;
use spae::gpu::{Gpu, GpuDecoder};
use spae::model::SpaeModel;
use spae::{image_io, paths};

fn decode(c: &mut Criterion) {
    // As the spae and spae-studio programs do at start-up.
    spae::compute::allocator::keep_freed_memory();
    let codebook = Arc::new(
        Codebook::load(paths::LLM_GGUF, vocabulary::DEFAULT_RULE, vocabulary::DEFAULT_SIZE).expect("codebook"),
    );
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

fn studio_edit(c: &mut Criterion) {
    use spae::studio::scripted_dialog::ScriptedDialog;
    use spae::studio::{Cell, Command, DeviceChoice, StudioApp};
    let codebook = Arc::new(
        Codebook::load(paths::LLM_GGUF, vocabulary::DEFAULT_RULE, vocabulary::DEFAULT_SIZE).expect("codebook"),
    );
    let model = Arc::new(SpaeModel::load(paths::DEFAULT_MODEL_DIR, codebook).expect("the shipped model"));
    let words = ["ocean", "forest"].map(|w| model.codebook().vocabulary().index_of_word(w).expect("in the vocabulary"));
    let mut harness = egui_kittest::Harness::builder().with_size([1480.0, 980.0]).build_eframe(move |cc| {
        let dialog = Box::new(ScriptedDialog::default());
        StudioApp::new(cc, model, dialog, Path::new("assets/samples/cat-face.png"), DeviceChoice::Cpu)
    });
    let settle = |harness: &mut egui_kittest::Harness<'_, StudioApp>| {
        harness.step();
        while harness.state().is_busy() {
            harness.step();
        }
    };
    settle(&mut harness);
    let cell = Cell { layer: 3, row: 1, col: 2 };
    let mut next = 0;
    let mut group = c.benchmark_group("decode");
    group.sample_size(20);
    // Until everything is on screen; the studio's own measures of each edit are kept too.
    let mut measured = Vec::new();
    group.bench_function("studio_edit_to_image", |b| {
        b.iter(|| {
            harness.state_mut().command(Command::SetWord { cell, word: words[next % 2] });
            next += 1;
            settle(&mut harness);
            let app = harness.state();
            measured.push((app.edit_secs().unwrap_or(f64::NAN), app.edit_all_secs().unwrap_or(f64::NAN)));
        })
    });
    group.finish();
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2] * 1e3
    };
    eprintln!(
        "the studio's own measure over {} edits (median): {:.0} ms to the edited image on screen, {:.0} ms to all prefixes",
        measured.len(),
        median(measured.iter().map(|m| m.0).collect()),
        median(measured.iter().map(|m| m.1).collect())
    );
}

criterion_group!(benches, decode, studio_edit);
criterion_main!(benches);
