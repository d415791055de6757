//! A cheaper nearest-word search, for training only: every word ranked by 8-bit dot
//! products, the best few rescored exactly.
//!
//! Each codebook row e is stored as signed bytes q_e = round(e / s_e) with s_e = max|e| / 127,
//! each target t likewise (s_t), so t.e is about s_t s_e (q_t . q_e), an integer product the
//! CPU computes 64 multiply-adds at a time (AVX-512 VNNI's `vpdpbusd`: unsigned bytes
//! times signed bytes, so the target's bytes travel shifted by 128 and 128 x the row's
//! byte sum is taken off again). Those approximate distances ||e||^2 - 2 t.e keep a
//! shortlist of the `shortlist` nearest words per target, which are then compared
//! exactly in f32 (ties to the lower index, as in the exact search). The two searches
//! disagree only where the nearest word's approximate distance ranks it below the
//! shortlist (rounding the bytes moves each distance by about a percent of |t| |e|), or
//! where two words are so nearly tied that the summation order decides.
//!
//! The integer products are exact, so the vector kernel and the portable loop beside it
//! (used where the CPU lacks VNNI) find the same words. `encode`, `eval` and the studio
//! keep the exact search ([`Codebook::nearest`]); `spae bench-train` reports how often the
//! two agree, per layer.

use rayon::prelude::*;

use super::Codebook;
use crate::compute::lanes::dot_16;

/// Codebook rows per packed block: one 64-byte vector holds 4 bytes of each of 16 rows.
const BLOCK_ROWS: usize = 16;
/// Targets per tile of the kernel: 8 targets x 2 blocks = 16 accumulators.
const TILE: usize = 8;
/// Rows one tile scores at once (two blocks).
const PAIR_ROWS: usize = 2 * BLOCK_ROWS;
/// Most targets one thread takes at a time: their bytes stay in its L2 cache while the
/// codebook streams past.
const CHUNK_TARGETS: usize = 256;

/// How the quantized search is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuantizedOptions {
    /// Words per target rescored exactly.
    pub shortlist: usize,
}

impl Default for QuantizedOptions {
    fn default() -> Self {
        Self { shortlist: 16 }
    }
}

/// The codebook's rows in bytes, packed for the kernel, with what scores need per row.
pub struct QuantizedIndex {
    options: QuantizedOptions,
    dim: usize,
    /// Rows of the codebook.
    rows: usize,
    /// Rows of the codebook, padded to whole pairs of blocks.
    padded_rows: usize,
    /// Block after block; within a block, for each group of 4 dimensions, 16 rows x 4 bytes.
    packed: Vec<i8>,
    /// Per padded row: its scale s_e (0 for padding).
    scales: Vec<f32>,
    /// Per padded row: 128 x the sum of its bytes.
    offsets: Vec<i32>,
    /// Per padded row: ||e||^2 (+inf for padding, so no padding row is ever offered).
    norms: Vec<f32>,
}

/// The widest rows whose byte products cannot overflow an i32 (255 x 127 per dimension).
const MAX_DIM: usize = 65_536;

impl QuantizedIndex {
    /// Quantizes and packs the codebook's rows.
    pub fn new(codebook: &Codebook, options: QuantizedOptions) -> anyhow::Result<Self> {
        Self::from_rows(&codebook.rows, codebook.squared_norms(), codebook.dim(), options)
    }

