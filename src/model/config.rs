//! The model's configuration, stored as `config.json` beside its weights.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::codebook::vocabulary::VocabularyRule;
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
    /// Residual blocks per level of the decoder (absent: `res_blocks`), so a decoder can
    /// grow alone (`spae train-decoder --init-from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_res_blocks: Option<usize>,
    /// Groups of every group normalization.
    pub norm_groups: usize,
    /// Latent feature width: the LLM's embedding width (576 for SmolLM2-135M).
    pub latent_channels: usize,
    /// Pyramid layers L.
    pub layers: usize,
    /// Each layer's weight in the running mean, layer 1 first (absent: all 1, the plain
    /// mean; docs/method.md section 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_weights: Option<Vec<u32>>,
    /// Words kept in the lexical vocabulary (the codebook's rows).
    pub vocabulary_size: usize,
    /// Which whole-word tokens those are (absent: the commonest).
    #[serde(default)]
    pub vocabulary: VocabularyRule,
    /// Which latent positions of a cell feed its target.
    #[serde(default)]
    pub cell_target: CellTarget,
    /// The semantic branch over the frozen teacher's features (docs/method.md section 2);
    /// absent: the encoder is the CNN alone, trained from scratch.
    #[serde(default)]
    pub semantic_branch: Option<SemanticBranchConfig>,
}

/// The semantic branch: the frozen teacher's head features, averaged over the cells of
/// the upper layers, projected into the codebook's space and added to the latent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticBranchConfig {
    /// Side in pixels of the teacher's input (the image is resized to it): a multiple of
    /// 32 whose feature map (`teacher_input / 32` wide) the deepest shaped layer's grid
    /// divides.
    pub teacher_input: usize,
    /// Hidden width of the projector.
    pub hidden: usize,
    /// The branch shapes layers 1..=layers.
    pub layers: usize,
    /// How the branch shapes them (absent: `add`).
    #[serde(default)]
    pub mode: BranchMode,
}

/// How the semantic branch enters the pyramid (docs/method.md section 5a).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchMode {
    /// Its projections are added to the CNN's latent, and SAQ picks every layer from the
    /// sum.
    #[default]
    Add,
    /// Its projection of each cell of layers 1..=layers is that cell's SAQ target, so the
    /// branch alone names the upper words; the CNN's latent serves the layers below.
    Name,
}

/// Width of the teacher's head features (EfficientNet-Lite0).
pub const TEACHER_FEATURES: usize = 1280;

impl Default for SpaeConfig {
    /// The shipped default: 64 px, downsampling 4, a 16 x 16 x 576 latent, 6 layers, the
    /// visual vocabulary, a semantic branch that names the words of layers 1-3.
    fn default() -> Self {
        Self {
            resolution: 64,
            channels: vec![32, 64, 128],
            res_blocks: 1,
            decoder_res_blocks: None,
            norm_groups: 8,
            latent_channels: 576,
            layers: 6,
            layer_weights: None,
            vocabulary_size: crate::codebook::vocabulary::DEFAULT_SIZE,
            vocabulary: crate::codebook::vocabulary::DEFAULT_RULE,
            cell_target: CellTarget::Mean,
            semantic_branch: Some(SemanticBranchConfig {
                teacher_input: 128,
                hidden: 512,
                layers: 3,
                mode: BranchMode::Name,
            }),
        }
    }
}

/// Bounds on a config's sizes, checked by [`SpaeConfig::validate`]. They are wide (the
/// shipped model is 64 px, widths up to 128) but keep a loaded model's weights and one
/// image's largest activation under 256 MiB each.
pub mod limits {
    pub const RESOLUTION: usize = 1024;
    pub const LEVELS: usize = 6;
    pub const WIDTH: usize = 2048;
    pub const GROUPS: usize = 256;
    pub const RES_BLOCKS: usize = 8;
    pub const LATENT_CHANNELS: usize = 8192;
    pub const VOCABULARY: usize = 1 << 20;
    /// 64 M parameters: 256 MiB of f32.
    pub const PARAMETERS: usize = 1 << 26;
    /// 64 M values: 256 MiB of f32 for the largest activation of one image.
    pub const FEATURE_MAP_VALUES: usize = 1 << 26;
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

