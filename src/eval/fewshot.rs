//! The few-shot evaluation: N-way K-shot tasks drawn with a fixed seed from the held-out
//! split's categories, each classified by the frozen LLM ([`crate::tasks::fewshot`]); accuracy
//! per cell with a 95% Wilson interval, next to chance.
//!
//! The tasks depend only on the data and the seed, so a model and its control are asked
//! exactly the same questions.

use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::data::{class_name, Dataset};
use crate::image_io;
use crate::llm::model::SmolLm;
use crate::llm::tokenizer::Tokenizer;
use crate::model::SpaeModel;
use crate::tasks::fewshot::{self, Task};

pub struct Options {
    pub ways: Vec<usize>,
    pub shots: Vec<usize>,
    pub tasks: usize,
    /// Pyramid layers per image in the prompt.
    pub layers: usize,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self { ways: vec![2, 5], shots: vec![1, 3, 5], tasks: 200, layers: 2, seed: 0 }
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

/// Encodes every image of `data` with `model` and groups the words of its first `layers`
/// layers by class, keeping classes with at least `min_images` images.
pub fn classes(model: &SpaeModel, data: &Dataset, layers: usize, min_images: usize) -> Result<Classes> {
    ensure!((1..=model.shape().layers()).contains(&layers), "layers must be 1..={}", model.shape().layers());
    let mut grouped: BTreeMap<String, Vec<Vec<u32>>> = BTreeMap::new();
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(32) {
        let images: Vec<_> = chunk.iter().map(|&i| data.image(i)).collect();
        let (_, quantized) = model.quantize(&image_io::to_tensor(&images)?)?;
        for (&i, pyramid) in chunk.iter().zip(&quantized.pyramids) {
            grouped.entry(class_name(&data.sample(i).category)).or_default().push(pyramid.prefix_words(layers));
        }
    }
    grouped.retain(|name, images| !name.is_empty() && images.len() >= min_images);
    let (names, images) = grouped.into_iter().unzip();
    Ok(Classes { names, images })
}

/// Task `index` of the (ways, shots) cell, the same for every model given the seed, and
/// the index of its query's class.
pub fn task(classes: &Classes, ways: usize, shots: usize, seed: u64, index: usize) -> (Task, usize) {
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
    (Task { classes: names, support, query }, answer)
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
                let (task, expected) = task(classes, ways, shots, options.seed, index);
                let answer = fewshot::classify(llm, tokenizer, vocabulary, &task)?;
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
