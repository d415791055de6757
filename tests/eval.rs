//! `spae eval`'s measurements on the shipped model: the batched evaluation equals metrics
//! computed image by image through the public encode/decode path, and semantic precision
//! counts exactly the upper-layer words found in the teacher's lists.

mod common;

use std::path::Path;

use spae::data::dataset::Sample;
use spae::data::Dataset;
use spae::eval::heldout::{evaluate, sheet_rows, SEMANTIC_LAYERS};
use spae::eval::metrics::{psnr, ssim};
use spae::image_io;
use spae::model::SpaeModel;
use spae::pyramid::saq;
use spae::teacher::relevance::Relevance;

fn shipped_model() -> SpaeModel {
    SpaeModel::load(Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::DEFAULT_MODEL_DIR), common::codebook())
        .unwrap()
}

/// The four sample images as a held-out split.
fn samples(model: &SpaeModel) -> (Dataset, Vec<image::RgbImage>) {
    let resolution = model.config().resolution;
    let names = ["cat-face.png", "red-apple.png", "sunflower.png", "automobile.png"];
    let images: Vec<image::RgbImage> = names
        .iter()
        .map(|n| image_io::prepare(&image_io::load(&common::sample(n)).unwrap(), resolution as u32))
        .collect();
    let samples = names
        .iter()
        .map(|n| Sample {
            package: "samples".into(),
            file: n.to_string(),
            caption: None,
            name: n.replace(".png", ""),
            category: "test".into(),
            subcategory: None,
        })
        .collect();
    let pixels = images.iter().flat_map(|i| i.as_raw().clone()).collect();
    (Dataset::new(resolution, samples, pixels).unwrap(), images)
}

fn relevance(words: Vec<String>, text_words: Vec<String>) -> Relevance {
    Relevance { scores: vec![0.5; words.len()], words, classes: vec![], text_words }
}

