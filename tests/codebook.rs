//! The frozen codebook and lexical vocabulary against the GGUF read independently.

mod common;

use std::collections::HashSet;

use spae::codebook::vocabulary::{lexical_word, Vocabulary, VocabularyRule};
use spae::llm::gguf::LlmFile;

#[test]
fn the_commonest_vocabulary_keeps_the_lowest_whole_word_tokens() {
    let file = LlmFile::open(common::llm_path()).unwrap();
    let tokens = file.tokens().unwrap();
    assert_eq!(tokens.len(), 49_152);
    let all_lexical: Vec<usize> = (0..tokens.len()).filter(|&i| lexical_word(&tokens[i]).is_some()).collect();
    assert_eq!(all_lexical.len(), 30_570, "docs/method.md section 1 counts 30,570 whole-word tokens");
    let vocabulary = Vocabulary::build(&tokens, VocabularyRule::Commonest, 16_384).unwrap();
    assert_eq!(vocabulary.len(), 16_384);
    for (index, &token) in all_lexical.iter().take(16_384).enumerate() {
        assert_eq!(vocabulary.token_id(index as u32), token as u32);
        let word = vocabulary.word(index as u32);
        assert_eq!(format!("Ġ{word}"), tokens[token]);
        assert_eq!(vocabulary.index_of_word(word), Some(index as u32));
        assert_eq!(vocabulary.index_of_token(token as u32), Some(index as u32));
    }
    assert_eq!(vocabulary.word(0), "the");
    assert_eq!(vocabulary.index_of_word("xyzzyq"), None);
    assert!(Vocabulary::from_tokens(&tokens, 40_000).is_err(), "more words than exist must be refused");
}

/// The committed visual list: 16,384 whole-word tokens in token order, holding every
/// whole-word spelling of the teacher's class names (the rest of the rule reads the
/// training split, which the tests do not have).
#[test]
fn the_shipped_visual_vocabulary_follows_its_rule_where_the_tests_can_check_it() {
    let file = LlmFile::open(common::llm_path()).unwrap();
    let tokens = file.tokens().unwrap();
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    assert_eq!(vocabulary.rule(), VocabularyRule::Visual);
    assert_eq!(vocabulary.len(), 16_384);
    assert!(vocabulary.token_ids().windows(2).all(|w| w[0] < w[1]), "rows in token order");
    for index in 0..vocabulary.len() as u32 {
        assert_eq!(format!("Ġ{}", vocabulary.word(index)), tokens[vocabulary.token_id(index) as usize]);
    }
    let spellings: HashSet<&str> = tokens.iter().filter_map(|t| lexical_word(t)).collect();
    let classes: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::IMAGENET_CLASSES))
            .unwrap(),
    )
    .unwrap();
    let mut class_words = 0;
    for name in &classes {
        for word in name.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| !w.is_empty()) {
            for form in [word.to_string(), word.to_ascii_lowercase()] {
                if spellings.contains(form.as_str()) {
                    class_words += 1;
                    assert!(vocabulary.index_of_word(&form).is_some(), "class word {form} is missing");
                }
            }
        }
    }
    assert!(class_words > 1000, "{class_words} class-name spellings checked");
    let commonest = Vocabulary::build(&tokens, VocabularyRule::Commonest, 16_384).unwrap();
    for word in ["strawberry", "goose", "rug", "cannon", "chestnut", "penguin"] {
        assert!(vocabulary.index_of_word(word).is_some(), "{word}: an ImageNet class word");
        assert!(commonest.index_of_word(word).is_none(), "{word} entered with the visual rule");
    }
}

#[test]
fn codebook_rows_are_the_dequantized_llm_embeddings() {
    let codebook = common::codebook();
    let file = LlmFile::open(common::llm_path()).unwrap();
    let table = file.dequantized("token_embd.weight").unwrap();
    assert_eq!(table.dims(), &[49_152, 576]);
    for index in [0u32, 1, 777, 16_383] {
        let token = codebook.vocabulary().token_id(index) as usize;
        let expected: Vec<f32> = table.get(token).unwrap().to_vec1().unwrap();
        assert_eq!(codebook.row(index), expected.as_slice());
    }
}

