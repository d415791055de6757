//! The pyramid as text that people read and edit: one block per layer, headed
//! `layer L SxS`, then S rows of S words laid out as the grid. Lines starting with `#`
//! and blank lines are ignored. [`format`] and [`parse`] round-trip exactly. A leading
//! byte-order mark is skipped, and lines may end in `\n`, `\r\n` or a bare `\r`.
//!
//! ```text
//! # SPAE pyramid: 6 layers over a 16 x 16 latent
//! layer 1 1x1
//! cat
//! layer 2 2x2
//! dog tree
//! sky grass
//! ```

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::codebook::vocabulary::Vocabulary;
use crate::pyramid::{Pyramid, PyramidShape};

/// Suggestions offered for a word that is not in the vocabulary.
const SUGGESTIONS: usize = 5;
/// Longest pyramid text file read: far above any model's pyramid (the shipped one is
/// about 5 KB), far below what would strain memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Characters of an unknown word quoted in an error message.
const QUOTED_CHARS: usize = 40;

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

/// Reads a pyramid text file as UTF-8, refusing files over [`MAX_FILE_BYTES`].
pub fn read_file(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        bail!("{} is over {} MiB: not a pyramid text", path.display(), MAX_FILE_BYTES >> 20);
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Reads a pyramid of the given shape from the text format.
pub fn parse(text: &str, shape: &PyramidShape, vocabulary: &Vocabulary) -> Result<Pyramid, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = split_lines(text)
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'));
    let end_line = split_lines(text).count().max(1);
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
                return Err(error(
                    end_line,
                    1,
                    format!("layer {layer} needs {s} rows of words, the text ends after {row}"),
                ));
            };
            let tokens = split_with_columns(line);
            if tokens.len() != s {
                let column = tokens.get(s).map_or(line.len() + 1, |t| t.0);
                return Err(error(
                    n,
                    column,
                    format!("layer {layer} row {} needs {s} words, found {}", row + 1, tokens.len()),
                ));
            }
            for (column, word) in tokens {
                match vocabulary.index_of_word(word) {
                    Some(index) => words.push(index),
                    None => return Err(unknown_word(n, column, word, vocabulary)),
                }
            }
        }
        layers.push(words);
    }
    if let Some((n, line)) = lines.next() {
        return Err(error(
            n,
            column_of_first_text(line),
            format!("unexpected text after the last layer: `{}`", line.trim()),
        ));
    }
    Ok(Pyramid::new(shape.clone(), layers).expect("layer sizes were checked while parsing"))
}

/// The error for a word outside the vocabulary, with spelling suggestions where the word
/// is short enough for them to mean anything (and to be cheap).
fn unknown_word(line: usize, column: usize, word: &str, vocabulary: &Vocabulary) -> ParseError {
    let chars = word.chars().count();
    if chars > QUOTED_CHARS || word.len() > crate::codebook::vocabulary::MAX_SUGGESTION_BYTES {
        let start: String = word.chars().take(QUOTED_CHARS.min(16)).collect();
        let message = format!(
            "a {chars}-character word starting `{start}` is not in the vocabulary (too long for spelling suggestions)"
        );
        return error(line, column, message);
    }
    let suggestions: Vec<String> = vocabulary.suggestions(word, SUGGESTIONS).into_iter().map(str::to_string).collect();
    ParseError {
        line,
        column,
        message: format!("`{word}` is not in the vocabulary; did you mean {}?", suggestions.join(", ")),
        suggestions,
    }
}

/// The lines of `text`, each ended by `\n`, `\r\n` or a bare `\r` (as [`str::lines`],
/// which leaves a bare `\r` inside its line).
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\n', '\r']) {
            Some(at) => {
                let skip = if current[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&current[at + skip..]).filter(|r| !r.is_empty());
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
    .filter(|_| !text.is_empty())
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
