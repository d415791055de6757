//! `spae prepare-data`, `train` and `bench-train`: the data, the training run and its
//! timing.

use std::path::{Path, PathBuf};

use anyhow::Result;

use spae::codebook::quantized::{QuantizedIndex, QuantizedOptions};
use spae::codebook::Codebook;
use spae::data::prepare::{self, PrepareOptions};
use spae::data::{relevance_cache, Dataset, Split};
use spae::paths;
use spae::teacher::relevance::SemanticTeacher;
use spae::train::log::StepRecord;
use spae::train::relaxed::RelaxedOptions;
use spae::train::schedule::Schedule;
use spae::train::semantic::{self, SemanticOptions};
use spae::train::usage::UsageOptions;
use spae::train::{RunOptions, Stop, TrainOptions, TrainingSearch};

use crate::Session;

#[derive(clap::Args)]
pub struct PrepareDataArgs {
    #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
    cache: PathBuf,
    #[arg(long, default_value_t = 64)]
    resolution: u32,
    /// Seed of the held-out split and the photo crops.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl PrepareDataArgs {
    /// Prepares the splits, then annotates both with the teacher's relevances.
    pub fn run(self, llm: &Path) -> Result<()> {
        let options = PrepareOptions { resolution: self.resolution, seed: self.seed, ..Default::default() };
        prepare::prepare(&self.cache, &options)?;
        let codebook =
            Codebook::load(llm, spae::codebook::vocabulary::DEFAULT_RULE, spae::codebook::vocabulary::DEFAULT_SIZE)?;
        let teacher = SemanticTeacher::load(
            &paths::resolve(paths::TEACHER),
            &paths::resolve(paths::IMAGENET_CLASSES),
            &codebook,
        )?;
        let dir = prepare::data_dir(&self.cache);
        for split in [Split::HeldOut, Split::Train] {
            let data = Dataset::load(&dir, split, self.resolution as usize)?;
            relevance_cache::annotate(&dir, split, &data, &teacher, codebook.vocabulary())?;
        }
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct VocabularyArgs {
    #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
    cache: PathBuf,
    /// Where the word list goes (the file a model with the visual vocabulary reads).
    #[arg(long, default_value_os_t = paths::resolve(paths::VISUAL_VOCABULARY))]
    out: PathBuf,
    #[arg(long, default_value_t = spae::codebook::vocabulary::DEFAULT_SIZE)]
    size: usize,
    /// Replace a different list already at --out (the models made for it would then read
    /// other words than they were trained on).
    #[arg(long)]
    force: bool,
}

impl VocabularyArgs {
    /// Chooses the visual vocabulary from the teacher's class names and the training
    /// split's texts, writes it, and says which words entered and left.
    pub fn run(self, llm: &Path) -> Result<()> {
        let tokens = spae::llm::gguf::LlmFile::open(llm)?.tokens()?;
        let classes = spae::teacher::relevance::read_class_names(&paths::resolve(paths::IMAGENET_CLASSES))?;
        let samples = Dataset::load_samples(&prepare::data_dir(&self.cache), Split::Train)?;
        let texts: Vec<String> = samples
            .iter()
            .map(|s| format!("{} {}", relevance_cache::sample_text(s), s.subcategory.as_deref().unwrap_or_default()))
            .collect();
        let choice =
            spae::codebook::visual::choose(&tokens, classes.iter().chain(&texts).map(String::as_str), self.size)?;
        let list: String = choice.words.iter().map(|w| format!("{w}\n")).collect();
        let present = std::fs::read_to_string(&self.out).ok();
        anyhow::ensure!(
            self.force || present.as_ref().is_none_or(|p| *p == list),
            "{} holds a different word list, which the models made for the visual vocabulary were trained on; \
             writing this one would change their words (--force replaces it, or --out writes elsewhere)",
            self.out.display()
        );
        spae::atomic_file::write(&self.out, list.as_bytes())?;
        let sample = |words: &[String]| words.iter().take(40).cloned().collect::<Vec<_>>().join(" ");
        println!(
            "{} words written to {}: {} anchored by the class names and {} training texts",
            choice.words.len(),
            self.out.display(),
            choice.anchored,
            samples.len()
        );
        println!(
            "{} entered (not among the commonest {}): {}",
            choice.entered.len(),
            self.size,
            sample(&choice.entered)
        );
        println!("{} left (the least common of those): {}", choice.left.len(), sample(&choice.left));
        Ok(())
    }
}

/// What a training step is: the data, the batch and the losses (`train` and
/// `bench-train` alike).
#[derive(clap::Args)]
pub struct StepArgs {
    #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
    cache: PathBuf,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Weight of the semantic guidance; 0 trains the control model without it.
    #[arg(long, default_value_t = SemanticOptions::default().weight)]
    semantic_weight: f64,
    /// Layers 2..=N of the semantic guidance give each cell a word of its own (0: every
    /// cell is pulled to the image's whole target).
    #[arg(long, default_value_t = SemanticOptions::default().distinct_layers)]
    distinct_layers: usize,
    /// alpha: how strongly a word's semantic target is discounted by the share of images
    /// it is relevant to (0: the teacher's relevances as they are).
    #[arg(long, default_value_t = SemanticOptions::default().frequency_penalty)]
    frequency_penalty: f64,
    /// Weight of the perceptual loss through the teacher's features (0: off).
    #[arg(long, default_value_t = 0.0)]
    perceptual_weight: f64,
    /// Weight beta of the commitment term (relative to the codebook's power).
    #[arg(long, default_value_t = 1.0)]
    commitment: f64,
    /// SAQ's nearest-word search in training: `quantized` (every word ranked by 8-bit
    /// products on AVX-512 VNNI, a shortlist rescored exactly) or `exact`; `auto` is
    /// `quantized` where the CPU has AVX-512 VNNI and `exact` elsewhere. See the README's
    /// training speed.
    #[arg(long, value_enum, default_value_t = SearchChoice::Auto)]
    search: SearchChoice,
    /// Words per target the quantized search rescores exactly (default 16).
    #[arg(long)]
    search_shortlist: Option<usize>,
    /// Keep the semantic branch's projector as it is (trained before by `train-branch`);
    /// where the branch names the guided layers, the semantic loss is then skipped.
    #[arg(long)]
    freeze_branch: bool,
    /// The share of a batch's images decoded from all layers; the others decode from a
    /// random shorter prefix (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    full_prefix_share: f64,
    /// Weight of the word-usage term on the appearance layers (0: off).
    #[arg(long, default_value_t = 0.0)]
    usage_weight: f64,
    /// tau of the word-usage term's soft assignment.
    #[arg(long, default_value_t = UsageOptions::default().temperature)]
    usage_temperature: f64,
    /// A diagnostic: the decoder reads the encoder's latent z itself instead of the
    /// words, so the network trains as a continuous autoencoder (its PSNR against the
    /// words' tells how much the words lose).
    #[arg(long)]
    decode_latent: bool,
    /// The relaxed word choice: z's gradient passes a soft choice among each appearance
    /// word's nearest words instead of straight through (docs/method.md section 3).
    #[arg(long)]
    relaxed: bool,
    /// Nearest words per target among which the relaxed choice is soft (2 to 64; default
    /// 16).
    #[arg(long)]
    relaxed_candidates: Option<usize>,
    /// The relaxed choice's temperature, a share of the spread of the candidates' squared
    /// distances (above 0; default 0.5).
    #[arg(long)]
    relaxed_temperature: Option<f32>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SearchChoice {
    Auto,
    Exact,
    Quantized,
}

impl StepArgs {
    /// The training options for these steps under a schedule of `steps` steps peaking at
    /// `lr`, with `seed`; `export_dir` receives the latest weights.
    fn options(
        &self,
        steps: u64,
        lr: f64,
        seed: u64,
        run_dir: PathBuf,
        export_dir: Option<PathBuf>,
    ) -> Result<TrainOptions> {
        anyhow::ensure!(
            !(self.relaxed && self.search == SearchChoice::Exact),
            "--relaxed takes its candidates from the quantized search's shortlists: drop --search exact"
        );
        let choice = match self.search {
            SearchChoice::Auto if QuantizedIndex::vectorized() || self.relaxed => SearchChoice::Quantized,
            SearchChoice::Auto => SearchChoice::Exact,
            chosen => chosen,
        };
        anyhow::ensure!(
            choice == SearchChoice::Quantized || self.search_shortlist.is_none(),
            "--search-shortlist sizes the quantized search: add --search quantized"
        );
        anyhow::ensure!(self.search_shortlist != Some(0), "--search-shortlist must be at least 1");
        checked_full_prefix_share(self.full_prefix_share)?;
        anyhow::ensure!(
            self.usage_weight >= 0.0 && self.usage_temperature > 0.0,
            "--usage-weight must be at least 0 and --usage-temperature above 0 (got {} and {})",
            self.usage_weight,
            self.usage_temperature
        );
        anyhow::ensure!(
            self.relaxed || (self.relaxed_candidates.is_none() && self.relaxed_temperature.is_none()),
            "--relaxed-candidates and --relaxed-temperature set the relaxed choice: add --relaxed"
        );
        let relaxed = RelaxedOptions {
            candidates: self.relaxed_candidates.unwrap_or(RelaxedOptions::default().candidates),
            temperature: self.relaxed_temperature.unwrap_or(RelaxedOptions::default().temperature),
        };
        anyhow::ensure!(
            (2..=64).contains(&relaxed.candidates) && relaxed.temperature > 0.0 && relaxed.temperature.is_finite(),
            "--relaxed-candidates must be 2 to 64 and --relaxed-temperature above 0 (got {} and {})",
            relaxed.candidates,
            relaxed.temperature
        );
        let frequency_penalty = semantic::checked_frequency_penalty(self.frequency_penalty)?;
        let search = match choice {
            SearchChoice::Auto | SearchChoice::Exact => TrainingSearch::Exact,
            SearchChoice::Quantized => TrainingSearch::Quantized(QuantizedOptions {
                shortlist: self.search_shortlist.unwrap_or(QuantizedOptions::default().shortlist),
            }),
        };
        Ok(TrainOptions {
            run: RunOptions {
                data_dir: prepare::data_dir(&self.cache),
                run_dir,
                export_dir,
                batch_size: self.batch_size,
                schedule: Schedule { peak_lr: lr, warmup_steps: 200.min(steps / 10), total_steps: steps, floor: 0.1 },
                weight_decay: 1e-4,
                full_prefix_share: self.full_prefix_share,
                seed,
                checkpoint_minutes: 5.0,
            },
            commitment: self.commitment,
            semantic: (self.semantic_weight > 0.0).then(|| SemanticOptions {
                weight: self.semantic_weight,
                distinct_layers: self.distinct_layers,
                frequency_penalty,
                ..Default::default()
            }),
            perceptual_weight: self.perceptual_weight,
            search,
            freeze_branch: self.freeze_branch,
            usage: (self.usage_weight > 0.0).then(|| UsageOptions {
                weight: self.usage_weight,
                temperature: self.usage_temperature,
                ..Default::default()
            }),
            decode_latent: self.decode_latent,
            relaxed: self.relaxed.then_some(relaxed),
        })
    }
}

#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    step: StepArgs,
    /// Checkpoints and the CSV log.
    #[arg(long, default_value_os_t = paths::resolve(paths::DEFAULT_RUN_DIR))]
    run: PathBuf,
    #[command(flatten)]
    control: RunControl,
    /// Length of the learning-rate schedule.
    #[arg(long, default_value_t = 20_000)]
    steps: u64,
    #[arg(long, default_value_t = 5e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Warm start: before the first step, copy every tensor that this model shares
    /// (same name and shape) from another model folder's weights (a checkpoint, when
    /// resuming, takes precedence).
    #[arg(long)]
    init_from: Option<PathBuf>,
}

impl TrainArgs {
    /// The run's options; the model folder receives the latest weights.
    fn options(&self, model_dir: &Path) -> Result<TrainOptions> {
        let mut options =
            self.step.options(self.steps, self.lr, self.seed, self.run.clone(), Some(model_dir.to_path_buf()))?;
        options.run.checkpoint_minutes = self.control.checkpoint_minutes;
        Ok(options)
    }

    pub fn run(self, session: &Session) -> Result<()> {
        let options = self.options(session.model_dir)?;
        eprintln!("nearest-word search in training: {}", options.search);
        if let Some(dir) = &self.init_from {
            warm_start(session, dir)?;
        }
        spae::train::train(session.model, &options, self.control.resume, self.control.stop())
    }
}

/// Refuses a `--full-prefix-share` outside 0..=1 (NaN included).
fn checked_full_prefix_share(share: f64) -> Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&share),
        "--full-prefix-share is a share of the batch, from 0 to 1 (got {share})"
    );
    Ok(())
}

