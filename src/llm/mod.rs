//! The frozen LLM, SmolLM2-135M-Instruct, read from its GGUF file: its tokenizer and its
//! forward pass.

pub mod gguf;
mod kernels;
pub mod model;
pub mod tokenizer;
