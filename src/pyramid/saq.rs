//! Streaming average quantization (SAQ, docs/method.md section 3).
//!
//! For a latent position p covered by tokens k_1(p)..k_L(p), the first l layers dequantize
//! to the weighted running mean zhat_l(p) = (1/W_l) sum_{i<=l} w_i e(k_i(p)), with W_l =
//! sum_{i<=l} w_i (all w_i = 1 by default: the plain mean). Layer l picks, for each cell c,
//! the word nearest to t = (W_l * mean_S(z) - W_{l-1} * mean_S(zhat_{l-1})) / w_l, which
//! minimises the cell's squared error of zhat_l against z. Every prefix of layers is thus
//! a point in the LLM's embedding space.

use anyhow::Result;
use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::codebook::quantized::QuantizedIndex;
use crate::codebook::Codebook;
use crate::compute::matmul::transpose;
use crate::compute::upsample::block_mean;
use crate::pyramid::{CellTarget, Pyramid, PyramidShape};

/// What SAQ produces for a batch: the pyramids and zhat_l for every prefix l = 1..L.
pub struct Quantized {
    pub pyramids: Vec<Pyramid>,
    /// `prefixes[l-1]` is zhat_l, shaped like z (`batch x dim x G x G`).
    pub prefixes: Vec<Tensor>,
    /// With [`Search::Ranked`], `candidates[l-1]` holds each cell's ranked nearest words
    /// (`count` a cell, nearest first; cells image after image, row-major) for every layer
    /// whose targets come from z; empty for the others and for the other searches.
    pub candidates: Vec<Vec<u32>>,
}

/// Quantizes a batch of latents `z` (`batch x dim x G x G`) into pyramids of words.
///
/// SAQ passes no gradient (the straight-through estimator does that), so the bookkeeping
/// runs on plain channel-last buffers; only the searches are heavy.
pub fn quantize(z: &Tensor, codebook: &Codebook, shape: &PyramidShape, cell_target: CellTarget) -> Result<Quantized> {
    quantize_with(z, &[], codebook, shape, cell_target, Search::Exact)
}

/// How SAQ finds each target's nearest word.
#[derive(Clone, Copy)]
pub enum Search<'a> {
    /// The exact search ([`Codebook::nearest`]): encoding, evaluation, the studio.
    Exact,
    /// The 8-bit search with exact rescoring ([`QuantizedIndex`]): training only.
    Quantized(&'a QuantizedIndex),
    /// The 8-bit search that also keeps each of z's targets' `count` nearest words of its
    /// shortlist, ranked exactly: the relaxed word choice's candidates (training only).
    Ranked(&'a QuantizedIndex, usize),
}

impl Search<'_> {
    /// Floating-point operations of one target's search.
    pub fn flops_per_target(self, codebook: &Codebook) -> f64 {
        match self {
            Self::Exact => 2.0 * codebook.len() as f64 * codebook.dim() as f64,
            Self::Quantized(index) | Self::Ranked(index, _) => index.flops_per_target(codebook),
        }
    }

    fn nearest(self, codebook: &Codebook, targets: &[f32]) -> Vec<u32> {
        match self {
            Self::Exact => codebook.nearest(targets),
            Self::Quantized(index) | Self::Ranked(index, _) => index.nearest(codebook, targets),
        }
    }

    /// Each target's nearest word and, for [`Search::Ranked`], its ranked candidates
    /// (none for the other searches).
    fn words(self, codebook: &Codebook, targets: &[f32]) -> (Vec<u32>, Vec<u32>) {
        match self {
            Self::Ranked(index, count) => {
                let ranked = index.ranked(codebook, targets, count);
                (ranked.iter().step_by(count).copied().collect(), ranked)
            }
            other => (other.nearest(codebook, targets), Vec::new()),
        }
    }
}

