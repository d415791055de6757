//! Peak memory of `spae` on the largest inputs it accepts, read from the kernel's account
//! of this test's child processes (`getrusage(RUSAGE_CHILDREN)`: the largest resident
//! set of any child so far). One test in this binary, so no other child is counted.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use spae::codebook::Codebook;
use spae::model::{SpaeConfig, SpaeModel};

/// The largest resident set of any finished child, in MiB.
fn children_peak_mib() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    usage.ru_maxrss as f64 / 1024.0 // kilobytes on Linux
}

fn spae(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spae")).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap()
}

#[test]
fn crafted_configs_and_the_largest_image_stay_within_bounds() {
    let llm = Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::LLM_GGUF);
    let dir = std::env::temp_dir().join(format!("spae-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // A config asking for 3 x 4096 channels used to allocate 5.5 GB before failing.
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let mut config = serde_json::to_value(SpaeConfig::default()).unwrap();
    config["channels"] = serde_json::json!([4096, 4096, 4096]);
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    let out = spae(&["--model".as_ref(), model.as_os_str(), "inspect".as_ref()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let refused = children_peak_mib();
    assert!(refused < 200.0, "refusing the config peaked at {refused:.0} MiB");

    // Near the largest model the validator accepts: 54 M of the 64 M parameters allowed.
    let config = SpaeConfig { resolution: 256, channels: vec![768, 768], norm_groups: 32, ..SpaeConfig::default() };
    config.validate().unwrap();
    assert!(config.parameter_count() > 50_000_000, "{}", config.parameter_count());
    let large = dir.join("large");
    SpaeModel::from_seed(
        config,
        Arc::new(
            Codebook::load(llm, spae::codebook::vocabulary::DEFAULT_RULE, spae::codebook::vocabulary::DEFAULT_SIZE)
                .unwrap(),
        ),
        0,
    )
    .unwrap()
    .save(&large)
    .unwrap();
    let out = spae(&["--model".as_ref(), large.as_os_str(), "inspect".as_ref()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let largest = children_peak_mib();
    assert!(largest < 1024.0, "loading the largest accepted model peaked at {largest:.0} MiB");
    std::fs::remove_dir_all(&large).unwrap();

    // A 16384 x 16384 greyscale PNG (a few hundred KB on disk) used to peak at 2.3 GB.
    let png = dir.join("huge-grey.png");
    let side = spae::image_io::MAX_SIDE;
    image::GrayImage::from_fn(side, side, |x, y| image::Luma([((x / 64 + y / 64) % 2 * 200) as u8]))
        .save(&png)
        .unwrap();
    let out = spae(&["encode".as_ref(), png.as_os_str(), "-o".as_ref(), dir.join("huge.txt").as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let encoded = children_peak_mib();
    eprintln!(
        "peak resident memory: refusing the config {refused:.0} MiB, loading a 54 M-parameter model {largest:.0} MiB, \
         encoding the {side} px grey PNG at most {encoded:.0} MiB"
    );
    assert!(encoded < 1536.0, "encoding the {side} x {side} PNG peaked at {encoded:.0} MiB");
    std::fs::remove_file(&png).unwrap();
}
