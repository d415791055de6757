//! A word-similarity space for the semantic teacher (docs/method.md section 5), and how well it
//! finds an image's own words.
//!
//! A space is one embedding row per vocabulary word (any width): the LLM's codebook rows,
//! or a text encoder's embedding of each word. Rows are centred on their mean, so the
//! component every word shares does not dominate, and scaled to unit length. A word's
//! relevance to a set of weighted anchor words is its best weighted cosine to an anchor,
//! less its *hubness* (its mean cosine to all words): hub words are near everything.

use anyhow::{ensure, Result};
use candle_core::{Device, Tensor};

pub struct WordSpace {
    /// Centred, unit-length rows (`words x dim`).
    unit_rows: Tensor,
    /// Each word's mean cosine to all words (`words`).
    hubness: Tensor,
}

impl WordSpace {
    /// The space of `words x dim` embedding rows.
    pub fn new(rows: &Tensor) -> Result<Self> {
        let (words, _) = rows.dims2()?;
        ensure!(words > 0, "a word space needs at least one word");
        let unit_rows = unit_length(&rows.broadcast_sub(&rows.mean_keepdim(0)?)?)?;
        let hubness = unit_rows.matmul(&unit_rows.mean_keepdim(0)?.t()?)?.squeeze(1)?;
        Ok(Self { unit_rows, hubness })
    }

    /// The rows as they are: unit length, neither centred nor corrected for hubness (the
    /// plain cosine, for comparison with [`WordSpace::new`]).
    pub fn uncentred(rows: &Tensor) -> Result<Self> {
        let (words, _) = rows.dims2()?;
        ensure!(words > 0, "a word space needs at least one word");
        let unit_rows = unit_length(rows)?;
        let hubness = Tensor::zeros(words, rows.dtype(), rows.device())?;
        Ok(Self { unit_rows, hubness })
    }

    pub fn len(&self) -> usize {
        self.hubness.dims1().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn unit_rows(&self) -> &Tensor {
        &self.unit_rows
    }

    pub fn hubness(&self) -> &Tensor {
        &self.hubness
    }

    /// Every word's relevance to the anchors `(word, weight)`: max over anchors of
    /// weight * cosine, less the word's hubness (`words`). `None` without anchors.
    pub fn relevance(&self, anchors: &[(u32, f32)]) -> Result<Option<Tensor>> {
        if anchors.is_empty() {
            return Ok(None);
        }
        let ids: Vec<u32> = anchors.iter().map(|a| a.0).collect();
        let weights: Vec<f32> = anchors.iter().map(|a| a.1).collect();
        let anchor_rows = self.unit_rows.index_select(&Tensor::new(ids.as_slice(), &Device::Cpu)?, 0)?;
        let weights = Tensor::new(weights.as_slice(), &Device::Cpu)?.unsqueeze(1)?;
        // (anchors x dim) . (dim x words), weighted per anchor, best anchor per word.
        let cosine = anchor_rows.matmul(&self.unit_rows.t()?)?.broadcast_mul(&weights)?.max(0)?;
        Ok(Some((cosine - &self.hubness)?))
    }
}

/// Each row of a `rows x dim` matrix scaled to unit length.
pub fn unit_length(rows: &Tensor) -> Result<Tensor> {
    Ok(rows.broadcast_div(&rows.sqr()?.sum_keepdim(1)?.sqrt()?)?)
}

/// The `count` best-scored words as (word, score), best first; ties go to the lower index.
pub fn best_words(scores: &[f32], count: usize) -> Vec<(u32, f32)> {
    let mut ranked: Vec<(u32, f32)> = scores.iter().enumerate().map(|(i, &s)| (i as u32, s)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(count);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four words in 2-D whose mean is zero: a = (3, 0), b = (-1, 1), c = (-1, -1),
    /// d = (-1, 0). Unit rows: a = (1, 0), b = (-1, 1)/√2, c = (-1, -1)/√2, d = (-1, 0);
    /// their mean is (-√2/4, 0), so hubness = (-√2/4, 1/4, 1/4, √2/4).
    fn space() -> WordSpace {
        let rows = Tensor::new(&[[3f32, 0.0], [-1.0, 1.0], [-1.0, -1.0], [-1.0, 0.0]], &Device::Cpu).unwrap();
        WordSpace::new(&rows).unwrap()
    }

    #[test]
    fn hubness_and_relevance_match_the_hand_computation() {
        let space = space();
        let r2 = std::f32::consts::SQRT_2;
        let hubness: Vec<f32> = space.hubness().to_vec1().unwrap();
        for (got, want) in hubness.iter().zip([-r2 / 4.0, 0.25, 0.25, r2 / 4.0]) {
            assert!((got - want).abs() < 1e-6, "{hubness:?}");
        }
        // Anchors b (weight 1) and a (weight 1/2). Best weighted cosines:
        // a: max(-1/√2, 1/2) = 1/2; b: max(1, -1/(2√2)) = 1; c: max(0, -1/(2√2)) = 0;
        // d: max(1/√2, -1/2) = 1/√2. Less hubness: a 1/2 + √2/4, b 3/4, c -1/4, d √2/4.
        let relevance: Vec<f32> = space.relevance(&[(1, 1.0), (0, 0.5)]).unwrap().unwrap().to_vec1().unwrap();
        for (got, want) in relevance.iter().zip([0.5 + r2 / 4.0, 0.75, -0.25, r2 / 4.0]) {
            assert!((got - want).abs() < 1e-6, "{relevance:?}");
        }
        assert!(space.relevance(&[]).unwrap().is_none());
    }
}
