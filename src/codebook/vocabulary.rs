//! The lexical vocabulary: the LLM tokens that are whole English words (docs/method.md section 1).
//!
//! A token qualifies when it starts with the byte-level space marker `Ġ` and the rest is
//! three or more ASCII letters. Which of them form the codebook is a [`VocabularyRule`]:
//! the `size` lowest token ids (BPE merges come roughly in frequency order, so these are
//! the commonest words), or the committed visual list (`visual.rs`). Either way the rows
//! are in token-id order. A word's *index* is its row in the codebook (0..size); its
//! *token id* is its id in the LLM's vocabulary.

use std::collections::HashMap;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

/// The byte-level BPE marker for a leading space.
const SPACE_MARKER: char = 'Ġ';

/// Default number of words kept (docs/method.md section 1).
pub const DEFAULT_SIZE: usize = 16_384;

/// The rule a new model's words are chosen by (the shipped model's).
pub const DEFAULT_RULE: VocabularyRule = VocabularyRule::Visual;

/// Which whole-word tokens form the codebook (a model's config names it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VocabularyRule {
    /// The `vocabulary_size` lowest token ids: the commonest words.
    #[default]
    Commonest,
    /// The words listed in `weights/visual-vocabulary.txt` (made by `spae vocabulary`).
    Visual,
}

impl VocabularyRule {
    /// How the README and messages call it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Commonest => "commonest",
            Self::Visual => "visual",
        }
    }
}

pub struct Vocabulary {
    rule: VocabularyRule,
    words: Vec<String>,
    token_ids: Vec<u32>,
    index_of_word: HashMap<String, u32>,
    index_of_token: HashMap<u32, u32>,
}

impl Vocabulary {
    /// Builds the vocabulary from the LLM's token strings (in id order) by `rule`, keeping
    /// `size` words.
    pub fn build(tokens: &[String], rule: VocabularyRule, size: usize) -> Result<Self> {
        match rule {
            VocabularyRule::Commonest => Self::from_tokens(tokens, size),
            VocabularyRule::Visual => {
                let path = crate::paths::resolve(crate::paths::VISUAL_VOCABULARY);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read the visual vocabulary {}", path.display()))?;
                let words: Vec<&str> = text.lines().map(str::trim).filter(|w| !w.is_empty()).collect();
                let vocabulary = Self::from_list(tokens, &words).with_context(|| format!("in {}", path.display()))?;
                ensure!(
                    vocabulary.len() == size,
                    "{} lists {} words, but the model was made for {size}",
                    path.display(),
                    vocabulary.len()
                );
                Ok(vocabulary)
            }
        }
    }

    /// The `size` whole-word tokens with the lowest ids.
    pub fn from_tokens(tokens: &[String], size: usize) -> Result<Self> {
        let lexical: Vec<(u32, String)> =
            lexical_tokens(tokens).take(size).map(|(id, w)| (id, w.to_string())).collect();
        if lexical.len() < size {
            bail!("the LLM has only {} whole-word tokens, fewer than the {size} asked for", lexical.len());
        }
        Ok(Self::from_pairs(VocabularyRule::Commonest, lexical))
    }

    /// The whole-word tokens spelling the listed words (each word once, every one a
    /// whole-word token of this LLM), in token-id order.
    pub fn from_list(tokens: &[String], words: &[&str]) -> Result<Self> {
        let id_of: HashMap<&str, u32> = lexical_tokens(tokens).map(|(id, w)| (w, id)).collect();
        let mut pairs = Vec::with_capacity(words.len());
        let mut seen = std::collections::HashSet::new();
        for &word in words {
            let id = *id_of.get(word).with_context(|| format!("\"{word}\" is not a whole-word token of the LLM"))?;
            ensure!(seen.insert(id), "\"{word}\" is listed twice");
            pairs.push((id, word.to_string()));
        }
        ensure!(pairs.len() >= 2, "a vocabulary needs at least 2 words, not {}", pairs.len());
        pairs.sort_unstable_by_key(|&(id, _)| id);
        Ok(Self::from_pairs(VocabularyRule::Visual, pairs))
    }

    fn from_pairs(rule: VocabularyRule, pairs: Vec<(u32, String)>) -> Self {
        let (token_ids, words): (Vec<u32>, Vec<String>) = pairs.into_iter().unzip();
        let index_of_word = words.iter().enumerate().map(|(i, w)| (w.clone(), i as u32)).collect();
        let index_of_token = token_ids.iter().enumerate().map(|(i, &t)| (t, i as u32)).collect();
        Self { rule, words, token_ids, index_of_word, index_of_token }
    }

    /// The rule the words were chosen by: a listed vocabulary counts as visual.
    pub fn rule(&self) -> VocabularyRule {
        self.rule
    }

