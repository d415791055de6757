//! The patch matrix of a convolution ("im2col") as one operation with a hand-written
//! backward pass ("col2im").
//!
//! A convolution here is a matrix product of its weight with, for each output position,
//! the input values its `k x k` kernel sees. Built from tensor ops (zero padding, `k x k`
//! shifted views, a stack), the matrix costs a dozen copies forward, and backward each
//! view's gradient is padded back to the input's size and the `k x k` of them added:
//! `k x k` input-sized buffers per convolution. Here the forward pass is one loop that
//! writes the matrix, and the backward pass one loop that adds each entry's gradient back
//! onto the input position it came from. `tests/conv.rs` checks both against candle's
//! own convolution and its autograd.
//!
//! The matrix may end in a row of ones, so that a convolution's bias is one more column
//! of its weight: the product then adds the bias, and the bias's gradient comes out of the
//! weight's, instead of a broadcast add forward and a sum over images and positions
//! backward (candle's reduction over those axes runs on one thread).

use std::ops::Range;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, zeros};

/// Where a `k x k` kernel reads, with stride and zero padding before (top, left).
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    channels: usize,
    height: usize,
    width: usize,
    kernel: usize,
    stride: usize,
    before: usize,
    out_h: usize,
    out_w: usize,
    /// Whether a row of ones follows the channels' rows.
    ones: bool,
}

impl Geometry {
    /// The geometry of `window` over a `channels x height x width` input.
    pub(super) fn new(window: Window, channels: usize, height: usize, width: usize, ones: bool) -> Self {
        let Window { kernel, stride, before, out_h, out_w } = window;
        Self { channels, height, width, kernel, stride, before, out_h, out_w, ones }
    }

    /// For a stride-1 convolution whose output is as large as its input (odd kernel,
    /// padding k / 2): the geometry of its output gradient's patches (`out_channels`
    /// planes, no row of ones), through which the input gradient is a convolution of the
    /// output gradient with the flipped, transposed kernel.
    pub(super) fn of_gradient(&self, out_channels: usize) -> Option<Self> {
        let same = self.stride == 1
            && self.kernel % 2 == 1
            && self.before == self.kernel / 2
            && (self.out_h, self.out_w) == (self.height, self.width);
        same.then_some(Self { channels: out_channels, ones: false, ..*self })
    }

    /// Input channels.
    pub(super) fn channels(&self) -> usize {
        self.channels
    }

    /// Kernel side.
    pub(super) fn kernel(&self) -> usize {
        self.kernel
    }

    /// Entries of one input image (`channels x height x width`).
    pub(super) fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Output lines (rows of positions) and their length.
    pub(super) fn output_lines(&self) -> (usize, usize) {
        (self.out_h, self.out_w)
    }

    /// Output positions.
    pub(super) fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Rows of one image's patch matrix.
    pub(super) fn rows(&self) -> usize {
        self.channels * self.kernel * self.kernel + usize::from(self.ones)
    }

    /// The input row (or column) that output row `o` reads at tap `t`, if inside.
    fn source(&self, o: usize, t: usize, size: usize) -> Option<usize> {
        (o * self.stride + t).checked_sub(self.before).filter(|&i| i < size)
    }

    /// The output columns whose input column at tap `kx` is inside the input, and the
    /// input column the first of them reads (the rest follow at the stride).
    fn columns(&self, kx: usize) -> (std::ops::Range<usize>, usize) {
        let s = self.stride;
        // ox * s + kx >= before, and ox * s + kx - before < width.
        let first = self.before.saturating_sub(kx).div_ceil(s);
        let end = ((self.width + self.before).saturating_sub(kx)).div_ceil(s).min(self.out_w);
        let first = first.min(end);
        (first..end, (first * s + kx).saturating_sub(self.before).min(self.width))
    }
}

/// Where a convolution's kernel reads: `kernel x kernel` taps at `stride`, with `before`
/// zero rows and columns before the input, onto an `out_h x out_w` output.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub kernel: usize,
    pub stride: usize,
    pub before: usize,
    pub out_h: usize,
    pub out_w: usize,
}

/// `batch x (channels * k * k [+ 1]) x positions`: for each output position, the input
/// values a `k x k` kernel with this stride and zero padding sees, in the (channel, ky, kx)
/// order of a convolution weight's rows; with `ones`, a last row of ones.
pub fn im2col(x: &Tensor, window: Window, ones: bool) -> Result<Tensor> {
    let (_, channels, height, width) = x.dims4()?;
    x.contiguous()?.apply_op1(Im2Col(Geometry::new(window, channels, height, width, ones)))
}

