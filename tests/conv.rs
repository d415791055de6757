//! The matrix-product convolution against candle's own conv2d, and the fused GroupNorm + SiLU
//! against candle's GroupNorm and silu: outputs and gradients.

mod common;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use spae::compute::conv::conv2d;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(common::random_values(n, seed, 1.0), shape, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

/// Our convolution and its three gradients against candle's conv2d + bias and autograd,
/// within `tolerance` relative to the reference's largest entry.
fn check_against_candle(batch: usize, in_c: usize, out_c: usize, k: usize, stride: usize, size: usize, tolerance: f32) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let conv = conv2d(in_c, out_c, k, stride, vb).unwrap();
    let weight = varmap.data().lock().unwrap()["weight"].clone();
    let bias = varmap.data().lock().unwrap()["bias"].clone();
    bias.set(&random(&[out_c], 3)).unwrap();
    let x = Var::from_tensor(&random(&[batch, in_c, size, size], 1)).unwrap();

    let ours = conv.forward(x.as_tensor()).unwrap();
    let reference = x
        .as_tensor()
        .conv2d(weight.as_tensor(), k / 2, stride, 1, 1)
        .unwrap()
        .broadcast_add(&bias.as_tensor().reshape((1, out_c, 1, 1)).unwrap())
        .unwrap();
    assert_eq!(ours.dims(), reference.dims());
    assert!(relative_diff(&ours, &reference) < tolerance, "forward {in_c}->{out_c} k{k} s{stride}");

    let upstream = random(ours.dims(), 2);
    let g_ours = (ours * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
    let g_ref = (reference * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, var) in [("x", &x), ("weight", &weight), ("bias", &bias)] {
        let (a, b) = (g_ours.get(var).unwrap(), g_ref.get(var).unwrap());
        assert!(
            relative_diff(a, b) < tolerance,
            "{name} gradient {in_c}->{out_c} k{k} s{stride}: {}",
            relative_diff(a, b)
        );
    }
}

#[test]
fn matches_candle_conv2d_forward_and_backward() {
    // A 5 x 5 kernel (its input gradient through the flipped kernel, as for 3 x 3 and
    // 1 x 1 at stride 1); the last: more images than threads, and channels and positions
    // that fill no whole 16 x 16 tile of the weight gradient's transposes. The cases run
    // one after another on the same threads, so each finds buffers another size left.
    let cases =
        [(2, 3, 8, 3, 1, 10), (2, 8, 4, 3, 2, 8), (2, 6, 5, 1, 1, 7), (2, 4, 3, 5, 1, 9), (5, 20, 17, 3, 1, 19)];
    for (batch, in_c, out_c, k, stride, size) in cases {
        check_against_candle(batch, in_c, out_c, k, stride, size, 1e-5);
    }
}

/// Images whose patch matrices exceed a band (2^18 entries) are worked through a band of
/// output lines at a time, the last band shorter: stride 1 with more input than output
/// channels and the reverse (the input gradient's patches then the wider), stride 2 (the
/// input gradient added back band by band, bands overlapping on the input), a 5 x 5 and
/// a 1 x 1 kernel.
#[test]
fn large_images_are_worked_through_in_bands() {
    let cases = [
        (2, 32, 8, 3, 1, 128),
        (1, 8, 32, 3, 1, 128),
        (2, 32, 8, 3, 2, 250),
        (1, 16, 8, 5, 1, 96),
        (1, 64, 32, 1, 1, 128),
    ];
    for (batch, in_c, out_c, k, stride, size) in cases {
        check_against_candle(batch, in_c, out_c, k, stride, size, 1e-5);
    }
}

#[test]
fn patch_matrix_matches_stacked_shifted_views_forward_and_backward() {
    use spae::compute::conv::{patches, shifted_views, Padding};
    // (channels, height, width, kernel, stride, padding): symmetric, TensorFlow's
    // asymmetric "SAME", inputs smaller than the kernel.
    let cases = [
        (3, 9, 7, 3, 1, Padding::same(3)),
        (2, 9, 8, 3, 2, Padding::tensorflow_same(9, 3, 2)),
        (2, 6, 6, 5, 2, Padding::tensorflow_same(6, 5, 2)),
        (1, 1, 1, 3, 1, Padding::same(3)),
        (2, 2, 3, 5, 2, Padding::tensorflow_same(2, 5, 2)),
        (1, 4, 4, 3, 2, Padding { before: 0, after: 2 }),
    ];
    for (c, h, w, k, s, padding) in cases {
        let x = Var::from_tensor(&random(&[2, c, h, w], 5)).unwrap();
        let (ours, oh, ow) = patches(x.as_tensor(), k, s, padding).unwrap();
        let views = shifted_views(x.as_tensor(), k, s, padding).unwrap();
        let reference = Tensor::stack(&views, 2).unwrap().reshape((2, c * k * k, oh * ow)).unwrap();
        assert_eq!(max_diff(&ours, &reference), 0.0, "forward c{c} {h}x{w} k{k} s{s} {padding:?}");
        let upstream = random(ours.dims(), 6);
        let g_ours = (ours * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (reference * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (g_ours.get(&x).unwrap(), g_ref.get(&x).unwrap());
        assert!(max_diff(a, b) < 1e-5, "gradient c{c} {h}x{w} k{k} s{s} {padding:?}");
    }
}

#[test]
fn upsampling_matches_candle_forward_and_backward() {
    for (c, h, w, f) in [(3, 4, 5, 2), (2, 1, 1, 2), (4, 6, 2, 2), (3, 1, 1, 16), (2, 2, 3, 4), (2, 3, 2, 1)] {
        let x = Var::from_tensor(&random(&[2, c, h, w], 8)).unwrap();
        let ours = spae::compute::upsample::upsample(x.as_tensor(), f).unwrap();
        let reference = x.as_tensor().upsample_nearest2d(f * h, f * w).unwrap();
        assert_eq!(ours.dims(), reference.dims());
        assert_eq!(max_diff(&ours, &reference), 0.0, "forward {c}x{h}x{w} by {f}");
        let upstream = random(ours.dims(), 9);
        let g_ours = (ours * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (reference * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(g_ours.get(&x).unwrap(), g_ref.get(&x).unwrap()) < 1e-5, "gradient {c}x{h}x{w} by {f}");
    }
}

#[test]
fn block_means_match_candle_forward_and_backward() {
    for (c, h, w, f) in [(3, 4, 6, 2), (2, 16, 16, 16), (2, 8, 4, 4), (1, 3, 3, 1)] {
        let x = Var::from_tensor(&random(&[2, c, h, w], 11)).unwrap();
        let ours = spae::compute::upsample::block_mean(x.as_tensor(), f).unwrap();
        let reference = x.as_tensor().avg_pool2d(f).unwrap();
        assert_eq!(ours.dims(), reference.dims());
        assert!(max_diff(&ours, &reference) < 1e-6, "forward {c}x{h}x{w} by {f}");
        let upstream = random(ours.dims(), 12);
        let g_ours = (ours * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (reference * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(g_ours.get(&x).unwrap(), g_ref.get(&x).unwrap()) < 1e-6, "gradient {c}x{h}x{w} by {f}");
    }
    assert!(spae::compute::upsample::block_mean(&random(&[1, 1, 6, 6], 1), 4).is_err());
}

/// max |a - b| / max |b|: the relative difference of two tensors.
fn relative_diff(a: &Tensor, b: &Tensor) -> f32 {
    let scale: f32 = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
    max_diff(a, b) / scale.max(1e-12)
}

#[test]
fn fused_group_norm_silu_matches_candle_forward_and_backward() {
    use spae::compute::group_norm::group_norm_silu;
    for (batch, channels, groups, size, seed) in [(2, 8, 4, 5, 10), (3, 6, 1, 4, 20), (1, 16, 8, 3, 30)] {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let ours = group_norm_silu(groups, channels, 1e-6, vb).unwrap();
        let (weight, bias) = {
            let data = varmap.data().lock().unwrap();
            (data["weight"].clone(), data["bias"].clone())
        };
        // Scales and shifts away from 1 and 0, and an input with a non-zero mean.
        weight.set(&random(&[channels], seed).affine(1.0, 1.5).unwrap()).unwrap();
        bias.set(&random(&[channels], seed + 1)).unwrap();
        let x = Var::from_tensor(&random(&[batch, channels, size, size], seed + 2).affine(3.0, 0.7).unwrap()).unwrap();

        let y = ours.forward(x.as_tensor()).unwrap();
        let reference =
            candle_nn::GroupNorm::new(weight.as_tensor().clone(), bias.as_tensor().clone(), channels, groups, 1e-6)
                .unwrap()
                .forward(x.as_tensor())
                .unwrap()
                .silu()
                .unwrap();
        assert!(relative_diff(&y, &reference) < 1e-5, "forward, {channels} channels in {groups} groups");

        let upstream = random(y.dims(), seed + 3);
        let g_ours = (y * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let g_reference = (reference * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, var) in [("x", &x), ("weight", &weight), ("bias", &bias)] {
            let (a, b) = (g_ours.get(var.as_tensor()).unwrap(), g_reference.get(var.as_tensor()).unwrap());
            let diff = relative_diff(a, b);
            assert!(
                diff < 1e-4,
                "gradient of {name} differs by {diff} (relative), {channels} channels in {groups} groups"
            );
        }
    }
}

/// The weight gradient sums its images in image order, so the same batch gives the same
/// gradient to the bit however the images were shared among threads (a run repeats
/// exactly): more images than threads, computed again several times.
#[test]
fn the_weight_gradient_repeats_to_the_bit() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let conv = conv2d(24, 16, 3, 1, vb).unwrap();
    let weight = varmap.data().lock().unwrap()["weight"].clone();
    let x = Var::from_tensor(&random(&[16, 24, 20, 20], 1)).unwrap();
    let upstream = random(&[16, 16, 20, 20], 2);
    let gradient = || -> Vec<f32> {
        let grads = (conv.forward(x.as_tensor()).unwrap() * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        grads.get(&weight).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    };
    let first = gradient();
    for _ in 0..8 {
        assert!(gradient().iter().zip(&first).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
