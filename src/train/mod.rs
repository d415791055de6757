//! `spae train`: the SPAE training loop (docs/method.md section 4) with resumable checkpoints.
//!
//! Losses this loop optimises: pixel MSE of a decoded layer prefix (half the images
//! decode all layers, the rest a random shorter prefix, so every prefix decodes), the
//! commitment term beta * ||z - stopgrad(zhat_L)||^2 (measured relative to the mean
//! squared codebook entry, so beta does not depend on the LLM's embedding scale), and, unless switched off (the
//! control model), semantic guidance of the upper layers ([`semantic`]); optionally a
//! perceptual loss through the teacher's features ([`perceptual`]). The codebook is
//! frozen.

pub mod branch;
pub mod checkpoint;
pub mod decoder;
pub mod log;
pub mod optimizer;
pub mod perceptual;
pub mod relaxed;
pub mod schedule;
pub mod semantic;
pub mod usage;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::codebook::quantized::{QuantizedIndex, QuantizedOptions};
use crate::data::{Dataset, Split};
use crate::model::SpaeModel;
use crate::pyramid::saq;
use checkpoint::Checkpoint;
use log::{StepRecord, TrainingLog};
use optimizer::AdamW;
use schedule::Schedule;
use semantic::{SemanticOptions, Target};

use crate::teacher::efficientnet::EfficientNetLite0;

/// What every training run has, whatever it trains (the whole model, [`train`], or the
/// decoder alone, [`decoder::train_decoder`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunOptions {
    /// Prepared data (`spae prepare-data`).
    pub data_dir: PathBuf,
    /// Checkpoints and the CSV log.
    pub run_dir: PathBuf,
    /// Where the latest weights are exported for use (config.json + model.safetensors).
    pub export_dir: Option<PathBuf>,
    pub batch_size: usize,
    pub schedule: Schedule,
    pub weight_decay: f64,
    /// Share of images decoded from all layers (the rest from a random shorter prefix).
    pub full_prefix_share: f64,
    pub seed: u64,
    pub checkpoint_minutes: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainOptions {
    pub run: RunOptions,
    /// Weight of the commitment term.
    pub commitment: f64,
    /// Semantic guidance; `None` trains the control model without it.
    pub semantic: Option<SemanticOptions>,
    /// Weight of the perceptual loss through the teacher's features (0: off).
    pub perceptual_weight: f64,
    /// SAQ's search in training.
    #[serde(default)]
    pub search: TrainingSearch,
    /// The semantic branch's projector stays as it is (trained before, by `train-branch`).
    /// Where the branch names every guided layer, the semantic loss then reaches nothing
    /// trainable and is not computed.
    #[serde(default)]
    pub freeze_branch: bool,
    /// The word-usage term on the appearance layers ([`usage`]); `None`: off.
    #[serde(default)]
    pub usage: Option<usage::UsageOptions>,
    /// The decoder reads the encoder's latent z itself, not the words: a diagnostic that
    /// trains the network as a continuous autoencoder, to tell its limit from the words'.
    #[serde(default)]
    pub decode_latent: bool,
    /// The relaxed word choice ([`relaxed`]): z's gradient through a soft choice among
    /// each appearance-layer target's nearest words instead of straight through; `None`:
    /// straight through. It searches with the quantized index (see `SearchIndex`).
    #[serde(default)]
    pub relaxed: Option<relaxed::RelaxedOptions>,
}

impl TrainOptions {
    /// The semantic loss's options where a step computes it: on, and not skipped because
    /// a frozen branch names every guided layer (the loss then reaches nothing trainable).
    fn semantic_loss(&self, model: &SpaeModel) -> Option<&SemanticOptions> {
        self.semantic.as_ref().filter(|s| !(self.freeze_branch && model.named_layers() >= s.layers))
    }
}

/// SAQ's nearest-word search in training (encoding, evaluation and the studio always
/// search exactly).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrainingSearch {
    #[default]
    Exact,
    /// Every word ranked by 8-bit products, a shortlist rescored exactly.
    Quantized(QuantizedOptions),
}

impl std::fmt::Display for TrainingSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Self::Exact => write!(f, "exact"),
            Self::Quantized(q) => write!(
                f,
                "quantized, {} words rescored exactly, {}",
                q.shortlist,
                if QuantizedIndex::vectorized() { "AVX-512 VNNI" } else { "portable loop (no AVX-512 VNNI here)" }
            ),
        }
    }
}

