//! Streaming average quantization against a scalar re-implementation of docs/method.md section 3.

mod common;

use candle_core::{Device, Tensor, Var};
use spae::codebook::Codebook;
use spae::pyramid::saq;
use spae::pyramid::{CellTarget, Pyramid, PyramidShape};

const DIM: usize = 576;
const G: usize = 16;

fn latent(seed: u64) -> Vec<f32> {
    common::random_values(DIM * G * G, seed, 0.3)
}

/// SAQ by plain loops: per cell, the target l*mean(z) - (l-1)*mean(zhat), brute-force nearest.
fn reference(z: &[f32], codebook: &Codebook, shape: &PyramidShape, cell_target: CellTarget) -> Vec<Vec<u32>> {
    reference_after(z, codebook, shape, cell_target, &[])
}

/// As [`reference`], but the first layers' words are `fixed` rather than searched.
fn reference_after(
    z: &[f32],
    codebook: &Codebook,
    shape: &PyramidShape,
    cell_target: CellTarget,
    fixed: &[Vec<u32>],
) -> Vec<Vec<u32>> {
    let mut sum = vec![0f32; DIM * G * G];
    let mut zhat = vec![0f32; DIM * G * G];
    let mut layers = Vec::new();
    for layer in 1..=shape.layers() {
        let (s, f, l) = (shape.grid_size(layer), G / shape.grid_size(layer), layer as f32);
        let mut words = Vec::new();
        for r in 0..s {
            for c in 0..s {
                let cell: Vec<(usize, usize)> =
                    (r * f..r * f + f).flat_map(|y| (c * f..c * f + f).map(move |x| (y, x))).collect();
                let sampled = match cell_target {
                    CellTarget::Mean => cell.clone(),
                    CellTarget::Dilated => vec![(r * f + f / 2, c * f + f / 2)],
                };
                let target: Vec<f32> = (0..DIM)
                    .map(|d| {
                        let mean = |v: &[f32]| {
                            sampled.iter().map(|&(y, x)| v[d * G * G + y * G + x]).sum::<f32>() / sampled.len() as f32
                        };
                        l * mean(z) - (l - 1.0) * mean(&zhat)
                    })
                    .collect();
                let word = match fixed.get(layer - 1) {
                    Some(words) => words[r * s + c],
                    None => common::brute_force_nearest(codebook, &target),
                };
                for &(y, x) in &cell {
                    for d in 0..DIM {
                        sum[d * G * G + y * G + x] += codebook.row(word)[d];
                    }
                }
                words.push(word);
            }
        }
        for (zh, s) in zhat.iter_mut().zip(&sum) {
            *zh = s / l;
        }
        layers.push(words);
    }
    layers
}

fn quantize(latents: &[Vec<f32>], codebook: &Codebook, cell_target: CellTarget) -> saq::Quantized {
    let shape = PyramidShape::new(G, 6).unwrap();
    let data: Vec<f32> = latents.concat();
    let z = Tensor::from_vec(data, (latents.len(), DIM, G, G), &Device::Cpu).unwrap();
    saq::quantize(&z, codebook, &shape, cell_target).unwrap()
}

#[test]
fn pyramid_shape_counts() {
    let shape = PyramidShape::new(16, 6).unwrap();
    let sizes: Vec<usize> = (1..=6).map(|l| shape.grid_size(l)).collect();
    assert_eq!(sizes, [1, 2, 4, 8, 16, 16]);
    let cumulative: Vec<usize> = (1..=6).map(|l| shape.tokens_in_prefix(l)).collect();
    assert_eq!(cumulative, [1, 5, 21, 85, 341, 597]);
    assert!(PyramidShape::new(12, 6).is_err());
}

