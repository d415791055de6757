//! Where the studio decodes: on the GPU through eframe's own wgpu device (the decoded
//! images are texture layers that egui draws directly), or on the CPU where there is no
//! usable adapter, where the adapter is a software rasterizer (slower than the CPU
//! decoder itself), or after a GPU error.

use eframe::egui;

use crate::gpu::{DeviceChoice, Gpu, GpuDecoder};
use crate::model::SpaeModel;

/// Set to 1 to decode on the GPU even when the adapter is a software one (Mesa's lavapipe),
/// to 0 to decode on the CPU whatever the adapter (read by [`super::run`]).
pub const GPU_DECODE_ENV: &str = "SPAE_GPU_DECODE";

/// Where the studio decodes, from [`GPU_DECODE_ENV`]: "1" is [`DeviceChoice::Gpu`], "0"
/// [`DeviceChoice::Cpu`], anything else [`DeviceChoice::Auto`].
pub fn choice_from_env() -> DeviceChoice {
    match std::env::var(GPU_DECODE_ENV).ok().as_deref() {
        Some("1") => DeviceChoice::Gpu,
        Some("0") => DeviceChoice::Cpu,
        _ => DeviceChoice::Auto,
    }
}

/// The GPU decoder the studio starts with, and what the status bar says about it.
pub struct DecodeDevice {
    pub decoder: Option<GpuDecoder>,
    /// One texture per layer prefix, the decoder's texture layers registered with egui.
    pub images: Vec<egui::TextureId>,
    pub status: String,
}

impl DecodeDevice {
    /// The GPU decoder on eframe's device, if there is one worth using.
    pub fn open(cc: &eframe::CreationContext<'_>, model: &SpaeModel, use_gpu: DeviceChoice) -> Self {
        let cpu = |status: String| Self { decoder: None, images: Vec::new(), status };
        let Some(render_state) = &cc.wgpu_render_state else {
            return cpu("CPU (no wgpu renderer)".into());
        };
        let gpu =
            Gpu::shared(render_state.device.clone(), render_state.queue.clone(), &render_state.adapter.get_info());
        if let Err(why) = use_gpu.accepts(&gpu) {
            let hint = if use_gpu == DeviceChoice::Cpu { "0" } else { "1 uses it" };
            return cpu(format!("CPU ({why}; {GPU_DECODE_ENV}={hint})"));
        }
        let status = format!("GPU: {}", gpu.adapter);
        match GpuDecoder::new(gpu, model, model.shape().layers()) {
            Ok(decoder) => {
                let mut renderer = render_state.renderer.write();
                let images = (0..decoder.max_batch())
                    .map(|i| {
                        renderer.register_native_texture(
                            &render_state.device,
                            &decoder.image_view(i),
                            wgpu::FilterMode::Nearest,
                        )
                    })
                    .collect();
                Self { decoder: Some(decoder), images, status }
            }
            Err(e) => cpu(format!("CPU (the GPU decoder failed to start: {e:#})")),
        }
    }
}
