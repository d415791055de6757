//! SPAE: the Semantic Pyramid AutoEncoder (Yu et al., arXiv 2306.17842).
//!
//! An image goes one way through this crate: pixels ([`image_io`]), the encoder
//! ([`model`]), streaming average quantization ([`saq`]) against the frozen word
//! [`codebook`], a [`pyramid`] of words ([`vocabulary`], [`pyramid_text`]), the decoder,
//! pixels again. The studio and the command line sit on top of this library.

pub mod allocator;
pub mod atomic_file;
pub mod codebook;
pub mod context_pool;
pub mod data;
pub mod denoising;
pub mod eval;
pub mod fewshot;
pub mod fewshot_eval;
pub mod generation_eval;
pub mod gpu;
pub mod image_io;
pub mod llm;
pub mod matmul;
pub mod metrics;
pub mod model;
pub mod pyramid;
pub mod pyramid_text;
pub mod report;
pub mod saq;
pub mod studio;
pub mod teacher;
pub mod train;
pub mod vocabulary;

/// Where the shipped files live, relative to the repository root.
pub mod paths {
    /// The frozen LLM (its token embeddings are the codebook).
    pub const LLM_GGUF: &str = "weights/SmolLM2-135M-Instruct.Q4_1.gguf";
    /// The shipped SPAE model folder (`config.json` + `model.safetensors`).
    pub const DEFAULT_MODEL_DIR: &str = "weights/spae-default";
    /// The default training run (checkpoints and log).
    pub const DEFAULT_RUN_DIR: &str = "weights/training/default";
    /// The semantic teacher's classifier (EfficientNet-Lite0).
    pub const TEACHER: &str = "weights/efficientnet-lite0.safetensors";
    /// The classifier's 1000 class names.
    pub const IMAGENET_CLASSES: &str = "weights/imagenet-classes.json";
    /// The shipped pool of labelled images that generation draws its examples from.
    pub const POOL: &str = "assets/pool";
}