    /// All words, in row order.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The word at a codebook row.
    pub fn word(&self, index: u32) -> &str {
        &self.words[index as usize]
    }

    /// The LLM token id of the word at a codebook row.
    pub fn token_id(&self, index: u32) -> u32 {
        self.token_ids[index as usize]
    }

    /// All LLM token ids, in codebook-row order.
    pub fn token_ids(&self) -> &[u32] {
        &self.token_ids
    }

    /// The codebook row of a word (exact, case-sensitive), if it is in the vocabulary.
    pub fn index_of_word(&self, word: &str) -> Option<u32> {
        self.index_of_word.get(word).copied()
    }

    /// The codebook row of an LLM token id, if that token is in the vocabulary.
    pub fn index_of_token(&self, token_id: u32) -> Option<u32> {
        self.index_of_token.get(&token_id).copied()
    }

    /// Vocabulary words spelled most like `word` (edit distance, ties by row), best first;
    /// none for a word over [`MAX_SUGGESTION_BYTES`] (no word is that long, and the cost
    /// grows with its length).
    pub fn suggestions(&self, word: &str, count: usize) -> Vec<&str> {
        if word.len() > MAX_SUGGESTION_BYTES {
            return Vec::new();
        }
        let lowered = word.to_ascii_lowercase();
        let mut scored: Vec<(usize, usize)> =
            self.words.iter().enumerate().map(|(i, w)| (edit_distance(&lowered, &w.to_ascii_lowercase()), i)).collect();
        scored.sort_unstable();
        scored.into_iter().take(count).map(|(_, i)| self.words[i].as_str()).collect()
    }

    /// Words starting with `prefix` (case-insensitive), commonest first.
    pub fn completions(&self, prefix: &str, count: usize) -> Vec<&str> {
        let lowered = prefix.to_ascii_lowercase();
        self.words
            .iter()
            .filter(|w| w.to_ascii_lowercase().starts_with(&lowered))
            .take(count)
            .map(String::as_str)
            .collect()
    }
}

/// Longest word that gets spelling suggestions.
pub const MAX_SUGGESTION_BYTES: usize = 64;

/// Every whole-word token of the LLM as (token id, word), in id order.
pub fn lexical_tokens(tokens: &[String]) -> impl Iterator<Item = (u32, &str)> {
    tokens.iter().enumerate().filter_map(|(id, token)| lexical_word(token).map(|w| (id as u32, w)))
}

/// The word a token spells if it is a whole-word token, else `None`.
pub fn lexical_word(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(SPACE_MARKER)?;
    (rest.len() >= 3 && rest.bytes().all(|b| b.is_ascii_alphabetic())).then_some(rest)
}

/// Levenshtein distance over bytes (the words are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_matches_hand_counts() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("cat", "cat"), 0);
        assert_eq!(edit_distance("cat", "cart"), 1);
    }

    #[test]
    fn lexical_word_rules() {
        assert_eq!(lexical_word("Ġcat"), Some("cat"));
        assert_eq!(lexical_word("ĠThe"), Some("The"));
        assert_eq!(lexical_word("Ġat"), None);
        assert_eq!(lexical_word("cat"), None);
        assert_eq!(lexical_word("Ġca1t"), None);
        assert_eq!(lexical_word("Ġcafé"), None);
    }

    fn tokens() -> Vec<String> {
        ["Ġthe", "Ġcat", "at", "Ġdog", "Ġgoose", "Ġab", "Ġjeep"].iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn a_listed_vocabulary_keeps_token_order_and_refuses_what_is_not_a_word_token() {
        let vocabulary = Vocabulary::from_list(&tokens(), &["jeep", "cat", "goose"]).unwrap();
        assert_eq!(vocabulary.words(), ["cat", "goose", "jeep"]);
        assert_eq!(vocabulary.token_ids(), [1, 4, 6]);
        assert_eq!(vocabulary.index_of_word("goose"), Some(1));
        let refused = |words: &[&str]| Vocabulary::from_list(&tokens(), words).err().unwrap().to_string();
        assert!(refused(&["cat", "ab"]).contains("\"ab\" is not a whole-word token"));
        assert!(refused(&["cat", "horse"]).contains("\"horse\""));
        assert!(refused(&["cat", "cat"]).contains("listed twice"));
        assert!(refused(&["cat"]).contains("at least 2"));
    }

    #[test]
    fn the_commonest_rule_keeps_the_lowest_ids() {
        let vocabulary = Vocabulary::from_tokens(&tokens(), 3).unwrap();
        assert_eq!(vocabulary.words(), ["the", "cat", "dog"]);
        assert!(Vocabulary::from_tokens(&tokens(), 6).is_err());
    }
}
