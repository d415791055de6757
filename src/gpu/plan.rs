//! A network as a fixed sequence of GPU dispatches, built once per model: weights are
//! uploaded, every intermediate buffer and bind group is made for batches of up to
//! `max_batch` items, and a run only writes its inputs, records the steps and submits.
//! The decoder and the encoder are both built this way.

use std::collections::HashMap;
use std::sync::mpsc;

use anyhow::{anyhow, ensure, Context, Result};
use candle_core::Tensor;
use wgpu::util::DeviceExt;

use super::kernels::{Kernel, Kernels};
use super::Gpu;
use crate::compute::conv::Padding;
use crate::model::SpaeModel;

/// Output channels per conv2d invocation (`CHANNELS_PER_INVOCATION` in conv2d.wgsl).
const CONV_CHANNELS_PER_INVOCATION: u32 = 4;

/// One dispatch: its kernel, its bind group and its workgroup counts for one batch item;
/// the count along `batch_axis` is multiplied by the batch size.
pub struct Step {
    kernel: fn(&Kernels) -> &Kernel,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    batch_axis: usize,
}

/// Records `steps` for a batch of `batch` items into one compute pass of `encoder`.
pub fn record(kernels: &Kernels, steps: &[Step], encoder: &mut wgpu::CommandEncoder, batch: usize) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
    for step in steps {
        let mut workgroups = step.workgroups;
        workgroups[step.batch_axis] *= batch as u32;
        (step.kernel)(kernels).dispatch(&mut pass, &step.bind_group, workgroups);
    }
}

/// Runs `work` with the device's errors caught (validation, out of memory, internal)
/// instead of reaching wgpu's default handler, which panics; `what` names the work in the
/// error.
pub fn catching<T>(device: &wgpu::Device, what: &str, work: impl FnOnce() -> T) -> Result<T> {
    let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
    let memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let value = work();
    // Innermost first.
    let errors = [validation, memory, internal].map(|scope| pollster::block_on(scope.pop()));
    match errors.into_iter().flatten().next() {
        Some(error) => anyhow::bail!("{what} failed on the GPU: {error}"),
        None => Ok(value),
    }
}

/// Runs one submission: `prepare` writes the inputs through the queue and records the
/// commands; then the GPU's work is waited for, and device errors become errors.
pub fn run(gpu: &Gpu, what: &str, prepare: impl FnOnce(&wgpu::Queue, &mut wgpu::CommandEncoder)) -> Result<()> {
    let submission = catching(&gpu.device, what, || {
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
        prepare(&gpu.queue, &mut encoder);
        gpu.queue.submit([encoder.finish()])
    })?;
    gpu.device
        .poll(wgpu::PollType::Wait { submission_index: Some(submission), timeout: None })
        .with_context(|| format!("waiting for the GPU ({what})"))?;
    Ok(())
}

/// The first `bytes` of `buffer` (a storage buffer with `COPY_SRC`), copied through
/// `readback` (a `MAP_READ` buffer at least as large) and returned as 4-byte words.
pub fn read_words(gpu: &Gpu, buffer: &wgpu::Buffer, readback: &wgpu::Buffer, bytes: u64) -> Result<Vec<[u8; 4]>> {
    let device = &gpu.device;
    let slice = readback.slice(..bytes);
    let (sender, receiver) = mpsc::channel();
    let submission = catching(device, "reading back", || {
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("read back") });
        encoder.copy_buffer_to_buffer(buffer, 0, readback, 0, bytes);
        let submission = gpu.queue.submit([encoder.finish()]);
        slice.map_async(wgpu::MapMode::Read, move |result| drop(sender.send(result)));
        submission
    })?;
    device
        .poll(wgpu::PollType::Wait { submission_index: Some(submission), timeout: None })
        .context("waiting for the GPU read-back")?;
    receiver.recv().context("the GPU read-back was dropped")?.context("mapping the GPU read-back")?;
    let words = slice
        .get_mapped_range()
        .context("reading the mapped GPU read-back")?
        .chunks_exact(4)
        .map(|b| [b[0], b[1], b[2], b[3]])
        .collect();
    readback.unmap();
    Ok(words)
}

/// A `max_batch x channels x side x side` f32 buffer.
#[derive(Clone)]
pub struct Activation {
    pub buffer: wgpu::Buffer,
    pub channels: usize,
    pub side: usize,
}

/// What follows a convolution's sum and bias (`activation` in conv2d.wgsl).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Activate {
    None = 0,
    Relu6 = 1,
    Silu = 2,
}

