//! The frozen LLM, SmolLM2-135M-Instruct, read from its GGUF file: its tokenizer and its
//! forward pass.

pub mod gguf;
mod kernels;
pub mod model;
pub mod tokenizer;

/// Log-probabilities from the LLM's logits (a log-sum-exp in f64 after subtracting the
/// largest logit, so large logits neither overflow nor lose the small ones).
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits.iter().map(|&l| ((l - max) as f64).exp()).sum::<f64>().ln() as f32 + max;
    logits.iter().map(|&l| l - log_sum).collect()
}
