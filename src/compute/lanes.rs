//! Arithmetic written so that the compiler vectorises the loops it sits in: sums kept in
//! sixteen partial sums, and a branch-free `e^x` (libm's `expf` is a call per value).

/// Sum of `f(v)` with sixteen partial sums, so that it vectorizes.
#[inline(always)]
pub fn sum_16(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut partial = [0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (p, &v) in partial.iter_mut().zip(chunk) {
            *p += f(v);
        }
    }
    partial.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

/// a . b in 16 independent running sums (which the compiler can keep in vector
/// registers), added up at the end.
#[inline(always)]
pub fn dot_16(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for (lane, (p, q)) in lanes.iter_mut().zip(x.iter().zip(y)) {
            *lane += p * q;
        }
    }
    let tail = a.len() - a.len() % 16;
    let rest: f32 = a[tail..].iter().zip(&b[tail..]).map(|(p, q)| p * q).sum();
    lanes.iter().sum::<f32>() + rest
}

/// `e^x` to a relative error of about `2e-7 + 6e-8 |x|` (the second term from rounding
/// `x log2 e`), branch-free so that loops over it vectorize:
/// `2^(x log2 e)` split into an integer power (built in the exponent bits) and a degree-6
/// polynomial for the fraction in [-0.5, 0.5].
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let y = x.clamp(-87.0, 88.0) * std::f32::consts::LOG2_E;
    // Round to nearest by the 1.5 * 2^23 trick (exact for |y| < 2^22).
    let n = (y + 12_582_912.0) - 12_582_912.0;
    let f = y - n;
    let p = 1.0
        + f * (std::f32::consts::LN_2
            + f * (0.240_226_5
                + f * (0.055_504_11 + f * (0.009_618_129 + f * (0.001_333_355_8 + f * 0.000_154_035_3)))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.04;
            let (got, want) = (exp(x), x.exp());
            assert!((got - want).abs() <= (3e-7 + 1e-7 * x.abs()) * want, "exp({x}) = {got}, want {want}");
        }
        assert!(exp(-1000.0) < 1e-37 && exp(1000.0).is_finite());
    }

    #[test]
    fn sums_in_sixteen_lanes_are_sums() {
        let values: Vec<f32> = (0..100).map(|i| i as f32 * 0.5 - 7.0).collect();
        let want: f64 = values.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert!((sum_16(&values, |v| v * v) as f64 - want).abs() < 1e-3 * want);
        assert_eq!(sum_16(&[], |v| v), 0.0);
    }
}
