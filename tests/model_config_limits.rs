//! A crafted `config.json` is refused, naming the field, before any tensor exists: no
//! division by zero, no slice panic, no multi-gigabyte allocation.

mod common;

use std::process::Command;

use spae::model::{SpaeConfig, SpaeModel};

fn with(edit: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let mut config = serde_json::to_value(SpaeConfig::default()).unwrap();
    edit(&mut config);
    config
}

/// The message `spae inspect` gives for a model folder holding `config`.
fn refusal(name: &str, config: &serde_json::Value) -> String {
    let dir = std::env::temp_dir().join(format!("spae-config-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spae"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--model")
        .arg(&dir)
        .arg("inspect")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{name}: refused with exit 1, not a panic or an abort");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn zero_norm_groups_is_refused_not_a_division_by_zero() {
    let message = refusal("groups", &with(|c| c["norm_groups"] = 0.into()));
    assert!(message.contains("norm_groups must be"), "{message}");
}

#[test]
fn an_enormous_resolution_is_refused_not_a_slice_panic() {
    for (i, resolution) in [1_099_511_627_776u64, 65_536].into_iter().enumerate() {
        let message = refusal(&format!("resolution-{i}"), &with(|c| c["resolution"] = resolution.into()));
        assert!(message.contains("resolution must be"), "{message}");
    }
}

#[test]
fn wide_channels_are_refused_before_allocating() {
    for (i, width) in [4096u64, 100_000].into_iter().enumerate() {
        let message =
            refusal(&format!("channels-{i}"), &with(|c| c["channels"] = serde_json::json!([width, width, width])));
        assert!(message.contains("channel width") || message.contains("parameters"), "{message}");
    }
    // Widths each within bounds whose total is not.
    let message = refusal("channels-total", &with(|c| c["channels"] = serde_json::json!([2048, 2048, 2048])));
    assert!(message.contains("parameters") && message.contains("the limit is"), "{message}");
}

#[test]
fn other_fields_are_bounded_too() {
    let cases = [
        ("res_blocks", serde_json::json!(1000), "res_blocks must be"),
        ("decoder_res_blocks", serde_json::json!(0), "decoder_res_blocks must be"),
        ("latent_channels", serde_json::json!(1_000_000), "latent_channels must be"),
        ("channels", serde_json::json!([8, 8, 8, 8, 8, 8, 8]), "channels must list"),
        ("layers", serde_json::json!(0), "layers must be"),
        ("vocabulary_size", serde_json::json!(1), "vocabulary_size must be"),
    ];
    for (field, value, expected) in cases {
        let message = refusal(field, &with(|c| c[field] = value));
        assert!(message.contains(expected), "{field}: {message}");
    }
}

#[test]
fn the_parameter_count_checked_is_the_models_own() {
    let codebook = common::codebook();
    let configs = [
        SpaeConfig::default(),
        SpaeConfig {
            channels: vec![16, 32],
            res_blocks: 2,
            norm_groups: 4,
            resolution: 32,
            layers: 5,
            ..SpaeConfig::default()
        },
        SpaeConfig {
            channels: vec![8, 24, 24, 40],
            norm_groups: 8,
            resolution: 64,
            layers: 4,
            ..SpaeConfig::default()
        },
        SpaeConfig { channels: vec![16], norm_groups: 2, resolution: 16, layers: 5, ..SpaeConfig::default() },
        SpaeConfig { decoder_res_blocks: Some(3), ..SpaeConfig::default() },
    ];
    for config in configs {
        let model = SpaeModel::from_seed(config.clone(), codebook.clone(), 0).unwrap();
        let built: usize = model.expected_tensors().values().map(|dims| dims.iter().product::<usize>()).sum();
        assert_eq!(config.parameter_count(), built, "{config:?}");
    }
}
