//! Decoding on the GPU with the WGSL compute kernels in `shaders/` (through wgpu): SAQ
//! dequantization from token ids, the decoder's convolutions, group normalizations,
//! activations, upsampling and residual adds, and the conversion to RGBA pixels.
//!
//! The studio hands in eframe's own device and queue ([`Gpu::shared`]); the command line
//! and the tests open a headless one ([`Gpu::headless`]). Where no adapter is usable,
//! callers decode on the CPU with [`crate::model::SpaeModel::decode`].

mod decoder;
mod kernels;

use anyhow::{anyhow, Result};

pub use decoder::{GpuDecode, GpuDecoder};

/// A wgpu device and its queue, with a description of the adapter for the status bar.
#[derive(Clone)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// Adapter name and backend, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)".
    pub adapter: String,
    /// A software rasterizer (Mesa's lavapipe): correct, but slower than the CPU decoder.
    pub software: bool,
}

impl Gpu {
    /// Opens the best available adapter with no window. Software adapters (Mesa's lavapipe)
    /// count: they run the same kernels, slowly.
    pub fn headless() -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| anyhow!("no usable GPU adapter: {e}"))?;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("spae"),
            required_limits: wgpu::Limits { ..adapter.limits() },
            ..Default::default()
        }))
        .map_err(|e| anyhow!("the GPU adapter refused a device: {e}"))?;
        Ok(Self::shared(device, queue, &adapter.get_info()))
    }

    /// The device and queue someone else opened (the studio's, from eframe).
    pub fn shared(device: wgpu::Device, queue: wgpu::Queue, info: &wgpu::AdapterInfo) -> Self {
        let adapter = format!("{} ({:?})", info.name, info.backend);
        Self { device, queue, adapter, software: info.device_type == wgpu::DeviceType::Cpu }
    }
}
