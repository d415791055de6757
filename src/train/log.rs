//! The training log: one CSV row per step, kept consistent with the checkpoint on resume.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct StepRecord {
    pub step: u64,
    pub lr: f64,
    pub loss: f64,
    pub pixel_mse: f64,
    pub commitment: f64,
    pub psnr_db: f64,
    pub seconds_encoder: f64,
    pub seconds_search: f64,
    pub seconds_decoder_and_losses: f64,
    pub seconds_backward: f64,
    pub seconds_total: f64,
    /// The weighted semantic term; `None` when training without it.
    pub semantic: Option<f64>,
    /// The weighted perceptual term; `None` when training without it.
    pub perceptual: Option<f64>,
}

const HEADER: &str = "step,lr,loss,pixel_mse,commitment,psnr_db,seconds_encoder,seconds_search,seconds_decoder_and_losses,seconds_backward,seconds_total,semantic,perceptual";
const COLUMNS: usize = 13;

/// An optional value as a CSV field: empty when absent.
fn optional(value: Option<f64>) -> String {
    value.map_or(String::new(), |v| format!("{v:.6}"))
}

/// Reads a training log (for the report's curves); rows from an older log with fewer
/// columns read their missing values as absent or zero.
pub fn read(path: &Path) -> Result<Vec<StepRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the training log {}", path.display()))?;
    text.lines()
        .enumerate()
        .skip(1)
        .map(|(n, line)| {
            let fields: Vec<&str> = line.split(',').collect();
            // An empty or missing field is absent; a required one then reads as zero.
            let optional = |i: usize| -> Result<Option<f64>> {
                match fields.get(i).copied().unwrap_or("") {
                    "" => Ok(None),
                    f => f.parse().map(Some).with_context(|| {
                        format!("{} line {}: column {} is not a number", path.display(), n + 1, i + 1)
                    }),
                }
            };
            let number = |i: usize| -> Result<f64> { Ok(optional(i)?.unwrap_or(0.0)) };
            Ok(StepRecord {
                step: number(0)? as u64,
                lr: number(1)?,
                loss: number(2)?,
                pixel_mse: number(3)?,
                commitment: number(4)?,
                psnr_db: number(5)?,
                seconds_encoder: number(6)?,
                seconds_search: number(7)?,
                seconds_decoder_and_losses: number(8)?,
                seconds_backward: number(9)?,
                seconds_total: number(10)?,
                semantic: optional(11)?,
                perceptual: optional(12)?,
            })
        })
        .collect()
}

pub struct TrainingLog {
    path: PathBuf,
    pending: String,
}

impl TrainingLog {
    /// Opens the log, dropping rows after `step` (written after the last checkpoint by a
    /// run that was killed), so the log matches the state training resumes from.
    pub fn open(path: &Path, step: u64) -> Result<Self> {
        let kept: Vec<String> = match std::fs::read_to_string(path) {
            Ok(text) => text
                .lines()
                .skip(1)
                .filter(|line| line.split(',').next().and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s <= step))
                .map(str::to_string)
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut text = format!("{HEADER}\n");
        for line in kept {
            text.push_str(&line);
            // Rows from a version of the log with fewer columns: those values are unknown.
            text.push_str(&",".repeat(COLUMNS.saturating_sub(line.split(',').count())));
            text.push('\n');
        }
        crate::atomic_file::write(path, text.as_bytes())?;
        Ok(Self { path: path.to_path_buf(), pending: String::new() })
    }

    pub fn append(&mut self, r: &StepRecord) -> Result<()> {
        self.pending.push_str(&format!(
            "{},{:.6e},{:.6},{:.6},{:.6},{:.3},{:.4},{:.4},{:.4},{:.4},{:.4},{},{}\n",
            r.step,
            r.lr,
            r.loss,
            r.pixel_mse,
            r.commitment,
            r.psnr_db,
            r.seconds_encoder,
            r.seconds_search,
            r.seconds_decoder_and_losses,
            r.seconds_backward,
            r.seconds_total,
            optional(r.semantic),
            optional(r.perceptual)
        ));
        if self.pending.len() > 4096 {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(|| format!("cannot append to {}", self.path.display()))?;
        file.write_all(self.pending.as_bytes())?;
        self.pending.clear();
        Ok(())
    }
}