/// [`quantize`] with given targets for the first layers and the given search: layer l's
/// cell targets are `named[l-1]` (`batch x dim x s_l x s_l`) for l <= `named.len()` (the
/// words the semantic branch names), and come from z below.
pub fn quantize_with(
    z: &Tensor,
    named: &[Tensor],
    codebook: &Codebook,
    shape: &PyramidShape,
    cell_target: CellTarget,
    search: Search,
) -> Result<Quantized> {
    let (batch, dim, g, _) = z.dims4()?;
    anyhow::ensure!(g == shape.latent_size(), "latent is {g} wide, the pyramid wants {}", shape.latent_size());
    anyhow::ensure!(dim == codebook.dim(), "latent has {dim} channels, the codebook {}", codebook.dim());
    let named = named_rows(named, batch, dim, shape)?;
    let z: Vec<f32> = z.detach().permute((0, 2, 3, 1))?.flatten_all()?.to_vec1()?;
    let mut sum = vec![0f32; z.len()];
    let mut prefixes = Vec::with_capacity(shape.layers());
    let mut words: Vec<Vec<Vec<u32>>> = vec![Vec::with_capacity(shape.layers()); batch];
    let mut candidates = Vec::with_capacity(shape.layers());
    for layer in 1..=shape.layers() {
        let given = named.get(layer - 1).map(Vec::as_slice);
        let (found, ranked) = quantize_layer(&z, given, &mut sum, codebook, shape, layer, cell_target, search);
        candidates.push(ranked);
        for (b, image_words) in found.chunks(shape.tokens_in_layer(layer)).enumerate() {
            words[b].push(image_words.to_vec());
        }
        prefixes.push(channels_first(&sum, shape.weight_sum(layer), batch, g, dim)?);
    }
    let pyramids = words.into_iter().map(|layers| Pyramid::new(shape.clone(), layers)).collect::<Result<_>>()?;
    Ok(Quantized { pyramids, prefixes, candidates })
}

/// The words of only the first `layers` layers of each latent of a batch, image after
/// image, each image's layers in order (what [`Pyramid::prefix_words`] gives for the whole
/// pyramid), without searching the lower layers.
pub fn prefix_words(
    z: &Tensor,
    named: &[Tensor],
    codebook: &Codebook,
    shape: &PyramidShape,
    cell_target: CellTarget,
    layers: usize,
) -> Result<Vec<Vec<u32>>> {
    let (batch, dim, g, _) = z.dims4()?;
    anyhow::ensure!(g == shape.latent_size() && dim == codebook.dim(), "the latent does not fit the pyramid");
    anyhow::ensure!((1..=shape.layers()).contains(&layers), "layers must be 1..={}", shape.layers());
    let named = named_rows(named, batch, dim, shape)?;
    let z: Vec<f32> = z.detach().permute((0, 2, 3, 1))?.flatten_all()?.to_vec1()?;
    let mut sum = vec![0f32; z.len()];
    let mut words = vec![Vec::with_capacity(shape.tokens_in_prefix(layers)); batch];
    for layer in 1..=layers {
        let given = named.get(layer - 1).map(Vec::as_slice);
        let (found, _) = quantize_layer(&z, given, &mut sum, codebook, shape, layer, cell_target, Search::Exact);
        for (image, layer_words) in words.iter_mut().zip(found.chunks(shape.tokens_in_layer(layer))) {
            image.extend_from_slice(layer_words);
        }
    }
    Ok(words)
}

/// zhat_layers for a batch of pyramids: the weighted running mean of the first `layers`
/// layers.
pub fn dequantize(pyramids: &[Pyramid], codebook: &Codebook, layers: usize) -> Result<Tensor> {
    let shape = pyramids[0].shape();
    anyhow::ensure!(
        (1..=shape.layers()).contains(&layers),
        "cannot decode {layers} layers of a {}-layer pyramid",
        shape.layers()
    );
    let (g, dim) = (shape.latent_size(), codebook.dim());
    let mut sum = vec![0f32; pyramids.len() * g * g * dim];
    for (pyramid, image) in pyramids.iter().zip(sum.chunks_mut(g * g * dim)) {
        for layer in 1..=layers {
            add_layer(image, codebook, shape, layer, pyramid.layer(layer));
        }
    }
    channels_first(&sum, shape.weight_sum(layers), pyramids.len(), g, dim)
}

