//! The token pyramid (docs/method.md section 2): layer l is a grid of s_l x s_l words with
//! s_l = min(2^(l-1), G) over a G x G latent; a layer-l token owns a cell of
//! (G/s_l)^2 latent positions. Layer l has a weight w_l in the running mean that the
//! first layers dequantize to (all 1: the plain mean).

pub mod saq;
pub mod text;

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

/// Which latent positions of a cell feed its quantization target (docs/method.md section 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellTarget {
    /// The mean over all positions of the cell (ours, the default).
    #[default]
    Mean,
    /// The single evenly spaced position of the dilation subsampler (paper eq. 1).
    Dilated,
}

/// The geometry of a pyramid: latent size, the grid size of each layer, and each layer's
/// weight in the running mean.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyramidShape {
    latent_size: usize,
    grid_sizes: Vec<usize>,
    weights: Vec<u32>,
}

/// The largest weight of a layer in the running mean.
pub const MAX_LAYER_WEIGHT: u32 = 64;

impl PyramidShape {
    /// `layers` layers over a `latent_size` x `latent_size` latent (a power of two).
    pub fn new(latent_size: usize, layers: usize) -> Result<Self> {
        ensure!(latent_size.is_power_of_two(), "latent size {latent_size} is not a power of two");
        ensure!(layers >= 1, "a pyramid needs at least one layer");
        let grid_sizes = (0..layers).map(|l| (1usize << l.min(31)).min(latent_size)).collect();
        Ok(Self { latent_size, grid_sizes, weights: vec![1; layers] })
    }

    /// The same shape with layer l weighing `weights[l-1]` in the running mean: zhat_l =
    /// sum_{i<=l} w_i e_i / sum_{i<=l} w_i. Weights are whole numbers 1..=64.
    pub fn with_weights(self, weights: &[u32]) -> Result<Self> {
        ensure!(
            weights.len() == self.layers(),
            "layer_weights has {} entries for {} layers",
            weights.len(),
            self.layers()
        );
        ensure!(
            weights.iter().all(|w| (1..=MAX_LAYER_WEIGHT).contains(w)),
            "layer_weights must be whole numbers 1..={MAX_LAYER_WEIGHT}, not {weights:?}"
        );
        Ok(Self { weights: weights.to_vec(), ..self })
    }

    pub fn latent_size(&self) -> usize {
        self.latent_size
    }

    /// Number of layers L.
    pub fn layers(&self) -> usize {
        self.grid_sizes.len()
    }

    /// s_l for layer `layer` in 1..=L.
    pub fn grid_size(&self, layer: usize) -> usize {
        self.grid_sizes[layer - 1]
    }

    /// Side of a layer's cell in latent positions, G / s_l.
    pub fn cell_size(&self, layer: usize) -> usize {
        self.latent_size / self.grid_size(layer)
    }

    /// s_l^2.
    pub fn tokens_in_layer(&self, layer: usize) -> usize {
        self.grid_size(layer).pow(2)
    }

    /// w_l, layer `layer`'s weight in the running mean.
    pub fn weight(&self, layer: usize) -> f32 {
        self.weights[layer - 1] as f32
    }

    /// The weights of all layers, layer 1 first.
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// W_l = sum_{i<=layers} w_i, what the first `layers` layers' weighted sum is divided
    /// by (0 for none), as a whole number (for the GPU's kernels).
    pub fn weight_total(&self, layers: usize) -> u32 {
        self.weights[..layers].iter().sum()
    }

    /// [`Self::weight_total`] as f32, for the arithmetic of SAQ.
    pub fn weight_sum(&self, layers: usize) -> f32 {
        self.weight_total(layers) as f32
    }

    /// Tokens in layers 1..=layers.
    pub fn tokens_in_prefix(&self, layers: usize) -> usize {
        (1..=layers).map(|l| self.tokens_in_layer(l)).sum()
    }

    /// The position at which the dilation subsampler samples cell (row, col) of a layer:
    /// evenly spaced at stride G/s_l, at the cell's centre.
    pub fn dilated_position(&self, layer: usize, cell: usize) -> usize {
        let stride = self.cell_size(layer);
        cell * stride + stride / 2
    }
}

/// A pyramid of words: for each layer, its grid of codebook rows in row-major order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pyramid {
    shape: PyramidShape,
    layers: Vec<Vec<u32>>,
}

impl Pyramid {
    /// Checks that each layer holds exactly its grid's number of words.
    pub fn new(shape: PyramidShape, layers: Vec<Vec<u32>>) -> Result<Self> {
        ensure!(layers.len() == shape.layers(), "{} layers given, the shape has {}", layers.len(), shape.layers());
        for (l, words) in layers.iter().enumerate() {
            let want = shape.tokens_in_layer(l + 1);
            ensure!(words.len() == want, "layer {} has {} words, needs {want}", l + 1, words.len());
        }
        Ok(Self { shape, layers })
    }

