//! How well the frozen LLM captions held-out images and answers the data's questions about
//! them, in context (docs/method.md section 6), against what it gets without the image.
//!
//! For each query image the LLM captions it after the examples whose words are nearest
//! ([`crate::tasks::captioning::describe`]), and answers each [`DataQuestion`]. The same
//! is done for a control whose query words are replaced by random vocabulary words (the
//! examples are then the nearest to those, so the control scores what the examples alone
//! give), and a nearest-neighbour baseline copies the caption of the nearest example.
//!
//! A caption is scored by its content words (lower-case letter runs, stopwords removed)
//! against the true caption's: unigram precision and recall of the two sets, and whether
//! it holds the name word (the true caption's last content word, the head of an English
//! noun phrase: "black joker" -> "joker"). An answer is right when it equals the data's
//! answer, ignoring case, surrounding space and a final full stop.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{ensure, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::eval::fewshot::wilson;
use crate::llm::model::SmolLm;
use crate::llm::tokenizer::Tokenizer;
use crate::model::SpaeModel;
use crate::tasks::captioning::{self, data_answer, Candidates, DataQuestion};
use crate::tasks::context_pool::Pool;

/// Words too common to say what an image shows.
const STOPWORDS: [&str; 48] = [
    "a", "an", "the", "and", "or", "of", "in", "on", "at", "to", "for", "with", "by", "from", "as", "is", "are", "was",
    "be", "it", "its", "this", "that", "these", "those", "his", "her", "their", "my", "your", "our", "some", "one",
    "two", "up", "down", "out", "over", "into", "has", "have", "who", "which", "what", "while", "there", "s", "not",
];

/// The content words of a text, in order: lower-case runs of letters, stopwords left out.
pub fn content_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphabetic())
        .map(str::to_lowercase)
        .filter(|w| !w.is_empty() && !STOPWORDS.contains(&w.as_str()))
        .collect()
}

/// The word a caption must hold to name the object: the true caption's last content word.
pub fn name_word(truth: &str) -> Option<String> {
    content_words(truth).pop()
}

/// One caption against the true one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CaptionScore {
    /// Share of the caption's distinct content words that are in the truth (0 for a
    /// caption without content words).
    pub precision: f64,
    /// Share of the truth's distinct content words that the caption holds.
    pub recall: f64,
    /// Whether the caption holds the name word.
    pub names: bool,
}

/// Scores `caption` against `truth`; `None` where the truth has no content words.
pub fn score_caption(caption: &str, truth: &str) -> Option<CaptionScore> {
    let truth_words: BTreeSet<String> = content_words(truth).into_iter().collect();
    let name = name_word(truth)?;
    let words: BTreeSet<String> = content_words(caption).into_iter().collect();
    let shared = words.intersection(&truth_words).count() as f64;
    Some(CaptionScore {
        precision: if words.is_empty() { 0.0 } else { shared / words.len() as f64 },
        recall: shared / truth_words.len() as f64,
        names: words.contains(&name),
    })
}

/// Whether an answer is the data's: equal ignoring case, surrounding space and a final
/// full stop.
pub fn same_answer(answer: &str, truth: &str) -> bool {
    clean(answer) == clean(truth)
}

/// An answer as answers are compared: lower case, without surrounding space or a final
/// full stop.
fn clean(answer: &str) -> String {
    answer.trim().trim_end_matches('.').trim().to_lowercase()
}

/// The accuracy of guessing: an answer drawn from the candidate examples' answers (all
/// of them, as a prior), against the queries' true answers (the sum over answers of the
/// two shares' product).
pub fn chance(example_answers: &[String], true_answers: &[String]) -> f64 {
    let shares = |answers: &[String]| {
        let mut counts = BTreeMap::<String, f64>::new();
        for answer in answers {
            *counts.entry(clean(answer)).or_default() += 1.0 / answers.len() as f64;
        }
        counts
    };
    let (examples, truths) = (shares(example_answers), shares(true_answers));
    examples.iter().map(|(answer, p)| p * truths.get(answer).copied().unwrap_or(0.0)).sum()
}

/// Mean caption scores over the images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CaptionMetrics {
    pub recall: f64,
    pub precision: f64,
    pub name_rate: f64,
}

impl CaptionMetrics {
    fn mean(scores: &[CaptionScore]) -> Self {
        let n = scores.len().max(1) as f64;
        Self {
            recall: scores.iter().map(|s| s.recall).sum::<f64>() / n,
            precision: scores.iter().map(|s| s.precision).sum::<f64>() / n,
            name_rate: scores.iter().filter(|s| s.names).count() as f64 / n,
        }
    }
}

