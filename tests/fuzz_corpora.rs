//! Replays the fuzzers' committed corpora (`fuzz/corpus/*`) through the same properties
//! the fuzz targets check, so every input they ever kept stays a regression test.

#[path = "../fuzz/fuzz_targets/pyramid_text_property.rs"]
mod pyramid_text;

#[path = "../fuzz/fuzz_targets/image_load_property.rs"]
mod image_load;

/// Runs `check` on every file of the corpus `name`; returns how many there were.
fn replay(name: &str, check: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(name);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        check(&std::fs::read(entry.unwrap().path()).unwrap());
        count += 1;
    }
    count
}

#[test]
fn the_pyramid_text_corpus_still_holds_the_property() {
    let count = replay("pyramid_text", pyramid_text::check);
    assert!(count >= 3, "the corpus holds {count} inputs");
}

#[test]
fn the_image_load_corpus_still_holds_the_property() {
    let count = replay("image_load", image_load::check);
    assert!(count >= 12, "the corpus holds {count} inputs");
}