#[test]
fn matches_the_scalar_reference_for_cell_means_and_a_batch() {
    let codebook = common::small_codebook(1024);
    let shape = PyramidShape::new(G, 6).unwrap();
    let latents = [latent(1), latent(2)];
    let quantized = quantize(&latents, &codebook, CellTarget::Mean);
    assert_eq!(quantized.pyramids.len(), 2);
    for (z, pyramid) in latents.iter().zip(&quantized.pyramids) {
        let expected = reference(z, &codebook, &shape, CellTarget::Mean);
        for layer in 1..=6 {
            assert_eq!(pyramid.layer(layer), expected[layer - 1].as_slice(), "layer {layer}");
        }
    }
    // The first layer is simply the word nearest the mean of the whole latent.
    let mean: Vec<f32> =
        (0..DIM).map(|d| latents[0][d * G * G..(d + 1) * G * G].iter().sum::<f32>() / (G * G) as f32).collect();
    assert_eq!(quantized.pyramids[0].layer(1), &[common::brute_force_nearest(&codebook, &mean)]);
}

/// SAQ with training's 8-bit search finds the words of the scalar reference's exact one.
#[test]
fn the_quantized_search_gives_the_scalar_reference_s_pyramid() {
    use spae::codebook::quantized::{QuantizedIndex, QuantizedOptions};
    let codebook = common::small_codebook(1024);
    let shape = PyramidShape::new(G, 6).unwrap();
    let latents = [latent(3), latent(4)];
    let z = Tensor::from_vec(latents.concat(), (2, DIM, G, G), &Device::Cpu).unwrap();
    let index = QuantizedIndex::new(&codebook, QuantizedOptions::default()).unwrap();
    let search = saq::Search::Quantized(&index);
    let quantized = saq::quantize_with(&z, &[], &codebook, &shape, CellTarget::Mean, search).unwrap();
    for (z, pyramid) in latents.iter().zip(&quantized.pyramids) {
        let expected = reference(z, &codebook, &shape, CellTarget::Mean);
        for layer in 1..=6 {
            assert_eq!(pyramid.layer(layer), expected[layer - 1].as_slice(), "layer {layer}");
        }
    }
    let agreement = saq::search_agreement(&z, &[], &codebook, &shape, CellTarget::Mean, search).unwrap();
    assert_eq!(agreement, vec![1.0; 6]);
}

#[test]
fn matches_the_scalar_reference_for_dilated_samples() {
    let codebook = common::small_codebook(1024);
    let shape = PyramidShape::new(G, 6).unwrap();
    let z = latent(3);
    let quantized = quantize(std::slice::from_ref(&z), &codebook, CellTarget::Dilated);
    let expected = reference(&z, &codebook, &shape, CellTarget::Dilated);
    for layer in 1..=6 {
        assert_eq!(quantized.pyramids[0].layer(layer), expected[layer - 1].as_slice(), "layer {layer}");
    }
}

