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

/// The brute-force nearest row: the smallest squared distance, the lower index on ties.
fn brute_nearest(codebook: &spae::codebook::Codebook, target: &[f32]) -> u32 {
    (0..codebook.len() as u32)
        .map(|i| (spae::codebook::squared_distance(target, codebook.row(i)), i))
        .fold((f32::INFINITY, 0), |best, (d, i)| if d < best.0 { (d, i) } else { best })
        .1
}

#[test]
fn the_candidate_search_probing_every_cluster_is_the_exact_search() {
    use spae::codebook::candidates::{CandidateIndex, CandidateOptions};
    let codebook = common::small_codebook(2_000);
    let dim = codebook.dim();
    // Targets: words plus noise (so the answer is usually, not always, the word itself),
    // and pure noise.
    let noise = common::random_values(40 * dim, 5, 0.05);
    let mut targets: Vec<f32> =
        (0..20u32).flat_map(|i| codebook.row(i * 97).to_vec()).zip(&noise).map(|(x, n)| x + n).collect();
    targets.extend(common::random_values(20 * dim, 6, 0.1));
    let expected: Vec<u32> = targets.chunks_exact(dim).map(|t| brute_nearest(&codebook, t)).collect();
    let all = CandidateIndex::new(&codebook, CandidateOptions { clusters: 32, probes: 32 }).unwrap();
    assert_eq!(all.nearest(&codebook, &targets), expected);
    // Probing fewer clusters: every answer is a real word at least as far as the exact one.
    let some = CandidateIndex::new(&codebook, CandidateOptions { clusters: 32, probes: 4 }).unwrap();
    for ((target, found), best) in targets.chunks_exact(dim).zip(some.nearest(&codebook, &targets)).zip(&expected) {
        let (d_found, d_best) = (
            spae::codebook::squared_distance(target, codebook.row(found)),
            spae::codebook::squared_distance(target, codebook.row(*best)),
        );
        assert!(d_found >= d_best - 1e-4, "found {found} at {d_found}, nearer than the exact {best} at {d_best}");
    }
    // A word's own row is found when its cluster is probed: each word's cluster is
    // nearest to it in most cases, so agreement on exact rows is high.
    let rows: Vec<f32> = (0..200u32).flat_map(|i| codebook.row(i * 10).to_vec()).collect();
    let found = some.nearest(&codebook, &rows);
    let same = found.iter().enumerate().filter(|(i, &w)| w == *i as u32 * 10).count();
    assert!(same >= 180, "{same} of 200 words found themselves");
    // Sizes that cannot work are refused.
    assert!(CandidateIndex::new(&codebook, CandidateOptions { clusters: 8, probes: 9 }).is_err());
    assert!(CandidateIndex::new(&codebook, CandidateOptions { clusters: 0, probes: 0 }).is_err());
}
