//! The gradient of a soft choice among a few rows of a table, as one op (the relaxed word
//! choice of training, `crate::train::relaxed`). For a target row t and its K candidate
//! rows e_1..e_K,
//!
//!   p_i = softmax_i(-||t - e_i||^2 / tau),  s(t) = sum_i p_i e_i,
//!   d(g . s)/dt = (2 / tau) Cov_p(e) g = (2 / tau) sum_i p_i (e_i . g - s . g) e_i,
//!
//! with tau per row a share of the spread of its candidates' squared distances (nearest
//! to K-th), held constant. The op's value is zero (the caller adds it to what the decoder
//! reads, so the words themselves are decoded) and its gradient is that of
//! (tau / 2m) s(t): Cov_p(e) g / m, m a scale the caller gives. Built from candle's ops
//! this was a gather of K rows per target and six passes over them forward and backward
//! (0.7 s of a 16-image training step); here it is K dot products per target forward and
//! 2K backward, the softmax kept from one to the other.

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::lanes::dot_16;
use super::{contiguous_f32, Slot};

/// A `rows x dim` tensor of zeros whose gradient to `targets` (`rows x dim`) is that of
/// tau/(2 `scale`) times the soft choice among each row's `width` candidate rows of
/// `table` (`len x dim`) named by `candidates` (`rows x width`, row-major, nearest first);
/// tau is `temperature` times the spread of the row's candidates' squared distances. No
/// gradient flows to the table.
pub fn soft_choice(
    targets: &Tensor,
    table: &Tensor,
    candidates: &[u32],
    width: usize,
    temperature: f32,
    scale: f32,
) -> Result<Tensor> {
    let (rows, len) = (targets.dim(0)?, table.dim(0)?);
    if width < 2 || candidates.len() != rows * width || candidates.iter().any(|&k| k as usize >= len) {
        candle_core::bail!(
            "soft_choice: {} candidates for {rows} x {width} (at least two a row), or one past {len} rows",
            candidates.len()
        );
    }
    let op = SoftChoice { candidates: candidates.to_vec(), width, temperature, scale, p: Slot::new(None) };
    targets.contiguous()?.apply_op2(&table.contiguous()?, op)
}

struct SoftChoice {
    candidates: Vec<u32>,
    width: usize,
    temperature: f32,
    scale: f32,
    /// `rows x width`: the forward pass's soft choice, for the backward pass.
    p: Slot<Vec<f32>>,
}

impl SoftChoice {
    /// Every row's soft choice p over its candidates.
    fn choice(&self, targets: &[f32], table: &[f32], dim: usize) -> Vec<f32> {
        let mut p = vec![0f32; self.candidates.len()];
        p.par_chunks_mut(self.width).zip(targets.par_chunks(dim).zip(self.candidates.par_chunks(self.width))).for_each(
            |(p, (t, words))| {
                for (d, &k) in p.iter_mut().zip(words) {
                    let e = &table[k as usize * dim..(k as usize + 1) * dim];
                    *d = e.iter().zip(t).map(|(e, t)| (e - t) * (e - t)).sum();
                }
                let (nearest, last) = (p.iter().copied().fold(f32::INFINITY, f32::min), p[self.width - 1]);
                let tau = (self.temperature * (last - p[0])).max(f32::MIN_POSITIVE.sqrt());
                p.iter_mut().for_each(|d| *d = (-(*d - nearest) / tau).exp());
                let total: f32 = p.iter().sum();
                p.iter_mut().for_each(|v| *v /= total);
            },
        );
        p
    }
}

