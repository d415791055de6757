//! The frozen codebook: the LLM's own input embeddings of the lexical vocabulary.
//!
//! Row i is `token_embd.weight[token_id(i)]`, dequantized from the GGUF and never trained
//! or projected (docs/method.md section 1). Nearest-word search is exact: for targets t it picks
//! argmin_k ||t - e_k||^2 = argmin_k (||e_k||^2 - 2 t.e_k), computed as a matrix product
//! over blocks of codebook rows with the argmin fused in, so the full distance matrix is
//! never stored.

pub mod quantized;
pub mod visual;
pub mod vocabulary;

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::codebook::vocabulary::{Vocabulary, VocabularyRule};
use crate::llm::gguf::LlmFile;

/// Codebook rows per block of the fused search: small enough that one block of dot
/// products for a few hundred targets stays in the L2 cache.
const SEARCH_BLOCK_ROWS: usize = 1024;

pub struct Codebook {
    vocabulary: Vocabulary,
    /// Row-major `len x dim`.
    rows: Vec<f32>,
    squared_norms: Vec<f32>,
    dim: usize,
    /// The same rows as a candle tensor, for training graphs.
    embeddings: Tensor,
    /// The GGUF file the rows came from: the LLM that reads and writes these words must be
    /// this one (its token ids are the words).
    source: Option<PathBuf>,
}

impl Codebook {
    /// Reads the vocabulary (`size` words chosen by `rule`) and the embedding table from
    /// the LLM's GGUF file.
    pub fn load(gguf_path: impl AsRef<Path>, rule: VocabularyRule, size: usize) -> Result<Self> {
        let file = LlmFile::open(gguf_path.as_ref())?;
        let vocabulary = Vocabulary::build(&file.tokens()?, rule, size)?;
        let table = file.dequantized("token_embd.weight")?;
        let ids = Tensor::new(vocabulary.token_ids(), &Device::Cpu)?;
        let embeddings = table.index_select(&ids, 0)?.contiguous()?;
        Ok(Self { source: Some(gguf_path.as_ref().to_path_buf()), ..Self::new(vocabulary, embeddings)? })
    }

    /// A codebook from a vocabulary and its `len x dim` embedding rows.
    pub fn new(vocabulary: Vocabulary, embeddings: Tensor) -> Result<Self> {
        let (len, dim) = embeddings.dims2()?;
        ensure!(len == vocabulary.len(), "{len} embedding rows for {} words", vocabulary.len());
        let rows: Vec<f32> = embeddings.flatten_all()?.to_vec1()?;
        let squared_norms = rows.chunks_exact(dim).map(|r| r.iter().map(|x| x * x).sum()).collect();
        Ok(Self { vocabulary, rows, squared_norms, dim, embeddings, source: None })
    }

