//! Relevance of every vocabulary word to an image (SPAE.md section 5): the stand-in for
//! CLIP's word-image relevance that guides the semantic layers.
//!
//! r(I, k) is word k's best similarity to an anchor: the words of the image's own text
//! (caption, name, category), and the names of the classifier's top ImageNet classes
//! weighted by their probabilities. Similarity is the cosine between words in the LLM's
//! own (frozen) embedding space, centred on the vocabulary's mean so that the common
//! component of all embeddings does not dominate. Anchor words outside the lexical
//! vocabulary are dropped.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::efficientnet::EfficientNetLite0;
use crate::codebook::Codebook;
use crate::vocabulary::Vocabulary;

/// Classes of the classifier that anchor an image's relevance.
const TOP_CLASSES: usize = 5;
/// Frequent words that carry nothing about an image's content.
const STOPWORDS: [&str; 40] = [
    "the", "and", "for", "with", "that", "this", "from", "are", "was", "its", "has", "have", "into", "not", "but", "you",
    "your", "called", "which", "their", "there", "they", "other", "also", "some", "many", "more", "most", "all", "one",
    "two", "any", "each", "very", "can", "will", "our", "his", "her", "who",
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
    /// Vocabulary indices of each class name's words.
    class_words: Vec<Vec<u32>>,
    /// Centred, unit-length codebook rows (`len x dim`).
    unit_rows: Tensor,
    /// Each word's mean cosine to all words: frequent "hub" words are near everything,
    /// so this is subtracted from their relevance.
    hubness: Tensor,
    /// 1 for words that may be relevant, 0 for stopwords.
    allowed: Tensor,
}

impl SemanticTeacher {
    pub fn load(classifier_weights: &Path, class_names: &Path, codebook: &Codebook) -> Result<Self> {
        let classifier = EfficientNetLite0::load(classifier_weights)?;
        let names: Vec<String> = serde_json::from_str(
            &std::fs::read_to_string(class_names)
                .with_context(|| format!("cannot read {} (run scripts/fetch-imagenet-classes.sh)", class_names.display()))?,
        )
        .with_context(|| format!("{} is not a list of class names", class_names.display()))?;
        anyhow::ensure!(names.len() == 1000, "{} has {} class names, not 1000", class_names.display(), names.len());
        let class_words = names.iter().map(|n| text_words(n, codebook.vocabulary())).collect();
        let rows = codebook.embeddings();
        let centred = rows.broadcast_sub(&rows.mean_keepdim(0)?)?;
        let unit_rows = centred.broadcast_div(&centred.sqr()?.sum_keepdim(1)?.sqrt()?)?;
        let hubness = unit_rows.matmul(&unit_rows.mean_keepdim(0)?.t()?)?.squeeze(1)?;
        let vocabulary = codebook.vocabulary();
        let allowed: Vec<f32> =
            (0..vocabulary.len() as u32).map(|i| f32::from(!STOPWORDS.contains(&vocabulary.word(i).to_ascii_lowercase().as_str()))).collect();
        let allowed = Tensor::new(allowed.as_slice(), &Device::Cpu)?;
        Ok(Self { classifier, class_words, unit_rows, hubness, allowed })
    }

    /// Relevance of the vocabulary to each image of a batch (pixels in -1..1) given each
    /// image's text; keeps the `top` best words.
    pub fn relevance(&self, pixels: &Tensor, texts: &[String], vocabulary: &Vocabulary, top: usize) -> Result<Vec<Relevance>> {
        self.judge(pixels, texts, vocabulary)?
            .into_iter()
            .map(|judgement| {
                let mut ranked: Vec<(usize, f32)> = judgement.scores.into_iter().enumerate().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
                ranked.truncate(top);
                Ok(Relevance {
                    words: ranked.iter().map(|&(i, _)| vocabulary.word(i as u32).to_string()).collect(),
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

    /// r(k) for every word: its best weighted cosine to an anchor. Anchors are the
    /// image's text words (weight 1) and the words of its top classes (weight p_c / p_top),
    /// so the image's own words rank first and a confident class counts as much as text.
    fn word_scores(&self, own: &[u32], classes: &[(u16, f32)]) -> Result<Vec<f32>> {
        let mut anchors: Vec<(u32, f32)> = own.iter().map(|&w| (w, 1.0)).collect();
        let top = classes.first().map_or(1.0, |c| c.1);
        for &(class, p) in classes {
            anchors.extend(self.class_words[class as usize].iter().map(|&w| (w, p / top)));
        }
        if anchors.is_empty() {
            return Ok(vec![-1.0; self.unit_rows.dim(0)?]);
        }
        let ids: Vec<u32> = anchors.iter().map(|a| a.0).collect();
        let weights: Vec<f32> = anchors.iter().map(|a| a.1).collect();
        let anchor_rows = self.unit_rows.index_select(&Tensor::new(ids.as_slice(), &Device::Cpu)?, 0)?;
        let weights = Tensor::new(weights.as_slice(), &Device::Cpu)?.unsqueeze(1)?;
        // (anchors x dim) . (dim x words), weighted per anchor, best anchor per word,
        // less the word's hubness; stopwords at -1.
        let cosine = anchor_rows.matmul(&self.unit_rows.t()?)?.broadcast_mul(&weights)?.max(0)?;
        let score = (cosine - &self.hubness)?;
        let score = ((score + 1.0)? * &self.allowed)? - 1.0;
        Ok(score?.to_vec1()?)
    }
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