/// The patch matrices of the images in `x` (batch x channels x height x width, row-major):
/// batch x rows x positions.
pub(super) fn fill(g: Geometry, x: &[f32]) -> Vec<f32> {
    let (plane, positions) = (g.height * g.width, g.positions());
    let images = x.len() / (g.channels * plane);
    let mut out = zeros(images * g.rows() * positions, 0);
    out.par_chunks_mut(g.rows() * positions)
        .zip(x.par_chunks(g.channels * plane))
        .for_each(|(matrix, image)| fill_lines(g, image, 0..g.out_h, matrix));
    out
}

/// The columns of one image's patch matrix for the output lines `lines` (`rows x
/// (lines x out_w)`) into `matrix`, every entry written (zeros where the kernel reads the
/// padding), whatever `matrix` held before.
pub(super) fn fill_lines(g: Geometry, image: &[f32], lines: Range<usize>, matrix: &mut [f32]) {
    let (plane, width) = (g.height * g.width, lines.len() * g.out_w);
    let taps = g.kernel * g.kernel;
    let (blocks, ones) = matrix[..g.rows() * width].split_at_mut(g.channels * taps * width);
    ones.fill(1.0);
    // One input plane fills one block of k x k rows.
    for (rows, input) in blocks.chunks_mut(taps * width).zip(image.chunks(plane)) {
        for (tap, row) in rows.chunks_mut(width).enumerate() {
            let (ky, kx) = (tap / g.kernel, tap % g.kernel);
            let (inside, start) = g.columns(kx);
            for (oy, line) in lines.clone().zip(row.chunks_mut(g.out_w)) {
                let Some(iy) = g.source(oy, ky, g.height) else {
                    line.fill(0.0);
                    continue;
                };
                let input_line = &input[iy * g.width + start..(iy + 1) * g.width];
                let (before, rest) = line.split_at_mut(inside.start);
                let (line, after) = rest.split_at_mut(inside.len());
                before.fill(0.0);
                after.fill(0.0);
                if g.stride == 1 {
                    line.copy_from_slice(&input_line[..line.len()]);
                } else {
                    line.iter_mut().zip(input_line.iter().step_by(g.stride)).for_each(|(v, &x)| *v = x);
                }
            }
        }
    }
}

/// The gradient of the images from that of their patch matrices: each entry added back
/// onto the input position it came from (the ones row, a constant, adds nowhere).
pub(super) fn scatter(g: Geometry, columns: &[f32]) -> Vec<f32> {
    let (plane, positions) = (g.height * g.width, g.positions());
    let images = columns.len() / (g.rows() * positions);
    let mut dx = zeros(images * g.channels * plane, 0);
    dx.par_chunks_mut(g.channels * plane)
        .zip(columns.par_chunks(g.rows() * positions))
        .for_each(|(image, matrix)| scatter_lines(g, matrix, 0..g.out_h, image));
    dx
}

/// The gradient of the columns of one image's patch matrix for the output lines `lines`
/// (`rows x (lines x out_w)`) added onto the image's gradient.
pub(super) fn scatter_lines(g: Geometry, matrix: &[f32], lines: Range<usize>, image: &mut [f32]) {
    let (plane, width) = (g.height * g.width, lines.len() * g.out_w);
    let taps = g.kernel * g.kernel;
    for (input, rows) in image.chunks_mut(plane).zip(matrix.chunks(taps * width)) {
        for (tap, row) in rows.chunks(width).enumerate() {
            let (ky, kx) = (tap / g.kernel, tap % g.kernel);
            let (inside, start) = g.columns(kx);
            for (oy, line) in lines.clone().zip(row.chunks(g.out_w)) {
                let Some(iy) = g.source(oy, ky, g.height) else { continue };
                let input_line = &mut input[iy * g.width + start..(iy + 1) * g.width];
                let line = &line[inside.clone()];
                input_line.iter_mut().step_by(g.stride).zip(line).for_each(|(x, &v)| *x += v);
            }
        }
    }
}

struct Im2Col(Geometry);

/// The backward pass: the patch matrix's gradient summed back onto the input.
struct Col2Im(Geometry);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let out = fill(g, contiguous_f32(storage, layout)?);
        let images = out.len() / (g.rows() * g.positions());
        Ok((CpuStorage::F32(out), Shape::from((images, g.rows(), g.positions()))))
    }

    fn bwd(&self, _x: &Tensor, _columns: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let dx = scatter(g, contiguous_f32(storage, layout)?);
        let images = dx.len() / (g.channels * g.height * g.width);
        Ok((CpuStorage::F32(dx), Shape::from((images, g.channels, g.height, g.width))))
    }
}
