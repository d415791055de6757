//! Reconstruction metrics (docs/method.md section 8): PSNR and SSIM on 8-bit RGB images.

use image::RgbImage;

/// Peak signal-to-noise ratio in dB over all channels (peak 255); infinite for equal images.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let n = a.as_raw().len() as f64;
    let mse: f64 = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>() / n;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// PSNR in dB of a mean squared error over values in -1..1, the model's pixels before they
/// are rounded to 8 bits: they span 2, so 10 log10(2^2 / mse).
pub fn psnr_of_unit_range_mse(mse: f64) -> f64 {
    10.0 * (4.0 / mse.max(1e-12)).log10()
}

/// Structural similarity (Wang et al. 2004): 11 x 11 Gaussian window (sigma 1.5),
/// K1 = 0.01, K2 = 0.03, on each channel, averaged over valid window positions and channels.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    const RADIUS: usize = 5;
    let (w, h) = (a.width() as usize, a.height() as usize);
    assert!(w > 2 * RADIUS && h > 2 * RADIUS, "SSIM needs images larger than its window");
    let weights: Vec<f64> =
        (0..=2 * RADIUS).map(|i| (-((i as f64 - RADIUS as f64).powi(2)) / (2.0 * 1.5 * 1.5)).exp()).collect();
    let total: f64 = weights.iter().sum::<f64>().powi(2);
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mut sum = 0.0;
    let mut count = 0usize;
    for c in 0..3 {
        let px = |img: &RgbImage, x: usize, y: usize| img.get_pixel(x as u32, y as u32).0[c] as f64;
        for y in RADIUS..h - RADIUS {
            for x in RADIUS..w - RADIUS {
                let (mut ma, mut mb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for dy in 0..=2 * RADIUS {
                    for dx in 0..=2 * RADIUS {
                        let wgt = weights[dy] * weights[dx] / total;
                        let (va, vb) =
                            (px(a, x + dx - RADIUS, y + dy - RADIUS), px(b, x + dx - RADIUS, y + dy - RADIUS));
                        ma += wgt * va;
                        mb += wgt * vb;
                        saa += wgt * va * va;
                        sbb += wgt * vb * vb;
                        sab += wgt * va * vb;
                    }
                }
                let (var_a, var_b, cov) = (saa - ma * ma, sbb - mb * mb, sab - ma * mb);
                sum += ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (var_a + var_b + c2));
                count += 1;
            }
        }
    }
    sum / count as f64
}
