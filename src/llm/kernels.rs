//! The LLM's inner loops on plain `f32` buffers: dot products against GGUF-quantized rows
//! (Q4_1, Q8_0), the dense matrix product, RMS normalisation, rotary embedding, softmax and
//! SwiGLU.
//!
//! The crate is built for baseline x86-64, so the loops that matter are compiled twice: a
//! portable body, and the same body inside an AVX-512 function picked at run time (the
//! quantized dot products are written with intrinsics). Both give the same results up to
//! the order of float additions.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::compute::lanes::{exp, sum_16};

/// Weights per quantization block in both supported formats.
pub const BLOCK: usize = 32;

/// How a weight matrix's rows are stored, as in GGUF (`ggml_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    /// Per block of 32: scale `d` and minimum `m` (f16), 16 bytes of 4-bit `q`; `w = d q + m`.
    Q4_1,
    /// Per block of 32: scale `d` (f16), 32 signed bytes `q`; `w = d q`.
    Q8_0,
}

impl Quant {
    /// Bytes per block of 32 weights.
    pub fn block_bytes(self) -> usize {
        match self {
            Quant::Q4_1 => 20,
            Quant::Q8_0 => 34,
        }
    }
}

/// Rayon tasks per thread in a quantized matrix-vector product: few and long, since each
/// task streams its rows from memory and the prefetcher needs long runs.
const TASKS_PER_THREAD: usize = 2;

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Compiles a portable body a second time with AVX-512 enabled and dispatches at run time.
macro_rules! multiversion {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if avx512() {
                    // SAFETY: the features `wide` is compiled for were detected above.
                    return unsafe { wide($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// Tokens whose dot products share one pass over a quantized row.
const GROUP: usize = 4;

/// `out (t x rows) = x (t x cols) . W^T` for a quantized `rows x cols` matrix `W`: each
/// row is read once per group of up to four tokens and decoded once for all of them.
pub fn quantized_matmul(quant: Quant, w: &[u8], x: &[f32], t: usize, out: &mut [f32]) {
    assert!(t > 0, "no tokens");
    let cols = x.len() / t;
    assert_eq!(cols % BLOCK, 0, "quantized rows hold whole blocks");
    let row_bytes = cols / BLOCK * quant.block_bytes();
    let rows = w.len() / row_bytes;
    assert!(x.len() == t * cols && w.len() == rows * row_bytes && out.len() >= t * rows, "matrix sizes");
    // Q4_1's minimum multiplies the sum of x over each block.
    let block_sums: Vec<f32> = x.chunks_exact(BLOCK).map(|b| b.iter().sum()).collect();
    let task_rows = rows.div_ceil(TASKS_PER_THREAD * rayon::current_num_threads()).max(1);
    let mut dots = vec![0f32; rows * GROUP.min(t)];
    for first in (0..t).step_by(GROUP) {
        let n = GROUP.min(t - first);
        let xs = &x[first * cols..(first + n) * cols];
        let sums = &block_sums[first * cols / BLOCK..(first + n) * cols / BLOCK];
        dots[..rows * n].par_chunks_mut(task_rows * n).enumerate().for_each(|(task, dots)| {
            for (r, dots) in dots.chunks_exact_mut(n).enumerate() {
                let row = &w[(task * task_rows + r) * row_bytes..][..row_bytes];
                match n {
                    1 => row_dots::<1>(quant, row, xs, sums, dots),
                    2 => row_dots::<2>(quant, row, xs, sums, dots),
                    3 => row_dots::<3>(quant, row, xs, sums, dots),
                    _ => row_dots::<GROUP>(quant, row, xs, sums, dots),
                }
            }
        });
        for (r, dots) in dots[..rows * n].chunks_exact(n).enumerate() {
            for (i, &dot) in dots.iter().enumerate() {
                out[(first + i) * rows + r] = dot;
            }
        }
    }
}

/// One quantized row against `N` vectors (`xs`, `N x cols`; `sums`, their block sums).
#[inline(always)]
fn row_dots<const N: usize>(quant: Quant, row: &[u8], xs: &[f32], sums: &[f32], out: &mut [f32]) {
    let cols = xs.len() / N;
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512F and F16C were detected; the row holds cols / 32 blocks and xs,
        // sums and out hold N vectors, block sums and results.
        unsafe {
            match quant {
                Quant::Q4_1 => x86::dot_q4_1::<N>(row, xs, sums, out),
                Quant::Q8_0 => x86::dot_q8_0::<N>(row, xs, out),
            }
        }
        return;
    }
    for (i, o) in out.iter_mut().enumerate() {
        let x = &xs[i * cols..(i + 1) * cols];
        *o = match quant {
            Quant::Q4_1 => dot_q4_1_portable(row, x, &sums[i * cols / BLOCK..(i + 1) * cols / BLOCK]),
            Quant::Q8_0 => dot_q8_0_portable(row, x),
        };
    }
}

fn dot_q4_1_portable(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    let mut total = 0.0;
    for ((block, x), &x_sum) in row.chunks_exact(20).zip(x.chunks_exact(BLOCK)).zip(block_sums) {
        let (d, m) = (f16_bits_to_f32([block[0], block[1]]), f16_bits_to_f32([block[2], block[3]]));
        let mut dot = 0.0;
        for (j, &q) in block[4..].iter().enumerate() {
            dot += (q & 0xf) as f32 * x[j] + (q >> 4) as f32 * x[j + 16];
        }
        total += d * dot + m * x_sum;
    }
    total
}

fn dot_q8_0_portable(row: &[u8], x: &[f32]) -> f32 {
    let mut total = 0.0;
    for (block, x) in row.chunks_exact(34).zip(x.chunks_exact(BLOCK)) {
        let d = f16_bits_to_f32([block[0], block[1]]);
        let dot: f32 = block[2..].iter().zip(x).map(|(&q, &x)| q as i8 as f32 * x).sum();
        total += d * dot;
    }
    total
}

/// IEEE half precision (little-endian bytes) to f32.
fn f16_bits_to_f32(bytes: [u8; 2]) -> f32 {
    let h = u16::from_le_bytes(bytes) as u32;
    let sign = (h & 0x8000) << 16;
    let exponent = (h >> 10) & 0x1f;
    let mantissa = h & 0x3ff;
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        // Subnormal: the mantissa in units of 2^-24.
        (0, _) => (mantissa as f32 * (1.0 / 16_777_216.0)).to_bits() | sign,
        (0x1f, _) => sign | 0x7f80_0000 | (mantissa << 13),
        _ => sign | ((exponent + 112) << 23) | (mantissa << 13),
    };
    f32::from_bits(bits)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// One Q4_1 row against N vectors with AVX-512: each block's 16 bytes widen to 16
    /// lanes once, the low nibbles meeting x[0..16] of every vector and the high ones
    /// x[16..32]; `sums` holds each vector's block sums, for the minimum term.
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub unsafe fn dot_q4_1<const N: usize>(row: &[u8], xs: &[f32], sums: &[f32], out: &mut [f32]) {
        let cols = xs.len() / N;
        let blocks = cols / 32;
        debug_assert!(row.len() >= blocks * 20 && sums.len() >= N * blocks && out.len() >= N);
        let nibble = _mm512_set1_epi32(0xf);
        let block = |b: usize, acc: &mut [__m512; N], mins: &mut [f32; N]| {
            let p = row.as_ptr().add(b * 20);
            // d and m are adjacent halves: one 32-bit load converts both.
            let dm = _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned()));
            let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(4) as *const __m128i));
            let low = _mm512_cvtepi32_ps(_mm512_and_si512(q, nibble));
            let high = _mm512_cvtepi32_ps(_mm512_srli_epi32::<4>(q));
            let (d, m) = (_mm512_broadcastss_ps(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
            for n in 0..N {
                let xp = xs.as_ptr().add(n * cols + b * 32);
                let dot = _mm512_fmadd_ps(high, _mm512_loadu_ps(xp.add(16)), _mm512_mul_ps(low, _mm512_loadu_ps(xp)));
                acc[n] = _mm512_fmadd_ps(d, dot, acc[n]);
                mins[n] += m * *sums.get_unchecked(n * blocks + b);
            }
        };
        // Two independent chains (even and odd blocks) hide the FMA latency.
        let (mut even, mut odd) = ([_mm512_setzero_ps(); N], [_mm512_setzero_ps(); N]);
        let (mut even_mins, mut odd_mins) = ([0f32; N], [0f32; N]);
        for b in (0..blocks).step_by(2) {
            block(b, &mut even, &mut even_mins);
            if b + 1 < blocks {
                block(b + 1, &mut odd, &mut odd_mins);
            }
        }
        for n in 0..N {
            out[n] = _mm512_reduce_add_ps(_mm512_add_ps(even[n], odd[n])) + even_mins[n] + odd_mins[n];
        }
    }

    /// One Q8_0 row against N vectors with AVX-512: each block is two runs of 16 signed bytes.
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub unsafe fn dot_q8_0<const N: usize>(row: &[u8], xs: &[f32], out: &mut [f32]) {
        let cols = xs.len() / N;
        let blocks = cols / 32;
        debug_assert!(row.len() >= blocks * 34 && out.len() >= N);
        let block = |b: usize, acc: &mut [__m512; N]| {
            let p = row.as_ptr().add(b * 34);
            let d = _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const u16).read_unaligned() as i32));
            let d = _mm512_broadcastss_ps(d);
            let q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(2) as *const __m128i)));
            let q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(18) as *const __m128i)));
            for (n, acc) in acc.iter_mut().enumerate() {
                let xp = xs.as_ptr().add(n * cols + b * 32);
                let dot = _mm512_fmadd_ps(q1, _mm512_loadu_ps(xp.add(16)), _mm512_mul_ps(q0, _mm512_loadu_ps(xp)));
                *acc = _mm512_fmadd_ps(d, dot, *acc);
            }
        };
        let (mut even, mut odd) = ([_mm512_setzero_ps(); N], [_mm512_setzero_ps(); N]);
        for b in (0..blocks).step_by(2) {
            block(b, &mut even);
            if b + 1 < blocks {
                block(b + 1, &mut odd);
            }
        }
        for n in 0..N {
            out[n] = _mm512_reduce_add_ps(_mm512_add_ps(even[n], odd[n]));
        }
    }
}

