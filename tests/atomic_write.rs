//! The one way the project writes files (`spae::atomic_file`): concurrent writers, planted
//! links, targets that are not regular files, failures half-way, and the command line's
//! use of it (`-o` equal to the input, `-o -`).

mod common;

use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use common::spae;
use spae::atomic_file;

/// Files in `dir` other than `keep`: temporary files left behind would show up here.
fn others(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// Writer `w`'s content: its own byte pattern, a different length for each writer so that
/// a mix of two writers or a truncated file can never equal any one of them.
fn content(w: usize, round: usize) -> Vec<u8> {
    let len = 200_000 + w * 37_123 + round;
    (0..len).map(|i| (i * 31 + w * 7 + round) as u8).collect()
}

#[test]
fn eight_concurrent_writers_always_leave_one_whole_file() {
    let dir = common::fresh_dir("atomic-concurrent");
    let target = dir.join("out.bin");
    for round in 0..50 {
        let barrier = Arc::new(Barrier::new(8));
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (barrier, target) = (barrier.clone(), target.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    atomic_file::write(&target, &content(w, round))
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap().expect("every writer succeeds");
        }
        let written = std::fs::read(&target).unwrap();
        assert!(
            (0..8).any(|w| written == content(w, round)),
            "round {round}: the file ({} bytes) is not any one writer's whole output",
            written.len()
        );
        assert!(others(&dir, &["out.bin"]).is_empty(), "round {round}: left behind {:?}", others(&dir, &["out.bin"]));
    }
}

/// A regression check: before temporary names were random, `.out.txt.partial` was used
/// and followed.
#[test]
fn a_link_planted_at_the_old_temporary_name_is_not_followed() {
    let dir = common::fresh_dir("atomic-planted");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    // The name the writer used before it chose random, exclusively created names.
    symlink(&victim, dir.join(".out.txt.partial")).unwrap();
    atomic_file::write(&dir.join("out.txt"), b"new pyramid").unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(std::fs::read_to_string(dir.join("out.txt")).unwrap(), "new pyramid");
}

#[test]
fn targets_that_are_not_regular_files_are_refused() {
    let dir = common::fresh_dir("atomic-not-regular");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let link = dir.join("link.txt");
    symlink(&victim, &link).unwrap();
    let fifo = dir.join("fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path and a plain mode.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let folder = dir.join("folder");
    std::fs::create_dir(&folder).unwrap();
    for (target, what) in [
        (&link, "a symbolic link"),
        (&fifo, "a FIFO"),
        (&folder, "a folder"),
        (&PathBuf::from("/dev/null"), "a device"),
    ] {
        let error = atomic_file::write(target, b"x").unwrap_err().to_string();
        assert!(error.contains(what) && error.contains(&target.display().to_string()), "{error}");
    }
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(others(&dir, &["victim.txt", "link.txt", "fifo", "folder"]).is_empty());
}

#[test]
fn a_failure_half_way_keeps_the_old_file_and_leaves_nothing_behind() {
    let dir = common::fresh_dir("atomic-failure");
    let target = dir.join("model.safetensors");
    std::fs::write(&target, "the good weights").unwrap();
    let result = atomic_file::write_with(&target, |file| {
        use std::io::Write;
        file.write_all(b"half of the new")?;
        anyhow::bail!("disk full (simulated)")
    });
    assert!(format!("{:#}", result.unwrap_err()).contains("disk full (simulated)"));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "the good weights");
    assert!(others(&dir, &["model.safetensors"]).is_empty());
}

#[test]
fn writers_that_take_a_path_get_the_same_guarantees() {
    let dir = common::fresh_dir("atomic-via-path");
    let target = dir.join("weights.bin");
    atomic_file::write_via_path(&target, |temporary| {
        assert_ne!(temporary, target.as_path());
        assert_eq!(temporary.parent(), target.parent(), "the temporary file is in the target's folder");
        Ok(std::fs::write(temporary, b"tensor bytes")?)
    })
    .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"tensor bytes");
    assert!(others(&dir, &["weights.bin"]).is_empty());
}

