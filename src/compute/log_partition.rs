//! The log-partition of a softmax over negative squared distances to every row of a
//! table, and the logits of a few chosen rows, as one op with its own backward pass (the
//! semantic loss's normaliser over all 16,384 words and its target words' logits):
//!
//!   l_k(t) = s (2 t.e_k - ||e_k||^2),  log Z(t) = log sum_k exp l_k(t)
//!   d log Z / dt = 2 s sum_k p_k e_k,  d l_k / dt = 2 s e_k
//!
//! where p is that softmax (the constant -s ||t||^2 of every logit cancels in p and is left
//! out, as the loss leaves it out). Built from candle's ops this was a product, about ten
//! passes over the `targets x words` logits forward and as many backward, a batched
//! product for the chosen words, and the gradients of the table and of the chosen rows,
//! which nothing uses. Here it is two products (the logits; backward, one `G . E` where G
//! is the softmax scaled by log Z's gradient plus the chosen logits' gradients at their
//! words) and one vectorised pass over each row; the softmax stays with the op from the
//! forward pass to the backward pass.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::lanes::{exp, sum_16};
use super::matmul::{product, View};
use super::{contiguous_f32, zeros, Slot};

/// What [`log_partition`] gives for each target row.
pub struct Partition {
    /// `rows x 1`.
    pub log_z: Tensor,
    /// `rows x width`: the logits of the rows of `table` that `chosen` names.
    pub chosen_logits: Tensor,
    /// The index of each row's largest logit (its nearest row of `table`, first of equals).
    pub nearest: Vec<u32>,
}

/// For each target row (`rows x dim`), log Z and the logits of the `width` rows of `table`
/// (`len x dim`, `squared_norms` its rows' squared lengths) that `chosen` names for it
/// (`rows x width` indices, row-major, `width` at least 1); both carry the gradient to
/// `targets`, none flows to the table.
pub fn log_partition(
    targets: &Tensor,
    table: &Tensor,
    squared_norms: &Tensor,
    scale: f64,
    chosen: &[u32],
    width: usize,
) -> Result<Partition> {
    let rows = targets.dim(0)?;
    let len = table.dim(0)?;
    if width == 0 || chosen.len() != rows * width || chosen.iter().any(|&k| k as usize >= len) {
        candle_core::bail!(
            "log_partition: {} chosen indices for {rows} x {width} (at least one a row), or one past {len} rows",
            chosen.len()
        );
    }
    let nearest = Arc::new(Slot::new(None));
    let op = LogPartition {
        scale: scale as f32,
        chosen: chosen.to_vec(),
        width,
        softmax: Slot::new(None),
        nearest: nearest.clone(),
    };
    let out = targets.contiguous()?.apply_op3(table, squared_norms, op)?;
    let nearest = nearest.take()?.unwrap_or_default();
    Ok(Partition { log_z: out.narrow(1, 0, 1)?, chosen_logits: out.narrow(1, 1, width)?, nearest })
}

struct LogPartition {
    scale: f32,
    chosen: Vec<u32>,
    width: usize,
    /// `rows x len`: the forward pass's softmax, for the backward pass.
    softmax: Slot<Vec<f32>>,
    /// Each row's largest logit's index, for [`log_partition`]'s caller.
    nearest: Arc<Slot<Vec<u32>>>,
}

/// (rows, dim, len) of targets `rows x dim`, a table `len x dim` and `len` norms.
fn sizes(targets: &Layout, table: &Layout, norms: &Layout) -> Result<(usize, usize, usize)> {
    match (targets.dims(), table.dims(), norms.dims()) {
        (&[rows, dim], &[len, width], &[n]) if width == dim && n == len && len > 0 => Ok((rows, dim, len)),
        (t, e, n) => candle_core::bail!("log_partition: targets {t:?}, a table {e:?} and norms {n:?}"),
    }
}

