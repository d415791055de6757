//! Semantic guidance (docs/method.md section 4, ours): at the cells of the upper layers, the
//! model's distribution over words p(k) = softmax(-||t - e(k)||^2 / tau), where t is the
//! cell's SAQ target, is pulled towards the teacher's q = softmax(r / tau_r) over the
//! image's most relevant words by cross-entropy, with weights halving at each layer down.
//! A word relevant to many images says little about any one of them, so the target
//! discounts each word by how often it is among the images' relevant words:
//! q(k) ∝ exp(r_k / tau_r) * df(k)^-alpha, df(k) being the share of the split's images
//! whose relevant words include k.
//!
//! Distinct words (ours): with q alone every cell of an image is pulled to the same top
//! word, so an image's five words of layers 1-2 held 2.1 distinct words on average, and a
//! frozen LLM told classes apart from them no better than from the top word said five
//! times. So the cells of layers 2..=`distinct_layers` are each given one word of q of
//! their own: none that an earlier layer of the image names (layer 1's chosen word
//! included), none that another cell of the layer got. The words go to the cells greedily,
//! best `log p_cell(k) + log q(k)` first, so a cell gets the relevant word it already
//! leans to; a cell left without a word (q has too few) keeps the whole of q.

use std::collections::HashMap;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::codebook::vocabulary::Vocabulary;
use crate::codebook::Codebook;
use crate::compute::log_partition::{log_partition, Partition};
use crate::pyramid::saq;
use crate::pyramid::{CellTarget, PyramidShape};
use crate::teacher::relevance::Relevance;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SemanticOptions {
    /// Weight of the whole term in the loss.
    pub weight: f64,
    /// Layers 1..=layers are guided (L_sem).
    pub layers: usize,
    /// tau: temperature of the model's distance softmax.
    pub temperature: f64,
    /// tau_r: temperature of the teacher's relevance softmax.
    pub relevance_temperature: f64,
    /// alpha: how strongly a word's target is discounted by how often it is relevant.
    #[serde(default)]
    pub frequency_penalty: f64,
    /// Layers 2..=distinct_layers give each cell a distinct word of the image's target
    /// (0 or 1: every cell is pulled to the whole target).
    #[serde(default)]
    pub distinct_layers: usize,
}

impl Default for SemanticOptions {
    fn default() -> Self {
        Self {
            weight: 0.3,
            layers: 3,
            temperature: 1.0,
            relevance_temperature: 0.05,
            frequency_penalty: 1.0,
            distinct_layers: 2,
        }
    }
}

/// alpha ([`SemanticOptions::frequency_penalty`]) as given, where it is a finite number of
/// at least 0 (a negative alpha would favour the words relevant to every image).
pub fn checked_frequency_penalty(alpha: f64) -> Result<f64> {
    anyhow::ensure!(
        alpha.is_finite() && alpha >= 0.0,
        "--frequency-penalty must be a finite number of at least 0, not {alpha}"
    );
    Ok(alpha)
}

/// One image's target distribution: (codebook row, probability) over its relevant words.
pub type Target = Vec<(u32, f32)>;

/// The teacher's relevances as target distributions, each word discounted by how often
/// it is relevant across `relevances` (words outside the vocabulary are dropped;
/// probabilities renormalised).
pub fn targets(relevances: &[Relevance], vocabulary: &Vocabulary, options: &SemanticOptions) -> Vec<Target> {
    let mut images_with: HashMap<u32, usize> = HashMap::new();
    let known: Vec<Vec<(u32, f32)>> = relevances
        .iter()
        .map(|r| {
            r.words.iter().zip(&r.scores).filter_map(|(w, &s)| vocabulary.index_of_word(w).map(|i| (i, s))).collect()
        })
        .collect();
    for image in &known {
        for &(word, _) in image {
            *images_with.entry(word).or_default() += 1;
        }
    }
    let images = relevances.len().max(1) as f64;
    known
        .into_iter()
        .map(|image| {
            let logits: Vec<f64> = image
                .iter()
                .map(|&(word, score)| {
                    let share = images_with[&word] as f64 / images;
                    score as f64 / options.relevance_temperature - options.frequency_penalty * share.ln()
                })
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
            let total: f64 = exp.iter().sum();
            image.iter().zip(exp).map(|(&(word, _), e)| (word, (e / total) as f32)).collect()
        })
        .collect()
}

