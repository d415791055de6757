//! Nearest-neighbour upsampling by a whole factor, and its adjoint, the mean over f x f
//! blocks, each with a hand-written backward pass (the other): the decoder's doubling, the
//! semantic branch spreading each cell's value over its latent positions, and the cell
//! means of SAQ's targets in the semantic loss.
//!
//! candle's backward pass of `upsample_nearest2d` is a grouped convolution with a kernel of
//! ones, one group per channel, which its CPU backend runs as one small convolution per
//! channel; a broadcast's backward pass and `avg_pool2d` run on one thread. Here the
//! spreading copies each value to its f x f block and the gathering adds each block's
//! values, one parallel loop each. `tests/conv.rs` checks both against candle's.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, zeros};

/// `x` (batch x channels x h x w) upsampled to fh x fw, each value repeated over an f x f
/// block.
pub fn upsample(x: &Tensor, factor: usize) -> Result<Tensor> {
    let (_, _, height, width) = x.dims4()?;
    if factor == 0 {
        candle_core::bail!("upsampling by 0");
    }
    x.contiguous()?.apply_op1(Spread(Blocks { height, width, factor, scale: 1.0 }))
}

/// The mean of each f x f block of `x` (batch x channels x fh x fw, to h x w).
pub fn block_mean(x: &Tensor, factor: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if factor == 0 || !h.is_multiple_of(factor) || !w.is_multiple_of(factor) {
        candle_core::bail!("block means of {factor} x {factor} over a {h} x {w} plane");
    }
    let blocks = Blocks { height: h / factor, width: w / factor, factor, scale: 1.0 / (factor * factor) as f32 };
    x.contiguous()?.apply_op1(Gather(blocks))
}

/// The small plane's size, the factor, and a scale applied to every value moved.
#[derive(Clone, Copy)]
struct Blocks {
    height: usize,
    width: usize,
    factor: usize,
    scale: f32,
}

/// Small plane to large: each value, scaled, over its block.
struct Spread(Blocks);

/// Large plane to small: each block's values summed, scaled.
struct Gather(Blocks);

impl CustomOp1 for Spread {
    fn name(&self) -> &'static str {
        "spread-blocks"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let Blocks { height: h, width: w, factor: f, scale } = self.0;
        let x = contiguous_f32(storage, layout)?;
        let mut out = zeros(x.len() * f * f, 0);
        out.par_chunks_mut(f * f * w).zip(x.par_chunks(w)).for_each(|(rows, line)| {
            let (first, rest) = rows.split_at_mut(f * w);
            for (block, &value) in first.chunks_exact_mut(f).zip(line) {
                block.fill(value * scale);
            }
            for row in rest.chunks_exact_mut(f * w) {
                row.copy_from_slice(first);
            }
        });
        let dims = layout.dims();
        Ok((CpuStorage::F32(out), Shape::from((dims[0], dims[1], f * h, f * w))))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Gather(self.0))?))
    }
}

impl CustomOp1 for Gather {
    fn name(&self) -> &'static str {
        "gather-blocks"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let Blocks { height: h, width: w, factor: f, scale } = self.0;
        let x = contiguous_f32(storage, layout)?;
        let mut out = zeros(x.len() / (f * f), 0);
        out.par_chunks_mut(w).zip(x.par_chunks(f * f * w)).for_each(|(line, rows)| {
            for row in rows.chunks_exact(f * w) {
                for (o, block) in line.iter_mut().zip(row.chunks_exact(f)) {
                    *o += block.iter().sum::<f32>();
                }
            }
            line.iter_mut().for_each(|o| *o *= scale);
        });
        let dims = layout.dims();
        Ok((CpuStorage::F32(out), Shape::from((dims[0], dims[1], h, w))))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Spread(self.0))?))
    }
}
