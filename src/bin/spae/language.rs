//! The commands where the frozen LLM reads or writes images: `classify`, `eval-fewshot`,
//! `caption`, `ask`, `generate`, and `make-pool` (the examples generation and captioning
//! draw from).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Result};
use clap::ValueEnum;

use spae::data::{prepare, relevance_cache, Dataset, Split};
use spae::eval::captioning as caption_eval;
use spae::eval::concepts::{Concepts, MIN_IMAGES};
use spae::eval::fewshot::{self as fewshot_eval, Cell};
use spae::image_io;
use spae::llm::gguf::LlmFile;
use spae::llm::model::SmolLm;
use spae::llm::tokenizer::Tokenizer;
use spae::model::SpaeModel;
use spae::paths;
use spae::pyramid::text as pyramid_text;
use spae::tasks::context_pool::{Pool, Task};
use spae::tasks::denoising::{Condition, Denoiser, Options};
use spae::tasks::{captioning, fewshot};

use crate::Session;

/// The frozen LLM and its tokenizer, from one GGUF file.
fn open_llm(path: &Path) -> Result<(SmolLm, Tokenizer)> {
    let file = LlmFile::open(path)?;
    Ok((SmolLm::load(&file)?, Tokenizer::from_gguf(&file)?))
}

#[derive(clap::Args)]
pub struct ClassifyArgs {
    /// A folder with one subfolder of images per class, or a `label<TAB>path` list.
    #[arg(long)]
    support: PathBuf,
    #[arg(long)]
    query: PathBuf,
    /// Pyramid layers per image in the prompt.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// The open-ended protocol: no line naming the classes opens the prompt.
    #[arg(long)]
    no_induction: bool,
    /// How class names are scored: each one's log-probability after the prompt, less
    /// (`calibrated`) or not (`raw`) its log-probability without the query's words.
    #[arg(long, value_enum, default_value_t = ScoringChoice::Calibrated)]
    scoring: ScoringChoice,
    /// Orderings of the support examples each task is read in (rotations of the list;
    /// each class's scores are averaged over them).
    #[arg(long, default_value_t = fewshot::DEFAULT_ORDERINGS)]
    orderings: usize,
}

