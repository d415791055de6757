//! The CPU arithmetic under every network here: one dense matrix product ([`matmul`]) for
//! the nearest-word search and the LLM, 2-D convolution as matrix products ([`conv`]) for
//! the SPAE networks and the frozen EfficientNet, GroupNorm + SiLU fused with its own
//! backward pass ([`group_norm`]), and the allocator tuning ([`allocator`])
//! that keeps candle's per-op buffers from costing page faults.

pub mod allocator;
pub mod conv;
pub mod group_norm;
pub mod matmul;
