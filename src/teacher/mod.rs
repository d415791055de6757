//! The semantic teacher (docs/method.md section 5): what stands in for CLIP.

pub mod efficientnet;
pub mod relevance;
pub mod word_space;
