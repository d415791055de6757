//! Semantic guidance against a scalar re-computation of its cross-entropy, and the
//! teacher's relevance on a sample image.

mod common;

use std::path::Path;

use candle_core::{Device, Tensor, Var};
use spae::pyramid::saq;
use spae::pyramid::{CellTarget, PyramidShape};
use spae::teacher::relevance::{text_words, SemanticTeacher};
use spae::train::semantic::{loss, SemanticOptions, Target};

const DIM: usize = 576;
const G: usize = 16;

#[test]
fn loss_matches_a_scalar_cross_entropy() {
    let codebook = common::small_codebook(512);
    let shape = PyramidShape::new(G, 6).unwrap();
    let z_values = common::random_values(DIM * G * G, 11, 0.3);
    let z = Var::from_tensor(&Tensor::from_vec(z_values.clone(), (1, DIM, G, G), &Device::Cpu).unwrap()).unwrap();
    let quantized = saq::quantize(z.as_tensor(), &codebook, &shape, CellTarget::Mean).unwrap();
    let target: Target = vec![(3, 0.5), (40, 0.3), (100, 0.2)];
    let options = SemanticOptions {
        weight: 2.0,
        layers: 3,
        temperature: 0.7,
        relevance_temperature: 0.05,
        frequency_penalty: 0.0,
        distinct_layers: 0,
    };
    let value =
        loss(z.as_tensor(), &[], &quantized.prefixes, &codebook, &shape, CellTarget::Mean, &[&target], &options)
            .unwrap();

    let prefix: Vec<Vec<f32>> =
        quantized.prefixes.iter().map(|p| p.flatten_all().unwrap().to_vec1().unwrap()).collect();
    let mut expected = 0.0f64;
    let mut weights = 0.0f64;
    for layer in 1..=3usize {
        let (s, f) = (shape.grid_size(layer), shape.cell_size(layer));
        let mut layer_sum = 0.0;
        for cell in 0..s * s {
            let (r, c) = (cell / s, cell % s);
            let cell_mean = |v: &[f32], d: usize| {
                let mut sum = 0.0f64;
                for y in r * f..(r + 1) * f {
                    for x in c * f..(c + 1) * f {
                        sum += v[d * G * G + y * G + x] as f64;
                    }
                }
                sum / (f * f) as f64
            };
            let t: Vec<f64> = (0..DIM)
                .map(|d| {
                    layer as f64 * cell_mean(&z_values, d)
                        - if layer > 1 { (layer - 1) as f64 * cell_mean(&prefix[layer - 2], d) } else { 0.0 }
                })
                .collect();
            let logits: Vec<f64> = (0..codebook.len() as u32)
                .map(|k| -codebook.row(k).iter().zip(&t).map(|(&e, &x)| (x - e as f64).powi(2)).sum::<f64>() / 0.7)
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
            layer_sum += -target.iter().map(|&(k, q)| q as f64 * (logits[k as usize] - lse)).sum::<f64>();
        }
        let w = 0.5f64.powi(layer as i32 - 1);
        expected += w * layer_sum / (s * s) as f64;
        weights += w;
    }
    expected *= 2.0 / weights;
    let got = value.to_scalar::<f32>().unwrap() as f64;
    assert!((got - expected).abs() < 1e-3 * expected.abs().max(1.0), "{got} vs {expected}");
    let grads = value.backward().unwrap();
    let grad = grads.get(&z).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(grad > 0.0, "the loss reaches the encoder output");
}

