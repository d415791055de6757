//! Perceptual loss (docs/method.md section 4): the paper uses LPIPS; no LPIPS or VGG weights can
//! be had here, so the distance is taken between the frozen teacher's early features
//! (EfficientNet-Lite0 after its stem and first stages, at the model's resolution), each
//! layer's squared difference normalised by the original's mean squared activation.

use anyhow::Result;
use candle_core::Tensor;

use crate::teacher::efficientnet::{normalize, EfficientNetLite0};

/// Stages of the teacher compared (after the stem): edges, textures, small parts.
pub const STAGES: usize = 3;

/// Perceptual distance between reconstructions and originals (pixels in -1..1); the
/// gradient reaches the reconstruction only.
pub fn loss(teacher: &EfficientNetLite0, reconstruction: &Tensor, original: &Tensor) -> Result<Tensor> {
    let ours = teacher.stage_features(&normalize(reconstruction)?, STAGES)?;
    let theirs = teacher.stage_features(&normalize(&original.detach())?, STAGES)?;
    let mut total: Option<Tensor> = None;
    for (a, b) in ours.iter().zip(&theirs) {
        let b = b.detach();
        let scale = b.sqr()?.mean_all()?.to_scalar::<f32>()? as f64 + 1e-6;
        let term = ((a - &b)?.sqr()?.mean_all()? / scale)?;
        total = Some(match total {
            Some(t) => (t + term)?,
            None => term,
        });
    }
    Ok((total.expect("at least the stem") / ours.len() as f64)?)
}
