//! Few-shot image classification with the frozen LLM (docs/method.md section 6).
//!
//! Each support image is written as the words of its first pyramid layers, followed by its
//! class name; the query image's words follow, and the answer is the class name the LLM
//! finds most likely after `Output:`. Image words enter the prompt as their token ids (a
//! lexical word is one vocabulary token), never as re-tokenized text. A class name's
//! log-probability is that of all its tokens (ours: the paper reads "the LLM's scores
//! restricted to the class names"); each reading of the prompt runs once and its KV
//! cache serves every class.
//!
//! By default the scores are calibrated (ours, after Zhao et al. 2021, "Calibrate Before
//! Use"): from each class's log-probability is taken its log-probability after the same
//! prompt with no query words. A small LLM leans towards some names whatever the query
//! (the last support example's, a shorter one); that lean is what the query-free prompt
//! measures. The support part of the prompt is read once for both.
//!
//! By default the prompt is also read with its support examples in other orders (ours,
//! after Lu et al. 2022): see [`classify`].

use anyhow::{ensure, Result};

use crate::codebook::vocabulary::Vocabulary;
use crate::llm::log_softmax;
use crate::llm::model::{KvCache, SmolLm};
use crate::llm::tokenizer::Tokenizer;

/// One N-way K-shot problem: class names, labelled support images and a query image, each
/// image as codebook rows (the words of its first layers, layer after layer).
#[derive(Clone)]
pub struct Task {
    pub classes: Vec<String>,
    /// (words, index into `classes`).
    pub support: Vec<(Vec<u32>, usize)>,
    pub query: Vec<u32>,
    /// Task induction: the prompt opens by naming the classes. Without it (the open-ended
    /// protocol) the LLM sees only the examples; the answer is still the best of the
    /// class names.
    pub induction: bool,
}

/// How the class names' log-probabilities decide the answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scoring {
    /// Each class's log-probability after the prompt.
    Raw,
    /// Each class's log-probability after the prompt minus that after the prompt without
    /// the query's words.
    #[default]
    Calibrated,
}

/// How many orderings of the support examples [`classify`] reads by default.
pub const DEFAULT_ORDERINGS: usize = 3;

/// How a classification's scores came from `orderings` readings, in words for a label:
/// "read in one ordering of the examples" or "averaged over n orderings of the examples".
pub fn orderings_phrase(orderings: usize) -> String {
    match orderings {
        1 => "read in one ordering of the examples".to_string(),
        n => format!("averaged over {n} orderings of the examples"),
    }
}

/// The LLM's reading of a task.
pub struct Answer {
    /// The prompt's token ids, the examples in the task's own order (for display: decode
    /// them with the tokenizer).
    pub prompt: Vec<u32>,
    /// Log-probability of each class name after the prompt, in `classes` order (the mean
    /// over the orderings read).
    pub log_probs: Vec<f32>,
    /// With [`Scoring::Calibrated`]: each class name's log-probability after the prompt
    /// without the query's words (the mean over the orderings read).
    pub without_query: Option<Vec<f32>>,
    /// What decides: `log_probs`, less `without_query` where calibrated.
    pub scores: Vec<f32>,
    /// Index of the best-scoring class.
    pub class: usize,
    /// Orderings of the support examples read (the scores are their means).
    pub orderings: usize,
}

/// The prompt in two parts: everything up to the query's `Input:`, and the query's words
/// with the `Output:` after them; the support examples in the order of `support` (the
/// task's own, or a rotation of it).
fn prompt_parts(
    tokenizer: &Tokenizer,
    vocabulary: &Vocabulary,
    task: &Task,
    support: &[(Vec<u32>, usize)],
) -> (Vec<u32>, Vec<u32>) {
    let image = |words: &[u32]| words.iter().map(|&w| vocabulary.token_id(w)).collect::<Vec<_>>();
    let mut tokens = if task.induction {
        tokenizer.encode(&format!(
            "For each of the following input output pairs, output is one of [{}]\n###\n",
            task.classes.join(", ")
        ))
    } else {
        tokenizer.encode("###\n")
    };
    for (words, label) in support {
        tokens.extend(tokenizer.encode("Input:"));
        tokens.extend(image(words));
        tokens.extend(tokenizer.encode(&format!("\nOutput: {}\n", task.classes[*label])));
    }
    tokens.extend(tokenizer.encode("###\nInput:"));
    let mut query = image(&task.query);
    query.extend(tokenizer.encode("\nOutput:"));
    (tokens, query)
}