#[test]
fn every_prefix_is_the_running_mean_of_its_words() {
    let codebook = common::small_codebook(1024);
    let quantized = quantize(&[latent(4)], &codebook, CellTarget::Mean);
    let pyramid = &quantized.pyramids[0];
    let shape = pyramid.shape();
    for layers in 1..=6 {
        let zhat: Vec<f32> = quantized.prefixes[layers - 1].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(quantized.prefixes[layers - 1].dims(), &[1, DIM, G, G]);
        for &(y, x) in &[(0, 0), (5, 11), (15, 15), (8, 3)] {
            for d in [0, 100, 575] {
                let mean: f32 = (1..=layers)
                    .map(|l| {
                        let f = shape.cell_size(l);
                        codebook.row(pyramid.word(l, y / f, x / f))[d]
                    })
                    .sum::<f32>()
                    / layers as f32;
                assert!((zhat[d * G * G + y * G + x] - mean).abs() < 1e-5, "prefix {layers} at ({y},{x},{d})");
            }
        }
        let dequantized = saq::dequantize(std::slice::from_ref(pyramid), &codebook, layers).unwrap();
        let diff = (dequantized - &quantized.prefixes[layers - 1]).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}

#[test]
fn a_latent_made_of_one_word_quantizes_to_that_word_everywhere() {
    let codebook = common::codebook();
    for word in [0u32, 1234, 16_383] {
        let z: Vec<f32> = (0..DIM).flat_map(|d| std::iter::repeat_n(codebook.row(word)[d], G * G)).collect();
        let quantized = quantize(&[z], &codebook, CellTarget::Mean);
        assert!(quantized.pyramids[0].words().all(|w| w == word), "word {word}");
        assert_eq!(quantized.pyramids[0].words().count(), 597);
    }
}

#[test]
fn pyramid_rejects_wrong_layer_sizes() {
    let shape = PyramidShape::new(G, 6).unwrap();
    let mut layers: Vec<Vec<u32>> = (1..=6).map(|l| vec![0; shape.tokens_in_layer(l)]).collect();
    assert!(Pyramid::new(shape.clone(), layers.clone()).is_ok());
    layers[2].pop();
    assert!(Pyramid::new(shape, layers).is_err());
}

#[test]
fn straight_through_passes_the_gradient_and_commitment_is_the_mean_square() {
    let z = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0, 3.0, 4.0], &Device::Cpu).unwrap()).unwrap();
    let zhat = Tensor::new(&[1.5f32, 1.0, 3.0, 6.0], &Device::Cpu).unwrap();
    let st = saq::straight_through(z.as_tensor(), &zhat).unwrap();
    assert_eq!(st.to_vec1::<f32>().unwrap(), vec![1.5, 1.0, 3.0, 6.0]);
    let weights = Tensor::new(&[1.0f32, 2.0, 3.0, 4.0], &Device::Cpu).unwrap();
    let grads = (st * weights).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(grads.get(&z).unwrap().to_vec1::<f32>().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    let commitment = saq::commitment_loss(z.as_tensor(), &zhat).unwrap();
    // (0.25 + 1 + 0 + 4) / 4
    assert!((commitment.to_scalar::<f32>().unwrap() - 1.3125).abs() < 1e-6);
    let grads = commitment.backward().unwrap();
    // d/dz mean((z - zhat)^2) = 2 (z - zhat) / 4; zhat gets none.
    assert_eq!(grads.get(&z).unwrap().to_vec1::<f32>().unwrap(), vec![-0.25, 0.5, 0.0, -1.0]);
}

#[test]
fn completing_a_prefix_searches_the_rest_against_the_prefix_s_own_latent() {
    let codebook = common::small_codebook(1024);
    let shape = PyramidShape::new(G, 6).unwrap();
    let full = reference(&latent(4), &codebook, &shape, CellTarget::Mean);
    let prefix = &full[..3];
    // zhat_3 by plain loops: the mean of the three words over each position.
    let mut zhat3 = vec![0f32; DIM * G * G];
    for (l, words) in prefix.iter().enumerate() {
        let (s, f) = (shape.grid_size(l + 1), G / shape.grid_size(l + 1));
        for y in 0..G {
            for x in 0..G {
                let row = codebook.row(words[(y / f) * s + x / f]);
                for d in 0..DIM {
                    zhat3[d * G * G + y * G + x] += row[d] / 3.0;
                }
            }
        }
    }
    let expected = reference_after(&zhat3, &codebook, &shape, CellTarget::Mean, prefix);
    let completed = saq::complete(prefix, &codebook, &shape, CellTarget::Mean).unwrap();
    for layer in 1..=6 {
        assert_eq!(completed.layer(layer), expected[layer - 1].as_slice(), "layer {layer}");
    }
    // A complete pyramid is its own completion; bad prefixes are refused.
    assert_eq!(
        saq::complete(&full, &codebook, &shape, CellTarget::Mean).unwrap(),
        Pyramid::new(shape.clone(), full.clone()).unwrap()
    );
    assert!(saq::complete(&[vec![0, 1]], &codebook, &shape, CellTarget::Mean).is_err());
    assert!(saq::complete(&[vec![5000]], &codebook, &shape, CellTarget::Mean).is_err());
}

