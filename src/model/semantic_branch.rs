//! The semantic branch (docs/method.md section 2): the frozen teacher's head features,
//! averaged over the cells of the upper layers, projected by a small trained network into
//! the codebook's space and added to the CNN's latent, so that SAQ picks the upper
//! layers' words from pretrained evidence while the CNN carries appearance.
//!
//! For each shaped layer l (grid s_l x s_l) the branch adds, over each cell, the
//! projection P(f_c) + b_l of that cell's mean teacher feature f_c; P is a 1 x 1
//! convolution, SiLU, 1 x 1 convolution, shared by the layers, b_l a learned per-layer
//! offset. The projection's last convolution starts at zero, so a new branch starts by
//! adding nothing.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::blocks::conv1x1;
use super::config::{SemanticBranchConfig, TEACHER_FEATURES};
use crate::compute::conv::Conv2d;
use crate::pyramid::PyramidShape;
use crate::teacher::efficientnet::EfficientNetLite0;

/// The variable that starts at zero (see the module's notes).
pub const ZERO_INITIALISED: &str = "branch.project_out.weight";

pub struct SemanticBranch {
    config: SemanticBranchConfig,
    teacher: Arc<EfficientNetLite0>,
    project_in: Conv2d,
    project_out: Conv2d,
    /// `layers x latent_channels`.
    layer_offsets: Tensor,
}

impl SemanticBranch {
    /// The projector's variables under `vb`, and the frozen teacher from `teacher_weights`.
    pub fn new(
        config: &SemanticBranchConfig,
        latent_channels: usize,
        teacher_weights: &Path,
        vb: VarBuilder,
    ) -> Result<Self> {
        let teacher = EfficientNetLite0::load(teacher_weights)
            .with_context(|| "the model's config names a semantic branch, which reads the teacher's features")?;
        Ok(Self {
            config: config.clone(),
            teacher: Arc::new(teacher),
            project_in: conv1x1(TEACHER_FEATURES, config.hidden, vb.pp("project_in"))?,
            project_out: conv1x1(config.hidden, latent_channels, vb.pp("project_out"))?,
            layer_offsets: vb.get((config.layers, latent_channels), "layer_offsets")?,
        })
    }

    pub fn config(&self) -> &SemanticBranchConfig {
        &self.config
    }

    pub fn teacher(&self) -> &EfficientNetLite0 {
        &self.teacher
    }

    /// Side of the feature grid the branch reads: the deepest shaped layer's grid.
    pub fn grid(&self, shape: &PyramidShape) -> usize {
        shape.grid_size(self.config.layers)
    }

    /// The teacher's features of a batch of pixels (-1..1) on [`Self::grid`]
    /// (`batch x 1280 x grid x grid`); no gradient flows into the teacher.
    pub fn teacher_grid(&self, pixels: &Tensor, shape: &PyramidShape) -> Result<Tensor> {
        Ok(self.teacher.grid_features(pixels, self.config.teacher_input, self.grid(shape))?.detach())
    }

    /// What the branch adds to the latent (`batch x latent_channels x G x G`) given the
    /// teacher's grid features.
    pub fn forward(&self, grid: &Tensor, shape: &PyramidShape) -> Result<Tensor> {
        let side = grid.dim(2)?;
        let g = shape.latent_size();
        let mut total: Option<Tensor> = None;
        for layer in 1..=self.config.layers {
            let s = shape.grid_size(layer);
            let cells = if s == side { grid.clone() } else { grid.avg_pool2d(side / s)? };
            let projected = self.project_out.forward(&self.project_in.forward(&cells)?.silu()?)?;
            let offset = self.layer_offsets.get(layer - 1)?.reshape((1, (), 1, 1))?;
            let term = spread_over_cells(&projected.broadcast_add(&offset)?, g / s)?;
            total = Some(match total {
                Some(sum) => (sum + term)?,
                None => term,
            });
        }
        Ok(total.expect("a branch shapes at least one layer"))
    }
}

/// Each cell's value over its `f` x `f` latent positions (`batch x c x s x s` to `batch x
/// c x sf x sf`), as a broadcast: its backward pass is a sum, where that of candle's
/// nearest upsampling is a grouped convolution.
fn spread_over_cells(cells: &Tensor, f: usize) -> Result<Tensor> {
    let (b, c, s, _) = cells.dims4()?;
    if f == 1 {
        return Ok(cells.clone());
    }
    Ok(cells.reshape((b, c, s, 1, s, 1))?.broadcast_as((b, c, s, f, s, f))?.reshape((b, c, s * f, s * f))?)
}
