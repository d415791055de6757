//! Progressive in-context denoising with the real SmolLM2: the corruption schedule, frames
//! and their changed words, determinism by seed, cancelling, KV-cache reuse and bad input.

mod common;

use std::ops::ControlFlow;

use spae::pyramid::PyramidShape;
use spae::tasks::denoising::{Condition, Denoiser, Example, Frame, Options};

fn word(text: &str) -> u32 {
    common::codebook().vocabulary().index_of_word(text).unwrap_or_else(|| panic!("`{text}` is a vocabulary word"))
}

/// Two examples whose 21 words (layers 1-3) are all one word.
fn examples() -> Vec<Example> {
    vec![
        Example { condition: Condition::Text("red".into()), words: vec![word("red"); 21] },
        Example { condition: Condition::Text("blue".into()), words: vec![word("blue"); 21] },
    ]
}

fn run(options: &Options, stop_after: Option<usize>) -> spae::tasks::denoising::Generation {
    let (llm, tokenizer) = common::language();
    let codebook = common::codebook();
    let shape = PyramidShape::new(16, 6).unwrap();
    let denoiser = Denoiser { llm, tokenizer, vocabulary: codebook.vocabulary(), shape: &shape };
    let query = Condition::Text("red".into());
    denoiser
        .generate(&examples(), &query, options, |frame: &Frame| match stop_after {
            Some(step) if frame.step >= step => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .unwrap()
}

fn options(seed: u64) -> Options {
    Options { steps: 3, layers: 3, ar_layers: 1, temperature: 0.0, seed, ..Options::default() }
}

#[test]
fn the_corruption_falls_on_a_cosine_to_the_floor() {
    let options = Options { steps: 8, floor: 0.2, ..Options::default() };
    let rates: Vec<f32> = (0..8).map(|t| options.corruption(t)).collect();
    for (t, rate) in rates.iter().enumerate() {
        let expected = 0.2 + 0.8 * (std::f64::consts::PI / 2.0 * (t + 1) as f64 / 8.0).cos();
        assert!((*rate as f64 - expected).abs() < 1e-6, "step {t}: {rate} vs {expected}");
    }
    assert!(rates[0] > 0.95 && (rates[7] - 0.2).abs() < 1e-6);
    assert!(rates.windows(2).all(|w| w[1] < w[0]));
}

#[test]
fn every_step_is_a_frame_and_changed_words_are_the_differences() {
    let generation = run(&options(1), None);
    assert_eq!(generation.frames.len(), 4, "the random start and three steps");
    assert!(!generation.cancelled);
    let vocabulary_size = common::codebook().len() as u32;
    for (i, frame) in generation.frames.iter().enumerate() {
        assert_eq!(frame.step, i);
        assert_eq!(frame.words.len(), 21);
        assert!(frame.words.iter().all(|&w| w < vocabulary_size));
        if i > 0 {
            let previous = &generation.frames[i - 1].words;
            let differ: Vec<usize> = (0..21).filter(|&p| frame.words[p] != previous[p]).collect();
            assert_eq!(frame.changed, differ, "frame {i}");
        }
    }
    // Greedy, with examples all of one word: the LLM writes that word for the query "red".
    let last = &generation.frames[3].words;
    let reds = last.iter().filter(|&&w| w == word("red")).count();
    assert!(reds > 10, "{reds} of 21 words are `red`: {last:?}");
    // The prompt's cache is shared within a step and the header's across steps.
    assert!(
        generation.tokens_run * 2 < generation.tokens_without_reuse,
        "{} vs {}",
        generation.tokens_run,
        generation.tokens_without_reuse
    );
}

#[test]
fn the_seed_decides_everything() {
    let sampled = |seed| Options { temperature: 1.0, ..options(seed) };
    let a = run(&sampled(5), None);
    let b = run(&sampled(5), None);
    let c = run(&sampled(6), None);
    let words = |g: &spae::tasks::denoising::Generation| g.frames.iter().map(|f| f.words.clone()).collect::<Vec<_>>();
    assert_eq!(words(&a), words(&b));
    assert_ne!(words(&a), words(&c));
}

#[test]
fn cancelling_keeps_the_frames_made_so_far() {
    let generation = run(&options(2), Some(1));
    assert!(generation.cancelled);
    assert_eq!(generation.frames.len(), 2);
    let again = run(&options(2), None);
    assert_eq!(generation.frames[1].words, again.frames[1].words, "the kept frame is the full run's");
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let (llm, tokenizer) = common::language();
    let codebook = common::codebook();
    let shape = PyramidShape::new(16, 6).unwrap();
    let denoiser = Denoiser { llm, tokenizer, vocabulary: codebook.vocabulary(), shape: &shape };
    let go = |query: &Condition, options: &Options| {
        denoiser.generate(&examples(), query, options, |_| ControlFlow::Continue(())).err().unwrap().to_string()
    };
    let error = go(&Condition::Text("  ".into()), &options(0));
    assert!(error.contains("prompt is empty"), "{error}");
    let error = go(&Condition::Text("red".into()), &Options { ar_layers: 4, ..options(0) });
    assert!(error.contains("AR layers"), "{error}");
    let error = go(&Condition::Text("red".into()), &Options { layers: 4, ..options(0) });
    assert!(error.contains("words, 85 are needed"), "{error}");
}