/// Dequantizes whole rows to f32, exactly as the dot products read them.
pub fn dequantize(quant: Quant, rows: &[u8], out: &mut [f32]) {
    let bytes = quant.block_bytes();
    assert_eq!(rows.len() / bytes * BLOCK, out.len(), "matrix size");
    out.par_chunks_mut(BLOCK * 1024).zip(rows.par_chunks(bytes * 1024)).for_each(|(out, rows)| {
        for (w, block) in out.chunks_exact_mut(BLOCK).zip(rows.chunks_exact(bytes)) {
            let d = f16_bits_to_f32([block[0], block[1]]);
            match quant {
                Quant::Q4_1 => {
                    let m = f16_bits_to_f32([block[2], block[3]]);
                    for (j, &q) in block[4..].iter().enumerate() {
                        w[j] = (q & 0xf) as f32 * d + m;
                        w[j + 16] = (q >> 4) as f32 * d + m;
                    }
                }
                Quant::Q8_0 => {
                    for (w, &q) in w.iter_mut().zip(&block[2..]) {
                        *w = q as i8 as f32 * d;
                    }
                }
            }
        }
    });
}

/// A strided view of a matrix for [`strided_matmul`]: element (i, j) at `ptr + i rs + j cs`.
#[derive(Clone, Copy)]
pub struct Strided {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

/// `dst (m x n, row stride dst_rs) = scale * a (m x k) . b (k x n)`, single-threaded (the
/// callers run one per attention head in parallel).
///
/// # Safety
/// Every element addressed through the views and `dst` must lie in live allocations, and
/// `dst` must not overlap the inputs or be written by another thread meanwhile.
pub unsafe fn strided_matmul(
    (m, n, k): (usize, usize, usize),
    a: Strided,
    b: Strided,
    scale: f32,
    dst: *mut f32,
    dst_rs: isize,
) {
    gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs,
        false,
        a.ptr,
        a.cs,
        a.rs,
        b.ptr,
        b.cs,
        b.rs,
        0.0,
        scale,
        false,
        false,
        false,
        Parallelism::None,
    );
}