/// Copies into the session's model every tensor it shares with the model in `dir`, and
/// says which start fresh; returns their names.
fn warm_start(session: &Session, dir: &Path) -> Result<Vec<String>> {
    let fresh = session.model.warm_start_from(&dir.join(spae::model::WEIGHTS_FILE))?;
    eprintln!(
        "warm start from {}; {} tensor(s) start fresh (a residual block new as a whole starts as the identity): {}",
        dir.display(),
        fresh.len(),
        fresh.join(", ")
    );
    Ok(fresh)
}

/// How a run resumes, stops and checkpoints (`train` and `train-decoder` alike).
#[derive(clap::Args)]
pub struct RunControl {
    /// Continue from the run's newest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop cleanly (with a checkpoint) after this many minutes.
    #[arg(long, conflicts_with = "until_step")]
    minutes: Option<f64>,
    /// Stop cleanly (with a checkpoint) once the run has made this many steps.
    #[arg(long)]
    until_step: Option<u64>,
    #[arg(long, default_value_t = 5.0)]
    checkpoint_minutes: f64,
}

impl RunControl {
    fn stop(&self) -> Stop {
        match (self.minutes, self.until_step) {
            (Some(m), _) => Stop::Minutes(m),
            (None, Some(step)) => Stop::AtStep(step),
            (None, None) => Stop::Schedule,
        }
    }
}

