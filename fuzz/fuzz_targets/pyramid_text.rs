//! Fuzzes the pyramid text parser. Run with `cargo fuzz run -s none pyramid_text` from the
//! repository root (stable Rust works with `-s none`).
#![no_main]

#[path = "pyramid_text_property.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::check(data));