multiversion! {
    /// Row-wise RMS normalisation: `out = x / sqrt(mean(x^2) + eps) * weight`.
    pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) => rms_norm_body
}

#[inline(always)]
fn rms_norm_body(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    for (x, out) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let scale = 1.0 / (sum_16(x, |v| v * v) / dim as f32 + eps).sqrt();
        for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
            *o = v * scale * w;
        }
    }
}

multiversion! {
    /// Softmax over `row` in place.
    pub fn softmax(row: &mut [f32]) => softmax_body
}

#[inline(always)]
fn softmax_body(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for v in row.iter_mut() {
        *v = exp(*v - max);
    }
    let scale = 1.0 / sum_16(row, |v| v);
    for v in row.iter_mut() {
        *v *= scale;
    }
}

multiversion! {
    /// SwiGLU over rows of `[gate | up]` (each `out`-row wide): `out = silu(gate) * up`.
    pub fn swiglu(gate_up: &[f32], out: &mut [f32], hidden: usize) => swiglu_body
}

#[inline(always)]
fn swiglu_body(gate_up: &[f32], out: &mut [f32], hidden: usize) {
    for (gu, out) in gate_up.chunks_exact(2 * hidden).zip(out.chunks_exact_mut(hidden)) {
        let (gate, up) = gu.split_at(hidden);
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g / (1.0 + exp(-g)) * u;
        }
    }
}

