//! The CPU arithmetic under every network here: one dense matrix product ([`matmul`]) for
//! the nearest-word search and the LLM, 2-D convolution as matrix products ([`conv`]) for
//! the SPAE networks and the frozen EfficientNet (their patch matrices built and taken
//! apart by [`im2col`]), GroupNorm + SiLU fused with its own backward pass
//! ([`group_norm`]), the decoder's upsampling with its own backward pass ([`upsample`]),
//! the log-partition of a softmax over distances to every word with its backward pass
//! ([`log_partition`], the semantic loss), loops written to vectorise ([`lanes`]), and the allocator tuning ([`allocator`]) that keeps candle's per-op
//! buffers from costing page faults.

pub mod allocator;
pub mod conv;
pub mod group_norm;
pub mod im2col;
pub mod lanes;
pub mod log_partition;
pub mod matmul;
pub mod upsample;

use candle_core::{CpuStorage, Layout, Result};

/// A contiguous f32 storage's values, for the CPU kernels of the custom ops here.
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<f32>()?[start..end]),
        None => candle_core::bail!("a custom CPU op was given a non-contiguous input"),
    }
}