/// Targets given for the first layers (the semantic branch naming them): those layers'
/// words are the targets' nearest words, and the layers below follow from z with the
/// named words in the running means.
#[test]
fn given_targets_name_the_first_layers_and_the_rest_follow_from_z() {
    let codebook = common::small_codebook(512);
    let shape = PyramidShape::new(G, 6).unwrap();
    let z_values = latent(21);
    let z = Tensor::from_vec(z_values.clone(), (1, DIM, G, G), &Device::Cpu).unwrap();
    let named: Vec<Tensor> = (1..=2)
        .map(|l| {
            let s = shape.grid_size(l);
            let values = common::random_values(DIM * s * s, 30 + l as u64, 0.3);
            Tensor::from_vec(values, (1, DIM, s, s), &Device::Cpu).unwrap()
        })
        .collect();
    let got = saq::quantize_with(&z, &named, &codebook, &shape, CellTarget::Mean, saq::Search::Exact).unwrap();

    let fixed: Vec<Vec<u32>> = named
        .iter()
        .map(|t| {
            let s = t.dim(2).unwrap();
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            (0..s * s)
                .map(|cell| {
                    let target: Vec<f32> = (0..DIM).map(|d| v[d * s * s + cell]).collect();
                    common::brute_force_nearest(&codebook, &target)
                })
                .collect()
        })
        .collect();
    let expected = reference_after(&z_values, &codebook, &shape, CellTarget::Mean, &fixed);
    for layer in 1..=shape.layers() {
        assert_eq!(got.pyramids[0].layer(layer), expected[layer - 1].as_slice(), "layer {layer}");
    }
    let free = saq::quantize(&z, &codebook, &shape, CellTarget::Mean).unwrap();
    assert_ne!(free.pyramids[0].layer(1), got.pyramids[0].layer(1), "the given targets decide layer 1");

    let words = saq::prefix_words(&z, &named, &codebook, &shape, CellTarget::Mean, 3).unwrap();
    assert_eq!(words[0], got.pyramids[0].prefix_words(3));
    // Targets of the wrong shape (layer 2's given for layer 1) are refused.
    let error = saq::quantize_with(&z, &named[1..], &codebook, &shape, CellTarget::Mean, saq::Search::Exact)
        .err()
        .expect("refused");
    assert!(format!("{error}").contains("layer 1's given targets"), "{error}");
}

/// Squared error of the weighted running mean against z over a cell's positions, were
/// `word` added with weight `w` to the weighted sums `sum` (channel-first, like z).
fn cell_error(z: &[f32], sum: &[f32], cell: &[(usize, usize)], word: &[f32], w: f32, total: f32) -> f64 {
    let mut error = 0f64;
    for &(y, x) in cell {
        for (d, e) in word.iter().enumerate() {
            let p = d * G * G + y * G + x;
            error += f64::from(z[p] - (sum[p] + w * e) / total).powi(2);
        }
    }
    error
}

/// Checks a pyramid against the weighted running mean's definition, with sums built from
/// its words alone: each layer from `first_searched` on takes, in every checked cell, a
/// word whose weighted mean is nearest z over the cell (brute force over the codebook),
/// and every prefix dequantizes to the weighted mean of its words. Returns the prefixes.
fn check_weighted(
    z: &[f32],
    pyramid: &Pyramid,
    codebook: &Codebook,
    weights: &[u32],
    first_searched: usize,
) -> Vec<Vec<f32>> {
    let shape = pyramid.shape();
    let mut sum = vec![0f32; DIM * G * G];
    let mut total = 0f32;
    let mut prefixes = Vec::new();
    for layer in 1..=shape.layers() {
        let (s, f, w) = (shape.grid_size(layer), shape.cell_size(layer), weights[layer - 1] as f32);
        total += w;
        if layer >= first_searched {
            // Every cell of layers 1, 4 and 5; a few of the rest.
            let cells: Vec<usize> = if [1, 4, 5].contains(&layer) { (0..s * s).collect() } else { vec![0, s * s - 1] };
            for cell_index in cells {
                let (r, c) = (cell_index / s, cell_index % s);
                let cell: Vec<(usize, usize)> =
                    (r * f..r * f + f).flat_map(|y| (c * f..c * f + f).map(move |x| (y, x))).collect();
                let chosen = cell_error(z, &sum, &cell, codebook.row(pyramid.word(layer, r, c)), w, total);
                let best = (0..codebook.len() as u32)
                    .map(|word| cell_error(z, &sum, &cell, codebook.row(word), w, total))
                    .fold(f64::INFINITY, f64::min);
                assert!(chosen <= best * (1.0 + 1e-5), "layer {layer} cell {cell_index}: {chosen} > {best}");
            }
        }
        for (r, c) in (0..s).flat_map(|r| (0..s).map(move |c| (r, c))) {
            let word = codebook.row(pyramid.word(layer, r, c));
            for y in r * f..r * f + f {
                for x in c * f..c * f + f {
                    for (d, e) in word.iter().enumerate() {
                        sum[d * G * G + y * G + x] += w * e;
                    }
                }
            }
        }
        let expected: Vec<f32> = sum.iter().map(|s| s / total).collect();
        let zhat = saq::dequantize(std::slice::from_ref(pyramid), codebook, layer).unwrap();
        let zhat: Vec<f32> = zhat.flatten_all().unwrap().to_vec1().unwrap();
        let worst = zhat.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "layer {layer}: dequantized off by {worst}");
        prefixes.push(expected);
    }
    prefixes
}