/// Where the semantic branch names the first layers, their cell targets are its
/// projections, and the loss reaches them (and not z).
#[test]
fn the_loss_of_named_targets_matches_a_scalar_cross_entropy() {
    let codebook = common::small_codebook(512);
    let shape = PyramidShape::new(G, 6).unwrap();
    let z = Var::from_tensor(&Tensor::zeros((1, DIM, G, G), candle_core::DType::F32, &Device::Cpu).unwrap()).unwrap();
    let quantized = saq::quantize(z.as_tensor(), &codebook, &shape, CellTarget::Mean).unwrap();
    let named: Vec<Var> = (1..=2)
        .map(|l| {
            let s = shape.grid_size(l);
            let values = common::random_values(DIM * s * s, 50 + l as u64, 0.4);
            Var::from_tensor(&Tensor::from_vec(values, (1, DIM, s, s), &Device::Cpu).unwrap()).unwrap()
        })
        .collect();
    let given: Vec<Tensor> = named.iter().map(|v| v.as_tensor().clone()).collect();
    let target: Target = vec![(7, 0.6), (300, 0.4)];
    let options = SemanticOptions {
        weight: 1.0,
        layers: 2,
        temperature: 1.0,
        relevance_temperature: 0.05,
        frequency_penalty: 0.0,
        distinct_layers: 0,
    };
    let value =
        loss(z.as_tensor(), &given, &quantized.prefixes, &codebook, &shape, CellTarget::Mean, &[&target], &options)
            .unwrap();

    let (mut expected, mut weights) = (0.0f64, 0.0f64);
    for (i, t) in given.iter().enumerate() {
        let s = t.dim(2).unwrap();
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let mut layer_sum = 0.0;
        for cell in 0..s * s {
            let logits: Vec<f64> = (0..codebook.len() as u32)
                .map(|k| {
                    -(0..DIM).map(|d| (v[d * s * s + cell] as f64 - codebook.row(k)[d] as f64).powi(2)).sum::<f64>()
                })
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
            layer_sum += -target.iter().map(|&(k, q)| q as f64 * (logits[k as usize] - lse)).sum::<f64>();
        }
        let w = 0.5f64.powi(i as i32);
        expected += w * layer_sum / (s * s) as f64;
        weights += w;
    }
    expected /= weights;
    let got = value.to_scalar::<f32>().unwrap() as f64;
    assert!((got - expected).abs() < 1e-3 * expected.abs().max(1.0), "{got} vs {expected}");
    let grads = value.backward().unwrap();
    for v in &named {
        let grad = grads.get(v).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(grad > 0.0, "the loss reaches the named targets");
    }
    assert!(grads.get(&z).is_none(), "the named layers' loss does not reach z");
}