/// The prompt of docs/method.md section 6 as token ids.
pub fn prompt(tokenizer: &Tokenizer, vocabulary: &Vocabulary, task: &Task) -> Vec<u32> {
    let (mut head, query) = prompt_parts(tokenizer, vocabulary, task, &task.support);
    head.extend(query);
    head
}

/// Classifies the task's query image, reading it in `orderings` orders of the support
/// examples (ours, after Lu et al. 2022, "Fantastically Ordered Prompts"): a small LLM
/// weighs the examples nearest the query most, so with m examples and n readings, reading
/// k (0-based) starts the list at example floor(k x m / n) and goes round (reading 0 is
/// the task's own order); each class's log-probabilities, and where calibrated those
/// without the query, are averaged over the readings. n is at most m (more would repeat a
/// rotation); [`Answer::orderings`] says how many were read.
pub fn classify(
    llm: &SmolLm,
    tokenizer: &Tokenizer,
    vocabulary: &Vocabulary,
    task: &Task,
    scoring: Scoring,
    orderings: usize,
) -> Result<Answer> {
    ensure!(task.classes.len() >= 2, "a class set needs at least two classes, not {}", task.classes.len());
    ensure!(!task.support.is_empty(), "no support images: each class needs at least one labelled example");
    for (words, label) in &task.support {
        ensure!(
            *label < task.classes.len(),
            "a support image is labelled {label}, but there are {} classes",
            task.classes.len()
        );
        ensure!(!words.is_empty(), "a support image has no words");
    }
    ensure!(!task.query.is_empty(), "the query image has no words");
    ensure!(orderings >= 1, "a task is read in at least one ordering of its support examples");
    // Rotations repeat after one per support example.
    let orderings = orderings.min(task.support.len());
    let prompt = prompt(tokenizer, vocabulary, task);
    let names: Vec<Vec<u32>> = task.classes.iter().map(|name| tokenizer.encode(&format!(" {name}"))).collect();
    let longest = names.iter().map(Vec::len).max().unwrap_or(0);
    let context = llm.config().context;
    ensure!(
        prompt.len() + longest <= context,
        "the prompt is {} tokens and the LLM's context holds {context}: use fewer support images or fewer layers",
        prompt.len() + longest
    );
    let mean = |rows: &[Vec<f32>]| -> Vec<f32> {
        (0..names.len()).map(|c| rows.iter().map(|r| r[c]).sum::<f32>() / rows.len() as f32).collect()
    };
    let (mut log_probs, mut without_query) = (Vec::new(), Vec::new());
    for k in 0..orderings {
        let mut support = task.support.clone();
        support.rotate_left(k * task.support.len() / orderings);
        let (with, without) = read(llm, tokenizer, vocabulary, task, &support, &names, scoring)?;
        log_probs.push(with);
        if let Some(without) = without {
            without_query.push(without);
        }
    }
    let log_probs = mean(&log_probs);
    let without_query = (scoring == Scoring::Calibrated).then(|| mean(&without_query));
    let scores: Vec<f32> = match &without_query {
        None => log_probs.clone(),
        Some(lean) => log_probs.iter().zip(lean).map(|(p, l)| p - l).collect(),
    };
    let class = scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
    Ok(Answer { prompt, log_probs, without_query, scores, class, orderings })
}

