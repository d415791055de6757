//! `spae eval`'s report: the pictures of [`spae::eval::report`] written as PNG files.

use std::path::Path;

use anyhow::{Context, Result};

use spae::data::Dataset;
use spae::eval::heldout::{sheet_rows, Report};
use spae::eval::report::{layer_chart, training_curves, word_sheet};
use spae::image_io;
use spae::model::SpaeModel;
use spae::teacher::relevance::Relevance;
use spae::train::decoder::EXPORTED_DECODER_LOG;
use spae::train::{log, EXPORTED_LOG};

/// Held-out images in the sheet.
const SHEET_IMAGES: usize = 12;

/// A model evaluated: its name in the pictures, its folder, and its numbers.
pub struct Evaluated<'a> {
    pub name: &'a str,
    pub folder: &'a Path,
    pub model: &'a SpaeModel,
    pub report: &'a Report,
}

/// Writes `layers.png`, `training.png` (from the training logs exported beside the models,
/// the joint run's and the decoder stage's, where they have them) and `heldout-words.png` (given the teacher's relevances; its
/// pictures decoded from words refined for `refine_rounds` rounds) into `dir`.
pub fn write(
    dir: &Path,
    models: &[Evaluated],
    data: &Dataset,
    relevances: Option<&[Relevance]>,
    refine_rounds: usize,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the report folder {}", dir.display()))?;
    let write = |name: &str, picture: image::RgbImage| -> Result<()> {
        let path = dir.join(name);
        image_io::save_png(&picture, &path)?;
        eprintln!("wrote {}", path.display());
        Ok(())
    };
    write("layers.png", layer_chart(&models.iter().map(|m| (m.name, m.report)).collect::<Vec<_>>())?)?;

    let logs: Vec<(String, Vec<log::StepRecord>)> = models
        .iter()
        .flat_map(|m| {
            [(m.name.to_string(), EXPORTED_LOG), (format!("{}, decoder stage", m.name), EXPORTED_DECODER_LOG)]
                .map(|(name, file)| (name, m.folder.join(file)))
        })
        .filter(|(_, path)| path.exists())
        .map(|(name, path)| log::read(&path).map(|l| (name, l)))
        .collect::<Result<_>>()?;
    if logs.is_empty() {
        eprintln!("no training log beside the models: no training curves");
    } else {
        let runs: Vec<(&str, &[log::StepRecord])> = logs.iter().map(|(n, l)| (n.as_str(), l.as_slice())).collect();
        write("training.png", training_curves(&runs)?)?;
    }

    match relevances {
        Some(relevances) => {
            let rows = sheet_rows(
                &models.iter().map(|m| (m.name, m.model)).collect::<Vec<_>>(),
                data,
                relevances,
                SHEET_IMAGES,
                refine_rounds,
            )?;
            write("heldout-words.png", word_sheet(&rows)?)
        }
        None => {
            eprintln!("no teacher relevances for the held-out split: no word sheet");
            Ok(())
        }
    }
}
