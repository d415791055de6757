//! Replays the fuzzer's committed corpus (`fuzz/corpus/pyramid_text`) through the same
//! property the fuzz target checks, so every input it ever kept stays a regression test.

#[path = "../fuzz/fuzz_targets/pyramid_text_property.rs"]
mod property;

#[test]
fn fuzz_corpus_still_holds_the_property() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pyramid_text");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        property::check(&std::fs::read(entry.unwrap().path()).unwrap());
        count += 1;
    }
    assert!(count >= 3, "the corpus holds {count} inputs");
}
