//! The editable text format: exact round trips, located errors, suggestions.

mod common;

use spae::pyramid::text::{format, parse};
use spae::pyramid::{Pyramid, PyramidShape};

fn random_pyramid(seed: u64) -> Pyramid {
    let shape = PyramidShape::new(16, 6).unwrap();
    let values = common::random_values(597, seed, 1.0);
    let mut words = values.iter().map(|v| ((v + 1.0) * 8191.9) as u32);
    let layers = (1..=6).map(|l| (0..shape.tokens_in_layer(l)).map(|_| words.next().unwrap()).collect()).collect();
    Pyramid::new(shape, layers).unwrap()
}

#[test]
fn round_trips_exactly_both_ways() {
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    for seed in 0..5 {
        let pyramid = random_pyramid(seed);
        let text = format(&pyramid, vocabulary);
        let parsed = parse(&text, pyramid.shape(), vocabulary).unwrap();
        assert_eq!(parsed, pyramid);
        assert_eq!(format(&parsed, vocabulary), text);
    }
}

#[test]
fn layout_is_one_block_per_layer_with_rows_as_the_grid() {
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    let pyramid = random_pyramid(9);
    let text = format(&pyramid, vocabulary);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with('#'));
    assert_eq!(lines[1], "layer 1 1x1");
    assert_eq!(lines[2], vocabulary.word(pyramid.word(1, 0, 0)));
    assert_eq!(lines[3], "layer 2 2x2");
    assert_eq!(
        lines[5],
        format!("{} {}", vocabulary.word(pyramid.word(2, 1, 0)), vocabulary.word(pyramid.word(2, 1, 1)))
    );
    // 1 comment + 6 headers + 1 + 2 + 4 + 8 + 16 + 16 rows
    assert_eq!(lines.len(), 1 + 6 + 47);
}

#[test]
fn comments_blank_lines_and_extra_spaces_are_accepted() {
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    let pyramid = random_pyramid(3);
    let text = format(&pyramid, vocabulary).replace("layer 3 4x4\n", "\n# a note\nlayer 3 4x4\n\n").replace(' ', "   ");
    assert_eq!(parse(&text, pyramid.shape(), vocabulary).unwrap(), pyramid);
}

#[test]
fn unknown_word_gives_line_column_and_suggestions() {
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    let pyramid = random_pyramid(1);
    let text = format(&pyramid, vocabulary);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Line 6 is layer 2's second row; replace its second word.
    let first = lines[5].split(' ').next().unwrap().to_string();
    lines[5] = format!("{first} catt");
    let error = parse(&lines.join("\n"), pyramid.shape(), vocabulary).unwrap_err();
    assert_eq!((error.line, error.column), (6, first.len() + 2));
    assert!(error.suggestions.iter().any(|s| s == "cat"), "{:?}", error.suggestions);
    assert!(error.to_string().contains("`catt` is not in the vocabulary"));
}

#[test]
fn structural_errors_are_located() {
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    let pyramid = random_pyramid(2);
    let shape = pyramid.shape();
    let text = format(&pyramid, vocabulary);
    let lines: Vec<&str> = text.lines().collect();

    let wrong_header = text.replacen("layer 2 2x2", "layer 2 3x3", 1);
    let e = parse(&wrong_header, shape, vocabulary).unwrap_err();
    assert_eq!((e.line, e.column), (4, 1));
    assert!(e.message.contains("expected `layer 2 2x2`"));

    let mut short_row: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    short_row[4] = short_row[4].split(' ').next().unwrap().to_string();
    let e = parse(&short_row.join("\n"), shape, vocabulary).unwrap_err();
    assert_eq!(e.line, 5);
    assert!(e.message.contains("needs 2 words, found 1"));

    let truncated = lines[..20].join("\n");
    let e = parse(&truncated, shape, vocabulary).unwrap_err();
    assert!(e.message.contains("ends"), "{}", e.message);

    let trailing = format!("{text}extra words\n");
    let e = parse(&trailing, shape, vocabulary).unwrap_err();
    assert_eq!(e.line, lines.len() + 1);
    assert!(parse("", shape, vocabulary).is_err());
}

#[test]
fn a_byte_order_mark_and_any_line_ending_are_accepted() {
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    let pyramid = random_pyramid(2);
    let text = format(&pyramid, vocabulary);
    let variants = [
        format!("\u{feff}{text}"),
        text.replace('\n', "\r\n"),
        text.replace('\n', "\r"),
        format!("\u{feff}{}", text.replace('\n', "\r")),
    ];
    for variant in &variants {
        assert_eq!(parse(variant, pyramid.shape(), vocabulary).unwrap(), pyramid, "{:?}", &variant[..12]);
    }
    // Errors keep their lines with bare carriage returns: line 3 is layer 1's word.
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "zzqxv";
    let broken = lines.join("\r");
    let error = parse(&broken, pyramid.shape(), vocabulary).unwrap_err();
    assert_eq!((error.line, error.column), (3, 1), "{error}");
}

#[test]
fn a_very_long_unknown_word_is_refused_briefly_without_suggestions() {
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    let pyramid = random_pyramid(3);
    let text = format(&pyramid, vocabulary);
    let long = "q".repeat(1_000_000);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[2] = long.clone();
    let error = parse(&lines.join("\n"), pyramid.shape(), vocabulary).unwrap_err();
    assert_eq!((error.line, error.column), (3, 1));
    assert!(error.suggestions.is_empty());
    let message = error.to_string();
    assert!(message.contains("1000000-character word starting `qqqqqqqqqqqqqqqq`"), "{message}");
    assert!(message.len() < 200, "the message does not repeat the word ({} bytes)", message.len());
    // At the limit, suggestions still come.
    assert!(vocabulary.suggestions(&"a".repeat(spae::codebook::vocabulary::MAX_SUGGESTION_BYTES), 3).len() == 3);
    assert!(vocabulary.suggestions(&"a".repeat(spae::codebook::vocabulary::MAX_SUGGESTION_BYTES + 1), 3).is_empty());
}

#[test]
fn oversized_and_non_utf8_files_are_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("spae-text-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.txt");
    std::fs::write(&big, vec![b'#'; spae::pyramid::text::MAX_FILE_BYTES as usize + 1]).unwrap();
    let message = format!("{:#}", spae::pyramid::text::read_file(&big).unwrap_err());
    assert!(message.contains("big.txt") && message.contains("MiB"), "{message}");
    let binary = dir.join("binary.txt");
    std::fs::write(&binary, b"layer 1 1x1\n\xff\xfe").unwrap();
    let message = format!("{:#}", spae::pyramid::text::read_file(&binary).unwrap_err());
    assert!(message.contains("binary.txt") && message.contains("offset 12"), "{message}");
}
