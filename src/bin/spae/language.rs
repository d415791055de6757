//! The commands where the frozen LLM reads or writes images: `classify`, `eval-fewshot`,
//! `caption`, `ask`, `generate`, and `make-pool` (the examples generation and captioning
//! draw from).

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Result};
use clap::ValueEnum;

use spae::data::{prepare, Dataset, Split};
use spae::eval::fewshot as fewshot_eval;
use spae::image_io;
use spae::llm::gguf::LlmFile;
use spae::llm::model::SmolLm;
use spae::llm::tokenizer::Tokenizer;
use spae::model::SpaeModel;
use spae::pyramid::text as pyramid_text;
use spae::tasks::context_pool::{Pool, Task};
use spae::tasks::denoising::{Condition, Denoiser, Options};
use spae::tasks::{captioning, fewshot};

/// The frozen LLM and its tokenizer, from one GGUF file.
fn open_llm(path: &Path) -> Result<(SmolLm, Tokenizer)> {
    let file = LlmFile::open(path)?;
    Ok((SmolLm::load(&file)?, Tokenizer::from_gguf(&file)?))
}

/// `spae classify`: one few-shot task from support images and a query image file.
pub fn classify(model: &SpaeModel, llm_path: &Path, support: &Path, query: &Path, layers: usize) -> Result<()> {
    let (classes, images) = fewshot::read_support(support)?;
    let support = images
        .iter()
        .map(|(path, class)| Ok((fewshot::file_words(model, path, layers)?, *class)))
        .collect::<Result<_>>()?;
    let query = fewshot::file_words(model, query, layers)?;
    let (llm, tokenizer) = open_llm(llm_path)?;
    let task = fewshot::Task { classes, support, query };
    let answer = fewshot::classify(&llm, &tokenizer, model.codebook().vocabulary(), &task)?;
    println!("{}", tokenizer.decode(&answer.prompt));
    println!("---- {} prompt tokens; log-probability of each class:", answer.prompt.len());
    for (name, score) in task.classes.iter().zip(&answer.scores) {
        println!("{score:>10.3}  {name}");
    }
    println!("answer: {}", task.classes[answer.class]);
    Ok(())
}

pub fn eval_fewshot(
    model: &SpaeModel,
    llm_path: &Path,
    cache: &Path,
    control: Option<&Path>,
    options: &fewshot_eval::Options,
    json: bool,
) -> Result<()> {
    let data = Dataset::load(&prepare::data_dir(cache), Split::HeldOut, model.config().resolution)?;
    let (llm, tokenizer) = open_llm(llm_path)?;
    let most_shots = options.shots.iter().copied().max().unwrap_or(1);
    let run = |model: &SpaeModel, label: &str| -> Result<Vec<fewshot_eval::Cell>> {
        eprintln!("{label}: encoding {} held-out images", data.len());
        let classes = fewshot_eval::classes(model, &data, options.layers, most_shots + 1)?;
        eprintln!("{label}: {} classes with more than {most_shots} images", classes.names.len());
        let bar = indicatif::ProgressBar::new_spinner();
        let cells =
            fewshot_eval::evaluate(&llm, &tokenizer, model, &classes, options, |m| bar.set_message(m.to_string()))?;
        bar.finish_and_clear();
        Ok(cells)
    };
    let cells = run(model, "model")?;
    let control_cells = control.map(|dir| run(&SpaeModel::open(dir, llm_path, false)?, "control")).transpose()?;
    println!("{} tasks per cell, {} layers per image, seed {}", options.tasks, options.layers, options.seed);
    println!("{:<8} {:>5}  {:>22}  {:>22}  {:>6}", "", "shots", "accuracy [95% CI]", "control [95% CI]", "chance");
    for (i, cell) in cells.iter().enumerate() {
        let show = |c: &fewshot_eval::Cell| format!("{:.3} [{:.3}, {:.3}]", c.accuracy, c.interval.0, c.interval.1);
        let control = control_cells.as_ref().map_or("-".to_string(), |c| show(&c[i]));
        println!(
            "{:<8} {:>5}  {:>22}  {:>22}  {:>6.3}",
            format!("{}-way", cell.ways),
            cell.shots,
            show(cell),
            control,
            cell.chance
        );
    }
    if json {
        let table = |cells: &[fewshot_eval::Cell]| {
            let mut table = serde_json::Map::new();
            for cell in cells {
                let row = table.entry(format!("{}way", cell.ways)).or_insert_with(|| serde_json::json!({}));
                row[cell.shots.to_string()] = serde_json::json!(cell.accuracy);
            }
            serde_json::Value::Object(table)
        };
        let mut line = table(&cells);
        line["control"] = control_cells.as_deref().map_or(serde_json::Value::Null, table);
        line["tasks"] = serde_json::json!(options.tasks);
        println!("{line}");
    }
    Ok(())
}

