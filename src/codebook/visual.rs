//! The visual vocabulary: which whole-word tokens form the codebook of a model whose
//! config says `"vocabulary": "visual"` (docs/method.md section 1).
//!
//! The rule, in order:
//! 1. *Anchored* words: every word (a run of ASCII letters) of the teacher's 1000 ImageNet
//!    class names and of the training split's texts (caption, name, category,
//!    subcategory), as written and lower-cased, where that spelling is a whole-word token.
//!    These are the words the teacher and the data can make relevant to an image.
//! 2. Then the commonest other whole-word tokens (lowest ids) until the size is reached.
//!
//! Only the training split is read: no held-out image or text chooses a word. The rows
//! keep token-id order. The LLM and its embeddings are untouched; only the choice of rows
//! changes.

use std::collections::HashSet;

use anyhow::{ensure, Result};

use super::vocabulary::lexical_tokens;

/// What the rule chose, and how it differs from the commonest words of the same size.
pub struct VisualChoice {
    /// The chosen words, in token-id order.
    pub words: Vec<String>,
    /// How many anchored words are whole-word tokens (all of them are kept).
    pub anchored: usize,
    /// Words not among the commonest `size`, in token-id order.
    pub entered: Vec<String>,
    /// Commonest words that made room, in token-id order.
    pub left: Vec<String>,
}

/// Applies the rule to the LLM's tokens (in id order) and the anchoring texts.
pub fn choose<'a>(tokens: &[String], texts: impl IntoIterator<Item = &'a str>, size: usize) -> Result<VisualChoice> {
    let lexical: Vec<(u32, &str)> = lexical_tokens(tokens).collect();
    ensure!(
        lexical.len() >= size,
        "the LLM has only {} whole-word tokens, fewer than the {size} asked for",
        lexical.len()
    );
    let spellings: HashSet<&str> = lexical.iter().map(|&(_, w)| w).collect();
    let mut anchored: HashSet<String> = HashSet::new();
    for text in texts {
        for word in text.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| !w.is_empty()) {
            for form in [word.to_string(), word.to_ascii_lowercase()] {
                if spellings.contains(form.as_str()) {
                    anchored.insert(form);
                }
            }
        }
    }
    let anchored_count = anchored.len();
    // Anchored words first (commonest first if they alone overflow), then the commonest rest.
    let mut chosen: HashSet<u32> = HashSet::with_capacity(size);
    let by_anchor = lexical.iter().filter(|(_, w)| anchored.contains(*w));
    let rest = lexical.iter().filter(|(_, w)| !anchored.contains(*w));
    for &(id, _) in by_anchor.chain(rest).take(size) {
        chosen.insert(id);
    }
    let commonest: HashSet<u32> = lexical.iter().take(size).map(|&(id, _)| id).collect();
    let pick = |keep: &dyn Fn(u32) -> bool| -> Vec<String> {
        lexical.iter().filter(|&&(id, _)| keep(id)).map(|&(_, w)| w.to_string()).collect()
    };
    Ok(VisualChoice {
        words: pick(&|id| chosen.contains(&id)),
        anchored: anchored_count,
        entered: pick(&|id| chosen.contains(&id) && !commonest.contains(&id)),
        left: pick(&|id| commonest.contains(&id) && !chosen.contains(&id)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<String> {
        ["Ġthe", "Ġand", "Ġphoto", "ing", "Ġcomputer", "Ġgoose", "ĠGerman", "Ġshepherd", "Ġjeep"]
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    #[test]
    fn anchored_words_enter_and_the_least_common_make_room() {
        let choice = choose(&tokens(), ["German Shepherd", "a goose!", "jeeps"], 5).unwrap();
        // "German" as written, "shepherd" lower-cased, "goose"; "Shepherd" and "jeeps" are
        // not tokens; "a" is no whole-word token.
        assert_eq!(choice.anchored, 3);
        assert_eq!(choice.words, ["the", "and", "goose", "German", "shepherd"]);
        // "goose" is among the commonest five already.
        assert_eq!(choice.entered, ["German", "shepherd"]);
        assert_eq!(choice.left, ["photo", "computer"]);
    }

    #[test]
    fn without_anchors_the_rule_is_the_commonest_words() {
        let choice = choose(&tokens(), [], 4).unwrap();
        assert_eq!(choice.words, ["the", "and", "photo", "computer"]);
        assert!(choice.entered.is_empty() && choice.left.is_empty());
        assert!(choose(&tokens(), [], 9).is_err());
    }

    #[test]
    fn too_many_anchors_keep_the_commonest_of_them() {
        let choice = choose(&tokens(), ["jeep goose computer"], 2).unwrap();
        assert_eq!(choice.words, ["computer", "goose"]);
    }
}
