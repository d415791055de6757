//! The evaluation report: the training log read back as written, and pictures that show
//! what they were given (each model's line in its colour; the teacher's words marked).

use image::RgbImage;
use spae::eval::heldout::Report;
use spae::eval::heldout::{SheetRow, SheetWords};
use spae::eval::report::{layer_chart, training_curves, word_sheet};
use spae::train::log::{read, StepRecord, TrainingLog};

fn record(step: u64, psnr: f64, semantic: Option<f64>) -> StepRecord {
    StepRecord {
        step,
        lr: 1e-4 * step as f64,
        loss: 0.5,
        pixel_mse: 4.0 / 10f64.powf(psnr / 10.0),
        commitment: 0.25,
        psnr_db: psnr,
        seconds_encoder: 0.1,
        seconds_search: 0.2,
        seconds_decoder_and_losses: 0.3,
        seconds_backward: 0.4,
        seconds_total: 1.0,
        semantic,
        perceptual: None,
        usage: semantic.map(|s| -0.1 * s),
    }
}

/// Pixels of exactly this colour.
fn count(image: &RgbImage, colour: [u8; 3]) -> usize {
    image.pixels().filter(|p| p.0 == colour).count()
}

const FIRST: [u8; 3] = [31, 119, 180];
const SECOND: [u8; 3] = [230, 120, 20];
/// Text is anti-aliased: the teacher's green is counted as any clearly green pixel.
fn green(image: &RgbImage) -> usize {
    image.pixels().filter(|p| p.0[1] as i32 > p.0[0] as i32 + 40 && p.0[1] as i32 > p.0[2] as i32 + 20).count()
}

