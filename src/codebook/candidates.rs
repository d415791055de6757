//! A cheaper nearest-word search, for training only: the codebook split into clusters
//! (k-means, from a fixed start), each target searched exactly among the words of its
//! `probes` nearest clusters.
//!
//! A target's search then costs its distances to the cluster centres plus an exact search
//! over about `probes / clusters` of the codebook. Within the probed clusters the
//! comparison is the exact search's (||e||^2 - 2 t.e, ties to the lower index), so the
//! two disagree when the nearest word lies in a cluster that was not probed (or, rarely,
//! where two words are so nearly tied that the products' rounding orders them apart).
//! `encode`, `eval` and the studio keep the exact search ([`Codebook::nearest`]);
//! `spae bench-train` reports how often the two agree, per layer.

use rayon::prelude::*;

use super::Codebook;
use crate::compute::matmul::matmul_transposed;

/// Lloyd iterations of the clustering.
const KMEANS_ITERATIONS: usize = 10;

/// How the candidate search is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CandidateOptions {
    /// Clusters of the codebook.
    pub clusters: usize,
    /// Clusters searched per target.
    pub probes: usize,
}

impl Default for CandidateOptions {
    fn default() -> Self {
        Self { clusters: 256, probes: 16 }
    }
}

pub struct CandidateIndex {
    options: CandidateOptions,
    dim: usize,
    /// `clusters x dim`.
    centroids: Vec<f32>,
    centroid_norms: Vec<f32>,
    /// Each cluster's words, and their rows (`members x dim`) side by side for the product.
    members: Vec<Vec<u32>>,
    member_rows: Vec<Vec<f32>>,
}

impl CandidateIndex {
    /// Clusters the codebook (k-means from evenly spaced words, so the index is the same
    /// on every run).
    pub fn new(codebook: &Codebook, options: CandidateOptions) -> anyhow::Result<Self> {
        let (n, dim) = (codebook.len(), codebook.dim());
        anyhow::ensure!(
            (1..=n).contains(&options.clusters) && (1..=options.clusters).contains(&options.probes),
            "candidate search: clusters must be 1..={n} and probes 1..=clusters (got {} and {})",
            options.clusters,
            options.probes
        );
        let k = options.clusters;
        let mut centroids: Vec<f32> = (0..k).flat_map(|c| codebook.row((c * n / k) as u32).to_vec()).collect();
        let mut assignment = vec![0usize; n];
        for _ in 0..KMEANS_ITERATIONS {
            assignment = nearest_centroids(&codebook.rows, n, &centroids, k, dim);
            let mut sums = vec![0f64; k * dim];
            let mut counts = vec![0usize; k];
            for (row, &c) in codebook.rows.chunks_exact(dim).zip(&assignment) {
                counts[c] += 1;
                sums[c * dim..(c + 1) * dim].iter_mut().zip(row).for_each(|(s, x)| *s += *x as f64);
            }
            for c in (0..k).filter(|&c| counts[c] > 0) {
                for (centre, sum) in centroids[c * dim..(c + 1) * dim].iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                    *centre = (sum / counts[c] as f64) as f32;
                }
            }
        }
        let mut members = vec![Vec::new(); k];
        for (word, &c) in assignment.iter().enumerate() {
            members[c].push(word as u32);
        }
        // A cluster left empty would waste a probe: it goes, with its centre.
        let kept: Vec<usize> = (0..k).filter(|&c| !members[c].is_empty()).collect();
        let centroids: Vec<f32> = kept.iter().flat_map(|&c| centroids[c * dim..(c + 1) * dim].to_vec()).collect();
        let members: Vec<Vec<u32>> = kept.iter().map(|&c| std::mem::take(&mut members[c])).collect();
        let member_rows =
            members.iter().map(|words| words.iter().flat_map(|&w| codebook.row(w).to_vec()).collect()).collect();
        let centroid_norms = centroids.chunks_exact(dim).map(|c| c.iter().map(|x| x * x).sum()).collect();
        Ok(Self { options, dim, centroids, centroid_norms, members, member_rows })
    }

    /// Floating-point operations of one target's search: its distances to the cluster
    /// centres, and the exact search of the probed clusters' words (counted at their mean
    /// size).
    pub fn flops_per_target(&self, codebook: &Codebook) -> f64 {
        let (k, probes) = (self.members.len() as f64, self.options.probes.min(self.members.len()) as f64);
        2.0 * self.dim as f64 * (k + probes * codebook.len() as f64 / k)
    }

    /// The nearest word for each target (row-major `m x dim`) among the words of its
    /// `probes` nearest clusters; ties go to the lower index, as in the exact search.
    pub fn nearest(&self, codebook: &Codebook, targets: &[f32]) -> Vec<u32> {
        assert_eq!(targets.len() % self.dim, 0, "targets must be whole rows of width {}", self.dim);
        let (m, k, dim) = (targets.len() / self.dim, self.members.len(), self.dim);
        let mut dots = vec![0f32; m * k];
        matmul_transposed(targets, &self.centroids, m, dim, k, &mut dots, k);
        // Which targets probe each cluster.
        let mut probing: Vec<Vec<usize>> = vec![Vec::new(); k];
        let chosen: Vec<Vec<u32>> = dots
            .par_chunks_exact(k)
            .map(|row| {
                let mut list = Shortlist::new(self.options.probes.min(k));
                for (c, (&dot, &norm)) in row.iter().zip(&self.centroid_norms).enumerate() {
                    list.offer(norm - 2.0 * dot, c as u32);
                }
                list.entries.iter().map(|e| e.1).collect()
            })
            .collect();
        for (t, clusters) in chosen.iter().enumerate() {
            for &c in clusters {
                probing[c as usize].push(t);
            }
        }
        // Each cluster searched for its targets at once (one product), then the best kept.
        let found: Vec<Vec<(usize, f32, u32)>> = probing
            .par_iter()
            .enumerate()
            .filter(|(_, ts)| !ts.is_empty())
            .map(|(c, ts)| {
                let words = &self.members[c];
                let gathered: Vec<f32> =
                    ts.iter().flat_map(|&t| targets[t * dim..(t + 1) * dim].iter().copied()).collect();
                let mut scores = vec![0f32; ts.len() * words.len()];
                matmul_transposed(
                    &gathered,
                    &self.member_rows[c],
                    ts.len(),
                    dim,
                    words.len(),
                    &mut scores,
                    words.len(),
                );
                ts.iter()
                    .zip(scores.chunks_exact(words.len()))
                    .map(|(&t, row)| {
                        let mut best = (f32::INFINITY, u32::MAX);
                        for (&word, &dot) in words.iter().zip(row) {
                            let score = codebook.squared_norms[word as usize] - 2.0 * dot;
                            if score < best.0 || (score == best.0 && word < best.1) {
                                best = (score, word);
                            }
                        }
                        (t, best.0, best.1)
                    })
                    .collect()
            })
            .collect();
        let mut best = vec![(f32::INFINITY, 0u32); m];
        for (t, score, word) in found.into_iter().flatten() {
            if score < best[t].0 || (score == best[t].0 && word < best[t].1) {
                best[t] = (score, word);
            }
        }
        best.into_iter().map(|(_, word)| word).collect()
    }
}