/// A [`TrainingSearch`] made ready: the index it searches, built once per run. The relaxed
/// word choice searches the quantized index, whose shortlists hold its candidates (at
/// least K words, at least the default shortlist), whatever the search asked for.
enum SearchIndex {
    Exact,
    Quantized(QuantizedIndex),
    Ranked(QuantizedIndex, usize),
}

impl SearchIndex {
    fn new(
        codebook: &crate::codebook::Codebook,
        search: TrainingSearch,
        relaxed: Option<relaxed::RelaxedOptions>,
    ) -> Result<Self> {
        Ok(match (search, relaxed) {
            (TrainingSearch::Exact, None) => Self::Exact,
            (TrainingSearch::Quantized(options), None) => Self::Quantized(QuantizedIndex::new(codebook, options)?),
            (search, Some(relaxed)) => {
                let asked = match search {
                    TrainingSearch::Quantized(options) => options.shortlist,
                    TrainingSearch::Exact => QuantizedOptions::default().shortlist,
                };
                let shortlist = asked.max(relaxed.candidates);
                Self::Ranked(QuantizedIndex::new(codebook, QuantizedOptions { shortlist })?, relaxed.candidates)
            }
        })
    }

    fn search(&self) -> saq::Search<'_> {
        match self {
            Self::Exact => saq::Search::Exact,
            Self::Quantized(index) => saq::Search::Quantized(index),
            Self::Ranked(index, count) => saq::Search::Ranked(index, *count),
        }
    }
}

/// The run's log as copied beside the exported model.
pub const EXPORTED_LOG: &str = "training_log.csv";

/// How a run ends.
pub enum Stop {
    /// After this many minutes of this invocation (then a checkpoint).
    Minutes(f64),
    /// Once the run has made this many steps in all (then a checkpoint): runs compared
    /// with each other (the semantic run and its control) stop at the same step.
    AtStep(u64),
    /// At the end of the schedule.
    Schedule,
}

impl Stop {
    /// Whether an invocation begun at `started`, the run now at `step`, stops before the
    /// schedule's end.
    fn reached(&self, started: Instant, step: u64) -> bool {
        match *self {
            Self::Minutes(m) => started.elapsed().as_secs_f64() >= m * 60.0,
            Self::AtStep(last) => step >= last,
            Self::Schedule => false,
        }
    }
}

/// What the steps read: a split's images, the teacher's targets for them (semantic
/// guidance on), the teacher's grid features (a model with a semantic branch) and the
/// teacher's network (perceptual loss on).
struct Inputs {
    data: Dataset,
    targets: Option<Vec<Target>>,
    grids: Option<Tensor>,
    teacher: Option<EfficientNetLite0>,
    search: SearchIndex,
}

impl Inputs {
    fn load(model: &SpaeModel, options: &TrainOptions, split: Split) -> Result<Self> {
        let data = Dataset::load(&options.run.data_dir, split, model.config().resolution)?;
        ensure!(data.len() >= options.run.batch_size, "{} images, fewer than one batch", data.len());
        let targets = match &options.semantic {
            Some(semantic) => {
                let relevances = crate::data::relevance_cache::load(&options.run.data_dir, split, data.len())?;
                Some(semantic::targets(&relevances, model.codebook().vocabulary(), semantic))
            }
            None => None,
        };
        let teacher = if options.perceptual_weight > 0.0 {
            Some(EfficientNetLite0::load(&crate::paths::resolve(crate::paths::TEACHER))?)
        } else {
            None
        };
        let grids = crate::data::feature_cache::load_or_compute(&options.run.data_dir, split, &data, model)?;
        ensure!(
            options.relaxed.is_none() || model.config().cell_target == crate::pyramid::CellTarget::Mean,
            "the relaxed word choice is implemented for cell-mean targets only"
        );
        let search = SearchIndex::new(model.codebook(), options.search, options.relaxed)?;
        Ok(Self { data, targets, grids, teacher, search })
    }
}

fn optimizer_for(model: &SpaeModel, options: &TrainOptions) -> Result<AdamW> {
    let vars = variables(model, |name| !(options.freeze_branch && name.starts_with(BRANCH_VARIABLES)));
    AdamW::new(vars, options.run.weight_decay)
}

