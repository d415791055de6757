//! The matrix-product convolution against candle's own conv2d: outputs and gradients.

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

#[test]
fn matches_candle_conv2d_forward_and_backward() {
    for (in_c, out_c, k, stride, size) in [(3, 8, 3, 1, 10), (8, 4, 3, 2, 8), (6, 5, 1, 1, 7)] {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let conv = conv2d(in_c, out_c, k, stride, vb).unwrap();
        let weight = varmap.data().lock().unwrap()["weight"].clone();
        let bias = varmap.data().lock().unwrap()["bias"].clone();
        bias.set(&random(&[out_c], 3)).unwrap();
        let x = Var::from_tensor(&random(&[2, in_c, size, size], 1)).unwrap();

        let ours = conv.forward(x.as_tensor()).unwrap();
        let reference = x
            .as_tensor()
            .conv2d(weight.as_tensor(), k / 2, stride, 1, 1)
            .unwrap()
            .broadcast_add(&bias.as_tensor().reshape((1, out_c, 1, 1)).unwrap())
            .unwrap();
        assert_eq!(ours.dims(), reference.dims());
        assert!(max_diff(&ours, &reference) < 1e-5, "forward {in_c}->{out_c} k{k} s{stride}");

        let upstream = random(ours.dims(), 2);
        let g_ours = (ours * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (reference * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        for var in [&x, &weight, &bias] {
            let (a, b) = (g_ours.get(var).unwrap(), g_ref.get(var).unwrap());
            assert!(max_diff(a, b) < 1e-4, "gradient {in_c}->{out_c} k{k} s{stride}");
        }
    }
}
