//! The word-usage term (docs/method.md section 4): without it the appearance layers of
//! every trained model settled on a few dozen hub words of the 16,384 (perplexity 12-21
//! on the held-out split; "use" alone took a third of layer 4's cells), so each of their
//! words carried about 4 bits. The term is the entropy loss of MAGVIT-v2 (Yu et al. 2023)
//! on SAQ's targets: with p_i = softmax(-||t_i - e_k||^2 / tau) the soft assignment of
//! target t_i to the words,
//!
//!   L = mean_i H(p_i) - H(mean_i p_i),
//!
//! whose first part pulls each target into one word's cell and whose second spreads the
//! batch's targets over many words. It is computed on a random sample of each appearance
//! layer's cells (the layers the semantic branch does not name).

use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::seq::index::sample;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::codebook::Codebook;
use crate::pyramid::{saq, CellTarget, PyramidShape};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageOptions {
    /// Weight of the term in the loss.
    pub weight: f64,
    /// tau of the soft assignment.
    pub temperature: f64,
    /// Cells sampled per appearance layer and batch.
    pub cells_per_layer: usize,
}

impl Default for UsageOptions {
    fn default() -> Self {
        Self { weight: 0.1, temperature: 1.0, cells_per_layer: 128 }
    }
}

/// Floating-point operations of [`loss`]'s forward pass per image of a batch of `batch`
/// (each sampled cell's distances to every word; its backward pass costs about twice as
/// much).
pub fn forward_flops(
    shape: &PyramidShape,
    codebook: &Codebook,
    options: &UsageOptions,
    named: usize,
    batch: usize,
) -> f64 {
    let cells: usize =
        (named + 1..=shape.layers()).map(|l| options.cells_per_layer.min(batch * shape.tokens_in_layer(l))).sum();
    2.0 * cells as f64 * codebook.len() as f64 * codebook.dim() as f64 / batch.max(1) as f64
}

