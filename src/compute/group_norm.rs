//! GroupNorm followed by SiLU, as one operation with a hand-written backward pass.
//!
//! Every normalisation in the encoder and decoder is followed by SiLU. Built from candle's
//! tensor ops, the pair is about a dozen operations forward (each allocating its output)
//! and more backward; here the forward pass is one loop over each (image, group) and the
//! backward pass one more, computing the gradients of the input, the scale and the shift
//! together. Numbers match candle's `GroupNorm` + `silu` and their autograd (`tests/conv.rs`
//! checks both on small shapes). The variables keep candle's names (`weight`, `bias`), so
//! model files are unchanged.
//!
//! With xhat = (x - mean) / sqrt(var + eps) over a group's channels and positions,
//! a = gamma * xhat + beta and y = a * sigmoid(a):
//!   da = dy * s (1 + a (1 - s)),  s = sigmoid(a)
//!   dgamma = sum da * xhat,  dbeta = sum da  (over images and positions)
//!   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = da * gamma  (means over the group)

use super::lanes::{exp, sum_16};
use super::{contiguous_f32, zeros};
use candle_core::{CpuStorage, CustomOp3, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

pub struct GroupNormSilu {
    weight: Tensor,
    bias: Tensor,
    op: Forward,
}

/// GroupNorm over `channels` in `groups` groups, then SiLU; `weight` starts at 1, `bias` at 0.
pub fn group_norm_silu(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<GroupNormSilu> {
    if groups == 0 || !channels.is_multiple_of(groups) {
        candle_core::bail!("GroupNorm: {groups} groups must divide {channels} channels");
    }
    let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
    let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
    Ok(GroupNormSilu { weight, bias, op: Forward { groups, eps: eps as f32 } })
}

impl Module for GroupNormSilu {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op3(&self.weight, &self.bias, self.op)
    }
}

#[derive(Clone, Copy)]
struct Forward {
    groups: usize,
    eps: f32,
}

/// The gradients' op: inputs x, [gamma | beta] and dy; output [dx | dgamma | dbeta] flat.
#[derive(Clone, Copy)]
struct Backward {
    groups: usize,
    eps: f32,
}

/// (images, channels, positions) of an input at least 3-dimensional, with `channels`
/// channels in `groups` groups and at least one position.
fn dims(layout: &Layout, groups: usize, channels: usize) -> Result<(usize, usize, usize)> {
    let d = layout.shape().dims();
    let positions: usize = d.iter().skip(2).product();
    if d.len() < 3 || d[1] != channels || !d[1].is_multiple_of(groups) || positions == 0 {
        candle_core::bail!("group_norm_silu: input {d:?} for {channels} channels in {groups} groups");
    }
    Ok((d[0], d[1], positions))
}

/// Mean and 1 / sqrt(var + eps) of one group's values (two passes, sixteen partial sums).
fn statistics(values: &[f32], eps: f32) -> (f32, f32) {
    let n = values.len() as f32;
    let mean = sum_16(values, |v| v) / n;
    let var = sum_16(values, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

#[inline(always)]
fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + exp(-a))
}

/// One channel's share of the backward pass: `g = da * gamma` written into `dx`, and
/// (sum da * xhat, sum da) over its positions, in sixteen partial sums.
fn channel_backward(x: &[f32], dy: &[f32], dx: &mut [f32], mean: f32, rstd: f32, gamma: f32, beta: f32) -> (f32, f32) {
    let gradient = |x: f32, dy: f32| {
        let xhat = (x - mean) * rstd;
        let a = gamma * xhat + beta;
        let s = sigmoid(a);
        (dy * s * (1.0 + a * (1.0 - s)), xhat)
    };
    let (mut by_xhat, mut plain) = ([0f32; 16], [0f32; 16]);
    let mut chunks = dx.chunks_exact_mut(16).zip(x.chunks_exact(16).zip(dy.chunks_exact(16)));
    for (dx, (x, dy)) in &mut chunks {
        for lane in 0..16 {
            let (da, xhat) = gradient(x[lane], dy[lane]);
            by_xhat[lane] += da * xhat;
            plain[lane] += da;
            dx[lane] = da * gamma;
        }
    }
    let done = x.len() / 16 * 16;
    let (mut dgamma, mut dbeta) = (by_xhat.iter().sum::<f32>(), plain.iter().sum::<f32>());
    for ((dx, &x), &dy) in dx[done..].iter_mut().zip(&x[done..]).zip(&dy[done..]) {
        let (da, xhat) = gradient(x, dy);
        dgamma += da * xhat;
        dbeta += da;
        *dx = da * gamma;
    }
    (dgamma, dbeta)
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "group-norm-silu"
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
        let (x, gamma, beta) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?, contiguous_f32(s3, l3)?);
        let (_, channels, positions) = dims(l1, self.groups, gamma.len())?;
        let per_group = channels / self.groups;
        let mut y = zeros(x.len(), 0);
        y.par_chunks_mut(per_group * positions).zip(x.par_chunks(per_group * positions)).enumerate().for_each(
            |(index, (y, x))| {
                let first_channel = (index % self.groups) * per_group;
                let (mean, rstd) = statistics(x, self.eps);
                for (c, (y, x)) in y.chunks_mut(positions).zip(x.chunks(positions)).enumerate() {
                    let (g, b) = (
                        gamma[first_channel + c] * rstd,
                        beta[first_channel + c] - gamma[first_channel + c] * rstd * mean,
                    );
                    for (y, &x) in y.iter_mut().zip(x) {
                        let a = g * x + b;
                        *y = a * sigmoid(a);
                    }
                }
            },
        );
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let channels = gamma.elem_count();
        let scale_shift = Tensor::cat(&[gamma, beta], 0)?;
        let backward = Backward { groups: self.groups, eps: self.eps };
        let all = x.contiguous()?.apply_op3_no_bwd(&scale_shift, &dy.contiguous()?, &backward)?;
        let n = x.elem_count();
        let dx = all.narrow(0, 0, n)?.reshape(x.shape())?;
        let dgamma = all.narrow(0, n, channels)?;
        let dbeta = all.narrow(0, n + channels, channels)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

impl CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        "group-norm-silu-backward"
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
        let (x, scale_shift, dy) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?, contiguous_f32(s3, l3)?);
        let (_, channels, positions) = dims(l1, self.groups, scale_shift.len() / 2)?;
        let (gamma, beta) = scale_shift.split_at(channels);
        let per_group = channels / self.groups;
        let group_len = per_group * positions;
        let mut dx = zeros(x.len(), 2 * channels);
        // Per (image, group): dx, and that group's share of dgamma and dbeta.
        let partial: Vec<(usize, Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut(group_len)
            .zip(x.par_chunks(group_len).zip(dy.par_chunks(group_len)))
            .enumerate()
            .map(|(index, (dx, (x, dy)))| {
                let first_channel = (index % self.groups) * per_group;
                let (mean, rstd) = statistics(x, self.eps);
                let (mut dgamma, mut dbeta) = (vec![0f32; per_group], vec![0f32; per_group]);
                // g = da * gamma is kept in dx until the means are known; sum g = gamma *
                // dbeta and sum g * xhat = gamma * dgamma, channel by channel.
                let (mut sum_g, mut sum_g_xhat) = (0f64, 0f64);
                for c in 0..per_group {
                    let (gc, bc) = (gamma[first_channel + c], beta[first_channel + c]);
                    let range = c * positions..(c + 1) * positions;
                    let (dg, db) =
                        channel_backward(&x[range.clone()], &dy[range.clone()], &mut dx[range], mean, rstd, gc, bc);
                    dgamma[c] = dg;
                    dbeta[c] = db;
                    sum_g += (gc * db) as f64;
                    sum_g_xhat += (gc * dg) as f64;
                }
                let (mean_g, mean_g_xhat) = ((sum_g / group_len as f64) as f32, (sum_g_xhat / group_len as f64) as f32);
                for (dx, &x) in dx.iter_mut().zip(x) {
                    let xhat = (x - mean) * rstd;
                    *dx = rstd * (*dx - mean_g - xhat * mean_g_xhat);
                }
                (first_channel, dgamma, dbeta)
            })
            .collect();
        let mut out = dx;
        let (mut dgamma, mut dbeta) = (vec![0f32; channels], vec![0f32; channels]);
        for (first, dg, db) in partial {
            dgamma[first..first + per_group].iter_mut().zip(&dg).for_each(|(a, b)| *a += b);
            dbeta[first..first + per_group].iter_mut().zip(&db).for_each(|(a, b)| *a += b);
        }
        out.extend_from_slice(&dgamma);
        out.extend_from_slice(&dbeta);
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}
