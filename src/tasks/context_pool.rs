//! The pool of labelled images that progressive in-context denoising draws its examples
//! from, and the image-to-image tasks' corruptions of a source image.
//!
//! A pool is a set of prepared images with their names and categories. The repository
//! ships a small one (`assets/pool/`, made by `spae make-pool` from the training split) so
//! generation works before any data is prepared; `spae generate --pool cache` uses the
//! whole training split instead.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::class_name;
use crate::data::Dataset;
use crate::image_io;
use crate::model::SpaeModel;
use crate::tasks::denoising::{Condition, Example};

/// What the generated image is asked to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// From a category or caption.
    TextToImage,
    /// The right half of a source image is hidden; the model completes it.
    Outpaint,
    /// A blurred source image is sharpened.
    Deblur,
}

impl Task {
    /// The source image as the task shows it to the model (text-to-image: unchanged).
    pub fn corrupt(self, image: &RgbImage) -> RgbImage {
        match self {
            Self::TextToImage => image.clone(),
            Self::Outpaint => {
                let mut masked = image.clone();
                let half = image.width() / 2;
                for (x, _, pixel) in masked.enumerate_pixels_mut() {
                    if x >= half {
                        *pixel = image_io::BACKGROUND;
                    }
                }
                masked
            }
            Self::Deblur => image::imageops::blur(image, image.width() as f32 / 24.0),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Label {
    name: String,
    category: String,
}

pub struct Pool {
    images: Vec<RgbImage>,
    labels: Vec<Label>,
}

/// Images per row of a pool's atlas PNG.
const ATLAS_COLUMNS: u32 = 16;

impl Pool {
    /// `count` images of a prepared split from the packages `keep` accepts, spread evenly
    /// over them.
    pub fn from_dataset(data: &Dataset, count: usize, keep: impl Fn(&str) -> bool) -> Self {
        let kept: Vec<usize> = (0..data.len()).filter(|&i| keep(&data.sample(i).package)).collect();
        let step = (kept.len() / count.max(1)).max(1);
        let picked: Vec<usize> = kept.into_iter().step_by(step).take(count).collect();
        Self {
            images: picked.iter().map(|&i| data.image(i)).collect(),
            labels: picked
                .iter()
                .map(|&i| Label { name: data.sample(i).name.clone(), category: data.sample(i).category.clone() })
                .collect(),
        }
    }

    /// Reads `dir/pool.png` (an atlas of equal square images, row-major) and
    /// `dir/pool.jsonl` (one label per image).
    pub fn load(dir: &Path, resolution: u32) -> Result<Self> {
        let labels_path = dir.join("pool.jsonl");
        let text =
            std::fs::read_to_string(&labels_path).with_context(|| format!("cannot read {}", labels_path.display()))?;
        let labels = text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).with_context(|| format!("{} line {}", labels_path.display(), i + 1))
            })
            .collect::<Result<Vec<Label>>>()?;
        let atlas = image_io::load(&dir.join("pool.png"))?.to_rgb8();
        let r = resolution;
        ensure!(
            atlas.width() == ATLAS_COLUMNS * r,
            "{} is not {ATLAS_COLUMNS} images of {r} px wide",
            dir.join("pool.png").display()
        );
        ensure!(
            atlas.height() >= (labels.len() as u32).div_ceil(ATLAS_COLUMNS) * r,
            "the pool atlas has fewer images than labels"
        );
        let images = (0..labels.len() as u32)
            .map(|i| {
                image::imageops::crop_imm(&atlas, (i % ATLAS_COLUMNS) * r, (i / ATLAS_COLUMNS) * r, r, r).to_image()
            })
            .collect();
        Ok(Self { images, labels })
    }

    /// Writes what [`Pool::load`] reads.
    pub fn save(&self, dir: &Path) -> Result<()> {
        ensure!(!self.images.is_empty(), "an empty pool");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let r = self.images[0].width();
        let rows = (self.images.len() as u32).div_ceil(ATLAS_COLUMNS);
        let mut atlas = RgbImage::from_pixel(ATLAS_COLUMNS * r, rows * r, image_io::BACKGROUND);
        for (i, image) in self.images.iter().enumerate() {
            let i = i as u32;
            image::imageops::replace(
                &mut atlas,
                image,
                ((i % ATLAS_COLUMNS) * r) as i64,
                ((i / ATLAS_COLUMNS) * r) as i64,
            );
        }
        image_io::save_png(&atlas, &dir.join("pool.png"))?;
        let lines: Vec<String> =
            self.labels.iter().map(|l| serde_json::to_string(l).expect("labels serialise")).collect();
        crate::atomic_file::write(&dir.join("pool.jsonl"), (lines.join("\n") + "\n").as_bytes())
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn image(&self, index: usize) -> &RgbImage {
        &self.images[index]
    }

    /// The text an image stands for in a text-to-image prompt: its name.
    pub fn text(&self, index: usize) -> &str {
        &self.labels[index].name
    }

    /// The category an image came from.
    pub fn category(&self, index: usize) -> &str {
        &self.labels[index].category
    }

    /// Up to `count` images for the examples: for text, those whose name or category
    /// shares the most words with it (ties in a seeded random order), else a seeded random
    /// choice.
    pub fn choose(&self, text: Option<&str>, count: usize, seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        if let Some(text) = text {
            let wanted: HashSet<String> = class_name(text).split(' ').map(str::to_string).collect();
            let overlap = |i: usize| {
                let label = &self.labels[i];
                let words = class_name(&format!("{} {}", label.name, label.category));
                words.split(' ').filter(|w| wanted.contains(*w)).count()
            };
            order.sort_by_key(|&i| std::cmp::Reverse(overlap(i)));
        }
        order.truncate(count);
        order
    }

    /// The chosen images as examples for `task`, each encoded by `model` (its first `layers`
    /// layers): text-to-image pairs the image's name with its words; image-to-image tasks
    /// pair the words of the corrupted image with those of the image.
    pub fn examples(&self, model: &SpaeModel, chosen: &[usize], task: Task, layers: usize) -> Result<Vec<Example>> {
        chosen
            .iter()
            .map(|&i| {
                let words = model.encode(&self.images[i])?.prefix_words(layers);
                let condition = match task {
                    Task::TextToImage => Condition::Text(self.text(i).to_string()),
                    _ => Condition::Words(model.encode(&task.corrupt(&self.images[i]))?.prefix_words(layers)),
                };
                Ok(Example { condition, words })
            })
            .collect()
    }
}