#[test]
fn weighted_layers_choose_the_word_that_minimises_the_weighted_mean_s_error() {
    let codebook = common::small_codebook(256);
    // Uneven from layer 1 on, so that neither w_1 nor any W_l is the plain count.
    let weights = [3, 1, 2, 5, 4, 7];
    let shape = PyramidShape::new(G, 6).unwrap().with_weights(&weights).unwrap();
    let z_values = latent(7);
    let z = Tensor::from_vec(z_values.clone(), (1, DIM, G, G), &Device::Cpu).unwrap();
    let quantized = saq::quantize(&z, &codebook, &shape, CellTarget::Mean).unwrap();
    let pyramid = &quantized.pyramids[0];
    let prefixes = check_weighted(&z_values, pyramid, &codebook, &weights, 1);
    for (layer, expected) in prefixes.iter().enumerate() {
        let got: Vec<f32> = quantized.prefixes[layer].flatten_all().unwrap().to_vec1().unwrap();
        let worst = got.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "layer {}: prefix off by {worst}", layer + 1);
    }
    // The differentiable targets (semantic guidance, the studio's alternatives) are the ones
    // SAQ searched: their nearest words are the pyramid's.
    for layer in 2..=6 {
        let targets = saq::cell_mean_targets(&z, Some(&quantized.prefixes[layer - 2]), &shape, layer).unwrap();
        let s = shape.grid_size(layer);
        let rows: Vec<f32> = targets.permute((0, 2, 3, 1)).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (cell, target) in rows.chunks(DIM).enumerate().filter(|(cell, _)| cell % 7 == 0) {
            let word = common::brute_force_nearest(&codebook, target);
            assert_eq!(word, pyramid.word(layer, cell / s, cell % s), "layer {layer} cell {cell}");
        }
    }
    // Completing the first two layers searches the rest against their own weighted mean.
    let completed =
        saq::complete(&[pyramid.layer(1).to_vec(), pyramid.layer(2).to_vec()], &codebook, &shape, CellTarget::Mean)
            .unwrap();
    assert_eq!((completed.layer(1), completed.layer(2)), (pyramid.layer(1), pyramid.layer(2)));
    let own = saq::dequantize(std::slice::from_ref(pyramid), &codebook, 2).unwrap();
    check_weighted(&own.flatten_all().unwrap().to_vec1().unwrap(), &completed, &codebook, &weights, 3);

    // Another weighting gives other words; the plain mean is weights of 1.
    let plain = saq::quantize(&z, &codebook, &PyramidShape::new(G, 6).unwrap(), CellTarget::Mean).unwrap();
    assert_ne!(plain.pyramids[0].layer(6), pyramid.layer(6));
    let ones = PyramidShape::new(G, 6).unwrap().with_weights(&[1; 6]).unwrap();
    assert_eq!(ones, PyramidShape::new(G, 6).unwrap());
    // Bad weights are refused.
    assert!(PyramidShape::new(G, 6).unwrap().with_weights(&[1; 5]).is_err());
    assert!(PyramidShape::new(G, 6).unwrap().with_weights(&[1, 1, 1, 0, 1, 1]).is_err());
    assert!(PyramidShape::new(G, 6).unwrap().with_weights(&[1, 1, 1, 65, 1, 1]).is_err());
}