impl ClassifyArgs {
    /// One few-shot task from support images and a query image file.
    pub fn run(self, session: &Session) -> Result<()> {
        let (model, layers) = (session.model, self.layers);
        ensure!(self.orderings >= 1, "--orderings must be at least 1 (the task is read in that many orders)");
        let (classes, images) = fewshot::read_support(&self.support)?;
        let support = images
            .iter()
            .map(|(path, class)| Ok((fewshot::file_words(model, path, layers)?, *class)))
            .collect::<Result<_>>()?;
        let query = fewshot::file_words(model, &self.query, layers)?;
        let (llm, tokenizer) = open_llm(session.llm)?;
        let task = fewshot::Task { classes, support, query, induction: !self.no_induction };
        let answer = fewshot::classify(
            &llm,
            &tokenizer,
            model.codebook().vocabulary(),
            &task,
            self.scoring.into(),
            self.orderings,
        )?;
        println!("{}", tokenizer.decode(&answer.prompt));
        match &answer.without_query {
            None => println!(
                "---- {} prompt tokens; log-probability of each class ({}):",
                answer.prompt.len(),
                fewshot::orderings_phrase(answer.orderings)
            ),
            Some(_) => println!(
                "---- {} prompt tokens; each class's score = its log-probability - that without the query's words \
                 ({}):",
                answer.prompt.len(),
                fewshot::orderings_phrase(answer.orderings)
            ),
        }
        for (i, name) in task.classes.iter().enumerate() {
            match &answer.without_query {
                None => println!("{:>10.3}  {name}", answer.scores[i]),
                Some(lean) => {
                    println!("{:>10.3} = {:>8.3} - {:>8.3}  {name}", answer.scores[i], answer.log_probs[i], lean[i])
                }
            }
        }
        println!("answer: {}", task.classes[answer.class]);
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct EvalFewshotArgs {
    #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
    cache: PathBuf,
    /// Tasks per (ways, shots) cell.
    #[arg(long, default_value_t = 200)]
    tasks: usize,
    /// Pyramid layers per image in the prompt.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Shots per class of the tasks, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 3, 5])]
    shots: Vec<usize>,
    /// A control model folder (trained without semantic guidance) asked the same tasks.
    #[arg(long)]
    control: Option<PathBuf>,
    /// Whose words stand for each image: the model's first layers, or the teacher's most
    /// relevant words, as many (a ceiling for the tokenizer; the model only lends its
    /// vocabulary).
    #[arg(long, value_enum, default_value_t = WordSource::Model)]
    words: WordSource,
    /// How class names are scored: each one's log-probability after the prompt, less
    /// (`calibrated`) or not (`raw`) its log-probability without the query's words.
    #[arg(long, value_enum, default_value_t = ScoringChoice::Calibrated)]
    scoring: ScoringChoice,
    /// Orderings of the support examples each task is read in (rotations of the list;
    /// each class's scores are averaged over them).
    #[arg(long, default_value_t = fewshot::DEFAULT_ORDERINGS)]
    orderings: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

/// How class names are scored: `calibrated` (log-probability less that without the
/// query's words) or `raw` (log-probability).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ScoringChoice {
    Calibrated,
    Raw,
}

impl From<ScoringChoice> for fewshot::Scoring {
    fn from(choice: ScoringChoice) -> Self {
        match choice {
            ScoringChoice::Calibrated => Self::Calibrated,
            ScoringChoice::Raw => Self::Raw,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WordSource {
    Model,
    Teacher,
}

impl EvalFewshotArgs {
    fn options(&self) -> fewshot_eval::Options {
        fewshot_eval::Options {
            tasks: self.tasks,
            layers: self.layers,
            seed: self.seed,
            shots: self.shots.clone(),
            scoring: self.scoring.into(),
            orderings: self.orderings,
            ..Default::default()
        }
    }

    pub fn run(self, session: &Session) -> Result<()> {
        ensure!(
            !(self.words == WordSource::Teacher && self.control.is_some()),
            "--words teacher asks the teacher's words, the same for any model: a --control would repeat them"
        );
        ensure!(self.orderings >= 1, "--orderings must be at least 1 (each task is read in that many orders)");
        let options = self.options();
        let data = Dataset::load(&prepare::data_dir(&self.cache), Split::HeldOut, session.model.config().resolution)?;
        let (llm, tokenizer) = open_llm(session.llm)?;
        let concepts = Concepts::shipped();
        let most_shots = options.shots.iter().copied().max().unwrap_or(1);
        let concept_labels = fewshot_eval::concept_labels(&data, &concepts)?;
        let category_labels = fewshot_eval::category_labels(&data);
        // Every table of one model, from one encoding of the split.
        let run = |model: &SpaeModel, label: &str| -> Result<Tables> {
            let words = match self.words {
                WordSource::Model => {
                    eprintln!("{label}: encoding {} held-out images", data.len());
                    fewshot_eval::image_words(model, &data, options.layers)?
                }
                WordSource::Teacher => {
                    let relevances =
                        relevance_cache::load(&prepare::data_dir(&self.cache), Split::HeldOut, data.len())?;
                    let count = model.shape().tokens_in_prefix(options.layers);
                    fewshot_eval::teacher_words(&relevances, model.codebook().vocabulary(), count)
                }
            };
            let by_concept = fewshot_eval::group(&words, &concept_labels, MIN_IMAGES.max(most_shots + 1));
            let by_category = fewshot_eval::group(&words, &category_labels, most_shots + 1);
            let bar = indicatif::ProgressBar::new_spinner();
            let table = |classes: &fewshot_eval::Classes, induction: bool, name: &str| {
                let options = fewshot_eval::Options { induction, ..options.clone() };
                let mut calls = 0usize;
                fewshot_eval::evaluate(&llm, &tokenizer, model, classes, &options, |m| {
                    bar.set_message(format!("{label}, {name}: {m}"));
                    calls += 1;
                    // Not a terminal: a plain line every 50 tasks.
                    if bar.is_hidden() && calls.is_multiple_of(50) {
                        eprintln!("{label}, {name}: {m}");
                    }
                })
            };
            let tables = Tables {
                concepts: table(&by_concept, true, "concepts")?,
                open: table(&by_concept, false, "concepts, open-ended")?,
                categories: table(&by_category, true, "source categories")?,
                concept_names: by_concept
                    .names
                    .iter()
                    .zip(&by_concept.images)
                    .map(|(n, i)| (n.clone(), i.len()))
                    .collect(),
            };
            bar.finish_and_clear();
            Ok(tables)
        };
        let tables = run(session.model, "model")?;
        let control = self
            .control
            .as_deref()
            .map(|dir| run(&SpaeModel::open(dir, session.llm, false)?, "control"))
            .transpose()?;
        let shown: Vec<String> = tables.concept_names.iter().map(|(n, count)| format!("{n} ({count})")).collect();
        println!(
            "{} tasks per cell, {} layers per image, seed {}, {} scores, each task read in up to {} orderings of its \
             examples (one per example at most); {} concept classes: {}",
            options.tasks,
            options.layers,
            options.seed,
            if options.scoring == fewshot::Scoring::Raw { "raw" } else { "calibrated" },
            options.orderings,
            shown.len(),
            shown.join(", ")
        );
        for (title, pick) in [
            ("Concept classes, with task induction", (|t: &Tables| &t.concepts) as fn(&Tables) -> &Vec<Cell>),
            ("Concept classes, open-ended (no class list in the prompt)", |t: &Tables| &t.open),
            ("Source categories, with task induction (the earlier benchmark)", |t: &Tables| &t.categories),
        ] {
            println!("{title}:");
            print_cells(pick(&tables), control.as_ref().map(pick).map(Vec::as_slice));
        }
        if self.json {
            let with_control = |cells: &[Cell], control: Option<&[Cell]>| {
                let mut table = cells_json(cells);
                table["control"] = control.map_or(serde_json::Value::Null, cells_json);
                table
            };
            let mut line = with_control(&tables.concepts, control.as_ref().map(|c| c.concepts.as_slice()));
            line["open"] = with_control(&tables.open, control.as_ref().map(|c| c.open.as_slice()));
            line["source_categories"] =
                with_control(&tables.categories, control.as_ref().map(|c| c.categories.as_slice()));
            line["classes"] = serde_json::json!(tables.concept_names.iter().map(|(n, _)| n).collect::<Vec<_>>());
            line["tasks"] = serde_json::json!(options.tasks);
            line["scoring"] =
                serde_json::json!(if options.scoring == fewshot::Scoring::Raw { "raw" } else { "calibrated" });
            line["orderings"] = serde_json::json!(options.orderings);
            println!("{line}");
        }
        Ok(())
    }
}

/// One model's few-shot tables.
struct Tables {
    concepts: Vec<Cell>,
    open: Vec<Cell>,
    categories: Vec<Cell>,
    /// The concept classes and their held-out image counts.
    concept_names: Vec<(String, usize)>,
}

fn print_cells(cells: &[Cell], control: Option<&[Cell]>) {
    println!("{:<8} {:>5}  {:>22}  {:>22}  {:>6}", "", "shots", "accuracy [95% CI]", "control [95% CI]", "chance");
    let show = |c: &Cell| format!("{:.3} [{:.3}, {:.3}]", c.accuracy, c.interval.0, c.interval.1);
    for (i, cell) in cells.iter().enumerate() {
        let control = control.map_or("-".to_string(), |c| show(&c[i]));
        println!(
            "{:<8} {:>5}  {:>22}  {:>22}  {:>6.3}",
            format!("{}-way", cell.ways),
            cell.shots,
            show(cell),
            control,
            cell.chance
        );
    }
}

/// `{"2way": {"1": accuracy, ...}, "5way": {...}}`.
fn cells_json(cells: &[Cell]) -> serde_json::Value {
    let mut table = serde_json::Map::new();
    for cell in cells {
        let row = table.entry(format!("{}way", cell.ways)).or_insert_with(|| serde_json::json!({}));
        row[cell.shots.to_string()] = serde_json::json!(cell.accuracy);
    }
    serde_json::Value::Object(table)
}

/// `generate`'s task.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TaskArg {
    Text,
    Outpaint,
    Deblur,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Text to image: what to generate (a category or caption).
    #[arg(long)]
    prompt: Option<String>,
    /// Image to image: the source image (with --task outpaint or deblur).
    #[arg(long)]
    source: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = TaskArg::Text)]
    task: TaskArg,
    #[arg(long, default_value_t = 8)]
    steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Layers generated by the LLM (the rest are completed by SAQ).
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Of those, layers sampled word by word (the rest refined in parallel).
    #[arg(long, default_value_t = 2)]
    ar_layers: usize,
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// In-context examples.
    #[arg(long, default_value_t = 6)]
    examples: usize,
    /// Example images: a pool folder (pool.png + pool.jsonl), or the data cache to draw
    /// from the whole prepared training split.
    #[arg(long, default_value_os_t = paths::resolve(paths::POOL))]
    pool: PathBuf,
    /// Output folder; an earlier generation's files in it are removed first.
    #[arg(short, long)]
    output: PathBuf,
}

impl GenerateArgs {
    fn options(&self) -> Options {
        let (steps, layers, ar_layers, temperature, seed) =
            (self.steps, self.layers, self.ar_layers, self.temperature, self.seed);
        Options { steps, layers, ar_layers, temperature, seed, ..Default::default() }
    }

    pub fn run(self, session: &Session) -> Result<()> {
        generate(session.model, session.llm, &self)
    }
}

/// Progressive in-context denoising; writes every frame, the final image and its pyramid.
fn generate(model: &SpaeModel, llm_path: &Path, args: &GenerateArgs) -> Result<()> {
    let options = args.options();
    let resolution = model.config().resolution as u32;
    let task = match args.task {
        TaskArg::Text => Task::TextToImage,
        TaskArg::Outpaint => Task::Outpaint,
        TaskArg::Deblur => Task::Deblur,
    };
    let layers = options.layers;
    // Everything that can be checked before the slow part is checked here.
    options.validate(model.shape())?;
    ensure!(
        !args.output.exists() || args.output.is_dir(),
        "the output {} is not a folder: name a folder for the frames",
        args.output.display()
    );
    let (llm, tokenizer) = open_llm(llm_path)?;
    let context = llm.config().context;
    let least = args.examples.saturating_mul(model.shape().tokens_in_prefix(layers) + 1);
    ensure!(
        least < context,
        "{} examples of {layers} layers need at least {least} prompt tokens and the LLM's context holds {context}: use fewer examples or layers",
        args.examples
    );
    if let Some(prompt) = &args.prompt {
        let tokens = tokenizer.encode(prompt).len();
        ensure!(tokens < context, "the prompt is {tokens} tokens and the LLM's context holds {context}: shorten it");
    }
    let (query, text) = match (task, args.prompt.as_deref(), args.source.as_deref()) {
        (Task::TextToImage, Some(prompt), _) => (Condition::Text(prompt.to_string()), Some(prompt)),
        (Task::TextToImage, None, _) => anyhow::bail!("text-to-image needs --prompt TEXT"),
        (_, _, Some(source)) => {
            let image = image_io::load_prepared(source, resolution)?;
            let words = model.encode(&task.corrupt(&image))?.prefix_words(layers);
            (Condition::Words(words), None)
        }
        (_, _, None) => anyhow::bail!("{:?} needs --source IMAGE", args.task),
    };
    let pool = open_pool(&args.pool, resolution, usize::MAX)?;
    let chosen = pool.choose(text, args.examples, options.seed);
    eprintln!("examples: {}", chosen.iter().map(|&i| pool.text(i)).collect::<Vec<_>>().join(", "));
    let examples = pool.examples(model, &chosen, task, layers)?;
    let denoiser =
        Denoiser { llm: &llm, tokenizer: &tokenizer, vocabulary: model.codebook().vocabulary(), shape: model.shape() };
    denoiser.check(&examples, &query, &options)?;
    let removed = spae::tasks::denoising::clear_output_folder(&args.output, args.source.as_deref())?;
    if removed > 0 {
        eprintln!("removed {removed} files of an earlier generation from {}", args.output.display());
    }
    let started = Instant::now();
    // Each frame is written as soon as it exists, so an interrupted run keeps its frames.
    let mut failure = None;
    let generation = denoiser.generate(&examples, &query, &options, |frame| {
        let written = frame.pyramid(model).and_then(|pyramid| {
            let image = model.decode(&pyramid, model.shape().layers())?;
            image_io::save_png(&image, &args.output.join(spae::tasks::denoising::frame_file_name(frame.step)))
        });
        eprintln!(
            "step {:>2}: corruption {:.2}, {:>3} words changed ({:.1} s)",
            frame.step,
            frame.corruption,
            frame.changed.len(),
            started.elapsed().as_secs_f64()
        );
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failure = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e.context("writing a frame"));
    }
    let last = generation.frames.last().expect("a generation has its starting frame");
    let pyramid = last.pyramid(model)?;
    image_io::save_png(&model.decode(&pyramid, model.shape().layers())?, &args.output.join("final.png"))?;
    let frames = generation
        .frames
        .iter()
        .map(|frame| model.decode(&frame.pyramid(model)?, model.shape().layers()))
        .collect::<Result<Vec<_>>>()?;
    image_io::save_png(&strip(&frames, 2), &args.output.join("frames.png"))?;
    let text = pyramid_text::format(&pyramid, model.codebook().vocabulary());
    spae::atomic_file::write(&args.output.join("final.txt"), text.as_bytes())?;
    let saved = 1.0 - generation.tokens_run as f64 / generation.tokens_without_reuse.max(1) as f64;
    eprintln!(
        "wrote {} frames, final.png and final.txt to {} in {:.1} s; the LLM ran {} tokens, {:.0}% fewer than without KV-cache reuse ({})",
        generation.frames.len(),
        args.output.display(),
        started.elapsed().as_secs_f64(),
        generation.tokens_run,
        saved * 100.0,
        generation.tokens_without_reuse
    );
    Ok(())
}

/// Images side by side, each scaled up `scale` times (nearest), 2 px apart.
fn strip(images: &[image::RgbImage], scale: u32) -> image::RgbImage {
    let side = images[0].width() * scale;
    let mut out = image::RgbImage::from_pixel((side + 2) * images.len() as u32 - 2, side, image::Rgb([255, 255, 255]));
    for (i, image) in images.iter().enumerate() {
        let big = image::imageops::resize(image, side, side, image::imageops::FilterType::Nearest);
        image::imageops::replace(&mut out, &big, i as i64 * (side as i64 + 2), 0);
    }
    out
}

#[derive(clap::Args)]
pub struct EvalGenerateArgs {
    /// Generations per prompt (seeds 0..N).
    #[arg(long, default_value_t = 2)]
    seeds: u64,
    #[arg(long, default_value_t = 8)]
    steps: usize,
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 6)]
    examples: usize,
    #[arg(long)]
    json: bool,
}

