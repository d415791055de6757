//! `spae train-branch`: the projector of a branch that names the upper words learns, from
//! the teacher's cached features and the semantic loss alone, to name each training
//! image's own word, and nothing else in the model changes.

mod common;

use std::path::Path;

use spae::data::{relevance_cache, Dataset, Sample, Split};
use spae::image_io;
use spae::model::config::BranchMode;
use spae::model::{SpaeConfig, SpaeModel};
use spae::teacher::relevance::Relevance;
use spae::train::branch::{train_branch, BranchOptions};
use spae::train::semantic::SemanticOptions;

const IMAGES: [(&str, &str); 4] =
    [("cat-face", "cat"), ("red-apple", "apple"), ("sunflower", "flower"), ("automobile", "car")];

/// The four sample emoji as a prepared training split, each with one relevant word.
fn tiny_data(dir: &Path) {
    let mut pixels = Vec::new();
    let samples = IMAGES
        .iter()
        .map(|(file, word)| {
            let image = image_io::prepare(&image_io::load(&common::sample(&format!("{file}.png"))).unwrap(), 64);
            pixels.extend_from_slice(image.as_raw());
            Sample {
                package: "samples".into(),
                file: format!("{file}.png"),
                caption: None,
                name: word.to_string(),
                category: "test".into(),
                subcategory: None,
            }
        })
        .collect();
    Dataset::new(64, samples, pixels).unwrap().save(dir, Split::Train).unwrap();
    let lines: String = IMAGES
        .iter()
        .map(|(_, word)| {
            let relevance = Relevance {
                words: vec![word.to_string()],
                scores: vec![1.0],
                classes: Vec::new(),
                text_words: vec![word.to_string()],
            };
            serde_json::to_string(&relevance).unwrap() + "\n"
        })
        .collect();
    std::fs::write(relevance_cache::path(dir, Split::Train), lines).unwrap();
}

fn model(mode: BranchMode) -> SpaeModel {
    let mut config = SpaeConfig { channels: vec![8, 16, 32], ..SpaeConfig::default() };
    config.semantic_branch.as_mut().unwrap().mode = mode;
    SpaeModel::from_seed(config, common::codebook(), 0).unwrap()
}

#[test]
fn the_branch_learns_to_name_each_image_and_only_the_branch_changes() {
    let dir = common::fresh_dir("train-branch");
    tiny_data(&dir);
    let model = model(BranchMode::Name);
    let before = common::weights(&model);
    let options = BranchOptions {
        data_dir: dir.clone(),
        epochs: 60,
        batch_size: 4,
        lr: 1e-2,
        seed: 1,
        semantic: SemanticOptions { weight: 1.0, ..Default::default() },
    };
    let mut seen = 0;
    let epochs = train_branch(&model, &options, |_| {
        seen += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!((epochs.len(), seen), (60, 60), "one record and one call per pass");
    assert!(epochs[59].loss < 0.2 * epochs[0].loss, "the loss falls: {} to {}", epochs[0].loss, epochs[59].loss);

    for ((name, old), (_, new)) in before.iter().zip(&common::weights(&model)) {
        assert_eq!(old != new, name.starts_with("branch."), "{name}: only the branch trains");
    }
    // Each image's layer-1 word is now its own word.
    let vocabulary = model.codebook().vocabulary();
    let data = Dataset::load(&dir, Split::Train, 64).unwrap();
    for (i, (file, word)) in IMAGES.iter().enumerate() {
        let pyramid = model.encode(&data.image(i)).unwrap();
        assert_eq!(vocabulary.word(pyramid.layer(1)[0]), *word, "{file}");
    }
}

#[test]
fn a_branch_added_to_the_latent_is_refused() {
    let dir = common::fresh_dir("train-branch-add");
    tiny_data(&dir);
    let options = BranchOptions {
        data_dir: dir,
        epochs: 1,
        batch_size: 4,
        lr: 1e-3,
        seed: 1,
        semantic: SemanticOptions::default(),
    };
    let error = train_branch(&model(BranchMode::Add), &options, |_| Ok(())).expect_err("refused");
    assert!(format!("{error}").contains("\"mode\": \"name\""), "{error}");
}

/// Full training after `train-branch` with `--freeze-branch`: the projector keeps its
/// weights (so the upper words stay those it was trained to name) while the CNN and the
/// decoder train.
#[test]
fn a_frozen_branch_keeps_its_weights_while_the_rest_trains() {
    let dir = common::fresh_dir("train-frozen-branch");
    tiny_data(&dir);
    let model = model(BranchMode::Name);
    let before = common::weights(&model);
    let options = spae::train::TrainOptions {
        run: spae::train::RunOptions {
            data_dir: dir.clone(),
            run_dir: dir.join("run"),
            export_dir: None,
            batch_size: 2,
            schedule: spae::train::schedule::Schedule { peak_lr: 1e-3, warmup_steps: 1, total_steps: 2, floor: 0.1 },
            weight_decay: 1e-4,
            full_prefix_share: 0.5,
            seed: 3,
            checkpoint_minutes: 1e6,
        },
        commitment: 0.25,
        semantic: Some(SemanticOptions::default()),
        perceptual_weight: 0.0,
        search: Default::default(),
        freeze_branch: true,
        usage: None,
        decode_latent: false,
        relaxed: None,
    };
    spae::train::train(&model, &options, false, spae::train::Stop::Schedule).unwrap();
    for ((name, old), (_, new)) in before.iter().zip(&common::weights(&model)) {
        if name.starts_with("branch.") {
            assert_eq!(old, new, "{name} is frozen");
        } else if name.starts_with("encoder.conv_out") || name.starts_with("decoder.conv_out") {
            assert_ne!(old, new, "{name} trains");
        }
    }
}
