//! The SPAE autoencoder: encoder, SAQ against the frozen word codebook, decoder.
//!
//! A model lives in a folder holding `config.json` ([`SpaeConfig`]) and
//! `model.safetensors`; the codebook comes from the LLM's GGUF file.

mod blocks;
pub mod config;
mod decoder;
mod encoder;
mod refine;
pub mod semantic_branch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use image::RgbImage;
use rand::{Rng, SeedableRng};

use config::BranchMode;
pub use config::SpaeConfig;
use decoder::Decoder;
use encoder::Encoder;
pub use refine::{Refinement, DEFAULT_REFINE_ROUNDS, MAX_REFINE_ROUNDS};
use semantic_branch::SemanticBranch;

use crate::codebook::Codebook;
use crate::image_io;
use crate::pyramid::saq::{self, Quantized};
use crate::pyramid::{Pyramid, PyramidShape};

pub const CONFIG_FILE: &str = "config.json";
/// Initial gain of the encoder's last convolution: LeCun initialisation gives outputs of
/// unit scale, about ten times the per-element scale of SmolLM2's embeddings.
const ENCODER_OUTPUT_GAIN: f64 = 0.1;
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Where a model's weights came from, for the status bar and `spae inspect`.
#[derive(Clone, Debug)]
pub enum WeightsSource {
    File(PathBuf),
    /// Freshly initialised from a seed: untrained, reconstructions are meaningless.
    Seed(u64),
}

impl std::fmt::Display for WeightsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Seed(seed) => write!(f, "untrained (initialised from seed {seed})"),
        }
    }
}

impl WeightsSource {
    /// The model's folder name (`spae-default` for `.../spae-default/model.safetensors`),
    /// short enough for a status line; the full text is the `Display` form.
    pub fn short_name(&self) -> String {
        match self {
            Self::File(path) => path
                .parent()
                .and_then(Path::file_name)
                .map_or_else(|| path.display().to_string(), |name| name.to_string_lossy().into_owned()),
            Self::Seed(seed) => format!("untrained (seed {seed})"),
        }
    }
}

/// What the encoder gives SAQ for a batch.
#[derive(Clone, Debug)]
pub struct Latent {
    /// The latent z (`batch x dim x G x G`), whose cells are the targets of SAQ's layers.
    pub z: Tensor,
    /// Where the semantic branch names the upper words ([`BranchMode::Name`]): layer l's
    /// cell targets (`batch x dim x s_l x s_l`) for l = 1..=named.len(), which then do not
    /// come from z. Empty otherwise.
    pub named: Vec<Tensor>,
}

impl Latent {
    /// Batches joined, in order.
    pub fn cat(parts: &[Latent]) -> Result<Self> {
        let z = Tensor::cat(&parts.iter().map(|p| &p.z).collect::<Vec<_>>(), 0)?;
        let layers = parts.first().map_or(0, |p| p.named.len());
        ensure!(parts.iter().all(|p| p.named.len() == layers), "latents with different named layers");
        let named = (0..layers)
            .map(|l| Ok(Tensor::cat(&parts.iter().map(|p| &p.named[l]).collect::<Vec<_>>(), 0)?))
            .collect::<Result<_>>()?;
        Ok(Self { z, named })
    }
}

pub struct SpaeModel {
    config: SpaeConfig,
    shape: PyramidShape,
    encoder: Encoder,
    decoder: Decoder,
    branch: Option<SemanticBranch>,
    codebook: Arc<Codebook>,
    varmap: VarMap,
    source: WeightsSource,
}

