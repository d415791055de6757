//! The teacher's relevances, computed once per image in data preparation (docs/method.md
//! section 5) and kept beside the split as JSON lines, in the split's image order.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use indicatif::ProgressBar;

use super::dataset::{Dataset, Sample, Split};
use crate::codebook::vocabulary::Vocabulary;
use crate::teacher::relevance::{Relevance, SemanticTeacher};

/// Relevant words kept per image.
pub const TOP_WORDS: usize = 20;
const BATCH: usize = 16;

pub fn path(dir: &Path, split: Split) -> PathBuf {
    dir.join(format!("{}.teacher.jsonl", split.name()))
}

/// The text the teacher reads for an image: its caption, name and category.
pub fn sample_text(sample: &Sample) -> String {
    format!("{} {} {}", sample.caption.as_deref().unwrap_or_default(), sample.name, sample.category)
}

/// Runs the teacher over a split unless its relevances are already complete. Resumable:
/// finished batches are appended to a partial file, which is renamed into place at the end.
pub fn annotate(
    dir: &Path,
    split: Split,
    data: &Dataset,
    teacher: &SemanticTeacher,
    vocabulary: &Vocabulary,
) -> Result<()> {
    let done = path(dir, split);
    if done.exists() {
        return Ok(());
    }
    let partial = dir.join(format!(".{}.teacher.jsonl.partial", split.name()));
    let finished = match std::fs::File::open(&partial) {
        Ok(file) => BufReader::new(file).lines().map_while(|l| l.ok()).filter(|l| l.ends_with('}')).count(),
        Err(_) => 0,
    };
    // Whole batches only: a line cut by a kill is dropped by rewriting what was complete.
    let finished = finished - finished % BATCH;
    let kept: Vec<String> = match std::fs::read_to_string(&partial) {
        Ok(text) => text.lines().take(finished).map(str::to_string).collect(),
        Err(_) => Vec::new(),
    };
    crate::atomic_file::write(&partial, kept.iter().map(|l| format!("{l}\n")).collect::<String>().as_bytes())?;
    let mut out = std::fs::OpenOptions::new().append(true).open(&partial)?;
    let bar = ProgressBar::new(data.len() as u64).with_message(format!("teacher relevance, {} split", split.name()));
    bar.set_position(finished as u64);
    for start in (finished..data.len()).step_by(BATCH) {
        let indices: Vec<usize> = (start..(start + BATCH).min(data.len())).collect();
        let pixels = data.batch(&indices, &vec![false; indices.len()])?;
        let texts: Vec<String> = indices.iter().map(|&i| sample_text(data.sample(i))).collect();
        let mut lines = String::new();
        for relevance in teacher.relevance(&pixels, &texts, vocabulary, TOP_WORDS)? {
            lines.push_str(&serde_json::to_string(&relevance)?);
            lines.push('\n');
        }
        out.write_all(lines.as_bytes())?;
        out.sync_data()?;
        bar.inc(indices.len() as u64);
        if bar.is_hidden() && (start / BATCH).is_multiple_of(20) {
            eprintln!("teacher relevance, {} split: {}/{}", split.name(), start + indices.len(), data.len());
        }
    }
    bar.finish();
    std::fs::rename(&partial, &done)?;
    Ok(())
}

/// Loads a split's relevances, one per image.
pub fn load(dir: &Path, split: Split, images: usize) -> Result<Vec<Relevance>> {
    let file = path(dir, split);
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!("cannot read {} (run `spae prepare-data` to compute the teacher's relevances)", file.display())
    })?;
    let relevances: Vec<Relevance> = text
        .lines()
        .enumerate()
        .map(|(i, line)| serde_json::from_str(line).with_context(|| format!("{} line {}", file.display(), i + 1)))
        .collect::<Result<_>>()?;
    ensure!(relevances.len() == images, "{} has {} entries for {images} images", file.display(), relevances.len());
    Ok(relevances)
}