impl EvalGenerateArgs {
    fn options(&self) -> Options {
        Options { steps: self.steps, layers: self.layers, ..Default::default() }
    }

    pub fn run(self, session: &Session) -> Result<()> {
        eval_generate(session.model, session.llm, self.seeds, self.examples, &self.options(), self.json)
    }
}

/// Generation judged by the semantic teacher against images from random words.
fn eval_generate(
    model: &SpaeModel,
    llm_path: &Path,
    seeds: u64,
    examples: usize,
    options: &Options,
    json: bool,
) -> Result<()> {
    let pool = Pool::load(&spae::paths::resolve(spae::paths::POOL), model.config().resolution as u32)?;
    let candidates = spae::eval::generation::categories(&pool, model, examples);
    eprintln!("{} prompts: {}", candidates.len(), candidates.join(", "));
    let (llm, tokenizer) = open_llm(llm_path)?;
    let teacher = spae::teacher::relevance::SemanticTeacher::load(
        &spae::paths::resolve(spae::paths::TEACHER),
        &spae::paths::resolve(spae::paths::IMAGENET_CLASSES),
        model.codebook(),
    )?;
    let denoiser =
        Denoiser { llm: &llm, tokenizer: &tokenizer, vocabulary: model.codebook().vocabulary(), shape: model.shape() };
    let started = Instant::now();
    let plan = spae::eval::generation::Plan { candidates: &candidates, examples, seeds, options };
    let report = spae::eval::generation::evaluate(model, &denoiser, &teacher, &pool, &plan, |m| {
        eprintln!("generated {m} ({:.0} s)", started.elapsed().as_secs_f64())
    })?;
    println!(
        "{} images over {} prompts: the teacher assigns {:.1}% of generated images to their prompt, {:.1}% of images from random words (chance {:.1}%)",
        report.images,
        report.prompts.len(),
        report.generated_hit_rate * 100.0,
        report.random_hit_rate * 100.0,
        report.chance * 100.0
    );
    if json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// The shipped pool folder, or `cache[/...]` for the prepared training split.
/// A pool folder, or a data cache's training split (at most `limit` images of it, spread
/// evenly).
fn open_pool(path: &Path, resolution: u32, limit: usize) -> Result<Pool> {
    if path.join("pool.jsonl").exists() {
        return Pool::load(path, resolution);
    }
    let data = Dataset::load(&prepare::data_dir(path), Split::Train, resolution as usize)?;
    ensure!(!data.is_empty(), "the training split in {} is empty", path.display());
    Ok(Pool::from_dataset(&data, limit.min(data.len()), |_| true))
}

/// Options shared by `caption` and `ask`.
#[derive(clap::Args)]
pub struct DescribeArgs {
    /// Pyramid layers per image in the prompt [default: 3 for a caption, 4 for a question].
    #[arg(long)]
    layers: Option<usize>,
    /// In-context examples.
    #[arg(long, default_value_t = 8)]
    examples: usize,
    /// Example images: a pool folder (pool.png + pool.jsonl), or the data cache to draw
    /// from the prepared training split.
    #[arg(long, default_value_os_t = paths::resolve(paths::POOL))]
    pool: PathBuf,
    /// With a data cache as --pool: how many of its images (spread evenly) are candidates.
    #[arg(long, default_value_t = 1024)]
    candidates: usize,
    /// Print the exact prompt the LLM reads.
    #[arg(long)]
    show_prompt: bool,
}

#[derive(clap::Args)]
pub struct CaptionArgs {
    image: PathBuf,
    #[command(flatten)]
    describe: DescribeArgs,
}

impl CaptionArgs {
    pub fn run(self, session: &Session) -> Result<()> {
        describe(session.model, session.llm, &self.image, &self.describe, None)
    }
}

#[derive(clap::Args)]
pub struct AskArgs {
    image: PathBuf,
    question: String,
    #[command(flatten)]
    describe: DescribeArgs,
}

impl AskArgs {
    pub fn run(self, session: &Session) -> Result<()> {
        describe(session.model, session.llm, &self.image, &self.describe, Some(&self.question))
    }
}

/// `spae caption` (no question) and `spae ask`: the frozen LLM writes a caption or an
/// answer after the examples whose words are nearest the image's.
fn describe(
    model: &SpaeModel,
    llm_path: &Path,
    image: &Path,
    args: &DescribeArgs,
    question: Option<&str>,
) -> Result<()> {
    let layers = args.layers.unwrap_or(captioning::default_layers(question.is_some()));
    ensure!((1..=model.shape().layers()).contains(&layers), "--layers must be 1..={}", model.shape().layers());
    ensure!(args.examples >= 1, "--examples must be at least 1");
    if let Some(question) = question {
        ensure!(!question.trim().is_empty(), "the question is empty");
    }
    let resolution = model.config().resolution as u32;
    let query = model.encode(&image_io::load_prepared(image, resolution)?)?.prefix_words(layers);
    let pool = open_pool(&args.pool, resolution, args.candidates)?;
    eprintln!("encoding {} candidate examples from {}", pool.len(), args.pool.display());
    let images: Vec<image::RgbImage> = (0..pool.len()).map(|i| pool.image(i).clone()).collect();
    let words = model.encode_prefix_words(&images, layers)?;
    let (llm, tokenizer) = open_llm(llm_path)?;
    let codebook = model.codebook();
    let candidates = captioning::Candidates { pool: &pool, words: &words };
    let described = captioning::describe(&llm, &tokenizer, codebook, &candidates, &query, args.examples, question)?;
    if question.is_some() {
        eprintln!("the examples answer \"{}\" from the data", described.kind.question());
    }
    let vocabulary = codebook.vocabulary();
    for (&i, example) in described.chosen.iter().zip(&described.examples) {
        let shown: Vec<&str> = example.words.iter().map(|&w| vocabulary.word(w)).collect();
        eprintln!("example: {} -> {:?} ({})", shown.join(" "), example.text, pool.text(i));
    }
    if args.show_prompt {
        println!("{}", tokenizer.decode(&described.prompt));
        println!("---- {} prompt tokens; the LLM writes:", described.prompt.len());
    }
    println!("{}", described.answer);
    Ok(())
}

/// Packages whose images may be redistributed in the repository under one clear licence
/// each (the desktop-background packages' photos carry several, so they stay out).
const SHIPPABLE: [&str; 3] = ["emoji-datasource-google", "tuxpaint-stamps-default", "openclipart-png"];

#[derive(clap::Args)]
pub struct EvalCaptionArgs {
    #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
    cache: PathBuf,
    /// Held-out images captioned (spread evenly over the split; those whose caption has
    /// content words count).
    #[arg(long, default_value_t = 60)]
    images: usize,
    /// Training images (spread evenly) the examples are chosen from.
    #[arg(long, default_value_t = 1024)]
    candidates: usize,
    /// Pyramid layers per image in the caption prompts.
    #[arg(long, default_value_t = captioning::CAPTION_LAYERS)]
    layers: usize,
    /// Pyramid layers per image in the question prompts.
    #[arg(long, default_value_t = captioning::QUESTION_LAYERS)]
    ask_layers: usize,
    /// In-context examples per prompt.
    #[arg(long, default_value_t = 8)]
    examples: usize,
    /// Seed of the control's random words.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Captions only, without the data's questions.
    #[arg(long)]
    no_questions: bool,
    /// Captioned images listed with their true and generated captions.
    #[arg(long, default_value_t = 8)]
    show: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

impl EvalCaptionArgs {
    fn options(&self) -> caption_eval::Options {
        caption_eval::Options {
            caption_layers: self.layers,
            ask_layers: self.ask_layers,
            examples: self.examples,
            seed: self.seed,
            questions: !self.no_questions,
        }
    }

    /// Captions and answers on the held-out split, against the random-words control,
    /// the nearest example's caption and chance.
    pub fn run(self, session: &Session) -> Result<()> {
        let model = session.model;
        ensure!(self.examples >= 1, "--examples must be at least 1");
        ensure!(self.images >= 1 && self.candidates >= 1, "--images and --candidates must be at least 1");
        let resolution = model.config().resolution;
        let dir = prepare::data_dir(&self.cache);
        let heldout = Dataset::load(&dir, Split::HeldOut, resolution)?;
        let train = Dataset::load(&dir, Split::Train, resolution)?;
        let queries = Pool::from_dataset(&heldout, self.images.min(heldout.len()), |_| true);
        let candidates = Pool::from_dataset(&train, self.candidates.min(train.len()), |_| true);
        eprintln!("encoding {} candidate examples from the training split", candidates.len());
        let images: Vec<image::RgbImage> = (0..candidates.len()).map(|i| candidates.image(i).clone()).collect();
        let options = self.options();
        let layers = options.most_layers();
        ensure!(
            (1..=model.shape().layers()).contains(&layers),
            "layers must be 1..={}, not {layers}",
            model.shape().layers()
        );
        let words = model.encode_prefix_words(&images, layers)?;
        let (llm, tokenizer) = open_llm(session.llm)?;
        let bar = indicatif::ProgressBar::new(queries.len() as u64);
        let report =
            caption_eval::evaluate(&llm, &tokenizer, model, &candidates, &words, &queries, &options, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                if bar.is_hidden() && (done % 10 == 0 || done == total) {
                    eprintln!("captioned {done}/{total}");
                }
            })?;
        bar.finish_and_clear();
        match self.no_questions {
            true => println!("layers per image: {} in the caption prompts", self.layers),
            false => println!(
                "layers per image: {} in the caption prompts, {} in the question prompts",
                self.layers, self.ask_layers
            ),
        }
        print_caption_report(&report, self.show);
        if self.json {
            let line = serde_json::json!({
                "caption": report.caption,
                "caption_control": report.caption_control,
                "caption_nearest": report.caption_nearest,
                "ask": (!self.no_questions).then_some(&report.ask),
                "ask_control": (!self.no_questions).then_some(&report.ask_control),
                "ask_chance": (!self.no_questions).then_some(&report.ask_chance),
                "seconds_per_caption": report.seconds_per_caption,
                "caption_layers": self.layers,
                "ask_layers": (!self.no_questions).then_some(self.ask_layers),
                "images": report.images,
            });
            println!("{line}");
        }
        Ok(())
    }
}

fn print_caption_report(report: &caption_eval::Report, show: usize) {
    println!("{} held-out images, {:.2} s per caption", report.images, report.seconds_per_caption);
    println!("{:<28} {:>7} {:>9} {:>9}", "captions", "recall", "precision", "name rate");
    for (name, m) in [
        ("SPAE words", &report.caption),
        ("random words (control)", &report.caption_control),
        ("nearest example's caption", &report.caption_nearest),
    ] {
        println!("{name:<28} {:>7.3} {:>9.3} {:>9.3}", m.recall, m.precision, m.name_rate);
    }
    if !report.ask_interval.is_empty() {
        println!("{:<10} {:>22} {:>22} {:>7}", "questions", "accuracy [95% CI]", "control [95% CI]", "chance");
        let rows = [
            ("what", report.ask.what, report.ask_control.what, report.ask_chance.what),
            ("category", report.ask.category, report.ask_control.category, report.ask_chance.category),
            ("colour", report.ask.colour, report.ask_control.colour, report.ask_chance.colour),
            ("kind", report.ask.kind, report.ask_control.kind, report.ask_chance.kind),
        ];
        for (key, accuracy, control, chance) in rows {
            let (lo, hi) = report.ask_interval[key];
            let (clo, chi) = report.ask_control_interval[key];
            println!(
                "{key:<10} {:>22} {:>22} {chance:>7.3}",
                format!("{accuracy:.3} [{lo:.3}, {hi:.3}]"),
                format!("{control:.3} [{clo:.3}, {chi:.3}]")
            );
        }
    }
    let step = (report.captioned.len() / show.max(1)).max(1);
    for c in report.captioned.iter().step_by(step).take(show) {
        println!("true: {:?}  SPAE: {:?}  control: {:?}  nearest: {:?}", c.truth, c.caption, c.control, c.nearest);
    }
}

#[derive(clap::Args)]
pub struct MakePoolArgs {
    #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
    cache: PathBuf,
    #[arg(long, default_value_t = 256)]
    count: usize,
    #[arg(short, long, default_value_os_t = paths::resolve(paths::POOL))]
    output: PathBuf,
}

impl MakePoolArgs {
    /// Writes a pool of `count` training images, spread over the split, to `output`.
    pub fn run(self, session: &Session) -> Result<()> {
        let resolution = session.model.config().resolution;
        let data = Dataset::load(&prepare::data_dir(&self.cache), Split::Train, resolution)?;
        let pool = Pool::from_dataset(&data, self.count, |package| SHIPPABLE.contains(&package));
        pool.save(&self.output)?;
        eprintln!("wrote {} images to {}", pool.len(), self.output.display());
        Ok(())
    }
}
