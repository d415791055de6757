//! Checkpoints: model weights and optimizer state in one safetensors file per save,
//! and `checkpoint.json` naming the newest. Each file is written beside its final name
//! and renamed into place, and the pointer is written last, so a run killed at any
//! moment resumes from a complete checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::optimizer::AdamW;
use crate::model::SpaeModel;

const POINTER: &str = "checkpoint.json";

#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    pub step: u64,
    pub file: String,
    /// Seconds of training behind this checkpoint, over all runs.
    pub elapsed_secs: f64,
    #[serde(skip)]
    dir: PathBuf,
}

impl Checkpoint {
    /// The newest checkpoint in `dir`, if any.
    pub fn latest(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(POINTER);
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
        let mut checkpoint: Self =
            serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))?;
        checkpoint.dir = dir.to_path_buf();
        Ok(Some(checkpoint))
    }

    /// Writes a checkpoint of `model` and `optimizer`, then removes older ones.
    pub fn save(dir: &Path, model: &SpaeModel, optimizer: &AdamW, elapsed_secs: f64) -> Result<()> {
        let step = optimizer.step_count();
        let mut tensors = optimizer.state()?;
        for (name, var) in model.varmap().data().lock().expect("varmap").iter() {
            tensors.insert(format!("model.{name}"), var.as_tensor().clone());
        }
        let file = format!("checkpoint-{step:08}.safetensors");
        crate::atomic_file::write_via_path(&dir.join(&file), |partial| {
            Ok(candle_core::safetensors::save(&tensors, partial)?)
        })?;
        let pointer = Self { step, file: file.clone(), elapsed_secs, dir: dir.to_path_buf() };
        crate::atomic_file::write(&dir.join(POINTER), serde_json::to_string_pretty(&pointer)?.as_bytes())?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("checkpoint-") && name.ends_with(".safetensors") && name != file {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Loads the weights into `model` and the state into `optimizer`; returns the seconds
    /// of training so far.
    pub fn restore(&self, model: &SpaeModel, optimizer: &mut AdamW) -> Result<f64> {
        let path = self.dir.join(&self.file);
        let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)
            .with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
        for (name, var) in model.varmap().data().lock().expect("varmap").iter() {
            let key = format!("model.{name}");
            let t = tensors.get(&key).with_context(|| format!("{} lacks {key}", path.display()))?;
            anyhow::ensure!(
                t.dims() == var.dims(),
                "{key} in {} has shape {:?}, the model needs {:?}",
                path.display(),
                t.dims(),
                var.dims()
            );
            var.set(t)?;
        }
        optimizer.restore(&tensors).with_context(|| format!("in {}", path.display()))?;
        anyhow::ensure!(
            optimizer.step_count() == self.step,
            "{} is at step {}, its pointer says {}",
            path.display(),
            optimizer.step_count(),
            self.step
        );
        Ok(self.elapsed_secs)
    }
}
