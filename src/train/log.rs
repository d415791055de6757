//! The training log: one CSV row per step (a [`StepRecord`], read and written through
//! serde, so the columns are the struct's fields), kept consistent with the checkpoint on
//! resume.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One training step. Every field has a default, so rows of an older log with fewer
/// columns read their missing values as absent or zero; an empty number (a column an
/// older version padded) reads as zero too.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepRecord {
    pub step: u64,
    #[serde(deserialize_with = "zero_if_empty")]
    pub lr: f64,
    #[serde(deserialize_with = "zero_if_empty")]
    pub loss: f64,
    #[serde(deserialize_with = "zero_if_empty")]
    pub pixel_mse: f64,
    #[serde(deserialize_with = "zero_if_empty")]
    pub commitment: f64,
    #[serde(deserialize_with = "zero_if_empty")]
    pub psnr_db: f64,
    #[serde(deserialize_with = "zero_if_empty")]
    pub seconds_encoder: f64,
    #[serde(deserialize_with = "zero_if_empty")]
    pub seconds_search: f64,
    #[serde(deserialize_with = "zero_if_empty")]
    pub seconds_decoder_and_losses: f64,
    #[serde(deserialize_with = "zero_if_empty")]
    pub seconds_backward: f64,
    #[serde(deserialize_with = "zero_if_empty")]
    pub seconds_total: f64,
    /// The weighted semantic term; `None` (an empty field) when training without it.
    pub semantic: Option<f64>,
    /// The weighted perceptual term; `None` (an empty field) when training without it.
    pub perceptual: Option<f64>,
    /// The weighted word-usage term; `None` (an empty field) when training without it.
    pub usage: Option<f64>,
}

/// A number, or zero for an empty field.
fn zero_if_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(0.0))
}

/// Reads a training log (for the report's curves and on resume).
pub fn read(path: &Path) -> Result<Vec<StepRecord>> {
    rows(path)?.into_iter().collect()
}

/// Every row of a log, each read on its own; an unreadable row is an error naming its
/// line (and column). A row with fewer fields than the file's header was cut off (a run
/// killed while appending), even where its fields would parse ("1540,..." cut to "15").
fn rows(path: &Path) -> Result<Vec<Result<StepRecord>>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read the training log {}", path.display()))?;
    let headers = reader.headers().map_err(|e| row_error(path, &e))?.clone();
    let rows = reader
        .records()
        .map(|row| {
            let row = row.map_err(|e| row_error(path, &e))?;
            if row.len() < headers.len() {
                let line = row.position().map_or(0, csv::Position::line);
                anyhow::bail!("{} line {line}: {} of {} fields, cut off", path.display(), row.len(), headers.len());
            }
            row.deserialize(Some(&headers)).map_err(|e| row_error(path, &e))
        })
        .collect();
    Ok(rows)
}

/// A CSV error as "FILE line L, column C: why".
fn row_error(path: &Path, error: &csv::Error) -> anyhow::Error {
    let line = error.position().map_or(String::new(), |p| format!(" line {}", p.line()));
    let column = match error.kind() {
        csv::ErrorKind::Deserialize { err, .. } => err.field().map_or(String::new(), |f| format!(", column {}", f + 1)),
        _ => String::new(),
    };
    anyhow::anyhow!("{}{line}{column}: {error}", path.display())
}

/// Records as CSV rows, after the header where `header` is set (and there is a row).
fn csv_text(records: &[StepRecord], header: bool) -> Result<Vec<u8>> {
    let mut writer = csv::WriterBuilder::new().has_headers(header).from_writer(Vec::new());
    for record in records {
        writer.serialize(record)?;
    }
    writer.into_inner().map_err(|e| anyhow::anyhow!("cannot write the training log's rows: {e}"))
}

pub struct TrainingLog {
    path: PathBuf,
    /// Rows not yet appended to the file.
    pending: Vec<StepRecord>,
}

impl TrainingLog {
    /// Opens the log, dropping rows after `step` (written after the last checkpoint by a
    /// run that was killed), so the log matches the state training resumes from.
    pub fn open(path: &Path, step: u64) -> Result<Self> {
        let mut kept = Vec::new();
        if path.exists() {
            let mut unreadable = 0;
            for row in rows(path)? {
                match row {
                    Ok(record) if record.step <= step => kept.push(record),
                    Ok(_) => {}
                    // A run killed while appending leaves a cut-off last row.
                    Err(_) => unreadable += 1,
                }
            }
            if unreadable > 0 {
                eprintln!("{}: dropped {unreadable} unreadable row(s)", path.display());
            }
        }
        // No rows, no header: the first rows appended bring it.
        crate::atomic_file::write(path, &csv_text(&kept, true)?)?;
        Ok(Self { path: path.to_path_buf(), pending: Vec::new() })
    }

    pub fn append(&mut self, record: &StepRecord) -> Result<()> {
        self.pending.push(record.clone());
        if self.pending.len() >= 32 {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(|| format!("cannot append to {}", self.path.display()))?;
        let empty = file.metadata()?.len() == 0;
        file.write_all(&csv_text(&self.pending, empty)?)?;
        self.pending.clear();
        Ok(())
    }
}
