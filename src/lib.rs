//! SPAE: the Semantic Pyramid AutoEncoder (Yu et al., arXiv 2306.17842).
//!
//! An image goes one way through this crate: pixels ([`image_io`]), the encoder
//! ([`model`]), streaming average quantization ([`pyramid::saq`]) against the frozen word
//! [`codebook`], a [`pyramid`] of words, the decoder, pixels again. The frozen LLM
//! ([`llm`]) reads and writes those words in context ([`tasks`]: few-shot classification,
//! captioning, progressive denoising, a word index of image folders); [`eval`] measures
//! all of it, [`train`] fits the model on the [`data`] with the [`teacher`]'s semantic
//! guidance. The studio and the command line sit on top of this library.
//!
//! Dependencies run one way, each layer using only those below it: `studio`; `eval`;
//! `tasks` and `train`; `data` and `gpu`; `model`; `teacher` and `pyramid`; `codebook`;
//! `llm`; `compute`, `image_io` and `atomic_file`.

pub mod atomic_file;
pub mod codebook;
pub mod compute;
pub mod data;
pub mod eval;
pub mod gpu;
pub mod image_io;
pub mod llm;
pub mod model;
pub mod pyramid;
#[cfg(feature = "studio")]
pub mod studio;
pub mod tasks;
pub mod teacher;
pub mod train;

/// Where the shipped files live, relative to the project folder, and how that folder is
/// found: default paths never depend on the working directory.
pub mod paths {
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    /// The frozen LLM (its token embeddings are the codebook).
    pub const LLM_GGUF: &str = "weights/SmolLM2-135M-Instruct.Q4_1.gguf";
    /// The shipped SPAE model folder (`config.json` + `model.safetensors`).
    pub const DEFAULT_MODEL_DIR: &str = "weights/spae-default";
    /// The default training run (checkpoints and log).
    pub const DEFAULT_RUN_DIR: &str = "weights/training/default";
    /// The semantic teacher's classifier (EfficientNet-Lite0).
    pub const TEACHER: &str = "weights/efficientnet-lite0.safetensors";
    /// The visual vocabulary's words, one per line (`spae vocabulary` writes it).
    pub const VISUAL_VOCABULARY: &str = "weights/visual-vocabulary.txt";
    /// The classifier's 1000 class names.
    pub const IMAGENET_CLASSES: &str = "weights/imagenet-classes.json";
    /// The shipped pool of labelled images that generation draws its examples from.
    pub const POOL: &str = "assets/pool";

    /// The project folder: the nearest folder above the running program that holds the
    /// shipped LLM (a checkout's `target/release/spae` finds its checkout), else the folder
    /// this crate was built from, else the working directory.
    pub fn project_root() -> &'static Path {
        static ROOT: OnceLock<PathBuf> = OnceLock::new();
        ROOT.get_or_init(|| {
            let holds_project = |dir: &Path| dir.join(LLM_GGUF).is_file();
            let beside_program = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.ancestors().skip(1).find(|dir| holds_project(dir)).map(Path::to_path_buf));
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR"));
            beside_program
                .or_else(|| holds_project(built_from).then(|| built_from.to_path_buf()))
                .unwrap_or_else(|| PathBuf::from("."))
        })
    }

    /// `relative` (one of the constants above) inside the project folder.
    pub fn resolve(relative: &str) -> PathBuf {
        project_root().join(relative)
    }
}
