//! 2-D convolution as patch matrices ([`super::im2col`]) and matrix products, an image
//! and a band of output lines at a time. The forward pass is as fast as candle's own
//! convolution, and its backward pass (matrix products, and for strided convolutions one
//! loop adding the patch gradients back) several times faster on the CPU than candle's
//! transposed-convolution gradient. Weights keep candle's layout
//! (`out x in x k x k`, plus a bias), so files and names are unchanged.

use std::cell::Cell;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Module, Result, Shape, Tensor};

use rayon::prelude::*;

use super::im2col::{fill_lines, im2col, scatter_lines, Geometry, Window};
use super::matmul::{product, transpose, View};
use super::{contiguous_f32, with_scratch, zeros};
use candle_nn::{Init, VarBuilder};

thread_local! {
    /// Floating-point operations of the [`Conv2d`] forward passes this thread has called
    /// so far (2 per multiply-add), for `spae bench-train`'s count of a step's arithmetic:
    /// per thread, so that work on other threads (other tests, the studio) does not count.
    static FORWARD_FLOPS: Cell<u64> = const { Cell::new(0) };
}

fn count_forward_flops(flops: usize) {
    FORWARD_FLOPS.set(FORWARD_FLOPS.get() + flops as u64);
}

/// The forward floating-point operations of the convolutions this thread called since
/// its last call.
pub fn take_forward_flops() -> u64 {
    FORWARD_FLOPS.replace(0)
}

pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
}

/// A `kernel x kernel` convolution with "same" padding (kernel / 2) and the given stride.
pub fn conv2d(in_c: usize, out_c: usize, kernel: usize, stride: usize, vb: VarBuilder) -> Result<Conv2d> {
    let fan_in = (in_c * kernel * kernel) as f64;
    let bound = 1.0 / fan_in.sqrt();
    let weight = vb.get_with_hints((out_c, in_c, kernel, kernel), "weight", Init::Uniform { lo: -bound, up: bound })?;
    let bias = vb.get_with_hints(out_c, "bias", Init::Const(0.0))?;
    Ok(Conv2d { weight, bias, stride })
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
    let window = Window { kernel, stride, before: padding.before, out_h: oh, out_w: ow };
    Ok((im2col(x, window, false)?, oh, ow))
}

impl Conv2d {
    /// A 1 x 1 convolution applied to rows of channel vectors (`n x in` to `n x out`): one
    /// product for all of them, where [`Module::forward`] makes one per image, which for
    /// a few positions an image costs a pass over the weight per image.
    pub fn pointwise(&self, rows: &Tensor) -> Result<Tensor> {
        let (o, c, k, _) = self.weight.dims4()?;
        if k != 1 || self.stride != 1 {
            candle_core::bail!("pointwise: a {k} x {k} convolution of stride {}", self.stride);
        }
        count_forward_flops(2 * rows.dim(0)? * o * c);
        rows.matmul(&self.weight.reshape((o, c))?.t()?)?.broadcast_add(&self.bias.unsqueeze(0)?)
    }
}

impl Module for Conv2d {
    /// One operation: the bias is the weight's last column, against the patch matrix's row
    /// of ones.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let (o, c, k, _) = self.weight.dims4()?;
        let padding = Padding::same(k);
        let (oh, ow) = (padding.output_size(h, k, self.stride), padding.output_size(w, k, self.stride));
        let window = Window { kernel: k, stride: self.stride, before: padding.before, out_h: oh, out_w: ow };
        count_forward_flops(2 * b * o * c * k * k * oh * ow);
        let weight = Tensor::cat(&[self.weight.reshape((o, c * k * k))?, self.bias.reshape((o, 1))?], 1)?;
        x.contiguous()?.apply_op2(&weight, Convolution { window })
    }
}