    /// [`Self::new`] from row-major rows (`n x dim`) and their squared lengths.
    fn from_rows(rows: &[f32], norms_of_rows: &[f32], dim: usize, options: QuantizedOptions) -> anyhow::Result<Self> {
        let n = norms_of_rows.len();
        assert_eq!(rows.len(), n * dim, "rows and lengths disagree");
        anyhow::ensure!(
            (1..=n).contains(&options.shortlist),
            "quantized search: the shortlist must be 1..={n} words (got {})",
            options.shortlist
        );
        anyhow::ensure!(
            dim.is_multiple_of(4) && dim <= MAX_DIM,
            "quantized search: the embedding width {dim} is not a multiple of 4 up to {MAX_DIM}"
        );
        let padded_rows = n.next_multiple_of(PAIR_ROWS);
        let mut packed = vec![0i8; padded_rows * dim];
        let mut scales = vec![0f32; padded_rows];
        let mut offsets = vec![0i32; padded_rows];
        let mut norms = vec![f32::INFINITY; padded_rows];
        let mut bytes = vec![0i8; dim];
        for (row, values) in rows.chunks_exact(dim).enumerate() {
            scales[row] = quantize(values, &mut bytes);
            offsets[row] = 128 * bytes.iter().map(|&b| b as i32).sum::<i32>();
            norms[row] = norms_of_rows[row];
            let (block, lane) = (row / BLOCK_ROWS, row % BLOCK_ROWS);
            for (group, four) in bytes.chunks_exact(4).enumerate() {
                let at = block * BLOCK_ROWS * dim + group * BLOCK_ROWS * 4 + lane * 4;
                packed[at..at + 4].copy_from_slice(four);
            }
        }
        Ok(Self { options, dim, rows: n, padded_rows, packed, scales, offsets, norms })
    }

    /// Whether this CPU runs the vector kernel (otherwise the portable loop, same words).
    pub fn vectorized() -> bool {
        vnni::available()
    }

    /// Operations of one target's search: the 8-bit products over the whole codebook
    /// (a multiply-add counted as two, like a floating-point one) and the exact rescoring.
    pub fn flops_per_target(&self, codebook: &Codebook) -> f64 {
        2.0 * self.dim as f64 * (codebook.len() + self.options.shortlist) as f64
    }

    /// The nearest word for each target (row-major `m x dim`) among its shortlist.
    pub fn nearest(&self, codebook: &Codebook, targets: &[f32]) -> Vec<u32> {
        self.nearest_with(codebook, targets, Self::vectorized())
    }

    /// [`Self::nearest`] with the vector kernel or the portable loop (tests compare them).
    pub fn nearest_with(&self, codebook: &Codebook, targets: &[f32], vector: bool) -> Vec<u32> {
        self.scan(codebook, targets, vector, |target, list| rescore(codebook, target, list))
    }

    /// For each target, the `count` words of its shortlist (at most the shortlist's size)
    /// in order of their exact distance, nearest first: the first is [`Self::nearest`]'s
    /// word (also for a target without a finite distance); `m x count` row-major.
    pub fn ranked(&self, codebook: &Codebook, targets: &[f32], count: usize) -> Vec<u32> {
        assert!(
            (1..=self.options.shortlist).contains(&count),
            "{count} words ranked from shortlists of {}",
            self.options.shortlist
        );
        let lists = self.scan(codebook, targets, Self::vectorized(), |target, list| {
            let first = rescore(codebook, target, list);
            let mut scored: Vec<(f32, u32)> = list
                .entries
                .iter()
                .filter(|&&(_, word)| word != first)
                .map(|&(_, word)| (exact_score(codebook, target, word), word))
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            // A shortlist shorter than `count` repeats the nearest word.
            let rest = scored.into_iter().map(|(_, w)| w).chain(std::iter::repeat(first));
            std::iter::once(first).chain(rest).take(count).collect::<Vec<u32>>()
        });
        lists.concat()
    }

    /// Every target's shortlist from the 8-bit scan, handed to `finish` with the target.
    fn scan<T: Send>(
        &self,
        codebook: &Codebook,
        targets: &[f32],
        vector: bool,
        finish: impl Fn(&[f32], &Shortlist) -> T + Sync,
    ) -> Vec<T> {
        assert_eq!(targets.len() % self.dim, 0, "targets must be whole rows of width {}", self.dim);
        assert!(codebook.len() == self.rows && codebook.dim() == self.dim, "the index was built from another codebook");
        assert!(!vector || vnni::available(), "the vector kernel needs AVX-512 VNNI");
        let (m, dim) = (targets.len() / self.dim, self.dim);
        let chunk = m.div_ceil(4 * rayon::current_num_threads()).next_multiple_of(TILE).clamp(TILE, CHUNK_TARGETS);
        let found: Vec<Vec<T>> = targets
            .par_chunks(chunk * dim)
            .map(|rows| {
                let count = rows.len() / dim;
                let (bytes, scales) = target_bytes(rows, dim);
                let mut lists: Vec<Shortlist> = (0..count).map(|_| Shortlist::new(self.options.shortlist)).collect();
                if vector {
                    // SAFETY: `vnni::available()` was checked above; the slices' sizes are the index's.
                    unsafe { vnni::scan(self, &bytes, &scales, &mut lists) }
                } else {
                    portable_scan(self, &bytes, &scales, &mut lists);
                }
                rows.chunks_exact(dim).zip(lists).map(|(target, list)| finish(target, &list)).collect::<Vec<T>>()
            })
            .collect();
        found.into_iter().flatten().collect()
    }

