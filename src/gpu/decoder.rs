//! The decoder as a fixed sequence of GPU dispatches ([`super::plan`]): a decode writes
//! the token ids, records the dispatches and submits them.
//!
//! A batch item is a pyramid and the number of its layers to decode, so the studio decodes
//! every layer prefix of one pyramid in one submission. Item i lands in layer i of an RGBA
//! texture array (drawn by the studio as it is) and in an f32 buffer that is read back
//! only when pixels are wanted on the CPU (metrics, export, tests).

use anyhow::{bail, ensure, Result};
use image::RgbImage;

use super::kernels::Kernels;
use super::plan::{self, Activation, ConvOptions, Plan, Step, Weights};
use super::Gpu;
use crate::image_io;
use crate::model::SpaeModel;
use crate::pyramid::{Pyramid, PyramidShape};

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

impl GpuDecoder {
    /// Uploads `model`'s decoder weights and codebook to `gpu` and prepares the dispatches
    /// for batches of up to `max_batch` items.
    pub fn new(gpu: Gpu, model: &SpaeModel, max_batch: usize) -> Result<Self> {
        ensure!(max_batch >= 1, "a GPU decoder needs room for at least one image");
        let device = gpu.device.clone();
        plan::catching(&device, "building the decoder", || Self::build(gpu, model, max_batch))?
    }

    fn build(gpu: Gpu, model: &SpaeModel, max_batch: usize) -> Result<Self> {
        let device = &gpu.device;
        let kernels = Kernels::new(device);
        let config = model.config();
        let shape = model.shape().clone();
        let codebook = model.codebook();
        let tokens_per_image = shape.tokens_in_prefix(shape.layers());
        let weights = Weights::of(model, &["decoder."])?;
        let mut plan = Plan::new(device, &kernels, max_batch);

        let codebook_buffer = plan.upload("codebook", codebook.embeddings())?;
        let tokens = plan.storage("tokens", max_batch * tokens_per_image * 4, wgpu::BufferUsages::COPY_DST)?;
        let prefix_layers = plan.storage("prefix layers", max_batch * 4, wgpu::BufferUsages::COPY_DST)?;
        let g = shape.latent_size();
        let zhat = plan.activation(config.latent_channels, g)?;
        let mut words = vec![config.latent_channels as u32, g as u32, tokens_per_image as u32, 0];
        words.extend(shape.weights().iter().copied().chain(std::iter::repeat(0)).take(16));
        let params = plan.uniform(&words);
        let per_image = (config.latent_channels * g * g) as u32;
        plan.push(
            |k| &k.dequantize,
            &[
                params.as_entire_binding(),
                codebook_buffer.as_entire_binding(),
                tokens.as_entire_binding(),
                prefix_layers.as_entire_binding(),
                zhat.buffer.as_entire_binding(),
            ],
            [per_image.div_ceil(256), 1, 1],
            1,
        )?;

        // The decoder of `model::decoder`, layer by layer.
        let groups = config.norm_groups;
        let mut h = plan.named_conv(&weights, "decoder.conv_in", &zhat, up(false, None))?;
        let levels = config.channels.len();
        for level in 0..levels {
            for block in 0..config.decoder_blocks() {
                let name = format!("decoder.levels.{level}.blocks.{block}");
                let t = plan.named_group_norm_silu(&weights, &format!("{name}.norm1"), &h, groups)?;
                let t = plan.named_conv(&weights, &format!("{name}.conv1"), &t, up(false, None))?;
                let t = plan.named_group_norm_silu(&weights, &format!("{name}.norm2"), &t, groups)?;
                // The decoder's blocks keep their width (upsampling narrows), so the skip
                // connection is the identity.
                h = plan.named_conv(&weights, &format!("{name}.conv2"), &t, up(false, Some(&h)))?;
            }
            if level + 1 < levels {
                h = plan.named_conv(&weights, &format!("decoder.levels.{level}.upsample"), &h, up(true, None))?;
            }
        }
        let t = plan.named_group_norm_silu(&weights, "decoder.norm_out", &h, groups)?;
        let decoded = plan.named_conv(&weights, "decoder.conv_out", &t, up(false, None))?;
        ensure!(
            decoded.channels == 3 && decoded.side == config.resolution,
            "the decoder's output is {} x {}^2, expected 3 x {}^2",
            decoded.channels,
            decoded.side,
            config.resolution
        );

        let resolution = config.resolution as u32;
        let pixels =
            plan.storage("pixels", max_batch * 3 * config.resolution.pow(2) * 4, wgpu::BufferUsages::COPY_SRC)?;
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
        plan.push(
            |k| &k.to_rgba,
            &[
                decoded.buffer.as_entire_binding(),
                pixels.as_entire_binding(),
                wgpu::BindingResource::TextureView(&array_view),
            ],
            [resolution.div_ceil(8), resolution.div_ceil(8), 1],
            2,
        )?;
        let (steps, dispatchable) = plan.into_steps();
        ensure!(
            dispatchable == max_batch,
            "the GPU dispatches at most {dispatchable} images at once, {max_batch} were asked for"
        );
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pixels read back"),
            size: pixels.size(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
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
        plan::run(&self.gpu, "decoding", |queue, encoder| {
            queue.write_buffer(&self.tokens, 0, &plan::u32_bytes(&tokens));
            queue.write_buffer(&self.prefix_layers, 0, &plan::u32_bytes(&prefix_layers));
            plan::record(&self.kernels, &self.steps, encoder, items.len());
        })
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
        let words = plan::read_words(&self.gpu, &self.pixels, &self.readback, bytes)?;
        let pixels = words.into_iter().map(f32::from_le_bytes).collect();
        Ok(GpuDecode { pixels, batch, resolution })
    }
}

/// A stride-1 "same" convolution, optionally reading its input 2x upsampled and adding a
/// residual.
fn up(upsample: bool, residual: Option<&Activation>) -> ConvOptions<'_> {
    ConvOptions { upsample, residual, ..Default::default() }
}
