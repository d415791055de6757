//! The one dense matrix product both the nearest-word search and the LLM use: `gemm`'s
//! blocked kernels (AVX-512 where the CPU has it) on plain row-major slices.

use gemm::{gemm, Parallelism};

/// `out (m x n) = x (m x k) . w^T` for a row-major `n x k` matrix `w`; row i of `out`
/// starts at `i * out_row_stride` (at least n), so a product can fill part of a wider
/// buffer.
pub fn matmul_transposed(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, out: &mut [f32], out_row_stride: usize) {
    assert!(
        out_row_stride >= n
            && x.len() >= m * k
            && w.len() >= n * k
            && out.len() >= m.saturating_sub(1) * out_row_stride + n,
        "matrix sizes"
    );
    // SAFETY: the asserts above make every index the strides reach lie inside the slices;
    // dst is written without being read (read_dst = false).
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_row_stride as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::Rayon(rayon::current_num_threads()),
        );
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
