//! The pyramid as text that people read and edit: one block per layer, headed
//! `layer L SxS`, then S rows of S words laid out as the grid. Lines starting with `#`
//! and blank lines are ignored. [`format`] and [`parse`] round-trip exactly.
//!
//! ```text
//! # SPAE pyramid: 6 layers over a 16 x 16 latent
//! layer 1 1x1
//! cat
//! layer 2 2x2
//! dog tree
//! sky grass
//! ```

use anyhow::Result;

use crate::pyramid::{Pyramid, PyramidShape};
use crate::vocabulary::Vocabulary;

/// Suggestions offered for a word that is not in the vocabulary.
const SUGGESTIONS: usize = 5;

/// A parse error at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// For an unknown word: the vocabulary words spelled most like it.
    pub suggestions: Vec<String>,
}

/// Writes a pyramid in the text format.
pub fn format(pyramid: &Pyramid, vocabulary: &Vocabulary) -> String {
    let shape = pyramid.shape();
    let mut out = format!(
        "# SPAE pyramid: {} layers over a {} x {} latent\n",
        shape.layers(),
        shape.latent_size(),
        shape.latent_size()
    );
    for layer in 1..=shape.layers() {
        let s = shape.grid_size(layer);
        out.push_str(&format!("layer {layer} {s}x{s}\n"));
        for row in pyramid.layer(layer).chunks(s) {
            let words: Vec<&str> = row.iter().map(|&w| vocabulary.word(w)).collect();
            out.push_str(&words.join(" "));
            out.push('\n');
        }
    }
    out
}

/// Reads a pyramid of the given shape from the text format.
pub fn parse(text: &str, shape: &PyramidShape, vocabulary: &Vocabulary) -> Result<Pyramid, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'));
    let end_line = text.lines().count().max(1);
    let mut layers = Vec::with_capacity(shape.layers());
    for layer in 1..=shape.layers() {
        let s = shape.grid_size(layer);
        let want = format!("layer {layer} {s}x{s}");
        match lines.next() {
            Some((_, line)) if line.split_whitespace().eq(want.split(' ')) => {}
            Some((n, line)) => {
                return Err(error(n, column_of_first_text(line), format!("expected `{want}`, found `{}`", line.trim())))
            }
            None => return Err(error(end_line, 1, format!("the text ends before `{want}`"))),
        }
        let mut words = Vec::with_capacity(s * s);
        for row in 0..s {
            let Some((n, line)) = lines.next() else {
                return Err(error(end_line, 1, format!("layer {layer} needs {s} rows of words, the text ends after {row}")));
            };
            let tokens = split_with_columns(line);
            if tokens.len() != s {
                let column = tokens.get(s).map_or(line.len() + 1, |t| t.0);
                return Err(error(n, column, format!("layer {layer} row {} needs {s} words, found {}", row + 1, tokens.len())));
            }
            for (column, word) in tokens {
                match vocabulary.index_of_word(word) {
                    Some(index) => words.push(index),
                    None => {
                        let suggestions: Vec<String> =
                            vocabulary.suggestions(word, SUGGESTIONS).into_iter().map(str::to_string).collect();
                        return Err(ParseError {
                            line: n,
                            column,
                            message: format!("`{word}` is not in the vocabulary; did you mean {}?", suggestions.join(", ")),
                            suggestions,
                        });
                    }
                }
            }
        }
        layers.push(words);
    }
    if let Some((n, line)) = lines.next() {
        return Err(error(n, column_of_first_text(line), format!("unexpected text after the last layer: `{}`", line.trim())));
    }
    Ok(Pyramid::new(shape.clone(), layers).expect("layer sizes were checked while parsing"))
}

fn error(line: usize, column: usize, message: String) -> ParseError {
    ParseError { line, column, message, suggestions: Vec::new() }
}

/// Whitespace-separated words with their 1-based columns (in characters).
fn split_with_columns(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start: Option<(usize, usize)> = None; // (byte, column)
    for (column, (byte, ch)) in line.char_indices().enumerate() {
        match (ch.is_whitespace(), start) {
            (false, None) => start = Some((byte, column + 1)),
            (true, Some((b, c))) => {
                out.push((c, &line[b..byte]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some((b, c)) = start {
        out.push((c, &line[b..]));
    }
    out
}

fn column_of_first_text(line: &str) -> usize {
    line.chars().take_while(|c| c.is_whitespace()).count() + 1
}