#[derive(clap::Args)]
pub struct TrainDecoderArgs {
    #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
    cache: PathBuf,
    /// Checkpoints, the CSV log and the training split's words.
    #[arg(long, default_value_os_t = paths::resolve(DEFAULT_DECODER_RUN_DIR))]
    run: PathBuf,
    #[command(flatten)]
    control: RunControl,
    /// Length of the learning-rate schedule.
    #[arg(long, default_value_t = 4_000)]
    steps: u64,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-4)]
    lr: f64,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// The share of a batch's images decoded from all layers; the others decode from a
    /// random shorter prefix (0 to 1).
    #[arg(long, default_value_t = DEFAULT_DECODER_FULL_PREFIX_SHARE)]
    full_prefix_share: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Grow the decoder: before the first step, copy every tensor this model shares (same
    /// name and shape) from another model folder's weights, whose encoder and semantic
    /// branch it must share whole (a checkpoint, when resuming, takes precedence).
    #[arg(long)]
    init_from: Option<PathBuf>,
}

/// `train-decoder`'s run folder.
const DEFAULT_DECODER_RUN_DIR: &str = "weights/training/decoder";

/// `train-decoder`'s share of images decoded from all layers.
const DEFAULT_DECODER_FULL_PREFIX_SHARE: f64 = 0.75;