impl CustomOp2 for SoftChoice {
    fn name(&self) -> &'static str {
        "soft-choice"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (targets, table) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let dim = l2.dims()[1];
        if l1.dims() != [self.candidates.len() / self.width, dim] {
            candle_core::bail!("soft_choice: targets {:?} against a table {:?}", l1.dims(), l2.dims());
        }
        self.p.put(self.choice(targets, table, dim))?;
        Ok((CpuStorage::F32(vec![0f32; targets.len()]), l1.shape().clone()))
    }

    fn bwd(
        &self,
        targets: &Tensor,
        table: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, dim) = targets.dims2()?;
        let table: Vec<f32> = table.flatten_all()?.to_vec1()?;
        let p = match self.p.take()? {
            Some(p) => p,
            // A second backward pass over the same graph: the choice again.
            None => self.choice(&targets.flatten_all()?.to_vec1()?, &table, dim),
        };
        let grad: Vec<f32> = grad.flatten_all()?.to_vec1()?;
        let mut out = vec![0f32; rows * dim];
        let row = |k: u32| &table[k as usize * dim..(k as usize + 1) * dim];
        out.par_chunks_mut(dim)
            .zip(grad.par_chunks(dim).zip(p.par_chunks(self.width).zip(self.candidates.par_chunks(self.width))))
            .for_each(|(out, (g, (p, words)))| {
                let along: Vec<f32> = words.iter().map(|&k| dot_16(row(k), g)).collect();
                let mean_along: f32 = p.iter().zip(&along).map(|(p, a)| p * a).sum();
                for ((&k, &p), &a) in words.iter().zip(p).zip(&along) {
                    let weight = p * (a - mean_along) / self.scale;
                    out.iter_mut().zip(row(k)).for_each(|(o, e)| *o += weight * e);
                }
            });
        Ok((Some(Tensor::from_vec(out, (rows, dim), &Device::Cpu)?), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// The same gradient from candle's ops: (tau / 2m) (s - stopgrad s).
    #[test]
    fn the_gradient_is_candle_s_of_the_scaled_soft_choice() {
        let (rows, dim, len, width) = (5, 12, 30, 4);
        let value = |i: usize, m: usize| ((i * 37 % m) as f32 / m as f32 - 0.5) * 1.7;
        let table = Tensor::from_vec((0..len * dim).map(|i| value(i, 53)).collect(), (len, dim), &Device::Cpu).unwrap();
        let targets =
            Var::from_vec((0..rows * dim).map(|i| value(i, 29)).collect(), (rows, dim), &Device::Cpu).unwrap();
        // Each row's `width` nearest rows, nearest first.
        let (t_values, e_values): (Vec<f32>, Vec<f32>) =
            (targets.flatten_all().unwrap().to_vec1().unwrap(), table.flatten_all().unwrap().to_vec1().unwrap());
        let candidates: Vec<u32> = t_values
            .chunks(dim)
            .flat_map(|t| {
                let distance = |k: usize| {
                    e_values[k * dim..(k + 1) * dim].iter().zip(t).map(|(e, t)| (e - t).powi(2)).sum::<f32>()
                };
                let mut order: Vec<usize> = (0..len).collect();
                order.sort_by(|&a, &b| distance(a).total_cmp(&distance(b)));
                order.into_iter().take(width).map(|k| k as u32)
            })
            .collect();
        let g = Tensor::from_vec((0..rows * dim).map(|i| value(i, 11)).collect(), (rows, dim), &Device::Cpu).unwrap();
        let (temperature, scale) = (0.3, 0.8);

        let out = soft_choice(targets.as_tensor(), &table, &candidates, width, temperature, scale).unwrap();
        assert!(out.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|&v| v == 0.0));
        let ours = (out * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let ours: Vec<f32> = ours.get(targets.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();

        let index = Tensor::new(candidates.clone(), &Device::Cpu).unwrap();
        let chosen = table.index_select(&index, 0).unwrap().reshape((rows, width, dim)).unwrap();
        let t = targets.as_tensor();
        let distances = chosen.broadcast_sub(&t.unsqueeze(1).unwrap()).unwrap().sqr().unwrap().sum(2).unwrap();
        let tau: Vec<f32> =
            distances.to_vec2::<f32>().unwrap().iter().map(|d| temperature * (d[width - 1] - d[0])).collect();
        let tau = Tensor::from_vec(tau, (rows, 1), &Device::Cpu).unwrap();
        let p = candle_nn::ops::softmax(&distances.broadcast_div(&tau).unwrap().neg().unwrap(), 1).unwrap();
        let s = p.unsqueeze(2).unwrap().broadcast_mul(&chosen).unwrap().sum(1).unwrap();
        let scaled = (&s - s.detach()).unwrap().broadcast_mul(&(tau / (2.0 * scale as f64)).unwrap()).unwrap();
        let theirs = (scaled * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let theirs: Vec<f32> = theirs.get(t).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let largest = theirs.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(largest > 1e-3);
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() <= 1e-4 * largest, "{a} against {b}");
        }
    }
}
