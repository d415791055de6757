//! The decoder as a fixed sequence of GPU dispatches: weights are uploaded and every
//! intermediate buffer and bind group is made once per model; a decode writes the token
//! ids, records the dispatches and submits them.
//!
//! A batch item is a pyramid and the number of its layers to decode, so the studio decodes
//! every layer prefix of one pyramid in one submission. Item i lands in layer i of an RGBA
//! texture array (drawn by the studio as it is) and in an f32 buffer that is read back
//! only when pixels are wanted on the CPU (metrics, export, tests).

use std::collections::HashMap;
use std::sync::mpsc;

use anyhow::{anyhow, bail, ensure, Context, Result};
use candle_core::Tensor;
use image::RgbImage;
use wgpu::util::DeviceExt;

use super::kernels::{Kernel, Kernels};
use super::Gpu;
use crate::image_io;
use crate::model::SpaeModel;
use crate::pyramid::{Pyramid, PyramidShape};

/// Normalization epsilon of the decoder's GroupNorms (as in `model::blocks`).
const GROUP_NORM_EPS: f32 = 1e-6;
/// Output channels per conv2d invocation (`CHANNELS_PER_INVOCATION` in conv2d.wgsl).
const CONV_CHANNELS_PER_INVOCATION: u32 = 4;

pub struct GpuDecoder {
    gpu: Gpu,
    kernels: Kernels,
    shape: PyramidShape,
    resolution: u32,
    max_batch: usize,
    vocabulary: usize,
    tokens: wgpu::Buffer,
    prefix_layers: wgpu::Buffer,
    pixels: wgpu::Buffer,
    readback: wgpu::Buffer,
    image: wgpu::Texture,
    steps: Vec<Step>,
}

/// Pixels read back from a decode: `batch x 3 x R x R`, clamped to -1..1.
pub struct GpuDecode {
    pub pixels: Vec<f32>,
    pub batch: usize,
    pub resolution: usize,
}

impl GpuDecode {
    /// The decoded images, converted to bytes exactly as CPU decodes are.
    pub fn images(&self) -> Vec<RgbImage> {
        image_io::from_planes(&self.pixels, self.batch, self.resolution, self.resolution)
    }
}

/// Which kernel a step runs.
#[derive(Clone, Copy)]
enum Op {
    Dequantize,
    Conv2d,
    GroupNormStatistics,
    GroupNormApply,
    ToRgba,
}

/// One dispatch: its bind group and its workgroup counts for one batch item; the count
/// along `batch_axis` is multiplied by the batch size.
struct Step {
    op: Op,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    batch_axis: usize,
}

/// A `max_batch x channels x side x side` activation buffer.
struct Activation {
    buffer: wgpu::Buffer,
    channels: usize,
    side: usize,
}

