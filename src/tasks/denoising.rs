//! Progressive in-context denoising (docs/method.md section 7): the frozen LLM writes an image's
//! words, step by step, from examples in its prompt.
//!
//! The prompt holds (condition, image words) examples and then the query's condition; the
//! image words of every example are corrupted by replacing a share r_t of them with random
//! lexical words, r_t falling on a cosine from near 1 to a floor (20%) over the steps, so
//! no example is ever the exact answer. At each step the generated words are refined:
//! - AR stage: the words of the first `ar_layers` layers are sampled one after another;
//! - NAR stage: one forward pass over the remaining words scores every position at once,
//!   and a share r_t of the positions (chosen at random; ours) take the LLM's prediction.
//!
//! Generation starts from random words. Every step's words are kept as a frame. Sampling
//! is restricted to the lexical vocabulary, with a temperature; everything is determined
//! by the seed. The header of the prompt is the same at every step, so its KV cache is
//! computed once; within a step, the prompt's cache is shared by the AR tokens and the NAR
//! pass. [`Generation::tokens_run`] and [`Generation::tokens_without_reuse`] count the
//! saving.

use std::f32::consts::FRAC_PI_2;
use std::ops::ControlFlow;

use std::path::Path;

use anyhow::{ensure, Context, Result};
use rand::rngs::StdRng;
use rand::seq::index;
use rand::{Rng, SeedableRng};

use crate::codebook::vocabulary::Vocabulary;
use crate::llm::log_softmax;
use crate::llm::model::SmolLm;
use crate::llm::tokenizer::Tokenizer;
use crate::model::SpaeModel;
use crate::pyramid::saq;
use crate::pyramid::{Pyramid, PyramidShape};

/// What an image is generated from.
#[derive(Clone, Debug)]
pub enum Condition {
    /// Text to image: a class name or caption.
    Text(String),
    /// Image to image: the words of a source image (a masked or blurred picture).
    Words(Vec<u32>),
}

/// One in-context example: a condition and the words of the image that answers it.
#[derive(Clone, Debug)]
pub struct Example {
    pub condition: Condition,
    pub words: Vec<u32>,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub steps: usize,
    /// Layers generated (decode from this prefix).
    pub layers: usize,
    /// Layers sampled token by token; the rest are refined in parallel.
    pub ar_layers: usize,
    pub temperature: f32,
    /// Lowest share of corrupted words in the examples.
    pub floor: f32,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self { steps: 8, layers: 4, ar_layers: 2, temperature: 0.7, floor: 0.2, seed: 0 }
    }
}

impl Options {
    /// Checks the options against a pyramid shape; callers run it before any costly work.
    pub fn validate(&self, shape: &PyramidShape) -> Result<()> {
        ensure!(self.steps >= 1, "generation needs at least one step");
        ensure!(
            (1..=shape.layers()).contains(&self.layers),
            "layers must be 1..={}, not {}",
            shape.layers(),
            self.layers
        );
        ensure!(
            self.ar_layers <= self.layers,
            "AR layers ({}) exceed the generated layers ({})",
            self.ar_layers,
            self.layers
        );
        ensure!(
            self.temperature.is_finite() && self.temperature >= 0.0,
            "the temperature must be a finite number, 0 or more (not {})",
            self.temperature
        );
        ensure!((0.0..1.0).contains(&self.floor), "the corruption floor must be in 0..1, not {}", self.floor);
        Ok(())
    }

    /// r_t for step t of T: floor + (1 - floor) cos(pi/2 (t+1)/T), from near 1 down to the floor.
    pub fn corruption(&self, step: usize) -> f32 {
        let phase = (step + 1) as f32 / self.steps as f32;
        self.floor + (1.0 - self.floor) * (FRAC_PI_2 * phase).cos().max(0.0)
    }
}

/// The words after one step.
#[derive(Clone, Debug)]
pub struct Frame {
    /// 0 for the random start, then 1..=steps.
    pub step: usize,
    /// The examples' corruption r_t at this step (1 at the start).
    pub corruption: f32,
    /// Codebook rows of the generated layers, layer after layer.
    pub words: Vec<u32>,
    /// Positions in `words` that differ from the previous frame.
    pub changed: Vec<usize>,
}

impl Frame {
    /// The frame as a full pyramid of `model`'s shape: the generated layers, completed by
    /// [`saq::complete`].
    pub fn pyramid(&self, model: &SpaeModel) -> Result<Pyramid> {
        let shape = model.shape();
        let mut layers = Vec::new();
        let mut at = 0;
        for layer in 1..=shape.layers() {
            if at == self.words.len() {
                break;
            }
            let count = shape.tokens_in_layer(layer);
            ensure!(at + count <= self.words.len(), "a frame's {} words do not fill whole layers", self.words.len());
            layers.push(self.words[at..at + count].to_vec());
            at += count;
        }
        saq::complete(&layers, model.codebook(), shape, model.config().cell_target)
    }
}