    /// Checks every size against the bounds below before anything is allocated, so that a
    /// crafted config is refused with the field it gets wrong instead of exhausting memory.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1..=limits::LEVELS).contains(&self.channels.len()),
            "channels must list 1 to {} widths, not {}",
            limits::LEVELS,
            self.channels.len()
        );
        ensure!(
            (1..=limits::GROUPS).contains(&self.norm_groups),
            "norm_groups must be 1..={}, not {}",
            limits::GROUPS,
            self.norm_groups
        );
        for &c in &self.channels {
            ensure!((1..=limits::WIDTH).contains(&c), "channel width {c} is outside 1..={}", limits::WIDTH);
            ensure!(
                c.is_multiple_of(self.norm_groups),
                "channel width {c} is not a multiple of norm_groups {}",
                self.norm_groups
            );
        }
        ensure!(
            (1..=limits::RESOLUTION).contains(&self.resolution),
            "resolution must be 1..={} pixels, not {}",
            limits::RESOLUTION,
            self.resolution
        );
        ensure!(
            self.resolution.is_multiple_of(self.downsampling()),
            "resolution {} is not divisible by the downsampling {}",
            self.resolution,
            self.downsampling()
        );
        ensure!(self.latent_size().is_power_of_two(), "latent size {} is not a power of two", self.latent_size());
        ensure!(
            (1..=limits::RES_BLOCKS).contains(&self.res_blocks),
            "res_blocks must be 1..={}, not {}",
            limits::RES_BLOCKS,
            self.res_blocks
        );
        ensure!(
            (1..=limits::RES_BLOCKS).contains(&self.decoder_blocks()),
            "decoder_res_blocks must be 1..={}, not {}",
            limits::RES_BLOCKS,
            self.decoder_blocks()
        );
        ensure!(
            (1..=limits::LATENT_CHANNELS).contains(&self.latent_channels),
            "latent_channels must be 1..={}, not {}",
            limits::LATENT_CHANNELS,
            self.latent_channels
        );
        ensure!((1..=16).contains(&self.layers), "layers must be 1..=16, not {}", self.layers);
        self.pyramid_shape()?;
        ensure!(
            (2..=limits::VOCABULARY).contains(&self.vocabulary_size),
            "vocabulary_size must be 2..={}, not {}",
            limits::VOCABULARY,
            self.vocabulary_size
        );
        if let Some(branch) = &self.semantic_branch {
            ensure!(
                (1..=self.layers).contains(&branch.layers),
                "semantic_branch.layers must be 1..={} (the pyramid's layers), not {}",
                self.layers,
                branch.layers
            );
            ensure!(
                (1..=limits::WIDTH).contains(&branch.hidden),
                "semantic_branch.hidden must be 1..={}, not {}",
                limits::WIDTH,
                branch.hidden
            );
            ensure!(
                (32..=limits::RESOLUTION).contains(&branch.teacher_input) && branch.teacher_input.is_multiple_of(32),
                "semantic_branch.teacher_input must be a multiple of 32 in 32..={}, not {}",
                limits::RESOLUTION,
                branch.teacher_input
            );
            let grid = self.pyramid_shape()?.grid_size(branch.layers);
            let (input, side) = (branch.teacher_input, branch.teacher_input / 32);
            ensure!(
                side.is_multiple_of(grid),
                "semantic_branch.teacher_input {input} gives a {side} x {side} feature map, which layer {}'s {grid} x \
                 {grid} grid does not divide",
                branch.layers
            );
        }
        let parameters = self.parameter_count();
        ensure!(
            parameters <= limits::PARAMETERS,
            "channels {:?} with {} res_blocks ({} in the decoder) need {parameters} parameters ({} MiB); the limit \
             is {} ({} MiB)",
            self.channels,
            self.res_blocks,
            self.decoder_blocks(),
            (parameters * 4) >> 20,
            limits::PARAMETERS,
            (limits::PARAMETERS * 4) >> 20
        );
        let largest = self.largest_feature_map();
        ensure!(
            largest <= limits::FEATURE_MAP_VALUES,
            "resolution {} with channels {:?} needs a feature map of {largest} values per image; the limit is {}",
            self.resolution,
            self.channels,
            limits::FEATURE_MAP_VALUES
        );
        Ok(())
    }

    /// Trainable parameters of the encoder and decoder this config describes (every
    /// convolution has a bias, every group norm a scale and a shift).
    pub fn parameter_count(&self) -> usize {
        let conv = |i: usize, o: usize, k: usize| o * i * k * k + o;
        let norm = |c: usize| 2 * c;
        let block = |i: usize, o: usize| {
            norm(i) + conv(i, o, 3) + norm(o) + conv(o, o, 3) + if i == o { 0 } else { conv(i, o, 1) }
        };
        // The levels of a CNN half: residual blocks, then a resampling convolution between
        // levels; `resample(width, next width)` gives its parameters and output width.
        let levels = |widths: &[usize], blocks: usize, resample: &dyn Fn(usize, usize) -> (usize, usize)| {
            let mut total = 0;
            let mut in_c = widths[0];
            for (i, &c) in widths.iter().enumerate() {
                for _ in 0..blocks {
                    total += block(in_c, c);
                    in_c = c;
                }
                if let Some(&next) = widths.get(i + 1) {
                    let (parameters, out_c) = resample(c, next);
                    total += parameters;
                    in_c = out_c;
                }
            }
            total
        };
        let widths = &self.channels;
        let first = widths[0];
        let last = widths[widths.len() - 1];
        let encoder = conv(3, first, 3)
            + levels(widths, self.res_blocks, &|c, _| (conv(c, c, 3), c))
            + norm(last)
            + conv(last, self.latent_channels, 1);
        let reversed: Vec<usize> = widths.iter().rev().copied().collect();
        let decoder = conv(self.latent_channels, last, 1)
            + levels(&reversed, self.decoder_blocks(), &|c, next| (conv(c, next, 3), next))
            + norm(first)
            + conv(first, 3, 3);
        let branch = self.semantic_branch.as_ref().map_or(0, |b| {
            conv(TEACHER_FEATURES, b.hidden, 1)
                + conv(b.hidden, self.latent_channels, 1)
                + b.layers * self.latent_channels
        });
        encoder + decoder + branch
    }

    /// Values in the largest activation of one image: every level's width times its area,
    /// and the latent.
    fn largest_feature_map(&self) -> usize {
        let level =
            self.channels.iter().enumerate().map(|(i, &c)| c * (self.resolution >> i).pow(2)).max().unwrap_or(0);
        level.max(self.latent_channels * self.latent_size().pow(2))
    }

    /// Residual blocks per level of the decoder.
    pub fn decoder_blocks(&self) -> usize {
        self.decoder_res_blocks.unwrap_or(self.res_blocks)
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
        let shape = PyramidShape::new(self.latent_size(), self.layers)?;
        match &self.layer_weights {
            Some(weights) => shape.with_weights(weights),
            None => Ok(shape),
        }
    }
}
