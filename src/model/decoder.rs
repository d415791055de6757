//! The CNN decoder: a dequantized latent zhat (`batch x latent_channels x G x G`) to
//! pixels (`batch x 3 x R x R`, in -1..1 before clamping). It mirrors the encoder, with
//! nearest-neighbour upsampling followed by a convolution (to the next, narrower width)
//! in place of downsampling.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::blocks::{conv1x1, conv3x3, Level, ResBlock, Resample};
use super::config::SpaeConfig;
use crate::compute::conv::Conv2d;
use crate::compute::group_norm::{group_norm_silu, GroupNormSilu};

pub struct Decoder {
    conv_in: Conv2d,
    levels: Vec<Level>,
    norm_out: GroupNormSilu,
    conv_out: Conv2d,
}

impl Decoder {
    pub fn new(cfg: &SpaeConfig, vb: VarBuilder) -> Result<Self> {
        let widths: Vec<usize> = cfg.channels.iter().rev().copied().collect();
        let conv_in = conv1x1(cfg.latent_channels, widths[0], vb.pp("conv_in"))?;
        let mut levels = Vec::new();
        let mut in_c = widths[0];
        for (i, &c) in widths.iter().enumerate() {
            let vb = vb.pp(format!("levels.{i}"));
            let mut blocks = Vec::new();
            for b in 0..cfg.decoder_blocks() {
                blocks.push(ResBlock::new(in_c, c, cfg.norm_groups, vb.pp(format!("blocks.{b}")))?);
                in_c = c;
            }
            // Upsampling narrows to the next level's width, so the convolution at the higher
            // resolution stays cheap.
            let resample = match widths.get(i + 1) {
                Some(&next) => {
                    in_c = next;
                    Resample::Up(conv3x3(c, next, 1, vb.pp("upsample"))?)
                }
                None => Resample::Keep,
            };
            levels.push(Level { blocks, resample });
        }
        Ok(Self {
            conv_in,
            levels,
            norm_out: group_norm_silu(cfg.norm_groups, in_c, 1e-6, vb.pp("norm_out"))?,
            conv_out: conv3x3(in_c, 3, 1, vb.pp("conv_out"))?,
        })
    }
}

impl Module for Decoder {
    fn forward(&self, zhat: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(zhat)?;
        for level in &self.levels {
            h = level.forward(&h)?;
        }
        self.conv_out.forward(&self.norm_out.forward(&h)?)
    }
}