/// One reading of `task` with its examples in the order of `support`: each class name's
/// log-probability after the prompt and, where calibrated, after the prompt without the
/// query's words.
fn read(
    llm: &SmolLm,
    tokenizer: &Tokenizer,
    vocabulary: &Vocabulary,
    task: &Task,
    support: &[(Vec<u32>, usize)],
    names: &[Vec<u32>],
    scoring: Scoring,
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let (head, query) = prompt_parts(tokenizer, vocabulary, task, support);
    let mut cache = llm.new_cache();
    llm.logits_last(&head, 0, &mut cache)?;
    let after_head = cache.clone();
    let names_after = |tail: &[u32], cache: &mut KvCache| -> Result<Vec<f32>> {
        cache.restore(&after_head);
        let first = log_softmax(&llm.logits_last(tail, head.len(), cache)?);
        let after_prompt = cache.clone();
        names.iter().map(|name| score(llm, &first, name, &after_prompt, cache)).collect()
    };
    let log_probs = names_after(&query, &mut cache)?;
    let without_query = match scoring {
        Scoring::Raw => None,
        Scoring::Calibrated => Some(names_after(&tokenizer.encode("\nOutput:"), &mut cache)?),
    };
    Ok((log_probs, without_query))
}

/// Log-probability of `name`'s tokens after the prompt whose cache is `after_prompt` and
/// whose next-token log-probabilities are `first`.
fn score(llm: &SmolLm, first: &[f32], name: &[u32], after_prompt: &KvCache, cache: &mut KvCache) -> Result<f32> {
    let mut total = first[name[0] as usize];
    if name.len() > 1 {
        cache.restore(after_prompt);
        let vocab = llm.config().vocab;
        let logits = llm.logits_all(&name[..name.len() - 1], after_prompt.len(), cache)?;
        for (row, &next) in logits.chunks_exact(vocab).zip(&name[1..]) {
            total += log_softmax(row)[next as usize];
        }
    }
    Ok(total)
}

/// The words a prepared image shows in a prompt: its pyramid's first `layers` layers.
pub fn image_words(model: &crate::model::SpaeModel, image: &image::RgbImage, layers: usize) -> Result<Vec<u32>> {
    ensure!((1..=model.shape().layers()).contains(&layers), "layers must be 1..={}", model.shape().layers());
    Ok(model.encode(image)?.prefix_words(layers))
}

/// [`image_words`] of an image file, prepared for the model first.
pub fn file_words(model: &crate::model::SpaeModel, path: &std::path::Path, layers: usize) -> Result<Vec<u32>> {
    image_words(model, &crate::image_io::load_prepared(path, model.config().resolution as u32)?, layers)
}

/// A support image file and the index of its class.
pub type LabelledImage = (std::path::PathBuf, usize);

/// Labelled support images named by `path`: a folder with one subfolder per class (the
/// subfolder's name is the class name, every image file in it an example), or a text file
/// of `label<TAB>image path` lines (paths relative to the file's folder). Returns the class
/// names in first-seen order and (image path, class index) pairs.
pub fn read_support(path: &std::path::Path) -> Result<(Vec<String>, Vec<LabelledImage>)> {
    use anyhow::Context;
    let mut classes: Vec<String> = Vec::new();
    let mut images = Vec::new();
    let mut add = |label: &str, image: std::path::PathBuf| {
        let class = match classes.iter().position(|c| c == label) {
            Some(i) => i,
            None => {
                classes.push(label.to_string());
                classes.len() - 1
            }
        };
        images.push((image, class));
    };
    // The entries of a folder that `keep` accepts, in name order.
    let listed = |dir: &std::path::Path, keep: fn(&std::path::Path) -> bool| -> Result<Vec<std::path::PathBuf>> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| keep(p))
            .collect();
        paths.sort();
        Ok(paths)
    };
    if path.is_dir() {
        for folder in listed(path, std::path::Path::is_dir)? {
            let label = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            for file in listed(&folder, std::path::Path::is_file)? {
                add(&label, file);
            }
        }
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the support list {}", path.display()))?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let (label, image) = line
                .split_once('\t')
                .with_context(|| format!("{} line {}: expected `label<TAB>image path`", path.display(), number + 1))?;
            add(label.trim(), base.join(image.trim()));
        }
    }
    ensure!(!images.is_empty(), "{} names no support images", path.display());
    ensure!(
        classes.len() >= 2,
        "{} names one class ({}); few-shot classification needs at least two",
        path.display(),
        classes.first().map_or("", String::as_str)
    );
    Ok((classes, images))
}