/// Floating-point operations of [`loss`]'s forward pass for one image: each guided
/// cell's distances to every word (its backward pass costs about twice as much).
pub fn forward_flops(shape: &PyramidShape, codebook: &Codebook, options: &SemanticOptions) -> f64 {
    let cells: usize = (1..=options.layers.min(shape.layers())).map(|l| shape.tokens_in_layer(l)).sum();
    2.0 * cells as f64 * codebook.len() as f64 * codebook.dim() as f64
}

/// The semantic loss for a batch. `z` is the encoder output (`batch x dim x G x G`),
/// `named` the cell targets the semantic branch gives the first layers (if it names
/// them; the other layers' targets come from z), `prefixes` SAQ's zhat_l,
/// `batch_targets` one target per image.
#[allow(clippy::too_many_arguments)]
pub fn loss(
    z: &Tensor,
    named: &[Tensor],
    prefixes: &[Tensor],
    codebook: &Codebook,
    shape: &PyramidShape,
    cell_target: CellTarget,
    batch_targets: &[&Target],
    options: &SemanticOptions,
) -> Result<Tensor> {
    let guided = options.layers.min(shape.layers());
    let cell_targets = (1..=guided)
        .map(|layer| match named.get(layer - 1) {
            Some(given) => Ok(given.clone()),
            None if cell_target == CellTarget::Mean => {
                let previous = layer.checked_sub(2).map(|i| prefixes[i].detach());
                saq::cell_mean_targets(z, previous.as_ref(), shape, layer)
            }
            None => bail!("semantic guidance is implemented for cell-mean targets only"),
        })
        .collect::<Result<Vec<_>>>()?;
    loss_of_targets(&cell_targets, codebook, batch_targets, options)
}

/// The semantic loss of the guided layers' cell targets (`cell_targets[l-1]` is layer l's,
/// `batch x dim x s_l x s_l`).
pub fn loss_of_targets(
    cell_targets: &[Tensor],
    codebook: &Codebook,
    batch_targets: &[&Target],
    options: &SemanticOptions,
) -> Result<Tensor> {
    anyhow::ensure!(!cell_targets.is_empty(), "no semantic layer to guide");
    let words = codebook.embeddings();
    let word_norms = Tensor::from_slice(codebook.squared_norms(), codebook.len(), &Device::Cpu)?;
    let width = batch_targets.iter().map(|t| t.len()).max().unwrap_or(0).max(1);
    let scale = 1.0 / options.temperature;
    // Every guided layer's cells as rows of one table, layer after layer, so that one
    // product over all words serves them all: (first row, rows, side) per layer.
    let mut layers = Vec::with_capacity(cell_targets.len());
    let mut tables = Vec::with_capacity(cell_targets.len());
    let mut first = 0;
    for t in cell_targets {
        let (batch, dim, s, _) = t.dims4()?;
        let rows = batch * s * s;
        tables.push(t.permute((0, 2, 3, 1))?.reshape((rows, dim))?);
        layers.push((first, rows, s));
        first += rows;
    }
    // Each cell of an image shares the image's target unless it is given a word of its
    // own; padded entries have q = 0.
    let (mut ids, mut q) = (Vec::with_capacity(first * width), Vec::with_capacity(first * width));
    for &(_, _, s) in &layers {
        for target in batch_targets {
            for _ in 0..s * s {
                for j in 0..width {
                    let (id, p) = target.get(j).copied().unwrap_or((0, 0.0));
                    ids.push(id);
                    q.push(p);
                }
            }
        }
    }
    // Logits -||t - e_k||^2 / tau up to a constant per row, which the softmax ignores:
    // (2 t.e_k - ||e_k||^2) / tau; their log Z, the target words' logits, and each row's
    // nearest word.
    let Partition { log_z, chosen_logits, nearest } =
        log_partition(&Tensor::cat(&tables, 0)?, words, &word_norms, scale, &ids, width)?;
    // Per image, the words its distinct layers name so far.
    let mut named_by_image: Vec<Vec<u32>> = vec![Vec::new(); batch_targets.len()];
    let mut total: Option<Tensor> = None;
    let mut weights = 0.0;
    for (index, &(first, rows, s)) in layers.iter().enumerate() {
        let (log_z, target_logits) = (log_z.narrow(0, first, rows)?, chosen_logits.narrow(0, first, rows)?);
        let entries = first * width..(first + rows) * width;
        let layer = index + 1;
        if layer == 1 && options.distinct_layers >= 2 {
            for (named, &word) in named_by_image.iter_mut().zip(&nearest[first..first + rows]) {
                named.push(word);
            }
        } else if layer >= 2 && layer <= options.distinct_layers {
            let log_p: Vec<f32> = target_logits.broadcast_sub(&log_z)?.flatten_all()?.to_vec1()?;
            for (image, named) in named_by_image.iter_mut().enumerate() {
                let cells = image * s * s..(image + 1) * s * s;
                let given =
                    assign_distinct(&ids[entries.clone()], &mut q[entries.clone()], &log_p, cells, width, named);
                named.extend(given);
            }
        }
        let q = Tensor::from_slice(&q[entries], (rows, width), &Device::Cpu)?;
        let q_mass = q.sum_keepdim(1)?;
        let cross_entropy = ((log_z * q_mass)?.squeeze(1)? - (target_logits * &q)?.sum(1)?)?.mean(0)?;
        let w = 0.5f64.powi(index as i32);
        weights += w;
        let term = (cross_entropy * w)?;
        total = Some(match total {
            Some(acc) => (acc + term)?,
            None => term,
        });
    }
    Ok((total.expect("at least one layer, checked above") * (options.weight / weights))?)
}