#[test]
fn evaluation_matches_image_by_image_metrics_and_counts_hits() {
    let model = shipped_model();
    let (data, images) = samples(&model);
    let layers = model.shape().layers();
    let vocabulary = model.codebook().vocabulary();
    let pyramids: Vec<_> = images.iter().map(|i| model.encode(i).unwrap()).collect();

    // The teacher's lists: image 0 lists its own layer-1 word; image 1 lists one of its
    // layer-3 words as a text word; images 2 and 3 list words they do not use.
    let word = |p: usize, layer: usize, k: usize| vocabulary.word(pyramids[p].layer(layer)[k]).to_string();
    let upper = |p: usize| -> Vec<String> {
        (1..=SEMANTIC_LAYERS)
            .flat_map(|l| pyramids[p].layer(l).to_vec())
            .map(|w| vocabulary.word(w).to_string())
            .collect()
    };
    let unused = |p: usize| {
        vocabulary
            .word((0..vocabulary.len() as u32).find(|&w| !upper(p).contains(&vocabulary.word(w).to_string())).unwrap())
            .to_string()
    };
    let relevances = vec![
        relevance(vec![word(0, 1, 0)], vec![]),
        relevance(vec![], vec![word(1, 3, 5)]),
        relevance(vec![unused(2)], vec![unused(2)]),
        relevance(vec![], vec![]),
    ];
    let expected_teacher = upper(0).iter().filter(|w| **w == word(0, 1, 0)).count();
    let expected_text = upper(1).iter().filter(|w| **w == word(1, 3, 5)).count();
    let judged = 4 * model.shape().tokens_in_prefix(SEMANTIC_LAYERS);

    // Batches of 3 so that the last batch is partial.
    let report = evaluate(&model, &data, Some(&relevances), usize::MAX, 3, 0, |_, _| {}).unwrap();
    assert_eq!(report.images, 4);
    assert!(expected_teacher >= 1 && expected_text >= 1);
    assert!((report.semantic_precision.unwrap() - expected_teacher as f64 / judged as f64).abs() < 1e-12);
    assert!((report.text_precision.unwrap() - expected_text as f64 / judged as f64).abs() < 1e-12);

    for l in 1..=layers {
        let decoded: Vec<_> = pyramids.iter().map(|p| model.decode(p, l).unwrap()).collect();
        let mean_psnr = images.iter().zip(&decoded).map(|(a, b)| psnr(a, b).min(100.0)).sum::<f64>() / 4.0;
        let mean_ssim = images.iter().zip(&decoded).map(|(a, b)| ssim(a, b)).sum::<f64>() / 4.0;
        assert!(
            (report.psnr_db[l - 1] - mean_psnr).abs() < 0.02,
            "layer {l}: {} against {mean_psnr}",
            report.psnr_db[l - 1]
        );
        assert!((report.ssim[l - 1] - mean_ssim).abs() < 1e-3, "layer {l}: {} against {mean_ssim}", report.ssim[l - 1]);
    }

    // The latent's relative error after each prefix, from the pyramid's own words, one
    // image at a time; and decoding z itself.
    let mut unquantized = 0.0;
    let mut latent_error = vec![0.0; layers];
    for (image, pyramid) in images.iter().zip(&pyramids) {
        let pixels = image_io::to_tensor(std::slice::from_ref(image)).unwrap();
        let z = model.encode_latent(&pixels).unwrap().z;
        let decoded = image_io::from_tensor(&model.decode_latent(&z).unwrap()).unwrap();
        unquantized += psnr(image, &decoded[0]).min(100.0) / 4.0;
        let z: Vec<f32> = z.flatten_all().unwrap().to_vec1().unwrap();
        let power: f64 = z.iter().map(|v| f64::from(*v).powi(2)).sum();
        for l in 1..=layers {
            let zhat = saq::dequantize(std::slice::from_ref(pyramid), model.codebook(), l).unwrap();
            let zhat: Vec<f32> = zhat.flatten_all().unwrap().to_vec1().unwrap();
            let error: f64 = z.iter().zip(&zhat).map(|(a, b)| f64::from(a - b).powi(2)).sum();
            latent_error[l - 1] += error / power / 4.0;
        }
    }
    assert!(
        (report.psnr_unquantized_db - unquantized).abs() < 0.02,
        "{} against {unquantized}",
        report.psnr_unquantized_db
    );
    for (l, (&got, &want)) in report.latent_error.iter().zip(&latent_error).enumerate() {
        assert!((got - want).abs() < 1e-4 * want.max(1.0), "layer {}: latent error {got} against {want}", l + 1);
    }
    // All six layers bring the latent closer than the branch's three words alone.
    assert!(report.latent_error[layers - 1] < report.latent_error[2], "{:?}", report.latent_error);

    // Without relevances there is no precision; `limit` evaluates the first images only.
    let first_two = evaluate(&model, &data, None, 2, 32, 0, |_, _| {}).unwrap();
    assert_eq!((first_two.images, first_two.semantic_precision), (2, None));

    // The sheet marks exactly the listed words.
    let rows = sheet_rows(&[("SPAE", &model)], &data, &relevances, 4, 0).unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].models[0].words.iter().filter(|(_, hit)| *hit).count(), expected_teacher);
    assert!(rows[1..].iter().all(|r| r.models[0].words.iter().all(|(_, hit)| !hit)));
    assert_eq!(rows[0].models[0].words.iter().map(|(w, _)| w.clone()).collect::<Vec<_>>(), upper(0));
    assert_eq!(rows[2].decoded, model.decode(&pyramids[2], layers).unwrap());

    // With refinement, every prefix is decoded from the refined words (one image at a
    // time through the public path), and the sheet shows the refined picture.
    let refined = evaluate(&model, &data, None, 2, 32, 2, |_, _| {}).unwrap();
    let refined_pyramids: Vec<_> = images[..2].iter().map(|i| model.encode_refined(i, 2).unwrap()).collect();
    for l in 1..=layers {
        let mean_psnr = images[..2]
            .iter()
            .zip(&refined_pyramids)
            .map(|(a, p)| psnr(a, &model.decode(p, l).unwrap()).min(100.0))
            .sum::<f64>()
            / 2.0;
        assert!(
            (refined.psnr_db[l - 1] - mean_psnr).abs() < 0.02,
            "layer {l}: {} against {mean_psnr}",
            refined.psnr_db[l - 1]
        );
    }
    assert!(
        refined.psnr_db[layers - 1] > first_two.psnr_db[layers - 1],
        "{:?} against {:?}",
        refined.psnr_db,
        first_two.psnr_db
    );
    let rows = sheet_rows(&[("SPAE", &model)], &data, &relevances, 4, 2).unwrap();
    assert_eq!(rows[0].decoded, model.decode(&refined_pyramids[0], layers).unwrap());
}
