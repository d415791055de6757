//! The relaxed word choice (`spae train --relaxed`): a gradient for SAQ's choice of
//! words. The straight-through estimator hands z the decoder's gradient at zhat as it is,
//! which says where zhat should move but not which word to take: in 576 dimensions every
//! other word is far, and the appearance layers settle on a few hub words. Here the
//! decoder still reads the words themselves (the forward value is zhat), but the gradient
//! reaches z through a soft choice among each appearance-layer target's nearest words:
//!
//!   p_k = softmax_k(-||t - e_k||^2 / tau),  s(t) = sum_k p_k e_k
//!
//! over the K nearest words k of the target t, and z's gradient is that of s, so
//! d/dt = Cov_p(e) g / tau * 2 for the decoder's gradient g at the cell: it moves t
//! towards the nearby words that would lower the loss. tau is set per target from its
//! candidates' spread of distances (`temperature` times nearest to K-th), and the
//! term is scaled by tau / (2 m), m the codebook's mean squared entry, so the gradient
//! reaching t is Cov_p(e) g / m, free of tau's scale ([`soft_choice`] computes it).

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::codebook::Codebook;
use crate::compute::soft_choice::soft_choice;
use crate::compute::upsample::upsample;
use crate::pyramid::{saq, PyramidShape};

/// The relaxed choice's settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelaxedOptions {
    /// Nearest words per target among which the choice is relaxed (at least 2).
    pub candidates: usize,
    /// tau as a share of the spread between a target's nearest and last candidate's
    /// squared distance.
    pub temperature: f32,
}

impl Default for RelaxedOptions {
    fn default() -> Self {
        Self { candidates: 16, temperature: 0.5 }
    }
}

/// Floating-point operations of the relaxed choice per image, forward and backward: each
/// appearance-layer target's soft choice (K distances forward; K products and K scaled
/// rows backward). Its candidates come with SAQ's search ([`saq::Search::Ranked`]).
pub fn flops(shape: &PyramidShape, dim: usize, named: usize, options: &RelaxedOptions) -> f64 {
    let targets: usize = (named + 1..=shape.layers()).map(|l| shape.tokens_in_layer(l)).sum();
    targets as f64 * 6.0 * options.candidates as f64 * dim as f64
}