/// The usage term for a batch: `z` the encoder output, layers after `named` are the
/// appearance layers, `prefixes` SAQ's zhat_l.
#[allow(clippy::too_many_arguments)]
pub fn loss(
    z: &Tensor,
    named: usize,
    prefixes: &[Tensor],
    codebook: &Codebook,
    shape: &PyramidShape,
    cell_target: CellTarget,
    options: &UsageOptions,
    rng: &mut impl Rng,
) -> Result<Tensor> {
    anyhow::ensure!(cell_target == CellTarget::Mean, "the usage term is implemented for cell-mean targets only");
    let mut rows = Vec::new();
    for layer in named + 1..=shape.layers() {
        let previous = layer.checked_sub(2).map(|i| prefixes[i].detach());
        let t = saq::cell_mean_targets(z, previous.as_ref(), shape, layer)?;
        let (batch, dim, s, _) = t.dims4()?;
        let cells = batch * s * s;
        let all = t.permute((0, 2, 3, 1))?.reshape((cells, dim))?;
        let picked: Vec<u32> =
            sample(rng, cells, options.cells_per_layer.min(cells)).into_iter().map(|i| i as u32).collect();
        rows.push(all.index_select(&Tensor::new(picked, &Device::Cpu)?, 0)?);
    }
    anyhow::ensure!(!rows.is_empty(), "no appearance layer for the usage term");
    let targets = Tensor::cat(&rows, 0)?;
    let norms = Tensor::from_slice(codebook.squared_norms(), (1, codebook.len()), &Device::Cpu)?;
    let logits = ((targets.matmul(&codebook.embeddings().t()?)? * 2.0)?.broadcast_sub(&norms)? / options.temperature)?;
    let log_p = candle_nn::ops::log_softmax(&logits, 1)?;
    let p = log_p.exp()?;
    let per_target = (&p * &log_p)?.sum(1)?.neg()?.mean(0)?;
    let mean_p = p.mean(0)?;
    let of_mean = (&mean_p * (&mean_p + 1e-12)?.log()?)?.sum_all()?.neg()?;
    Ok(((per_target - of_mean)? * options.weight)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codebook::vocabulary::Vocabulary;
    use candle_core::Var;
    use rand::SeedableRng;

    /// Channels (the codebook's search wants a multiple of 8).
    const DIM: usize = 8;

    /// Five words with fixed, unrelated coordinates.
    fn word(k: usize) -> Vec<f32> {
        (0..DIM).map(|d| (((k * 5 + d * 3) % 7) as f32 - 3.0) * 0.4).collect()
    }

    fn codebook() -> Codebook {
        let tokens: Vec<String> = ["Ġred", "Ġsky", "Ġtree", "Ġstone", "Ġwave"].iter().map(|t| t.to_string()).collect();
        let rows: Vec<f32> = (0..5).flat_map(word).collect();
        Codebook::new(
            Vocabulary::from_tokens(&tokens, 5).unwrap(),
            Tensor::from_vec(rows, (5, DIM), &Device::Cpu).unwrap(),
        )
        .unwrap()
    }

    /// Two images, a 2 x 2 latent of [`DIM`] channels, two layers (1 x 1, then 2 x 2).
    fn latent() -> Vec<f32> {
        (0..2 * DIM * 4).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.15).collect()
    }

    /// The term computed in f64 from its definition: every cell's target by hand (layer 1
    /// the image's mean; layer 2 each position's 2 z - zhat_1), its softmax over the words.
    fn by_hand(z: &[f32], zhat1: &[f32], temperature: f64) -> f64 {
        let at = |x: &[f32], b: usize, c: usize, p: usize| x[(b * DIM + c) * 4 + p] as f64;
        let mut targets = Vec::new();
        for b in 0..2 {
            targets.push((0..DIM).map(|c| (0..4).map(|p| at(z, b, c, p)).sum::<f64>() / 4.0).collect::<Vec<_>>());
        }
        for b in 0..2 {
            for p in 0..4 {
                targets.push((0..DIM).map(|c| 2.0 * at(z, b, c, p) - at(zhat1, b, c, p)).collect());
            }
        }
        let mut mean = [0.0; 5];
        let mut per_target = 0.0;
        for t in &targets {
            let logits: Vec<f64> = (0..5)
                .map(|k| -word(k).iter().zip(t).map(|(&e, t)| (t - e as f64).powi(2)).sum::<f64>() / temperature)
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
            let p: Vec<f64> = logits.iter().map(|l| (l - max).exp() / total).collect();
            per_target -= p.iter().map(|p| p * p.ln()).sum::<f64>() / targets.len() as f64;
            for (m, p) in mean.iter_mut().zip(&p) {
                *m += p / targets.len() as f64;
            }
        }
        per_target + mean.iter().map(|m| m * m.ln()).sum::<f64>()
    }

    #[test]
    fn the_term_is_the_mean_entropy_less_the_entropy_of_the_mean() {
        let (codebook, shape) = (codebook(), PyramidShape::new(2, 2).unwrap());
        let options = UsageOptions { weight: 0.5, temperature: 0.7, cells_per_layer: 64 };
        let z = Var::from_vec(latent(), (2, DIM, 2, 2), &Device::Cpu).unwrap();
        let quantized = saq::quantize(z.as_tensor(), &codebook, &shape, CellTarget::Mean).unwrap();
        let zhat1: Vec<f32> = quantized.prefixes[0].flatten_all().unwrap().to_vec1().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let term = loss(z.as_tensor(), 0, &quantized.prefixes, &codebook, &shape, CellTarget::Mean, &options, &mut rng)
            .unwrap();
        let expected = 0.5 * by_hand(&latent(), &zhat1, 0.7);
        assert!((term.to_scalar::<f32>().unwrap() as f64 - expected).abs() < 1e-5, "{term} against {expected}");

        // Its gradient reaches z: a finite difference of the hand computation (the
        // previous layers' words held, as SAQ's targets hold them) along the gradient.
        let gradient = term.backward().unwrap().get(z.as_tensor()).unwrap().flatten_all().unwrap();
        let gradient: Vec<f32> = gradient.to_vec1().unwrap();
        let norm = gradient.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt();
        assert!(norm > 1e-3, "the term moves z");
        let step = 1e-3;
        let moved: Vec<f32> =
            latent().iter().zip(&gradient).map(|(z, g)| z + (step * *g as f64 / norm) as f32).collect();
        let slope = 0.5 * (by_hand(&moved, &zhat1, 0.7) - by_hand(&latent(), &zhat1, 0.7)) / step;
        assert!((slope - norm).abs() < 2e-2 * norm, "slope {slope} against the gradient's norm {norm}");
    }

    #[test]
    fn a_sample_of_cells_is_taken_from_each_appearance_layer() {
        let (codebook, shape) = (codebook(), PyramidShape::new(2, 2).unwrap());
        let options = UsageOptions { cells_per_layer: 3, ..Default::default() };
        // Layer 1 named by the branch: only layer 2's 8 cells count, 3 of them.
        assert_eq!(forward_flops(&shape, &codebook, &options, 1, 2), 2.0 * 3.0 * 5.0 * DIM as f64 / 2.0);
        // Both layers: layer 1 has only 2 cells in the batch.
        assert_eq!(forward_flops(&shape, &codebook, &options, 0, 2), 2.0 * 5.0 * 5.0 * DIM as f64 / 2.0);
        let z = Tensor::from_vec(latent(), (2, DIM, 2, 2), &Device::Cpu).unwrap();
        let quantized = saq::quantize(&z, &codebook, &shape, CellTarget::Mean).unwrap();
        let rng = rand::rngs::StdRng::seed_from_u64(1);
        let term = |named, cell_target| {
            loss(&z, named, &quantized.prefixes, &codebook, &shape, cell_target, &options, &mut rng.clone())
        };
        assert!(term(2, CellTarget::Mean).is_err(), "no layer left");
        assert!(term(0, CellTarget::Dilated).is_err(), "SAQ's targets would not be these");
        assert!(term(0, CellTarget::Mean).is_ok());
    }
}
