//! The lexical vocabulary: the LLM tokens that are whole English words (docs/method.md section 1).
//!
//! A token qualifies when it starts with the byte-level space marker `Ġ` and the rest is
//! three or more ASCII letters. The `size` lowest token ids are kept: BPE merges come
//! roughly in frequency order, so these are the commonest words. A word's *index* is its
//! row in the codebook (0..size); its *token id* is its id in the LLM's vocabulary.

use std::collections::HashMap;

use anyhow::{bail, Result};

/// The byte-level BPE marker for a leading space.
const SPACE_MARKER: char = 'Ġ';

/// Default number of words kept (docs/method.md section 1).
pub const DEFAULT_SIZE: usize = 16_384;

pub struct Vocabulary {
    words: Vec<String>,
    token_ids: Vec<u32>,
    index_of_word: HashMap<String, u32>,
    index_of_token: HashMap<u32, u32>,
}

impl Vocabulary {
    /// Builds the vocabulary from the LLM's token strings (in id order), keeping `size` words.
    pub fn from_tokens(tokens: &[String], size: usize) -> Result<Self> {
        let lexical: Vec<(u32, String)> = tokens
            .iter()
            .enumerate()
            .filter_map(|(id, token)| lexical_word(token).map(|w| (id as u32, w.to_string())))
            .take(size)
            .collect();
        if lexical.len() < size {
            bail!("the LLM has only {} whole-word tokens, fewer than the {size} asked for", lexical.len());
        }
        let (token_ids, words): (Vec<u32>, Vec<String>) = lexical.into_iter().unzip();
        let index_of_word = words.iter().enumerate().map(|(i, w)| (w.clone(), i as u32)).collect();
        let index_of_token = token_ids.iter().enumerate().map(|(i, &t)| (t, i as u32)).collect();
        Ok(Self { words, token_ids, index_of_word, index_of_token })
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
}