/// `generate`'s task.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TaskArg {
    Text,
    Outpaint,
    Deblur,
}

pub struct GenerateArgs<'a> {
    pub prompt: Option<&'a str>,
    pub source: Option<&'a Path>,
    pub task: TaskArg,
    pub pool: &'a Path,
    pub examples: usize,
    pub options: Options,
    pub output: &'a Path,
}

/// Progressive in-context denoising; writes every frame, the final image and its pyramid.
pub fn generate(model: &SpaeModel, llm_path: &Path, args: &GenerateArgs) -> Result<()> {
    let resolution = model.config().resolution as u32;
    let task = match args.task {
        TaskArg::Text => Task::TextToImage,
        TaskArg::Outpaint => Task::Outpaint,
        TaskArg::Deblur => Task::Deblur,
    };
    let layers = args.options.layers;
    // Everything that can be checked before the slow part is checked here.
    args.options.validate(model.shape())?;
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
    if let Some(prompt) = args.prompt {
        let tokens = tokenizer.encode(prompt).len();
        ensure!(tokens < context, "the prompt is {tokens} tokens and the LLM's context holds {context}: shorten it");
    }
    let (query, text) = match (task, args.prompt, args.source) {
        (Task::TextToImage, Some(prompt), _) => (Condition::Text(prompt.to_string()), Some(prompt)),
        (Task::TextToImage, None, _) => anyhow::bail!("text-to-image needs --prompt TEXT"),
        (_, _, Some(source)) => {
            let image = image_io::load_prepared(source, resolution)?;
            let words = model.encode(&task.corrupt(&image))?.prefix_words(layers);
            (Condition::Words(words), None)
        }
        (_, _, None) => anyhow::bail!("{:?} needs --source IMAGE", args.task),
    };
    let pool = open_pool(args.pool, resolution, usize::MAX)?;
    let chosen = pool.choose(text, args.examples, args.options.seed);
    eprintln!("examples: {}", chosen.iter().map(|&i| pool.text(i)).collect::<Vec<_>>().join(", "));
    let examples = pool.examples(model, &chosen, task, layers)?;
    let denoiser =
        Denoiser { llm: &llm, tokenizer: &tokenizer, vocabulary: model.codebook().vocabulary(), shape: model.shape() };
    denoiser.check(&examples, &query, &args.options)?;
    let removed = spae::tasks::denoising::clear_output_folder(args.output, args.source)?;
    if removed > 0 {
        eprintln!("removed {removed} files of an earlier generation from {}", args.output.display());
    }
    let started = Instant::now();
    // Each frame is written as soon as it exists, so an interrupted run keeps its frames.
    let mut failure = None;
    let generation = denoiser.generate(&examples, &query, &args.options, |frame| {
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

/// Generation judged by the semantic teacher against images from random words.
pub fn eval_generate(
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

/// What `spae caption` and `spae ask` read.
pub struct DescribeArgs<'a> {
    pub image: &'a Path,
    pub layers: usize,
    pub examples: usize,
    pub pool: &'a Path,
    /// Images of a data cache considered as examples.
    pub candidates: usize,
    pub show_prompt: bool,
}

/// `spae caption` (no question) and `spae ask`: the frozen LLM writes a caption or an
/// answer after the examples whose words are nearest the image's.
pub fn describe(model: &SpaeModel, llm_path: &Path, args: &DescribeArgs, question: Option<&str>) -> Result<()> {
    let layers = args.layers;
    ensure!((1..=model.shape().layers()).contains(&layers), "--layers must be 1..={}", model.shape().layers());
    ensure!(args.examples >= 1, "--examples must be at least 1");
    if let Some(question) = question {
        ensure!(!question.trim().is_empty(), "the question is empty");
    }
    let resolution = model.config().resolution as u32;
    let query = model.encode(&image_io::load_prepared(args.image, resolution)?)?.prefix_words(layers);
    let pool = open_pool(args.pool, resolution, args.candidates)?;
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

/// Writes a pool of `count` training images, spread over the split, to `output`.
pub fn make_pool(cache: &Path, resolution: usize, count: usize, output: &Path) -> Result<()> {
    let data = Dataset::load(&prepare::data_dir(cache), Split::Train, resolution)?;
    let pool = Pool::from_dataset(&data, count, |package| SHIPPABLE.contains(&package));
    pool.save(output)?;
    eprintln!("wrote {} images to {}", pool.len(), output.display());
    Ok(())
}
