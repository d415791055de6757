//! `spae index` and `spae search`: a folder's images by their words, through the index
//! cached beside the model.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use spae::gpu::{DeviceChoice, EncodeDevice};
use spae::model::SpaeModel;
use spae::tasks::word_index::{self, WordIndex};

use crate::{shown, write_output, Session};

#[derive(clap::Args)]
pub struct IndexArgs {
    folder: PathBuf,
    /// Also write the index here (`-`: standard output); it is always cached beside the model.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Where to encode: auto takes a hardware GPU if there is one, else the CPU.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

impl IndexArgs {
    pub fn run(self, session: &Session) -> Result<()> {
        let index = index_folder(session.model, &self.folder, self.device)?;
        if let Some(output) = self.output {
            write_output(&output, index.to_json_lines().as_bytes())?;
            eprintln!("wrote {}", shown(&output));
        }
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct SearchArgs {
    word: String,
    folder: PathBuf,
    /// Where to encode the files not yet indexed: auto takes a hardware GPU if there is
    /// one, else the CPU.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

impl SearchArgs {
    pub fn run(self, session: &Session) -> Result<()> {
        let index = index_folder(session.model, &self.folder, self.device)?;
        let hits = index.search(&self.word);
        word_index::write_hits(&mut std::io::stdout().lock(), &hits).context("cannot write to standard output")?;
        eprintln!("{} of {} images hold \"{}\"", hits.len(), index.images().count(), self.word);
        Ok(())
    }
}

/// The index of `folder`: the cached one where its files are unchanged, the rest encoded
/// (with progress), then cached again. Says what was skipped and why.
fn index_folder(model: &SpaeModel, folder: &Path, on: DeviceChoice) -> Result<WordIndex> {
    anyhow::ensure!(folder.is_dir(), "{} is not a folder", folder.display());
    let (mut device, where_) = EncodeDevice::open(on, model, word_index::INDEX_BATCH)?;
    eprintln!("encoding {where_}");
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("indexing [{bar:30}] {pos}/{len} {msg} ({eta} left)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let (mut encoded, mut reused) = (0, 0);
    let never = AtomicBool::new(false);
    let indexed = word_index::index_cached(model, &mut device, folder, &never, |indexed| {
        bar.set_length(indexed.total as u64);
        bar.set_position(indexed.done as u64);
        bar.set_message(indexed.entry.file.clone());
        if indexed.image.is_some() {
            encoded += 1;
        } else if indexed.entry.words.is_some() {
            reused += 1;
        }
        if bar.is_hidden() && (indexed.done % 100 == 0 || indexed.done == indexed.total) {
            // Not a terminal: a plain line now and then instead.
            eprintln!("indexing {}/{}", indexed.done, indexed.total);
        }
    });
    bar.finish_and_clear();
    if let Some(reason) = device.take_failure() {
        eprintln!("the GPU encoder failed ({reason}); the rest was encoded on the CPU");
    }
    let (index, cache) = indexed?;
    for entry in index.skipped() {
        eprintln!("skipped {}: {}", entry.file, entry.skipped.as_deref().unwrap_or_default());
    }
    eprintln!(
        "{} images indexed ({encoded} encoded, {reused} unchanged since the cached index), {} skipped; index: {}",
        index.images().count(),
        index.skipped().count(),
        cache.map_or("not cached (untrained model)".to_string(), |c| c.display().to_string())
    );
    Ok(index)
}