impl SpaeModel {
    /// Opens the model folder `dir` with the codebook from the LLM file `llm`. Where `dir`
    /// holds no weights yet and `allow_untrained` is set, a model initialised from seed 0
    /// stands in (with the folder's config where it has one, else the default), and says
    /// so through [`Self::source`].
    pub fn open(dir: &Path, llm: &Path, allow_untrained: bool) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.exists() && allow_untrained {
            let config = SpaeConfig::default();
            let codebook = Arc::new(Codebook::load(llm, config.vocabulary, config.vocabulary_size)?);
            return Self::from_seed(config, codebook, 0);
        }
        let config = SpaeConfig::load(&config_path)?;
        let codebook = Arc::new(Codebook::load(llm, config.vocabulary, config.vocabulary_size)?);
        if !dir.join(WEIGHTS_FILE).is_file() && allow_untrained {
            // A config written by hand for a new size: its weights start from the seed.
            return Self::from_seed(config, codebook, 0);
        }
        Self::load(dir, codebook)
    }

    /// A model with weights drawn from a fixed seed (deterministic).
    pub fn from_seed(config: SpaeConfig, codebook: Arc<Codebook>, seed: u64) -> Result<Self> {
        let mut model = Self::build(config, codebook, WeightsSource::Seed(seed))?;
        model.initialise(seed)?;
        Ok(model)
    }

    /// Loads `config.json` and `model.safetensors` from `dir`, checking every tensor's
    /// name and shape against what the config asks for.
    pub fn load(dir: impl AsRef<Path>, codebook: Arc<Codebook>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = SpaeConfig::load(&dir.join(CONFIG_FILE))?;
        let weights = dir.join(WEIGHTS_FILE);
        ensure!(
            weights.is_file(),
            "the model folder {} has a config but no weights file {WEIGHTS_FILE} (`spae train` starts from it; other commands run it untrained with --allow-untrained)",
            dir.display()
        );
        let model = Self::build(config, codebook, WeightsSource::File(weights.clone()))?;
        model.load_weights(&weights)?;
        Ok(model)
    }

    fn build(config: SpaeConfig, codebook: Arc<Codebook>, source: WeightsSource) -> Result<Self> {
        config.validate()?;
        ensure!(
            config.latent_channels == codebook.dim(),
            "the model's latent has {} channels but the codebook's words are {}-dimensional",
            config.latent_channels,
            codebook.dim()
        );
        ensure!(
            config.vocabulary_size == codebook.len(),
            "the model was made for {} words but the codebook has {}",
            config.vocabulary_size,
            codebook.len()
        );
        ensure!(
            config.vocabulary == codebook.vocabulary().rule(),
            "the model was made for the {} vocabulary but the codebook holds the {}",
            config.vocabulary.name(),
            codebook.vocabulary().rule().name()
        );
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let encoder = Encoder::new(&config, vb.pp("encoder"))?;
        let decoder = Decoder::new(&config, vb.pp("decoder"))?;
        let branch = match &config.semantic_branch {
            Some(branch) => Some(SemanticBranch::new(
                branch,
                config.latent_channels,
                &crate::paths::resolve(crate::paths::TEACHER),
                vb.pp("branch"),
            )?),
            None => None,
        };
        let shape = config.pyramid_shape()?;
        Ok(Self { config, shape, encoder, decoder, branch, codebook, varmap, source })
    }

    /// Name and shape of every tensor this model's config asks for.
    pub fn expected_tensors(&self) -> BTreeMap<String, Vec<usize>> {
        let data = self.varmap.data().lock().expect("varmap lock");
        data.iter().map(|(name, var)| (name.clone(), var.dims().to_vec())).collect()
    }

    fn load_weights(&self, path: &Path) -> Result<()> {
        // SAFETY: the file is only read; the mapping lives until this function returns.
        let file = unsafe { MmapedSafetensors::new(path) }
            .with_context(|| format!("cannot read the weights file {} as safetensors", path.display()))?;
        let found: BTreeMap<String, (Vec<usize>, Option<DType>)> = file
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, (view.shape().to_vec(), DType::try_from(view.dtype()).ok())))
            .collect();
        let problems = weight_mismatches(&self.expected_tensors(), &found);
        if !problems.is_empty() {
            bail!(
                "{} does not match its config ({} problem(s)):\n  {}",
                path.display(),
                problems.len(),
                problems.join("\n  ")
            );
        }
        let data = self.varmap.data().lock().expect("varmap lock");
        for (name, var) in data.iter() {
            var.set(&file.load(name, &Device::Cpu)?)?;
        }
        Ok(())
    }

    /// Warm start: copies every tensor of another model's weights file whose name and
    /// shape this model shares, leaving the rest as they are. Returns the names of this
    /// model's tensors that were not found there (a branch added to a trained CNN, say).
    /// A residual block that is new as a whole (none of its tensors in the source, as in a
    /// network grown by `res_blocks`) and keeps its input's width gets a zero last
    /// convolution, so it starts as the identity and the grown network computes what the
    /// one it grew from did; blocks the source has at another width keep their
    /// initialisation.
    pub fn warm_start_from(&self, path: &Path) -> Result<Vec<String>> {
        // SAFETY: the file is only read; the mapping lives until this function returns.
        let file = unsafe { MmapedSafetensors::new(path) }
            .with_context(|| format!("cannot read the weights file {} as safetensors", path.display()))?;
        let shapes: BTreeMap<String, Vec<usize>> =
            file.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec())).collect();
        let mut fresh = Vec::new();
        let data = self.varmap.data().lock().expect("varmap lock");
        for (name, var) in data.iter() {
            if shapes.get(name).is_some_and(|shape| shape == var.dims()) {
                var.set(&file.load(name, &Device::Cpu)?.to_dtype(DType::F32)?)?;
            } else {
                fresh.push(name.clone());
            }
        }
        ensure!(fresh.len() < data.len(), "{} shares no tensor with this model", path.display());
        // A block the source knows nothing of and whose skip is the identity (no projection):
        // its zero last convolution makes the whole block the identity.
        let new_block = |block: &str| {
            let prefix = format!("{block}.");
            !shapes.keys().any(|k| k.starts_with(&prefix)) && !data.contains_key(&format!("{block}.skip.weight"))
        };
        for name in &fresh {
            if let Some(block) = name.strip_suffix(".conv2.weight").or_else(|| name.strip_suffix(".conv2.bias")) {
                if new_block(block) {
                    let var = &data[name];
                    var.set(&var.as_tensor().zeros_like()?)?;
                }
            }
        }
        fresh.sort();
        Ok(fresh)
    }

    /// Deterministic LeCun-uniform convolution weights, zero biases, unit norms; the
    /// encoder's last convolution starts small and centred on the codebook's mean word,
    /// so that z begins inside the frozen embedding space instead of ten times outside it.
    fn initialise(&mut self, seed: u64) -> Result<()> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let data = self.varmap.data().lock().expect("varmap lock");
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var = &data[name];
            let dims = var.dims().to_vec();
            let value = if dims.len() == 4 {
                let fan_in = dims[1] * dims[2] * dims[3];
                let bound = (3.0 / fan_in as f32).sqrt();
                let values: Vec<f32> = (0..var.elem_count()).map(|_| rng.random_range(-bound..bound)).collect();
                Tensor::from_vec(values, dims.as_slice(), &Device::Cpu)?
            } else if name.contains("norm") && name.ends_with("weight") {
                Tensor::ones(dims.as_slice(), DType::F32, &Device::Cpu)?
            } else {
                Tensor::zeros(dims.as_slice(), DType::F32, &Device::Cpu)?
            };
            let value = match name.as_str() {
                "encoder.conv_out.weight" => (value * ENCODER_OUTPUT_GAIN)?,
                "encoder.conv_out.bias" => self.codebook.embeddings().mean(0)?,
                semantic_branch::ZERO_INITIALISED => value.zeros_like()?,
                _ => value,
            };
            var.set(&value)?;
        }
        Ok(())
    }

    /// Writes `config.json` and `model.safetensors` into `dir`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let config = serde_json::to_string_pretty(&self.config)?;
        crate::atomic_file::write(&dir.join(CONFIG_FILE), config.as_bytes())?;
        crate::atomic_file::write_via_path(&dir.join(WEIGHTS_FILE), |partial| Ok(self.varmap.save(partial)?))
    }

    pub fn config(&self) -> &SpaeConfig {
        &self.config
    }

    pub fn shape(&self) -> &PyramidShape {
        &self.shape
    }

    pub fn codebook(&self) -> &Arc<Codebook> {
        &self.codebook
    }

    pub fn source(&self) -> &WeightsSource {
        &self.source
    }

    /// The trainable variables (encoder and decoder; the codebook is frozen).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The semantic branch, where the config has one.
    pub fn branch(&self) -> Option<&SemanticBranch> {
        self.branch.as_ref()
    }

    /// Pixels (`batch x 3 x R x R`, -1..1) to the encoder's output: the CNN's latent z,
    /// with the semantic branch's part where there is one (running the frozen teacher on
    /// the pixels).
    pub fn encode_latent(&self, pixels: &Tensor) -> Result<Latent> {
        let grid = match &self.branch {
            Some(branch) => Some(branch.teacher_grid(pixels, &self.shape)?),
            None => None,
        };
        self.encode_latent_with(pixels, grid.as_ref())
    }

    /// [`Self::encode_latent`] with the teacher's grid features already computed
    /// ([`SemanticBranch::teacher_grid`]; training reads them from a cache). They are
    /// required exactly when the model has a branch.
    pub fn encode_latent_with(&self, pixels: &Tensor, grid: Option<&Tensor>) -> Result<Latent> {
        let z = self.encoder.forward(pixels)?;
        match (&self.branch, grid) {
            (Some(branch), Some(grid)) => match branch.config().mode {
                BranchMode::Add => Ok(Latent { z: (z + branch.forward(grid, &self.shape)?)?, named: Vec::new() }),
                BranchMode::Name => Ok(Latent { z, named: branch.cell_projections(grid, &self.shape)? }),
            },
            (None, None) => Ok(Latent { z, named: Vec::new() }),
            (Some(_), None) => bail!("this model's semantic branch needs the teacher's features"),
            (None, Some(_)) => bail!("teacher features given to a model without a semantic branch"),
        }
    }

    /// Dequantized latents zhat to pixels (`batch x 3 x R x R`, -1..1, unclamped).
    pub fn decode_latent(&self, zhat: &Tensor) -> Result<Tensor> {
        Ok(self.decoder.forward(zhat)?)
    }

    /// Pixels to latents to pyramids, keeping every prefix's zhat.
    pub fn quantize(&self, pixels: &Tensor) -> Result<(Latent, Quantized)> {
        let latent = self.encode_latent(pixels)?;
        let quantized = saq::quantize_with(
            &latent.z,
            &latent.named,
            &self.codebook,
            &self.shape,
            self.config.cell_target,
            saq::Search::Exact,
        )?;
        Ok((latent, quantized))
    }

    /// One prepared image (R x R) to its pyramid of words.
    pub fn encode(&self, image: &RgbImage) -> Result<Pyramid> {
        self.encode_refined(image, 0)
    }

    /// The words of the first `layers` layers of each of a batch of prepared images (as
    /// [`Pyramid::prefix_words`] of [`Self::encode`] gives them), encoded a batch at a
    /// time, without searching the layers below.
    pub fn encode_prefix_words(&self, images: &[RgbImage], layers: usize) -> Result<Vec<Vec<u32>>> {
        let mut words = Vec::with_capacity(images.len());
        for chunk in images.chunks(32) {
            let latent = self.encode_latent(&image_io::to_tensor(chunk)?)?;
            words.extend(saq::prefix_words(
                &latent.z,
                &latent.named,
                &self.codebook,
                &self.shape,
                self.config.cell_target,
                layers,
            )?);
        }
        Ok(words)
    }

    /// A pyramid decoded from its first `layers` layers.
    pub fn decode(&self, pyramid: &Pyramid, layers: usize) -> Result<RgbImage> {
        ensure!(pyramid.shape() == &self.shape, "the pyramid's shape does not fit this model");
        let zhat = saq::dequantize(std::slice::from_ref(pyramid), &self.codebook, layers)?;
        let pixels = self.decode_latent(&zhat)?;
        Ok(image_io::from_tensor(&pixels)?.remove(0))
    }
}

/// Every difference between the tensors a config asks for and those a file holds.
fn weight_mismatches(
    expected: &BTreeMap<String, Vec<usize>>,
    found: &BTreeMap<String, (Vec<usize>, Option<DType>)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, shape) in expected {
        match found.get(name) {
            None => problems.push(format!("missing tensor {name} {shape:?}")),
            Some((got, _)) if got != shape => {
                problems.push(format!("tensor {name} has shape {got:?}, the config needs {shape:?}"))
            }
            Some((_, dtype)) if *dtype != Some(DType::F32) => {
                problems.push(format!("tensor {name} is {dtype:?}, expected F32"))
            }
            Some(_) => {}
        }
    }
    for name in found.keys().filter(|n| !expected.contains_key(*n)) {
        problems.push(format!("unexpected tensor {name} (not part of this config)"));
    }
    problems
}
