//! AdamW (Loshchilov & Hutter) with decoupled weight decay, written out so that its
//! moment estimates can be saved in checkpoints and restored on `--resume`.

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::{Tensor, Var};

pub struct AdamW {
    /// (name, variable) in a fixed order.
    vars: Vec<(String, Var)>,
    first_moments: Vec<Tensor>,
    second_moments: Vec<Tensor>,
    /// Steps taken so far (bias correction uses it).
    step: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    pub fn new(mut vars: Vec<(String, Var)>, weight_decay: f64) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let first_moments = vars.iter().map(|(_, v)| zeros(v)).collect::<candle_core::Result<_>>()?;
        let second_moments = vars.iter().map(|(_, v)| zeros(v)).collect::<candle_core::Result<_>>()?;
        Ok(Self { vars, first_moments, second_moments, step: 0, beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay })
    }

    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One update with learning rate `lr` from the gradients of `loss`.
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) -> Result<()> {
        let grads = loss.backward()?;
        self.step += 1;
        let t = self.step as i32;
        let correction1 = 1.0 - self.beta1.powi(t);
        let correction2 = 1.0 - self.beta2.powi(t);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(var) else { continue };
            let m = ((&self.first_moments[i] * self.beta1)? + (grad * (1.0 - self.beta1))?)?;
            let v = ((&self.second_moments[i] * self.beta2)? + (grad.sqr()? * (1.0 - self.beta2))?)?;
            let update = ((&m / correction1)? / ((&v / correction2)?.sqrt()? + self.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * self.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.first_moments[i] = m;
            self.second_moments[i] = v;
        }
        Ok(())
    }

    /// The optimizer state as named tensors (for a checkpoint).
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("adamw.m.{name}"), self.first_moments[i].clone());
            out.insert(format!("adamw.v.{name}"), self.second_moments[i].clone());
        }
        out.insert("adamw.step".to_string(), Tensor::new(&[self.step as f64], &candle_core::Device::Cpu)?);
        Ok(out)
    }

    /// Restores the state written by [`Self::state`].
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.first_moments[i]), ("v", &mut self.second_moments[i])] {
                let key = format!("adamw.{prefix}.{name}");
                let t = tensors.get(&key).with_context(|| format!("the checkpoint lacks {key}"))?;
                anyhow::ensure!(
                    t.dims() == var.dims(),
                    "{key} has shape {:?}, the model needs {:?}",
                    t.dims(),
                    var.dims()
                );
                *slot = t.clone();
            }
        }
        let step = tensors.get("adamw.step").context("the checkpoint lacks adamw.step")?;
        self.step = step.to_vec1::<f64>()?[0] as u64;
        Ok(())
    }
}
