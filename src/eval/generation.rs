//! How often generated images are what they were asked to be: each prompt is a category
//! of the example pool; the semantic teacher assigns every image to the candidate category
//! whose name's words it finds most relevant to the image (its ImageNet classes only, no
//! text); a hit is an image assigned to its prompted category. The baseline is images
//! decoded from random words (the same number of layers, completed the same way).

use std::ops::ControlFlow;

use anyhow::{ensure, Result};
use image::RgbImage;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::data::class_name;
use crate::image_io;
use crate::model::SpaeModel;
use crate::tasks::context_pool::{Pool, Task};
use crate::tasks::denoising::{Condition, Denoiser, Frame, Options};
use crate::teacher::relevance::{text_words, SemanticTeacher};

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub prompts: Vec<String>,
    pub images: usize,
    /// Share of generated images the teacher assigns to their prompt's category.
    pub generated_hit_rate: f64,
    /// The same for images decoded from random words.
    pub random_hit_rate: f64,
    /// 1 / number of candidate categories.
    pub chance: f64,
}

/// The candidate categories: the first vocabulary word of each pool category's name
/// ("Animals & Nature" and "animals" are both "animals"), where at least `min_images`
/// images share it.
pub fn categories(pool: &Pool, model: &SpaeModel, min_images: usize) -> Vec<String> {
    let vocabulary = model.codebook().vocabulary();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..pool.len() {
        let name = class_name(pool.category(i));
        if let Some(first) = name.split(' ').find(|w| vocabulary.index_of_word(w).is_some()) {
            *counts.entry(first.to_string()).or_default() += 1;
        }
    }
    counts.into_iter().filter(|(_, count)| *count >= min_images).map(|(name, _)| name).collect()
}

/// The candidate the teacher finds most relevant to each image.
pub fn assign(
    teacher: &SemanticTeacher,
    model: &SpaeModel,
    images: &[RgbImage],
    candidates: &[String],
) -> Result<Vec<usize>> {
    let vocabulary = model.codebook().vocabulary();
    let words: Vec<Vec<u32>> = candidates.iter().map(|c| text_words(c, vocabulary)).collect();
    let texts = vec![String::new(); images.len()];
    let scores = teacher.scores(&image_io::to_tensor(images)?, &texts, vocabulary)?;
    Ok(scores
        .iter()
        .map(|relevance| {
            let score = |c: usize| words[c].iter().map(|&w| relevance[w as usize]).fold(f32::NEG_INFINITY, f32::max);
            (0..candidates.len()).max_by(|&a, &b| score(a).total_cmp(&score(b))).unwrap_or(0)
        })
        .collect())
}

/// What to generate: the prompts, and for each `seeds` generations with `examples`
/// in-context examples from the pool.
pub struct Plan<'a> {
    pub candidates: &'a [String],
    pub examples: usize,
    pub seeds: u64,
    pub options: &'a Options,
}

/// Generates `seeds` images per candidate category and as many from random words.
pub fn evaluate(
    model: &SpaeModel,
    denoiser: &Denoiser,
    teacher: &SemanticTeacher,
    pool: &Pool,
    plan: &Plan,
    mut progress: impl FnMut(&str),
) -> Result<Report> {
    let Plan { candidates, examples, seeds, options } = *plan;
    ensure!(candidates.len() >= 2, "{} candidate categories; the evaluation needs at least two", candidates.len());
    let n = model.shape().tokens_in_prefix(options.layers);
    let words_total = model.codebook().len() as u32;
    let (mut generated, mut random, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for (label, prompt) in candidates.iter().enumerate() {
        for seed in 0..seeds {
            let options = Options { seed: options.seed + seed, ..options.clone() };
            let chosen = pool.choose(Some(prompt), examples, options.seed);
            let context = pool.examples(model, &chosen, Task::TextToImage, options.layers)?;
            let generation = denoiser
                .generate(&context, &Condition::Text(prompt.clone()), &options, |_| ControlFlow::Continue(()))?;
            let last = generation.frames.last().expect("a generation has its starting frame");
            generated.push(model.decode(&last.pyramid(model)?, model.shape().layers())?);
            let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed ^ 0xA5A5_5A5A);
            let noise = Frame {
                step: 0,
                corruption: 1.0,
                words: (0..n).map(|_| rng.random_range(0..words_total)).collect(),
                changed: Vec::new(),
            };
            random.push(model.decode(&noise.pyramid(model)?, model.shape().layers())?);
            labels.push(label);
            progress(&format!("{prompt} (seed {})", options.seed));
        }
    }
    let hit_rate = |images: &[RgbImage]| -> Result<f64> {
        let assigned = assign(teacher, model, images, candidates)?;
        Ok(assigned.iter().zip(&labels).filter(|(a, l)| a == l).count() as f64 / labels.len() as f64)
    };
    Ok(Report {
        prompts: candidates.to_vec(),
        images: labels.len(),
        generated_hit_rate: hit_rate(&generated)?,
        random_hit_rate: hit_rate(&random)?,
        chance: 1.0 / candidates.len() as f64,
    })
}
