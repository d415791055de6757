//! The semantic teacher's relevance r(I, k) of a word to an image (SPAE.md section 5).

use image::RgbImage;

/// The relevance of codebook word `word` to `image`; `None` until the library has a
/// semantic teacher, and then the one place the studio asks it.
pub fn relevance(_image: &RgbImage, _word: u32) -> Option<f32> {
    None
}
