//! Training resumes exactly: a run stopped at a checkpoint and resumed matches one that
//! never stopped, and the log keeps one row per step.

mod common;

use std::path::{Path, PathBuf};

use spae::codebook::quantized::QuantizedOptions;
use spae::data::{Dataset, Sample, Split};
use spae::image_io;
use spae::model::{SpaeConfig, SpaeModel};
use spae::pyramid::{saq, Pyramid};
use spae::train::decoder::{train_decoder, EXPORTED_DECODER_LOG, WORDS_FILE};
use spae::train::relaxed::RelaxedOptions;
use spae::train::schedule::Schedule;
use spae::train::{train, RunOptions, Stop, TrainOptions, TrainingSearch};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spae-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The four sample emoji as a prepared training split.
fn tiny_dataset(dir: &Path) {
    let names = ["cat-face", "red-apple", "sunflower", "automobile"];
    let mut pixels = Vec::new();
    let samples = names
        .iter()
        .map(|name| {
            let image = image_io::prepare(&image_io::load(&common::sample(&format!("{name}.png"))).unwrap(), 64);
            pixels.extend_from_slice(image.as_raw());
            Sample {
                package: "samples".into(),
                file: format!("{name}.png"),
                caption: None,
                name: name.to_string(),
                category: "test".into(),
                subcategory: None,
            }
        })
        .collect();
    Dataset::new(64, samples, pixels).unwrap().save(dir, Split::Train).unwrap();
}

fn small_model(seed: u64) -> SpaeModel {
    let config = SpaeConfig { channels: vec![8, 16, 32], ..SpaeConfig::default() };
    SpaeModel::from_seed(config, common::codebook(), seed).unwrap()
}

fn run_options(data: &Path, run: &Path, steps: u64) -> RunOptions {
    RunOptions {
        data_dir: data.to_path_buf(),
        run_dir: run.to_path_buf(),
        export_dir: Some(run.join("export")),
        batch_size: 2,
        schedule: Schedule { peak_lr: 1e-3, warmup_steps: 1, total_steps: steps, floor: 0.1 },
        weight_decay: 1e-4,
        full_prefix_share: 0.5,
        seed: 3,
        checkpoint_minutes: 1e6,
    }
}

fn options(data: &Path, run: &Path, steps: u64) -> TrainOptions {
    TrainOptions {
        run: run_options(data, run, steps),
        commitment: 0.25,
        semantic: None,
        perceptual_weight: 0.0,
        search: Default::default(),
        freeze_branch: false,
        usage: None,
        decode_latent: false,
        relaxed: None,
    }
}

