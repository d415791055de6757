//! The command line on bad arguments: refused with a message (exit 1, never a panic's 101),
//! checked before slow work starts, and nothing of an earlier run mixed into a new one.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::spae;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
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
        assert!(stderr(&out).contains("the temperature must be a finite number, 0 or more"), "{value}: {}", stderr(&out));
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
fn generate_removes_an_earlier_runs_files_and_keeps_others() {
    let dir = common::fresh_dir("cli-bad-rerun");
    for step in 0..10 {
        std::fs::write(dir.join(format!("frame-{step:03}.png")), "old").unwrap();
    }
    for old in ["frames.png", "final.png", "final.txt", "notes.md", "frame-x.png"] {
        std::fs::write(dir.join(old), "old").unwrap();
    }
    let out = generate(&dir, &["--steps", "1", "--examples", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("removed 13 files of an earlier generation"), "{}", stderr(&out));
    assert_eq!(
        names(&dir),
        ["final.png", "final.txt", "frame-000.png", "frame-001.png", "frame-x.png", "frames.png", "notes.md"]
    );
    for new in ["final.png", "final.txt", "frame-000.png", "frame-001.png", "frames.png"] {
        assert_ne!(std::fs::read(dir.join(new)).unwrap(), b"old", "{new} is from this run");
    }
    assert_eq!(std::fs::read_to_string(dir.join("notes.md")).unwrap(), "old");
}

#[test]
fn outside_the_project_encode_refuses_the_untrained_model_unless_asked() {
    let dir = common::fresh_dir("cli-bad-elsewhere");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_spae"))
            .current_dir(&dir)
            .arg("--llm")
            .arg(common::llm_path())
            .args(extra)
            .arg("encode")
            .arg(common::sample("cat-face.png"))
            .args(["-o", "cat.txt"])
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no model in weights/spae-default") && stderr(&out).contains("--allow-untrained"), "{}", stderr(&out));
    assert!(!dir.join("cat.txt").exists());
    let out = run(&["--allow-untrained"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("untrained (initialised from seed 0)"), "{}", stderr(&out));
    assert!(dir.join("cat.txt").exists());
}

#[test]
fn a_gpu_capable_decode_prints_no_runtime_dir_error() {
    let dir = common::fresh_dir("cli-bad-xdg");
    let text = dir.join("cat.txt");
    assert!(spae().args(["encode", "assets/samples/cat-face.png", "-o"]).arg(&text).status().unwrap().success());
    let out = spae()
        .env_remove("XDG_RUNTIME_DIR")
        .arg("decode")
        .arg(&text)
        .arg("-o")
        .arg(dir.join("cat.png"))
        .args(["--device", "auto"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("XDG_RUNTIME_DIR"), "{}", stderr(&out));
}