#[test]
fn nearest_matches_brute_force_on_the_full_codebook() {
    let codebook = common::codebook();
    let dim = codebook.dim();
    // Targets both near words (with noise) and far from any word.
    let mut targets = Vec::new();
    for (i, word) in [5u32, 100, 2_000, 9_999, 16_000].iter().enumerate() {
        let noise = common::random_values(dim, i as u64, 0.3);
        targets.extend(codebook.row(*word).iter().zip(&noise).map(|(a, b)| a + b));
    }
    targets.extend(common::random_values(dim * 20, 99, 1.5));
    let found = codebook.nearest(&targets);
    for (i, target) in targets.chunks(dim).enumerate() {
        assert_eq!(found[i], common::brute_force_nearest(&codebook, target), "target {i}");
    }
    let exact: Vec<f32> = codebook.row(4_321).to_vec();
    assert_eq!(codebook.nearest(&exact), vec![4_321]);
}

#[test]
fn nearest_k_is_sorted_and_starts_with_the_nearest() {
    let codebook = common::codebook();
    let target = common::random_values(codebook.dim(), 7, 1.0);
    let top = codebook.nearest_k(&target, 5);
    assert_eq!(top.len(), 5);
    assert_eq!(top[0].0, common::brute_force_nearest(&codebook, &target));
    assert!(top.windows(2).all(|w| w[0].1 <= w[1].1));
    let d = spae::codebook::squared_distance(&target, codebook.row(top[2].0));
    assert!((d - top[2].1).abs() < 1e-4);
}

#[test]
fn suggestions_and_completions_come_from_the_vocabulary() {
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    let suggestions = vocabulary.suggestions("catt", 5);
    assert_eq!(suggestions.len(), 5);
    assert!(suggestions.contains(&"cat"), "{suggestions:?}");
    let completions = vocabulary.completions("eleph", 3);
    assert!(completions.iter().all(|w| w.to_ascii_lowercase().starts_with("eleph")));
    assert!(completions.contains(&"elephant"), "{completions:?}");
}

/// The 8-bit search's approximate distance, computed here in f64 from bytes rounded here:
/// ||e||^2 - 2 s_t s_e (q_t . q_e), with q = round(v / s), s = max|v| / 127.
fn approximate_distances(codebook: &spae::codebook::Codebook, target: &[f32]) -> Vec<f64> {
    let bytes = |v: &[f32]| -> (f64, Vec<f64>) {
        let largest = v.iter().fold(0f32, |a, x| a.max(x.abs()));
        let scale = if largest > 0.0 { largest as f64 / 127.0 } else { 1.0 };
        (scale, v.iter().map(|&x| (x as f64 / scale).round()).collect())
    };
    let (st, qt) = bytes(target);
    (0..codebook.len() as u32)
        .map(|i| {
            let row = codebook.row(i);
            let (se, qe) = bytes(row);
            let norm: f64 = row.iter().map(|&x| x as f64 * x as f64).sum();
            norm - 2.0 * st * se * qt.iter().zip(&qe).map(|(a, b)| a * b).sum::<f64>()
        })
        .collect()
}

