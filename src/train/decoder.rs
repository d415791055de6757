//! `spae train-decoder`: trains the decoder alone on the words the frozen encoder gives
//! (docs/method.md section 4b).
//!
//! In joint training the decoder reads words that move as the encoder learns, and half
//! of its images decode a shorter prefix. Once the encoder is fixed, each training
//! image's pyramid is fixed too: this stage finds it once (SAQ's exact search, the
//! words `SpaeModel::encode` gives, unrefined, the first time a batch holds the image),
//! keeps it in the run's word cache, and fits the decoder to those words. The encoder, the semantic branch and
//! the codebook are untouched, so every word the model gives (the semantic layers, and
//! the few-shot and caption results built on them) stays as it was; only the pictures
//! drawn from the words change. Images are not flipped (their words are those of the
//! image as it is).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};

use super::checkpoint::Checkpoint;
use super::log::{StepRecord, TrainingLog};
use super::optimizer::AdamW;
use super::{RunOptions, Stop};
use crate::data::{Dataset, Split};
use crate::model::SpaeModel;
use crate::pyramid::{saq, Pyramid};

/// Where the decoder's trained variables are named.
const DECODER_VARIABLES: &str = "decoder.";

/// The run's word cache, beside its checkpoints.
pub const WORDS_FILE: &str = "words.safetensors";

/// The run's log as copied beside the exported model (beside the joint run's
/// [`super::EXPORTED_LOG`]).
pub const EXPORTED_DECODER_LOG: &str = "decoder_training_log.csv";

/// A word no image has (the cache's mark for an image not yet encoded).
const UNKNOWN: u32 = u32::MAX;

/// Each training image's pyramid as SAQ chose it with the frozen encoder, found the first
/// time a batch holds the image.
struct WordCache {
    /// Words per image (the pyramid's, layer after layer).
    tokens: usize,
    /// `images x tokens`, [`UNKNOWN`] for images not yet encoded.
    words: Vec<u32>,
}

impl WordCache {
    fn new(images: usize, tokens: usize) -> Self {
        Self { tokens, words: vec![UNKNOWN; images * tokens] }
    }

    fn path(run_dir: &Path) -> PathBuf {
        run_dir.join(WORDS_FILE)
    }

    /// The cache a run saved, checked against the split and against `model`: its first
    /// cached image must encode to the words kept for it, or the words were another
    /// encoder's.
    fn load(run_dir: &Path, data: &Dataset, model: &SpaeModel) -> Result<Option<Self>> {
        let path = Self::path(run_dir);
        if !path.exists() {
            return Ok(None);
        }
        let tokens = model.shape().tokens_in_prefix(model.shape().layers());
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .with_context(|| format!("cannot read the word cache {}", path.display()))?;
        let words = tensors.get("words").with_context(|| format!("{} holds no words", path.display()))?;
        ensure!(
            words.dims() == [data.len(), tokens] && words.dtype() == DType::U32,
            "{} holds {:?} words of {:?}, this split and model need {} x {tokens} of U32",
            path.display(),
            words.dims(),
            words.dtype(),
            data.len()
        );
        let words: Vec<u32> = words.flatten_all()?.to_vec1()?;
        let vocabulary = model.codebook().len() as u32;
        ensure!(
            words.iter().all(|&w| w < vocabulary || w == UNKNOWN),
            "{} holds words outside the codebook's {vocabulary}",
            path.display()
        );
        let mut cache = Self { tokens, words };
        if let Some(first) = (0..data.len()).find(|&i| cache.known(i)) {
            let kept = cache.words[first * tokens..(first + 1) * tokens].to_vec();
            cache.words[first * tokens] = UNKNOWN;
            let found = cache.pyramids(model, data, &[first])?.remove(0).words().collect::<Vec<_>>();
            ensure!(
                found == kept,
                "{} was made with another encoder (image {first} encodes to other words now): start a new run \
                 (another --run) or remove the file",
                path.display()
            );
        }
        Ok(Some(cache))
    }

    fn save(&self, run_dir: &Path) -> Result<()> {
        let images = self.words.len() / self.tokens;
        let words = Tensor::from_vec(self.words.clone(), (images, self.tokens), &Device::Cpu)?;
        crate::atomic_file::write_via_path(&Self::path(run_dir), |partial| {
            Ok(candle_core::safetensors::save(
                &std::collections::HashMap::from([("words".to_string(), words)]),
                partial,
            )?)
        })
    }

    fn known(&self, image: usize) -> bool {
        self.words[image * self.tokens] != UNKNOWN
    }

    /// The pyramids of `indices`, encoding (and keeping) those not yet cached.
    fn pyramids(&mut self, model: &SpaeModel, data: &Dataset, indices: &[usize]) -> Result<Vec<Pyramid>> {
        let missing: Vec<usize> = indices.iter().copied().filter(|&i| !self.known(i)).collect();
        if !missing.is_empty() {
            let pixels = data.batch(&missing, &vec![false; missing.len()])?;
            let (_, quantized) = model.quantize(&pixels)?;
            for (&image, pyramid) in missing.iter().zip(&quantized.pyramids) {
                for (slot, word) in
                    self.words[image * self.tokens..(image + 1) * self.tokens].iter_mut().zip(pyramid.words())
                {
                    *slot = word;
                }
            }
        }
        indices
            .iter()
            .map(|&image| {
                Pyramid::from_words(model.shape().clone(), &self.words[image * self.tokens..(image + 1) * self.tokens])
            })
            .collect()
    }
}

