//! The CNN encoder: pixels (`batch x 3 x R x R`, in -1..1) to the latent
//! (`batch x latent_channels x G x G`) that SAQ quantizes.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::blocks::{conv1x1, conv3x3, Level, ResBlock, Resample};
use super::config::SpaeConfig;
use crate::compute::conv::Conv2d;
use crate::compute::group_norm::{group_norm_silu, GroupNormSilu};

pub struct Encoder {
    conv_in: Conv2d,
    levels: Vec<Level>,
    norm_out: GroupNormSilu,
    conv_out: Conv2d,
}

impl Encoder {
    pub fn new(cfg: &SpaeConfig, vb: VarBuilder) -> Result<Self> {
        let conv_in = conv3x3(3, cfg.channels[0], 1, vb.pp("conv_in"))?;
        let mut levels = Vec::new();
        let mut in_c = cfg.channels[0];
        for (i, &c) in cfg.channels.iter().enumerate() {
            let vb = vb.pp(format!("levels.{i}"));
            let mut blocks = Vec::new();
            for b in 0..cfg.res_blocks {
                blocks.push(ResBlock::new(in_c, c, cfg.norm_groups, vb.pp(format!("blocks.{b}")))?);
                in_c = c;
            }
            let last = i + 1 == cfg.channels.len();
            let resample = if last { Resample::Keep } else { Resample::Down(conv3x3(c, c, 2, vb.pp("downsample"))?) };
            levels.push(Level { blocks, resample });
        }
        Ok(Self {
            conv_in,
            levels,
            norm_out: group_norm_silu(cfg.norm_groups, in_c, 1e-6, vb.pp("norm_out"))?,
            conv_out: conv1x1(in_c, cfg.latent_channels, vb.pp("conv_out"))?,
        })
    }
}

impl Module for Encoder {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for level in &self.levels {
            h = level.forward(&h)?;
        }
        self.conv_out.forward(&self.norm_out.forward(&h)?)
    }
}