/// With distinct words on layer 2, layer 1's cell keeps the whole target and each of layer
/// 2's four cells is pulled to a word of its own: not layer 1's word, not another cell's,
/// handed out best log p + log q first. Recomputed here in f64 from the distances.
#[test]
fn distinct_layers_give_each_cell_its_own_word() {
    let codebook = common::small_codebook(512);
    let shape = PyramidShape::new(G, 6).unwrap();
    let z = Tensor::zeros((1, DIM, G, G), candle_core::DType::F32, &Device::Cpu).unwrap();
    let quantized = saq::quantize(&z, &codebook, &shape, CellTarget::Mean).unwrap();
    let named: Vec<Tensor> = (1..=2)
        .map(|l| {
            let s = shape.grid_size(l);
            let values = common::random_values(DIM * s * s, 70 + l as u64, 0.4);
            Tensor::from_vec(values, (1, DIM, s, s), &Device::Cpu).unwrap()
        })
        .collect();
    let cells: Vec<Vec<Vec<f64>>> = named
        .iter()
        .map(|t| {
            let s = t.dim(2).unwrap();
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            (0..s * s).map(|c| (0..DIM).map(|d| v[d * s * s + c] as f64).collect()).collect()
        })
        .collect();
    let logits = |t: &[f64]| -> Vec<f64> {
        (0..codebook.len() as u32)
            .map(|k| -codebook.row(k).iter().zip(t).map(|(&e, &x)| (x - e as f64).powi(2)).sum::<f64>())
            .collect()
    };
    let log_softmax = |l: Vec<f64>| -> Vec<f64> {
        let max = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + l.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        l.into_iter().map(|x| x - lse).collect()
    };
    let top = log_softmax(logits(&cells[0][0]));
    let first_word = (0..top.len()).max_by(|&a, &b| top[a].total_cmp(&top[b])).unwrap() as u32;
    // Layer 1's own word is among the targets, so the exclusion is exercised.
    let target: Target = vec![(first_word, 0.3), (11, 0.2), (40, 0.15), (99, 0.15), (200, 0.1), (301, 0.1)];
    let options = SemanticOptions {
        weight: 1.0,
        layers: 2,
        temperature: 1.0,
        relevance_temperature: 0.05,
        frequency_penalty: 0.0,
        distinct_layers: 2,
    };
    let value =
        loss(&z, &named, &quantized.prefixes, &codebook, &shape, CellTarget::Mean, &[&target], &options).unwrap();

    let layer_one = -target.iter().map(|&(k, q)| q as f64 * top[k as usize]).sum::<f64>();
    let log_p: Vec<Vec<f64>> = cells[1].iter().map(|t| log_softmax(logits(t))).collect();
    let mut pairs: Vec<(f64, usize, u32, f32)> = Vec::new();
    for (cell, lp) in log_p.iter().enumerate() {
        for &(k, q) in target.iter().filter(|&&(k, _)| k != first_word) {
            pairs.push((lp[k as usize] + (q as f64).ln(), cell, k, q));
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut given: Vec<Option<u32>> = vec![None; 4];
    for (_, cell, k, _) in pairs {
        if given[cell].is_none() && !given.contains(&Some(k)) {
            given[cell] = Some(k);
        }
    }
    let given: Vec<u32> = given.into_iter().map(Option::unwrap).collect();
    let mut distinct = given.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "four cells, four words: {given:?}");
    assert!(!given.contains(&first_word));
    let layer_two = given.iter().enumerate().map(|(cell, &k)| -log_p[cell][k as usize]).sum::<f64>() / 4.0;
    let expected = (layer_one + 0.5 * layer_two) / 1.5;
    let got = value.to_scalar::<f32>().unwrap() as f64;
    assert!((got - expected).abs() < 1e-3 * expected.abs().max(1.0), "{got} vs {expected}");

    // Too few words left for the cells: those without one keep the whole target.
    let short: Target = vec![(first_word, 0.5), (11, 0.5)];
    let value =
        loss(&z, &named, &quantized.prefixes, &codebook, &shape, CellTarget::Mean, &[&short], &options).unwrap();
    let layer_one = -short.iter().map(|&(k, q)| q as f64 * top[k as usize]).sum::<f64>();
    let best = (0..4).max_by(|&a, &b| log_p[a][11].total_cmp(&log_p[b][11])).unwrap();
    let layer_two = (0..4)
        .map(|cell| match cell == best {
            true => -log_p[cell][11],
            false => -short.iter().map(|&(k, q)| q as f64 * log_p[cell][k as usize]).sum::<f64>(),
        })
        .sum::<f64>()
        / 4.0;
    let expected = (layer_one + 0.5 * layer_two) / 1.5;
    let got = value.to_scalar::<f32>().unwrap() as f64;
    assert!((got - expected).abs() < 1e-3 * expected.abs().max(1.0), "{got} vs {expected}");
}

#[test]
fn relevance_ranks_the_image_text_first() {
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let teacher =
        SemanticTeacher::load(&root.join(spae::paths::TEACHER), &root.join(spae::paths::IMAGENET_CLASSES), &codebook)
            .unwrap();
    let image = spae::image_io::prepare(&spae::image_io::load(&common::sample("red-apple.png")).unwrap(), 64);
    let pixels = spae::image_io::to_tensor(&[image]).unwrap();
    let relevance =
        teacher.relevance(&pixels, &["A red apple. apple food".to_string()], vocabulary, 20).unwrap().remove(0);
    assert_eq!(relevance.text_words, vec!["red", "apple", "food"]);
    assert_eq!(relevance.words.len(), 20);
    assert!(relevance.scores.windows(2).all(|w| w[0] >= w[1]));
    for word in ["apple", "food", "red"] {
        assert!(relevance.words.iter().take(8).any(|w| w == word), "{word} in {:?}", relevance.words);
    }
    assert!(!relevance.words.iter().any(|w| w == "the" || w == "and"), "stopwords are never relevant");
    assert_eq!(relevance.classes.len(), 5);
    assert!(relevance.classes.windows(2).all(|w| w[0].1 >= w[1].1));
    assert_eq!(text_words("The cat, the CAT and a dog-house", vocabulary).len(), 3, "cat, dog, house once each");
}

/// Where neither the image's text nor its top classes name a vocabulary word, the relevance
/// says why (naming the classes) instead of scoring every word -1; with anchors it scores.
#[test]
fn an_image_with_no_anchor_words_says_why() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let teacher_at = |codebook: &spae::codebook::Codebook| {
        SemanticTeacher::load(&root.join(spae::paths::TEACHER), &root.join(spae::paths::IMAGENET_CLASSES), codebook)
            .unwrap()
    };
    let image = spae::image_io::prepare(&spae::image_io::load(&common::sample("red-apple.png")).unwrap(), 64);
    let pixels = spae::image_io::to_tensor(&[image]).unwrap();
    // The first 64 lexical words: the teacher's top classes for the apple name none of them.
    let small = common::small_codebook(64);
    let teacher = teacher_at(&small);
    let classes = teacher.relevance(&pixels, &["IMG_0042".to_string()], small.vocabulary(), 1).unwrap().remove(0);
    assert!(classes.text_words.is_empty());
    let why = teacher.scores_or_why(&pixels, "IMG_0042", small.vocabulary()).unwrap().unwrap_err();
    assert!(why.contains("\"IMG_0042\" holds no vocabulary word"), "{why}");
    assert_eq!(why.matches('%').count(), classes.classes.len(), "each top class with its probability: {why}");

    let codebook = common::codebook();
    let scores = teacher_at(&codebook).scores_or_why(&pixels, "IMG_0042", codebook.vocabulary()).unwrap();
    let scores = scores.expect("the full vocabulary names the apple's classes");
    assert_eq!(scores.len(), codebook.len());
    assert!(scores.iter().any(|&s| s > -1.0));
}

