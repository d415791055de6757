//! The model's configuration, stored as `config.json` beside its weights.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::pyramid::{CellTarget, PyramidShape};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaeConfig {
    /// Side of the square RGB input and output, in pixels.
    pub resolution: usize,
    /// Channel width at each resolution level of the encoder (the decoder mirrors it);
    /// each level after the first halves the resolution, so the downsampling is
    /// 2^(levels-1).
    pub channels: Vec<usize>,
    /// Residual blocks per level.
    pub res_blocks: usize,
    /// Groups of every group normalization.
    pub norm_groups: usize,
    /// Latent feature width: the LLM's embedding width (576 for SmolLM2-135M).
    pub latent_channels: usize,
    /// Pyramid layers L.
    pub layers: usize,
    /// Words kept in the lexical vocabulary (the codebook's rows).
    pub vocabulary_size: usize,
    /// Which latent positions of a cell feed its target.
    #[serde(default)]
    pub cell_target: CellTarget,
}

impl Default for SpaeConfig {
    /// The shipped default: 64 px, downsampling 4, a 16 x 16 x 576 latent, 6 layers.
    fn default() -> Self {
        Self {
            resolution: 64,
            channels: vec![32, 64, 128],
            res_blocks: 1,
            norm_groups: 8,
            latent_channels: 576,
            layers: 6,
            vocabulary_size: crate::vocabulary::DEFAULT_SIZE,
            cell_target: CellTarget::Mean,
        }
    }
}

impl SpaeConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the model config {}", path.display()))?;
        let config: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid SPAE model config", path.display()))?;
        config.validate().with_context(|| format!("in {}", path.display()))?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(!self.channels.is_empty(), "channels must list at least one width");
        for &c in &self.channels {
            ensure!(c > 0 && c % self.norm_groups == 0, "channel width {c} is not a multiple of norm_groups {}", self.norm_groups);
        }
        ensure!(self.resolution % self.downsampling() == 0, "resolution {} is not divisible by the downsampling {}", self.resolution, self.downsampling());
        ensure!(self.latent_size().is_power_of_two(), "latent size {} is not a power of two", self.latent_size());
        ensure!(self.res_blocks >= 1, "res_blocks must be at least 1");
        ensure!((1..=16).contains(&self.layers), "layers must be 1..=16, not {}", self.layers);
        ensure!(self.vocabulary_size >= 2, "vocabulary_size must be at least 2");
        Ok(())
    }

    /// 2^(levels-1).
    pub fn downsampling(&self) -> usize {
        1 << (self.channels.len() - 1)
    }

    /// G, the side of the latent grid.
    pub fn latent_size(&self) -> usize {
        self.resolution / self.downsampling()
    }

    pub fn pyramid_shape(&self) -> Result<PyramidShape> {
        PyramidShape::new(self.latent_size(), self.layers)
    }
}
