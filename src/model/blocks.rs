//! Building blocks shared by the encoder and the decoder.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::compute::conv::{conv2d, Conv2d};
use crate::compute::group_norm::{group_norm_silu, GroupNormSilu};

/// A 3 x 3 convolution with padding 1 (optionally stride 2).
pub fn conv3x3(in_c: usize, out_c: usize, stride: usize, vb: VarBuilder) -> Result<Conv2d> {
    conv2d(in_c, out_c, 3, stride, vb)
}

/// A 1 x 1 convolution.
pub fn conv1x1(in_c: usize, out_c: usize, vb: VarBuilder) -> Result<Conv2d> {
    conv2d(in_c, out_c, 1, 1, vb)
}

/// GroupNorm, SiLU, conv, GroupNorm, SiLU, conv, plus a (projected) skip connection.
pub struct ResBlock {
    norm1: GroupNormSilu,
    conv1: Conv2d,
    norm2: GroupNormSilu,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    pub fn new(in_c: usize, out_c: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm1: group_norm_silu(groups, in_c, 1e-6, vb.pp("norm1"))?,
            conv1: conv3x3(in_c, out_c, 1, vb.pp("conv1"))?,
            norm2: group_norm_silu(groups, out_c, 1e-6, vb.pp("norm2"))?,
            conv2: conv3x3(out_c, out_c, 1, vb.pp("conv2"))?,
            skip: if in_c == out_c { None } else { Some(conv1x1(in_c, out_c, vb.pp("skip"))?) },
        })
    }
}

impl Module for ResBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x)?)?;
        let h = self.conv2.forward(&self.norm2.forward(&h)?)?;
        let skip = match &self.skip {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        h + skip
    }
}

/// How a level changes resolution after its residual blocks.
pub enum Resample {
    /// Stride-2 convolution (encoder).
    Down(Conv2d),
    /// Nearest-neighbour doubling, then a convolution (decoder).
    Up(Conv2d),
    /// The last level keeps its resolution.
    Keep,
}

/// One resolution level: residual blocks, then a change of resolution.
pub struct Level {
    pub blocks: Vec<ResBlock>,
    pub resample: Resample,
}

impl Module for Level {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for block in &self.blocks {
            h = block.forward(&h)?;
        }
        match &self.resample {
            Resample::Down(conv) => conv.forward(&h),
            Resample::Up(conv) => conv.forward(&crate::compute::upsample::upsample(&h, 2)?),
            Resample::Keep => Ok(h),
        }
    }
}