/// Trains `model`'s decoder (fresh, or restored from the run's checkpoint and word cache
/// when `resume`).
pub fn train_decoder(model: &SpaeModel, options: &RunOptions, resume: bool, stop: Stop) -> Result<()> {
    ensure!(options.batch_size > 0, "the batch size must be positive");
    ensure!((0.0..=1.0).contains(&options.full_prefix_share), "the full-prefix share must be 0 to 1");
    let data = Dataset::load(&options.data_dir, Split::Train, model.config().resolution)?;
    ensure!(data.len() >= options.batch_size, "{} images, fewer than one batch", data.len());
    std::fs::create_dir_all(&options.run_dir)?;
    let vars = super::variables(model, |name| name.starts_with(DECODER_VARIABLES));
    let mut optimizer = AdamW::new(vars, options.weight_decay)?;
    let mut elapsed_before = 0.0;
    let checkpoint = if resume { Checkpoint::latest(&options.run_dir)? } else { None };
    if let Some(checkpoint) = &checkpoint {
        ensure!(
            WordCache::path(&options.run_dir).exists(),
            "{} holds a checkpoint but no {WORDS_FILE}: not a train-decoder run (resume it with `spae train`)",
            options.run_dir.display()
        );
        elapsed_before = checkpoint.restore(model, &mut optimizer)?;
        eprintln!("resumed from step {} ({:.1} h of training so far)", optimizer.step_count(), elapsed_before / 3600.0);
    }
    let tokens = model.shape().tokens_in_prefix(model.shape().layers());
    let mut cache = match resume {
        true => WordCache::load(&options.run_dir, &data, model)?,
        false => None,
    }
    .unwrap_or_else(|| WordCache::new(data.len(), tokens));
    let mut log = TrainingLog::open(&options.run_dir.join("log.csv"), optimizer.step_count())?;
    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let total = options.schedule.total_steps;
    let bar = ProgressBar::new(total).with_position(optimizer.step_count());
    bar.set_style(
        ProgressStyle::with_template("decoder step {pos}/{len} [{bar:30}] {msg} ({eta} left in the schedule)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let save = |model: &SpaeModel, optimizer: &AdamW, cache: &WordCache, log: &mut TrainingLog| -> Result<()> {
        cache.save(&options.run_dir)?;
        super::save(
            model,
            optimizer,
            &options.run_dir,
            options.export_dir.as_deref().map(|dir| (dir, EXPORTED_DECODER_LOG)),
            elapsed_before + started.elapsed().as_secs_f64(),
            log,
        )
    };
    loop {
        let step = optimizer.step_count();
        if step >= total || stop.reached(started, step) {
            break;
        }
        let (record, encoded) = decoder_step(model, &data, &mut cache, &mut optimizer, options, step)?;
        bar.set_message(format!(
            "pixel {:.4}, PSNR {:.1} dB, {:.1} img/s{}",
            record.pixel_mse,
            record.psnr_db,
            options.batch_size as f64 / record.seconds_total,
            if encoded > 0 { format!(" ({encoded} images encoded)") } else { String::new() }
        ));
        bar.set_position(step + 1);
        if bar.is_hidden() && (step + 1) % 25 == 0 {
            eprintln!("decoder step {}/{total}: {}", step + 1, bar.message());
        }
        log.append(&record)?;
        if last_checkpoint.elapsed().as_secs_f64() >= options.checkpoint_minutes * 60.0 {
            save(model, &optimizer, &cache, &mut log)?;
            last_checkpoint = Instant::now();
        }
    }
    save(model, &optimizer, &cache, &mut log)?;
    bar.finish();
    Ok(())
}

/// One step: the batch's words (encoded where new), each image's prefix decoded, the
/// pixel error's gradient applied to the decoder. Also returns how many images were new.
fn decoder_step(
    model: &SpaeModel,
    data: &Dataset,
    cache: &mut WordCache,
    optimizer: &mut AdamW,
    options: &RunOptions,
    step: u64,
) -> Result<(StepRecord, usize)> {
    let t0 = Instant::now();
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(options.seed.wrapping_add(step.wrapping_mul(0x2545_F491_4F6C_DD1D)));
    let indices = super::batch_indices(data.len(), options.batch_size, options.seed, step);
    let encoded = indices.iter().filter(|&&i| !cache.known(i)).count();
    let pyramids = cache.pyramids(model, data, &indices)?;
    let t1 = Instant::now();
    let layers = model.shape().layers();
    let zhat = Tensor::cat(
        &pyramids
            .iter()
            .map(|pyramid| {
                let prefix = if layers == 1 || rng.random_bool(options.full_prefix_share) {
                    layers
                } else {
                    rng.random_range(1..layers)
                };
                saq::dequantize(std::slice::from_ref(pyramid), model.codebook(), prefix)
            })
            .collect::<Result<Vec<_>>>()?,
        0,
    )?;
    let pixels = data.batch(&indices, &vec![false; indices.len()])?;
    let pixel_mse = (model.decode_latent(&zhat)? - &pixels)?.sqr()?.mean_all()?;
    let t2 = Instant::now();
    let lr = options.schedule.lr(step);
    optimizer.backward_step(&pixel_mse, lr)?;
    let t3 = Instant::now();
    let pixel = pixel_mse.to_scalar::<f32>()? as f64;
    let record = StepRecord {
        step: step + 1,
        lr,
        loss: pixel,
        pixel_mse: pixel,
        psnr_db: crate::eval::metrics::psnr_of_unit_range_mse(pixel),
        // Encoding images new to the cache (encoder, teacher and search) counts as search.
        seconds_search: (t1 - t0).as_secs_f64(),
        seconds_decoder_and_losses: (t2 - t1).as_secs_f64(),
        seconds_backward: (t3 - t2).as_secs_f64(),
        seconds_total: (t3 - t0).as_secs_f64(),
        ..Default::default()
    };
    Ok((record, encoded))
}
