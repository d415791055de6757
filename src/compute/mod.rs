//! The CPU arithmetic under every network here: one dense matrix product ([`matmul`]) for
//! the nearest-word search and the LLM, 2-D convolution as matrix products ([`conv`]) for
//! the SPAE networks and the frozen EfficientNet (their patch matrices built and taken
//! apart by [`im2col`]), GroupNorm + SiLU fused with its own backward pass
//! ([`group_norm`]), upsampling and block means, each the other's backward pass
//! ([`upsample`]), the log-partition of a softmax over distances to every word with its
//! backward pass ([`log_partition`], the semantic loss), the gradient of a soft choice
//! among a few words ([`soft_choice`], the relaxed word choice of training), loops written to vectorise
//! ([`lanes`]), the allocator tuning ([`allocator`]) that keeps candle's per-op buffers
//! from costing page faults, and the thread tuning ([`threads`]) that keeps candle's idle
//! threads from spinning beside rayon's.

pub mod allocator;
pub mod conv;
pub mod group_norm;
pub mod im2col;
pub mod lanes;
pub mod log_partition;
pub mod matmul;
pub mod soft_choice;
pub mod threads;
pub mod upsample;

use candle_core::{CpuStorage, Layout, Result};

/// A contiguous f32 storage's values, for the CPU kernels of the custom ops here.
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<f32>()?[start..end]),
        None => candle_core::bail!("a custom CPU op was given a non-contiguous input"),
    }
}

/// `len` zeros, written by every thread of rayon's pool (a `vec![0.0; len]` of a buffer
/// the allocator reuses is one thread's memset while the others wait), with room for
/// `spare` more values after them.
fn zeros(len: usize, spare: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = Vec::with_capacity(len + spare);
    out.par_extend(rayon::iter::repeat_n(0f32, len));
    out
}

thread_local! {
    /// Each thread's buffers for [`with_scratch`], kept from call to call.
    static SCRATCH: std::cell::Cell<Vec<Vec<f32>>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` with `N` buffers of this thread's, of the lengths given, whose contents are
/// whatever an earlier call left (so `f` must write before it reads). The buffers stay
/// with the thread for its next call: per-image work in a parallel loop reuses them from
/// image to image and from step to step instead of allocating (and the kernel clearing)
/// fresh pages each time. A call nested inside `f` on the same thread gets buffers of
/// its own.
fn with_scratch<const N: usize, R>(lengths: [usize; N], f: impl FnOnce([&mut [f32]; N]) -> R) -> R {
    let mut buffers = SCRATCH.take();
    if buffers.len() < N {
        buffers.resize_with(N, Vec::new);
    }
    for (buffer, &length) in buffers.iter_mut().zip(&lengths) {
        if buffer.len() < length {
            buffer.resize(length, 0.0);
        }
    }
    let mut iter = buffers.iter_mut();
    let slices = lengths.map(|length| &mut iter.next().expect("N buffers")[..length]);
    let result = f(slices);
    SCRATCH.set(buffers);
    result
}

/// What an op keeps from its forward pass for its backward pass (or for its caller),
/// outside candle's graph.
struct Slot<T>(std::sync::Mutex<Option<T>>);

impl<T> Slot<T> {
    fn new(value: Option<T>) -> Self {
        Self(std::sync::Mutex::new(value))
    }

    fn put(&self, value: T) -> Result<()> {
        *self.lock()? = Some(value);
        Ok(())
    }

    fn take(&self) -> Result<Option<T>> {
        Ok(self.lock()?.take())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Option<T>>> {
        self.0.lock().map_err(|_| candle_core::Error::Msg("a poisoned lock".into()))
    }
}
