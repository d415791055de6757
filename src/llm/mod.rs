//! The frozen LLM, SmolLM2-135M-Instruct, read from its GGUF file.

pub mod gguf;