    /// The pyramid whose [`Self::words`] are `words` (every layer's, layer after layer).
    pub fn from_words(shape: PyramidShape, words: &[u32]) -> Result<Self> {
        let total = shape.tokens_in_prefix(shape.layers());
        ensure!(words.len() == total, "{} words given, the shape has {total}", words.len());
        let mut rest = words;
        let layers = (1..=shape.layers())
            .map(|l| {
                let (layer, after) = rest.split_at(shape.tokens_in_layer(l));
                rest = after;
                layer.to_vec()
            })
            .collect();
        Self::new(shape, layers)
    }

    pub fn shape(&self) -> &PyramidShape {
        &self.shape
    }

    /// The words of layer `layer` (1-based), row-major.
    pub fn layer(&self, layer: usize) -> &[u32] {
        &self.layers[layer - 1]
    }

    /// The words of the first `layers` layers, layer after layer (how an image enters a
    /// prompt).
    pub fn prefix_words(&self, layers: usize) -> Vec<u32> {
        self.layers[..layers].concat()
    }

    /// The word at (row, col) of a layer.
    pub fn word(&self, layer: usize, row: usize, col: usize) -> u32 {
        self.layers[layer - 1][row * self.shape.grid_size(layer) + col]
    }

    /// Replaces the word at (row, col) of a layer.
    pub fn set_word(&mut self, layer: usize, row: usize, col: usize, word: u32) {
        let s = self.shape.grid_size(layer);
        self.layers[layer - 1][row * s + col] = word;
    }

    /// All words, layer after layer (the order the LLM reads them).
    pub fn words(&self) -> impl Iterator<Item = u32> + '_ {
        self.layers.iter().flatten().copied()
    }

    /// A pyramid whose layer l comes from `other` where `from_other[l-1]`, else from
    /// `self`: content (upper layers) of one image with appearance (lower layers) of another.
    pub fn mixed(&self, other: &Pyramid, from_other: &[bool]) -> Result<Pyramid> {
        ensure!(self.shape == other.shape, "the two pyramids have different shapes");
        ensure!(
            from_other.len() == self.shape.layers(),
            "{} layer choices given, the pyramids have {} layers",
            from_other.len(),
            self.shape.layers()
        );
        let layers = self
            .layers
            .iter()
            .zip(&other.layers)
            .zip(from_other)
            .map(|((mine, theirs), &take)| if take { theirs.clone() } else { mine.clone() })
            .collect();
        Ok(Pyramid { shape: self.shape.clone(), layers })
    }
}

/// Which layers a mix takes from the second pyramid: layers `split + 1..` (layers
/// `1..=split` from the first), with `swapped` (if any) taken from the other side.
pub fn mix_choice(layers: usize, split: usize, swapped: Option<usize>) -> Vec<bool> {
    (1..=layers).map(|l| (l > split) != (swapped == Some(l))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_layer_after_layer_make_the_pyramid_again() {
        let shape = PyramidShape::new(4, 3).unwrap(); // grids 1, 2, 4: 1 + 4 + 16 words
        let layers: Vec<Vec<u32>> =
            (1..=3).map(|l| (0..shape.tokens_in_layer(l) as u32).map(|i| 100 * l as u32 + i).collect()).collect();
        let pyramid = Pyramid::new(shape.clone(), layers).unwrap();
        let words: Vec<u32> = pyramid.words().collect();
        assert_eq!(Pyramid::from_words(shape.clone(), &words).unwrap(), pyramid);
        assert_eq!(Pyramid::from_words(shape.clone(), &words).unwrap().layer(2), [200, 201, 202, 203]);
        let error = Pyramid::from_words(shape, &words[1..]).unwrap_err().to_string();
        assert!(error.contains("20 words given, the shape has 21"), "{error}");
    }

    #[test]
    fn a_mix_takes_each_layer_from_the_chosen_pyramid() {
        let shape = PyramidShape::new(4, 3).unwrap(); // grids 1, 2, 4
        let filled = |w: u32| {
            let layers = (1..=3).map(|l| vec![w + l as u32; shape.tokens_in_layer(l)]).collect();
            Pyramid::new(shape.clone(), layers).unwrap()
        };
        let (a, b) = (filled(10), filled(20));
        assert_eq!(mix_choice(3, 1, None), [false, true, true]);
        assert_eq!(mix_choice(3, 1, Some(3)), [false, true, false]);
        assert_eq!(mix_choice(3, 3, Some(2)), [false, true, false]);
        let mixed = a.mixed(&b, &mix_choice(3, 1, None)).unwrap();
        assert_eq!(mixed.layer(1), a.layer(1));
        assert_eq!(mixed.layer(2), b.layer(2));
        assert_eq!(mixed.layer(3), b.layer(3));
        assert_eq!(a.mixed(&b, &mix_choice(3, 3, None)).unwrap(), a);
        assert_eq!(a.mixed(&b, &mix_choice(3, 0, None)).unwrap(), b);
        assert!(a.mixed(&b, &[true]).is_err(), "one choice per layer");
        let other_shape = Pyramid::new(PyramidShape::new(2, 2).unwrap(), vec![vec![1], vec![1; 4]]).unwrap();
        assert!(a.mixed(&other_shape, &[false, false, false]).is_err());
    }
}
