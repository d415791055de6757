//! Streaming average quantization (SAQ, SPAE.md section 3).
//!
//! For a latent position p covered by tokens k_1(p)..k_L(p), the first l layers dequantize
//! to the running mean zhat_l(p) = (1/l) sum_{i<=l} e(k_i(p)). Layer l picks, for each
//! cell c, the word nearest to t = l * mean_S(z) - (l-1) * mean_S(zhat_{l-1}), which
//! minimises the cell's squared error of zhat_l against z. Every prefix of layers is thus
//! a point in the LLM's embedding space.

use anyhow::Result;
use candle_core::Tensor;

use crate::codebook::Codebook;
use crate::pyramid::{CellTarget, Pyramid, PyramidShape};

/// What SAQ produces for a batch: the pyramids and zhat_l for every prefix l = 1..L.
pub struct Quantized {
    pub pyramids: Vec<Pyramid>,
    /// `prefixes[l-1]` is zhat_l, shaped like z (`batch x dim x G x G`).
    pub prefixes: Vec<Tensor>,
}

/// Quantizes a batch of latents `z` (`batch x dim x G x G`) into pyramids of words.
pub fn quantize(
    z: &Tensor,
    codebook: &Codebook,
    shape: &PyramidShape,
    cell_target: CellTarget,
) -> Result<Quantized> {
    let z = z.detach();
    let (batch, _, g, _) = z.dims4()?;
    anyhow::ensure!(g == shape.latent_size(), "latent is {g} wide, the pyramid wants {}", shape.latent_size());
    let mut sum = z.zeros_like()?;
    let mut zhat = z.zeros_like()?;
    let mut prefixes = Vec::with_capacity(shape.layers());
    let mut words_per_layer: Vec<Vec<u32>> = Vec::with_capacity(shape.layers());
    for layer in 1..=shape.layers() {
        let l = layer as f64;
        let target = ((cell_values(&z, shape, layer, cell_target)? * l)?
            - (cell_values(&zhat, shape, layer, cell_target)? * (l - 1.0))?)?;
        // batch x dim x s x s  ->  (batch * s * s) x dim
        let rows = target.permute((0, 2, 3, 1))?.flatten_to(2)?.contiguous()?;
        let words = codebook.nearest(&rows.flatten_all()?.to_vec1::<f32>()?);
        sum = (sum + layer_embedding(codebook, &words, batch, shape, layer)?)?;
        zhat = (&sum / l)?;
        prefixes.push(zhat.clone());
        words_per_layer.push(words);
    }
    let pyramids = split_by_image(&words_per_layer, batch, shape)?;
    Ok(Quantized { pyramids, prefixes })
}

/// zhat_layers for a batch of pyramids: the running mean of the first `layers` layers.
pub fn dequantize(pyramids: &[Pyramid], codebook: &Codebook, layers: usize) -> Result<Tensor> {
    let shape = pyramids[0].shape();
    anyhow::ensure!(
        (1..=shape.layers()).contains(&layers),
        "cannot decode {layers} layers of a {}-layer pyramid",
        shape.layers()
    );
    let mut sum: Option<Tensor> = None;
    for layer in 1..=layers {
        let words: Vec<u32> = pyramids.iter().flat_map(|p| p.layer(layer).iter().copied()).collect();
        let e = layer_embedding(codebook, &words, pyramids.len(), shape, layer)?;
        sum = Some(match sum {
            Some(s) => (s + e)?,
            None => e,
        });
    }
    Ok((sum.expect("at least one layer") / layers as f64)?)
}

/// Straight-through estimator: the value of zhat with the gradient of z.
pub fn straight_through(z: &Tensor, zhat: &Tensor) -> Result<Tensor> {
    Ok((z + (zhat - z)?.detach())?)
}

/// Commitment term ||z - stopgrad(zhat)||^2, averaged over elements.
pub fn commitment_loss(z: &Tensor, zhat: &Tensor) -> Result<Tensor> {
    Ok((z - zhat.detach())?.sqr()?.mean_all()?)
}

/// A layer's cell values of a latent (`batch x dim x s x s`): cell means or dilated samples.
fn cell_values(x: &Tensor, shape: &PyramidShape, layer: usize, cell_target: CellTarget) -> Result<Tensor> {
    let f = shape.cell_size(layer);
    if f == 1 {
        return Ok(x.clone());
    }
    Ok(match cell_target {
        CellTarget::Mean => x.avg_pool2d(f)?,
        CellTarget::Dilated => {
            let s = shape.grid_size(layer);
            let positions: Vec<u32> = (0..s).map(|c| shape.dilated_position(layer, c) as u32).collect();
            let index = Tensor::new(positions.as_slice(), x.device())?;
            x.index_select(&index, 2)?.index_select(&index, 3)?
        }
    })
}

/// The embeddings of one layer's words spread over the latent grid (`batch x dim x G x G`).
fn layer_embedding(
    codebook: &Codebook,
    words: &[u32],
    batch: usize,
    shape: &PyramidShape,
    layer: usize,
) -> Result<Tensor> {
    let s = shape.grid_size(layer);
    let g = shape.latent_size();
    let ids = Tensor::new(words, codebook.embeddings().device())?;
    let e = codebook.embeddings().index_select(&ids, 0)?; // (batch*s*s) x dim
    let e = e.reshape((batch, s, s, codebook.dim()))?.permute((0, 3, 1, 2))?;
    Ok(e.upsample_nearest2d(g, g)?.contiguous()?)
}

fn split_by_image(words_per_layer: &[Vec<u32>], batch: usize, shape: &PyramidShape) -> Result<Vec<Pyramid>> {
    (0..batch)
        .map(|b| {
            let layers = words_per_layer
                .iter()
                .enumerate()
                .map(|(l, words)| {
                    let n = shape.tokens_in_layer(l + 1);
                    words[b * n..(b + 1) * n].to_vec()
                })
                .collect();
            Pyramid::new(shape.clone(), layers)
        })
        .collect()
}

/// Mean squared quantization error per cell of a layer, between z and zhat_layer
/// (`batch x s x s`), for showing how well each word fits its region.
pub fn cell_errors(z: &Tensor, zhat: &Tensor, shape: &PyramidShape, layer: usize) -> Result<Tensor> {
    let err = (z - zhat)?.sqr()?.mean_keepdim(1)?; // batch x 1 x G x G
    let f = shape.cell_size(layer);
    let per_cell = if f == 1 { err } else { err.avg_pool2d(f)? };
    Ok(per_cell.squeeze(1)?)
}
