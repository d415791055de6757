//! A prepared split: images at the model's resolution (raw RGB bytes, one file) and one
//! JSON line of text per image (its source, caption, name and category).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Which part of the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    HeldOut,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::HeldOut => "heldout",
        }
    }
}

/// What is known about one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The package it came from.
    pub package: String,
    /// Its path inside the package (plus `#crop-N` for photo crops).
    pub file: String,
    /// A caption sentence, where the data has one (Tux Paint stamps).
    pub caption: Option<String>,
    /// A short name (emoji name, or words from the file name).
    pub name: String,
    /// The category folder or emoji category.
    pub category: String,
    /// The emoji's subcategory ("animal-mammal", "food-fruit"); none for other sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcategory: Option<String>,
}

pub struct Dataset {
    resolution: usize,
    samples: Vec<Sample>,
    pixels: Vec<u8>,
}

impl Dataset {
    pub fn pixels_path(dir: &Path, split: Split) -> PathBuf {
        dir.join(format!("{}.rgb", split.name()))
    }

    pub fn samples_path(dir: &Path, split: Split) -> PathBuf {
        dir.join(format!("{}.jsonl", split.name()))
    }

    /// Builds a dataset in memory (used by preparation and tests).
    pub fn new(resolution: usize, samples: Vec<Sample>, pixels: Vec<u8>) -> Result<Self> {
        ensure!(
            pixels.len() == samples.len() * resolution * resolution * 3,
            "{} bytes of pixels for {} images of {resolution} x {resolution}",
            pixels.len(),
            samples.len()
        );
        Ok(Self { resolution, samples, pixels })
    }

    /// Loads a prepared split from `dir` (see `spae prepare-data`).
    pub fn load(dir: &Path, split: Split, resolution: usize) -> Result<Self> {
        let samples = Self::load_samples(dir, split)?;
        let pixels_path = Self::pixels_path(dir, split);
        let pixels = std::fs::read(&pixels_path).with_context(|| format!("cannot read {}", pixels_path.display()))?;
        Self::new(resolution, samples, pixels).with_context(|| format!("in {}", dir.display()))
    }

    /// A prepared split's samples (what each image is) without its pixels.
    pub fn load_samples(dir: &Path, split: Split) -> Result<Vec<Sample>> {
        let samples_path = Self::samples_path(dir, split);
        let file = std::fs::File::open(&samples_path)
            .with_context(|| format!("cannot open {} (run `spae prepare-data` first)", samples_path.display()))?;
        BufReader::new(file)
            .lines()
            .enumerate()
            .map(|(i, line)| {
                let line = line?;
                serde_json::from_str(&line).with_context(|| format!("{} line {}", samples_path.display(), i + 1))
            })
            .collect::<Result<Vec<Sample>>>()
    }

    /// Writes the split atomically.
    pub fn save(&self, dir: &Path, split: Split) -> Result<()> {
        let mut lines = String::new();
        for sample in &self.samples {
            lines.push_str(&serde_json::to_string(sample)?);
            lines.push('\n');
        }
        crate::atomic_file::write(&Self::pixels_path(dir, split), &self.pixels)?;
        crate::atomic_file::write(&Self::samples_path(dir, split), lines.as_bytes())
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn sample(&self, index: usize) -> &Sample {
        &self.samples[index]
    }

    /// One image as an `RgbImage`.
    pub fn image(&self, index: usize) -> image::RgbImage {
        let size = self.resolution * self.resolution * 3;
        let bytes = self.pixels[index * size..(index + 1) * size].to_vec();
        image::RgbImage::from_raw(self.resolution as u32, self.resolution as u32, bytes).expect("sized above")
    }

    /// A batch as a `batch x 3 x R x R` tensor in -1..1; `flips[i]` mirrors image i.
    pub fn batch(&self, indices: &[usize], flips: &[bool]) -> Result<Tensor> {
        let images: Vec<image::RgbImage> = indices
            .iter()
            .zip(flips)
            .map(|(&index, &flip)| {
                let image = self.image(index);
                if flip {
                    image::imageops::flip_horizontal(&image)
                } else {
                    image
                }
            })
            .collect();
        crate::image_io::to_tensor(&images)
    }
}
