//! Word refinement against the decoder (docs/method.md section 3a, ours): after SAQ has
//! chosen each cell's nearest word, rounds of descent on the pixel error of decoding all
//! layers move appearance words to others the decoder turns into a closer picture, cell by
//! cell. The named layers (the semantic branch's) are never touched, and no image's error
//! rises.

use anyhow::{ensure, Result};
use candle_core::{Tensor, Var};
use image::RgbImage;

use super::SpaeModel;
use crate::eval::metrics::psnr_of_unit_range_mse;
use crate::image_io;
use crate::pyramid::{saq, Pyramid};

/// Step lengths tried in every round, in units of the codebook's root-mean-square word
/// norm, for the cell whose gradient is largest (the others step proportionally less).
pub const STEPS: [f32; 4] = [2.5, 4.0, 6.0, 9.0];

/// The rounds `spae encode`, `spae eval` and the studio's "Refine words" refine for unless
/// told otherwise (the gain levels off by then: with the steps of 1.5-4 word norms, 24
/// rounds added a tenth of a dB at twice the time).
pub const DEFAULT_REFINE_ROUNDS: usize = 12;

/// The most rounds a command accepts (each costs a decoder pass forward and backward and
/// two more forward for each step length).
pub const MAX_REFINE_ROUNDS: usize = 1000;

/// What a refinement did.
#[derive(Clone, Debug, PartialEq)]
pub struct Refinement {
    /// Per image, the sum of squared pixel errors (pixels in -1..1) of decoding all layers,
    /// before and after.
    pub error_before: Vec<f32>,
    pub error_after: Vec<f32>,
    /// Words that differ from SAQ's choice, over all images.
    pub words_changed: usize,
    /// Pixel values per image (3 x R x R), the errors' count.
    pub values_per_image: usize,
}

impl Refinement {
    /// Image `i`'s PSNR in dB (the decoder's output before rounding to 8 bits), before and
    /// after.
    pub fn psnr_db(&self, i: usize) -> (f64, f64) {
        let psnr = |error: f32| psnr_of_unit_range_mse(f64::from(error) / self.values_per_image as f64);
        (psnr(self.error_before[i]), psnr(self.error_after[i]))
    }
}

impl SpaeModel {
    /// The layers whose words the semantic branch names (0 without a naming branch).
    pub fn named_layers(&self) -> usize {
        self.branch
            .as_ref()
            .filter(|b| b.config().mode == super::config::BranchMode::Name)
            .map_or(0, |b| b.config().layers)
    }

    /// One prepared image (R x R) to its pyramid of words, SAQ's appearance words refined
    /// for `rounds` rounds ([`Self::refine`]; 0: SAQ's words, [`Self::encode`]).
    pub fn encode_refined(&self, image: &RgbImage, rounds: usize) -> Result<Pyramid> {
        let pixels = image_io::to_tensor(std::slice::from_ref(image))?;
        let (_, mut quantized) = self.quantize(&pixels)?;
        if rounds > 0 {
            self.refine(&pixels, &mut quantized.pyramids, rounds)?;
        }
        Ok(quantized.pyramids.remove(0))
    }

    /// Refines the appearance words of `pyramids` (those SAQ chose for `pixels`, `batch x 3
    /// x R x R`) for `rounds` rounds. Round r works on one appearance layer, the finest
    /// first and cycling upwards: with g the gradient of the pixel error E with respect to
    /// zhat, each cell's word k gets the proposal q = e(k) - s rho g_c / max |g_c|, where g_c
    /// is the gradient with respect to e(k) (g summed over the cell, times the layer's share
    /// of the running mean) and rho the root-mean-square word norm; the proposed word is the
    /// one nearest q, which minimises a first-order model of E plus a distance penalty. The
    /// step lengths s of [`STEPS`] are tried in turn, each proposing a word for every cell
    /// at once from the words as they stand (the round's gradient, the words an earlier
    /// step length left). The proposal is decoded whole, and again with only the cells whose
    /// own pixels it brought closer; an image keeps the better of the two where it lowers
    /// its E.
    pub fn refine(&self, pixels: &Tensor, pyramids: &mut [Pyramid], rounds: usize) -> Result<Refinement> {
        ensure!(pixels.dim(0)? == pyramids.len(), "{} images for {} pyramids", pixels.dim(0)?, pyramids.len());
        ensure!(pyramids.iter().all(|p| p.shape() == &self.shape), "a pyramid's shape does not fit this model");
        let layers = self.shape.layers();
        let first = self.named_layers() + 1;
        let original: Vec<Pyramid> = pyramids.to_vec();
        let error_before = self.pixel_errors(pixels, pyramids)?;
        let mut errors = error_before.clone();
        if first <= layers {
            for round in 0..rounds {
                let layer = layers - round % (layers + 1 - first);
                self.refine_layer(pixels, pyramids, &mut errors, layer)?;
            }
        }
        let words_changed = original
            .iter()
            .zip(pyramids.iter())
            .map(|(a, b)| a.words().zip(b.words()).filter(|(x, y)| x != y).count())
            .sum();
        let values_per_image = pixels.elem_count() / pyramids.len().max(1);
        Ok(Refinement { error_before, error_after: errors, words_changed, values_per_image })
    }

    /// Per image, the sum of squared pixel errors of decoding all layers.
    fn pixel_errors(&self, pixels: &Tensor, pyramids: &[Pyramid]) -> Result<Vec<f32>> {
        let zhat = saq::dequantize(pyramids, &self.codebook, self.shape.layers())?;
        Self::cell_errors(&self.decode_latent(&zhat)?, pixels, 1)
    }