impl TrainDecoderArgs {
    pub fn run(self, session: &Session) -> Result<()> {
        anyhow::ensure!(self.batch_size > 0 && self.steps > 0, "--batch-size and --steps must be at least 1");
        checked_full_prefix_share(self.full_prefix_share)?;
        anyhow::ensure!(self.lr > 0.0 && self.lr.is_finite(), "--lr must be above 0 (got {})", self.lr);
        match &self.init_from {
            Some(dir) => {
                let fresh = warm_start(session, dir)?;
                let outside: Vec<&String> = fresh.iter().filter(|name| !name.starts_with("decoder.")).collect();
                anyhow::ensure!(
                    outside.is_empty(),
                    "{} does not hold this model's encoder and branch (missing or of another shape: {}); \
                     train-decoder trains the decoder of a finished encoder",
                    dir.display(),
                    outside.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            None => anyhow::ensure!(
                matches!(session.model.source(), spae::model::WeightsSource::File(_)),
                "no trained model in {}: train-decoder trains the decoder of a finished encoder (--init-from DIR \
                 starts this folder's config from another model's weights)",
                session.model_dir.display()
            ),
        }
        let options = RunOptions {
            data_dir: prepare::data_dir(&self.cache),
            run_dir: self.run,
            export_dir: Some(session.model_dir.to_path_buf()),
            batch_size: self.batch_size,
            schedule: Schedule {
                peak_lr: self.lr,
                warmup_steps: 100.min(self.steps / 10),
                total_steps: self.steps,
                floor: 0.1,
            },
            weight_decay: 1e-4,
            full_prefix_share: self.full_prefix_share,
            seed: self.seed,
            checkpoint_minutes: self.control.checkpoint_minutes,
        };
        spae::train::decoder::train_decoder(session.model, &options, self.control.resume, self.control.stop())?;
        eprintln!("saved the model with its trained decoder in {}", session.model_dir.display());
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct TrainBranchArgs {
    #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
    cache: PathBuf,
    /// Passes over the training split.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate (cosine decay over all the passes).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Layers 2..=N give each cell a word of its own (0: every cell is pulled to the
    /// image's whole target, as the shipped branch before it was trained).
    #[arg(long, default_value_t = SemanticOptions::default().distinct_layers)]
    distinct_layers: usize,
    /// alpha: how strongly a word's semantic target is discounted by the share of images
    /// it is relevant to (0: the teacher's relevances as they are).
    #[arg(long, default_value_t = SemanticOptions::default().frequency_penalty)]
    frequency_penalty: f64,
}

impl TrainBranchArgs {
    pub fn run(self, session: &Session) -> Result<()> {
        let options = spae::train::branch::BranchOptions {
            data_dir: prepare::data_dir(&self.cache),
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            seed: self.seed,
            semantic: SemanticOptions {
                weight: 1.0,
                distinct_layers: self.distinct_layers,
                frequency_penalty: semantic::checked_frequency_penalty(self.frequency_penalty)?,
                ..Default::default()
            },
        };
        spae::train::branch::train_branch(session.model, &options, |_| session.model.save(session.model_dir))?;
        eprintln!("saved the model with its trained branch in {}", session.model_dir.display());
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct BenchTrainArgs {
    #[command(flatten)]
    step: StepArgs,
    /// Timed steps (after one untimed warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: u64,
    /// End with one JSON line of the figures.
    #[arg(long)]
    json: bool,
}

/// The matrix product timed beside the steps: the exact search's shape (a 64 x 64
/// image's 597 SAQ targets against 16,384 words of 576 dimensions).
const GEMM_SHAPE: (usize, usize, usize) = (597, 576, 16_384);

/// The speed images/s are normalised to (GFLOP/s): the one the training-speed target was
/// stated in, the fused nearest-word search's under criterion on the development machine
/// (where [`GEMM_SHAPE`]'s plain product measures 390-410).
const REFERENCE_GEMM_GFLOPS: f64 = 168.0;

impl BenchTrainArgs {
    /// A step as `train` makes it by default; nothing is written.
    fn options(&self) -> Result<TrainOptions> {
        self.step.options(20_000, 5e-4, 0, paths::resolve(paths::DEFAULT_RUN_DIR), None)
    }

    pub fn run(self, session: &Session) -> Result<()> {
        anyhow::ensure!(self.steps >= 1, "--steps must be at least 1");
        let options = self.options()?;
        let bench = spae::train::benchmark(session.model, &options, Split::HeldOut, self.steps)?;
        let (m, k, n) = GEMM_SHAPE;
        let gemm_gflops = spae::compute::matmul::measure_gflops(m, k, n, 5);
        let records = &bench.records;
        let mean = |f: fn(&StepRecord) -> f64| records.iter().map(f).sum::<f64>() / records.len() as f64;
        let total = mean(|r| r.seconds_total);
        let images_per_s = self.step.batch_size as f64 / total;
        let gflop_per_image = bench.flops_per_image / 1e9;
        let on = |w: f64| if w > 0.0 { "on" } else { "off" };
        println!(
            "{} timed steps of {} images (semantic loss {}, perceptual loss {}, usage term {}, search {}):",
            records.len(),
            self.step.batch_size,
            match (self.step.semantic_weight > 0.0, bench.semantic_loss) {
                (_, true) => "on",
                (true, false) => "skipped: the frozen branch names every guided layer",
                (false, false) => "off",
            },
            on(self.step.perceptual_weight),
            on(self.step.usage_weight),
            options.search
        );
        println!("  {total:.2} s per step, {images_per_s:.2} images/s");
        let parts = [
            ("encoder", "encoder forward", mean(|r| r.seconds_encoder)),
            ("search", "nearest-word search (SAQ)", mean(|r| r.seconds_search)),
            ("decoder_and_losses", "decoder forward and losses", mean(|r| r.seconds_decoder_and_losses)),
            ("backward", "backward and AdamW", mean(|r| r.seconds_backward)),
        ];
        for (_, part, secs) in parts {
            println!("  {part:<28} {secs:>6.3} s  {:>5.1}%", 100.0 * secs / total);
        }
        println!(
            "  {gflop_per_image:.2} GFLOP per image, {:.1} GFLOP/s achieved; a plain {m} x {k} x {n} product runs at \
             {gemm_gflops:.1} GFLOP/s here ({:.2} images/s at the reference {REFERENCE_GEMM_GFLOPS} GFLOP/s)",
            images_per_s * gflop_per_image,
            images_per_s * REFERENCE_GEMM_GFLOPS / gemm_gflops
        );
        if let Some(agreement) = &bench.search_agreement {
            let shown: Vec<String> = agreement.iter().map(|a| format!("{a:.3}")).collect();
            println!("  this search = exact search, per layer (64 held-out images): {}", shown.join(" "));
        }
        if self.json {
            let split: serde_json::Map<String, serde_json::Value> =
                parts.iter().map(|(key, _, secs)| (key.to_string(), (secs / total).into())).collect();
            let line = serde_json::json!({
                "images_per_s": images_per_s,
                "seconds_per_step": total,
                "gflop_per_image": gflop_per_image,
                "achieved_gflops": images_per_s * gflop_per_image,
                "gemm_gflops": gemm_gflops,
                "normalised_images_per_s": images_per_s * REFERENCE_GEMM_GFLOPS / gemm_gflops,
                "split": split,
                "batch_size": self.step.batch_size,
                "semantic": bench.semantic_loss,
                "search": match options.search {
                    TrainingSearch::Exact => "exact",
                    TrainingSearch::Quantized(_) => "quantized",
                },
                "search_shortlist": match options.search {
                    TrainingSearch::Quantized(q) => Some(q.shortlist),
                    _ => None,
                },
                "search_agreement": bench.search_agreement,
            });
            println!("{line}");
        }
        Ok(())
    }
}
