//! `spae eval`: quality on the held-out split (docs/method.md section 8): reconstruction for
//! every layer prefix, and the semantic precision of the upper layers' words.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use image::RgbImage;
use serde::Serialize;

use crate::codebook::vocabulary::Vocabulary;
use crate::data::{relevance_cache, Dataset};
use crate::eval::metrics::{psnr, ssim};
use crate::image_io;
use crate::model::SpaeModel;
use crate::pyramid::saq;
use crate::teacher::relevance::Relevance;

/// The layers whose words are judged for meaning (L_sem, docs/method.md section 4).
pub const SEMANTIC_LAYERS: usize = 3;

#[derive(Debug, Serialize)]
pub struct Report {
    /// Mean PSNR (dB) decoding from the first 1..=L layers.
    pub psnr_db: Vec<f64>,
    /// Mean SSIM decoding from the first 1..=L layers.
    pub ssim: Vec<f64>,
    /// Mean relative squared error ||z - zhat_l||^2 / ||z||^2 of the latent after the
    /// first 1..=L layers: how closely the words approximate the encoder's output.
    pub latent_error: Vec<f64>,
    /// Mean PSNR (dB) decoding the encoder's latent z itself, before any word is chosen
    /// (the decoder learns from the words' running mean, never from z, so this is a
    /// diagnostic, not a ceiling).
    pub psnr_unquantized_db: f64,
    /// Share of the upper layers' words among the teacher's most relevant words.
    pub semantic_precision: Option<f64>,
    /// Share of the upper layers' words that are one of the image's own text words.
    pub text_precision: Option<f64>,
    /// Share of the upper layers' words that are one of the image's own text words and
    /// specific: in the text of at most [`SPECIFIC_SHARE`] of the split's images.
    pub specific_precision: Option<f64>,
    /// Distinct words in the upper layers over the images evaluated.
    pub distinct_words: usize,
    /// Per layer, the perplexity exp(H) of the distribution of its words over all its
    /// cells of all images evaluated: how many words the layer effectively uses.
    pub perplexity: Vec<f64>,
    /// Per layer, its [`COMMONEST`] most frequent words and the share of the layer's cells
    /// each takes (the hub words a collapsed layer settles on).
    pub commonest: Vec<Vec<(String, f64)>>,
    pub images: usize,
}

/// Words per layer in [`Report::commonest`].
pub const COMMONEST: usize = 3;

/// A text word counts as specific when at most this share of the split's images have it.
pub const SPECIFIC_SHARE: f64 = 0.02;

/// The words that occur in the text of at most [`SPECIFIC_SHARE`] of the images.
pub fn specific_words(relevances: &[Relevance]) -> HashSet<&str> {
    let mut images_with: HashMap<&str, usize> = HashMap::new();
    for relevance in relevances {
        let own: HashSet<&str> = relevance.text_words.iter().map(String::as_str).collect();
        for word in own {
            *images_with.entry(word).or_default() += 1;
        }
    }
    let most = (SPECIFIC_SHARE * relevances.len() as f64).floor() as usize;
    images_with.into_iter().filter(|&(_, n)| n <= most).map(|(w, _)| w).collect()
}

/// exp of the entropy of a distribution given by counts.
pub fn perplexity<'a>(counts: impl IntoIterator<Item = &'a usize>) -> f64 {
    let counts: Vec<f64> = counts.into_iter().map(|&c| c as f64).filter(|&c| c > 0.0).collect();
    let total: f64 = counts.iter().sum();
    if total == 0.0 {
        return 0.0;
    }
    let entropy: f64 = counts.iter().map(|c| -(c / total) * (c / total).ln()).sum();
    entropy.exp()
}

