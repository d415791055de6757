//! The candle EfficientNet-Lite0 against logits computed independently by the numpy
//! reference (`scripts/teacher_reference.py --write-fixture`).

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::Value;
use spae::image_io;
use spae::teacher::efficientnet::{normalize, EfficientNetLite0};

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/teacher_logits.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn teacher() -> EfficientNetLite0 {
    EfficientNetLite0::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/efficientnet-lite0.safetensors"))
        .unwrap()
}

fn numbers(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn synthetic_input_matches_the_numpy_reference() {
    let fixture = fixture();
    let synthetic = &fixture["synthetic"];
    let n = 224;
    let data: Vec<f32> = (0..3)
        .flat_map(|c| (0..n).flat_map(move |y| (0..n).map(move |x| (0.1 * (x + 2 * y + 3 * c) as f64).sin() as f32)))
        .collect();
    let input = Tensor::from_vec(data, (1, 3, n, n), &Device::Cpu).unwrap();
    let features = teacher().forward(&input).unwrap();

    let stats = &synthetic["activation_stats"];
    let names = ["stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7"];
    for (name, t) in names.iter().zip(&features.stages) {
        let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64;
        let std = (values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
        let (want_mean, want_std) = (stats[name]["mean"].as_f64().unwrap(), stats[name]["std"].as_f64().unwrap());
        assert!((mean - want_mean).abs() < 1e-3 * (1.0 + want_std), "{name}: mean {mean} vs {want_mean}");
        assert!((std - want_std).abs() < 1e-3 * (1.0 + want_std), "{name}: std {std} vs {want_std}");
    }
    let pooled: Vec<f32> = features.pooled.flatten_all().unwrap().to_vec1().unwrap();
    assert!(max_abs_diff(&pooled, &numbers(&synthetic["pooled"])) < 1e-3);
    let logits: Vec<f32> = features.logits.flatten_all().unwrap().to_vec1().unwrap();
    assert!(max_abs_diff(&logits, &numbers(&synthetic["logits"])) < 1e-3);
}

#[test]
fn sample_images_match_the_reference_top_classes() {
    let fixture = fixture();
    let teacher = teacher();
    for entry in fixture["images"].as_array().unwrap() {
        let file = entry["file"].as_str().unwrap();
        // The reference composites in floating point; ours rounds to 8 bits first, so
        // logits agree only to a few hundredths.
        let image = image_io::prepare(&image_io::load(&common::sample(file)).unwrap(), 64);
        let pixels = image_io::to_tensor(&[image]).unwrap();
        let input = normalize(&pixels.upsample_bilinear2d(224, 224, false).unwrap()).unwrap();
        let logits: Vec<f32> = teacher.forward(&input).unwrap().logits.flatten_all().unwrap().to_vec1().unwrap();
        let diff = max_abs_diff(&logits, &numbers(&entry["logits"]));
        assert!(diff < 0.1, "{file}: logits differ by {diff}");
        let top = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(top as u64, entry["top5"][0].as_u64().unwrap(), "{file}");
    }
}

#[test]
fn perceptual_loss_is_zero_for_equal_images_and_reaches_the_reconstruction() {
    use candle_core::Var;
    use spae::train::perceptual;
    let teacher = teacher();
    let load = |name: &str| image_io::prepare(&image_io::load(&common::sample(name)).unwrap(), 64);
    let original = image_io::to_tensor(&[load("cat-face.png")]).unwrap();
    let same = perceptual::loss(&teacher, &original, &original).unwrap().to_scalar::<f32>().unwrap();
    assert!(same.abs() < 1e-6, "{same}");
    let other = Var::from_tensor(&image_io::to_tensor(&[load("red-apple.png")]).unwrap()).unwrap();
    let far = perceptual::loss(&teacher, other.as_tensor(), &original).unwrap();
    let slightly = (original.clone() + 0.05).unwrap();
    let near = perceptual::loss(&teacher, &slightly, &original).unwrap().to_scalar::<f32>().unwrap();
    assert!(far.to_scalar::<f32>().unwrap() > near && near > 0.0, "a different image is further than a brighter one");
    let grads = far.backward().unwrap();
    let grad = grads.get(&other).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(grad > 0.0);
}