    /// The GGUF file the codebook was loaded from (none when built from rows in memory).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    pub fn len(&self) -> usize {
        self.squared_norms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.squared_norms.is_empty()
    }

    /// Each row's squared length, as the nearest-word search uses it.
    pub fn squared_norms(&self) -> &[f32] {
        &self.squared_norms
    }

    /// Embedding width (576 for SmolLM2-135M).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The mean squared entry of the codebook (the scale of the embedding space).
    pub fn mean_square(&self) -> f32 {
        self.squared_norms.iter().sum::<f32>() / (self.len() * self.dim) as f32
    }

    /// The rows as a `len x dim` tensor on the CPU.
    pub fn embeddings(&self) -> &Tensor {
        &self.embeddings
    }

    /// One row.
    pub fn row(&self, index: u32) -> &[f32] {
        let start = index as usize * self.dim;
        &self.rows[start..start + self.dim]
    }

    /// Exact nearest row for each target; `targets` is row-major `m x dim`.
    pub fn nearest(&self, targets: &[f32]) -> Vec<u32> {
        assert_eq!(targets.len() % self.dim, 0, "targets must be whole rows of width {}", self.dim);
        let m = targets.len() / self.dim;
        if m <= FEW_TARGETS && few_targets::available() {
            return self.nearest_few(targets, m);
        }
        self.nearest_many(targets, m)
    }

    /// The blocked matrix-product search, efficient when there are many targets.
    fn nearest_many(&self, targets: &[f32], m: usize) -> Vec<u32> {
        let mut best: Vec<(f32, u32)> = vec![(f32::INFINITY, 0); m];
        let mut dots = vec![0f32; m * SEARCH_BLOCK_ROWS];
        for block_start in (0..self.len()).step_by(SEARCH_BLOCK_ROWS) {
            let n = SEARCH_BLOCK_ROWS.min(self.len() - block_start);
            let block = &self.rows[block_start * self.dim..(block_start + n) * self.dim];
            self.dot_block(targets, m, block, n, &mut dots);
            let norms = &self.squared_norms[block_start..block_start + n];
            best.par_iter_mut().zip(dots.par_chunks(SEARCH_BLOCK_ROWS)).for_each(|(b, row)| {
                for (j, (&dot, &norm)) in row[..n].iter().zip(norms).enumerate() {
                    let score = norm - 2.0 * dot;
                    if score < b.0 {
                        *b = (score, (block_start + j) as u32);
                    }
                }
            });
        }
        best.into_iter().map(|(_, index)| index).collect()
    }

    /// One pass over the codebook scoring every row against all targets at once: for few
    /// targets the matrix product's packing and threading cost more than the arithmetic.
    fn nearest_few(&self, targets: &[f32], m: usize) -> Vec<u32> {
        let chunk_rows = self.len().div_ceil(4 * rayon::current_num_threads()).max(1);
        let dim = self.dim;
        let merge = |mut a: Vec<(f32, u32)>, b: Vec<(f32, u32)>| {
            for (x, y) in a.iter_mut().zip(b) {
                if y.0 < x.0 || (y.0 == x.0 && y.1 < x.1) {
                    *x = y;
                }
            }
            a
        };
        let best = self
            .rows
            .par_chunks(chunk_rows * dim)
            .zip(self.squared_norms.par_chunks(chunk_rows))
            .enumerate()
            .map(|(chunk, (rows, norms))| {
                let mut best = vec![(f32::INFINITY, 0u32); m];
                let mut dots = [0f32; 4];
                for (r, (row, &norm)) in rows.chunks_exact(dim).zip(norms).enumerate() {
                    let index = (chunk * chunk_rows + r) as u32;
                    for group in (0..m).step_by(4) {
                        let queries: [&[f32]; 4] = std::array::from_fn(|q| {
                            let i = (group + q).min(m - 1);
                            &targets[i * dim..(i + 1) * dim]
                        });
                        few_targets::dot4(row, queries, &mut dots);
                        for (q, &dot) in dots.iter().enumerate().take(m - group) {
                            let score = norm - 2.0 * dot;
                            if score < best[group + q].0 {
                                best[group + q] = (score, index);
                            }
                        }
                    }
                }
                best
            })
            .reduce(|| vec![(f32::INFINITY, 0u32); m], merge);
        best.into_iter().map(|(_, index)| index).collect()
    }

    /// The `count` nearest rows to one target with their squared distances, nearest first.
    pub fn nearest_k(&self, target: &[f32], count: usize) -> Vec<(u32, f32)> {
        assert_eq!(target.len(), self.dim);
        let mut scored: Vec<(f32, u32)> = self
            .rows
            .par_chunks_exact(self.dim)
            .enumerate()
            .map(|(i, row)| (squared_distance(target, row), i as u32))
            .collect();
        let count = count.min(scored.len());
        if count == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(count - 1, |a, b| a.0.total_cmp(&b.0));
        scored.truncate(count);
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        scored.into_iter().map(|(d, i)| (i, d)).collect()
    }

    /// `dots[i * SEARCH_BLOCK_ROWS + j] = targets[i] . block[j]` for a block of `n` rows.
    fn dot_block(&self, targets: &[f32], m: usize, block: &[f32], n: usize, dots: &mut [f32]) {
        crate::compute::matmul::matmul_transposed(targets, block, m, self.dim, n, dots, SEARCH_BLOCK_ROWS);
    }
}

/// Up to this many targets, [`Codebook::nearest`] streams the codebook once with a
/// hand-written kernel instead of the blocked matrix product (measured crossover on an
/// AVX-512 EPYC: see the README's speed table).
const FEW_TARGETS: usize = 96;

/// Dot products of one codebook row with four targets (AVX2 + FMA, detected at run time).
mod few_targets {
    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `out[q] = row . queries[q]`; all slices have the row's length, a multiple of 8.
    pub fn dot4(row: &[f32], queries: [&[f32]; 4], out: &mut [f32; 4]) {
        assert!(row.len().is_multiple_of(8) && queries.iter().all(|q| q.len() == row.len()));
        #[cfg(target_arch = "x86_64")]
        // SAFETY: only called when `available()` said AVX2 and FMA exist; lengths checked above.
        unsafe {
            dot4_avx2(row, queries, out)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("the few-targets kernel is only used on x86_64")
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot4_avx2(row: &[f32], queries: [&[f32]; 4], out: &mut [f32; 4]) {
        use std::arch::x86_64::*;
        // Two accumulators per query (even and odd blocks of 8) keep eight FMA chains busy.
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut k = 0;
        while k + 16 <= row.len() {
            let r0 = _mm256_loadu_ps(row.as_ptr().add(k));
            let r1 = _mm256_loadu_ps(row.as_ptr().add(k + 8));
            for q in 0..4 {
                let p = queries[q].as_ptr().add(k);
                acc[2 * q] = _mm256_fmadd_ps(r0, _mm256_loadu_ps(p), acc[2 * q]);
                acc[2 * q + 1] = _mm256_fmadd_ps(r1, _mm256_loadu_ps(p.add(8)), acc[2 * q + 1]);
            }
            k += 16;
        }
        if k < row.len() {
            let r0 = _mm256_loadu_ps(row.as_ptr().add(k));
            for q in 0..4 {
                acc[2 * q] = _mm256_fmadd_ps(r0, _mm256_loadu_ps(queries[q].as_ptr().add(k)), acc[2 * q]);
            }
        }
        for q in 0..4 {
            let sum = _mm256_add_ps(acc[2 * q], acc[2 * q + 1]);
            let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
            let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
            let one = _mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1));
            out[q] = _mm_cvtss_f32(one);
        }
    }
}

/// ||a - b||^2.
pub fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}
