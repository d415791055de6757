//! The property the parser fuzz target checks, shared with the regression test that
//! replays the committed corpus (`tests/fuzz_corpora.rs`).

use std::sync::OnceLock;

use spae::codebook::vocabulary::Vocabulary;
use spae::pyramid::text::{format, parse};
use spae::pyramid::PyramidShape;

/// A small vocabulary (whole-word tokens mixed with others) and a 3-layer shape keep the
/// fuzzer fast while exercising every branch of the parser.
fn fixture() -> &'static (Vocabulary, PyramidShape) {
    static FIXTURE: OnceLock<(Vocabulary, PyramidShape)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let tokens: Vec<String> =
            ["Ġcat", "Ġdog", "x", "Ġsky", "Ġat", "Ġtree", "ĠThe", "Ġgrass"].iter().map(|t| t.to_string()).collect();
        (Vocabulary::from_tokens(&tokens, 6).unwrap(), PyramidShape::new(4, 3).unwrap())
    })
}

/// Parsing never panics, every error points inside the text, and whatever is accepted
/// formats back to text that parses to the same pyramid.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (vocabulary, shape) = fixture();
    match parse(text, shape, vocabulary) {
        Ok(pyramid) => {
            let again = format(&pyramid, vocabulary);
            assert_eq!(parse(&again, shape, vocabulary).unwrap(), pyramid);
        }
        Err(error) => {
            // Lines end in \n, \r\n or a bare \r.
            let lines = text.replace("\r\n", "\n").replace('\r', "\n").lines().count();
            assert!(error.line >= 1 && error.line <= lines.max(1) + 1);
            assert!(error.column >= 1);
        }
    }
}