/// A full pyramid from its first layers (`prefix[l-1]` holds layer l's words): the
/// remaining layers are chosen by SAQ with the prefix's own zhat as the latent to match,
/// so decoding the result from all layers shows, as nearly as the codebook allows, what
/// the prefix alone shows. Generation writes only the first layers of a pyramid.
pub fn complete(
    prefix: &[Vec<u32>],
    codebook: &Codebook,
    shape: &PyramidShape,
    cell_target: CellTarget,
) -> Result<Pyramid> {
    let k = prefix.len();
    anyhow::ensure!((1..=shape.layers()).contains(&k), "a prefix of {k} layers for a {}-layer pyramid", shape.layers());
    let (g, dim) = (shape.latent_size(), codebook.dim());
    let mut sum = vec![0f32; g * g * dim];
    for (i, words) in prefix.iter().enumerate() {
        anyhow::ensure!(
            words.len() == shape.tokens_in_layer(i + 1),
            "layer {} has {} words, needs {}",
            i + 1,
            words.len(),
            shape.tokens_in_layer(i + 1)
        );
        anyhow::ensure!(
            words.iter().all(|&w| (w as usize) < codebook.len()),
            "layer {} has a word outside the vocabulary",
            i + 1
        );
        add_layer(&mut sum, codebook, shape, i + 1, words);
    }
    let total = shape.weight_sum(k);
    let z: Vec<f32> = sum.iter().map(|s| s / total).collect();
    let mut layers = prefix.to_vec();
    for layer in k + 1..=shape.layers() {
        layers.push(quantize_layer(&z, None, &mut sum, codebook, shape, layer, cell_target, Search::Exact).0);
    }
    Pyramid::new(shape.clone(), layers)
}

/// One SAQ layer over a batch of channel-last latents `z` whose running sums of the layers
/// so far are `sum`: every cell's target (`given`, or from z and the sums), the nearest
/// words, and those words added to the sums. Returns the words, image after image, and
/// the search's ranked candidates where it keeps them for targets from z.
#[allow(clippy::too_many_arguments)]
fn quantize_layer(
    z: &[f32],
    given: Option<&[f32]>,
    sum: &mut [f32],
    codebook: &Codebook,
    shape: &PyramidShape,
    layer: usize,
    cell_target: CellTarget,
    search: Search,
) -> (Vec<u32>, Vec<u32>) {
    let (found, ranked) = match given {
        Some(targets) => (search.nearest(codebook, targets), Vec::new()),
        None => search.words(codebook, &layer_targets(z, sum, shape, layer, cell_target, codebook.dim())),
    };
    add_batch_layer(sum, codebook, shape, layer, &found);
    (found, ranked)
}

/// Given targets of the first layers (`batch x dim x s_l x s_l` each) as channel-last
/// rows (`cells x dim`, image after image), checked against the pyramid.
fn named_rows(named: &[Tensor], batch: usize, dim: usize, shape: &PyramidShape) -> Result<Vec<Vec<f32>>> {
    anyhow::ensure!(named.len() <= shape.layers(), "targets for {} layers of {}", named.len(), shape.layers());
    named
        .iter()
        .enumerate()
        .map(|(i, targets)| {
            let s = shape.grid_size(i + 1);
            anyhow::ensure!(
                targets.dims() == [batch, dim, s, s],
                "layer {}'s given targets have shape {:?}, not {:?}",
                i + 1,
                targets.dims(),
                [batch, dim, s, s]
            );
            Ok(targets.detach().permute((0, 2, 3, 1))?.flatten_all()?.to_vec1()?)
        })
        .collect()
}

