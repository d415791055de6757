//! Measuring the model (docs/method.md section 8): reconstruction and semantic precision
//! on the held-out split ([`heldout`], with [`metrics`]), the report's charts ([`report`]),
//! few-shot classification accuracy ([`fewshot`], on the classes of [`concepts`]), captions and the data's questions
//! ([`captioning`]), and whether generated images are what they were asked to be
//! ([`generation`]).

pub mod captioning;
pub mod concepts;
pub mod fewshot;
pub mod generation;
pub mod heldout;
pub mod metrics;
pub mod report;
