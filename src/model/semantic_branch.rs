//! The semantic branch (docs/method.md section 5a): the frozen teacher's head features,
//! averaged over the cells of the upper layers, projected by a small trained network into
//! the codebook's space, so that SAQ picks the upper layers' words from pretrained
//! evidence while the CNN carries appearance.
//!
//! For each shaped layer l (grid s_l x s_l) the branch projects each cell's mean teacher
//! feature f_c to P(f_c) + b_l, and either adds it over the cell to the CNN's latent
//! (`add`) or makes it the cell's SAQ target (`name`: the branch alone names the upper
//! words). P is a 1 x 1 convolution, SiLU, 1 x 1 convolution, shared by the layers, b_l a
//! learned per-layer offset. The projection's last convolution starts at zero, so a new
//! branch in `add` mode starts by adding nothing.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::blocks::conv1x1;
#[cfg(doc)]
use super::config::BranchMode;
use super::config::{SemanticBranchConfig, TEACHER_FEATURES};
use crate::compute::conv::Conv2d;
use crate::compute::upsample::{block_mean, upsample};
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

    /// Each shaped layer's cell projections P(f_c) + b_l (`batch x latent_channels x s_l x
    /// s_l`), layer 1 first, given the teacher's grid features.
    pub fn cell_projections(&self, grid: &Tensor, shape: &PyramidShape) -> Result<Vec<Tensor>> {
        let (batch, channels, side, _) = grid.dims4()?;
        // Every layer's cells as rows of one matrix, projected by one product per
        // convolution.
        let mut cells = Vec::with_capacity(self.config.layers);
        for layer in 1..=self.config.layers {
            let s = shape.grid_size(layer);
            let pooled = if s == side { grid.clone() } else { block_mean(grid, side / s)? };
            cells.push(pooled.permute((0, 2, 3, 1))?.reshape((batch * s * s, channels))?);
        }
        let projected = self.project_out.pointwise(&self.project_in.pointwise(&Tensor::cat(&cells, 0)?)?.silu()?)?;
        let mut start = 0;
        (1..=self.config.layers)
            .map(|layer| {
                let s = shape.grid_size(layer);
                let rows = projected.narrow(0, start, batch * s * s)?;
                start += batch * s * s;
                let offset = self.layer_offsets.get(layer - 1)?.unsqueeze(0)?;
                let rows = rows.broadcast_add(&offset)?;
                Ok(rows.reshape((batch, s, s, ()))?.permute((0, 3, 1, 2))?.contiguous()?)
            })
            .collect()
    }

    /// What the branch adds to the latent in [`BranchMode::Add`] (`batch x
    /// latent_channels x G x G`): every layer's cell projections spread over their cells.
    pub fn forward(&self, grid: &Tensor, shape: &PyramidShape) -> Result<Tensor> {
        let g = shape.latent_size();
        let mut total: Option<Tensor> = None;
        for projection in self.cell_projections(grid, shape)? {
            // Each cell's value over its latent positions.
            let term = upsample(&projection, g / projection.dim(2)?)?;
            total = Some(match total {
                Some(sum) => (sum + term)?,
                None => term,
            });
        }
        Ok(total.expect("a branch shapes at least one layer"))
    }
}