/// Accuracy per question, keyed as the JSON line names them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AskMetrics {
    pub what: f64,
    pub category: f64,
    pub colour: f64,
    pub kind: f64,
}

impl AskMetrics {
    fn from_fn(value: impl Fn(DataQuestion) -> f64) -> Self {
        Self {
            what: value(DataQuestion::Name),
            category: value(DataQuestion::Category),
            colour: value(DataQuestion::MainColour),
            kind: value(DataQuestion::PhotoOrDrawing),
        }
    }
}

/// One query image's captions and answers, for the report's examples.
#[derive(Clone, Debug, Serialize)]
pub struct Captioned {
    pub truth: String,
    pub caption: String,
    pub control: String,
    pub nearest: String,
    /// The data's answer and the LLM's, per question (in [`DataQuestion::ALL`] order).
    pub answers: Vec<(String, String)>,
}

/// The evaluation's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub caption: CaptionMetrics,
    pub caption_control: CaptionMetrics,
    pub caption_nearest: CaptionMetrics,
    pub ask: AskMetrics,
    pub ask_control: AskMetrics,
    /// 95% Wilson intervals of `ask` and `ask_control`, as (low, high) per question.
    pub ask_interval: BTreeMap<String, (f64, f64)>,
    pub ask_control_interval: BTreeMap<String, (f64, f64)>,
    pub ask_chance: AskMetrics,
    /// Query images with a caption to score.
    pub images: usize,
    /// Mean seconds per caption (the prompt read and the caption written).
    pub seconds_per_caption: f64,
    pub captioned: Vec<Captioned>,
}

/// What an evaluation runs with.
pub struct Options {
    /// Pyramid layers per image in the caption prompts.
    pub caption_layers: usize,
    /// Pyramid layers per image in the question prompts.
    pub ask_layers: usize,
    /// In-context examples per prompt.
    pub examples: usize,
    /// Seed of the control's random words.
    pub seed: u64,
    /// Whether to ask the data's questions as well as caption.
    pub questions: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            caption_layers: captioning::CAPTION_LAYERS,
            ask_layers: captioning::QUESTION_LAYERS,
            examples: 8,
            seed: 0,
            questions: true,
        }
    }
}

impl Options {
    /// The most layers any prompt reads (the candidates' words must reach it).
    pub fn most_layers(&self) -> usize {
        if self.questions {
            self.caption_layers.max(self.ask_layers)
        } else {
            self.caption_layers
        }
    }
}

/// The key a question has in the JSON line.
fn key(question: DataQuestion) -> &'static str {
    match question {
        DataQuestion::Name => "what",
        DataQuestion::Category => "category",
        DataQuestion::MainColour => "colour",
        DataQuestion::PhotoOrDrawing => "kind",
    }
}

