//! LLM speed: prompt processing and generation in tokens/s on the shipped SmolLM2 GGUF.
//! Run with `cargo bench --bench llm`; `scripts/bench_llamacpp.py` measures llama.cpp on
//! the same file, prompt length and generation length.
//!
//! Throughput is reported in elements/s where one element is one token.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spae::llm::gguf::LlmFile;
use spae::llm::model::{argmax, SmolLm};
use spae::llm::tokenizer::Tokenizer;
use spae::paths;

/// Prompt length and generated tokens, as in scripts/bench_llamacpp.py.
const PROMPT_TOKENS: usize = 256;
const GENERATED_TOKENS: usize = 64;

/// A `PROMPT_TOKENS`-token prompt of ordinary English text.
fn prompt(tokenizer: &Tokenizer) -> Vec<u32> {
    let text = "The old lighthouse keeper climbed the spiral stairs every evening, counting the steps \
                as his father had taught him, and lit the great lamp that warned the fishing boats \
                away from the rocks. ";
    let mut tokens = Vec::new();
    while tokens.len() < PROMPT_TOKENS {
        tokens.extend(tokenizer.encode(text));
    }
    tokens.truncate(PROMPT_TOKENS);
    tokens
}

fn llm(c: &mut Criterion) {
    let file = LlmFile::open(paths::LLM_GGUF).expect("LLM file");
    let model = Arc::new(SmolLm::load(&file).expect("model"));
    let prompt = prompt(&Tokenizer::from_gguf(&file).expect("tokenizer"));

    let mut group = c.benchmark_group("llm");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PROMPT_TOKENS as u64));
    group.bench_function("prompt_256_tokens", |b| {
        b.iter(|| model.logits_last(&prompt, 0, &mut model.new_cache()).unwrap())
    });

    let mut prefilled = model.new_cache();
    let first = argmax(&model.logits_last(&prompt, 0, &mut prefilled).unwrap());
    group.throughput(Throughput::Elements(GENERATED_TOKENS as u64));
    group.bench_function("generate_64_tokens", |b| {
        b.iter(|| {
            let mut cache = prefilled.clone();
            let mut next = first;
            for _ in 0..GENERATED_TOKENS {
                next = argmax(&model.logits_last(&[next], cache.len(), &mut cache).unwrap());
            }
            next
        })
    });

    // Scoring every position of a short and of a longer chunk (quantized and dense paths).
    for length in [8, 64] {
        let scored = &prompt[..length];
        group.throughput(Throughput::Elements(length as u64));
        group.bench_function(format!("score_all_positions_{length}_tokens"), |b| {
            b.iter(|| model.logits_all(scored, 0, &mut model.new_cache()).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, llm);
criterion_main!(benches);
