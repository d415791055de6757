//! The frozen LLM describes images in context (docs/method.md section 6): captions and
//! answers to questions, written after examples of images (as their words) with their
//! captions or answers. Nothing is trained: the examples are the only instruction.
//!
//! The examples are the candidates whose words are nearest the query's: the cosine
//! similarity between the mean codebook embeddings of the two images' words.

use anyhow::{ensure, Result};
use image::RgbImage;

use crate::codebook::vocabulary::Vocabulary;
use crate::codebook::Codebook;
use crate::llm::model::SmolLm;
use crate::llm::tokenizer::Tokenizer;
use crate::tasks::context_pool::Pool;

/// Tokens a caption or answer may run to before it is cut.
pub const MAX_ANSWER_TOKENS: usize = 24;

/// Pyramid layers per image for a caption: the semantic layers, which say what the image
/// is (with layer 4 the examples are chosen by appearance too, and captions copy them).
pub const CAPTION_LAYERS: usize = 3;

/// Pyramid layers per image for a question: layer 4's appearance words as well, which
/// carry the colours the semantic layers leave out (README: captions and questions).
pub const QUESTION_LAYERS: usize = 4;

/// The default layers per image for a caption (`question` false) or a question.
pub fn default_layers(question: bool) -> usize {
    if question {
        QUESTION_LAYERS
    } else {
        CAPTION_LAYERS
    }
}

/// An image (its words) and what the prompt pairs it with.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub words: Vec<u32>,
    pub text: String,
}

/// What the LLM is asked.
#[derive(Clone, Debug, PartialEq)]
pub enum Ask {
    Caption,
    /// A question; the examples carry the same question with their answers.
    Question(String),
}

/// Indices of the `count` candidates whose words are nearest `query`'s, nearest first
/// (ties by index).
pub fn nearest(codebook: &Codebook, query: &[u32], candidates: &[Vec<u32>], count: usize) -> Vec<usize> {
    let centre = mean_embedding(codebook, query);
    let mut scored: Vec<(f32, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, words)| (cosine(&centre, &mean_embedding(codebook, words)), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(count).map(|(_, i)| i).collect()
}

fn mean_embedding(codebook: &Codebook, words: &[u32]) -> Vec<f32> {
    let mut mean = vec![0f32; codebook.dim()];
    for &word in words {
        mean.iter_mut().zip(codebook.row(word)).for_each(|(m, e)| *m += e / words.len() as f32);
    }
    mean
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(f32::MIN_POSITIVE)
}

/// The prompt as token ids: a line saying what follows, then each example as
/// `Input: <words>` (`Question: <q>`) `Output: <text>` between `###` lines, then the
/// query with `Output:` left open. Image words enter as their token ids.
pub fn prompt(
    tokenizer: &Tokenizer,
    vocabulary: &Vocabulary,
    ask: &Ask,
    examples: &[Example],
    query: &[u32],
) -> Vec<u32> {
    let image = |words: &[u32]| words.iter().map(|&w| vocabulary.token_id(w)).collect::<Vec<_>>();
    let (header, question) = match ask {
        Ask::Caption => ("Each input is an image written as words; the output is its caption.\n###\n", String::new()),
        Ask::Question(q) => (
            "Each input is an image written as words; the output answers the question.\n###\n",
            format!("\nQuestion: {q}"),
        ),
    };
    let mut tokens = tokenizer.encode(header);
    for example in examples {
        tokens.extend(tokenizer.encode("Input:"));
        tokens.extend(image(&example.words));
        tokens.extend(tokenizer.encode(&format!("{question}\nOutput: {}\n", example.text)));
    }
    tokens.extend(tokenizer.encode("###\nInput:"));
    tokens.extend(image(query));
    tokens.extend(tokenizer.encode(&format!("{question}\nOutput:")));
    tokens
}

/// The LLM's line after the prompt: greedy, stopping at the end of the line.
pub fn complete(llm: &SmolLm, tokenizer: &Tokenizer, prompt: &[u32]) -> Result<String> {
    let context = llm.config().context;
    ensure!(
        prompt.len() + MAX_ANSWER_TOKENS <= context,
        "the prompt is {} tokens and the LLM's context holds {context}: use fewer examples or fewer layers",
        prompt.len()
    );
    let stop: Vec<u32> = (0..tokenizer.vocab_size() as u32)
        .filter(|&id| id == tokenizer.eos() || tokenizer.token(id).is_some_and(|t| t.contains('\u{010A}')))
        .collect();
    // At least one token before the line may end: an empty answer says nothing.
    let generated = llm.greedy(prompt, MAX_ANSWER_TOKENS, 1, &stop)?;
    let text = tokenizer.decode_skipping_control(&generated);
    Ok(collapse_repeats(text.lines().next().unwrap_or_default().trim()))
}

/// The text with each run of three or more of one word written once ("ball ball ball" ->
/// "ball"): greedy decoding on words that say little can loop on a word to the token
/// limit. Two in a row ("walla walla") stay.
pub fn collapse_repeats(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut kept: Vec<&str> = Vec::new();
    let mut start = 0;
    while start < words.len() {
        let run = words[start..].iter().take_while(|&&w| w == words[start]).count();
        kept.extend(std::iter::repeat_n(words[start], if run >= 3 { 1 } else { run }));
        start += run;
    }
    kept.join(" ")
}

/// A caption or an answer, with how it was made.
pub struct Described {
    /// The examples' indices among the candidates, nearest first (the prompt holds them
    /// in the reverse order, the nearest next to the query).
    pub chosen: Vec<usize>,
    pub examples: Vec<Example>,
    /// The question the examples answer from the data (their name, for a caption).
    pub kind: DataQuestion,
    pub prompt: Vec<u32>,
    pub answer: String,
}

/// The images examples are chosen from: the first `words.len()` images of the pool, with
/// their words (the same layers as the query's).
pub struct Candidates<'a> {
    pub pool: &'a Pool,
    pub words: &'a [Vec<u32>],
}