/// A finished (or cancelled) generation.
pub struct Generation {
    pub frames: Vec<Frame>,
    /// Tokens the LLM ran.
    pub tokens_run: usize,
    /// Tokens it would have run had every pass started from an empty cache.
    pub tokens_without_reuse: usize,
    pub cancelled: bool,
}

pub struct Denoiser<'a> {
    pub llm: &'a SmolLm,
    pub tokenizer: &'a Tokenizer,
    pub vocabulary: &'a Vocabulary,
    pub shape: &'a PyramidShape,
}

const HEADER: &str = "Each output is a picture written as words, made from its input.\n";

impl Denoiser<'_> {
    /// Generates the words of `options.layers` layers for `query` from `examples`, calling
    /// `on_frame` with every frame; returning `ControlFlow::Break` from it cancels and keeps
    /// the frames so far.
    /// Everything [`Self::generate`] checks before its first frame: the options, the
    /// prompt, the examples' length, and that every step's prompt fits the LLM's context.
    pub fn check(&self, examples: &[Example], query: &Condition, options: &Options) -> Result<()> {
        options.validate(self.shape)?;
        if let Condition::Text(text) = query {
            ensure!(!text.trim().is_empty(), "the prompt is empty: name what to generate");
        }
        let n = self.shape.tokens_in_prefix(options.layers);
        for example in examples {
            ensure!(example.words.len() >= n, "an example has {} words, {n} are needed", example.words.len());
        }
        // Corruption swaps words one for one, so every step's prompt is this long.
        let mut prompt = self.tokenizer.encode(HEADER);
        for example in examples {
            self.push_pair(&mut prompt, &example.condition, &example.words[..n]);
        }
        self.push_condition(&mut prompt, query);
        let context = self.llm.config().context;
        ensure!(
            prompt.len() + n <= context,
            "the prompt needs {} tokens and the LLM's context holds {context}: use fewer examples or layers",
            prompt.len() + n
        );
        Ok(())
    }

    pub fn generate(
        &self,
        examples: &[Example],
        query: &Condition,
        options: &Options,
        mut on_frame: impl FnMut(&Frame) -> ControlFlow<()>,
    ) -> Result<Generation> {
        self.check(examples, query, options)?;
        let n = self.shape.tokens_in_prefix(options.layers);
        let n_ar = self.shape.tokens_in_prefix(options.ar_layers);
        let header = self.tokenizer.encode(HEADER);
        let words_total = self.vocabulary.len() as u32;
        let mut rng = StdRng::seed_from_u64(options.seed);
        let mut words: Vec<u32> = (0..n).map(|_| rng.random_range(0..words_total)).collect();
        let mut frames = vec![Frame { step: 0, corruption: 1.0, words: words.clone(), changed: (0..n).collect() }];
        let mut generation =
            Generation { frames: Vec::new(), tokens_run: 0, tokens_without_reuse: 0, cancelled: false };
        if on_frame(&frames[0]).is_break() {
            generation.frames = frames;
            generation.cancelled = true;
            return Ok(generation);
        }

        let mut header_cache = self.llm.new_cache();
        self.llm.logits_last(&header, 0, &mut header_cache)?;
        generation.tokens_run += header.len();
        let mut cache = self.llm.new_cache();
        for step in 1..=options.steps {
            let rate = options.corruption(step - 1);
            let mut prompt = Vec::new();
            for example in examples {
                let corrupted = corrupt(&example.words[..n], rate, words_total, &mut rng);
                self.push_pair(&mut prompt, &example.condition, &corrupted);
            }
            self.push_condition(&mut prompt, query);
            cache.restore(&header_cache);
            let mut logits = self.llm.logits_last(&prompt, header.len(), &mut cache)?;
            generation.tokens_run += prompt.len();
            generation.tokens_without_reuse += header.len() + prompt.len();
            let mut next = words.clone();
            // AR stage: the first layers one word at a time; chosen positions are resampled.
            let chosen = chosen_positions(n, rate, &mut rng);
            for position in 0..n_ar {
                if chosen[position] {
                    next[position] = self.sample(&logits, options.temperature, &mut rng);
                }
                let start = cache.len();
                logits = self.llm.logits_last(&[self.vocabulary.token_id(next[position])], start, &mut cache)?;
                generation.tokens_run += 1;
                generation.tokens_without_reuse += start + 1;
            }
            // NAR stage: one pass scores every remaining position.
            if n_ar < n {
                let start = cache.len();
                let tokens: Vec<u32> = next[n_ar..n - 1].iter().map(|&w| self.vocabulary.token_id(w)).collect();
                let rows =
                    if tokens.is_empty() { Vec::new() } else { self.llm.logits_all(&tokens, start, &mut cache)? };
                generation.tokens_run += tokens.len();
                generation.tokens_without_reuse += start + tokens.len();
                let vocab = self.llm.config().vocab;
                for position in n_ar..n {
                    if chosen[position] {
                        let row = match position - n_ar {
                            0 => &logits[..],
                            i => &rows[(i - 1) * vocab..i * vocab],
                        };
                        next[position] = self.sample(row, options.temperature, &mut rng);
                    }
                }
            }
            let changed = (0..n).filter(|&i| next[i] != words[i]).collect();
            words = next;
            frames.push(Frame { step, corruption: rate, words: words.clone(), changed });
            if on_frame(frames.last().expect("just pushed")).is_break() {
                generation.cancelled = step < options.steps;
                break;
            }
        }
        generation.frames = frames;
        Ok(generation)
    }

    fn push_condition(&self, prompt: &mut Vec<u32>, condition: &Condition) {
        prompt.extend(self.tokenizer.encode("###\nInput:"));
        match condition {
            Condition::Text(text) => prompt.extend(self.tokenizer.encode(&format!(" {}", text.trim()))),
            Condition::Words(words) => prompt.extend(words.iter().map(|&w| self.vocabulary.token_id(w))),
        }
        prompt.extend(self.tokenizer.encode("\nOutput:"));
    }

    fn push_pair(&self, prompt: &mut Vec<u32>, condition: &Condition, words: &[u32]) {
        self.push_condition(prompt, condition);
        prompt.extend(words.iter().map(|&w| self.vocabulary.token_id(w)));
        prompt.extend(self.tokenizer.encode("\n"));
    }

    /// A lexical word drawn from the LLM's next-token distribution restricted to the
    /// vocabulary's words, at `temperature` (0: the most likely word).
    fn sample(&self, logits: &[f32], temperature: f32, rng: &mut StdRng) -> u32 {
        let restricted: Vec<f32> = self.vocabulary.token_ids().iter().map(|&t| logits[t as usize]).collect();
        if temperature == 0.0 {
            return restricted.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32);
        }
        let scaled: Vec<f32> = restricted.iter().map(|l| l / temperature).collect();
        let log_p = log_softmax(&scaled);
        let mut u: f32 = rng.random();
        for (i, lp) in log_p.iter().enumerate() {
            u -= lp.exp();
            if u <= 0.0 {
                return i as u32;
            }
        }
        (restricted.len() - 1) as u32
    }
}

