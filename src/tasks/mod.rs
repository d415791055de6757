//! What the frozen LLM does with image words, in context and untrained (docs/method.md
//! sections 6 and 7): few-shot classification ([`fewshot`]), captions and answers
//! ([`captioning`]), progressive in-context denoising that writes an image's words
//! ([`denoising`]) from a pool of labelled examples ([`context_pool`]), and an index of a
//! folder's images by their words ([`word_index`]).

pub mod captioning;
pub mod context_pool;
pub mod denoising;
pub mod fewshot;
pub mod word_index;
