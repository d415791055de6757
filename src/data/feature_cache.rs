//! The teacher's grid features of a split's images, computed once for training a model
//! with a semantic branch (the teacher is frozen and the images fixed, so every step would
//! otherwise recompute the same numbers). Kept beside the split as safetensors in f16,
//! named by the teacher's input size and the grid, in the split's image order.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use indicatif::ProgressBar;

use super::dataset::{Dataset, Split};
use crate::model::SpaeModel;

const BATCH: usize = 32;
const TENSOR: &str = "grid";

pub fn path(dir: &Path, split: Split, teacher_input: usize, grid: usize) -> PathBuf {
    dir.join(format!("{}.teacher-grid-{teacher_input}px-{grid}x{grid}.safetensors", split.name()))
}

/// The grid features of every image of `data` for `model`'s branch (`images x 1280 x s x
/// s`, f32), read from the cache or computed and cached. `None` for a model without a
/// branch.
pub fn load_or_compute(dir: &Path, split: Split, data: &Dataset, model: &SpaeModel) -> Result<Option<Tensor>> {
    let (Some(branch), Some(config)) = (model.branch(), model.config().semantic_branch.as_ref()) else {
        return Ok(None);
    };
    let grid = branch.grid(model.shape());
    let file = path(dir, split, config.teacher_input, grid);
    if file.exists() {
        let tensors = candle_core::safetensors::load(&file, &Device::Cpu)
            .with_context(|| format!("cannot read the teacher features {}", file.display()))?;
        let features = tensors.get(TENSOR).with_context(|| format!("{} holds no tensor {TENSOR}", file.display()))?;
        let expected = [data.len(), crate::model::config::TEACHER_FEATURES, grid, grid];
        ensure!(
            features.dims() == expected,
            "{} has shape {:?}, the split needs {expected:?} (delete it to recompute)",
            file.display(),
            features.dims()
        );
        return Ok(Some(features.to_dtype(DType::F32)?));
    }
    let bar = ProgressBar::new(data.len() as u64).with_message(format!("teacher features, {} split", split.name()));
    let mut parts = Vec::new();
    for start in (0..data.len()).step_by(BATCH) {
        let indices: Vec<usize> = (start..(start + BATCH).min(data.len())).collect();
        let pixels = data.batch(&indices, &vec![false; indices.len()])?;
        parts.push(branch.teacher_grid(&pixels, model.shape())?.to_dtype(DType::F16)?);
        bar.inc(indices.len() as u64);
        if bar.is_hidden() && (start / BATCH).is_multiple_of(20) {
            eprintln!("teacher features, {} split: {}/{}", split.name(), start + indices.len(), data.len());
        }
    }
    bar.finish();
    let features = Tensor::cat(&parts, 0)?;
    crate::atomic_file::write_via_path(&file, |partial| {
        Ok(candle_core::safetensors::save(&std::collections::HashMap::from([(TENSOR, features.clone())]), partial)?)
    })?;
    Ok(Some(features.to_dtype(DType::F32)?))
}

/// The rows of `features` for a batch, each mirrored left to right where `flips` says so
/// (as [`Dataset::batch`] mirrors the pixels; the teacher's features are close to
/// mirror-symmetric, so the mirrored grid stands for the mirrored image's).
pub fn batch(features: &Tensor, indices: &[usize], flips: &[bool]) -> Result<Tensor> {
    let width = features.dim(3)?;
    let reversed = Tensor::from_vec((0..width as u32).rev().collect::<Vec<_>>(), width, &Device::Cpu)?;
    let rows = indices
        .iter()
        .zip(flips)
        .map(|(&i, &flip)| {
            let row = features.get(i)?;
            if flip {
                row.index_select(&reversed, 2)
            } else {
                Ok(row)
            }
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::stack(&rows, 0)?)
}