/// Adds one layer's words (image after image) to a batch's channel-last sums.
fn add_batch_layer(sum: &mut [f32], codebook: &Codebook, shape: &PyramidShape, layer: usize, words: &[u32]) {
    let image_len = shape.latent_size().pow(2) * codebook.dim();
    for (sum_image, image_words) in sum.chunks_mut(image_len).zip(words.chunks(shape.tokens_in_layer(layer))) {
        add_layer(sum_image, codebook, shape, layer, image_words);
    }
}

/// Every cell's SAQ target of one layer over a batch of channel-last latents, row-major
/// (`cells x dim`, image after image).
fn layer_targets(
    z: &[f32],
    sum: &[f32],
    shape: &PyramidShape,
    layer: usize,
    cell_target: CellTarget,
    dim: usize,
) -> Vec<f32> {
    let image_len = shape.latent_size().pow(2) * dim;
    let (total, weight) = (shape.weight_sum(layer), shape.weight(layer));
    let mut targets = Vec::with_capacity(z.len() / image_len * shape.tokens_in_layer(layer) * dim);
    for (z_image, sum_image) in z.chunks(image_len).zip(sum.chunks(image_len)) {
        let z_cells = cell_values(z_image, shape, layer, cell_target, dim);
        // zhat_{l-1} = sum / W_{l-1}; its cell values scaled by W_{l-1} are the sum's.
        let sum_cells = cell_values(sum_image, shape, layer, cell_target, dim);
        targets.extend(z_cells.iter().zip(&sum_cells).map(|(zc, sc)| (total * zc - sc) / weight));
    }
    targets
}

/// For each layer, the share of SAQ's targets for which `search` finds the exact search's
/// word. The pyramid is built with the exact search, so every layer's targets are the
/// ones encoding would search.
pub fn search_agreement(
    z: &Tensor,
    named: &[Tensor],
    codebook: &Codebook,
    shape: &PyramidShape,
    cell_target: CellTarget,
    search: Search,
) -> Result<Vec<f64>> {
    let (batch, dim, g, _) = z.dims4()?;
    anyhow::ensure!(g == shape.latent_size() && dim == codebook.dim(), "the latent does not fit the pyramid");
    let named = named_rows(named, batch, dim, shape)?;
    let z: Vec<f32> = z.detach().permute((0, 2, 3, 1))?.flatten_all()?.to_vec1()?;
    let mut sum = vec![0f32; z.len()];
    let mut agreement = Vec::with_capacity(shape.layers());
    for layer in 1..=shape.layers() {
        let targets = match named.get(layer - 1) {
            Some(given) => given.clone(),
            None => layer_targets(&z, &sum, shape, layer, cell_target, dim),
        };
        let exact = codebook.nearest(&targets);
        let approximate = search.nearest(codebook, &targets);
        let same = exact.iter().zip(&approximate).filter(|(a, b)| a == b).count();
        agreement.push(same as f64 / exact.len().max(1) as f64);
        add_batch_layer(&mut sum, codebook, shape, layer, &exact);
    }
    Ok(agreement)
}

/// The SAQ targets of a layer as a differentiable tensor (`batch x dim x s x s`):
/// t = (W_l * mean_S(z) - W_{l-1} * mean_S(zhat_{l-1})) / w_l over cell means, `previous` being
/// zhat_{l-1} (none for layer 1). Used where gradients or tensors are wanted: semantic
/// guidance and the studio's nearest alternatives.
pub fn cell_mean_targets(z: &Tensor, previous: Option<&Tensor>, shape: &PyramidShape, layer: usize) -> Result<Tensor> {
    let f = shape.cell_size(layer);
    let cell_mean = |x: &Tensor| -> Result<Tensor> { Ok(if f == 1 { x.clone() } else { block_mean(x, f)? }) };
    let mut target = (cell_mean(z)? * shape.weight_sum(layer) as f64)?;
    if let Some(zhat) = previous {
        target = (target - (cell_mean(zhat)? * shape.weight_sum(layer - 1) as f64)?)?;
    }
    Ok((target / shape.weight(layer) as f64)?)
}

