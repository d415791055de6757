//! `spae index` and `spae search` on a folder of 50 real images and three bad files: the
//! index holds each image's words as the model encodes it, the bad files are listed with a
//! reason, a search returns exactly the images and cells a brute-force scan finds, and a
//! second run reuses the cache beside the model.

mod common;

use std::path::Path;

use spae::model::SpaeModel;
use spae::tasks::context_pool::Pool;
use spae::tasks::word_index::WordIndex;

/// CRC-32 (IEEE) of `bytes`, as PNG chunks carry it; written here so the test does not
/// rely on the decoder's own.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG chunk: length, type and data, checksum.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut body = kind.to_vec();
    body.extend(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend(&body);
    out.extend(crc32(&body).to_be_bytes());
    out
}

/// A PNG whose header says 20,000 x 20,000 (RGB), with valid checksums and no pixel data:
/// decoding it would need 1.2 GB.
fn huge_png_header() -> Vec<u8> {
    let mut ihdr = 20_000u32.to_be_bytes().to_vec();
    ihdr.extend(20_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[]));
    png.extend(chunk(b"IEND", &[]));
    png
}

/// The model folder copied, so the test's cache lands in a folder of its own.
fn model_copy(dir: &Path) -> std::path::PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::DEFAULT_MODEL_DIR);
    let copy = dir.join("model");
    std::fs::create_dir_all(&copy).unwrap();
    for file in [spae::model::CONFIG_FILE, spae::model::WEIGHTS_FILE] {
        std::fs::copy(shipped.join(file), copy.join(file)).unwrap();
    }
    copy
}

#[test]
fn index_and_search_a_folder_match_a_brute_force_scan() {
    let dir = common::fresh_dir("word-index");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let pool = Pool::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::POOL), 64).unwrap();
    assert!(pool.len() >= 50, "the shipped pool has {} images", pool.len());
    for i in 0..50 {
        pool.image(i).save(images.join(format!("image-{i:02}.png"))).unwrap();
    }
    std::fs::write(images.join("notes.txt"), "not an image\n").unwrap();
    std::fs::write(images.join("broken.png"), &huge_png_header()[..20]).unwrap();
    std::fs::write(images.join("huge.png"), huge_png_header()).unwrap();
    std::fs::create_dir_all(images.join("subfolder")).unwrap();
    let model_dir = model_copy(&dir);

    let out = common::spae()
        .args(["--model".as_ref(), model_dir.as_os_str(), "index".as_ref(), images.as_os_str(), "-o".as_ref()])
        .arg(dir.join("index.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("50 images indexed (50 encoded, 0 unchanged"), "{stderr}");
    let index = WordIndex::from_json_lines(&std::fs::read_to_string(dir.join("index.jsonl")).unwrap()).unwrap();
    assert_eq!(index.images().count(), 50);
    let skipped: Vec<&str> = index.skipped().map(|e| e.file.as_str()).collect();
    assert_eq!(skipped, ["broken.png", "huge.png", "notes.txt"], "the subfolder is not a file of the index");
    for entry in index.skipped() {
        assert!(stderr.contains(&format!("skipped {}: ", entry.file)), "{stderr}");
    }
    let huge = index.entries.iter().find(|e| e.file == "huge.png").unwrap();
    assert!(huge.skipped.as_deref().unwrap().contains("20000"), "{huge:?}");
    assert_eq!(
        std::fs::read_dir(model_dir.join(spae::tasks::word_index::CACHE_FOLDER)).unwrap().count(),
        1,
        "one cached index beside the model"
    );

    // Brute force: every image encoded here, every cell compared with the word.
    let model = SpaeModel::open(&model_dir, &common::llm_path(), false).unwrap();
    let vocabulary = model.codebook().vocabulary();
    let pyramids: Vec<(String, spae::pyramid::Pyramid)> = (0..50)
        .map(|i| {
            let file = format!("image-{i:02}.png");
            let image = spae::image_io::load_prepared(&images.join(&file), 64).unwrap();
            (file, model.encode(&image).unwrap())
        })
        .collect();
    for (file, pyramid) in &pyramids {
        let entry = index.entries.iter().find(|e| &e.file == file).unwrap();
        let words = entry.words.as_ref().unwrap();
        for layer in 1..=6 {
            let expected: Vec<&str> = pyramid.layer(layer).iter().map(|&w| vocabulary.word(w)).collect();
            assert_eq!(words[layer - 1], expected, "{file}, layer {layer}");
        }
    }
    // A word of layer 1 and a word of layer 3 (both occur in some images, maybe elsewhere too).
    let searched = [vocabulary.word(pyramids[0].1.layer(1)[0]), vocabulary.word(pyramids[7].1.layer(3)[5])];
    for word in searched {
        let mut expected: Vec<(String, Vec<String>)> = pyramids
            .iter()
            .filter_map(|(file, pyramid)| {
                let mut cells = Vec::new();
                for layer in 1..=6 {
                    let side = model.shape().grid_size(layer);
                    for (i, &w) in pyramid.layer(layer).iter().enumerate() {
                        if vocabulary.word(w).eq_ignore_ascii_case(word) {
                            cells.push(format!("layer {layer} (row {}, column {})", i / side + 1, i % side + 1));
                        }
                    }
                }
                (!cells.is_empty()).then(|| (file.clone(), cells))
            })
            .collect();
        expected.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
        let out = common::spae()
            .args(["--model".as_ref(), model_dir.as_os_str(), "search".as_ref(), word.as_ref(), images.as_os_str()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("(0 encoded, 50 unchanged since the cached index)"), "the cache is reused: {stderr}");
        let lines: Vec<(String, Vec<String>)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                assert_eq!(fields.len(), 3, "{line}");
                let cells: Vec<String> =
                    fields[2].split(", l").map(|c| c.trim_start_matches('l').to_string()).collect();
                assert_eq!(fields[1], format!("{} cell(s)", cells.len()));
                (fields[0].to_string(), cells.iter().map(|c| format!("l{c}")).collect())
            })
            .collect();
        assert!(!expected.is_empty(), "{word} occurs in the image it was taken from");
        assert_eq!(lines, expected, "search for {word}");
    }

    // A changed file is encoded again, the others come from the cache.
    pool.image(60).save(images.join("image-03.png")).unwrap();
    let out = common::spae()
        .args(["--model".as_ref(), model_dir.as_os_str(), "index".as_ref(), images.as_os_str()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("(1 encoded, 49 unchanged"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