/// Where the semantic branch's trained variables are named.
const BRANCH_VARIABLES: &str = "branch.";

/// The model's trainable variables whose names `keep` accepts, with their names.
fn variables(model: &SpaeModel, keep: impl Fn(&str) -> bool) -> Vec<(String, candle_core::Var)> {
    let data = model.varmap().data().lock().expect("varmap");
    data.iter().filter(|(name, _)| keep(name)).map(|(n, v)| (n.clone(), v.clone())).collect()
}

/// What `spae bench-train` measures: timed steps and the arithmetic they stand for.
pub struct Benchmark {
    pub records: Vec<StepRecord>,
    /// Floating-point operations of one image's step: the convolutions' forward pass
    /// (counted as they run) times 3 for the backward pass, SAQ's search, and the semantic
    /// loss's distances (forward and backward) where it is on. Slightly high: the first
    /// convolution needs no input gradient, and the perceptual loss's teacher pass on the
    /// target pixels none at all.
    pub flops_per_image: f64,
    /// For a search other than the exact one: per layer, the share of held-out targets
    /// where it finds the exact search's word.
    pub search_agreement: Option<Vec<f64>>,
    /// Whether the steps computed the semantic loss (on, and not skipped because a frozen
    /// branch names every guided layer).
    pub semantic_loss: bool,
}

/// `spae bench-train`: `steps` timed training steps (after one untimed) on `split`,
/// touching no checkpoint or log; the model's weights change.
pub fn benchmark(model: &SpaeModel, options: &TrainOptions, split: Split, steps: u64) -> Result<Benchmark> {
    let inputs = Inputs::load(model, options, split)?;
    let mut optimizer = optimizer_for(model, options)?;
    crate::compute::conv::take_forward_flops();
    train_step(model, &inputs, &mut optimizer, options, 0)?;
    let conv_flops = crate::compute::conv::take_forward_flops() as f64 / options.run.batch_size as f64;
    let records =
        (1..=steps).map(|step| train_step(model, &inputs, &mut optimizer, options, step)).collect::<Result<_>>()?;
    let (codebook, shape) = (model.codebook(), model.shape());
    let search = inputs.search.search();
    let computed = options.semantic_loss(model);
    let semantic_flops = computed.map_or(0.0, |s| 3.0 * semantic::forward_flops(shape, codebook, s));
    let usage_flops = options
        .usage
        .as_ref()
        .map_or(0.0, |u| 3.0 * usage::forward_flops(shape, codebook, u, model.named_layers(), options.run.batch_size));
    let relaxed_flops =
        options.relaxed.as_ref().map_or(0.0, |r| relaxed::flops(shape, codebook.dim(), model.named_layers(), r));
    let flops_per_image = 3.0 * conv_flops
        + shape.tokens_in_prefix(shape.layers()) as f64 * search.flops_per_target(codebook)
        + semantic_flops
        + usage_flops
        + relaxed_flops;
    let search_agreement = match search {
        saq::Search::Exact => None,
        _ => {
            // The first 64 images of the split, as encoding sees them.
            let indices: Vec<usize> = (0..inputs.data.len().min(64)).collect();
            let pixels = inputs.data.batch(&indices, &vec![false; indices.len()])?;
            let grid = inputs
                .grids
                .as_ref()
                .map(|g| crate::data::feature_cache::batch(g, &indices, &vec![false; indices.len()]))
                .transpose()?;
            let latent = model.encode_latent_with(&pixels, grid.as_ref())?;
            Some(saq::search_agreement(&latent.z, &latent.named, codebook, shape, model.config().cell_target, search)?)
        }
    };
    Ok(Benchmark { records, flops_per_image, search_agreement, semantic_loss: computed.is_some() })
}

