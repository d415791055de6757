//! Building, saving and loading the autoencoder; clear errors for bad weight files.

mod common;

use spae::codebook::vocabulary::VocabularyRule;
use spae::image_io;
use spae::model::{SpaeConfig, SpaeModel, CONFIG_FILE, WEIGHTS_FILE};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("spae-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample_image(resolution: u32) -> image::RgbImage {
    image_io::prepare(&image_io::load(&common::sample("cat-face.png")).unwrap(), resolution)
}

#[test]
fn encode_and_decode_have_the_configured_shapes_and_are_deterministic() {
    let model = SpaeModel::from_seed(SpaeConfig::default(), common::codebook(), 0).unwrap();
    let image = sample_image(64);
    let pyramid = model.encode(&image).unwrap();
    assert_eq!(pyramid.words().count(), 597);
    for layers in [1, 3, 6] {
        let out = model.decode(&pyramid, layers).unwrap();
        assert_eq!(out.dimensions(), (64, 64));
    }
    assert!(model.decode(&pyramid, 7).is_err());
    let again = SpaeModel::from_seed(SpaeConfig::default(), common::codebook(), 0).unwrap();
    assert_eq!(again.encode(&image).unwrap(), pyramid, "same seed, same model");
    let other = SpaeModel::from_seed(SpaeConfig::default(), common::codebook(), 1).unwrap();
    assert_ne!(other.encode(&image).unwrap(), pyramid, "another seed, another model");
}

#[test]
fn save_then_load_gives_the_same_model() {
    let dir = temp_dir("roundtrip");
    let model = SpaeModel::from_seed(SpaeConfig::default(), common::codebook(), 5).unwrap();
    model.save(&dir).unwrap();
    let loaded = SpaeModel::load(&dir, common::codebook()).unwrap();
    let image = sample_image(64);
    let pyramid = model.encode(&image).unwrap();
    assert_eq!(loaded.encode(&image).unwrap(), pyramid);
    assert_eq!(loaded.decode(&pyramid, 6).unwrap(), model.decode(&pyramid, 6).unwrap());
    assert_eq!(loaded.config(), model.config());
}

#[test]
fn mismatched_weights_are_reported_by_name_and_shape() {
    let dir = temp_dir("mismatch");
    let model = SpaeModel::from_seed(SpaeConfig::default(), common::codebook(), 0).unwrap();
    model.save(&dir).unwrap();
    // Same weights, a config with other widths.
    let config = SpaeConfig { channels: vec![64, 64, 128], ..SpaeConfig::default() };
    std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&config).unwrap()).unwrap();
    let message = format!("{:#}", SpaeModel::load(&dir, common::codebook()).err().unwrap());
    assert!(
        message.contains("encoder.conv_in.weight has shape [32, 3, 3, 3], the config needs [64, 3, 3, 3]"),
        "{message}"
    );
    // One more residual block per level: tensors the file lacks.
    let config = SpaeConfig { res_blocks: 2, ..SpaeConfig::default() };
    std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&config).unwrap()).unwrap();
    let message = format!("{:#}", SpaeModel::load(&dir, common::codebook()).err().unwrap());
    assert!(message.contains("missing tensor encoder.levels.0.blocks.1.conv1.weight"), "{message}");
}

#[test]
fn corrupt_files_and_configs_give_clear_errors() {
    let dir = temp_dir("corrupt");
    let model = SpaeModel::from_seed(SpaeConfig::default(), common::codebook(), 0).unwrap();
    model.save(&dir).unwrap();
    std::fs::write(dir.join(WEIGHTS_FILE), b"not a safetensors file at all").unwrap();
    let message = format!("{:#}", SpaeModel::load(&dir, common::codebook()).err().unwrap());
    assert!(message.contains("cannot read the weights file"), "{message}");

    std::fs::write(dir.join(CONFIG_FILE), b"{\"resolution\": 64,").unwrap();
    let message = format!("{:#}", SpaeModel::load(&dir, common::codebook()).err().unwrap());
    assert!(message.contains("is not a valid SPAE model config"), "{message}");

    let config = SpaeConfig { channels: vec![64, 100], norm_groups: 32, ..SpaeConfig::default() };
    std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&config).unwrap()).unwrap();
    let message = format!("{:#}", SpaeModel::load(&dir, common::codebook()).err().unwrap());
    assert!(message.contains("channel width 100 is not a multiple of norm_groups 32"), "{message}");

    for (weights, reason) in
        [(vec![1, 1, 1, 2, 2], "layer_weights has 5 entries for 6 layers"), (vec![1, 1, 1, 0, 2, 2], "1..=64")]
    {
        let config = SpaeConfig { layer_weights: Some(weights), ..SpaeConfig::default() };
        std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&config).unwrap()).unwrap();
        let message = format!("{:#}", SpaeModel::load(&dir, common::codebook()).err().unwrap());
        assert!(message.contains("layer_weights") && message.contains(reason), "{message}");
    }

    let config = SpaeConfig { vocabulary_size: 1000, ..SpaeConfig::default() };
    assert!(SpaeModel::from_seed(config, common::codebook(), 0).is_err(), "vocabulary size must match the codebook");
    let config = SpaeConfig { vocabulary: VocabularyRule::Commonest, ..SpaeConfig::default() };
    let message = format!("{:#}", SpaeModel::from_seed(config, common::codebook(), 0).err().unwrap());
    assert!(message.contains("made for the commonest vocabulary but the codebook holds the visual"), "{message}");
    let missing = format!("{:#}", SpaeModel::load(dir.join("nowhere"), common::codebook()).err().unwrap());
    assert!(missing.contains("cannot read the model config"), "{missing}");

    std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&SpaeConfig::default()).unwrap()).unwrap();
    std::fs::remove_file(dir.join(WEIGHTS_FILE)).unwrap();
    let message = format!("{:#}", SpaeModel::load(&dir, common::codebook()).err().unwrap());
    assert!(message.contains("has a config but no weights file model.safetensors"), "{message}");
}