/// Captions (and answers) for every image of `queries` whose name has content words,
/// with examples drawn from `candidates` (`candidate_words`: the words of their first
/// [`Options::most_layers`] layers, cut to each prompt's layers here). `progress` hears
/// each image done.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    llm: &SmolLm,
    tokenizer: &Tokenizer,
    model: &SpaeModel,
    candidates: &Pool,
    candidate_words: &[Vec<u32>],
    queries: &Pool,
    options: &Options,
    mut progress: impl FnMut(usize, usize),
) -> Result<Report> {
    ensure!(options.examples >= 1, "at least one example is needed");
    let shape = model.shape();
    let asked = if options.questions { &[options.ask_layers][..] } else { &[] };
    for &layers in [options.caption_layers].iter().chain(asked) {
        ensure!((1..=shape.layers()).contains(&layers), "layers must be 1..={}, not {layers}", shape.layers());
    }
    let caption_words = shape.tokens_in_prefix(options.caption_layers);
    let ask_words = if options.questions { shape.tokens_in_prefix(options.ask_layers) } else { 0 };
    let most = shape.tokens_in_prefix(options.most_layers());
    ensure!(
        candidate_words.iter().all(|words| words.len() >= most),
        "the candidates need the words of {} layers",
        options.most_layers()
    );
    let cut = |count: usize| candidate_words.iter().map(|words| words[..count].to_vec()).collect::<Vec<_>>();
    let caption_pool = cut(caption_words);
    let ask_pool = if options.questions { cut(ask_words) } else { Vec::new() };
    let codebook = model.codebook();
    let caption_candidates = Candidates { pool: candidates, words: &caption_pool };
    let ask_candidates = Candidates { pool: candidates, words: &ask_pool };
    let scored: Vec<usize> = (0..queries.len()).filter(|&i| name_word(queries.text(i)).is_some()).collect();
    ensure!(!scored.is_empty(), "no query image has a caption with content words");
    let mut rng = StdRng::seed_from_u64(options.seed);
    let questions: &[DataQuestion] = if options.questions { &DataQuestion::ALL } else { &[] };
    let (mut model_scores, mut control_scores, mut nearest_scores) = (Vec::new(), Vec::new(), Vec::new());
    // (question, control?) -> (right, asked)
    let mut right = BTreeMap::<(&str, bool), (usize, usize)>::new();
    let mut truths = BTreeMap::<&str, Vec<String>>::new();
    let mut captioned = Vec::new();
    let mut caption_seconds = 0.0;
    for (done, &i) in scored.iter().enumerate() {
        let truth = queries.text(i);
        let words = model.encode(queries.image(i))?.prefix_words(options.most_layers());
        // A prefix of random words is random words: one draw serves both prompts' controls.
        let random: Vec<u32> = (0..words.len()).map(|_| rng.random_range(0..codebook.len() as u32)).collect();
        let (query, control_query) = (&words[..caption_words], &random[..caption_words]);
        let started = std::time::Instant::now();
        let described =
            captioning::describe(llm, tokenizer, codebook, &caption_candidates, query, options.examples, None)?;
        caption_seconds += started.elapsed().as_secs_f64();
        let control =
            captioning::describe(llm, tokenizer, codebook, &caption_candidates, control_query, options.examples, None)?;
        let nearest = described.examples[0].text.clone();
        let score = |caption: &str| score_caption(caption, truth).expect("the truth has content words");
        model_scores.push(score(&described.answer));
        control_scores.push(score(&control.answer));
        nearest_scores.push(score(&nearest));
        let mut answers = Vec::new();
        for &question in questions {
            let expected = data_answer(question, truth, queries.category(i), queries.image(i));
            for (query, control) in [(&words[..ask_words], false), (&random[..ask_words], true)] {
                let asked = captioning::describe(
                    llm,
                    tokenizer,
                    codebook,
                    &ask_candidates,
                    query,
                    options.examples,
                    Some(question.question()),
                )?;
                let tally = right.entry((key(question), control)).or_default();
                tally.0 += usize::from(same_answer(&asked.answer, &expected));
                tally.1 += 1;
                if !control {
                    answers.push((expected.clone(), asked.answer));
                }
            }
            truths.entry(key(question)).or_default().push(expected);
        }
        captioned.push(Captioned {
            truth: truth.to_string(),
            caption: described.answer,
            control: control.answer,
            nearest,
            answers,
        });
        progress(done + 1, scored.len());
    }
    let accuracy = |q: DataQuestion, control: bool| {
        right.get(&(key(q), control)).map_or(0.0, |&(r, n)| r as f64 / n.max(1) as f64)
    };
    let interval = |q: DataQuestion, control: bool| {
        (key(q).to_string(), right.get(&(key(q), control)).map_or((0.0, 1.0), |&(r, n)| wilson(r, n)))
    };
    let example_answers = |question: DataQuestion| -> Vec<String> {
        (0..candidate_words.len())
            .map(|c| data_answer(question, candidates.text(c), candidates.category(c), candidates.image(c)))
            .collect()
    };
    let ask_chance = if options.questions {
        AskMetrics::from_fn(|q| chance(&example_answers(q), truths.get(key(q)).map_or(&[][..], Vec::as_slice)))
    } else {
        AskMetrics::default()
    };
    Ok(Report {
        caption: CaptionMetrics::mean(&model_scores),
        caption_control: CaptionMetrics::mean(&control_scores),
        caption_nearest: CaptionMetrics::mean(&nearest_scores),
        ask: AskMetrics::from_fn(|q| accuracy(q, false)),
        ask_control: AskMetrics::from_fn(|q| accuracy(q, true)),
        ask_interval: questions.iter().map(|&q| interval(q, false)).collect(),
        ask_control_interval: questions.iter().map(|&q| interval(q, true)).collect(),
        ask_chance,
        images: scored.len(),
        seconds_per_caption: caption_seconds / scored.len() as f64,
        captioned,
    })
}