/// The decoder's input for a batch: the value of `zhat` (image b decoded from its first
/// `lengths[b]` layers), carrying z's gradient through the relaxed choice of every
/// appearance layer (those after `named`) that the image decodes. `quantized` is SAQ's
/// result for the batch, searched with [`saq::Search::Ranked`] for `options.candidates`
/// words.
#[allow(clippy::too_many_arguments)]
pub fn decoder_input(
    z: &Tensor,
    zhat: &Tensor,
    lengths: &[usize],
    named: usize,
    quantized: &saq::Quantized,
    codebook: &Codebook,
    shape: &PyramidShape,
    options: RelaxedOptions,
) -> Result<Tensor> {
    let mut input = zhat.detach();
    let mean_square = codebook.mean_square();
    for layer in named + 1..=shape.layers() {
        let previous = layer.checked_sub(2).map(|i| quantized.prefixes[i].detach());
        let t = saq::cell_mean_targets(z, previous.as_ref(), shape, layer)?;
        let (batch, dim, s, _) = t.dims4()?;
        let cells = batch * s * s;
        let rows = t.permute((0, 2, 3, 1))?.reshape((cells, dim))?;
        let (k, temperature) = (options.candidates, options.temperature);
        let words = &quantized.candidates[layer - 1];
        anyhow::ensure!(words.len() == cells * k, "SAQ's search kept no {k} candidates for layer {layer}");
        let relaxed = soft_choice(&rows, codebook.embeddings(), words, k, temperature, mean_square)?;
        let relaxed = relaxed.reshape((batch, s, s, dim))?.permute((0, 3, 1, 2))?;
        let relaxed = upsample(&relaxed, shape.latent_size() / s)?;
        let share: Vec<f32> =
            lengths.iter().map(|&l| if layer <= l { shape.weight(layer) / shape.weight_sum(l) } else { 0.0 }).collect();
        input = (input + relaxed.broadcast_mul(&Tensor::from_vec(share, (batch, 1, 1, 1), &Device::Cpu)?)?)?;
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codebook::quantized::{QuantizedIndex, QuantizedOptions};
    use crate::codebook::vocabulary::Vocabulary;
    use crate::pyramid::CellTarget;
    use candle_core::Var;

    /// Channels (the quantized index wants a multiple of 8).
    const DIM: usize = 8;
    const WORDS: usize = 24;
    /// The relaxed choice's settings here.
    const K: usize = 8;
    const TEMPERATURE: f32 = 0.25;

    fn word(k: usize) -> Vec<f32> {
        (0..DIM).map(|d| (((k * 7 + d * 5 + k * d) % 11) as f32 - 5.0) * 0.3).collect()
    }

    fn codebook() -> Codebook {
        let tokens: Vec<String> = (0..WORDS)
            .map(|k| format!("Ġw{}{}", (b'a' + (k / 5) as u8) as char, (b'a' + (k % 5) as u8) as char))
            .collect();
        let rows: Vec<f32> = (0..WORDS).flat_map(word).collect();
        let embeddings = Tensor::from_vec(rows, (WORDS, DIM), &Device::Cpu).unwrap();
        Codebook::new(Vocabulary::from_tokens(&tokens, WORDS).unwrap(), embeddings).unwrap()
    }

    /// Two images, a 2 x 2 latent of [`DIM`] channels (channels first).
    fn latent() -> Vec<f32> {
        (0..2 * DIM * 4).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.21).collect()
    }

    /// d/dt of g . s(t) for one cell, by hand in f64: the K nearest words by brute force,
    /// tau from their distances, then Cov_p(e) g / m.
    fn cell_gradient(t: &[f64], g: &[f64], mean_square: f64) -> Vec<f64> {
        let distance = |k: usize| word(k).iter().zip(t).map(|(&e, t)| (e as f64 - t).powi(2)).sum::<f64>();
        let mut order: Vec<usize> = (0..WORDS).collect();
        order.sort_by(|&a, &b| distance(a).total_cmp(&distance(b)));
        let near = &order[..K];
        let d: Vec<f64> = near.iter().map(|&k| distance(k)).collect();
        let tau = TEMPERATURE as f64 * (d[K - 1] - d[0]);
        let weights: Vec<f64> = d.iter().map(|x| (-(x - d[0]) / tau).exp()).collect();
        let total: f64 = weights.iter().sum();
        let p: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let e = |i: usize| word(near[i]).iter().map(|&v| v as f64).collect::<Vec<_>>();
        let mean: Vec<f64> = (0..DIM).map(|c| (0..K).map(|i| p[i] * e(i)[c]).sum()).collect();
        // Cov g = sum_i p_i (e_i - mean) ((e_i - mean) . g)
        let mut out = vec![0.0; DIM];
        for (i, &p_i) in p.iter().enumerate() {
            let centred: Vec<f64> = e(i).iter().zip(&mean).map(|(a, m)| a - m).collect();
            let along: f64 = centred.iter().zip(g).map(|(a, b)| a * b).sum();
            for (o, c) in out.iter_mut().zip(&centred) {
                *o += p_i * c * along / mean_square;
            }
        }
        out
    }

    #[test]
    fn the_flops_count_the_appearance_layers_targets_only() {
        let shape = PyramidShape::new(2, 2).unwrap();
        let options = RelaxedOptions { candidates: 4, temperature: 0.5 };
        // Layer 2's four cells when the branch names layer 1; all five otherwise.
        assert_eq!(flops(&shape, DIM, 1, &options), 4.0 * 6.0 * 4.0 * DIM as f64);
        assert_eq!(flops(&shape, DIM, 0, &options), 5.0 * 6.0 * 4.0 * DIM as f64);
    }

    #[test]
    fn the_value_is_zhat_and_the_gradient_is_the_soft_choice_s() {
        let (codebook, shape) = (codebook(), PyramidShape::new(2, 2).unwrap());
        let index = QuantizedIndex::new(&codebook, QuantizedOptions { shortlist: 16 }).unwrap();
        let z = Var::from_vec(latent(), (2, DIM, 2, 2), &Device::Cpu).unwrap();
        let search = saq::Search::Ranked(&index, K);
        let quantized = saq::quantize_with(z.as_tensor(), &[], &codebook, &shape, CellTarget::Mean, search).unwrap();
        // The ranked search picks the exact search's words here.
        let exact = saq::quantize(z.as_tensor(), &codebook, &shape, CellTarget::Mean).unwrap();
        assert_eq!(quantized.pyramids, exact.pyramids);
        // Its candidates: each cell's nearest word first, K a cell, for both layers.
        for (layer, words) in quantized.candidates.iter().enumerate() {
            let chosen: Vec<u32> = quantized.pyramids.iter().flat_map(|p| p.layer(layer + 1).to_vec()).collect();
            assert_eq!(words.len(), chosen.len() * K);
            assert_eq!(words.iter().step_by(K).copied().collect::<Vec<_>>(), chosen);
        }
        // Image 0 decodes both layers, image 1 only the first.
        let lengths = [2, 1];
        let zhat =
            Tensor::stack(&[quantized.prefixes[1].get(0).unwrap(), quantized.prefixes[0].get(1).unwrap()], 0).unwrap();
        let input = decoder_input(
            z.as_tensor(),
            &zhat,
            &lengths,
            0,
            &quantized,
            &codebook,
            &shape,
            RelaxedOptions { candidates: K, temperature: TEMPERATURE },
        )
        .unwrap();
        let (value, expected): (Vec<f32>, Vec<f32>) =
            (input.flatten_all().unwrap().to_vec1().unwrap(), zhat.flatten_all().unwrap().to_vec1().unwrap());
        assert_eq!(value, expected);

        let g: Vec<f32> = (0..2 * DIM * 4).map(|i| ((i * 5 % 9) as f32 - 4.0) * 0.1).collect();
        let g_tensor = Tensor::from_vec(g.clone(), (2, DIM, 2, 2), &Device::Cpu).unwrap();
        let grads = (input * g_tensor).unwrap().sum_all().unwrap().backward().unwrap();
        let gradient: Vec<f32> = grads.get(z.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();

        let at = |x: &[f32], b: usize, c: usize, p: usize| x[(b * DIM + c) * 4 + p] as f64;
        let (z_values, m) = (latent(), codebook.mean_square() as f64);
        let zhat1: Vec<f32> = quantized.prefixes[0].flatten_all().unwrap().to_vec1().unwrap();
        let mut by_hand = vec![0.0f64; 2 * DIM * 4];
        for (b, &length) in lengths.iter().enumerate() {
            // Layer 1: one cell, t = mean z; the cell's g summed over its four positions;
            // each position gets 1/4 of t's gradient, times its share 1/length.
            let t: Vec<f64> = (0..DIM).map(|c| (0..4).map(|p| at(&z_values, b, c, p)).sum::<f64>() / 4.0).collect();
            let g_cell: Vec<f64> = (0..DIM).map(|c| (0..4).map(|p| at(&g, b, c, p)).sum::<f64>()).collect();
            let d = cell_gradient(&t, &g_cell, m);
            for c in 0..DIM {
                for p in 0..4 {
                    by_hand[(b * DIM + c) * 4 + p] += d[c] / 4.0 / length as f64;
                }
            }
            if length == 2 {
                // Layer 2: t = 2 z - zhat_1 per position, share 1/2, dt/dz = 2.
                for p in 0..4 {
                    let t: Vec<f64> = (0..DIM).map(|c| 2.0 * at(&z_values, b, c, p) - at(&zhat1, b, c, p)).collect();
                    let g_cell: Vec<f64> = (0..DIM).map(|c| at(&g, b, c, p)).collect();
                    let d = cell_gradient(&t, &g_cell, m);
                    for c in 0..DIM {
                        by_hand[(b * DIM + c) * 4 + p] += 2.0 * d[c] / 2.0;
                    }
                }
            }
        }
        let scale = by_hand.iter().fold(0f64, |a, v| a.max(v.abs()));
        assert!(scale > 1e-3, "the gradient reaches z");
        for (got, want) in gradient.iter().zip(&by_hand) {
            assert!((*got as f64 - want).abs() < 1e-4 * scale.max(1.0), "{got} against {want}");
        }
    }
}