/// The convolution of an image batch (batch x channels x h x w) with a weight whose rows
/// are the output channels' kernels, bias last (out x (channels * k * k + 1)): per image,
/// the weight times the patch matrix, built a band of output lines at a time in a buffer
/// of the thread's and used at once, while it is in the cache. Nothing is kept for the
/// backward pass, which builds the bands again the same way: keeping them cost more (a step's
/// matrices run to hundreds of megabytes, written to memory and read back) than building
/// them twice.
struct Convolution {
    window: Window,
}

/// The backward pass: inputs x, the weight and the output's gradient; output the input's
/// gradient and the weight's, flat, one after the other.
struct ConvolutionBackward {
    window: Window,
}

/// Patch-matrix entries per band of output lines that a convolution works through at a
/// time (1 MiB of f32, a core's L2 cache here; the backward pass holds two such bands and
/// the image's transposed output gradient); a band is at least one line.
const BAND_ENTRIES: usize = 1 << 18;

/// Output lines per band of `g` for patch matrices of `rows` rows.
fn band_lines(g: Geometry, rows: usize) -> usize {
    let (out_h, out_w) = g.output_lines();
    (BAND_ENTRIES / (rows * out_w).max(1)).clamp(1, out_h.max(1))
}

/// The bands of `lines` output lines of `g` (the last may be shorter).
fn bands(g: Geometry, lines: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let out_h = g.output_lines().0;
    (0..out_h).step_by(lines).map(move |first| first..(first + lines).min(out_h))
}

/// The kernel of the input gradient's convolution: `c x (o * k * k)`, entry (c, (o, ky, kx))
/// the weight's (o, (c, k-1-ky, k-1-kx)) (`weight` is `o x (c * k * k + 1)`, bias last).
fn flipped_transpose(weight: &[f32], o: usize, c: usize, k: usize) -> Vec<f32> {
    let (taps, row) = (k * k, c * k * k + 1);
    let mut out = vec![0f32; c * o * taps];
    for (ci, out_row) in out.chunks_mut(o * taps).enumerate() {
        for (oi, kernel) in out_row.chunks_mut(taps).enumerate() {
            for (tap, value) in kernel.iter_mut().enumerate() {
                *value = weight[oi * row + ci * taps + (taps - 1 - tap)];
            }
        }
    }
    out
}

/// The patch geometry of a convolution's input layout and the weight's output channels.
fn geometry(window: Window, x: &Layout, weight: &Layout) -> Result<(Geometry, usize)> {
    let (&[_, c, h, w], &[o, rows]) = (x.dims(), weight.dims()) else {
        candle_core::bail!("convolution: an input of {:?} and a weight of {:?}", x.dims(), weight.dims())
    };
    let g = Geometry::new(window, c, h, w, true);
    if rows != g.rows() {
        candle_core::bail!("convolution: a weight of {rows} columns for {} patch rows", g.rows());
    }
    Ok((g, o))
}