#[test]
fn the_log_reads_back_what_was_written() {
    let dir = std::env::temp_dir().join(format!("spae-report-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("log.csv");
    let mut log = TrainingLog::open(&path, 0).unwrap();
    log.append(&record(1, 12.5, None)).unwrap();
    log.append(&record(2, 13.25, Some(0.75))).unwrap();
    log.flush().unwrap();
    let back = read(&path).unwrap();
    assert_eq!(back.iter().map(|r| r.step).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(back[0].semantic, None);
    assert_eq!(back[1].semantic, Some(0.75));
    assert!((back[1].psnr_db - 13.25).abs() < 1e-9);
    assert!((back[1].lr - 2e-4).abs() < 1e-12);
    assert!((back[0].pixel_mse - 4.0 / 10f64.powf(1.25)).abs() < 1e-6);

    std::fs::write(&path, "step,lr\n1,x\n").unwrap();
    let error = read(&path).expect_err("a broken log is refused").to_string();
    assert!(error.contains("line 2") && error.contains("column 2"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Resuming keeps the rows up to the checkpoint's step, drops a row cut off by a killed
/// run, and reads logs of older layouts (fewer columns, or empty padded fields).
#[test]
fn reopening_the_log_keeps_the_checkpointed_rows() {
    let dir = std::env::temp_dir().join(format!("spae-report-reopen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("log.csv");
    // Rows 1-3 in an older layout, then a row cut off inside its step number ("20,..."
    // cut to "2"), which would parse as step 2.
    let old_layout = "step,lr,loss,pixel_mse,commitment,psnr_db\n1,5e-4,0.5,0.25,0.1,12.5\n2,5e-4,0.4,0.2,0.1,13\n3,5e-4,0.3,0.1,0.1,14\n2";
    std::fs::write(&path, old_layout).unwrap();
    let mut log = TrainingLog::open(&path, 3).unwrap();
    log.append(&record(4, 20.0, Some(0.5))).unwrap();
    log.flush().unwrap();
    let back = read(&path).unwrap();
    assert_eq!(back.iter().map(|r| r.step).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    let psnr: Vec<f64> = back.iter().map(|r| r.psnr_db).collect();
    assert_eq!(psnr, [12.5, 13.0, 14.0, 20.0]);
    assert_eq!((back[0].seconds_total, back[0].semantic), (0.0, None), "absent in the old layout");
    assert_eq!(back[3].semantic, Some(0.5));
    // An older version padded missing columns with empty fields: zero, or absent.
    let padded = dir.join("padded.csv");
    let header = "step,lr,loss,pixel_mse,commitment,psnr_db,seconds_encoder,seconds_search,seconds_decoder_and_losses,seconds_backward,seconds_total,semantic,perceptual";
    std::fs::write(&padded, format!("{header}\n1,5e-4,0.5,0.25,0.1,12.5,,,,,,,\n")).unwrap();
    let back = read(&padded).unwrap();
    assert_eq!((back[0].psnr_db, back[0].seconds_total, back[0].perceptual), (12.5, 0.0, None));
    // A new log has no rows and no header until the first rows arrive.
    let fresh = dir.join("fresh.csv");
    let mut log = TrainingLog::open(&fresh, 0).unwrap();
    assert!(read(&fresh).unwrap().is_empty());
    log.append(&record(1, 10.0, None)).unwrap();
    log.flush().unwrap();
    assert!(std::fs::read_to_string(&fresh).unwrap().starts_with("step,lr,loss,"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn each_model_is_drawn_in_its_colour() {
    let report = |base: f64| Report {
        psnr_db: (0..6).map(|l| base + l as f64).collect(),
        ssim: (0..6).map(|l| 0.3 + 0.05 * l as f64).collect(),
        latent_error: vec![0.5; 6],
        psnr_unquantized_db: base,
        semantic_precision: None,
        text_precision: None,
        specific_precision: None,
        distinct_words: 0,
        perplexity: vec![1.0; 6],
        commonest: vec![Vec::new(); 6],
        images: 1,
    };
    let (a, b) = (report(12.0), report(11.0));
    let one = layer_chart(&[("SPAE", &a)]).unwrap();
    assert_eq!(one.dimensions(), (1100, 420));
    assert!(count(&one, FIRST) > 200, "the first model's lines and markers");
    assert_eq!(count(&one, SECOND), 0, "no second model");
    let two = layer_chart(&[("SPAE", &a), ("control", &b)]).unwrap();
    assert!(count(&two, SECOND) > 200, "the second model's lines and markers");

    let with_semantic: Vec<StepRecord> = (1..=120).map(|s| record(s, 10.0 + s as f64 / 20.0, Some(1.0))).collect();
    let without: Vec<StepRecord> = (1..=120).map(|s| record(s, 10.0 + s as f64 / 30.0, None)).collect();
    let curves = training_curves(&[("SPAE", &with_semantic), ("control", &without)]).unwrap();
    assert!(count(&curves, FIRST) > 300 && count(&curves, SECOND) > 300);
    assert!(training_curves(&[("empty", &[])]).is_err(), "an empty log is an error, not a blank chart");
}

#[test]
fn the_sheet_marks_words_the_teacher_ranks() {
    let row = |hit: bool| SheetRow {
        original: RgbImage::from_pixel(64, 64, image::Rgb([200, 10, 10])),
        decoded: RgbImage::from_pixel(64, 64, image::Rgb([10, 10, 200])),
        text: "a red square".to_string(),
        teacher: vec!["red".to_string(), "square".to_string()],
        models: vec![SheetWords {
            model: "SPAE".to_string(),
            words: vec![("red".to_string(), hit), ("blue".to_string(), false)],
        }],
    };
    let (marked, unmarked) = (word_sheet(&[row(true)]).unwrap(), word_sheet(&[row(false)]).unwrap());
    assert!(green(&marked) > green(&unmarked), "a hit adds green text");
    assert!(green(&unmarked) > 0, "the teacher's own words are green");
    // The original and its reconstruction, enlarged twice, side by side.
    assert_eq!(count(&marked, [200, 10, 10]), 128 * 128);
    assert_eq!(count(&marked, [10, 10, 200]), 128 * 128);
    assert!(word_sheet(&[]).is_err());
}