    /// The approximate score of padded row `row` for a target of scale `scale` whose
    /// shifted bytes' product with the row is `product`; the kernel computes the same
    /// operations in the same order.
    fn score(&self, row: usize, product: i32, scale: f32) -> f32 {
        let weight = self.scales[row] * (-2.0 * scale);
        ((product - self.offsets[row]) as f32).mul_add(weight, self.norms[row])
    }
}

/// Targets (row-major, `dim` wide) as the kernel reads them: bytes shifted to unsigned
/// (+128), in whole tiles (zero targets pad the last), and each target's scale.
fn target_bytes(rows: &[f32], dim: usize) -> (Vec<u8>, Vec<f32>) {
    let tiles = (rows.len() / dim).next_multiple_of(TILE);
    let mut bytes = vec![128u8; tiles * dim];
    let mut scales = vec![0f32; tiles];
    let mut signed = vec![0i8; dim];
    for (t, target) in rows.chunks_exact(dim).enumerate() {
        scales[t] = quantize(target, &mut signed);
        for (b, &s) in bytes[t * dim..(t + 1) * dim].iter_mut().zip(&signed) {
            *b = (s as i16 + 128) as u8;
        }
    }
    (bytes, scales)
}

/// Rounds `values` to bytes of scale max|v| / 127 (1 for a zero or non-finite row);
/// returns the scale.
fn quantize(values: &[f32], bytes: &mut [i8]) -> f32 {
    let largest = values.iter().fold(0f32, |a, v| a.max(v.abs()));
    let scale = if largest.is_finite() && largest > 0.0 { largest / 127.0 } else { 1.0 };
    for (b, v) in bytes.iter_mut().zip(values) {
        *b = (v / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// The exact search among a shortlist: the lowest ||e||^2 - 2 t.e, ties to the lower index;
/// word 0 where no score is finite (a target with NaN), as in the exact search.
fn rescore(codebook: &Codebook, target: &[f32], list: &Shortlist) -> u32 {
    let mut best = (f32::INFINITY, 0);
    for &(_, word) in &list.entries {
        let score = exact_score(codebook, target, word);
        if score < best.0 || (score == best.0 && word < best.1) {
            best = (score, word);
        }
    }
    best.1
}

/// ||e||^2 - 2 t.e: the squared distance of `target` to the word less ||t||^2.
fn exact_score(codebook: &Codebook, target: &[f32], word: u32) -> f32 {
    codebook.squared_norms()[word as usize] - 2.0 * dot_16(codebook.row(word), target)
}

/// The kernel's arithmetic in plain Rust: every (target, row) product of a chunk, rows in
/// order, offered to the target's shortlist.
fn portable_scan(index: &QuantizedIndex, bytes: &[u8], scales: &[f32], lists: &mut [Shortlist]) {
    let dim = index.dim;
    for row in 0..index.padded_rows {
        let (block, lane) = (row / BLOCK_ROWS, row % BLOCK_ROWS);
        for (t, list) in lists.iter_mut().enumerate() {
            let target = &bytes[t * dim..(t + 1) * dim];
            let mut product = 0i32;
            for (group, four) in target.chunks_exact(4).enumerate() {
                let at = block * BLOCK_ROWS * dim + group * BLOCK_ROWS * 4 + lane * 4;
                for (&u, &s) in four.iter().zip(&index.packed[at..at + 4]) {
                    product += u as i32 * s as i32;
                }
            }
            list.offer(index.score(row, product, scales[t]), row as u32);
        }
    }
}

/// The `capacity` lowest (score, word) pairs offered so far (unordered), with the worst
/// tracked so that most offers cost one comparison. Offers come in increasing word order
/// and must beat the worst score strictly; the worst is the highest score, the higher
/// word of equal scores, so the list holds the `capacity` lowest scores, lower words
/// first among equals.
struct Shortlist {
    entries: Vec<(f32, u32)>,
    capacity: usize,
    worst: usize,
}

impl Shortlist {
    fn new(capacity: usize) -> Self {
        Self { entries: Vec::with_capacity(capacity), capacity, worst: 0 }
    }

    /// The score an offer must be below to enter.
    fn bar(&self) -> f32 {
        if self.entries.len() < self.capacity {
            f32::INFINITY
        } else {
            self.entries[self.worst].0
        }
    }

    fn offer(&mut self, score: f32, word: u32) {
        if self.entries.len() < self.capacity {
            if score < f32::INFINITY {
                self.entries.push((score, word));
                if self.entries.len() == self.capacity {
                    self.find_worst();
                }
            }
        } else if score < self.entries[self.worst].0 {
            self.entries[self.worst] = (score, word);
            self.find_worst();
        }
    }

    fn find_worst(&mut self) {
        let entries = &self.entries;
        self.worst = (0..entries.len())
            .max_by(|&a, &b| entries[a].0.total_cmp(&entries[b].0).then(entries[a].1.cmp(&entries[b].1)))
            .unwrap_or(0);
    }
}

/// The kernel: AVX-512 VNNI, detected at run time.
mod vnni {
    use super::{QuantizedIndex, Shortlist};

    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// [`super::portable_scan`]'s offers, made by the vector unit: for each pair of blocks
    /// and each tile of 8 targets, 16 accumulators of 16 rows, then the scores of the 32
    /// rows compared with each target's bar at once.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI ([`available`]); `bytes` holds whole tiles
    /// of the index's width, `scales` one per target of them.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn scan(index: &QuantizedIndex, bytes: &[u8], scales: &[f32], lists: &mut [Shortlist]) {
        use super::{BLOCK_ROWS, PAIR_ROWS, TILE};
        use std::arch::x86_64::*;
        let dim = index.dim;
        let groups = dim / 4;
        let block_len = BLOCK_ROWS * dim;
        assert!(bytes.len() == scales.len() * dim && scales.len().is_multiple_of(TILE) && lists.len() <= scales.len());
        assert!(index.packed.len() == index.padded_rows * dim);
        let mut scores = [0f32; BLOCK_ROWS];
        for pair in 0..index.padded_rows / PAIR_ROWS {
            let first = pair * PAIR_ROWS;
            let b0 = index.packed.as_ptr().add(first * dim);
            let b1 = b0.add(block_len);
            let weights = [
                _mm512_loadu_ps(index.scales.as_ptr().add(first)),
                _mm512_loadu_ps(index.scales.as_ptr().add(first + 16)),
            ];
            let offsets = [
                _mm512_loadu_si512(index.offsets.as_ptr().add(first).cast()),
                _mm512_loadu_si512(index.offsets.as_ptr().add(first + 16).cast()),
            ];
            let norms = [
                _mm512_loadu_ps(index.norms.as_ptr().add(first)),
                _mm512_loadu_ps(index.norms.as_ptr().add(first + 16)),
            ];
            for tile in 0..scales.len() / TILE {
                let t0 = tile * TILE;
                let a = bytes.as_ptr().add(t0 * dim);
                let mut acc = [[_mm512_setzero_si512(); 2]; TILE];
                for g in 0..groups {
                    let r0 = _mm512_loadu_si512(b0.add(g * 64).cast());
                    let r1 = _mm512_loadu_si512(b1.add(g * 64).cast());
                    for (t, pair_acc) in acc.iter_mut().enumerate() {
                        let four = _mm512_set1_epi32(a.add(t * dim + g * 4).cast::<i32>().read_unaligned());
                        pair_acc[0] = _mm512_dpbusd_epi32(pair_acc[0], four, r0);
                        pair_acc[1] = _mm512_dpbusd_epi32(pair_acc[1], four, r1);
                    }
                }
                for (t, pair_acc) in acc.iter().enumerate() {
                    let Some(list) = lists.get_mut(t0 + t) else { break };
                    let factor = _mm512_set1_ps(-2.0 * scales[t0 + t]);
                    for half in 0..2 {
                        let difference = _mm512_cvtepi32_ps(_mm512_sub_epi32(pair_acc[half], offsets[half]));
                        let score = _mm512_fmadd_ps(difference, _mm512_mul_ps(weights[half], factor), norms[half]);
                        let mut below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(score, _mm512_set1_ps(list.bar()));
                        if below == 0 {
                            continue;
                        }
                        _mm512_storeu_ps(scores.as_mut_ptr(), score);
                        while below != 0 {
                            let lane = below.trailing_zeros() as usize;
                            list.offer(scores[lane], (first + half * BLOCK_ROWS + lane) as u32);
                            below &= below - 1;
                            // The bar may have dropped: later lanes must beat the new one.
                            below &= _mm512_cmp_ps_mask::<_CMP_LT_OQ>(score, _mm512_set1_ps(list.bar()));
                        }
                    }
                }
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub unsafe fn scan(_: &QuantizedIndex, _: &[u8], _: &[f32], _: &mut [Shortlist]) {
        unreachable!("the quantized kernel is only used on x86_64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortlist_keeps_the_lowest_scores_and_the_first_of_equals() {
        let mut list = Shortlist::new(3);
        for (i, score) in [5.0, 1.0, 4.0, 0.5, 9.0, 2.0, 3.0, 2.0].into_iter().enumerate() {
            list.offer(score, i as u32);
        }
        let mut kept: Vec<u32> = list.entries.iter().map(|e| e.1).collect();
        kept.sort();
        assert_eq!(kept, vec![1, 3, 5]);
        assert_eq!(list.bar(), 2.0);
    }

    /// The kernel and the portable loop keep the very same shortlists (scores to the bit),
    /// over duplicated rows (equal scores), a row that can never be nearest (+inf length),
    /// padding rows, and a partial tile of targets with a zero target among them.
    #[test]
    fn the_kernel_and_the_portable_loop_keep_the_same_shortlists() {
        if !vnni::available() {
            return;
        }
        let dim = 64;
        let mut state = 7u64;
        let mut value = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut rows: Vec<f32> = (0..70 * dim).map(|_| value()).collect();
        rows.copy_within(0..10 * dim, 10 * dim);
        let mut norms: Vec<f32> = rows.chunks_exact(dim).map(|r| r.iter().map(|x| x * x).sum()).collect();
        norms[5] = f32::INFINITY;
        let mut targets: Vec<f32> = (0..11 * dim).map(|_| value()).collect();
        targets[3 * dim..4 * dim].fill(0.0);
        for shortlist in [1, 6, 25] {
            let index = QuantizedIndex::from_rows(&rows, &norms, dim, QuantizedOptions { shortlist }).unwrap();
            let (bytes, scales) = target_bytes(&targets, dim);
            let mut vector: Vec<Shortlist> = (0..11).map(|_| Shortlist::new(shortlist)).collect();
            let mut portable: Vec<Shortlist> = (0..11).map(|_| Shortlist::new(shortlist)).collect();
            // SAFETY: VNNI checked above; the bytes come from `target_bytes` for this width.
            unsafe { vnni::scan(&index, &bytes, &scales, &mut vector) };
            portable_scan(&index, &bytes, &scales, &mut portable);
            for (v, p) in vector.iter().zip(&portable) {
                let key = |l: &Shortlist| {
                    let mut e: Vec<(u32, u32)> = l.entries.iter().map(|&(s, w)| (s.to_bits(), w)).collect();
                    e.sort();
                    e
                };
                assert_eq!(key(v), key(p), "shortlist {shortlist}");
                assert_eq!(v.entries.len(), shortlist);
                assert!(v.entries.iter().all(|&(_, w)| w != 5 && w < 70), "{:?}", v.entries);
            }
        }
    }

    #[test]
    fn bytes_round_to_the_scale_of_the_largest_entry() {
        let mut bytes = [0i8; 4];
        let scale = quantize(&[0.5, -1.27, 0.004, 1.0], &mut bytes);
        assert!((scale - 0.01).abs() < 1e-7);
        assert_eq!(bytes, [50, -127, 0, 100]);
        assert_eq!(quantize(&[0.0; 4], &mut bytes), 1.0);
        assert_eq!(bytes, [0; 4]);
    }
}
