//! `spae-studio`: the desktop studio (see `spae::studio`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Default paths are found in the project folder, whatever the working directory.
#[derive(Parser)]
#[command(
    name = "spae-studio",
    version,
    about = "The SPAE studio: see, edit and generate images as pyramids of LLM words"
)]
struct Args {
    /// An image to open, or a folder to open in the gallery (default: the last image
    /// opened, else the shipped sample assets/samples/cat-face.png).
    image: Option<PathBuf>,
    /// A model folder (config.json + model.safetensors) [default: weights/spae-default].
    #[arg(long)]
    model: Option<PathBuf>,
    /// The frozen LLM's GGUF file, whose embeddings are the codebook
    /// [default: weights/SmolLM2-135M-Instruct.Q4_1.gguf].
    #[arg(long)]
    llm: Option<PathBuf>,
}

fn main() -> ExitCode {
    spae::compute::allocator::keep_freed_memory();
    spae::compute::threads::park_idle_candle_threads();
    let args = Args::parse();
    spae::gpu::ensure_runtime_dir();
    let launch = spae::studio::Launch { image: args.image, model: args.model, llm: args.llm };
    match spae::studio::run(&launch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
