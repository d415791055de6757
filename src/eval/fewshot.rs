//! The few-shot evaluation: N-way K-shot tasks drawn with a fixed seed from the held-out
//! split's classes (the concepts of [`super::concepts`], or the sources' own categories),
//! each classified by the frozen LLM ([`crate::tasks::fewshot`]) with or without task
//! induction; accuracy per cell with a 95% Wilson interval, next to chance.
//!
//! The tasks depend only on the data and the seed, so a model and its control are asked
//! exactly the same questions.

use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::concepts::Concepts;
use crate::codebook::vocabulary::Vocabulary;
use crate::data::{class_name, Dataset};
use crate::image_io;
use crate::llm::model::SmolLm;
use crate::llm::tokenizer::Tokenizer;
use crate::model::SpaeModel;
use crate::tasks::fewshot::{self, Scoring, Task};
use crate::teacher::relevance::Relevance;

#[derive(Clone)]
pub struct Options {
    pub ways: Vec<usize>,
    pub shots: Vec<usize>,
    pub tasks: usize,
    /// Pyramid layers per image in the prompt.
    pub layers: usize,
    pub seed: u64,
    /// Whether the prompt opens by naming the classes (see [`Task::induction`]).
    pub induction: bool,
    pub scoring: Scoring,
    /// Orderings of the support examples each task is read in (see [`fewshot::classify`]).
    pub orderings: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ways: vec![2, 5],
            shots: vec![1, 3, 5],
            tasks: 200,
            layers: 2,
            seed: 0,
            induction: true,
            scoring: Scoring::default(),
            orderings: fewshot::DEFAULT_ORDERINGS,
        }
    }
}

/// One cell of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub ways: usize,
    pub shots: usize,
    pub tasks: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// 95% Wilson interval of the accuracy.
    pub interval: (f64, f64),
    pub chance: f64,
}

/// Images grouped by class, each as the words of its first layers.
pub struct Classes {
    pub names: Vec<String>,
    /// `images[c]`: the word lists of class c's images.
    pub images: Vec<Vec<Vec<u32>>>,
}

/// Encodes every image of `data` with `model`: the words of its first `layers` layers.
pub fn image_words(model: &SpaeModel, data: &Dataset, layers: usize) -> Result<Vec<Vec<u32>>> {
    ensure!((1..=model.shape().layers()).contains(&layers), "layers must be 1..={}", model.shape().layers());
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut words = Vec::with_capacity(data.len());
    for chunk in indices.chunks(32) {
        let images: Vec<_> = chunk.iter().map(|&i| data.image(i)).collect();
        let (_, quantized) = model.quantize(&image_io::to_tensor(&images)?)?;
        words.extend(quantized.pyramids.iter().map(|pyramid| pyramid.prefix_words(layers)));
    }
    Ok(words)
}

/// Each image's `count` words most relevant by the teacher (those in `vocabulary`, best
/// first): the words the semantic loss teaches the upper layers to choose. Asked in place
/// of a model's words, they show what the frozen LLM makes of them: a ceiling for the
/// tokenizer's semantic words, not a tokenizer.
pub fn teacher_words(relevances: &[Relevance], vocabulary: &Vocabulary, count: usize) -> Vec<Vec<u32>> {
    relevances
        .iter()
        .map(|r| r.words.iter().filter_map(|w| vocabulary.index_of_word(w)).take(count).collect())
        .collect()
}

/// Groups images (their words) by label, keeping labels with at least `min_images` images;
/// unlabelled images are left out. Classes come in name order.
pub fn group(words: &[Vec<u32>], labels: &[Option<String>], min_images: usize) -> Classes {
    let mut grouped: BTreeMap<&str, Vec<Vec<u32>>> = BTreeMap::new();
    for (image, label) in words.iter().zip(labels) {
        if let Some(label) = label.as_deref().filter(|l| !l.is_empty()) {
            grouped.entry(label).or_default().push(image.clone());
        }
    }
    grouped.retain(|_, images| images.len() >= min_images);
    let (names, images) = grouped.into_iter().map(|(name, images)| (name.to_string(), images)).unzip();
    Classes { names, images }
}

/// The label of each image of `data` by the few-shot benchmark's rule: its concept.
/// Refuses data prepared before samples carried the emoji subcategories (the emoji
/// would silently fall out of every class).
pub fn concept_labels(data: &Dataset, concepts: &Concepts) -> Result<Vec<Option<String>>> {
    let samples = (0..data.len()).map(|i| data.sample(i));
    let emoji_without = samples.clone().filter(|s| s.package.starts_with("emoji") && s.subcategory.is_none()).count();
    ensure!(
        emoji_without == 0,
        "{emoji_without} emoji have no subcategory: the data was prepared by an older version; run `spae prepare-data`"
    );
    Ok(samples.map(|s| concepts.concept(s).map(str::to_string)).collect())
}

/// The label of each image of `data` by its source's own category (the earlier
/// benchmark, kept for comparison).
pub fn category_labels(data: &Dataset) -> Vec<Option<String>> {
    (0..data.len()).map(|i| Some(class_name(&data.sample(i).category))).collect()
}