/// Gives each cell of `cells` (rows of the `rows x width` target table `ids` / `q`, whose
/// log-probabilities under the model are `log_p`) one word of its target that is not in
/// `taken`, no two cells the same: greedily, the best `log_p + log q` pair first. A given
/// cell's row of `q` becomes one-hot on its word; the words given are returned.
fn assign_distinct(
    ids: &[u32],
    q: &mut [f32],
    log_p: &[f32],
    cells: std::ops::Range<usize>,
    width: usize,
    taken: &[u32],
) -> Vec<u32> {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for cell in cells.clone() {
        for j in 0..width {
            let at = cell * width + j;
            if q[at] > 0.0 && !taken.contains(&ids[at]) {
                pairs.push((log_p[at] + q[at].ln(), cell, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut given, mut done) = (Vec::new(), Vec::new());
    for (_, cell, j) in pairs {
        let word = ids[cell * width + j];
        if done.contains(&cell) || given.contains(&word) {
            continue;
        }
        let row = &mut q[cell * width..(cell + 1) * width];
        row.fill(0.0);
        row[j] = 1.0;
        given.push(word);
        done.push(cell);
        if done.len() == cells.len() {
            break;
        }
    }
    given
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relevance(words: &[(&str, f32)]) -> Relevance {
        Relevance {
            words: words.iter().map(|w| w.0.to_string()).collect(),
            scores: words.iter().map(|w| w.1).collect(),
            classes: Vec::new(),
            text_words: Vec::new(),
        }
    }

    #[test]
    fn targets_discount_words_relevant_to_many_images() {
        let tokens: Vec<String> = ["Ġphoto", "Ġcat", "Ġdog", "Ġzzz"].iter().map(|t| t.to_string()).collect();
        let vocabulary = Vocabulary::from_tokens(&tokens, 3).unwrap();
        let relevances = [
            relevance(&[("photo", 0.5), ("cat", 0.5), ("zzz", 0.9)]),
            relevance(&[("photo", 0.5), ("dog", 0.45)]),
            relevance(&[("photo", 0.6)]),
            relevance(&[("dog", 0.6)]),
        ];
        let options = SemanticOptions { relevance_temperature: 0.05, frequency_penalty: 1.0, ..Default::default() };
        let targets = targets(&relevances, &vocabulary, &options);
        // Image 1: "photo" is relevant to 3 of 4 images, "cat" to 1 (same score), so cat's
        // weight is 3 times photo's; "zzz" is outside the vocabulary and dropped.
        let (photo, cat) = (targets[0][0], targets[0][1]);
        assert_eq!((photo.0, cat.0), (0, 1));
        assert!((cat.1 / photo.1 - 3.0).abs() < 1e-5, "{targets:?}");
        assert!((photo.1 + cat.1 - 1.0).abs() < 1e-6);
        // Image 2: dog (2 of 4) scores 0.05 lower: exp(-1) * (3/4)/(2/4) relative to photo.
        let ratio = targets[1][1].1 / targets[1][0].1;
        assert!((ratio as f64 - (-1.0f64).exp() * 1.5).abs() < 1e-5, "{ratio}");
        assert_eq!(targets[2], vec![(0, 1.0)]);
        // Without the discount only the scores count.
        let plain = SemanticOptions { frequency_penalty: 0.0, ..options };
        let plain = super::targets(&relevances, &vocabulary, &plain);
        assert!((plain[0][0].1 - 0.5).abs() < 1e-6 && (plain[0][1].1 - 0.5).abs() < 1e-6);
    }
}