/// Trains `model` (fresh, or restored from the run's checkpoint when `resume`).
pub fn train(model: &SpaeModel, options: &TrainOptions, resume: bool, stop: Stop) -> Result<()> {
    let inputs = Inputs::load(model, options, Split::Train)?;
    std::fs::create_dir_all(&options.run.run_dir)?;
    let mut optimizer = optimizer_for(model, options)?;
    let mut elapsed_before = 0.0;
    if resume {
        if let Some(checkpoint) = Checkpoint::latest(&options.run.run_dir)? {
            elapsed_before = checkpoint.restore(model, &mut optimizer)?;
            eprintln!(
                "resumed from step {} ({:.1} h of training so far)",
                optimizer.step_count(),
                elapsed_before / 3600.0
            );
        }
    }
    let mut log = TrainingLog::open(&options.run.run_dir.join("log.csv"), optimizer.step_count())?;
    let started = Instant::now();
    let elapsed = || elapsed_before + started.elapsed().as_secs_f64();
    let export = options.run.export_dir.as_deref().map(|dir| (dir, EXPORTED_LOG));
    let mut last_checkpoint = Instant::now();
    let total = options.run.schedule.total_steps;
    let bar = ProgressBar::new(total).with_position(optimizer.step_count());
    bar.set_style(
        ProgressStyle::with_template("step {pos}/{len} [{bar:30}] {msg} ({eta} left in the schedule)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    loop {
        let step = optimizer.step_count();
        if step >= total || stop.reached(started, step) {
            break;
        }
        let record = train_step(model, &inputs, &mut optimizer, options, step)?;
        bar.set_message(format!(
            "loss {:.4} (pixel {:.4}, commit {:.4}, semantic {}, usage {}) PSNR {:.1} dB, {:.1} img/s",
            record.loss,
            record.pixel_mse,
            record.commitment,
            record.semantic.map_or("off".to_string(), |s| format!("{s:.4}")),
            record.usage.map_or("off".to_string(), |u| format!("{u:.4}")),
            record.psnr_db,
            options.run.batch_size as f64 / record.seconds_total
        ));
        bar.set_position(step + 1);
        if bar.is_hidden() && (step + 1) % 25 == 0 {
            // Not a terminal (a background run): a plain line now and then instead.
            eprintln!("step {}/{total}: {}", step + 1, bar.message());
        }
        log.append(&record)?;
        if last_checkpoint.elapsed().as_secs_f64() >= options.run.checkpoint_minutes * 60.0 {
            save(model, &optimizer, &options.run.run_dir, export, elapsed(), &mut log)?;
            last_checkpoint = Instant::now();
        }
    }
    save(model, &optimizer, &options.run.run_dir, export, elapsed(), &mut log)?;
    bar.finish();
    Ok(())
}

/// A checkpoint in `run_dir`, and the model with its log (named `exported_log`) copied
/// to `export_dir`.
fn save(
    model: &SpaeModel,
    optimizer: &AdamW,
    run_dir: &std::path::Path,
    export: Option<(&std::path::Path, &str)>,
    elapsed: f64,
    log: &mut TrainingLog,
) -> Result<()> {
    log.flush()?;
    Checkpoint::save(run_dir, model, optimizer, elapsed)?;
    if let Some((dir, exported_log)) = export {
        model.save(dir)?;
        let log_path = run_dir.join("log.csv");
        let log_bytes = std::fs::read(&log_path).with_context(|| format!("cannot read {}", log_path.display()))?;
        crate::atomic_file::write(&dir.join(exported_log), &log_bytes)?;
    }
    Ok(())
}

/// The images of a step: a fresh permutation each epoch, all fixed by the seed.
fn batch_indices(len: usize, batch: usize, seed: u64, step: u64) -> Vec<usize> {
    let per_epoch = (len / batch) as u64;
    let (epoch, position) = (step / per_epoch, (step % per_epoch) as usize);
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    order[position * batch..(position + 1) * batch].to_vec()
}

fn train_step(
    model: &SpaeModel,
    inputs: &Inputs,
    optimizer: &mut AdamW,
    options: &TrainOptions,
    step: u64,
) -> Result<StepRecord> {
    let data = &inputs.data;
    let t0 = Instant::now();
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(options.run.seed.wrapping_add(step.wrapping_mul(0x2545_F491_4F6C_DD1D)));
    let indices = batch_indices(data.len(), options.run.batch_size, options.run.seed, step);
    let flips: Vec<bool> = indices.iter().map(|_| rng.random_bool(0.5)).collect();
    let pixels = data.batch(&indices, &flips)?;
    let layers = model.shape().layers();

    let grid = inputs.grids.as_ref().map(|g| crate::data::feature_cache::batch(g, &indices, &flips)).transpose()?;
    let latent = model.encode_latent_with(&pixels, grid.as_ref())?;
    let z = &latent.z;
    let t1 = Instant::now();
    let search = inputs.search.search();
    let quantized =
        saq::quantize_with(z, &latent.named, model.codebook(), model.shape(), model.config().cell_target, search)?;
    let t2 = Instant::now();
    // Each image decodes from all layers or from a random shorter prefix.
    let prefixes: Vec<usize> = (0..indices.len())
        .map(|_| {
            if rng.random_bool(options.run.full_prefix_share) || layers == 1 {
                layers
            } else {
                rng.random_range(1..layers)
            }
        })
        .collect();
    let zhat = Tensor::stack(
        &prefixes
            .iter()
            .enumerate()
            .map(|(b, &l)| quantized.prefixes[l - 1].get(b))
            .collect::<candle_core::Result<Vec<_>>>()?,
        0,
    )?;
    let reconstruction = if options.decode_latent {
        model.decode_latent(z)?
    } else {
        let input = match options.relaxed {
            Some(relaxed) => relaxed::decoder_input(
                z,
                &zhat,
                &prefixes,
                latent.named.len(),
                &quantized,
                model.codebook(),
                model.shape(),
                relaxed,
            )?,
            None => saq::straight_through(z, &zhat)?,
        };
        model.decode_latent(&input)?
    };
    let pixel_mse = (&reconstruction - &pixels)?.sqr()?.mean_all()?;
    let commitment =
        (saq::commitment_loss(z, &quantized.prefixes[layers - 1])? / model.codebook().mean_square() as f64)?;
    let mut loss = (&pixel_mse + (&commitment * options.commitment)?)?;
    let perceptual = match &inputs.teacher {
        Some(teacher) => {
            let term = (perceptual::loss(teacher, &reconstruction, &pixels)? * options.perceptual_weight)?;
            loss = (loss + &term)?;
            Some(term.to_scalar::<f32>()? as f64)
        }
        None => None,
    };
    let semantic = match (inputs.targets.as_deref(), options.semantic_loss(model)) {
        (Some(targets), Some(semantic)) => {
            let batch_targets: Vec<&Target> = indices.iter().map(|&i| &targets[i]).collect();
            let term = semantic::loss(
                z,
                &latent.named,
                &quantized.prefixes,
                model.codebook(),
                model.shape(),
                model.config().cell_target,
                &batch_targets,
                semantic,
            )?;
            loss = (loss + &term)?;
            Some(term.to_scalar::<f32>()? as f64)
        }
        _ => None,
    };
    let usage = match &options.usage {
        Some(usage) => {
            let term = usage::loss(
                z,
                latent.named.len(),
                &quantized.prefixes,
                model.codebook(),
                model.shape(),
                model.config().cell_target,
                usage,
                &mut rng,
            )?;
            loss = (loss + &term)?;
            Some(term.to_scalar::<f32>()? as f64)
        }
        None => None,
    };
    let t3 = Instant::now();
    let lr = options.run.schedule.lr(step);
    optimizer.backward_step(&loss, lr)?;
    let t4 = Instant::now();

    let pixel = pixel_mse.to_scalar::<f32>()? as f64;
    Ok(StepRecord {
        step: step + 1,
        lr,
        loss: loss.to_scalar::<f32>()? as f64,
        pixel_mse: pixel,
        commitment: commitment.to_scalar::<f32>()? as f64,
        semantic,
        perceptual,
        usage,
        psnr_db: crate::eval::metrics::psnr_of_unit_range_mse(pixel),
        seconds_encoder: (t1 - t0).as_secs_f64(),
        seconds_search: (t2 - t1).as_secs_f64(),
        seconds_decoder_and_losses: (t3 - t2).as_secs_f64(),
        seconds_backward: (t4 - t3).as_secs_f64(),
        seconds_total: (t4 - t0).as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_each_epoch_once() {
        let mut seen: Vec<usize> = (0..5).flat_map(|s| batch_indices(20, 4, 7, s)).collect();
        seen.sort();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
        assert_ne!(batch_indices(20, 4, 7, 0), batch_indices(20, 4, 7, 5), "a new order each epoch");
        assert_eq!(batch_indices(20, 4, 7, 3), batch_indices(20, 4, 7, 3));
    }
}
