//! The property the image-loading fuzz target checks, shared with the regression test
//! that replays the committed corpus (`tests/fuzz_corpora.rs`).

use spae::image_io;

/// Decoding arbitrary bytes never panics and never exceeds the size limits; whatever is
/// accepted converts to the model's input size.
pub fn check(data: &[u8]) {
    if let Ok(image) = image_io::decode(data) {
        assert!((1..=image_io::MAX_SIDE).contains(&image.width()));
        assert!((1..=image_io::MAX_SIDE).contains(&image.height()));
        assert_eq!(image_io::prepare(&image, 8).dimensions(), (8, 8));
    }
}
