//! `spae eval`: quality on the held-out split (docs/method.md section 8): reconstruction for
//! every layer prefix, and the semantic precision of the upper layers' words.

use std::collections::HashSet;

use anyhow::Result;
use image::RgbImage;
use serde::Serialize;

use crate::data::{relevance_cache, Dataset};
use crate::image_io;
use crate::metrics::{psnr, ssim};
use crate::model::SpaeModel;
use crate::teacher::relevance::Relevance;

/// The layers whose words are judged for meaning (L_sem, docs/method.md section 4).
pub const SEMANTIC_LAYERS: usize = 3;

#[derive(Debug, Serialize)]
pub struct Report {
    /// Mean PSNR (dB) decoding from the first 1..=L layers.
    pub psnr_db: Vec<f64>,
    /// Mean SSIM decoding from the first 1..=L layers.
    pub ssim: Vec<f64>,
    /// Share of the upper layers' words among the teacher's most relevant words.
    pub semantic_precision: Option<f64>,
    /// Share of the upper layers' words that are one of the image's own text words.
    pub text_precision: Option<f64>,
    pub images: usize,
}

/// Encodes the first `limit` images of `data`, decodes every prefix, and, given the
/// teacher's relevances for `data`, scores the words of the upper layers.
pub fn evaluate(
    model: &SpaeModel,
    data: &Dataset,
    relevances: Option<&[Relevance]>,
    limit: usize,
    batch_size: usize,
) -> Result<Report> {
    let layers = model.shape().layers();
    let count = data.len().min(limit);
    let (mut psnr_sum, mut ssim_sum) = (vec![0.0; layers], vec![0.0; layers]);
    let (mut teacher_hits, mut text_hits, mut judged) = (0usize, 0usize, 0usize);
    let vocabulary = model.codebook().vocabulary();
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
        if let Some(relevances) = relevances {
            for (&index, pyramid) in indices.iter().zip(&quantized.pyramids) {
                let relevance = &relevances[index];
                let relevant: HashSet<&str> = relevance.words.iter().map(String::as_str).collect();
                let text: HashSet<&str> = relevance.text_words.iter().map(String::as_str).collect();
                for layer in 1..=SEMANTIC_LAYERS.min(layers) {
                    for &word in pyramid.layer(layer) {
                        let word = vocabulary.word(word);
                        teacher_hits += usize::from(relevant.contains(word));
                        text_hits += usize::from(text.contains(word));
                        judged += 1;
                    }
                }
            }
        }
    }
    let mean = |v: Vec<f64>| v.into_iter().map(|s| s / count as f64).collect();
    let share = |hits: usize| relevances.map(|_| hits as f64 / judged.max(1) as f64);
    Ok(Report {
        psnr_db: mean(psnr_sum),
        ssim: mean(ssim_sum),
        semantic_precision: share(teacher_hits),
        text_precision: share(text_hits),
        images: count,
    })
}

/// The report's sheet: `count` held-out images spread evenly over the split, each with
/// every model's upper-layer words marked against the teacher's top words, and its
/// reconstruction from all layers by the first model.
pub fn sheet_rows(
    models: &[(&str, &SpaeModel)],
    data: &Dataset,
    relevances: &[Relevance],
    count: usize,
) -> Result<Vec<SheetRow>> {
    let count = count.min(data.len());
    (0..count)
        .map(|i| {
            let index = i * data.len() / count;
            let original = data.image(index);
            let relevance = &relevances[index];
            let relevant: HashSet<&str> = relevance.words.iter().map(String::as_str).collect();
            let mut decoded = None;
            let mut words = Vec::new();
            for (name, model) in models {
                let pyramid = model.encode(&original)?;
                let layers = model.shape().layers();
                if decoded.is_none() {
                    decoded = Some(model.decode(&pyramid, layers)?);
                }
                let vocabulary = model.codebook().vocabulary();
                let upper = (1..=SEMANTIC_LAYERS.min(layers)).flat_map(|l| pyramid.layer(l).iter().copied());
                words.push(SheetWords {
                    model: name.to_string(),
                    words: upper.map(|w| vocabulary.word(w)).map(|w| (w.to_string(), relevant.contains(w))).collect(),
                });
            }
            Ok(SheetRow {
                decoded: decoded.unwrap_or_else(|| original.clone()),
                original,
                text: relevance_cache::sample_text(data.sample(index)).trim().to_string(),
                teacher: relevance.words.iter().take(10).cloned().collect(),
                models: words,
            })
        })
        .collect()
}

/// One model's words for a sheet row.
pub struct SheetWords {
    pub model: String,
    /// The upper layers' words, top layer first, each with whether the teacher ranks it
    /// among its top words for the image.
    pub words: Vec<(String, bool)>,
}

/// One held-out image in the sheet.
pub struct SheetRow {
    pub original: RgbImage,
    /// Decoded from all layers by the first model.
    pub decoded: RgbImage,
    /// The image's caption, name or category.
    pub text: String,
    /// The teacher's most relevant words.
    pub teacher: Vec<String>,
    pub models: Vec<SheetWords>,
}
