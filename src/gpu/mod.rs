//! The autoencoder on the GPU, with the WGSL compute kernels in `shaders/` (through wgpu).
//! Encoding ([`GpuEncoder`]): the encoder's convolutions, group normalizations and
//! activations, the semantic branch's frozen teacher (depthwise convolutions, ReLU6) and
//! projector, and SAQ's layers with a fused nearest-word search. Decoding
//! ([`GpuDecoder`]): SAQ dequantization from token ids, the decoder, and the conversion to
//! RGBA pixels.
//!
//! The studio hands in eframe's own device and queue ([`Gpu::shared`]); the command line
//! and the tests open a headless one ([`Gpu::headless`]). Where no adapter is usable,
//! callers encode and decode on the CPU with [`crate::model::SpaeModel`];
//! [`EncodeDevice`] makes that choice, and falls back on a GPU error.

mod decoder;
mod encode_device;
mod encoder;
mod kernels;
mod plan;

use anyhow::{anyhow, Result};

pub use decoder::{GpuDecode, GpuDecoder};
pub use encode_device::EncodeDevice;
pub use encoder::{EncodedBatch, GpuEncoder};

/// Where a GPU-capable job runs, for the command line (`--device`) and the studio alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// A hardware GPU where there is one, else the CPU: a software adapter (Mesa's
    /// lavapipe) runs the same kernels about 30 times slower than the CPU path.
    Auto,
    /// Any adapter, software ones included.
    Gpu,
    Cpu,
}

impl DeviceChoice {
    /// `Ok` where `gpu` should be used, else why the CPU is used instead.
    pub fn accepts(self, gpu: &Gpu) -> Result<(), String> {
        match self {
            Self::Cpu => Err("the CPU was asked for".to_string()),
            Self::Auto if gpu.software => Err(format!("the GPU adapter {} is software", gpu.adapter)),
            Self::Auto | Self::Gpu => Ok(()),
        }
    }
}

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
        Self::headless_with_limits(|_| {})
    }

    /// [`Self::headless`] with the adapter's limits changed by `adjust` (lowered, to see
    /// how the kernels behave on a smaller device).
    pub fn headless_with_limits(adjust: impl FnOnce(&mut wgpu::Limits)) -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| anyhow!("no usable GPU adapter: {e}"))?;
        let mut limits = adapter.limits();
        adjust(&mut limits);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("spae"),
            required_limits: limits,
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

/// Gives the process a private `XDG_RUNTIME_DIR` where none is usable, before any GPU
/// instance exists. Without it, Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is
/// invalid or not set" once per instance, even when decoding then works. Call it at the
/// start of `main`, before other threads run (it sets an environment variable).
pub fn ensure_runtime_dir() {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let usable = |dir: &std::path::Path| std::fs::metadata(dir).is_ok_and(|m| m.is_dir());
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| usable(std::path::Path::new(&dir))) {
        return;
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("spae-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    // Only a real folder of ours that nobody else can enter (never a planted link).
    let private = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0);
    if private {
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}
