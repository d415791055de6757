//! Relevance of every vocabulary word to an image (docs/method.md section 5): the stand-in for
//! CLIP's word-image relevance that guides the semantic layers.
//!
//! r(I, k) is word k's best similarity to an anchor: the words of the image's own text
//! (caption, name, category), and the names of the classifier's top ImageNet classes
//! weighted by their probabilities. Similarity is the cosine between words in a
//! [`WordSpace`], here the LLM's own (frozen) embedding space, centred on the vocabulary's
//! mean so that the common component of all embeddings does not dominate. Anchor words
//! outside the lexical vocabulary are dropped.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::efficientnet::EfficientNetLite0;
use super::word_space::{best_words, WordSpace};
use crate::codebook::vocabulary::Vocabulary;
use crate::codebook::Codebook;

/// Classes of the classifier that anchor an image's relevance.
const TOP_CLASSES: usize = 5;
/// Frequent words that carry nothing about an image's content.
const STOPWORDS: [&str; 40] = [
    "the", "and", "for", "with", "that", "this", "from", "are", "was", "its", "has", "have", "into", "not", "but",
    "you", "your", "called", "which", "their", "there", "they", "other", "also", "some", "many", "more", "most", "all",
    "one", "two", "any", "each", "very", "can", "will", "our", "his", "her", "who",
];

/// The teacher's view of one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Relevance {
    /// The most relevant vocabulary words, best first.
    pub words: Vec<String>,
    /// Their relevance (cosine mixture, at most 1).
    pub scores: Vec<f32>,
    /// The classifier's top classes as (ImageNet index, probability).
    pub classes: Vec<(u16, f32)>,
    /// The image's own text words found in the vocabulary (its name, caption, category).
    pub text_words: Vec<String>,
}

/// One image as the teacher sees it.
struct Judgement {
    classes: Vec<(u16, f32)>,
    own: Vec<u32>,
    scores: Vec<f32>,
}

pub struct SemanticTeacher {
    classifier: EfficientNetLite0,
    class_names: Vec<String>,
    /// Vocabulary indices of each class name's words.
    class_words: Vec<Vec<u32>>,
    /// The codebook rows as a similarity space (centred, unit length, with hubness).
    space: WordSpace,
    /// 1 for words that may be relevant, 0 for stopwords.
    allowed: Tensor,
}

impl SemanticTeacher {
    pub fn load(classifier_weights: &Path, class_names: &Path, codebook: &Codebook) -> Result<Self> {
        let classifier = EfficientNetLite0::load(classifier_weights)?;
        let class_names = read_class_names(class_names)?;
        let class_words = class_words(&class_names, codebook.vocabulary());
        let space = WordSpace::new(codebook.embeddings())?;
        let allowed = allowed_words(codebook.vocabulary())?;
        Ok(Self { classifier, class_names, class_words, space, allowed })
    }

    /// Relevance of the vocabulary to each image of a batch (pixels in -1..1) given each
    /// image's text; keeps the `top` best words.
    pub fn relevance(
        &self,
        pixels: &Tensor,
        texts: &[String],
        vocabulary: &Vocabulary,
        top: usize,
    ) -> Result<Vec<Relevance>> {
        self.judge(pixels, texts, vocabulary)?
            .into_iter()
            .map(|judgement| {
                let ranked = best_words(&judgement.scores, top);
                Ok(Relevance {
                    words: ranked.iter().map(|&(i, _)| vocabulary.word(i).to_string()).collect(),
                    scores: ranked.iter().map(|&(_, s)| s).collect(),
                    classes: judgement.classes,
                    text_words: judgement.own.iter().map(|&i| vocabulary.word(i).to_string()).collect(),
                })
            })
            .collect()
    }

    /// r(k) of every vocabulary word (indexed by codebook row) for each image of a batch.
    pub fn scores(&self, pixels: &Tensor, texts: &[String], vocabulary: &Vocabulary) -> Result<Vec<Vec<f32>>> {
        Ok(self.judge(pixels, texts, vocabulary)?.into_iter().map(|j| j.scores).collect())
    }

    /// r(k) of every vocabulary word for one image, or, where nothing anchors it (its text
    /// and its top classes name no vocabulary word, so every word would score -1), why.
    pub fn scores_or_why(
        &self,
        pixels: &Tensor,
        text: &str,
        vocabulary: &Vocabulary,
    ) -> Result<Result<Vec<f32>, String>> {
        let judgement = self.judge(pixels, &[text.to_string()], vocabulary)?.remove(0);
        if !judgement.own.is_empty() || !class_anchors(&judgement.classes, &self.class_words).is_empty() {
            return Ok(Ok(judgement.scores));
        }
        let classes: Vec<String> = judgement
            .classes
            .iter()
            .map(|&(class, p)| format!("{} {:.0}%", self.class_names[class as usize], 100.0 * p))
            .collect();
        Ok(Err(format!(
            "nothing to measure relevance against: the name \"{text}\" holds no vocabulary word, and neither do the \
             teacher's top classes ({})",
            classes.join(", ")
        )))
    }

