//! The frozen LLM's work for the studio, on its own background thread: generation
//! (progressive in-context denoising, streamed frame by frame), few-shot classification,
//! and captions and answers about the open image.
//! The LLM (about 0.7 GB) and the example pool load on the first job that needs them; a
//! load that fails is reported with that job and tried again with the next.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, ensure, Context, Result};
use eframe::egui;
use image::RgbImage;

use super::background::{self, Background};
use crate::llm::gguf::LlmFile;
use crate::llm::model::SmolLm;
use crate::llm::tokenizer::Tokenizer;
use crate::model::SpaeModel;
use crate::paths;
use crate::pyramid::Pyramid;
use crate::tasks::context_pool::{Pool, Task};
use crate::tasks::denoising::{Condition, Denoiser, Frame, Options};
use crate::tasks::{captioning, fewshot, word_index};

pub struct GenerateJob {
    /// Tells this run's outcomes from those of earlier runs.
    pub run: u64,
    pub task: Task,
    /// What to generate (text to image); the pool's examples are chosen by it.
    pub prompt: String,
    /// The image an image-to-image task starts from (prepared, model resolution).
    pub source: Option<RgbImage>,
    pub examples: usize,
    pub options: Options,
    /// Set by the UI to stop after the next frame; the frames so far are kept.
    pub cancel: Arc<AtomicBool>,
}

/// Where an image comes from: a file, or the studio's open image (already prepared).
#[derive(Clone)]
pub enum ImageSource {
    File(PathBuf),
    Prepared(RgbImage),
}

pub struct ClassifyJob {
    pub run: u64,
    /// Class names, in the order the prompt lists them.
    pub classes: Vec<String>,
    /// Support images and the index of each one's class.
    pub support: Vec<(PathBuf, usize)>,
    pub query: ImageSource,
    pub layers: usize,
}

/// How many pool images the studio's captions and answers choose their examples from
/// (encoding all 512 took minutes on 2 cores; these are spread over the training split).
pub const DESCRIBE_CANDIDATES: usize = 128;

/// Caption the open image, or answer a question about it, after examples from the pool.
pub struct DescribeJob {
    pub run: u64,
    /// The open image, prepared.
    pub image: RgbImage,
    pub layers: usize,
    pub examples: usize,
    /// None: a caption.
    pub question: Option<String>,
    /// Set by the UI to stop before the LLM runs (encoding the pool's words comes first).
    pub cancel: Arc<AtomicBool>,
}

pub enum Job {
    Generate(GenerateJob),
    Classify(ClassifyJob),
    Describe(DescribeJob),
}

/// The LLM's caption or answer, with the examples it read and its prompt.
pub struct DescribedAnswer {
    pub answer: String,
    /// Each example as its words and the text paired with it.
    pub examples: Vec<(String, String)>,
    /// The question the examples answer from the data.
    pub answered: String,
    pub prompt: String,
    pub prompt_tokens: usize,
}

/// One generation step with its words decoded.
pub struct DecodedFrame {
    pub frame: Frame,
    /// The frame's words completed to a whole pyramid ([`Frame::pyramid`]).
    pub pyramid: Pyramid,
    /// The pyramid decoded from all its layers.
    pub image: RgbImage,
}

/// The LLM's answer to a classification.
pub struct Classified {
    pub classes: Vec<String>,
    /// Calibrated score of each class name, in `classes` order.
    pub scores: Vec<f32>,
    /// Orderings of the support examples the scores are averaged over.
    pub orderings: usize,
    pub answer: usize,
    /// The prompt as the tokenizer decodes its token ids.
    pub prompt: String,
    pub prompt_tokens: usize,
}

pub enum Outcome {
    /// The LLM is loading (the first job waits for it).
    LoadingLlm,
    LlmLoaded {
        secs: f64,
    },
    LlmFailed(String),
    Frame {
        run: u64,
        frame: DecodedFrame,
    },
    Generated {
        run: u64,
        cancelled: bool,
    },
    GenerateFailed {
        run: u64,
        message: String,
    },
    Classified {
        run: u64,
        classified: Classified,
    },
    ClassifyFailed {
        run: u64,
        message: String,
    },
    /// A caption or an answer, or why there is none (a cancel included).
    Described {
        run: u64,
        result: Result<DescribedAnswer, String>,
    },
}

pub type LlmWorker = Background<Job, Outcome>;

/// The thread's side: outcomes to the UI.
type Reporter = background::Reporter<Outcome>;

/// Starts the LLM's thread (the LLM is not loaded yet); `ctx` is woken for every outcome.
pub fn start(model: Arc<SpaeModel>, ctx: egui::Context) -> LlmWorker {
    Background::start("LLM", ctx, move |jobs, reporter| Resources::default().run(&model, &jobs, &reporter))
}

