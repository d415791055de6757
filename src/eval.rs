//! `spae eval`: reconstruction quality on the held-out split, for every layer prefix.

use anyhow::Result;
use serde::Serialize;

use crate::data::Dataset;
use crate::image_io;
use crate::metrics::{psnr, ssim};
use crate::model::SpaeModel;

/// Mean PSNR (dB) and SSIM for decoding from the first 1..=L layers.
#[derive(Debug, Serialize)]
pub struct Reconstruction {
    pub psnr_db: Vec<f64>,
    pub ssim: Vec<f64>,
    pub images: usize,
}

/// Encodes the first `limit` images of `data` and decodes every prefix.
pub fn reconstruction(model: &SpaeModel, data: &Dataset, limit: usize, batch_size: usize) -> Result<Reconstruction> {
    let layers = model.shape().layers();
    let count = data.len().min(limit);
    let (mut psnr_sum, mut ssim_sum) = (vec![0.0; layers], vec![0.0; layers]);
    for start in (0..count).step_by(batch_size) {
        let indices: Vec<usize> = (start..(start + batch_size).min(count)).collect();
        let pixels = data.batch(&indices, &vec![false; indices.len()])?;
        let (_, quantized) = model.quantize(&pixels)?;
        for (l, zhat) in quantized.prefixes.iter().enumerate() {
            let decoded = image_io::from_tensor(&model.decode_latent(zhat)?)?;
            for (&index, image) in indices.iter().zip(&decoded) {
                let original = data.image(index);
                psnr_sum[l] += psnr(&original, image).min(100.0);
                ssim_sum[l] += ssim(&original, image);
            }
        }
    }
    let mean = |v: Vec<f64>| v.into_iter().map(|s| s / count as f64).collect();
    Ok(Reconstruction { psnr_db: mean(psnr_sum), ssim: mean(ssim_sum), images: count })
}
