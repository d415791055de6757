//! Nearest-neighbour upsampling by 2 with a hand-written backward pass.
//!
//! candle's backward pass of `upsample_nearest2d` is a grouped convolution with a kernel of
//! ones, one group per channel, which its CPU backend runs as one small convolution per
//! channel. Here the forward pass copies each value to its 2 x 2 block and the backward
//! pass adds each block's four gradients, one loop each. `tests/conv.rs` checks both
//! against candle's.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;

/// `x` (batch x channels x h x w) upsampled to 2h x 2w, each value repeated over a 2 x 2 block.
pub fn upsample2x(x: &Tensor) -> Result<Tensor> {
    let (_, _, height, width) = x.dims4()?;
    x.contiguous()?.apply_op1(Upsample { height, width })
}

/// The input's plane size (the output's is twice each way).
#[derive(Clone, Copy)]
struct Upsample {
    height: usize,
    width: usize,
}

/// The backward pass: each 2 x 2 block's gradients summed onto its source value.
struct BlockSum(Upsample);

impl CustomOp1 for Upsample {
    fn name(&self) -> &'static str {
        "upsample-2x"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (h, w) = (self.height, self.width);
        let x = contiguous_f32(storage, layout)?;
        let mut out = vec![0f32; x.len() * 4];
        out.par_chunks_mut(4 * w).zip(x.par_chunks(w)).for_each(|(rows, line)| {
            let (top, bottom) = rows.split_at_mut(2 * w);
            for (pair, &value) in top.chunks_exact_mut(2).zip(line) {
                pair.fill(value);
            }
            bottom.copy_from_slice(top);
        });
        let dims = layout.dims();
        Ok((CpuStorage::F32(out), Shape::from((dims[0], dims[1], 2 * h, 2 * w))))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&BlockSum(*self))?))
    }
}

impl CustomOp1 for BlockSum {
    fn name(&self) -> &'static str {
        "upsample-2x-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let Upsample { height: h, width: w } = self.0;
        let grad = contiguous_f32(storage, layout)?;
        let mut dx = vec![0f32; grad.len() / 4];
        dx.par_chunks_mut(w).zip(grad.par_chunks(4 * w)).for_each(|(line, rows)| {
            let (top, bottom) = rows.split_at(2 * w);
            for (x, (t, b)) in line.iter_mut().zip(top.chunks_exact(2).zip(bottom.chunks_exact(2))) {
                *x = t[0] + t[1] + b[0] + b[1];
            }
        });
        let dims = layout.dims();
        Ok((CpuStorage::F32(dx), Shape::from((dims[0], dims[1], h, w))))
    }
}
