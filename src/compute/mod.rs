//! The CPU arithmetic under every network here: one dense matrix product ([`matmul`]) for
//! the nearest-word search and the LLM, 2-D convolution as matrix products ([`conv`]) for
//! the SPAE networks and the frozen EfficientNet, and the allocator tuning ([`allocator`])
//! that keeps candle's per-op buffers from costing page faults.

pub mod allocator;
pub mod conv;
pub mod matmul;
