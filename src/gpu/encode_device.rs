//! Where images are encoded: on the GPU encoder while it works, else on the CPU. A GPU
//! error does not lose the work: the batch that met it is encoded again on the CPU, the
//! reason is kept for the caller to show once, and later batches stay on the CPU.

use anyhow::Result;
use image::RgbImage;

use super::encoder::check_prepared;
use super::{DeviceChoice, EncodedBatch, Gpu, GpuEncoder};
use crate::model::SpaeModel;

pub struct EncodeDevice {
    gpu: Option<GpuEncoder>,
    failure: Option<String>,
}

impl EncodeDevice {
    pub fn cpu() -> Self {
        Self { gpu: None, failure: None }
    }

    pub fn gpu(encoder: GpuEncoder) -> Self {
        Self { gpu: Some(encoder), failure: None }
    }

    /// The device `choice` asks for, on a headless adapter, with batches of up to
    /// `max_batch` images; with `auto`, the CPU where no hardware adapter is usable. Where
    /// the encoder does not fit the adapter (buffers over its limits), the CPU, whatever
    /// the choice. The second value says where and, for the CPU, why.
    pub fn open(choice: DeviceChoice, model: &SpaeModel, max_batch: usize) -> Result<(Self, String)> {
        if choice == DeviceChoice::Cpu {
            return Ok((Self::cpu(), "on the CPU".into()));
        }
        let gpu = match (Gpu::headless(), choice) {
            (Ok(gpu), _) => gpu,
            (Err(e), DeviceChoice::Gpu) => return Err(e),
            (Err(e), _) => return Ok((Self::cpu(), format!("on the CPU ({e:#})"))),
        };
        if let Err(why) = choice.accepts(&gpu) {
            return Ok((Self::cpu(), format!("on the CPU ({why}; --device gpu uses it)")));
        }
        let adapter = gpu.adapter.clone();
        Ok(match GpuEncoder::new(gpu, model, max_batch) {
            Ok(encoder) => (Self::gpu(encoder), format!("on the GPU, {adapter}")),
            Err(e) => (Self::cpu(), format!("on the CPU (the GPU encoder does not fit {adapter}: {e:#})")),
        })
    }

    /// Whether the next batch goes to the GPU.
    pub fn on_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Why the GPU was given up, once, after the batch that met the error.
    pub fn take_failure(&mut self) -> Option<String> {
        self.failure.take()
    }

    /// Each prepared image's pyramid and latent. Bad input (no images, images not
    /// prepared) is refused before the GPU sees it, so it never turns the GPU off.
    pub fn encode(&mut self, model: &SpaeModel, images: &[RgbImage]) -> Result<EncodedBatch> {
        check_prepared(images, model.config().resolution)?;
        if let Some(encoder) = &self.gpu {
            match encoder.encode(images) {
                Ok(batch) => return Ok(batch),
                Err(e) => {
                    self.failure = Some(format!("{e:#}"));
                    self.gpu = None;
                }
            }
        }
        EncodedBatch::on_cpu(model, images)
    }
}