/// How a convolution reads its input and finishes its output.
#[derive(Clone, Copy)]
pub struct ConvOptions<'a> {
    pub stride: usize,
    /// Zero rows and columns around the input; `None`: "same" padding (kernel / 2).
    pub padding: Option<Padding>,
    /// Read the input 2x nearest-upsampled (stride 1 only).
    pub upsample: bool,
    pub depthwise: bool,
    pub activate: Activate,
    /// Added to the output after the activation.
    pub residual: Option<&'a Activation>,
}

impl Default for ConvOptions<'_> {
    fn default() -> Self {
        Self { stride: 1, padding: None, upsample: false, depthwise: false, activate: Activate::None, residual: None }
    }
}

pub struct Plan<'a> {
    pub device: &'a wgpu::Device,
    pub kernels: &'a Kernels,
    /// The batch the buffers are made for.
    pub max_batch: usize,
    steps: Vec<Step>,
    /// The largest batch every step can dispatch within the device's workgroup limit.
    dispatchable: usize,
}

impl<'a> Plan<'a> {
    pub fn new(device: &'a wgpu::Device, kernels: &'a Kernels, max_batch: usize) -> Self {
        Self { device, kernels, max_batch, steps: Vec::new(), dispatchable: max_batch }
    }

    /// The steps, and the largest batch (at most `max_batch`) one submission can run: a
    /// step's workgroup count along its batch axis grows with the batch, and the device
    /// caps it (65,535 by default).
    pub fn into_steps(self) -> (Vec<Step>, usize) {
        (self.steps, self.dispatchable)
    }