    /// Per image, the squared pixel error of decoding all layers summed over each cell of
    /// a `grid` x `grid` layer (row-major), from the decoded picture.
    fn cell_errors(decoded: &Tensor, pixels: &Tensor, grid: usize) -> Result<Vec<f32>> {
        let side = pixels.dim(2)? / grid;
        let squared = (decoded - pixels)?.sqr()?.sum_keepdim(1)?;
        Ok((squared.avg_pool2d(side)? * (side * side) as f64)?.flatten_all()?.to_vec1()?)
    }

    /// One round on `layer`: each step length's proposal in turn. A proposal is first
    /// decoded whole; then only the cells whose own pixels it brought closer are kept and
    /// that partial proposal is decoded too; each image keeps whichever of its words as
    /// they stand, the whole proposal and the partial one has the lowest error.
    fn refine_layer(&self, pixels: &Tensor, pyramids: &mut [Pyramid], errors: &mut [f32], layer: usize) -> Result<()> {
        let layers = self.shape.layers();
        let zhat = Var::from_tensor(&saq::dequantize(pyramids, &self.codebook, layers)?)?;
        let decoded = self.decode_latent(zhat.as_tensor())?;
        let error = (&decoded - pixels)?.sqr()?.sum_all()?;
        let gradient = error.backward()?.remove(zhat.as_tensor()).expect("zhat takes part in the error");
        let (s, cell) = (self.shape.grid_size(layer), self.shape.cell_size(layer));
        let cells = s * s;
        let mut cell_error = Self::cell_errors(&decoded.detach(), pixels, s)?;
        let share = self.shape.weight(layer) / self.shape.weight_sum(layers);
        let per_word = (gradient.avg_pool2d(cell)? * (f64::from(share) * (cell * cell) as f64))?;
        let per_word: Vec<f32> = per_word.permute((0, 2, 3, 1))?.flatten_all()?.to_vec1()?;
        let dim = self.codebook.dim();
        let rho = (self.codebook.mean_square() * dim as f32).sqrt();
        for step in STEPS {
            let mut targets = Vec::with_capacity(pyramids.len() * cells * dim);
            for (pyramid, image) in pyramids.iter().zip(per_word.chunks(cells * dim)) {
                let largest = image.chunks(dim).map(norm).fold(f32::MIN_POSITIVE, f32::max);
                let scale = step * rho / largest;
                for (&word, g) in pyramid.layer(layer).iter().zip(image.chunks(dim)) {
                    targets.extend(self.codebook.row(word).iter().zip(g).map(|(e, g)| e - scale * g));
                }
            }
            let proposed = self.codebook.nearest(&targets);
            let whole = with_words(pyramids, layer, |i, c| Some(proposed[i * cells + c]));
            let whole_decoded = self.decode_latent(&saq::dequantize(&whole, &self.codebook, layers)?)?;
            let whole_cells = Self::cell_errors(&whole_decoded, pixels, s)?;
            let partial = with_words(pyramids, layer, |i, c| {
                let k = i * cells + c;
                (whole_cells[k] < cell_error[k]).then_some(proposed[k])
            });
            // Where the partial proposal is the whole one, or the words as they stand for every
            // image, its errors are known without decoding it.
            let partial_cells = if partial == whole {
                whole_cells.clone()
            } else if partial == pyramids {
                cell_error.clone()
            } else {
                Self::cell_errors(&self.decode_latent(&saq::dequantize(&partial, &self.codebook, layers)?)?, pixels, s)?
            };
            for (i, (whole, partial)) in whole.into_iter().zip(partial).enumerate() {
                let range = i * cells..(i + 1) * cells;
                let total = |v: &[f32]| v[range.clone()].iter().sum::<f32>();
                let (whole_error, partial_error) = (total(&whole_cells), total(&partial_cells));
                let (best, best_error, best_cells) = if partial_error <= whole_error {
                    (partial, partial_error, &partial_cells)
                } else {
                    (whole, whole_error, &whole_cells)
                };
                if best_error < errors[i] {
                    errors[i] = best_error;
                    pyramids[i] = best;
                    cell_error[range.clone()].copy_from_slice(&best_cells[range]);
                }
            }
        }
        Ok(())
    }
}

/// Copies of `pyramids` with each cell `c` of `layer` in image `i` set to `word(i, c)`
/// where that gives one.
fn with_words(pyramids: &[Pyramid], layer: usize, word: impl Fn(usize, usize) -> Option<u32>) -> Vec<Pyramid> {
    let mut out = pyramids.to_vec();
    for (i, pyramid) in out.iter_mut().enumerate() {
        let s = pyramid.shape().grid_size(layer);
        for c in 0..s * s {
            if let Some(w) = word(i, c) {
                pyramid.set_word(layer, c / s, c % s, w);
            }
        }
    }
    out
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cell_errors_sum_each_cell_s_squared_pixel_errors_over_channels() {
        let (images, channels, side, grid) = (2, 3, 8, 4);
        let count = images * channels * side * side;
        let values = |seed: f32| -> Vec<f32> { (0..count).map(|i| (i as f32 * seed).sin() * 0.9).collect() };
        let (a, b) = (values(0.37), values(1.13));
        let tensor = |v: &[f32]| Tensor::from_slice(v, (images, channels, side, side), &Device::Cpu).unwrap();
        let got = SpaeModel::cell_errors(&tensor(&a), &tensor(&b), grid).unwrap();
        let cell = side / grid;
        let mut expected = vec![0f32; images * grid * grid];
        for i in 0..images {
            for c in 0..channels {
                for y in 0..side {
                    for x in 0..side {
                        let k = ((i * channels + c) * side + y) * side + x;
                        expected[(i * grid + y / cell) * grid + x / cell] += (a[k] - b[k]).powi(2);
                    }
                }
            }
        }
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-5 * e.max(1.0), "{g} against {e}");
        }
    }
}