/// Straight-through estimator: the value of zhat with the gradient of z.
pub fn straight_through(z: &Tensor, zhat: &Tensor) -> Result<Tensor> {
    Ok((z + (zhat - z)?.detach())?)
}

/// Commitment term ||z - stopgrad(zhat)||^2, averaged over elements.
pub fn commitment_loss(z: &Tensor, zhat: &Tensor) -> Result<Tensor> {
    Ok((z - zhat.detach())?.sqr()?.mean_all()?)
}

/// A layer's cell values of one channel-last latent (`G x G x dim`), as `s*s` rows of
/// `dim`: cell means or dilated samples.
fn cell_values(x: &[f32], shape: &PyramidShape, layer: usize, cell_target: CellTarget, dim: usize) -> Vec<f32> {
    let (g, s, f) = (shape.latent_size(), shape.grid_size(layer), shape.cell_size(layer));
    let mut out = vec![0f32; s * s * dim];
    for (cell, value) in out.chunks_mut(dim).enumerate() {
        let (row, col) = (cell / s, cell % s);
        match cell_target {
            CellTarget::Mean => {
                for y in row * f..(row + 1) * f {
                    for x_ in col * f..(col + 1) * f {
                        let p = (y * g + x_) * dim;
                        value.iter_mut().zip(&x[p..p + dim]).for_each(|(v, a)| *v += a);
                    }
                }
                let scale = 1.0 / (f * f) as f32;
                value.iter_mut().for_each(|v| *v *= scale);
            }
            CellTarget::Dilated => {
                let p = (shape.dilated_position(layer, row) * g + shape.dilated_position(layer, col)) * dim;
                value.copy_from_slice(&x[p..p + dim]);
            }
        }
    }
    out
}

/// Adds one layer's word embeddings, times the layer's weight, over their cells to a
/// channel-last sum (`G x G x dim`).
fn add_layer(sum: &mut [f32], codebook: &Codebook, shape: &PyramidShape, layer: usize, words: &[u32]) {
    let (g, s, f, dim) = (shape.latent_size(), shape.grid_size(layer), shape.cell_size(layer), codebook.dim());
    let weight = shape.weight(layer);
    for (p, position) in sum.chunks_mut(dim).enumerate() {
        let (y, x) = (p / g, p % g);
        let word = words[(y / f) * s + x / f];
        position.iter_mut().zip(codebook.row(word)).for_each(|(v, e)| *v += weight * e);
    }
}

/// A channel-last batch of sums (`batch x G x G x dim`) divided by `total`, as a
/// `batch x dim x G x G` tensor (one image per thread at a time).
fn channels_first(sums: &[f32], total: f32, batch: usize, g: usize, dim: usize) -> Result<Tensor> {
    let image = g * g * dim;
    let mut out = vec![0f32; sums.len()];
    out.par_chunks_mut(image).zip(sums.par_chunks(image)).for_each(|(image_out, image_sums)| {
        transpose(image_sums, g * g, dim, image_out);
        image_out.iter_mut().for_each(|v| *v /= total);
    });
    Ok(Tensor::from_vec(out, (batch, dim, g, g), &Device::Cpu)?)
}

/// Mean squared quantization error per cell of a layer, between z and zhat_layer
/// (`batch x s x s`), for showing how well each word fits its region.
pub fn cell_errors(z: &Tensor, zhat: &Tensor, shape: &PyramidShape, layer: usize) -> Result<Tensor> {
    let err = (z - zhat)?.sqr()?.mean_keepdim(1)?; // batch x 1 x G x G
    let f = shape.cell_size(layer);
    let per_cell = if f == 1 { err } else { err.avg_pool2d(f)? };
    Ok(per_cell.squeeze(1)?)
}
