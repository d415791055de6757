//! 2-D convolution as shifted views and one matrix product per image ("im2col" built
//! from tensor ops). The forward pass is as fast as candle's own convolution, and its
//! backward pass is made of matrix products and copies, several times faster on the CPU
//! than candle's transposed-convolution gradient. Weights keep candle's layout
//! (`out x in x k x k`, plus a bias), so files and names are unchanged.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    kernel: usize,
    stride: usize,
}

/// A `kernel x kernel` convolution with "same" padding (kernel / 2) and the given stride.
pub fn conv2d(in_c: usize, out_c: usize, kernel: usize, stride: usize, vb: VarBuilder) -> Result<Conv2d> {
    let fan_in = (in_c * kernel * kernel) as f64;
    let bound = 1.0 / fan_in.sqrt();
    let weight = vb.get_with_hints((out_c, in_c, kernel, kernel), "weight", Init::Uniform { lo: -bound, up: bound })?;
    let bias = vb.get_with_hints(out_c, "bias", Init::Const(0.0))?;
    Ok(Conv2d { weight, bias, kernel, stride })
}

impl Conv2d {
    /// `batch x (in * k * k) x positions`: for each output position, the input values
    /// its kernel sees, in the weight's (in, ky, kx) order.
    fn patches(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (k, s) = (self.kernel, self.stride);
        let (oh, ow) = (h / s, w / s);
        if k == 1 && s == 1 {
            return x.reshape((b, c, h * w));
        }
        let p = k / 2;
        let padded = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
        let mut views = Vec::with_capacity(k * k);
        for dy in 0..k {
            for dx in 0..k {
                let view = padded.narrow(2, dy, oh * s)?.narrow(3, dx, ow * s)?;
                let view = if s == 1 {
                    view
                } else {
                    view.reshape((b, c, oh, s, ow, s))?.narrow(3, 0, 1)?.narrow(5, 0, 1)?.reshape((b, c, oh, ow))?
                };
                views.push(view);
            }
        }
        Tensor::stack(&views, 2)?.reshape((b, c * k * k, oh * ow))
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let (o, c, k, _) = self.weight.dims4()?;
        let (oh, ow) = (h / self.stride, w / self.stride);
        let out = self.weight.reshape((o, c * k * k))?.broadcast_matmul(&self.patches(x)?)?;
        out.reshape((b, o, oh, ow))?.broadcast_add(&self.bias.reshape((1, o, 1, 1))?)
    }
}