impl GpuDecoder {
    /// Uploads `model`'s decoder weights and codebook to `gpu` and prepares the dispatches
    /// for batches of up to `max_batch` items.
    pub fn new(gpu: Gpu, model: &SpaeModel, max_batch: usize) -> Result<Self> {
        ensure!(max_batch >= 1, "a GPU decoder needs room for at least one image");
        let device = &gpu.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let kernels = Kernels::new(device);
        let config = model.config();
        let shape = model.shape().clone();
        let codebook = model.codebook();
        let tokens_per_image = shape.tokens_in_prefix(shape.layers());
        let weights: HashMap<String, Tensor> = model
            .varmap()
            .data()
            .lock()
            .map_err(|_| anyhow!("the model's variables are poisoned"))?
            .iter()
            .filter(|(name, _)| name.starts_with("decoder."))
            .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
            .collect();
        let mut plan = Plan { device, kernels: &kernels, weights: &weights, max_batch, steps: Vec::new() };

        let codebook_buffer = plan.upload("codebook", codebook.embeddings())?;
        let tokens = plan.storage("tokens", max_batch * tokens_per_image * 4, wgpu::BufferUsages::COPY_DST);
        let prefix_layers = plan.storage("prefix layers", max_batch * 4, wgpu::BufferUsages::COPY_DST);
        let g = shape.latent_size();
        let zhat = plan.activation(config.latent_channels, g);
        let params = plan.uniform(&[config.latent_channels as u32, g as u32, tokens_per_image as u32, 0]);
        let bind_group = kernels.dequantize.bind(
            device,
            &[
                params.as_entire_binding(),
                codebook_buffer.as_entire_binding(),
                tokens.as_entire_binding(),
                prefix_layers.as_entire_binding(),
                zhat.buffer.as_entire_binding(),
            ],
        );
        let per_image = (config.latent_channels * g * g) as u32;
        plan.steps.push(Step {
            op: Op::Dequantize,
            bind_group,
            workgroups: [per_image.div_ceil(256), 1, 1],
            batch_axis: 1,
        });

        // The decoder of `model::decoder`, layer by layer.
        let groups = config.norm_groups;
        let mut h = plan.conv("decoder.conv_in", &zhat, false, None)?;
        let levels = config.channels.len();
        for level in 0..levels {
            for block in 0..config.res_blocks {
                let name = format!("decoder.levels.{level}.blocks.{block}");
                let t = plan.group_norm(&format!("{name}.norm1"), &h, groups, true)?;
                let t = plan.conv(&format!("{name}.conv1"), &t, false, None)?;
                let t = plan.group_norm(&format!("{name}.norm2"), &t, groups, true)?;
                // The decoder's blocks keep their width (upsampling narrows), so the skip
                // connection is the identity.
                h = plan.conv(&format!("{name}.conv2"), &t, false, Some(&h))?;
            }
            if level + 1 < levels {
                h = plan.conv(&format!("decoder.levels.{level}.upsample"), &h, true, None)?;
            }
        }
        let t = plan.group_norm("decoder.norm_out", &h, groups, true)?;
        let decoded = plan.conv("decoder.conv_out", &t, false, None)?;
        ensure!(
            decoded.channels == 3 && decoded.side == config.resolution,
            "the decoder's output is {} x {}^2, expected 3 x {}^2",
            decoded.channels,
            decoded.side,
            config.resolution
        );

        let resolution = config.resolution as u32;
        let pixels = plan.storage("pixels", max_batch * 3 * config.resolution.pow(2) * 4, wgpu::BufferUsages::COPY_SRC);
        let image = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("decoded images"),
            size: wgpu::Extent3d { width: resolution, height: resolution, depth_or_array_layers: max_batch as u32 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::TEXTURE_BINDING,
            view_formats: &[],
        });
        let array_view = image.create_view(&wgpu::TextureViewDescriptor {
            dimension: Some(wgpu::TextureViewDimension::D2Array),
            ..Default::default()
        });
        let bind_group = kernels.to_rgba.bind(
            device,
            &[
                decoded.buffer.as_entire_binding(),
                pixels.as_entire_binding(),
                wgpu::BindingResource::TextureView(&array_view),
            ],
        );
        plan.steps.push(Step {
            op: Op::ToRgba,
            bind_group,
            workgroups: [resolution.div_ceil(8), resolution.div_ceil(8), 1],
            batch_axis: 2,
        });
        let steps = plan.steps;
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pixels read back"),
            size: pixels.size(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(error) = pollster::block_on(scope.pop()) {
            bail!("the GPU refused the decoder: {error}");
        }
        Ok(Self {
            gpu,
            kernels,
            shape,
            resolution,
            max_batch,
            vocabulary: codebook.len(),
            tokens,
            prefix_layers,
            pixels,
            readback,
            image,
            steps,
        })
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// A view of texture layer `item`, where [`Self::submit`] puts item `item`'s image
    /// (RGBA8, R x R), for drawing.
    pub fn image_view(&self, item: usize) -> wgpu::TextureView {
        self.image.create_view(&wgpu::TextureViewDescriptor {
            dimension: Some(wgpu::TextureViewDimension::D2),
            base_array_layer: item as u32,
            array_layer_count: Some(1),
            ..Default::default()
        })
    }

    /// Decodes each item (a pyramid and how many of its layers to use) into its texture
    /// layer and the pixel buffer, and waits for the GPU to finish.
    pub fn submit(&self, items: &[(&Pyramid, usize)]) -> Result<()> {
        ensure!(!items.is_empty(), "nothing to decode");
        ensure!(items.len() <= self.max_batch, "{} images in one GPU decode, at most {}", items.len(), self.max_batch);
        let mut tokens = Vec::with_capacity(items.len() * self.shape.tokens_in_prefix(self.shape.layers()));
        let mut prefix_layers = Vec::with_capacity(items.len());
        for (pyramid, layers) in items {
            ensure!(pyramid.shape() == &self.shape, "the pyramid's shape does not fit this model");
            ensure!(
                (1..=self.shape.layers()).contains(layers),
                "cannot decode {layers} layers of a {}-layer pyramid",
                self.shape.layers()
            );
            if let Some(word) = pyramid.words().find(|&w| w as usize >= self.vocabulary) {
                bail!("word id {word} is outside the {}-word vocabulary", self.vocabulary);
            }
            tokens.extend(pyramid.words());
            prefix_layers.push(*layers as u32);
        }
        let device = &self.gpu.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.gpu.queue.write_buffer(&self.tokens, 0, &u32_bytes(&tokens));
        self.gpu.queue.write_buffer(&self.prefix_layers, 0, &u32_bytes(&prefix_layers));
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("decode") });
        {
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("decode"), timestamp_writes: None });
            for step in &self.steps {
                let mut workgroups = step.workgroups;
                workgroups[step.batch_axis] *= items.len() as u32;
                self.kernel(step.op).dispatch(&mut pass, &step.bind_group, workgroups);
            }
        }
        let submission = self.gpu.queue.submit([encoder.finish()]);
        if let Some(error) = pollster::block_on(scope.pop()) {
            bail!("GPU decode failed: {error}");
        }
        device
            .poll(wgpu::PollType::Wait { submission_index: Some(submission), timeout: None })
            .context("waiting for the GPU decode")?;
        Ok(())
    }

    /// [`Self::submit`], then the first `items.len()` decoded images read back.
    pub fn decode(&self, items: &[(&Pyramid, usize)]) -> Result<GpuDecode> {
        self.submit(items)?;
        self.read_pixels(items.len())
    }

    /// The first `batch` images of the last decode, read back.
    pub fn read_pixels(&self, batch: usize) -> Result<GpuDecode> {
        ensure!(batch <= self.max_batch, "asked for {batch} images, the decoder holds {}", self.max_batch);
        let resolution = self.resolution as usize;
        let bytes = (batch * 3 * resolution * resolution * 4) as u64;
        let device = &self.gpu.device;
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("read back") });
        encoder.copy_buffer_to_buffer(&self.pixels, 0, &self.readback, 0, bytes);
        let submission = self.gpu.queue.submit([encoder.finish()]);
        let slice = self.readback.slice(..bytes);
        let (sender, receiver) = mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| drop(sender.send(result)));
        device
            .poll(wgpu::PollType::Wait { submission_index: Some(submission), timeout: None })
            .context("waiting for the GPU read-back")?;
        receiver.recv().context("the GPU read-back was dropped")?.context("mapping the GPU read-back")?;
        let pixels = slice
            .get_mapped_range()
            .context("reading the mapped GPU read-back")?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        self.readback.unmap();
        Ok(GpuDecode { pixels, batch, resolution })
    }

    fn kernel(&self, op: Op) -> &Kernel {
        match op {
            Op::Dequantize => &self.kernels.dequantize,
            Op::Conv2d => &self.kernels.conv2d,
            Op::GroupNormStatistics => &self.kernels.group_norm_statistics,
            Op::GroupNormApply => &self.kernels.group_norm_apply,
            Op::ToRgba => &self.kernels.to_rgba,
        }
    }
}

