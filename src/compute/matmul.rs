//! The one dense matrix product both the nearest-word search and the LLM use: `gemm`'s
//! blocked kernels (AVX-512 where the CPU has it) on plain row-major slices.

use gemm::{gemm, Parallelism};

/// A matrix inside a slice: element (i, j) at `i * row + j * col`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub row: usize,
    pub col: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix of `columns` columns.
    pub fn rows(data: &'a [f32], columns: usize) -> Self {
        Self { data, row: columns, col: 1 }
    }

    /// The transpose of a row-major matrix of `columns` columns.
    pub fn transposed(data: &'a [f32], columns: usize) -> Self {
        Self { data, row: 1, col: columns }
    }

    /// Whether every element of an `m x n` matrix lies inside the slice (no overflow).
    fn holds(&self, m: usize, n: usize) -> bool {
        let last = (m.saturating_sub(1))
            .checked_mul(self.row)
            .zip((n.saturating_sub(1)).checked_mul(self.col))
            .and_then(|(a, b)| a.checked_add(b));
        m == 0 || n == 0 || last.is_some_and(|last| last < self.data.len())
    }
}

/// `out (m x n) = lhs (m x k) . rhs (k x n)`, or `out += ...` with `accumulate`; row i of
/// `out` starts at `i * out_row_stride` (at least n), so a product can fill part of a
/// wider buffer. It runs on every thread of rayon's pool, or on this one alone where
/// `threaded` is false (for many small products, each run on its own thread).
#[allow(clippy::too_many_arguments)]
pub fn product(
    m: usize,
    k: usize,
    n: usize,
    lhs: View,
    rhs: View,
    out: &mut [f32],
    out_row_stride: usize,
    accumulate: bool,
    threaded: bool,
) {
    assert!(
        out_row_stride >= n
            && lhs.holds(m, k)
            && rhs.holds(k, n)
            && (m == 0
                || (m - 1)
                    .checked_mul(out_row_stride)
                    .and_then(|a| a.checked_add(n))
                    .is_some_and(|end| out.len() >= end)),
        "matrix sizes"
    );
    // SAFETY: the asserts above make every index the strides reach lie inside the slices;
    // dst is read only when accumulating, and then it holds initialised values.
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col as isize,
            lhs.row as isize,
            rhs.data.as_ptr(),
            rhs.col as isize,
            rhs.row as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            if threaded { Parallelism::Rayon(rayon::current_num_threads()) } else { Parallelism::None },
        );
    }
}

/// `out (m x n) = x (m x k) . w^T` for a row-major `n x k` matrix `w`; row i of `out`
/// starts at `i * out_row_stride` (at least n).
pub fn matmul_transposed(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, out: &mut [f32], out_row_stride: usize) {
    product(m, k, n, View::rows(x, k), View::transposed(w, k), out, out_row_stride, false, true);
}

/// `out (columns x rows) = x^T` for a row-major `rows x columns` matrix `x`, in tiles of
/// 16 x 16 so both sides stay in cache.
pub fn transpose(x: &[f32], rows: usize, columns: usize, out: &mut [f32]) {
    assert!(x.len() == rows * columns && out.len() == rows * columns, "matrix sizes");
    const TILE: usize = 16;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..columns).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(columns) {
                    out[c * rows + r] = x[r * columns + c];
                }
            }
        }
    }
}

/// The speed of a plain `m x k` by `k x n` product on this machine now, in GFLOP/s: the
/// best of `repeats` timed runs after one untimed. Benchmarks print it beside their own
/// figures, so that runs on machines of different speed, or one machine under different
/// load, can be compared.
pub fn measure_gflops(m: usize, k: usize, n: usize, repeats: usize) -> f64 {
    let x: Vec<f32> = (0..m * k).map(|i| ((i % 13) as f32 - 6.0) / 7.0).collect();
    let w: Vec<f32> = (0..n * k).map(|i| ((i % 11) as f32 - 5.0) / 5.0).collect();
    let mut out = vec![0f32; m * n];
    matmul_transposed(&x, &w, m, k, n, &mut out, n);
    let best = (0..repeats.max(1))
        .map(|_| {
            let start = std::time::Instant::now();
            matmul_transposed(&x, &w, m, k, n, &mut out, n);
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (m * k * n) as f64 / best / 1e9
}