/// The LLM captions the image whose words are `query` (no question) or answers
/// `question` about it, after the `count` candidates whose words are nearest, each with
/// its caption or the data's answer.
pub fn describe(
    llm: &SmolLm,
    tokenizer: &Tokenizer,
    codebook: &Codebook,
    candidates: &Candidates,
    query: &[u32],
    count: usize,
    question: Option<&str>,
) -> Result<Described> {
    let Candidates { pool, words: pool_words } = *candidates;
    ensure!(count >= 1, "at least one example is needed");
    ensure!(pool_words.len() <= pool.len(), "{} word lists for {} pool images", pool_words.len(), pool.len());
    if let Some(question) = question {
        ensure!(!question.trim().is_empty(), "the question is empty");
    }
    let chosen = nearest(codebook, query, pool_words, count);
    let (ask, kind) = match question {
        None => (Ask::Caption, DataQuestion::Name),
        Some(q) => (Ask::Question(q.trim().to_string()), DataQuestion::closest(q)),
    };
    let examples: Vec<Example> = chosen
        .iter()
        .map(|&i| Example {
            words: pool_words[i].clone(),
            text: data_answer(kind, pool.text(i), pool.category(i), pool.image(i)),
        })
        .collect();
    // Nearest last, next to the query: the example the LLM leans on most is the most alike.
    let ordered: Vec<Example> = examples.iter().rev().cloned().collect();
    let prompt = prompt(tokenizer, codebook.vocabulary(), &ask, &ordered, query);
    let answer = complete(llm, tokenizer, &prompt)?;
    Ok(Described { chosen, examples, kind, prompt, answer })
}

/// Questions whose answers the data itself gives, so examples can be made for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataQuestion {
    /// Its name (emoji name, stamp caption, clip-art title).
    Name,
    /// Its category in the source collection.
    Category,
    /// The colour most of its non-background pixels are nearest.
    MainColour,
    /// "photo" for the wallpaper photographs, "drawing" for everything else.
    PhotoOrDrawing,
}

impl DataQuestion {
    pub const ALL: [Self; 4] = [Self::Name, Self::Category, Self::MainColour, Self::PhotoOrDrawing];