/// The nearest centroid of each of `n` rows.
fn nearest_centroids(rows: &[f32], n: usize, centroids: &[f32], k: usize, dim: usize) -> Vec<usize> {
    let norms: Vec<f32> = centroids.chunks_exact(dim).map(|c| c.iter().map(|x| x * x).sum()).collect();
    let mut dots = vec![0f32; n * k];
    matmul_transposed(rows, centroids, n, dim, k, &mut dots, k);
    dots.par_chunks_exact(k)
        .map(|row| {
            row.iter().zip(&norms).enumerate().fold((f32::INFINITY, 0), |best, (c, (&dot, &norm))| {
                let score = norm - 2.0 * dot;
                if score < best.0 {
                    (score, c)
                } else {
                    best
                }
            })
        })
        .map(|(_, c)| c)
        .collect()
}

/// The `capacity` lowest scores offered so far (unordered), with the worst tracked so
/// that most offers cost one comparison.
struct Shortlist {
    entries: Vec<(f32, u32)>,
    capacity: usize,
    worst: usize,
}

impl Shortlist {
    fn new(capacity: usize) -> Self {
        Self { entries: Vec::with_capacity(capacity), capacity, worst: 0 }
    }

    fn offer(&mut self, score: f32, word: u32) {
        if self.entries.len() < self.capacity {
            self.entries.push((score, word));
            if self.entries.len() == self.capacity {
                self.find_worst();
            }
        } else if score < self.entries[self.worst].0 {
            self.entries[self.worst] = (score, word);
            self.find_worst();
        }
    }

    fn find_worst(&mut self) {
        self.worst =
            (0..self.entries.len()).max_by(|&a, &b| self.entries[a].0.total_cmp(&self.entries[b].0)).unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortlist_keeps_the_lowest_scores() {
        let mut list = Shortlist::new(3);
        for (i, score) in [5.0, 1.0, 4.0, 0.5, 9.0, 2.0, 3.0].into_iter().enumerate() {
            list.offer(score, i as u32);
        }
        let mut kept: Vec<u32> = list.entries.iter().map(|e| e.1).collect();
        kept.sort();
        assert_eq!(kept, vec![1, 3, 5]);
    }
}
