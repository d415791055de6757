//! Fuzzes image loading (`image_io::decode`, which `image_io::load` runs on a file's
//! bytes, with its size limits). Run with `cargo fuzz run -s none image_load` from the
//! repository root (stable Rust works with `-s none`).
#![no_main]

#[path = "image_load_property.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::check(data));
