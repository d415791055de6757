//! 2-D convolution as shifted views and one matrix product per image ("im2col" built
//! from tensor ops). The forward pass is as fast as candle's own convolution, and its
//! backward pass is made of matrix products and copies, several times faster on the CPU
//! than candle's transposed-convolution gradient. Weights keep candle's layout
//! (`out x in x k x k`, plus a bias), so files and names are unchanged.

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// Floating-point operations of every [`Conv2d`] forward pass so far (2 per multiply-add),
/// for `spae bench-train`'s count of a step's arithmetic.
static FORWARD_FLOPS: AtomicU64 = AtomicU64::new(0);

/// The convolutions' forward floating-point operations since the last call.
pub fn take_forward_flops() -> u64 {
    FORWARD_FLOPS.swap(0, Ordering::Relaxed)
}

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

/// Zero padding before (top/left) and after (bottom/right) a convolution's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Padding {
    pub before: usize,
    pub after: usize,
}

impl Padding {
    /// Symmetric k / 2 padding: output size = input size / stride.
    pub fn same(kernel: usize) -> Self {
        Self { before: kernel / 2, after: kernel / 2 }
    }

    /// TensorFlow's "SAME": output size = ceil(n / stride), the odd pixel padded after.
    pub fn tensorflow_same(n: usize, kernel: usize, stride: usize) -> Self {
        let total = ((n.div_ceil(stride) - 1) * stride + kernel).saturating_sub(n);
        Self { before: total / 2, after: total - total / 2 }
    }

    pub fn output_size(self, n: usize, kernel: usize, stride: usize) -> usize {
        (n + self.before + self.after - kernel) / stride + 1
    }
}

/// The `k x k` shifted (and strided) views of the padded input that a kernel's taps
/// see, in (ky, kx) order, each `batch x channels x out_h x out_w`.
pub fn shifted_views(x: &Tensor, kernel: usize, stride: usize, padding: Padding) -> Result<Vec<Tensor>> {
    let (b, c, h, w) = x.dims4()?;
    let (k, s) = (kernel, stride);
    let (oh, ow) = (padding.output_size(h, k, s), padding.output_size(w, k, s));
    // `s - 1` more zeros after, so each view can be cut to a multiple of the stride.
    let extra = padding.after + s - 1;
    let padded = x.pad_with_zeros(2, padding.before, extra)?.pad_with_zeros(3, padding.before, extra)?;
    let mut views = Vec::with_capacity(k * k);
    for dy in 0..k {
        for dx in 0..k {
            let view = padded.narrow(2, dy, oh * s)?.narrow(3, dx, ow * s)?;
            views.push(if s == 1 {
                view
            } else {
                view.reshape((b, c, oh, s, ow, s))?.narrow(3, 0, 1)?.narrow(5, 0, 1)?.reshape((b, c, oh, ow))?
            });
        }
    }
    Ok(views)
}

/// `batch x (channels * k * k) x positions`: for each output position, the input values
/// a `k x k` kernel sees, in the (channel, ky, kx) order of a conv weight; also returns
/// the output height and width.
pub fn patches(x: &Tensor, kernel: usize, stride: usize, padding: Padding) -> Result<(Tensor, usize, usize)> {
    let (b, c, h, w) = x.dims4()?;
    let (oh, ow) = (padding.output_size(h, kernel, stride), padding.output_size(w, kernel, stride));
    if kernel == 1 && stride == 1 && padding == Padding::same(1) {
        return Ok((x.reshape((b, c, h * w))?, h, w));
    }
    let views = shifted_views(x, kernel, stride, padding)?;
    Ok((Tensor::stack(&views, 2)?.reshape((b, c * kernel * kernel, oh * ow))?, oh, ow))
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        let (o, c, k, _) = self.weight.dims4()?;
        let (columns, oh, ow) = patches(x, self.kernel, self.stride, Padding::same(self.kernel))?;
        FORWARD_FLOPS.fetch_add((2 * b * o * c * k * k * oh * ow) as u64, Ordering::Relaxed);
        let out = self.weight.reshape((o, c * k * k))?.broadcast_matmul(&columns)?;
        out.reshape((b, o, oh, ow))?.broadcast_add(&self.bias.reshape((1, o, 1, 1))?)
    }
}
