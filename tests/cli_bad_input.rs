//! The command line on bad arguments: refused with a message (exit 1, never a panic's 101),
//! checked before slow work starts, and nothing of an earlier run mixed into a new one.

mod common;

use std::path::Path;
use std::process::Output;

use common::spae;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn generate(output: &Path, extra: &[&str]) -> Output {
    spae().args(["generate", "--prompt", "cat face", "-o"]).arg(output).args(extra).output().unwrap()
}

#[test]
fn generate_refuses_more_layers_than_the_model_has() {
    let out_dir = common::fresh_dir("cli-bad-layers").join("out");
    let out = generate(&out_dir, &["--layers", "7"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("layers must be 1..=6, not 7"), "{}", stderr(&out));
    assert!(!out_dir.exists(), "nothing is written");
}

#[test]
fn generate_refuses_too_many_examples_before_the_first_frame() {
    let out_dir = common::fresh_dir("cli-bad-examples").join("out");
    let out = generate(&out_dir, &["--examples", "100000"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("context holds"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("examples:"), "refused before the examples are chosen and encoded");
    assert!(!out_dir.exists(), "refused before frame-000 is written");
}

#[test]
fn generate_refuses_a_prompt_longer_than_the_context_before_the_first_frame() {
    let out_dir = common::fresh_dir("cli-bad-prompt").join("out");
    let prompt = "cat ".repeat(12_500);
    let out = spae().args(["generate", "--prompt", &prompt, "-o"]).arg(&out_dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("context holds"), "{}", stderr(&out));
    assert!(!out_dir.exists());
}

#[test]
fn generate_says_what_is_wrong_with_the_temperature() {
    for value in ["--temperature=NaN", "--temperature=inf", "--temperature=-1"] {
        let out = generate(&common::fresh_dir("cli-bad-temperature").join("out"), &[value]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("the temperature must be a finite number, 0 or more"),
            "{value}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn generate_into_a_file_names_it() {
    let file = common::fresh_dir("cli-bad-file").join("taken.txt");
    std::fs::write(&file, "mine").unwrap();
    let out = generate(&file, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("the output {} is not a folder", file.display())), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
}

#[test]
fn generate_replaces_an_earlier_generation_and_nothing_else() {
    // Files named like frames that no generation wrote are never removed: refused.
    let foreign = common::fresh_dir("cli-bad-foreign");
    for name in ["frame-000.png", "final.txt"] {
        std::fs::write(foreign.join(name), "mine").unwrap();
    }
    let out = generate(&foreign, &["--steps", "1", "--examples", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("that no generation wrote there"), "{}", stderr(&out));
    assert_eq!(names(&foreign), ["final.txt", "frame-000.png"]);
    assert_eq!(std::fs::read_to_string(foreign.join("frame-000.png")).unwrap(), "mine");

    // A folder an earlier generation wrote: its files are replaced, others kept.
    let dir = common::fresh_dir("cli-bad-rerun");
    let out = generate(&dir, &["--steps", "2", "--examples", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first_final = std::fs::read(dir.join("final.png")).unwrap();
    std::fs::write(dir.join("notes.md"), "mine").unwrap();
    let out = generate(&dir, &["--steps", "1", "--examples", "2", "--seed", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("removed 6 files of an earlier generation"), "{}", stderr(&out));
    assert_eq!(
        names(&dir),
        [".spae-generation", "final.png", "final.txt", "frame-000.png", "frame-001.png", "frames.png", "notes.md"]
    );
    assert_ne!(std::fs::read(dir.join("final.png")).unwrap(), first_final, "final.png is this run's");
    assert_eq!(std::fs::read_to_string(dir.join("notes.md")).unwrap(), "mine");

    // The source image of an image-to-image run is never among the files replaced.
    let out = spae()
        .args(["generate", "--task", "outpaint", "--steps", "1", "--examples", "2", "--source"])
        .arg(dir.join("final.png"))
        .arg("-o")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("would be replaced by this run's output"), "{}", stderr(&out));
    assert!(dir.join("final.png").exists() && dir.join("frame-001.png").exists());
}

#[test]
fn a_folder_without_a_model_is_refused_unless_untrained_is_asked_for() {
    let dir = common::fresh_dir("cli-bad-no-model");
    let empty = dir.join("empty-model");
    std::fs::create_dir_all(&empty).unwrap();
    let run = |model: &Path, extra: &[&str]| {
        spae()
            .arg("--model")
            .arg(model)
            .args(extra)
            .arg("encode")
            .arg(common::sample("cat-face.png"))
            .arg("-o")
            .arg(dir.join("cat.txt"))
            .output()
            .unwrap()
    };
    let out = run(&empty, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("no model in {}", empty.display()))
            && stderr(&out).contains("--allow-untrained"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("cat.txt").exists());
    let out = run(&dir.join("nowhere"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("the model folder {} does not exist", dir.join("nowhere").display())),
        "{}",
        stderr(&out)
    );
    let out = run(&empty, &["--allow-untrained"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("untrained (initialised from seed 0)"), "{}", stderr(&out));
    assert!(dir.join("cat.txt").exists());
}

#[test]
fn default_paths_do_not_depend_on_the_working_directory() {
    let elsewhere = common::fresh_dir("cli-bad-elsewhere");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spae"))
        .current_dir(&elsewhere)
        .args(["encode", "-o", "cat.txt"])
        .arg(common::sample("cat-face.png"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shipped = spae().args(["encode", "assets/samples/cat-face.png", "-o", "-"]).output().unwrap();
    assert_eq!(
        std::fs::read(elsewhere.join("cat.txt")).unwrap(),
        shipped.stdout,
        "the shipped model, found from elsewhere"
    );
}

#[test]
fn the_studio_answers_help_and_version_without_a_window_and_names_missing_paths() {
    let studio = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_spae-studio"));
        // No display: any attempt to open a window would fail.
        command.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY").current_dir(std::env::temp_dir());
        command
    };
    let out = studio().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: spae-studio [OPTIONS] [IMAGE]") && help.contains("--model") && help.contains("--llm"),
        "{help}"
    );
    let out = studio().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("spae-studio "));
    for (args, expected) in [
        (vec!["/no/such/photo.png"], "the image /no/such/photo.png does not exist"),
        (vec!["--model", "/no/such/model"], "the model folder /no/such/model does not exist"),
        (vec!["--llm", "/no/such.gguf"], "the LLM file /no/such.gguf does not exist"),
    ] {
        let out = studio().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_gpu_capable_decode_prints_no_runtime_dir_error() {
    let dir = common::fresh_dir("cli-bad-xdg");
    let text = dir.join("cat.txt");
    assert!(spae().args(["encode", "assets/samples/cat-face.png", "-o"]).arg(&text).status().unwrap().success());
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = spae()
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", &tmp)
        .arg("decode")
        .arg(&text)
        .arg("-o")
        .arg(dir.join("cat.png"))
        .args(["--device", "auto"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("XDG_RUNTIME_DIR"), "{}", stderr(&out));
    // The private folder it made instead: ours, and closed to everyone else.
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let made = std::fs::symlink_metadata(tmp.join(format!("spae-runtime-{uid}"))).unwrap();
    assert!(made.is_dir() && made.uid() == uid && made.mode() & 0o777 == 0o700, "mode {:o}", made.mode());
}

#[test]
fn eval_caption_refuses_no_examples_and_a_missing_data_cache() {
    let out = spae().args(["eval-caption", "--examples", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--examples must be at least 1"), "{}", stderr(&out));
    let missing = std::env::temp_dir().join("spae-no-such-cache");
    let out = spae().args(["eval-ask", "--cache"]).arg(&missing).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("spae-no-such-cache"), "{}", stderr(&out));
}

#[test]
fn training_step_options_out_of_range_are_refused() {
    // Refused before any data is read, so no prepared cache is needed.
    let missing = std::env::temp_dir().join("spae-no-such-cache");
    let cases: [(&[&str], &str); 14] = [
        (&["--search", "exact", "--search-shortlist", "8"], "add --search quantized"),
        (&["--search", "quantized", "--search-shortlist", "0"], "--search-shortlist must be at least 1"),
        (&["--full-prefix-share", "1.5"], "--full-prefix-share is a share of the batch"),
        (&["--full-prefix-share=-0.1"], "--full-prefix-share is a share of the batch"),
        (&["--full-prefix-share", "NaN"], "--full-prefix-share is a share of the batch"),
        (&["--usage-weight=-1"], "--usage-weight must be at least 0"),
        (&["--usage-weight", "0.1", "--usage-temperature", "0"], "--usage-temperature above 0"),
        (&["--usage-temperature", "NaN"], "--usage-temperature above 0"),
        (&["--relaxed-candidates", "8"], "add --relaxed"),
        (&["--relaxed", "--relaxed-candidates", "1"], "--relaxed-candidates must be 2 to 64"),
        (&["--relaxed", "--relaxed-candidates", "65"], "--relaxed-candidates must be 2 to 64"),
        (&["--relaxed", "--relaxed-temperature", "0"], "--relaxed-temperature above 0"),
        (&["--relaxed", "--relaxed-temperature", "inf"], "--relaxed-temperature above 0"),
        (&["--relaxed", "--search", "exact"], "drop --search exact"),
    ];
    for (options, message) in cases {
        let out = spae().arg("bench-train").args(options).arg("--cache").arg(&missing).output().unwrap();
        assert!(!out.status.success());
        assert!(stderr(&out).contains(message), "{options:?}: {}", stderr(&out));
    }
}

#[test]
fn fewshot_on_the_teachers_words_refuses_a_control() {
    let out = spae()
        .args(["eval-fewshot", "--words", "teacher", "--control"])
        .arg(common::fresh_dir("cli-fewshot-teacher"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("a --control would repeat them"), "{}", stderr(&out));
}

#[test]
fn fewshot_refuses_zero_orderings_before_any_work() {
    let out = spae().args(["eval-fewshot", "--orderings", "0", "--tasks", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--orderings must be at least 1"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("encoding"), "{}", stderr(&out));
}

/// `spae vocabulary` writes the rule's list, and never silently replaces a different one
/// (the models made for it would read other words).
#[test]
fn the_vocabulary_command_writes_its_list_and_keeps_a_different_one() {
    let cache = common::fresh_dir("cli-vocabulary");
    let out = cache.join("words.txt");
    let run = |extra: &[&str]| {
        spae().arg("vocabulary").arg("--cache").arg(&cache).arg("--out").arg(&out).args(extra).output().unwrap()
    };
    let refused = run(&[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("spae prepare-data"), "{}", stderr(&refused));
    assert!(!out.exists());

    std::fs::create_dir_all(cache.join("data")).unwrap();
    let sample = r#"{"package":"tuxpaint-stamps-default","file":"a.png","caption":"A ripe avocado.","name":"avocado","category":"food","subcategory":null}"#;
    std::fs::write(cache.join("data/train.jsonl"), format!("{sample}\n")).unwrap();
    let written = run(&[]);
    assert!(written.status.success(), "{}", stderr(&written));
    let list = std::fs::read_to_string(&out).unwrap();
    let words: Vec<&str> = list.lines().collect();
    assert_eq!(words.len(), 16_384);
    assert!(words.contains(&"avocado") && words.contains(&"strawberry"), "a text word and a class word entered");
    assert!(String::from_utf8_lossy(&written.stdout).contains("entered"));
    assert!(run(&[]).status.success(), "the same list again is no change");

    std::fs::write(&out, "other\nwords\n").unwrap();
    let kept = run(&[]);
    assert_eq!(kept.status.code(), Some(1), "{}", stderr(&kept));
    assert!(stderr(&kept).contains("holds a different word list"), "{}", stderr(&kept));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "other\nwords\n");
    assert!(run(&["--force"]).status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), list);
}

#[test]
fn a_frequency_penalty_that_is_not_a_finite_non_negative_number_is_refused() {
    // Refused before the training data is read, so no prepared cache is needed.
    let missing = std::env::temp_dir().join("spae-no-such-cache");
    for command in ["train-branch", "train", "bench-train"] {
        for value in ["-1", "NaN", "inf"] {
            let flag = format!("--frequency-penalty={value}");
            let out = spae().args([command, &flag, "--cache"]).arg(&missing).output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{command} {flag}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("--frequency-penalty must be a finite number of at least 0"),
                "{}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn train_decoder_refuses_a_model_without_a_finished_encoder() {
    // Every refusal comes before the training data is read (the cache named is missing).
    let missing = std::env::temp_dir().join("spae-no-such-cache");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::DEFAULT_MODEL_DIR);
    let folder = common::fresh_dir("cli-train-decoder");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shipped.join("config.json")).unwrap()).unwrap();
    config["decoder_res_blocks"] = serde_json::json!(2);
    std::fs::write(folder.join("config.json"), config.to_string()).unwrap();
    let run = |extra: &[&str]| {
        spae()
            .arg("--model")
            .arg(&folder)
            .arg("train-decoder")
            .args(extra)
            .arg("--cache")
            .arg(&missing)
            .arg("--run")
            .arg(folder.join("run"))
            .output()
            .unwrap()
    };
    let cases: [(&[&str], &str); 4] = [
        (&[], "no trained model in"),
        (&["--init-from", "weights/spae-control"], "does not hold this model's encoder and branch"),
        (&["--full-prefix-share", "1.5"], "--full-prefix-share is a share of the batch"),
        (&["--lr", "0"], "--lr must be above 0"),
    ];
    for (extra, message) in cases {
        let out = run(extra);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{extra:?}: {}", stderr(&out));
    }
    assert_eq!(names(&folder), vec!["config.json"], "nothing is written");
}
