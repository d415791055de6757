//! The encoder as a fixed sequence of GPU dispatches ([`super::plan`]): pixels to the
//! latent z (the CNN, plus the semantic branch's frozen teacher and projector where the
//! model has one), then SAQ's layers one after another (cell targets, the fused
//! nearest-word search, the chosen words added to the running sums), all in one command
//! buffer. Only the token ids, z and (where the branch names the upper words) those
//! layers' targets are read back.
//!
//! The same arithmetic as the CPU path (`model::SpaeModel::quantize`), in another order
//! of summation: z agrees to about 1e-6, and the words agree except where two words are
//! equally near a target to within that rounding (ties of exactly equal scores go to the
//! lower id, as on the CPU).

use anyhow::{ensure, Result};
use candle_core::{Device, Tensor};
use image::RgbImage;

use super::kernels::{Kernel, Kernels};
use super::plan::{self, Activate, Activation, ConvOptions, Plan, Step, Weights};
use super::Gpu;
use crate::model::config::BranchMode;
use crate::model::semantic_branch::SemanticBranch;
use crate::model::{Latent, SpaeModel};
use crate::pyramid::{CellTarget, Pyramid, PyramidShape};
use crate::teacher::efficientnet::ConvBn;

/// Words of the vocabulary one workgroup of the search scans (a multiple of the
/// kernel's 64-word tile); more chunks give a small batch more parallel work.
const CHUNK_WORDS: usize = 1024;
/// Targets per workgroup of the search (`TILE_TARGETS` in saq.wgsl).
const TILE_TARGETS: usize = 16;

pub struct GpuEncoder {
    gpu: Gpu,
    kernels: Kernels,
    shape: PyramidShape,
    resolution: usize,
    dim: usize,
    vocabulary: usize,
    max_batch: usize,
    pixels: wgpu::Buffer,
    latent: Activation,
    /// Where the branch names the upper words: layer l's targets (`batch x cells x dim`).
    named: Vec<wgpu::Buffer>,
    sums: wgpu::Buffer,
    tokens: wgpu::Buffer,
    readback: wgpu::Buffer,
    steps: Vec<Step>,
}

/// What an encode returns: each image's pyramid and the latent it was quantized from.
pub struct EncodedBatch {
    pub pyramids: Vec<Pyramid>,
    /// As [`SpaeModel::encode_latent`] gives it.
    pub latent: Latent,
}

impl EncodedBatch {
    /// The same on the CPU ([`SpaeModel::quantize`]), image after image.
    pub fn on_cpu(model: &SpaeModel, images: &[RgbImage]) -> Result<Self> {
        check_prepared(images, model.config().resolution)?;
        let mut pyramids = Vec::with_capacity(images.len());
        let mut latents = Vec::with_capacity(images.len());
        for image in images {
            let (latent, mut quantized) = model.quantize(&crate::image_io::to_tensor(std::slice::from_ref(image))?)?;
            pyramids.push(quantized.pyramids.remove(0));
            latents.push(latent);
        }
        Ok(Self { pyramids, latent: Latent::cat(&latents)? })
    }
}

impl GpuEncoder {
    /// Uploads `model`'s encoder (and semantic branch), and its codebook, to `gpu`, and
    /// prepares the dispatches for batches of up to `max_batch` images. Fails, saying
    /// which, where a buffer would exceed what the device can bind.
    pub fn new(gpu: Gpu, model: &SpaeModel, max_batch: usize) -> Result<Self> {
        ensure!(max_batch >= 1, "a GPU encoder needs room for at least one image");
        let device = gpu.device.clone();
        plan::catching(&device, "building the encoder", || Self::build(gpu, model, max_batch))?
    }

