//! `spae encode`, `decode` and `mix`: between images, pyramids of words and their text.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use spae::gpu::{DeviceChoice, EncodeDevice, Gpu, GpuDecoder};
use spae::image_io;
use spae::model::SpaeModel;
use spae::pyramid::text as pyramid_text;
use spae::pyramid::Pyramid;

use crate::{shown, write_output, Session};

#[derive(clap::Args)]
pub struct EncodeArgs {
    image: PathBuf,
    /// Where to write the pyramid (`-`: standard output).
    #[arg(short, long)]
    output: PathBuf,
    /// Where to encode: auto takes a hardware GPU if there is one, else the CPU.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Then refine the appearance words against the decoder for this many rounds, on the
    /// CPU (docs/method.md section 3a; 0: SAQ's words as they are).
    #[arg(long, default_value_t = spae::model::DEFAULT_REFINE_ROUNDS as u32, value_parser = clap::value_parser!(u32).range(0..=spae::model::MAX_REFINE_ROUNDS as i64))]
    refine: u32,
}

impl EncodeArgs {
    pub fn run(self, session: &Session) -> Result<()> {
        let model = session.model;
        spae::atomic_file::check_not_input(&self.image, &self.output)?;
        let prepared = image_io::load_prepared(&self.image, model.config().resolution as u32)?;
        let (mut device, mut on) = EncodeDevice::open(self.device, model, 1)?;
        let mut pyramid = device.encode(model, std::slice::from_ref(&prepared))?.pyramids.remove(0);
        if let Some(reason) = device.take_failure() {
            on = format!("on the CPU, after the GPU encoder failed: {reason}");
        }
        if self.refine > 0 {
            let pixels = image_io::to_tensor(std::slice::from_ref(&prepared))?;
            let refinement = model.refine(&pixels, std::slice::from_mut(&mut pyramid), self.refine as usize)?;
            let (before, after) = refinement.psnr_db(0);
            eprintln!(
                "refined in {} rounds: {} words changed, PSNR of the decoder's output {before:.2} -> {after:.2} dB",
                self.refine, refinement.words_changed,
            );
        }
        let text = pyramid_text::format(&pyramid, model.codebook().vocabulary());
        write_output(&self.output, text.as_bytes())?;
        let words = model.shape().tokens_in_prefix(model.shape().layers());
        eprintln!("wrote {} ({words} words, encoded {on})", shown(&self.output));
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct DecodeArgs {
    pyramid: PathBuf,
    /// Where to write the PNG (`-`: standard output).
    #[arg(short, long)]
    output: PathBuf,
    /// Decode from the first K layers only (default: all).
    #[arg(long)]
    layers: Option<usize>,
    /// Where to decode: auto takes a hardware GPU if there is one, else the CPU.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

impl DecodeArgs {
    pub fn run(self, session: &Session) -> Result<()> {
        let model = session.model;
        spae::atomic_file::check_not_input(&self.pyramid, &self.output)?;
        let parsed = read_pyramid(model, &self.pyramid)?;
        let layers = self.layers.unwrap_or(model.shape().layers());
        let (image, on) = match decode_device(self.device, model)? {
            Some(decoder) => {
                let on = format!("on the GPU, {}", decoder.gpu().adapter);
                (decoder.decode(&[(&parsed, layers)])?.images().remove(0), on)
            }
            None => (model.decode(&parsed, layers)?, "on the CPU".to_string()),
        };
        write_output(&self.output, &image_io::png_bytes(&image)?)?;
        eprintln!("wrote {} (decoded from {layers} layers {on})", shown(&self.output));
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct MixArgs {
    /// An image, or a pyramid as text (`.txt`), whose layers 1..K are taken.
    first: PathBuf,
    /// An image, or a pyramid as text (`.txt`), that gives the other layers.
    second: PathBuf,
    /// K: layers 1..K come from the first, K+1.. from the second (0 to the layer count).
    #[arg(long)]
    split: usize,
    /// One layer taken from the other pyramid than --split says.
    #[arg(long)]
    swap: Option<usize>,
    /// Where to write the decoded mix (PNG; `-`: standard output).
    #[arg(short, long)]
    output: PathBuf,
    /// Also write the mixed pyramid as text here.
    #[arg(long)]
    pyramid: Option<PathBuf>,
}

impl MixArgs {
    pub fn run(self, session: &Session) -> Result<()> {
        let model = session.model;
        let layers = model.shape().layers();
        let split = self.split;
        anyhow::ensure!(split <= layers, "--split {split}: the model has {layers} layers (0 to {layers})");
        if let Some(layer) = self.swap {
            anyhow::ensure!((1..=layers).contains(&layer), "--swap {layer}: name a layer from 1 to {layers}");
        }
        for out in std::iter::once(&self.output).chain(&self.pyramid) {
            spae::atomic_file::check_not_input(&self.first, out)?;
            spae::atomic_file::check_not_input(&self.second, out)?;
        }
        let choice = spae::pyramid::mix_choice(layers, split, self.swap);
        let mixed = pyramid_of(model, &self.first)?.mixed(&pyramid_of(model, &self.second)?, &choice)?;
        let image = model.decode(&mixed, layers)?;
        if let Some(path) = &self.pyramid {
            spae::atomic_file::write(path, pyramid_text::format(&mixed, model.codebook().vocabulary()).as_bytes())?;
        }
        write_output(&self.output, &image_io::png_bytes(&image)?)?;
        let sources: Vec<String> = choice
            .iter()
            .enumerate()
            .map(|(i, &b)| format!("{}:{}", i + 1, if b { "second" } else { "first" }))
            .collect();
        eprintln!("wrote {} (layers {})", shown(&self.output), sources.join(" "));
        Ok(())
    }
}

/// The pyramid of an input: a pyramid text file (`.txt`) as written, an image encoded.
fn pyramid_of(model: &SpaeModel, path: &Path) -> Result<Pyramid> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("txt")) {
        read_pyramid(model, path)
    } else {
        model.encode(&image_io::load_prepared(path, model.config().resolution as u32)?)
    }
}

/// A pyramid text file, parsed for the model's shape and vocabulary.
fn read_pyramid(model: &SpaeModel, path: &Path) -> Result<Pyramid> {
    let text = pyramid_text::read_file(path)?;
    pyramid_text::parse(&text, model.shape(), model.codebook().vocabulary())
        .with_context(|| format!("in {}", path.display()))
}

/// The GPU decoder `on` asks for, or none for the CPU; says why where it falls back.
fn decode_device(on: DeviceChoice, model: &SpaeModel) -> Result<Option<GpuDecoder>> {
    if on == DeviceChoice::Cpu {
        return Ok(None);
    }
    let gpu = match (Gpu::headless(), on) {
        (Ok(gpu), _) => gpu,
        (Err(e), DeviceChoice::Gpu) => return Err(e),
        (Err(e), _) => {
            eprintln!("decoding on the CPU: {e:#}");
            return Ok(None);
        }
    };
    if let Err(why) = on.accepts(&gpu) {
        eprintln!("decoding on the CPU: {why} (--device gpu uses it)");
        return Ok(None);
    }
    Ok(Some(GpuDecoder::new(gpu, model, 1)?))
}