    pub fn question(self) -> &'static str {
        match self {
            Self::Name => "what is it?",
            Self::Category => "which category is it?",
            Self::MainColour => "which colour is it mostly?",
            Self::PhotoOrDrawing => "is it a photo or a drawing?",
        }
    }

    /// Words that point a user's question at this data question.
    fn keywords(self) -> &'static [&'static str] {
        match self {
            Self::Name => &["name", "called", "object", "thing", "what"],
            Self::Category => &["category", "kind", "type", "class", "group", "sort"],
            Self::MainColour => &["colour", "color", "colours", "colors", "coloured", "colored"],
            Self::PhotoOrDrawing => &["photo", "photograph", "drawing", "drawn", "painting", "clipart", "real"],
        }
    }

    /// The data question a user's question is closest to: the one with the most of its
    /// keywords in it (none: what is it).
    pub fn closest(question: &str) -> Self {
        let asked: Vec<String> =
            question.split(|c: char| !c.is_alphanumeric()).map(str::to_lowercase).filter(|w| !w.is_empty()).collect();
        let hits = |q: Self| q.keywords().iter().filter(|k| asked.iter().any(|w| w == *k)).count();
        // Ties go to the more specific question (later in ALL).
        Self::ALL.into_iter().max_by_key(|&q| hits(q)).filter(|&q| hits(q) > 0).unwrap_or(Self::Name)
    }
}

/// The data's own answer to `question` about an image with this name and category.
pub fn data_answer(question: DataQuestion, name: &str, category: &str, image: &RgbImage) -> String {
    match question {
        DataQuestion::Name => name.to_string(),
        DataQuestion::Category => crate::data::class_name(category),
        DataQuestion::MainColour => main_colour(image).to_string(),
        DataQuestion::PhotoOrDrawing => (if category == "photo" { "photo" } else { "drawing" }).to_string(),
    }
}

/// Named colours for [`main_colour`].
const COLOURS: [(&str, [u8; 3]); 11] = [
    ("black", [20, 20, 20]),
    ("white", [245, 245, 245]),
    ("grey", [128, 128, 128]),
    ("red", [220, 30, 30]),
    ("orange", [245, 140, 20]),
    ("yellow", [245, 220, 40]),
    ("green", [50, 170, 60]),
    ("blue", [40, 90, 220]),
    ("purple", [140, 60, 180]),
    ("pink", [245, 140, 190]),
    ("brown", [130, 80, 40]),
];

/// The named colour most pixels are nearest, leaving out the light grey that transparent
/// areas are composited on ([`crate::image_io::BACKGROUND`]).
pub fn main_colour(image: &RgbImage) -> &'static str {
    let mut votes = [0usize; COLOURS.len()];
    for pixel in image.pixels().filter(|p| p.0 != crate::image_io::BACKGROUND.0) {
        let distance = |c: &[u8; 3]| -> i32 { (0..3).map(|k| (pixel.0[k] as i32 - c[k] as i32).pow(2)).sum() };
        let (nearest, _) = COLOURS.iter().enumerate().min_by_key(|(_, (_, c))| distance(c)).expect("colours");
        votes[nearest] += 1;
    }
    let best = votes.iter().enumerate().max_by_key(|&(i, &v)| (v, std::cmp::Reverse(i))).map_or(0, |(i, _)| i);
    COLOURS[best].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_colour_ignores_the_background() {
        let mut image = RgbImage::from_pixel(8, 8, crate::image_io::BACKGROUND);
        for x in 0..3 {
            image.put_pixel(x, 0, image::Rgb([200, 40, 35]));
        }
        image.put_pixel(5, 5, image::Rgb([30, 80, 230]));
        assert_eq!(main_colour(&image), "red");
    }

    #[test]
    fn repeated_words_are_written_once() {
        assert_eq!(collapse_repeats("ball ball  ball ball"), "ball");
        assert_eq!(collapse_repeats("red ball ball ball and ball"), "red ball and ball");
        assert_eq!(collapse_repeats("walla walla"), "walla walla");
        assert_eq!(collapse_repeats(""), "");
    }

    #[test]
    fn user_questions_map_to_the_closest_data_question() {
        assert_eq!(DataQuestion::closest("What colour is this?"), DataQuestion::MainColour);
        assert_eq!(DataQuestion::closest("photo or drawing?"), DataQuestion::PhotoOrDrawing);
        assert_eq!(DataQuestion::closest("Which category does it belong to"), DataQuestion::Category);
        assert_eq!(DataQuestion::closest("what is it"), DataQuestion::Name);
        assert_eq!(DataQuestion::closest("tell me"), DataQuestion::Name);
    }
}