fn log_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("log.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// Every variable of `model` within 1e-5 of `expected` (runs that must be the same run).
fn assert_same_weights(expected: &[(String, Vec<f32>)], model: &SpaeModel, what: &str) {
    for ((name, a), (_, b)) in expected.iter().zip(common::weights(model)) {
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{name} differs by {diff} ({what})");
    }
}

#[test]
fn a_resumed_run_matches_an_uninterrupted_one() {
    let data = temp_dir("data");
    tiny_dataset(&data);

    let straight = temp_dir("straight");
    let model = small_model(0);
    let before = common::weights(&model);
    train(&model, &options(&data, &straight, 3), false, Stop::Schedule).unwrap();
    let uninterrupted = common::weights(&model);
    assert_ne!(before, uninterrupted, "training changed the weights");
    assert_eq!(log_steps(&straight), vec![1, 2, 3]);

    let stopped = temp_dir("stopped");
    train(&small_model(0), &options(&data, &stopped, 3), false, Stop::AtStep(2)).unwrap();
    assert_eq!(log_steps(&stopped), vec![1, 2], "stopped at step 2 of the 3-step schedule");
    // A killed run may have logged steps after its last checkpoint.
    let mut log = std::fs::read_to_string(stopped.join("log.csv")).unwrap();
    log.push_str("3,0,0,0,0,0,0,0,0,0,0,,,\n");
    std::fs::write(stopped.join("log.csv"), log).unwrap();
    // Resume into a model initialised differently: everything must come from the checkpoint.
    let resumed = small_model(9);
    train(&resumed, &options(&data, &stopped, 3), true, Stop::Schedule).unwrap();
    assert_eq!(log_steps(&stopped), vec![1, 2, 3]);
    assert_same_weights(&uninterrupted, &resumed, "resumed");
    // The exported model loads and matches.
    let exported = SpaeModel::load(stopped.join("export"), common::codebook()).unwrap();
    assert_eq!(common::weights(&exported), common::weights(&resumed));
    let files: Vec<String> =
        std::fs::read_dir(&stopped).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(
        files.iter().filter(|f| f.starts_with("checkpoint-")).count(),
        1,
        "old checkpoints are removed: {files:?}"
    );
}

/// `decode_latent` trains the network as a continuous autoencoder: a step's pixel error is
/// that of decoding the encoder's latent z itself, not the words. Every image of this
/// split is the same mirror-symmetric picture, so neither the batch's draw nor its flips
/// change what the step sees.
#[test]
fn decoding_the_latent_itself_measures_the_network_without_words() {
    let data = temp_dir("latent-data");
    let mut image = image_io::prepare(&image_io::load(&common::sample("cat-face.png")).unwrap(), 64);
    for y in 0..64 {
        for x in 32..64 {
            let mirrored = *image.get_pixel(63 - x, y);
            image.put_pixel(x, y, mirrored);
        }
    }
    let samples: Vec<Sample> = (0..4)
        .map(|i| Sample {
            package: "samples".into(),
            file: format!("{i}.png"),
            caption: None,
            name: "cat".into(),
            category: "test".into(),
            subcategory: None,
        })
        .collect();
    let pixels: Vec<u8> = (0..4).flat_map(|_| image.as_raw().clone()).collect();
    Dataset::new(64, samples, pixels).unwrap().save(&data, Split::Train).unwrap();

    let model = small_model(0);
    let batch = image_io::to_tensor(&[image]).unwrap();
    let z = model.encode_latent(&batch).unwrap().z;
    let expected: f32 =
        (model.decode_latent(&z).unwrap() - &batch).unwrap().sqr().unwrap().mean_all().unwrap().to_scalar().unwrap();
    let first_step = |decode_latent: bool, name: &str| {
        let run = temp_dir(name);
        train(&small_model(0), &TrainOptions { decode_latent, ..options(&data, &run, 1) }, false, Stop::Schedule)
            .unwrap();
        spae::train::log::read(&run.join("log.csv")).unwrap()[0].pixel_mse
    };
    let latent = first_step(true, "latent");
    assert!((latent - expected as f64).abs() < 1e-4 * expected as f64, "{latent} against {expected}");
    let words = first_step(false, "words");
    assert!((words - expected as f64).abs() > 1e-3 * expected as f64, "the words decode otherwise: {words}");
}

/// The relaxed word choice changes only the gradient: the first step decodes the same
/// words to the same pixel error as straight through (a training run is reproducible,
/// see above), but the encoder then learns otherwise.
#[test]
fn the_relaxed_choice_decodes_the_words_and_changes_the_encoder_s_gradient() {
    let data = temp_dir("relaxed-data");
    tiny_dataset(&data);
    let run_with = |relaxed: Option<RelaxedOptions>, name: &str| {
        let (model, run) = (small_model(0), temp_dir(name));
        train(&model, &TrainOptions { relaxed, ..options(&data, &run, 1) }, false, Stop::Schedule).unwrap();
        (spae::train::log::read(&run.join("log.csv")).unwrap()[0].pixel_mse, common::weights(&model))
    };
    let (straight, straight_weights) = run_with(None, "straight");
    let (relaxed, relaxed_weights) = run_with(Some(RelaxedOptions { candidates: 8, temperature: 0.5 }), "relaxed");
    assert!((straight - relaxed).abs() < 1e-5 * straight, "{straight} against {relaxed}");
    let largest_difference = |prefix: &str| {
        straight_weights
            .iter()
            .zip(&relaxed_weights)
            .filter(|((name, _), _)| name.starts_with(prefix))
            .flat_map(|((_, a), (_, b))| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0f32, f32::max)
    };
    assert!(largest_difference("encoder.") > 1e-4, "the encoder's gradient changed");
}

/// Training's 8-bit search finds the exact search's words on these images (its agreement
/// is checked in tests/saq.rs), so a run with it is the same run.
#[test]
fn training_with_the_quantized_search_is_training_with_the_exact_search() {
    let data = temp_dir("quantized-data");
    tiny_dataset(&data);
    let exact = small_model(0);
    train(&exact, &options(&data, &temp_dir("exact"), 3), false, Stop::Schedule).unwrap();
    let quantized = small_model(0);
    let search = TrainingSearch::Quantized(QuantizedOptions { shortlist: 16 });
    let run = temp_dir("quantized");
    train(&quantized, &TrainOptions { search, ..options(&data, &run, 3) }, false, Stop::Schedule).unwrap();
    assert_eq!(log_steps(&run), vec![1, 2, 3]);
    assert_same_weights(&common::weights(&exact), &quantized, "after training with the quantized search");
}

/// `spae bench-train`'s count of a step's arithmetic, against the network's convolutions
/// listed by hand: forward multiply-adds x 2 (the CNN's, and the semantic branch's two
/// products over the 21 cells of layers 1-3), times 3 with the backward pass, plus the
/// exact search of an image's 597 SAQ targets; without semantic guidance no semantic loss.
#[test]
fn the_benchmark_counts_a_steps_arithmetic() {
    let data = temp_dir("bench-data");
    tiny_dataset(&data);
    let run = temp_dir("bench-run");
    let model = small_model(0);
    let bench = spae::train::benchmark(&model, &options(&data, &run, 10), Split::Train, 2).unwrap();
    assert_eq!(bench.records.len(), 2);
    assert!(!bench.semantic_loss);
    assert!(bench.search_agreement.is_none(), "the exact search agrees with itself");
    // (out, in, kernel, output side) of the convolutions, channels 8 / 16 / 32, one
    // residual block a level, a 64 px image, a 16 x 16 latent of 576 channels; the
    // decoder's last two (the second of level 2's block and conv_out) follow apart.
    let convolutions: [(usize, usize, usize, usize); 20] = [
        // Encoder: conv_in, level 0 (block, downsample), level 1 (block with skip,
        // downsample), level 2 (block with skip), conv_out.
        (8, 3, 3, 64),
        (8, 8, 3, 64),
        (8, 8, 3, 64),
        (8, 8, 3, 32),
        (16, 8, 3, 32),
        (16, 16, 3, 32),
        (16, 8, 1, 32),
        (16, 16, 3, 16),
        (32, 16, 3, 16),
        (32, 32, 3, 16),
        (32, 16, 1, 16),
        (576, 32, 1, 16),
        // Decoder: conv_in, level 0 (block, upsampling convolution), level 1 (the same),
        // level 2's block's first convolution.
        (32, 576, 1, 16),
        (32, 32, 3, 16),
        (32, 32, 3, 16),
        (16, 32, 3, 32),
        (16, 16, 3, 32),
        (16, 16, 3, 32),
        (8, 16, 3, 64),
        (8, 8, 3, 64),
    ];
    let forward: usize = convolutions.iter().map(|&(o, c, k, side)| 2 * o * c * k * k * side * side).sum();
    let conv_out = 2 * 3 * 8 * 9 * 64 * 64;
    let decoder_block = 2 * 8 * 8 * 9 * 64 * 64;
    let branch = model.config().semantic_branch.as_ref().expect("the default config has a branch");
    assert_eq!(branch.layers, 3);
    let projector = 2 * 21 * (spae::model::config::TEACHER_FEATURES * branch.hidden + branch.hidden * 576);
    let search = 597 * 2 * 16_384 * 576;
    let expected = (3 * (forward + decoder_block + conv_out + projector) + search) as f64;
    assert!((bench.flops_per_image - expected).abs() < 1e-6 * expected, "{} vs {expected}", bench.flops_per_image);
}

/// The whole split (4 images) in every batch, decoded from all layers.
fn decoder_options(data: &Path, run: &Path, steps: u64) -> RunOptions {
    RunOptions { batch_size: 4, full_prefix_share: 1.0, ..run_options(data, run, steps) }
}

/// `train-decoder` fits the decoder alone to the words `encode` gives: the first step's
/// pixel error is that of decoding each image's encoded pyramid (computed here image by
/// image; the batch of 4 holds the whole split), only decoder weights move, the run's
/// word cache holds the encoded words, and a stopped run resumes to the uninterrupted
/// one. Word caches of another encoder, and runs of `spae train`, are refused.
#[test]
fn the_decoder_stage_trains_the_decoder_alone_on_the_encoder_s_words() {
    let data = temp_dir("decoder-data");
    tiny_dataset(&data);
    let split = Dataset::load(&data, Split::Train, 64).unwrap();
    let model = small_model(0);
    let pyramids: Vec<Pyramid> = (0..split.len()).map(|i| model.encode(&split.image(i)).unwrap()).collect();
    let zhat = saq::dequantize(&pyramids, model.codebook(), model.shape().layers()).unwrap();
    let pixels = split.batch(&[0, 1, 2, 3], &[false; 4]).unwrap();
    let expected: f32 = (model.decode_latent(&zhat).unwrap() - &pixels)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap();

    let before = common::weights(&model);
    let straight = temp_dir("decoder-straight");
    train_decoder(&model, &decoder_options(&data, &straight, 3), false, Stop::Schedule).unwrap();
    let first = spae::train::log::read(&straight.join("log.csv")).unwrap()[0].pixel_mse;
    assert!((first - expected as f64).abs() < 1e-4 * expected as f64, "{first} against {expected}");
    assert_eq!(log_steps(&straight), vec![1, 2, 3]);
    let after = common::weights(&model);
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a != b, name.starts_with("decoder."), "{name}: only the decoder trains");
    }
    let cached = candle_core::safetensors::load(straight.join(WORDS_FILE), &candle_core::Device::Cpu).unwrap();
    let cached: Vec<Vec<u32>> = cached["words"].to_vec2().unwrap();
    let encoded: Vec<Vec<u32>> = pyramids.iter().map(|p| p.words().collect()).collect();
    assert_eq!(cached, encoded);
    let exported = SpaeModel::load(straight.join("export"), common::codebook()).unwrap();
    assert_eq!(common::weights(&exported), after);
    // Its log is exported beside the joint run's, which it leaves alone.
    assert!(straight.join("export").join(EXPORTED_DECODER_LOG).exists());
    assert!(!straight.join("export").join(spae::train::EXPORTED_LOG).exists());

    let stopped = temp_dir("decoder-stopped");
    train_decoder(&small_model(0), &decoder_options(&data, &stopped, 3), false, Stop::AtStep(2)).unwrap();
    let resumed = small_model(9);
    train_decoder(&resumed, &decoder_options(&data, &stopped, 3), true, Stop::Schedule).unwrap();
    assert_eq!(log_steps(&stopped), vec![1, 2, 3]);
    assert_same_weights(&after, &resumed, "resumed");

    // Without its checkpoint the cache meets a model it was not made with.
    std::fs::remove_file(stopped.join("checkpoint.json")).unwrap();
    let error = train_decoder(&small_model(9), &decoder_options(&data, &stopped, 3), true, Stop::Schedule)
        .unwrap_err()
        .to_string();
    assert!(error.contains(WORDS_FILE) && error.contains("another encoder"), "{error}");
    // A run of `spae train` has a checkpoint but no words.
    let joint = temp_dir("decoder-joint");
    train(&small_model(0), &options(&data, &joint, 1), false, Stop::Schedule).unwrap();
    let error = train_decoder(&small_model(0), &decoder_options(&data, &joint, 3), true, Stop::Schedule)
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a train-decoder run"), "{error}");
}