/// `words` with each position replaced by a random word with probability `rate`.
pub fn corrupt(words: &[u32], rate: f32, words_total: u32, rng: &mut StdRng) -> Vec<u32> {
    words.iter().map(|&w| if rng.random::<f32>() < rate { rng.random_range(0..words_total) } else { w }).collect()
}

/// A random set of round(n * rate) positions (at least one) as a mask.
fn chosen_positions(n: usize, rate: f32, rng: &mut StdRng) -> Vec<bool> {
    let count = ((n as f32 * rate).round() as usize).clamp(1, n);
    let mut mask = vec![false; n];
    for i in index::sample(rng, n, count) {
        mask[i] = true;
    }
    mask
}

/// The file a generation's frame of step `step` is written to: `frame-NNN.png`.
pub fn frame_file_name(step: usize) -> String {
    format!("frame-{step:03}.png")
}

/// The file that marks a folder as a generation's output: only files in a folder so
/// marked are ever removed.
pub const OUTPUT_MARKER: &str = ".spae-generation";

/// Creates a generation's output folder, or removes an earlier generation's files from it
/// (`frame-NNN.png`, `frames.png`, `final.png`, `final.txt`) so that they never mix with
/// the new ones; then marks the folder. Files of those names in a folder without the
/// marker were not written by a generation, so they are never removed: the folder is
/// refused instead. So is a folder holding `keep` (the source image) under such a name.
/// Other files are left alone. Returns how many files were removed.
pub fn clear_output_folder(dir: &Path, keep: Option<&Path>) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the output folder {}", dir.display()))?;
    let mut earlier = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        if is_generation_file(&entry.file_name().to_string_lossy()) && entry.file_type()?.is_file() {
            earlier.push(entry.path());
        }
    }
    if !earlier.is_empty() {
        ensure!(
            dir.join(OUTPUT_MARKER).is_file(),
            "{} holds {} files named as a generation's (such as {}) that no generation wrote there: \
             choose a new or empty folder",
            dir.display(),
            earlier.len(),
            earlier[0].display()
        );
        if let Some(keep) = keep {
            let kept = std::fs::canonicalize(keep).ok();
            if let Some(clash) = earlier.iter().find(|p| kept.is_some() && std::fs::canonicalize(p).ok() == kept) {
                anyhow::bail!(
                    "the source image {} would be replaced by this run's output: copy it elsewhere first",
                    clash.display()
                );
            }
        }
    }
    for path in &earlier {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    crate::atomic_file::write(&dir.join(OUTPUT_MARKER), b"a folder of spae generate's frames\n")?;
    Ok(earlier.len())
}

fn is_generation_file(name: &str) -> bool {
    let frame = name
        .strip_prefix("frame-")
        .and_then(|rest| rest.strip_suffix(".png"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    frame || matches!(name, "frames.png" | "final.png" | "final.txt")
}
