//! The semantic teacher's relevance r(I, k) of a word to an image (docs/method.md section 5),
//! computed by the worker when the image is encoded.

use super::document::Document;

/// The relevance of codebook word `word` to the document's image, or why it is unknown.
pub fn relevance(document: &Document, word: u32) -> Result<f32, &str> {
    match &document.relevance {
        Ok(scores) => Ok(scores[word as usize]),
        Err(reason) => Err(reason),
    }
}