impl CustomOp2 for Convolution {
    fn name(&self) -> &'static str {
        "convolution"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (g, o) = geometry(self.window, l1, l2)?;
        let (x, weight) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let (rows, positions) = (g.rows(), g.positions());
        let images = l1.dims()[0];
        let plane = g.input_len();
        let mut out = zeros(images * o * positions, 0);
        // One image at a time per thread, a band of output lines at a time: the band's
        // patch columns in a buffer of the thread's, then at once, while they are in the
        // cache, their product with the weight.
        let (out_w, lines) = (g.output_lines().1, band_lines(g, rows));
        out.par_chunks_mut(o * positions).zip(x.par_chunks(plane)).for_each(|(image_out, image)| {
            with_scratch([rows * lines * out_w], |[columns]| {
                for lines in bands(g, lines) {
                    let (first, width) = (lines.start * out_w, lines.len() * out_w);
                    fill_lines(g, image, lines, columns);
                    let (lhs, rhs) = (View::rows(weight, rows), View::rows(columns, width));
                    product(o, rows, width, lhs, rhs, &mut image_out[first..], positions, false, false);
                }
            })
        });
        Ok((CpuStorage::F32(out), Shape::from((images, o, self.window.out_h, self.window.out_w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let backward = ConvolutionBackward { window: self.window };
        let both = x.apply_op3_no_bwd(weight, &grad.contiguous()?, &backward)?;
        let n = x.elem_count();
        let dx = both.narrow(0, 0, n)?.reshape(x.shape())?;
        let dweight = both.narrow(0, n, weight.elem_count())?.reshape(weight.shape())?;
        Ok((Some(dx), Some(dweight)))
    }
}

impl CustomOp3 for ConvolutionBackward {
    fn name(&self) -> &'static str {
        "convolution-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, o) = geometry(self.window, l1, l2)?;
        let (x, weight, grad) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?, contiguous_f32(s3, l3)?);
        let (rows, positions) = (g.rows(), g.positions());
        let images = l1.dims()[0];
        let plane = g.input_len();
        // dx, with room for dW after it.
        let mut both = zeros(images * plane, o * rows);
        // Where the output is as large as the input (stride 1), dx is itself a convolution:
        // of dY with the kernel flipped and transposed, one product with the patches of dY.
        // Otherwise (a stride of 2, or an output of another size) dP = W^T . dY, added back
        // onto dx position by position.
        let through_gradient = g.of_gradient(o).map(|t| (t, flipped_transpose(weight, o, g.channels(), g.kernel())));
        let second_rows = through_gradient.as_ref().map_or(rows, |(t, _)| t.rows());
        let (out_w, lines) = (g.output_lines().1, band_lines(g, rows.max(second_rows)));
        let band = lines * out_w;
        // One image at a time per thread, a band of output lines at a time; each image's
        // weight gradient, transposed: dW^T += P . dY^T, with dY^T copied out first.
        // dW = dY . P^T would hand gemm two operands that both run along the positions,
        // which it packs element by element (4-5 times slower on the large layers, see the
        // README). The bands' patch columns are built in buffers of the thread's and used
        // at once, while they are in the cache.
        let per_image: Vec<Vec<f32>> = both
            .par_chunks_mut(plane)
            .zip(grad.par_chunks(o * positions).zip(x.par_chunks(plane)))
            .map(|(image_dx, (image_grad, image))| {
                let mut dweight_t = vec![0f32; rows * o];
                with_scratch([rows * band, positions * o, second_rows * band], |[columns, grad_t, second]| {
                    transpose(image_grad, o, positions, grad_t);
                    for lines in bands(g, lines) {
                        let (first, width) = (lines.start * out_w, lines.len() * out_w);
                        fill_lines(g, image, lines.clone(), columns);
                        let (lhs, rhs) = (View::rows(columns, width), View::rows(&grad_t[first * o..], o));
                        product(rows, width, o, lhs, rhs, &mut dweight_t, o, true, false);
                        match &through_gradient {
                            Some((t, flipped)) => {
                                fill_lines(*t, image_grad, lines, second);
                                let (lhs, rhs) = (View::rows(flipped, t.rows()), View::rows(second, width));
                                let dx = &mut image_dx[first..];
                                product(g.channels(), t.rows(), width, lhs, rhs, dx, positions, false, false);
                            }
                            None => {
                                let lhs = View::transposed(weight, rows);
                                let rhs = View { data: &image_grad[first..], row: positions, col: 1 };
                                product(rows, o, width, lhs, rhs, second, width, false, false);
                                scatter_lines(g, second, lines, image_dx);
                            }
                        }
                    }
                });
                dweight_t
            })
            .collect();
        // The images' weight gradients added in image order, so that the sum does not
        // depend on how the images were shared among the threads (a run repeats exactly).
        let mut dweight_t = vec![0f32; rows * o];
        for image in &per_image {
            dweight_t.iter_mut().zip(image).for_each(|(a, b)| *a += b);
        }
        // dW transposed back into place after dx.
        let n = both.len();
        both.resize(n + o * rows, 0.0);
        transpose(&dweight_t, rows, o, &mut both[n..]);
        let len = both.len();
        Ok((CpuStorage::F32(both), Shape::from(len)))
    }
}