#[test]
fn the_command_line_refuses_to_write_over_its_input() {
    let dir = common::fresh_dir("atomic-input");
    let image = dir.join("cat.png");
    std::fs::copy(common::sample("cat-face.png"), &image).unwrap();
    let before = std::fs::read(&image).unwrap();
    // The same file under another spelling of its path.
    let same = dir.join(".").join("cat.png");
    let out = spae().arg("encode").arg(&image).arg("-o").arg(&same).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("will not write over the input"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&image).unwrap(), before);

    let text = dir.join("cat.txt");
    assert!(spae().arg("encode").arg(&image).arg("-o").arg(&text).status().unwrap().success());
    let pyramid = std::fs::read(&text).unwrap();
    let out = spae().arg("decode").arg(&text).arg("-o").arg(&text).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("will not write over the input"));
    assert_eq!(std::fs::read(&text).unwrap(), pyramid);

    // A hard link is the same file under another name.
    let linked = dir.join("linked.png");
    std::fs::hard_link(&image, &linked).unwrap();
    let out = spae().arg("encode").arg(&image).arg("-o").arg(&linked).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("will not write over the input"));
    assert_eq!(std::fs::read(&image).unwrap(), before);
}

#[test]
fn a_replaced_file_keeps_its_mode_and_a_new_one_follows_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::fresh_dir("atomic-mode");
    let private = dir.join("private.txt");
    std::fs::write(&private, "old").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    atomic_file::write(&private, b"new").unwrap();
    assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
    // The same file made by File::create and by the atomic writer get the same mode.
    let (created, written) = (dir.join("created.txt"), dir.join("written.txt"));
    std::fs::File::create(&created).unwrap();
    atomic_file::write(&written, b"x").unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&written), mode(&created));
}

#[test]
fn temporaries_left_by_a_killed_writer_are_cleared_once_stale() {
    let dir = common::fresh_dir("atomic-stale");
    let stale = dir.join(".weights.bin.Ab12Cd.partial");
    let fresh = dir.join(".weights.bin.Zz99Yy.partial");
    let unrelated = dir.join(".other.bin.Ab12Cd.partial");
    for path in [&stale, &fresh, &unrelated] {
        std::fs::write(path, "left by a killed writer").unwrap();
    }
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for path in [&stale, &unrelated] {
        std::fs::File::options().write(true).open(path).unwrap().set_modified(an_hour_ago).unwrap();
    }
    atomic_file::write(&dir.join("weights.bin"), b"tensors").unwrap();
    assert!(!stale.exists(), "an old temporary of this file is removed");
    assert!(fresh.exists(), "a young one may belong to a writer at work");
    assert!(unrelated.exists(), "another file's temporaries are not this writer's business");
}

#[test]
fn a_dash_writes_to_standard_output() {
    let dir = common::fresh_dir("atomic-stdout");
    let text = dir.join("cat.txt");
    assert!(spae().args(["encode", "assets/samples/cat-face.png", "-o"]).arg(&text).status().unwrap().success());
    let out = spae().args(["encode", "assets/samples/cat-face.png", "-o", "-"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&text).unwrap(), "the same pyramid on standard output");
    let png = dir.join("cat.png");
    assert!(spae().arg("decode").arg(&text).arg("-o").arg(&png).status().unwrap().success());
    let out = spae().arg("decode").arg(&text).args(["-o", "-"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&png).unwrap(), "the same PNG on standard output");
    assert!(!Path::new(env!("CARGO_MANIFEST_DIR")).join("-").exists(), "no file named `-`");
}

#[test]
fn concurrent_encoders_to_one_output_leave_one_whole_pyramid() {
    let dir = common::fresh_dir("atomic-cli-concurrent");
    let output = dir.join("same.txt");
    let images = ["cat-face.png", "red-apple.png", "automobile.png", "sunflower.png"];
    let mut expected = Vec::new();
    for image in images {
        let alone = dir.join(format!("{image}.txt"));
        assert!(spae().arg("encode").arg(common::sample(image)).arg("-o").arg(&alone).status().unwrap().success());
        expected.push(std::fs::read(&alone).unwrap());
    }
    for round in 0..3 {
        let children: Vec<_> = images
            .iter()
            .map(|image| spae().arg("encode").arg(common::sample(image)).arg("-o").arg(&output).spawn().unwrap())
            .collect();
        for mut child in children {
            assert!(child.wait().unwrap().success(), "round {round}: a writer failed");
        }
        let written = std::fs::read(&output).unwrap();
        assert!(expected.contains(&written), "round {round}: the pyramid is not one writer's whole output");
    }
}