/// The fused log-partition op against the same quantities built from candle's ops, and
/// its gradient against candle's autograd of them (within 1e-4 relative).
#[test]
fn the_log_partition_op_matches_candle_s_ops_and_autograd() {
    use spae::compute::log_partition::log_partition;
    let (rows, dim, len, width, scale) = (7, 12, 53, 3, 0.7);
    let device = Device::Cpu;
    let table = Tensor::from_vec(common::random_values(len * dim, 21, 1.0), (len, dim), &device).unwrap();
    let norms = table.sqr().unwrap().sum(1).unwrap();
    let t =
        Var::from_tensor(&Tensor::from_vec(common::random_values(rows * dim, 22, 1.0), (rows, dim), &device).unwrap())
            .unwrap();
    let chosen: Vec<u32> = (0..rows * width).map(|i| ((i * 17 + 5) % len) as u32).collect();

    let ours = log_partition(t.as_tensor(), &table, &norms, scale, &chosen, width).unwrap();
    let logits = ((t.as_tensor().matmul(&table.t().unwrap()).unwrap() * (2.0 * scale)).unwrap()
        - norms.unsqueeze(0).unwrap().broadcast_as((rows, len)).unwrap() * scale)
        .unwrap();
    let max = logits.max_keepdim(1).unwrap().detach();
    let log_z =
        (logits.broadcast_sub(&max).unwrap().exp().unwrap().sum_keepdim(1).unwrap().log().unwrap() + max).unwrap();
    let ids = Tensor::from_vec(chosen.clone(), (rows, width), &device).unwrap();
    let chosen_logits = logits.gather(&ids, 1).unwrap();
    let relative = |a: &Tensor, b: &Tensor| {
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() / scale
    };
    assert!(relative(&ours.log_z, &log_z) < 1e-5);
    assert!(relative(&ours.chosen_logits, &chosen_logits) < 1e-5);
    let argmax: Vec<u32> = logits.argmax(1).unwrap().to_vec1().unwrap();
    assert_eq!(ours.nearest, argmax);

    // Any upstream gradient on both outputs.
    let (u, v) = (
        Tensor::from_vec(common::random_values(rows, 23, 1.0), (rows, 1), &device).unwrap(),
        Tensor::from_vec(common::random_values(rows * width, 24, 1.0), (rows, width), &device).unwrap(),
    );
    let objective =
        |z: &Tensor, c: &Tensor| ((z * &u).unwrap().sum_all().unwrap() + (c * &v).unwrap().sum_all().unwrap()).unwrap();
    let g_ours = objective(&ours.log_z, &ours.chosen_logits).backward().unwrap();
    let g_ref = objective(&log_z, &chosen_logits).backward().unwrap();
    assert!(relative(g_ours.get(&t).unwrap(), g_ref.get(&t).unwrap()) < 1e-4);
    // A second backward pass over the same op, whose kept softmax the first one took.
    let g_again = objective(&ours.log_z, &ours.chosen_logits).backward().unwrap();
    assert!(relative(g_again.get(&t).unwrap(), g_ref.get(&t).unwrap()) < 1e-4);
    assert!(log_partition(t.as_tensor(), &table, &norms, scale, &[len as u32; 21], width).is_err());
}