    fn judge(&self, pixels: &Tensor, texts: &[String], vocabulary: &Vocabulary) -> Result<Vec<Judgement>> {
        let probabilities: Vec<Vec<f32>> = self.classifier.classify(pixels)?.to_vec2()?;
        probabilities
            .iter()
            .zip(texts)
            .map(|(p, text)| {
                let mut classes: Vec<(u16, f32)> = p.iter().enumerate().map(|(i, &q)| (i as u16, q)).collect();
                classes.sort_by(|a, b| b.1.total_cmp(&a.1));
                classes.truncate(TOP_CLASSES);
                let own = text_words(text, vocabulary);
                let scores = self.word_scores(&own, &classes)?;
                Ok(Judgement { classes, own, scores })
            })
            .collect()
    }

    /// r(k) for every word: its best weighted cosine to an anchor ([`anchors`]).
    fn word_scores(&self, own: &[u32], classes: &[(u16, f32)]) -> Result<Vec<f32>> {
        relevance_in(&self.space, &anchors(own, classes, &self.class_words), &self.allowed)
    }
}

/// An image's anchors: its own text words (weight 1) and the words of its top classes
/// (weight p_c, the classifier's probability), so the image's own words rank first and
/// only a confident class counts as much as text. (Weighted p_c / p_top, the top class
/// always counted as much as text: with the visual vocabulary, which holds most class
/// words, the classifier's unsure guesses on drawings, "whistle" for a chick, then
/// outranked the image's own words: the held-out images whose best word is one of their
/// own fell from 66% to 41%.)
pub fn anchors(own: &[u32], classes: &[(u16, f32)], class_words: &[Vec<u32>]) -> Vec<(u32, f32)> {
    let mut anchors: Vec<(u32, f32)> = own.iter().map(|&w| (w, 1.0)).collect();
    anchors.extend(class_anchors(classes, class_words));
    anchors
}

/// r(k) for every word of a space: its best weighted cosine to an anchor less its
/// hubness ([`WordSpace::relevance`]), stopwords (0 in `allowed`) at -1; all -1 without
/// anchors.
pub fn relevance_in(space: &WordSpace, anchors: &[(u32, f32)], allowed: &Tensor) -> Result<Vec<f32>> {
    match space.relevance(anchors)? {
        Some(score) => Ok((((score + 1.0)? * allowed)? - 1.0)?.to_vec1()?),
        None => Ok(vec![-1.0; space.len()]),
    }
}

/// The anchors of an image's top classes: each class name's words, weighted by the
/// class's probability p_c.
pub fn class_anchors(classes: &[(u16, f32)], class_words: &[Vec<u32>]) -> Vec<(u32, f32)> {
    classes.iter().flat_map(|&(class, p)| class_words[class as usize].iter().map(move |&w| (w, p))).collect()
}

/// The classifier's 1000 class names, from a JSON list.
pub fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let names: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {} (run scripts/fetch-imagenet-classes.sh)", path.display()))?,
    )
    .with_context(|| format!("{} is not a list of class names", path.display()))?;
    anyhow::ensure!(names.len() == 1000, "{} has {} class names, not 1000", path.display(), names.len());
    Ok(names)
}

/// The vocabulary words of each class name.
pub fn class_words(names: &[String], vocabulary: &Vocabulary) -> Vec<Vec<u32>> {
    names.iter().map(|n| text_words(n, vocabulary)).collect()
}

/// 1 for each vocabulary word that may be relevant, 0 for stopwords (`words`).
pub fn allowed_words(vocabulary: &Vocabulary) -> Result<Tensor> {
    let allowed: Vec<f32> = (0..vocabulary.len() as u32)
        .map(|i| f32::from(!STOPWORDS.contains(&vocabulary.word(i).to_ascii_lowercase().as_str())))
        .collect();
    Ok(Tensor::new(allowed.as_slice(), &Device::Cpu)?)
}

/// Vocabulary words of a text: letters-only runs of 3+ letters, lower case first, then
/// capitalised, without stopwords and repeats.
pub fn text_words(text: &str, vocabulary: &Vocabulary) -> Vec<u32> {
    let mut out = Vec::new();
    for raw in text.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| w.len() >= 3) {
        let lower = raw.to_ascii_lowercase();
        if STOPWORDS.contains(&lower.as_str()) {
            continue;
        }
        let capitalised = format!("{}{}", lower[..1].to_ascii_uppercase(), &lower[1..]);
        if let Some(index) = vocabulary.index_of_word(&lower).or_else(|| vocabulary.index_of_word(&capitalised)) {
            if !out.contains(&index) {
                out.push(index);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_words_weigh_one_and_class_words_their_probability() {
        let class_words = vec![vec![7], vec![8, 9], vec![]];
        let got = anchors(&[3, 4], &[(1, 0.5), (0, 0.25), (2, 0.1)], &class_words);
        assert_eq!(got, [(3, 1.0), (4, 1.0), (8, 0.5), (9, 0.5), (7, 0.25)]);
        assert_eq!(anchors(&[], &[], &class_words), []);
    }
}