/// What the thread loads once and keeps.
#[derive(Default)]
struct Resources {
    llm: Option<(SmolLm, Tokenizer)>,
    pool: Option<Pool>,
    /// The pool's images as the words of their first k layers, by k.
    pool_words: std::collections::HashMap<usize, Vec<Vec<u32>>>,
}

impl Resources {
    fn run(mut self, model: &SpaeModel, jobs: &Receiver<Job>, reporter: &Reporter) {
        while let Ok(job) = jobs.recv() {
            let outcome = match job {
                Job::Generate(job) => {
                    let run = job.run;
                    match self.generate(model, job, reporter) {
                        Ok(cancelled) => Outcome::Generated { run, cancelled },
                        Err(e) => Outcome::GenerateFailed { run, message: format!("{e:#}") },
                    }
                }
                Job::Classify(job) => {
                    let run = job.run;
                    match self.classify(model, job, reporter) {
                        Ok(classified) => Outcome::Classified { run, classified },
                        Err(e) => Outcome::ClassifyFailed { run, message: format!("{e:#}") },
                    }
                }
                Job::Describe(job) => {
                    let run = job.run;
                    Outcome::Described {
                        run,
                        result: self.describe(model, job, reporter).map_err(|e| format!("{e:#}")),
                    }
                }
            };
            if !reporter.send(outcome) {
                return;
            }
        }
    }

    /// The LLM and its tokenizer, loaded on first use.
    fn llm(&mut self, model: &SpaeModel, reporter: &Reporter) -> Result<&(SmolLm, Tokenizer)> {
        if self.llm.is_none() {
            reporter.send(Outcome::LoadingLlm);
            let start = Instant::now();
            // The LLM whose embeddings are the model's codebook.
            let path = model.codebook().source().map_or_else(|| paths::resolve(paths::LLM_GGUF), Path::to_path_buf);
            let loaded = LlmFile::open(&path)
                .and_then(|file| Ok((SmolLm::load(&file)?, Tokenizer::from_gguf(&file)?)))
                .with_context(|| format!("cannot load the LLM from {}", path.display()));
            match loaded {
                Ok(llm) => {
                    self.llm = Some(llm);
                    reporter.send(Outcome::LlmLoaded { secs: start.elapsed().as_secs_f64() });
                }
                Err(e) => {
                    reporter.send(Outcome::LlmFailed(format!("{e:#}")));
                    return Err(e);
                }
            }
        }
        Ok(self.llm.as_ref().expect("loaded above"))
    }

