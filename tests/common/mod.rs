//! Shared test fixtures: the real frozen codebook, loaded once per test binary.
#![allow(dead_code)]

pub mod studio;

use std::sync::{Arc, OnceLock};

use candle_core::{Device, Tensor};
use spae::codebook::vocabulary::{self, Vocabulary};
use spae::codebook::Codebook;
use spae::llm::gguf::LlmFile;

pub fn llm_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::LLM_GGUF)
}

/// The `spae` command line, run from the project folder as a user would.
pub fn spae() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_spae"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// A new empty folder under the system's temporary folder, unique to this test process.
pub fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("spae-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn sample(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples").join(name)
}

/// The default codebook (the shipped model's 16,384 visual words) from the shipped GGUF.
pub fn codebook() -> Arc<Codebook> {
    static CODEBOOK: OnceLock<Arc<Codebook>> = OnceLock::new();
    CODEBOOK
        .get_or_init(|| {
            Arc::new(
                Codebook::load(llm_path(), vocabulary::DEFAULT_RULE, vocabulary::DEFAULT_SIZE).expect("load codebook"),
            )
        })
        .clone()
}

/// Every variable of a model by name, in name order, as plain values.
pub fn weights(model: &spae::model::SpaeModel) -> Vec<(String, Vec<f32>)> {
    let mut out: Vec<(String, Vec<f32>)> = model
        .varmap()
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A small model's config for the GPU's parity tests: 32 px, widths 16 / 32 (a 16 x 16
/// latent), two residual blocks per level, six layers weighing 3, 1, 2, 5, 4, 7 in the
/// running mean.
pub fn small_config() -> spae::model::SpaeConfig {
    spae::model::SpaeConfig {
        resolution: 32,
        channels: vec![16, 32],
        res_blocks: 2,
        layer_weights: Some(vec![3, 1, 2, 5, 4, 7]),
        ..Default::default()
    }
}

/// A real but small codebook: the first `size` lexical words, for brute-force references.
pub fn small_codebook(size: usize) -> Codebook {
    let file = LlmFile::open(llm_path()).unwrap();
    let vocabulary = Vocabulary::from_tokens(&file.tokens().unwrap(), size).unwrap();
    let table = file.dequantized("token_embd.weight").unwrap();
    let ids = Tensor::new(vocabulary.token_ids(), &Device::Cpu).unwrap();
    Codebook::new(vocabulary, table.index_select(&ids, 0).unwrap()).unwrap()
}

/// Deterministic pseudo-random values in -scale..scale (a tiny LCG, independent of the crate).
pub fn random_values(count: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..count)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Index of the nearest row by a plain scalar loop.
pub fn brute_force_nearest(codebook: &Codebook, target: &[f32]) -> u32 {
    (0..codebook.len() as u32)
        .map(|i| (spae::codebook::squared_distance(target, codebook.row(i)), i))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap()
        .1
}

/// The frozen LLM and its tokenizer, loaded once per test binary.
pub fn language() -> &'static (spae::llm::model::SmolLm, spae::llm::tokenizer::Tokenizer) {
    static LANGUAGE: OnceLock<(spae::llm::model::SmolLm, spae::llm::tokenizer::Tokenizer)> = OnceLock::new();
    LANGUAGE.get_or_init(|| {
        let file = LlmFile::open(llm_path()).expect("open the GGUF");
        (
            spae::llm::model::SmolLm::load(&file).expect("load the LLM"),
            spae::llm::tokenizer::Tokenizer::from_gguf(&file).expect("tokenizer"),
        )
    })
}