#[test]
fn prefix_words_of_a_batch_match_each_images_whole_pyramid() {
    let model = SpaeModel::from_seed(SpaeConfig::default(), common::codebook(), 4).unwrap();
    let images: Vec<image::RgbImage> = ["cat-face.png", "red-apple.png", "sunflower.png"]
        .iter()
        .map(|name| spae::image_io::load_prepared(&common::sample(name), 64).unwrap())
        .collect();
    for layers in [1, 3] {
        let batch = model.encode_prefix_words(&images, layers).unwrap();
        let one_by_one: Vec<Vec<u32>> =
            images.iter().map(|image| model.encode(image).unwrap().prefix_words(layers)).collect();
        assert_eq!(batch, one_by_one);
    }
}

#[test]
fn a_config_naming_no_vocabulary_rule_means_the_commonest_words() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let old = SpaeConfig::load(&root.join("weights/spae-add").join(CONFIG_FILE)).unwrap();
    assert_eq!(old.vocabulary, VocabularyRule::Commonest);
    let shipped = SpaeConfig::load(&root.join(spae::paths::DEFAULT_MODEL_DIR).join(CONFIG_FILE)).unwrap();
    assert_eq!(shipped.vocabulary, VocabularyRule::Visual);
    let dir = common::fresh_dir("model-vocabulary-rule");
    let mut text = serde_json::to_value(SpaeConfig::default()).unwrap();
    text["vocabulary"] = serde_json::json!("pictures");
    std::fs::write(dir.join(CONFIG_FILE), text.to_string()).unwrap();
    let message = format!("{:#}", SpaeConfig::load(&dir.join(CONFIG_FILE)).err().unwrap());
    assert!(message.contains("is not a valid SPAE model config") && message.contains("pictures"), "{message}");
}

/// A network grown by a residual block per level and warm-started from a smaller one
/// starts as the same function: each new block's last convolution is zero, so it adds
/// nothing to its skip. Its other new tensors keep their initialisation.
#[test]
fn a_grown_network_warm_started_computes_what_it_grew_from() {
    let dir = temp_dir("grown");
    let small = SpaeModel::from_seed(SpaeConfig::default(), common::codebook(), 5).unwrap();
    small.save(&dir).unwrap();
    let grown_config = SpaeConfig { res_blocks: 2, ..SpaeConfig::default() };
    let grown = SpaeModel::from_seed(grown_config, common::codebook(), 7).unwrap();
    let fresh = grown.warm_start_from(&dir.join(WEIGHTS_FILE)).unwrap();
    // Three levels in the encoder and three in the decoder, each one new block.
    assert_eq!(fresh.len(), 6 * 8);
    assert!(fresh.iter().all(|name| name.contains(".blocks.1.")), "{fresh:?}");
    let data = grown.varmap().data().lock().unwrap();
    for name in &fresh {
        let largest = data[name].as_tensor().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        if name.contains(".conv2.") {
            assert_eq!(largest, 0.0, "{name} starts at zero");
        } else if name.ends_with("conv1.weight") {
            assert!(largest > 0.0, "{name} keeps its initialisation");
        }
    }
    drop(data);
    let image = sample_image(64);
    let pyramid = small.encode(&image).unwrap();
    assert_eq!(grown.encode(&image).unwrap(), pyramid, "same words");
    assert_eq!(grown.decode(&pyramid, 6).unwrap(), small.decode(&pyramid, 6).unwrap(), "same image");
}

/// Blocks that the source has at another width are not new: widened, they keep their
/// initialisation (a zero convolution there would not make them the identity).
#[test]
fn a_widened_network_warm_started_keeps_its_blocks_initialised() {
    let dir = temp_dir("widened");
    SpaeModel::from_seed(SpaeConfig::default(), common::codebook(), 5).unwrap().save(&dir).unwrap();
    let wide = SpaeModel::from_seed(
        SpaeConfig { channels: vec![32, 64, 256], ..SpaeConfig::default() },
        common::codebook(),
        7,
    )
    .unwrap();
    let fresh = wide.warm_start_from(&dir.join(WEIGHTS_FILE)).unwrap();
    assert!(fresh.contains(&"decoder.levels.0.blocks.0.conv2.weight".to_string()), "{fresh:?}");
    let data = wide.varmap().data().lock().unwrap();
    for name in fresh.iter().filter(|name| name.ends_with("conv2.weight")) {
        let largest = data[name].as_tensor().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(largest > 0.0, "{name} keeps its initialisation");
    }
}

/// A folder holding only a config (a new size written by hand) opens untrained, from
/// seed 0, where an untrained model is allowed, and is refused otherwise.
#[test]
fn a_config_without_weights_opens_untrained_only_when_allowed() {
    let dir = temp_dir("config-only");
    let config = SpaeConfig { res_blocks: 2, ..SpaeConfig::default() };
    std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&config).unwrap()).unwrap();
    let model = SpaeModel::open(&dir, &common::llm_path(), true).unwrap();
    assert_eq!(model.config(), &config);
    assert!(matches!(model.source(), spae::model::WeightsSource::Seed(0)));
    let seeded = SpaeModel::from_seed(config, common::codebook(), 0).unwrap();
    assert_eq!(common::weights(&model), common::weights(&seeded));
    let refused = SpaeModel::open(&dir, &common::llm_path(), false).err().unwrap();
    assert!(format!("{refused:#}").contains("no weights file"), "{refused:#}");
}