    /// Runs a generation, sending each frame decoded as it comes; true when cancelled.
    fn generate(&mut self, model: &SpaeModel, job: GenerateJob, reporter: &Reporter) -> Result<bool> {
        let layers = job.options.layers;
        job.options.validate(model.shape())?;
        if self.pool.is_none() {
            self.pool = Some(load_pool(model)?);
        }
        let pool = self.pool.as_ref().expect("loaded above");
        ensure!(!pool.is_empty(), "the example pool at {} is empty", paths::POOL);
        let (query, text) = match (job.task, &job.source) {
            (Task::TextToImage, _) => (Condition::Text(job.prompt.clone()), Some(job.prompt.as_str())),
            (task, Some(source)) => (Condition::Words(model.encode(&task.corrupt(source))?.prefix_words(layers)), None),
            (task, None) => return Err(anyhow!("{task:?} starts from the open image, and no image is open")),
        };
        let chosen = pool.choose(text, job.examples, job.options.seed);
        let examples = pool.examples(model, &chosen, job.task, layers)?;
        let (llm, tokenizer) = self.llm(model, reporter)?;
        let denoiser = Denoiser { llm, tokenizer, vocabulary: model.codebook().vocabulary(), shape: model.shape() };
        let mut failure = None;
        let generation = denoiser.generate(&examples, &query, &job.options, |frame| {
            let decoded = frame.pyramid(model).and_then(|pyramid| {
                let image = model.decode(&pyramid, model.shape().layers())?;
                Ok(DecodedFrame { frame: frame.clone(), pyramid, image })
            });
            match decoded {
                Ok(frame) => {
                    // Stop when the user cancelled, or when the studio is gone.
                    let sent = reporter.send(Outcome::Frame { run: job.run, frame });
                    match sent && !job.cancel.load(Ordering::Relaxed) {
                        true => ControlFlow::Continue(()),
                        false => ControlFlow::Break(()),
                    }
                }
                Err(e) => {
                    failure = Some(e.context(format!("decoding step {}", frame.step)));
                    ControlFlow::Break(())
                }
            }
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(generation.cancelled),
        }
    }

    fn classify(&mut self, model: &SpaeModel, job: ClassifyJob, reporter: &Reporter) -> Result<Classified> {
        let support = job
            .support
            .iter()
            .map(|(path, class)| Ok((fewshot::file_words(model, path, job.layers)?, *class)))
            .collect::<Result<Vec<_>>>()?;
        let query = match &job.query {
            ImageSource::File(path) => fewshot::file_words(model, path, job.layers)?,
            ImageSource::Prepared(image) => fewshot::image_words(model, image, job.layers)?,
        };
        let task = fewshot::Task { classes: job.classes, support, query, induction: true };
        let (llm, tokenizer) = self.llm(model, reporter)?;
        let answer = fewshot::classify(
            llm,
            tokenizer,
            model.codebook().vocabulary(),
            &task,
            fewshot::Scoring::default(),
            fewshot::DEFAULT_ORDERINGS,
        )?;
        Ok(Classified {
            classes: task.classes,
            scores: answer.scores,
            orderings: answer.orderings,
            answer: answer.class,
            prompt: tokenizer.decode(&answer.prompt),
            prompt_tokens: answer.prompt.len(),
        })
    }
}

impl Resources {
    /// The pool loaded, and the words of the first `layers` layers of its first
    /// [`DESCRIBE_CANDIDATES`] images (encoded once per model and layer count, in chunks so
    /// a cancel is seen, and cached beside the model).
    fn pool_words(&mut self, model: &SpaeModel, layers: usize, cancel: &AtomicBool) -> Result<()> {
        if self.pool.is_none() {
            self.pool = Some(load_pool(model)?);
        }
        if self.pool_words.contains_key(&layers) {
            return Ok(());
        }
        let pool = self.pool.as_ref().expect("loaded above");
        let count = pool.len().min(DESCRIBE_CANDIDATES);
        let cache = word_index::cache_file(model, &format!("pool words: {count} images, {layers} layers"), "json");
        let cached: Option<Vec<Vec<u32>>> = cache
            .as_deref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| serde_json::from_str(&text).ok())
            .filter(|words: &Vec<Vec<u32>>| words.len() == count);
        let words = match cached {
            Some(words) => words,
            None => {
                let images: Vec<RgbImage> = (0..count).map(|i| pool.image(i).clone()).collect();
                let mut words = Vec::with_capacity(count);
                for chunk in images.chunks(16) {
                    ensure!(!cancel.load(Ordering::Relaxed), "cancelled");
                    words.extend(model.encode_prefix_words(chunk, layers)?);
                }
                if let Some(path) = &cache {
                    // A cache that cannot be written only costs the next start this encoding.
                    let _ = word_index::write_cache_file(path, serde_json::to_string(&words)?.as_bytes());
                }
                words
            }
        };
        self.pool_words.insert(layers, words);
        Ok(())
    }

    fn describe(&mut self, model: &SpaeModel, job: DescribeJob, reporter: &Reporter) -> Result<DescribedAnswer> {
        ensure!((1..=model.shape().layers()).contains(&job.layers), "layers must be 1..={}", model.shape().layers());
        self.pool_words(model, job.layers, &job.cancel)?;
        let query = model.encode(&job.image)?.prefix_words(job.layers);
        self.llm(model, reporter)?;
        ensure!(!job.cancel.load(Ordering::Relaxed), "cancelled");
        let (llm, tokenizer) = self.llm.as_ref().expect("loaded above");
        let pool = self.pool.as_ref().expect("loaded above");
        let candidates = captioning::Candidates { pool, words: &self.pool_words[&job.layers] };
        let codebook = model.codebook();
        let described =
            captioning::describe(llm, tokenizer, codebook, &candidates, &query, job.examples, job.question.as_deref())?;
        let vocabulary = codebook.vocabulary();
        let examples = described
            .examples
            .iter()
            .map(|e| (e.words.iter().map(|&w| vocabulary.word(w)).collect::<Vec<_>>().join(" "), e.text.clone()))
            .collect();
        Ok(DescribedAnswer {
            answer: described.answer,
            examples,
            answered: described.kind.question().to_string(),
            prompt: tokenizer.decode(&described.prompt),
            prompt_tokens: described.prompt.len(),
        })
    }
}

/// The shipped example pool, or why there is none and how to make it.
fn load_pool(model: &SpaeModel) -> Result<Pool> {
    let dir = paths::resolve(paths::POOL);
    if !pool_exists() {
        return Err(anyhow!("{}", missing_pool_message()));
    }
    Pool::load(&dir, model.config().resolution as u32)
}

/// Whether the shipped example pool is in place.
pub fn pool_exists() -> bool {
    let dir = paths::resolve(paths::POOL);
    dir.join("pool.png").is_file() && dir.join("pool.jsonl").is_file()
}

/// What to do when the example pool is missing.
pub fn missing_pool_message() -> String {
    format!(
        "no example pool at {0}/ (pool.png + pool.jsonl): generation draws its examples from it; \
         make it with `spae make-pool --cache <data cache> --output {0}` after `spae prepare-data`",
        paths::POOL
    )
}
