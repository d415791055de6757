//! Semantic guidance (docs/method.md section 4, ours): at the cells of the upper layers, the
//! model's distribution over words p(k) = softmax(-||t - e(k)||^2 / tau), where t is the
//! cell's SAQ target, is pulled towards the teacher's q = softmax(r / tau_r) over the
//! image's most relevant words by cross-entropy, with weights halving at each layer down.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::codebook::Codebook;
use crate::pyramid::{CellTarget, PyramidShape};
use crate::saq;
use crate::teacher::relevance::Relevance;
use crate::vocabulary::Vocabulary;

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
}

impl Default for SemanticOptions {
    fn default() -> Self {
        Self { weight: 0.3, layers: 3, temperature: 1.0, relevance_temperature: 0.05 }
    }
}

/// One image's target distribution: (codebook row, probability) over its relevant words.
pub type Target = Vec<(u32, f32)>;

/// The teacher's relevances as target distributions (words outside the vocabulary are
/// dropped; probabilities renormalised).
pub fn targets(relevances: &[Relevance], vocabulary: &Vocabulary, options: &SemanticOptions) -> Vec<Target> {
    relevances
        .iter()
        .map(|r| {
            let known: Vec<(u32, f32)> = r
                .words
                .iter()
                .zip(&r.scores)
                .filter_map(|(w, &s)| vocabulary.index_of_word(w).map(|i| (i, s)))
                .collect();
            let max = known.iter().map(|k| k.1).fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> =
                known.iter().map(|k| ((k.1 - max) as f64 / options.relevance_temperature).exp() as f32).collect();
            let total: f32 = exp.iter().sum();
            known.iter().zip(exp).map(|(k, e)| (k.0, e / total)).collect()
        })
        .collect()
}

/// The semantic loss for a batch. `z` is the encoder output (`batch x dim x G x G`),
/// `prefixes` SAQ's zhat_l, `batch_targets` one target per image.
pub fn loss(
    z: &Tensor,
    prefixes: &[Tensor],
    codebook: &Codebook,
    shape: &PyramidShape,
    cell_target: CellTarget,
    batch_targets: &[&Target],
    options: &SemanticOptions,
) -> Result<Tensor> {
    if cell_target != CellTarget::Mean {
        bail!("semantic guidance is implemented for cell-mean targets only");
    }
    let (batch, dim, _, _) = z.dims4()?;
    let words = codebook.embeddings();
    let word_norms = words.sqr()?.sum(1)?.unsqueeze(0)?;
    let width = batch_targets.iter().map(|t| t.len()).max().unwrap_or(0).max(1);
    let mut total: Option<Tensor> = None;
    let mut weights = 0.0;
    for layer in 1..=options.layers.min(shape.layers()) {
        let s = shape.grid_size(layer);
        let previous = layer.checked_sub(2).map(|i| prefixes[i].detach());
        let t = saq::cell_mean_targets(z, previous.as_ref(), shape, layer)?;
        let t = t.permute((0, 2, 3, 1))?.reshape((batch * s * s, dim))?;
        let distances = t.sqr()?.sum_keepdim(1)?.broadcast_add(&word_norms)?.sub(&(t.matmul(&words.t()?)? * 2.0)?)?;
        let log_p = candle_nn::ops::log_softmax(&(distances * (-1.0 / options.temperature))?, D::Minus1)?;
        // Each cell of an image shares the image's target; padded entries have q = 0.
        let (mut ids, mut q) = (Vec::new(), Vec::new());
        for target in batch_targets {
            for _ in 0..s * s {
                for j in 0..width {
                    let (id, p) = target.get(j).copied().unwrap_or((0, 0.0));
                    ids.push(id);
                    q.push(p);
                }
            }
        }
        let ids = Tensor::from_vec(ids, (batch * s * s, width), &Device::Cpu)?;
        let q = Tensor::from_vec(q, (batch * s * s, width), &Device::Cpu)?;
        let cross_entropy = (log_p.gather(&ids, 1)? * q)?.sum(1)?.mean(0)?.neg()?;
        let w = 0.5f64.powi(layer as i32 - 1);
        weights += w;
        let term = (cross_entropy * w)?;
        total = Some(match total {
            Some(acc) => (acc + term)?,
            None => term,
        });
    }
    Ok((total.expect("at least one semantic layer") * (options.weight / weights))?)
}