multiversion! {
    /// One query's attention: `scores[p] = scale q . k_p`, softmax, `out = sum_p scores[p]
    /// v_p`, where row `p` of `keys` and `values` starts at `p * stride` and is `q.len()` wide
    /// (a multiple of 64).
    pub fn attend(q: &[f32], keys: &[f32], values: &[f32], stride: usize, scale: f32, scores: &mut [f32], out: &mut [f32]) => attend_body
}

#[inline(always)]
fn attend_body(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let width = q.len();
    for (p, score) in scores.iter_mut().enumerate() {
        let key = &keys[p * stride..p * stride + width];
        let mut partial = [0f32; 16];
        for (q, k) in q.chunks_exact(16).zip(key.chunks_exact(16)) {
            for j in 0..16 {
                partial[j] += q[j] * k[j];
            }
        }
        *score = scale * partial.iter().sum::<f32>();
    }
    softmax_body(scores);
    // Sixty-four output columns at a time: their sums fit in registers, and each value row
    // is read in one go.
    for (c, out) in out.chunks_exact_mut(64).enumerate() {
        let mut sum = [0f32; 64];
        for (p, &weight) in scores.iter().enumerate() {
            let value = &values[p * stride + c * 64..p * stride + c * 64 + 64];
            for j in 0..64 {
                sum[j] += weight * value[j];
            }
        }
        out.copy_from_slice(&sum);
    }
}

/// Rotary position embedding on one head, GGUF layout: adjacent pairs `(x[2i], x[2i+1])`
/// rotate by `position * base^(-2i / dims)`; `cos_sin` holds those angles' cosines and sines.
#[inline]
pub fn rope(head: &mut [f32], cos_sin: &[(f32, f32)]) {
    for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(cos_sin) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * cos - b * sin;
        pair[1] = a * sin + b * cos;
    }
}

/// The rotation angles' cosines and sines for one position.
pub fn rope_angles(position: usize, head_dim: usize, base: f32) -> Vec<(f32, f32)> {
    (0..head_dim / 2)
        .map(|i| {
            let angle = position as f32 * base.powf(-2.0 * i as f32 / head_dim as f32);
            (angle.cos(), angle.sin())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_decodes() {
        for (bits, want) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x3555, 0.333_251_95),
            (0x0001, 5.960_464_5e-8),
            (0x7bff, 65504.0),
            (0x0000, 0.0),
        ] {
            assert_eq!(f16_bits_to_f32(bits.to_le_bytes()), want, "{bits:#x}");
        }
    }

    #[test]
    fn quantized_products_match_dequantized_rows() {
        let (rows, cols) = (40, 96);
        for quant in [Quant::Q4_1, Quant::Q8_0] {
            let mut bytes: Vec<u8> =
                (0..rows * cols / BLOCK * quant.block_bytes()).map(|i| (i * 131 % 251) as u8).collect();
            // Sane scales: d = 0.01 (0x211f), m = -0.05 (0xaa66).
            for block in bytes.chunks_exact_mut(quant.block_bytes()) {
                block[..2].copy_from_slice(&0x211fu16.to_le_bytes());
                if quant == Quant::Q4_1 {
                    block[2..4].copy_from_slice(&0xaa66u16.to_le_bytes());
                }
            }
            let mut dense = vec![0f32; rows * cols];
            dequantize(quant, &bytes, &mut dense);
            // One token, a partial group, and more than a group.
            for t in [1, 3, 11] {
                let x: Vec<f32> = (0..t * cols).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.1).collect();
                let mut got = vec![0f32; t * rows];
                quantized_matmul(quant, &bytes, &x, t, &mut got);
                let mut want = vec![0f32; t * rows];
                crate::compute::matmul::matmul_transposed(&x, &dense, t, cols, rows, &mut want, rows);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() < 1e-4 * (1.0 + w.abs()), "{quant:?} t={t} output {i}: {g} vs {w}");
                }
            }
        }
    }
}
