//! `spae train-branch`: trains the semantic branch's projector alone, for a model whose
//! branch names the upper words ([`BranchMode::Name`], docs/method.md section 5a).
//!
//! There the upper layers' words depend on nothing but the frozen teacher's features and
//! the projector, so the projector can learn them first, from the teacher's cached grid
//! features and the semantic loss alone: a step costs the projector and the distances of
//! 21 cells to every word, about a hundredth of a full training step, so many passes over
//! the training split fit in minutes. Full training then starts from words that already
//! name things. The CNN, the decoder and the codebook are untouched.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::optimizer::AdamW;
use super::semantic::{self, SemanticOptions, Target};
use crate::data::{feature_cache, relevance_cache, Dataset, Split};
use crate::model::config::BranchMode;
use crate::model::SpaeModel;

/// How the projector is trained.
#[derive(Clone, Debug)]
pub struct BranchOptions {
    pub data_dir: std::path::PathBuf,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    /// The semantic loss (its weight only scales the learning signal; AdamW ignores it).
    pub semantic: SemanticOptions,
}

/// One pass over the training split.
#[derive(Clone, Debug)]
pub struct Epoch {
    pub epoch: usize,
    /// Mean semantic loss over the pass.
    pub loss: f64,
    pub seconds: f64,
}

/// Trains `model`'s projector (the variables under `branch.`) for `options.epochs` passes
/// over the training split, calling `after_epoch` after each (to save the model, say).
pub fn train_branch(
    model: &SpaeModel,
    options: &BranchOptions,
    mut after_epoch: impl FnMut(&Epoch) -> Result<()>,
) -> Result<Vec<Epoch>> {
    let branch = model.branch().context("this model has no semantic branch to train")?;
    ensure!(
        branch.config().mode == BranchMode::Name,
        "train-branch trains a branch that names the upper words (\"mode\": \"name\" in the config); in \"add\" mode \
         the words depend on the CNN too, so train the whole model"
    );
    ensure!(options.epochs > 0 && options.batch_size > 0, "epochs and the batch size must be positive");
    let data = Dataset::load(&options.data_dir, Split::Train, model.config().resolution)?;
    let relevances = relevance_cache::load(&options.data_dir, Split::Train, data.len())?;
    let targets: Vec<Target> = semantic::targets(&relevances, model.codebook().vocabulary(), &options.semantic);
    let grids = feature_cache::load_or_compute(&options.data_dir, Split::Train, &data, model)?
        .context("the model's branch has no teacher features")?;
    let mut optimizer = AdamW::new(super::variables(model, |name| name.starts_with(super::BRANCH_VARIABLES)), 0.0)?;
    let semantic =
        SemanticOptions { layers: options.semantic.layers.min(branch.config().layers), ..options.semantic.clone() };
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let mut order: Vec<usize> = (0..data.len()).collect();
    let steps_per_epoch = data.len().div_ceil(options.batch_size);
    let total_steps = (steps_per_epoch * options.epochs) as f64;
    let mut epochs = Vec::with_capacity(options.epochs);
    let bar = ProgressBar::new(total_steps as u64).with_message("training the semantic branch");
    for epoch in 1..=options.epochs {
        let started = Instant::now();
        order.shuffle(&mut rng);
        let mut sum = 0.0;
        for (i, indices) in order.chunks(options.batch_size).enumerate() {
            let flips: Vec<bool> = indices.iter().map(|_| rng.random_bool(0.5)).collect();
            let grid = feature_cache::batch(&grids, indices, &flips)?;
            let named = branch.cell_projections(&grid, model.shape())?;
            let batch_targets: Vec<&Target> = indices.iter().map(|&i| &targets[i]).collect();
            let loss =
                semantic::loss_of_targets(&named[..semantic.layers], model.codebook(), &batch_targets, &semantic)?;
            // Cosine decay over all the passes.
            let done = ((epoch - 1) * steps_per_epoch + i) as f64 / total_steps;
            let lr = options.lr * 0.5 * (1.0 + (std::f64::consts::PI * done).cos());
            optimizer.backward_step(&loss, lr)?;
            sum += loss.to_scalar::<f32>()? as f64;
            bar.inc(1);
            if bar.is_hidden() && (i + 1) % 50 == 0 {
                eprintln!(
                    "branch epoch {epoch}/{}: batch {}/{steps_per_epoch}, loss {:.4}",
                    options.epochs,
                    i + 1,
                    sum / (i + 1) as f64
                );
            }
        }
        let record = Epoch { epoch, loss: sum / steps_per_epoch as f64, seconds: started.elapsed().as_secs_f64() };
        bar.println(format!(
            "branch epoch {epoch}/{}: mean loss {:.4} ({:.0} s)",
            options.epochs, record.loss, record.seconds
        ));
        if bar.is_hidden() {
            eprintln!(
                "branch epoch {epoch}/{}: mean loss {:.4} ({:.0} s)",
                options.epochs, record.loss, record.seconds
            );
        }
        after_epoch(&record)?;
        epochs.push(record);
    }
    bar.finish();
    Ok(epochs)
}