/// Task `index` of the (ways, shots) cell, the same for every model given the seed, and
/// the index of its query's class; `induction` as in [`Task::induction`].
pub fn task(classes: &Classes, ways: usize, shots: usize, seed: u64, index: usize, induction: bool) -> (Task, usize) {
    let cell_seed = seed ^ ((ways as u64) << 48) ^ ((shots as u64) << 40) ^ index as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cell_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let eligible: Vec<usize> = (0..classes.names.len()).filter(|&c| classes.images[c].len() > shots).collect();
    let chosen: Vec<usize> = eligible.choose_multiple(&mut rng, ways).copied().collect();
    let answer = rng.random_range(0..ways);
    let mut support = Vec::with_capacity(ways * shots);
    let mut query = Vec::new();
    for (label, &class) in chosen.iter().enumerate() {
        let picks: Vec<&Vec<u32>> = classes.images[class].choose_multiple(&mut rng, shots + 1).collect();
        support.extend(picks[..shots].iter().map(|words| ((*words).clone(), label)));
        if label == answer {
            query = picks[shots].clone();
        }
    }
    support.shuffle(&mut rng);
    let names = chosen.iter().map(|&c| classes.names[c].clone()).collect();
    (Task { classes: names, support, query, induction }, answer)
}

/// Runs every cell; `progress` hears (cells done, tasks done in this cell).
pub fn evaluate(
    llm: &SmolLm,
    tokenizer: &Tokenizer,
    model: &SpaeModel,
    classes: &Classes,
    options: &Options,
    mut progress: impl FnMut(&str),
) -> Result<Vec<Cell>> {
    let most_ways = options.ways.iter().copied().max().unwrap_or(0);
    let most_shots = options.shots.iter().copied().max().unwrap_or(0);
    let usable = classes.images.iter().filter(|images| images.len() > most_shots).count();
    ensure!(
        usable >= most_ways,
        "{usable} classes have more than {most_shots} images; {most_ways}-way tasks need {most_ways}"
    );
    let vocabulary = model.codebook().vocabulary();
    let mut cells = Vec::new();
    for &ways in &options.ways {
        for &shots in &options.shots {
            let mut correct = 0;
            for index in 0..options.tasks {
                let (task, expected) = task(classes, ways, shots, options.seed, index, options.induction);
                let answer = fewshot::classify(llm, tokenizer, vocabulary, &task, options.scoring, options.orderings)?;
                correct += usize::from(answer.class == expected);
                progress(&format!("{ways}-way {shots}-shot: task {}/{}, {correct} correct", index + 1, options.tasks));
            }
            let accuracy = correct as f64 / options.tasks as f64;
            cells.push(Cell {
                ways,
                shots,
                tasks: options.tasks,
                correct,
                accuracy,
                interval: wilson(correct, options.tasks),
                chance: 1.0 / ways as f64,
            });
        }
    }
    Ok(cells)
}

/// The 95% Wilson score interval of `successes` out of `trials`.
pub fn wilson(successes: usize, trials: usize) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 1.0);
    }
    let (n, p, z) = (trials as f64, successes as f64 / trials as f64, 1.959964);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    // Clamped: rounding can put an end a hair outside [0, 1] (printed as -0.000).
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_group_by_label_with_small_and_unlabelled_left_out() {
        let words = vec![vec![1], vec![2], vec![3], vec![4], vec![5]];
        let labels = [Some("b"), None, Some("a"), Some("b"), Some("")].map(|l| l.map(str::to_string));
        let classes = group(&words, &labels, 2);
        assert_eq!(classes.names, vec!["b"]);
        assert_eq!(classes.images, vec![vec![vec![1], vec![4]]]);
        let classes = group(&words, &labels, 1);
        assert_eq!(classes.names, vec!["a", "b"]);
    }

    #[test]
    fn teacher_words_are_the_best_ones_in_the_vocabulary() {
        let tokens: Vec<String> = ["Ġdog", "Ġcat", "Ġfox"].iter().map(|t| t.to_string()).collect();
        let vocabulary = Vocabulary::from_tokens(&tokens, 3).unwrap();
        let relevance = |words: &[&str]| Relevance {
            words: words.iter().map(|w| w.to_string()).collect(),
            scores: vec![1.0; words.len()],
            classes: vec![],
            text_words: vec![],
        };
        let relevances = [relevance(&["fox", "owl", "dog", "cat"]), relevance(&["owl"])];
        assert_eq!(teacher_words(&relevances, &vocabulary, 2), vec![vec![2, 0], vec![]]);
    }

    #[test]
    fn data_without_emoji_subcategories_is_refused() {
        let emoji = |subcategory: Option<&str>| crate::data::Sample {
            package: "emoji-datasource-google".into(),
            file: "img/google/64/1f436.png".into(),
            caption: None,
            name: "dog face".into(),
            category: "Animals & Nature".into(),
            subcategory: subcategory.map(str::to_string),
        };
        let concepts = Concepts::shipped();
        let fresh = Dataset::new(1, vec![emoji(Some("animal-mammal"))], vec![0; 3]).unwrap();
        assert_eq!(concept_labels(&fresh, &concepts).unwrap(), vec![Some("mammal".to_string())]);
        let old = Dataset::new(1, vec![emoji(Some("animal-mammal")), emoji(None)], vec![0; 6]).unwrap();
        let error = concept_labels(&old, &concepts).unwrap_err().to_string();
        assert!(error.contains("prepare-data"), "{error}");
    }
}