/// Builds the steps: uploads weights and makes activations and bind groups.
struct Plan<'a> {
    device: &'a wgpu::Device,
    kernels: &'a Kernels,
    weights: &'a HashMap<String, Tensor>,
    max_batch: usize,
    steps: Vec<Step>,
}

impl Plan<'_> {
    fn upload(&self, label: &str, tensor: &Tensor) -> Result<wgpu::Buffer> {
        let values: Vec<f32> = tensor.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &bytes,
            usage: wgpu::BufferUsages::STORAGE,
        }))
    }

    fn weight(&self, name: &str) -> Result<(&Tensor, wgpu::Buffer)> {
        let tensor = self.weights.get(name).with_context(|| format!("the model has no tensor {name}"))?;
        Ok((tensor, self.upload(name, tensor)?))
    }

    fn storage(&self, label: &str, bytes: usize, extra: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes as u64,
            usage: wgpu::BufferUsages::STORAGE | extra,
            mapped_at_creation: false,
        })
    }

    fn activation(&self, channels: usize, side: usize) -> Activation {
        let bytes = self.max_batch * channels * side * side * 4;
        Activation { buffer: self.storage("activation", bytes, wgpu::BufferUsages::empty()), channels, side }
    }

    fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("parameters"),
            contents: &u32_bytes(words),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// Convolution `name` ("same" padding, stride 1) of `input`, optionally upsampling the
    /// input 2x first and adding `residual` after.
    fn conv(
        &mut self,
        name: &str,
        input: &Activation,
        upsample: bool,
        residual: Option<&Activation>,
    ) -> Result<Activation> {
        let (weight, weight_buffer) = self.weight(&format!("{name}.weight"))?;
        let (out_c, in_c, k, _) = weight.dims4()?;
        ensure!(in_c == input.channels, "{name} takes {in_c} channels, its input has {}", input.channels);
        let (_, bias) = self.weight(&format!("{name}.bias"))?;
        let side = input.side * if upsample { 2 } else { 1 };
        let output = self.activation(out_c, side);
        let params = self.uniform(&[
            in_c as u32,
            out_c as u32,
            input.side as u32,
            input.side as u32,
            k as u32,
            upsample as u32,
            residual.is_some() as u32,
            0,
        ]);
        let residual = residual.map_or(&input.buffer, |r| &r.buffer);
        let bind_group = self.kernels.conv2d.bind(
            self.device,
            &[
                params.as_entire_binding(),
                input.buffer.as_entire_binding(),
                weight_buffer.as_entire_binding(),
                bias.as_entire_binding(),
                residual.as_entire_binding(),
                output.buffer.as_entire_binding(),
            ],
        );
        let side = side as u32;
        let blocks = (out_c as u32).div_ceil(CONV_CHANNELS_PER_INVOCATION);
        self.steps.push(Step {
            op: Op::Conv2d,
            bind_group,
            workgroups: [side.div_ceil(8), side.div_ceil(8), blocks],
            batch_axis: 2,
        });
        Ok(output)
    }

    /// GroupNorm `name` of `input` with `groups` groups, optionally followed by SiLU.
    fn group_norm(&mut self, name: &str, input: &Activation, groups: usize, silu: bool) -> Result<Activation> {
        let (_, gamma) = self.weight(&format!("{name}.weight"))?;
        let (_, beta) = self.weight(&format!("{name}.bias"))?;
        let output = self.activation(input.channels, input.side);
        let stats = self.storage("group statistics", self.max_batch * groups * 2 * 4, wgpu::BufferUsages::empty());
        let plane = input.side * input.side;
        let params = self.uniform(&[
            input.channels as u32,
            plane as u32,
            groups as u32,
            silu as u32,
            GROUP_NORM_EPS.to_bits(),
            0,
            0,
            0,
        ]);
        let resources = [
            params.as_entire_binding(),
            input.buffer.as_entire_binding(),
            gamma.as_entire_binding(),
            beta.as_entire_binding(),
            stats.as_entire_binding(),
            output.buffer.as_entire_binding(),
        ];
        let statistics = self.kernels.group_norm_statistics.bind(self.device, &resources);
        let apply = self.kernels.group_norm_apply.bind(self.device, &resources);
        self.steps.push(Step {
            op: Op::GroupNormStatistics,
            bind_group: statistics,
            workgroups: [groups as u32, 1, 1],
            batch_axis: 1,
        });
        let per_image = (input.channels * plane) as u32;
        self.steps.push(Step {
            op: Op::GroupNormApply,
            bind_group: apply,
            workgroups: [per_image.div_ceil(256), 1, 1],
            batch_axis: 1,
        });
        Ok(output)
    }
}

fn u32_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