/// The softmax of every target row over the table (in place of its logits), with each
/// row's log Z, largest logit's index and chosen rows' logits (`width` per row, after
/// log Z in `out`, `rows x (1 + width)`).
fn softmax(
    targets: &[f32],
    table: &[f32],
    norms: &[f32],
    (rows, dim, len): (usize, usize, usize),
    scale: f32,
    chosen: &[u32],
    out: &mut [f32],
) -> (Vec<f32>, Vec<u32>) {
    let mut p = zeros(rows * len, 0);
    product(rows, dim, len, View::rows(targets, dim), View::transposed(table, dim), &mut p, len, false, true);
    let width = chosen.len() / rows.max(1);
    let nearest = p
        .par_chunks_mut(len)
        .zip(out.par_chunks_mut(1 + width).zip(chosen.par_chunks(width)))
        .map(|(row, (out, chosen))| {
            for (l, &n) in row.iter_mut().zip(norms) {
                *l = scale * (2.0 * *l - n);
            }
            let (mut best, mut at) = (f32::NEG_INFINITY, 0);
            for (k, &l) in row.iter().enumerate() {
                if l > best {
                    (best, at) = (l, k);
                }
            }
            out[0] = best + sum_16(row, |l| exp(l - best)).ln();
            for (o, &k) in out[1..].iter_mut().zip(chosen) {
                *o = row[k as usize];
            }
            row.iter_mut().for_each(|l| *l = exp(*l - out[0]));
            at as u32
        })
        .collect();
    (p, nearest)
}

/// A tensor's values as a contiguous f32 slice, for the closure given.
fn with_values<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(contiguous_f32(cpu, layout)?),
        _ => candle_core::bail!("log_partition runs on the CPU"),
    }
}

impl CustomOp3 for LogPartition {
    fn name(&self) -> &'static str {
        "log-partition"
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
        let size = sizes(l1, l2, l3)?;
        let (targets, table, norms) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?, contiguous_f32(s3, l3)?);
        let mut out = vec![0f32; size.0 * (1 + self.width)];
        let (p, nearest) = softmax(targets, table, norms, size, self.scale, &self.chosen, &mut out);
        self.softmax.put(p)?;
        self.nearest.put(nearest)?;
        Ok((CpuStorage::F32(out), Shape::from((size.0, 1 + self.width))))
    }

    fn bwd(
        &self,
        targets: &Tensor,
        table: &Tensor,
        norms: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, dim) = targets.dims2()?;
        let len = table.dim(0)?;
        let grad: Vec<f32> = grad.flatten_all()?.to_vec1()?;
        let width = self.width;
        let dt = with_values(table, |e| {
            let mut p = match self.softmax.take()? {
                Some(p) => p,
                // A second backward pass over the same graph: the softmax again.
                None => {
                    let (t, n): (Vec<f32>, Vec<f32>) = (targets.flatten_all()?.to_vec1()?, norms.to_vec1()?);
                    let mut out = vec![0f32; rows * (1 + width)];
                    softmax(&t, e, &n, (rows, dim, len), self.scale, &self.chosen, &mut out).0
                }
            };
            // G = 2 s (g_z p + the chosen logits' gradients at their rows); dt = G . E.
            let factor = 2.0 * self.scale;
            p.par_chunks_mut(len).zip(grad.par_chunks(1 + width).zip(self.chosen.par_chunks(width))).for_each(
                |(row, (g, chosen))| {
                    row.iter_mut().for_each(|v| *v *= factor * g[0]);
                    for (&k, &gk) in chosen.iter().zip(&g[1..]) {
                        row[k as usize] += factor * gk;
                    }
                },
            );
            let mut dt = vec![0f32; rows * dim];
            product(rows, len, dim, View::rows(&p, len), View::rows(e, dim), &mut dt, dim, false, true);
            Ok(dt)
        })?;
        Ok((Some(Tensor::from_vec(dt, (rows, dim), &Device::Cpu)?), None, None))
    }
}