    /// Appends a dispatch of `kernel` over `resources` (in binding order); refuses one that
    /// exceeds the device's workgroup limit for a single image.
    pub fn push(
        &mut self,
        kernel: fn(&Kernels) -> &Kernel,
        resources: &[wgpu::BindingResource<'_>],
        workgroups: [u32; 3],
        batch_axis: usize,
    ) -> Result<()> {
        let limit = self.device.limits().max_compute_workgroups_per_dimension;
        ensure!(
            workgroups.iter().all(|&count| count <= limit),
            "a step needs {workgroups:?} workgroups, and the GPU dispatches at most {limit} along an axis"
        );
        let bind_group = kernel(self.kernels).bind(self.device, resources);
        self.dispatchable = self.dispatchable.min((limit / workgroups[batch_axis].max(1)) as usize);
        self.steps.push(Step { kernel, bind_group, workgroups, batch_axis });
        Ok(())
    }

    pub fn upload(&self, label: &str, tensor: &Tensor) -> Result<wgpu::Buffer> {
        let values: Vec<f32> = tensor.flatten_all()?.to_vec1()?;
        self.upload_values(label, &values)
    }

    pub fn upload_values(&self, label: &str, values: &[f32]) -> Result<wgpu::Buffer> {
        self.fits(label, values.len() * 4)?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &bytes,
            usage: wgpu::BufferUsages::STORAGE,
        }))
    }

    /// Refuses a buffer of `bytes` that the device cannot bind.
    fn fits(&self, label: &str, bytes: usize) -> Result<()> {
        let limits = self.device.limits();
        let limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        ensure!(
            bytes as u64 <= limit,
            "the GPU binds buffers of at most {:.1} MB, and the {label} buffer needs {:.1} MB",
            limit as f64 / 1e6,
            bytes as f64 / 1e6
        );
        Ok(())
    }

    pub fn storage(&self, label: &str, bytes: usize, extra: wgpu::BufferUsages) -> Result<wgpu::Buffer> {
        self.fits(label, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4) as u64,
            usage: wgpu::BufferUsages::STORAGE | extra,
            mapped_at_creation: false,
        }))
    }

    pub fn activation(&self, channels: usize, side: usize) -> Result<Activation> {
        let bytes = self.max_batch * channels * side * side * 4;
        let buffer = self.storage("activation", bytes, wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST)?;
        Ok(Activation { buffer, channels, side })
    }

    pub fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("parameters"),
            contents: &u32_bytes(words),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// A convolution of `input` with `weight` (`out x in x k x k`, or `channels x 1 x k x k`
    /// when depthwise) and `bias`.
    pub fn conv(
        &mut self,
        name: &str,
        weight: &Tensor,
        bias: &Tensor,
        input: &Activation,
        options: ConvOptions,
    ) -> Result<Activation> {
        let (out_c, weight_in, k, _) = weight.dims4()?;
        let in_c = if options.depthwise { out_c } else { weight_in };
        ensure!(in_c == input.channels, "{name} takes {in_c} channels, its input has {}", input.channels);
        ensure!(
            !(options.upsample && (options.stride != 1 || options.depthwise)),
            "{name}: upsampling is for plain stride-1 convolutions"
        );
        let weight_buffer = self.upload(name, weight)?;
        let bias_buffer = self.upload(name, bias)?;
        let in_side = input.side * if options.upsample { 2 } else { 1 };
        let padding = options.padding.unwrap_or(Padding::same(k));
        let side = padding.output_size(in_side, k, options.stride);
        let output = self.activation(out_c, side)?;
        if let Some(residual) = options.residual {
            ensure!(
                residual.channels == out_c && residual.side == side,
                "{name}: the residual does not match the output"
            );
        }
        let params = self.uniform(&[
            in_c as u32,
            out_c as u32,
            input.side as u32,
            input.side as u32,
            side as u32,
            side as u32,
            k as u32,
            options.stride as u32,
            padding.before as u32,
            options.upsample as u32,
            options.activate as u32,
            options.residual.is_some() as u32,
        ]);
        let residual = options.residual.map_or(&input.buffer, |r| &r.buffer);
        let resources = [
            params.as_entire_binding(),
            input.buffer.as_entire_binding(),
            weight_buffer.as_entire_binding(),
            bias_buffer.as_entire_binding(),
            residual.as_entire_binding(),
            output.buffer.as_entire_binding(),
        ];
        let tiles = (side as u32).div_ceil(8);
        let blocks = (out_c as u32).div_ceil(CONV_CHANNELS_PER_INVOCATION);
        if options.depthwise {
            self.push(|k| &k.depthwise, &resources, [tiles, tiles, blocks], 2)?;
        } else {
            self.push(|k| &k.conv2d, &resources, [tiles, tiles, blocks], 2)?;
        }
        Ok(output)
    }

    /// The convolution whose weight and bias are the model's `{name}.weight` and `{name}.bias`.
    pub fn named_conv(
        &mut self,
        weights: &Weights,
        name: &str,
        input: &Activation,
        options: ConvOptions,
    ) -> Result<Activation> {
        let (weight, bias) = (weights.get(&format!("{name}.weight"))?, weights.get(&format!("{name}.bias"))?);
        self.conv(name, weight, bias, input, options)
    }

    /// The model's GroupNorm `name` of `input`, followed by SiLU (as `model::blocks`).
    pub fn named_group_norm_silu(
        &mut self,
        weights: &Weights,
        name: &str,
        input: &Activation,
        groups: usize,
    ) -> Result<Activation> {
        let (gamma, beta) = (weights.get(&format!("{name}.weight"))?, weights.get(&format!("{name}.bias"))?);
        self.group_norm(name, gamma, beta, input, groups, true)
    }

    /// GroupNorm of `input` with `groups` groups, scale `gamma` and shift `beta`,
    /// optionally followed by SiLU.
    pub fn group_norm(
        &mut self,
        name: &str,
        gamma: &Tensor,
        beta: &Tensor,
        input: &Activation,
        groups: usize,
        silu: bool,
    ) -> Result<Activation> {
        const EPS: f32 = 1e-6;
        let gamma = self.upload(name, gamma)?;
        let beta = self.upload(name, beta)?;
        let output = self.activation(input.channels, input.side)?;
        let stats = self.storage("group statistics", self.max_batch * groups * 2 * 4, wgpu::BufferUsages::empty())?;
        let plane = input.side * input.side;
        let params =
            self.uniform(&[input.channels as u32, plane as u32, groups as u32, silu as u32, EPS.to_bits(), 0, 0, 0]);
        let resources = [
            params.as_entire_binding(),
            input.buffer.as_entire_binding(),
            gamma.as_entire_binding(),
            beta.as_entire_binding(),
            stats.as_entire_binding(),
            output.buffer.as_entire_binding(),
        ];
        self.push(|k| &k.group_norm_statistics, &resources, [groups as u32, 1, 1], 1)?;
        let per_image = (input.channels * plane) as u32;
        self.push(|k| &k.group_norm_apply, &resources, [per_image.div_ceil(256), 1, 1], 1)?;
        Ok(output)
    }
}

/// A model's variables by name, as they are uploaded.
pub struct Weights(HashMap<String, Tensor>);

impl Weights {
    /// The variables of `model` whose names start with one of `prefixes`.
    pub fn of(model: &SpaeModel, prefixes: &[&str]) -> Result<Self> {
        let data = model.varmap().data().lock().map_err(|_| anyhow!("the model's variables are poisoned"))?;
        Ok(Self(
            data.iter()
                .filter(|(name, _)| prefixes.iter().any(|p| name.starts_with(p)))
                .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
                .collect(),
        ))
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.0.get(name).with_context(|| format!("the model has no tensor {name}"))
    }
}

pub fn u32_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