/// The [`COMMONEST`] most frequent words of a layer's counts with their shares, the
/// commonest first (ties by word id).
fn commonest(counts: &HashMap<u32, usize>, vocabulary: &Vocabulary) -> Vec<(String, f64)> {
    let total: usize = counts.values().sum();
    let mut ranked: Vec<(u32, usize)> = counts.iter().map(|(&w, &c)| (w, c)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
        .iter()
        .take(COMMONEST)
        .map(|&(w, c)| (vocabulary.word(w).to_string(), c as f64 / total.max(1) as f64))
        .collect()
}

/// Encodes the first `limit` images of `data` (refining the appearance words for
/// `refine_rounds` rounds, [`SpaeModel::refine`]), decodes every prefix, and, given the
/// teacher's relevances for `data`, scores the words of the upper layers. `progress` hears
/// (images done, images) after every batch.
pub fn evaluate(
    model: &SpaeModel,
    data: &Dataset,
    relevances: Option<&[Relevance]>,
    limit: usize,
    batch_size: usize,
    refine_rounds: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Report> {
    let layers = model.shape().layers();
    let count = data.len().min(limit);
    let (mut psnr_sum, mut ssim_sum, mut latent_sum) = (vec![0.0; layers], vec![0.0; layers], vec![0.0; layers]);
    let mut unquantized_sum = 0.0;
    let (mut teacher_hits, mut text_hits, mut specific_hits, mut judged) = (0usize, 0usize, 0usize, 0usize);
    let mut word_counts: Vec<HashMap<u32, usize>> = vec![HashMap::new(); layers];
    let specific = relevances.map(specific_words).unwrap_or_default();
    let vocabulary = model.codebook().vocabulary();
    for start in (0..count).step_by(batch_size) {
        let indices: Vec<usize> = (start..(start + batch_size).min(count)).collect();
        let pixels = data.batch(&indices, &vec![false; indices.len()])?;
        let (latent, mut quantized) = model.quantize(&pixels)?;
        if refine_rounds > 0 {
            model.refine(&pixels, &mut quantized.pyramids, refine_rounds)?;
            quantized.prefixes = (1..=layers)
                .map(|l| saq::dequantize(&quantized.pyramids, model.codebook(), l))
                .collect::<Result<_>>()?;
        }
        let power = latent.z.sqr()?.sum((1, 2, 3))?.clamp(1e-12, f32::MAX)?;
        for (&index, image) in indices.iter().zip(&image_io::from_tensor(&model.decode_latent(&latent.z)?)?) {
            unquantized_sum += psnr(&data.image(index), image).min(100.0);
        }
        for (l, zhat) in quantized.prefixes.iter().enumerate() {
            let error = (zhat - &latent.z)?.sqr()?.sum((1, 2, 3))?;
            let relative: Vec<f32> = (error / &power)?.to_vec1()?;
            latent_sum[l] += relative.iter().map(|&r| f64::from(r)).sum::<f64>();
            let decoded = image_io::from_tensor(&model.decode_latent(zhat)?)?;
            for (&index, image) in indices.iter().zip(&decoded) {
                let original = data.image(index);
                psnr_sum[l] += psnr(&original, image).min(100.0);
                ssim_sum[l] += ssim(&original, image);
            }
        }
        for pyramid in &quantized.pyramids {
            for (layer, counts) in word_counts.iter_mut().enumerate() {
                for &word in pyramid.layer(layer + 1) {
                    *counts.entry(word).or_default() += 1;
                }
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
                        specific_hits += usize::from(text.contains(word) && specific.contains(word));
                        judged += 1;
                    }
                }
            }
        }
        progress(start + indices.len(), count);
    }
    let mean = |v: Vec<f64>| v.into_iter().map(|s| s / count as f64).collect();
    let share = |hits: usize| relevances.map(|_| hits as f64 / judged.max(1) as f64);
    Ok(Report {
        psnr_db: mean(psnr_sum),
        ssim: mean(ssim_sum),
        latent_error: mean(latent_sum),
        psnr_unquantized_db: unquantized_sum / count as f64,
        semantic_precision: share(teacher_hits),
        text_precision: share(text_hits),
        specific_precision: share(specific_hits),
        distinct_words: word_counts
            .iter()
            .take(SEMANTIC_LAYERS)
            .flat_map(|counts| counts.keys())
            .collect::<HashSet<_>>()
            .len(),
        perplexity: word_counts.iter().map(|counts| perplexity(counts.values())).collect(),
        commonest: word_counts.iter().map(|counts| commonest(counts, vocabulary)).collect(),
        images: count,
    })
}

/// The report's sheet: `count` held-out images spread evenly over the split, each with
/// every model's upper-layer words marked against the teacher's top words, and its
/// reconstruction from all layers by the first model (its words refined for
/// `refine_rounds` rounds).
pub fn sheet_rows(
    models: &[(&str, &SpaeModel)],
    data: &Dataset,
    relevances: &[Relevance],
    count: usize,
    refine_rounds: usize,
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
                let pyramid = model.encode_refined(&original, refine_rounds)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perplexity_counts_effective_words() {
        assert!((perplexity(&[5, 5, 5, 5]) - 4.0).abs() < 1e-12);
        assert!((perplexity(&[7, 0]) - 1.0).abs() < 1e-12);
        // p = (3/4, 1/4): H = -(0.75 ln 0.75 + 0.25 ln 0.25).
        let h: f64 = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((perplexity(&[3, 1]) - h.exp()).abs() < 1e-12);
        assert_eq!(perplexity(&[]), 0.0);
    }

    #[test]
    fn commonest_words_come_with_their_shares() {
        let tokens: Vec<String> = ["Ġuse", "Ġand", "Ġsky", "Ġcat"].iter().map(|t| t.to_string()).collect();
        let vocabulary = Vocabulary::from_tokens(&tokens, 4).unwrap();
        // 10 cells: "sky" 5, "use" 2, "cat" 2 (a tie, the lower id first), "and" 1.
        let counts = HashMap::from([(2, 5), (0, 2), (3, 2), (1, 1)]);
        let expected = [("sky", 0.5), ("use", 0.2), ("cat", 0.2)];
        let got = commonest(&counts, &vocabulary);
        assert_eq!(got.len(), COMMONEST);
        for ((word, share), (want, want_share)) in got.iter().zip(expected) {
            assert_eq!((word.as_str(), *share), (want, want_share));
        }
        assert!(commonest(&HashMap::new(), &vocabulary).is_empty());
    }

    #[test]
    fn specific_words_are_in_few_images_texts() {
        let with = |words: &[&str]| Relevance {
            words: Vec::new(),
            scores: Vec::new(),
            classes: Vec::new(),
            text_words: words.iter().map(|w| w.to_string()).collect(),
        };
        // 100 images: "symbols" in 3 of them (over 2%), "goose" in 2, "jeep" in 1.
        let mut relevances: Vec<Relevance> = (0..97).map(|_| with(&["photo"])).collect();
        relevances.push(with(&["symbols", "goose", "goose"]));
        relevances.push(with(&["symbols", "goose"]));
        relevances.push(with(&["symbols", "jeep"]));
        let specific = specific_words(&relevances);
        assert_eq!(specific, HashSet::from(["goose", "jeep"]));
    }
}