#[test]
fn the_quantized_search_rescores_its_shortlist_exactly() {
    use spae::codebook::quantized::{QuantizedIndex, QuantizedOptions};
    // 2,000 words: not a whole number of the kernel's 32-row blocks, so padding is crossed.
    let codebook = common::small_codebook(2_000);
    let dim = codebook.dim();
    let noise = common::random_values(45 * dim, 7, 0.05);
    let mut targets: Vec<f32> =
        (0..45u32).flat_map(|i| codebook.row(i * 41).to_vec()).zip(&noise).map(|(x, n)| x + n).collect();
    targets.extend(common::random_values(30 * dim, 8, 0.1));
    let expected: Vec<u32> = targets.chunks_exact(dim).map(|t| common::brute_force_nearest(&codebook, t)).collect();
    // Every word on the shortlist: the exact search.
    let all = QuantizedIndex::new(&codebook, QuantizedOptions { shortlist: 2_000 }).unwrap();
    assert_eq!(all.nearest_with(&codebook, &targets, false), expected);
    // A short list: wherever the exact word ranks well inside it by the approximate
    // distance (computed independently), it is found; no answer is nearer than the exact.
    let shortlist = 8;
    let index = QuantizedIndex::new(&codebook, QuantizedOptions { shortlist }).unwrap();
    let found = index.nearest_with(&codebook, &targets, false);
    let mut ranked_inside = 0;
    for ((target, &word), &best) in targets.chunks_exact(dim).zip(&found).zip(&expected) {
        let approximate = approximate_distances(&codebook, target);
        let rank = approximate.iter().filter(|&&d| d < approximate[best as usize]).count();
        if rank + 2 < shortlist {
            ranked_inside += 1;
            assert_eq!(word, best, "the exact word ranks {rank} by the approximate distance");
        }
        let (d_found, d_best) = (
            spae::codebook::squared_distance(target, codebook.row(word)),
            spae::codebook::squared_distance(target, codebook.row(best)),
        );
        assert!(d_found >= d_best - 1e-4, "found {word} at {d_found}, nearer than the exact {best} at {d_best}");
    }
    assert!(ranked_inside >= 60, "only {ranked_inside} of 75 exact words ranked inside the shortlist");
    // The vector kernel makes the same integer products and the same offers.
    if QuantizedIndex::vectorized() {
        for size in [1, 3, 8] {
            let index = QuantizedIndex::new(&codebook, QuantizedOptions { shortlist: size }).unwrap();
            assert_eq!(
                index.nearest_with(&codebook, &targets, true),
                index.nearest_with(&codebook, &targets, false),
                "shortlist {size}"
            );
        }
    }
    // A target with NaN has no finite distance: word 0, as the exact search answers.
    let mut broken = targets[..dim].to_vec();
    broken[7] = f32::NAN;
    assert_eq!(index.nearest(&codebook, &broken), codebook.nearest(&broken));
    // Sizes that cannot work are refused.
    assert!(QuantizedIndex::new(&codebook, QuantizedOptions { shortlist: 0 }).is_err());
    assert!(QuantizedIndex::new(&codebook, QuantizedOptions { shortlist: 2_001 }).is_err());
}

#[test]
fn ranked_shortlists_agree_with_nearest_k_where_every_word_is_listed() {
    use spae::codebook::quantized::{QuantizedIndex, QuantizedOptions};
    let codebook = common::small_codebook(600);
    let dim = codebook.dim();
    let targets = common::random_values(6 * dim, 11, 0.3);
    // Every word on the shortlist: the ranking is the exact one, nearest first.
    let all = QuantizedIndex::new(&codebook, QuantizedOptions { shortlist: 600 }).unwrap();
    let ranked = all.ranked(&codebook, &targets, 5);
    for (target, words) in targets.chunks_exact(dim).zip(ranked.chunks(5)) {
        let expected: Vec<u32> = codebook.nearest_k(target, 5).iter().map(|&(w, _)| w).collect();
        assert_eq!(words, expected.as_slice());
    }
    // A short list ranks its own words exactly; its first is `nearest`'s word.
    let index = QuantizedIndex::new(&codebook, QuantizedOptions { shortlist: 16 }).unwrap();
    let ranked = index.ranked(&codebook, &targets, 16);
    let nearest = index.nearest(&codebook, &targets);
    for ((target, words), &first) in targets.chunks_exact(dim).zip(ranked.chunks(16)).zip(&nearest) {
        assert_eq!(words[0], first);
        let d: Vec<f32> = words.iter().map(|&w| spae::codebook::squared_distance(target, codebook.row(w))).collect();
        assert!(d.windows(2).all(|w| w[0] <= w[1] + 1e-4), "{d:?}");
    }
}