    fn build(gpu: Gpu, model: &SpaeModel, max_batch: usize) -> Result<Self> {
        let device = &gpu.device;
        let kernels = Kernels::new(device);
        let config = model.config();
        let shape = model.shape().clone();
        let weights = Weights::of(model, &["encoder.", "branch."])?;
        let mut plan = Plan::new(device, &kernels, max_batch);
        let resolution = config.resolution;
        let pixels = plan.activation(3, resolution)?;

        let latent = cnn(&mut plan, &weights, model, &pixels)?;
        let named = match model.branch() {
            Some(branch) => semantic_branch(&mut plan, &weights, branch, &shape, &pixels, &latent)?,
            None => Vec::new(),
        };

        let (sums, tokens) = saq(&mut plan, model, &latent, &named)?;
        let (steps, max_batch) = plan.into_steps();
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("encode read-back"),
            size: latent.buffer.size().max(tokens.size()),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Self {
            gpu,
            kernels,
            shape,
            resolution,
            dim: model.codebook().dim(),
            vocabulary: model.codebook().len(),
            max_batch,
            pixels: pixels.buffer,
            latent,
            named,
            sums,
            tokens,
            readback,
            steps,
        })
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The most images one submission encodes (at most the batch asked for at creation;
    /// fewer where the device's dispatch limits require it).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Encodes prepared images (R x R, as [`crate::image_io::prepare`] makes them), up to
    /// [`Self::max_batch`] per submission.
    pub fn encode(&self, images: &[RgbImage]) -> Result<EncodedBatch> {
        check_prepared(images, self.resolution)?;
        let mut pyramids = Vec::with_capacity(images.len());
        let mut latents = Vec::with_capacity(images.len().div_ceil(self.max_batch));
        for chunk in images.chunks(self.max_batch) {
            let (chunk_pyramids, latent) = self.encode_batch(chunk)?;
            pyramids.extend(chunk_pyramids);
            latents.push(latent);
        }
        Ok(EncodedBatch { pyramids, latent: Latent::cat(&latents)? })
    }

    fn encode_batch(&self, images: &[RgbImage]) -> Result<(Vec<Pyramid>, Latent)> {
        check_prepared(images, self.resolution)?;
        let pixels: Vec<f32> = crate::image_io::to_tensor(images)?.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
        plan::run(&self.gpu, "encoding", |queue, encoder| {
            queue.write_buffer(&self.pixels, 0, &bytes);
            encoder.clear_buffer(&self.sums, 0, None);
            plan::record(&self.kernels, &self.steps, encoder, images.len());
        })?;

        let batch = images.len();
        let per_image = self.shape.tokens_in_prefix(self.shape.layers());
        let tokens = plan::read_words(&self.gpu, &self.tokens, &self.readback, (batch * per_image * 4) as u64)?;
        let tokens: Vec<u32> = tokens.into_iter().map(u32::from_le_bytes).collect();
        // A target whose every score is not finite keeps the search's "no word" mark.
        ensure!(
            tokens.iter().all(|&t| (t as usize) < self.vocabulary),
            "the GPU search found no word for a target (a latent that is not finite?)"
        );
        let pyramids = tokens
            .chunks(per_image)
            .map(|words| Pyramid::from_words(self.shape.clone(), words))
            .collect::<Result<Vec<_>>>()?;
        let g = self.shape.latent_size();
        let values = batch * self.dim * g * g;
        let read = |buffer: &wgpu::Buffer, values: usize| -> Result<Vec<f32>> {
            let words = plan::read_words(&self.gpu, buffer, &self.readback, (values * 4) as u64)?;
            Ok(words.into_iter().map(f32::from_le_bytes).collect())
        };
        let z = Tensor::from_vec(read(&self.latent.buffer, values)?, (batch, self.dim, g, g), &Device::Cpu)?;
        let named = self
            .named
            .iter()
            .enumerate()
            .map(|(i, buffer)| {
                let s = self.shape.grid_size(i + 1);
                let rows = read(buffer, batch * s * s * self.dim)?;
                Ok(Tensor::from_vec(rows, (batch, s, s, self.dim), &Device::Cpu)?
                    .permute((0, 3, 1, 2))?
                    .contiguous()?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((pyramids, Latent { z, named }))
    }
}

/// Refuses an empty batch and images that are not prepared (`resolution` square).
pub fn check_prepared(images: &[RgbImage], resolution: usize) -> Result<()> {
    ensure!(!images.is_empty(), "nothing to encode");
    let side = resolution as u32;
    if let Some(image) = images.iter().find(|i| i.dimensions() != (side, side)) {
        let (w, h) = image.dimensions();
        anyhow::bail!("the encoder takes prepared {side} x {side} images, not {w} x {h}");
    }
    Ok(())
}

/// The CNN of `model::encoder`, layer by layer: pixels to the latent z.
fn cnn(plan: &mut Plan, weights: &Weights, model: &SpaeModel, pixels: &Activation) -> Result<Activation> {
    let (config, shape) = (model.config(), model.shape());
    let groups = config.norm_groups;
    let mut h = plan.named_conv(weights, "encoder.conv_in", pixels, ConvOptions::default())?;
    for level in 0..config.channels.len() {
        for block in 0..config.res_blocks {
            let name = format!("encoder.levels.{level}.blocks.{block}");
            let skip = if weights.get(&format!("{name}.skip.weight")).is_ok() {
                plan.named_conv(weights, &format!("{name}.skip"), &h, ConvOptions::default())?
            } else {
                h.clone()
            };
            let t = plan.named_group_norm_silu(weights, &format!("{name}.norm1"), &h, groups)?;
            let t = plan.named_conv(weights, &format!("{name}.conv1"), &t, ConvOptions::default())?;
            let t = plan.named_group_norm_silu(weights, &format!("{name}.norm2"), &t, groups)?;
            let options = ConvOptions { residual: Some(&skip), ..Default::default() };
            h = plan.named_conv(weights, &format!("{name}.conv2"), &t, options)?;
        }
        if level + 1 < config.channels.len() {
            let options = ConvOptions { stride: 2, ..Default::default() };
            h = plan.named_conv(weights, &format!("encoder.levels.{level}.downsample"), &h, options)?;
        }
    }
    let t = plan.named_group_norm_silu(weights, "encoder.norm_out", &h, groups)?;
    let latent = plan.named_conv(weights, "encoder.conv_out", &t, ConvOptions::default())?;
    ensure!(
        latent.channels == config.latent_channels && latent.side == shape.latent_size(),
        "the encoder's output is {} x {}^2, expected {} x {}^2",
        latent.channels,
        latent.side,
        config.latent_channels,
        shape.latent_size()
    );
    Ok(latent)
}

/// SAQ's layers on the latent z: per layer, the cell targets, the search, the choice and
/// the running sums. Returns the running sums (cleared before each run) and the tokens.
/// The first `named.len()` layers search the targets the semantic branch wrote there.
fn saq(
    plan: &mut Plan,
    model: &SpaeModel,
    latent: &Activation,
    named: &[wgpu::Buffer],
) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
    let (config, shape, max_batch) = (model.config(), model.shape(), plan.max_batch);
    let codebook = model.codebook();
    let dim = codebook.dim();
    let codebook_buffer = plan.upload("codebook", codebook.embeddings())?;
    let norms = plan.upload_values("codebook norms", codebook.squared_norms())?;
    let g = shape.latent_size();
    let sums = plan.storage("running sums", max_batch * dim * g * g * 4, wgpu::BufferUsages::COPY_DST)?;
    let most_cells = (1..=shape.layers()).map(|l| shape.tokens_in_layer(l)).max().unwrap_or(1);
    let targets = plan.storage("targets", max_batch * most_cells * dim * 4, wgpu::BufferUsages::empty())?;
    let chunks = codebook.len().div_ceil(CHUNK_WORDS);
    let partial = plan.storage("search partials", max_batch * most_cells * chunks * 8, wgpu::BufferUsages::empty())?;
    let tokens_per_image = shape.tokens_in_prefix(shape.layers());
    let tokens = plan.storage("tokens", max_batch * tokens_per_image * 4, wgpu::BufferUsages::COPY_SRC)?;
    let dilated = match config.cell_target {
        CellTarget::Mean => 0,
        CellTarget::Dilated => 1,
    };
    for layer in 1..=shape.layers() {
        let (s, cells) = (shape.grid_size(layer), shape.tokens_in_layer(layer));
        let params = plan.uniform(&[
            dim as u32,
            g as u32,
            s as u32,
            shape.cell_size(layer) as u32,
            layer as u32,
            dilated,
            tokens_per_image as u32,
            shape.tokens_in_prefix(layer - 1) as u32,
            codebook.len() as u32,
            CHUNK_WORDS as u32,
            chunks as u32,
            shape.weights()[layer - 1],
            shape.weight_total(layer),
            0,
            0,
            0,
        ]);
        let given = named.get(layer - 1);
        let resources = [
            params.as_entire_binding(),
            latent.buffer.as_entire_binding(),
            sums.as_entire_binding(),
            codebook_buffer.as_entire_binding(),
            norms.as_entire_binding(),
            given.unwrap_or(&targets).as_entire_binding(),
            partial.as_entire_binding(),
            tokens.as_entire_binding(),
        ];
        let cells = cells as u32;
        if given.is_none() {
            plan.push(|k| &k.cell_targets, &resources, [(cells * dim as u32).div_ceil(256), 1, 1], 1)?;
        }
        plan.push(|k| &k.nearest, &resources, [cells.div_ceil(TILE_TARGETS as u32), chunks as u32, 1], 2)?;
        plan.push(|k| &k.choose, &resources, [cells.div_ceil(64), 1, 1], 1)?;
        plan.push(|k| &k.add_words, &resources, [((dim * g * g) as u32).div_ceil(256), 1, 1], 1)?;
    }
    Ok((sums, tokens))
}

/// The semantic branch of `model::semantic_branch`: the frozen teacher on the resized
/// pixels, its head features averaged over each shaped layer's cells, projected, and with
/// the layer's offset either added to the latent or, where the branch names the upper
/// words, written as those layers' targets. Returns the buffers of those targets (none
/// in `add` mode).
fn semantic_branch(
    plan: &mut Plan,
    weights: &Weights,
    branch: &SemanticBranch,
    shape: &PyramidShape,
    pixels: &Activation,
    latent: &Activation,
) -> Result<Vec<wgpu::Buffer>> {
    let input = branch.config().teacher_input;
    let teacher = branch.teacher();
    let resized = plan.activation(3, input)?;
    let params = plan.uniform(&[3, pixels.side as u32, input as u32, 0]);
    plan.push(
        |k| &k.teacher_input,
        &[
            params.as_entire_binding(),
            pixels.buffer.as_entire_binding(),
            // Unread here (the offsets of `add_cells`).
            pixels.buffer.as_entire_binding(),
            resized.buffer.as_entire_binding(),
        ],
        [((3 * input * input) as u32).div_ceil(256), 1, 1],
        1,
    )?;
    let mut h = teacher_conv(plan, "teacher stem", teacher.stem(), &resized, None)?;
    for block in teacher.blocks() {
        let expanded = match &block.expand {
            Some(expand) => teacher_conv(plan, "teacher expansion", expand, &h, None)?,
            None => h.clone(),
        };
        let t = teacher_conv(plan, "teacher depthwise", &block.depthwise, &expanded, None)?;
        h = teacher_conv(plan, "teacher projection", &block.project, &t, block.residual.then_some(&h))?;
    }
    let head = teacher_conv(plan, "teacher head", teacher.head(), &h, None)?;
    let grid = average_pool(plan, &head, branch.grid(shape))?;

    let offsets = weights.get("branch.layer_offsets")?;
    let offsets = plan.upload("branch offsets", offsets)?;
    let mut named = Vec::new();
    for layer in 1..=branch.config().layers {
        let s = shape.grid_size(layer);
        let cells = average_pool(plan, &grid, s)?;
        let silu = ConvOptions { activate: Activate::Silu, ..Default::default() };
        let hidden = plan.named_conv(weights, "branch.project_in", &cells, silu)?;
        let projected = plan.named_conv(weights, "branch.project_out", &hidden, ConvOptions::default())?;
        let params = plan.uniform(&[projected.channels as u32, s as u32, latent.side as u32, (layer - 1) as u32]);
        let (kernel, output, values): (fn(&Kernels) -> &Kernel, _, _) = match branch.config().mode {
            BranchMode::Add => (|k| &k.add_cells, latent.buffer.clone(), latent.channels * latent.side * latent.side),
            BranchMode::Name => {
                let values = projected.channels * s * s;
                let targets =
                    plan.storage("named targets", plan.max_batch * values * 4, wgpu::BufferUsages::COPY_SRC)?;
                named.push(targets.clone());
                (|k| &k.named_targets, targets, values)
            }
        };
        plan.push(
            kernel,
            &[
                params.as_entire_binding(),
                projected.buffer.as_entire_binding(),
                offsets.as_entire_binding(),
                output.as_entire_binding(),
            ],
            [(values as u32).div_ceil(256), 1, 1],
            1,
        )?;
    }
    Ok(named)
}

/// One of the teacher's convolutions (batch norm folded in), with TensorFlow's padding.
fn teacher_conv(
    plan: &mut Plan,
    name: &str,
    layer: &ConvBn,
    input: &Activation,
    residual: Option<&Activation>,
) -> Result<Activation> {
    let weight = if layer.depthwise {
        let channels = layer.weight.dim(0)?;
        layer.weight.reshape((channels, 1, layer.kernel, layer.kernel))?
    } else {
        layer.weight.clone()
    };
    let options = ConvOptions {
        stride: layer.stride,
        padding: Some(layer.padding(input.side)),
        upsample: false,
        depthwise: layer.depthwise,
        activate: if layer.relu6 { Activate::Relu6 } else { Activate::None },
        residual,
    };
    plan.conv(name, &weight, &layer.bias, input, options)
}

/// Means of `input` over the windows of an `side` x `side` grid (itself where it is that
/// wide already).
fn average_pool(plan: &mut Plan, input: &Activation, side: usize) -> Result<Activation> {
    if side == input.side {
        return Ok(input.clone());
    }
    ensure!(input.side.is_multiple_of(side), "a {} wide map pooled to {side}", input.side);
    let output = plan.activation(input.channels, side)?;
    let params = plan.uniform(&[input.channels as u32, input.side as u32, side as u32, 0]);
    plan.push(
        |k| &k.average_pool,
        &[
            params.as_entire_binding(),
            input.buffer.as_entire_binding(),
            // Unread here (the offsets of `add_cells`).
            input.buffer.as_entire_binding(),
            output.buffer.as_entire_binding(),
        ],
        [((input.channels * side * side) as u32).div_ceil(256), 1, 1],
        1,
    )?;
    Ok(output)
}
