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

/// Where an image's own text words land when the vocabulary is ordered by one scoring.
#[derive(Clone, Debug, PartialEq)]
pub struct TextWordRanks {
    /// 1-based rank of each text word, in the order given.
    pub ranks: Vec<usize>,
}

impl TextWordRanks {
    /// Ranks of `targets` (word indices) in the order of `scores` (one per word), best
    /// first; ties go to the lower index, as a stable sort would place them. `groups`
    /// gives each word a group (e.g. its lower-case form, so "Dog" and "dog" are one
    /// entry): a group stands where its best word stands and takes one place; pass each
    /// word its own index to rank words as they are.
    pub fn new(scores: &[f32], targets: &[u32], groups: &[u32]) -> Self {
        assert_eq!(scores.len(), groups.len(), "one group per word");
        let group_count = groups.iter().map(|&g| g as usize + 1).max().unwrap_or(0);
        // Each group's best word as (score, index); the first index wins a tie.
        let mut best: Vec<Option<(f32, usize)>> = vec![None; group_count];
        for (i, (&s, &g)) in scores.iter().zip(groups).enumerate() {
            let slot = &mut best[g as usize];
            if slot.is_none_or(|(b, _)| s > b) {
                *slot = Some((s, i));
            }
        }
        let ahead = |a: (f32, usize), b: (f32, usize)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);
        let ranks = targets
            .iter()
            .map(|&t| {
                let mine = best[groups[t as usize] as usize].expect("a word's group has a best word");
                1 + best.iter().flatten().filter(|&&other| ahead(other, mine)).count()
            })
            .collect();
        Self { ranks }
    }

    /// Fraction of the text words ranked within the first `k`.
    pub fn recall_at(&self, k: usize) -> f64 {
        if self.ranks.is_empty() {
            return 0.0;
        }
        self.ranks.iter().filter(|&&r| r <= k).count() as f64 / self.ranks.len() as f64
    }

    /// 1 / rank of the best-ranked text word (0 without text words).
    pub fn reciprocal_rank(&self) -> f64 {
        self.ranks.iter().min().map_or(0.0, |&r| 1.0 / r as f64)
    }
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

    #[test]
    fn ranks_recall_and_reciprocal_rank_match_the_hand_computation() {
        let scores: Vec<f32> = space().relevance(&[(1, 1.0), (0, 0.5)]).unwrap().unwrap().to_vec1().unwrap();
        // Order a (0.85), b (0.75), d (0.35), c (-0.25): without the hubness it would be
        // b, d, a, c. Text words b and c sit at ranks 2 and 4.
        let ranks = TextWordRanks::new(&scores, &[1, 2], &[0, 1, 2, 3]);
        assert_eq!(ranks.ranks, vec![2, 4]);
        assert_eq!(ranks.recall_at(1), 0.0);
        assert_eq!(ranks.recall_at(2), 0.5);
        assert_eq!(ranks.recall_at(4), 1.0);
        assert_eq!(ranks.reciprocal_rank(), 0.5);
        // With a and d one group (as "Dog" and "dog"), the group takes one place: c is 3rd.
        assert_eq!(TextWordRanks::new(&scores, &[1, 2], &[0, 1, 2, 0]).ranks, vec![2, 3]);
        // A tie goes to the lower index.
        assert_eq!(TextWordRanks::new(&[1.0, 1.0, 2.0], &[0, 1], &[0, 1, 2]).ranks, vec![2, 3]);
        let none = TextWordRanks::new(&scores, &[], &[0, 1, 2, 3]);
        assert_eq!((none.recall_at(20), none.reciprocal_rank()), (0.0, 0.0));
    }
}
