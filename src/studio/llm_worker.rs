//! The frozen LLM's work for the studio, on its own background thread: generation
//! (progressive in-context denoising, streamed frame by frame) and few-shot classification.
//! The LLM (about 0.7 GB) and the example pool load on the first job that needs them; a
//! load that fails is reported with that job and tried again with the next.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{anyhow, ensure, Context, Result};
use eframe::egui;
use image::RgbImage;

use crate::context_pool::{Pool, Task};
use crate::denoising::{Condition, Denoiser, Frame, Options};
use crate::fewshot;
use crate::llm::gguf::LlmFile;
use crate::llm::model::SmolLm;
use crate::llm::tokenizer::Tokenizer;
use crate::model::SpaeModel;
use crate::paths;
use crate::pyramid::Pyramid;

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

pub enum Job {
    Generate(GenerateJob),
    Classify(ClassifyJob),
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
    /// Log-probability of each class name, in `classes` order.
    pub scores: Vec<f32>,
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
}

pub struct LlmWorker {
    jobs: Sender<Job>,
    outcomes: Receiver<Outcome>,
    /// Kept so the thread is owned here; it ends when `jobs` is dropped.
    _thread: JoinHandle<()>,
}

impl LlmWorker {
    /// Starts the thread (the LLM is not loaded yet); `ctx` is woken for every outcome.
    pub fn start(model: Arc<SpaeModel>, ctx: egui::Context) -> Self {
        let (jobs, job_rx) = mpsc::channel();
        let (outcome_tx, outcomes) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("spae-studio-llm".into())
            .spawn(move || Resources::default().run(&model, &job_rx, &Reporter { outcomes: outcome_tx, ctx }))
            .expect("cannot spawn the studio's LLM thread");
        Self { jobs, outcomes, _thread: thread }
    }

    pub fn send(&self, job: Job) {
        // The thread only stops when this struct is dropped, so sending cannot fail here.
        self.jobs.send(job).expect("the studio's LLM thread stopped");
    }

    /// Every outcome that arrived since the last poll.
    pub fn poll(&self) -> Vec<Outcome> {
        self.outcomes.try_iter().collect()
    }
}

/// Sends outcomes and wakes the UI; false once the studio is gone.
struct Reporter {
    outcomes: Sender<Outcome>,
    ctx: egui::Context,
}

impl Reporter {
    fn send(&self, outcome: Outcome) -> bool {
        let sent = self.outcomes.send(outcome).is_ok();
        self.ctx.request_repaint();
        sent
    }
}

/// What the thread loads once and keeps.
#[derive(Default)]
struct Resources {
    llm: Option<(SmolLm, Tokenizer)>,
    pool: Option<Pool>,
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
        let task = fewshot::Task { classes: job.classes, support, query };
        let (llm, tokenizer) = self.llm(model, reporter)?;
        let answer = fewshot::classify(llm, tokenizer, model.codebook().vocabulary(), &task)?;
        Ok(Classified {
            classes: task.classes,
            scores: answer.scores,
            answer: answer.class,
            prompt: tokenizer.decode(&answer.prompt),
            prompt_tokens: answer.prompt.len(),
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
