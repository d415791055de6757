//! The LLM forward pass: it answers a factual question, and its chunked, one-token and
//! snapshot-restored paths agree.

use std::path::PathBuf;
use std::sync::OnceLock;

use spae::llm::gguf::LlmFile;
use spae::llm::model::{argmax, SmolLm};
use spae::llm::tokenizer::{Role, Tokenizer};
use spae::paths;

struct Llm {
    model: SmolLm,
    tokenizer: Tokenizer,
}

fn llm() -> &'static Llm {
    static LLM: OnceLock<Llm> = OnceLock::new();
    LLM.get_or_init(|| {
        let file = LlmFile::open(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(paths::LLM_GGUF)).unwrap();
        Llm { model: SmolLm::load(&file).unwrap(), tokenizer: Tokenizer::from_gguf(&file).unwrap() }
    })
}

/// Largest difference between two logit rows relative to the largest logit magnitude.
fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn greedy_answer_names_paris() {
    let Llm { model, tokenizer } = llm();
    let prompt = tokenizer.encode_chat(&[(Role::User, "What is the capital of France?")], true);
    let answer = model.greedy(&prompt, 24, 0, &[tokenizer.eos()]).unwrap();
    let text = tokenizer.decode_skipping_control(&answer);
    assert!(text.contains("Paris"), "answer: {text:?}");
}

#[test]
fn greedy_never_stops_before_its_minimum() {
    let Llm { model, tokenizer } = llm();
    let prompt = tokenizer.encode_chat(&[(Role::User, "What is the capital of France?")], true);
    let logits = model.logits_last(&prompt, 0, &mut model.new_cache()).unwrap();
    let mut ranked: Vec<u32> = (0..logits.len() as u32).collect();
    ranked.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    // With the most likely first token as a stop token: without a minimum it is taken and
    // ends the answer; with a minimum of one the runner-up comes first instead.
    let stop = [ranked[0]];
    assert_eq!(model.greedy(&prompt, 8, 0, &stop).unwrap(), vec![ranked[0]]);
    assert_eq!(model.greedy(&prompt, 8, 1, &stop).unwrap()[0], ranked[1]);
}

#[test]
fn first_answer_tokens_agree_with_llama_cpp() {
    let Llm { model, tokenizer } = llm();
    let prompt = tokenizer.encode_chat(&[(Role::User, "What is the capital of France?")], true);
    let logits = model.logits_last(&prompt, 0, &mut model.new_cache()).unwrap();
    let mut ranked: Vec<u32> = (0..logits.len() as u32).collect();
    ranked.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    ranked.truncate(5);
    ranked.sort();
    // llama.cpp's five most likely first tokens for this prompt (xllamacpp 2026.10.11549,
    // `n_probs`): "L", "The", "La", "Al", "Le". Its activations are rounded to 8 bits, so
    // the close first two swap places there; the set is the same.
    assert_eq!(ranked, [60, 504, 2219, 7026, 15319]);
}

#[test]
fn chunks_match_token_by_token() {
    let Llm { model, tokenizer } = llm();
    let tokens = tokenizer.encode(
        "The cat sat on the mat because it was warm, and the dog watched it from the door. \
         Later that evening the rain began, so both of them moved inside to sleep by the fire. \
         In the morning the sun came back, the birds sang, and the garden smelled of wet grass.",
    );
    assert!(tokens.len() > 40, "more than 32 tokens, to take the dense path");
    let vocab = model.config().vocab;
    let mut stepwise = model.new_cache();
    let steps: Vec<Vec<f32>> =
        (0..tokens.len()).map(|i| model.logits_last(&tokens[i..i + 1], i, &mut stepwise).unwrap()).collect();
    // All at once (dense weights), 20 (quantized weights, attention as matrix products) and
    // 6 tokens (attention query by query).
    for length in [tokens.len(), 20, 6] {
        let mut cache = model.new_cache();
        let chunk = model.logits_all(&tokens[..length], 0, &mut cache).unwrap();
        assert_eq!(chunk.len(), length * vocab);
        assert_eq!(cache.len(), length);
        for (i, step) in steps.iter().take(length).enumerate() {
            let row = &chunk[i * vocab..(i + 1) * vocab];
            let difference = relative_difference(row, step);
            assert!(difference < 1e-3, "chunk of {length}, position {i}: relative difference {difference}");
            assert_eq!(argmax(row), argmax(step), "chunk of {length}, position {i}");
        }
        // The last-position path agrees with the last row of the all-position path.
        let last = model.logits_last(&tokens[..length], 0, &mut model.new_cache()).unwrap();
        assert!(relative_difference(&chunk[chunk.len() - vocab..], &last) < 1e-3);
    }
}

#[test]
fn restored_snapshot_matches_recomputing_the_prefix() {
    let Llm { model, tokenizer } = llm();
    let prefix = tokenizer.encode_chat(&[(Role::User, "Describe a picture in three words.")], true);
    let (first, second) = (tokenizer.encode("A red barn"), tokenizer.encode("Blue ocean waves"));
    let mut cache = model.new_cache();
    model.logits_last(&prefix, 0, &mut cache).unwrap();
    let snapshot = cache.clone();

    let after_first = model.logits_all(&first, prefix.len(), &mut cache).unwrap();
    assert_eq!(cache.len(), prefix.len() + first.len());
    cache.restore(&snapshot);
    let after_second = model.logits_all(&second, prefix.len(), &mut cache).unwrap();

    let vocab = model.config().vocab;
    for (continuation, logits) in [(&first, &after_first), (&second, &after_second)] {
        let whole: Vec<u32> = prefix.iter().chain(continuation.iter()).copied().collect();
        let fresh = model.logits_all(&whole, 0, &mut model.new_cache()).unwrap();
        let difference = relative_difference(&fresh[prefix.len() * vocab..], logits);
        assert!(difference < 1e-3, "relative difference {difference}");
    }

    // Starting inside the cache drops the later positions, like restoring a snapshot.
    let rerun = model.logits_all(&first, prefix.len(), &mut cache).unwrap();
    assert!(relative_difference(&rerun, &after_first) < 1e-5);
    cache.truncate(prefix.len());
    assert_eq!(cache.len(), snapshot.len());
}

#[test]
fn bad_inputs_are_refused() {
    let Llm { model, .. } = llm();
    let mut cache = model.new_cache();
    assert!(model.logits_last(&[], 0, &mut cache).is_err());
    assert!(model.logits_last(&[1], 1, &mut cache).is_err(), "start past the cache");
    assert!(model.logits_last(&[model.config().vocab as u32], 0, &mut cache).is_err());
    assert!(cache.is_empty());
}
