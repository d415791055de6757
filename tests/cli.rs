//! The `spae` command line, run as a user would.

mod common;

use common::spae;

#[test]
fn encode_then_decode_every_prefix() {
    let dir = std::env::temp_dir().join(format!("spae-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("cat.txt");
    let out = spae().args(["encode", "assets/samples/cat-face.png", "-o"]).arg(&text).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pyramid = std::fs::read_to_string(&text).unwrap();
    assert!(pyramid.contains("layer 6 16x16"));
    for layers in ["1", "6"] {
        let png = dir.join(format!("cat-{layers}.png"));
        let out = spae().args(["decode"]).arg(&text).arg("-o").arg(&png).args(["--layers", layers]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(image::open(&png).unwrap().to_rgb8().dimensions(), (64, 64));
    }
}

#[test]
fn encode_on_the_gpu_writes_the_cpu_pyramid_and_says_where() {
    let dir = common::fresh_dir("cli-encode-device");
    let mut written = Vec::new();
    for device in ["cpu", "gpu", "auto"] {
        let text = dir.join(format!("{device}.txt"));
        let out = spae()
            .args(["encode", "assets/samples/red-apple.png", "--device", device, "-o"])
            .arg(&text)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let said = |text: &str| stderr.contains(text);
        let where_ = match device {
            "gpu" => said("encoded on the GPU, "),
            "cpu" => said("encoded on the CPU)"),
            // A hardware GPU, or the CPU with the reason (lavapipe here: a software adapter).
            _ => said("encoded on the GPU, ") || said("encoded on the CPU ("),
        };
        assert!(where_, "--device {device}: {stderr}");
        written.push(std::fs::read_to_string(&text).unwrap());
    }
    assert_eq!(written[0], written[1], "the GPU's pyramid is the CPU's");
    assert_eq!(written[0], written[2]);
}

#[test]
fn encode_with_refinement_writes_the_refined_pyramid_and_says_what_changed() {
    let dir = common::fresh_dir("cli-encode-refine");
    let text = dir.join("apple.txt");
    let out = spae()
        .args(["encode", "assets/samples/red-apple.png", "--device", "cpu", "--refine", "3", "-o"])
        .arg(&text)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("refined in 3 rounds: "), "{stderr}");
    let model = spae::model::SpaeModel::load(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::DEFAULT_MODEL_DIR),
        common::codebook(),
    )
    .unwrap();
    let image = spae::image_io::prepare(&spae::image_io::load(&common::sample("red-apple.png")).unwrap(), 64);
    let expected = |rounds| {
        spae::pyramid::text::format(&model.encode_refined(&image, rounds).unwrap(), model.codebook().vocabulary())
    };
    assert_eq!(std::fs::read_to_string(&text).unwrap(), expected(3));

    // Unasked, encode refines for the default rounds; `--refine 0` writes SAQ's words.
    for (flags, rounds) in [(&[][..], spae::model::DEFAULT_REFINE_ROUNDS), (&["--refine", "0"][..], 0)] {
        let written = dir.join(format!("apple-{rounds}.txt"));
        let out = spae()
            .args(["encode", "assets/samples/red-apple.png", "--device", "cpu"])
            .args(flags)
            .arg("-o")
            .arg(&written)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stderr.contains(&format!("refined in {rounds} rounds: ")), rounds > 0, "{stderr}");
        assert_eq!(std::fs::read_to_string(&written).unwrap(), expected(rounds), "{flags:?}");
    }
    assert_eq!(expected(0), spae::pyramid::text::format(&model.encode(&image).unwrap(), model.codebook().vocabulary()));

    let out = spae()
        .args(["encode", "assets/samples/red-apple.png", "--refine", "1001", "-o"])
        .arg(dir.join("x.txt"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1001 is not in 0..=1000"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("x.txt").exists());
}

#[test]
fn decode_reports_an_unknown_word_with_its_place() {
    let dir = std::env::temp_dir().join(format!("spae-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("cat.txt");
    assert!(spae().args(["encode", "assets/samples/cat-face.png", "-o"]).arg(&text).status().unwrap().success());
    let edited = std::fs::read_to_string(&text).unwrap();
    let mut lines: Vec<String> = edited.lines().map(str::to_string).collect();
    lines[2] = "zzqxv".to_string();
    std::fs::write(&text, lines.join("\n")).unwrap();
    let out = spae().args(["decode"]).arg(&text).arg("-o").arg(dir.join("x.png")).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3, column 1: `zzqxv` is not in the vocabulary; did you mean"), "{stderr}");
    assert!(!dir.join("x.png").exists(), "nothing is written on error");
}

#[test]
fn encode_refuses_a_corrupt_image() {
    let dir = std::env::temp_dir().join(format!("spae-cli-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 truncated").unwrap();
    let out = spae().arg("encode").arg(&bad).arg("-o").arg(dir.join("p.txt")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));
}

#[test]
fn inspect_describes_model_codebook_and_vocabulary() {
    let out = spae().arg("inspect").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("16384 words x 576 dims"), "{stdout}");
    assert!(stdout.contains("layer 6: 16 x 16 = 256 tokens (597 cumulative)"), "{stdout}");
    assert!(stdout.contains("vocabulary visual words, first: the and for"), "{stdout}");
    assert!(stdout.contains("llama, licence apache-2.0), 49152 tokens"), "{stdout}");
}
