//! Where an image's own text words land when the vocabulary is ordered by a scoring: the
//! measure this comparison reports (recall at k, reciprocal rank).

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

    #[test]
    fn ranks_recall_and_reciprocal_rank_match_the_hand_computation() {
        // Words a, b, c, d scored 0.85, 0.75, -0.25, 0.35: the order is a, b, d, c, and
        // text words b and c sit at ranks 2 and 4.
        let scores = [0.85f32, 0.75, -0.25, 0.35];
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
