//! Where the studio encodes and decodes: on the GPU through eframe's own wgpu device (the
//! decoded images are texture layers that egui draws directly), or on the CPU where there
//! is no usable adapter, where the adapter is a software rasterizer (slower than the CPU
//! path itself), or after a GPU error.

use eframe::egui;

use crate::gpu::{DeviceChoice, EncodeDevice, Gpu, GpuDecoder, GpuEncoder};
use crate::model::SpaeModel;

/// Set to 1 to encode and decode on the GPU even when the adapter is a software one
/// (Mesa's lavapipe), to 0 to use the CPU whatever the adapter (read by [`super::run`]).
pub const GPU_ENV: &str = "SPAE_GPU";

/// Where the studio encodes and decodes, from [`GPU_ENV`]: "1" is [`DeviceChoice::Gpu`],
/// "0" [`DeviceChoice::Cpu`], anything else [`DeviceChoice::Auto`].
pub fn choice_from_env() -> DeviceChoice {
    match std::env::var(GPU_ENV).ok().as_deref() {
        Some("1") => DeviceChoice::Gpu,
        Some("0") => DeviceChoice::Cpu,
        _ => DeviceChoice::Auto,
    }
}

/// The GPU encoder and decoder the studio starts with, and what the status bar says.
pub struct Devices {
    pub decoder: Option<GpuDecoder>,
    /// Where single images are encoded (the worker's).
    pub encoder: EncodeDevice,
    /// The device, where it is used, for the gallery's batch encoders.
    pub gpu: Option<Gpu>,
    /// One texture per layer prefix, the decoder's texture layers registered with egui.
    pub images: Vec<egui::TextureId>,
    pub decode_status: String,
    pub encode_status: String,
}

impl Devices {
    /// The GPU encoder and decoder on eframe's device, where it is worth using.
    pub fn open(cc: &eframe::CreationContext<'_>, model: &SpaeModel, use_gpu: DeviceChoice) -> Self {
        let cpu = |status: String| Self {
            decoder: None,
            encoder: EncodeDevice::cpu(),
            gpu: None,
            images: Vec::new(),
            decode_status: status.clone(),
            encode_status: status,
        };
        let Some(render_state) = &cc.wgpu_render_state else {
            return cpu("CPU (no wgpu renderer)".into());
        };
        let gpu =
            Gpu::shared(render_state.device.clone(), render_state.queue.clone(), &render_state.adapter.get_info());
        if let Err(why) = use_gpu.accepts(&gpu) {
            let hint = if use_gpu == DeviceChoice::Cpu { "0" } else { "1 uses it" };
            return cpu(format!("CPU ({why}; {GPU_ENV}={hint})"));
        }
        let on_gpu = format!("GPU: {}", gpu.adapter);
        let (encoder, encode_status) = match GpuEncoder::new(gpu.clone(), model, 1) {
            Ok(encoder) => (EncodeDevice::gpu(encoder), on_gpu.clone()),
            Err(e) => (EncodeDevice::cpu(), format!("CPU (the GPU encoder failed to start: {e:#})")),
        };
        let (decoder, images, decode_status) = match GpuDecoder::new(gpu.clone(), model, model.shape().layers()) {
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
                (Some(decoder), images, on_gpu)
            }
            Err(e) => (None, Vec::new(), format!("CPU (the GPU decoder failed to start: {e:#})")),
        };
        let gpu = encoder.on_gpu().then_some(gpu);
        Self { decoder, encoder, gpu, images, decode_status, encode_status }
    }
}
