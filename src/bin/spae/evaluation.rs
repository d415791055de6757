//! `spae eval`: reconstruction and semantic precision on the held-out split, beside a
//! control model, as a table, the report's pictures and (with `--json`) one JSON line.

use std::path::PathBuf;

use anyhow::Result;

use spae::data::{prepare, relevance_cache, Dataset, Split};
use spae::eval::heldout::{evaluate, Report, SEMANTIC_LAYERS};
use spae::model::SpaeModel;
use spae::paths;

use crate::{eval_report, Session};

/// Images per batch of the evaluation.
const BATCH: usize = 32;

#[derive(clap::Args)]
pub struct EvalArgs {
    #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
    cache: PathBuf,
    /// Evaluate at most this many images.
    #[arg(long, default_value_t = usize::MAX)]
    limit: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// A control model folder (trained without semantic guidance) to compare with.
    #[arg(long)]
    control: Option<PathBuf>,
    /// Where the report's pictures go (default: `report/` in the model folder).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Refine each image's appearance words against the decoder for this many rounds
    /// before decoding (docs/method.md section 3a; 0: SAQ's words as they are).
    #[arg(long, default_value_t = spae::model::DEFAULT_REFINE_ROUNDS as u32, value_parser = clap::value_parser!(u32).range(0..=spae::model::MAX_REFINE_ROUNDS as i64))]
    refine: u32,
}

impl EvalArgs {
    pub fn run(self, session: &Session) -> Result<()> {
        let model = session.model;
        let dir = prepare::data_dir(&self.cache);
        let data = Dataset::load(&dir, Split::HeldOut, model.config().resolution)?;
        let relevances = relevance_cache::load(&dir, Split::HeldOut, data.len())
            .map_err(|e| eprintln!("warning: no semantic precision: {e:#}"))
            .ok();
        let rounds = self.refine as usize;
        let run = |model: &SpaeModel, name: &str| {
            let bar = indicatif::ProgressBar::new(data.len().min(self.limit) as u64);
            let report = evaluate(model, &data, relevances.as_deref(), self.limit, BATCH, rounds, |done, total| {
                bar.set_position(done as u64);
                if bar.is_hidden() {
                    eprintln!("evaluated {name}: {done}/{total} images");
                }
            });
            bar.finish_and_clear();
            report
        };
        let report = run(model, "SPAE")?;
        let control_model = self.control.as_deref().map(|dir| SpaeModel::open(dir, session.llm, false)).transpose()?;
        let control = control_model.as_ref().map(|control_model| run(control_model, "control")).transpose()?;
        print_report(model, &report, control.as_ref(), rounds);
        let report_dir = self.report.unwrap_or_else(|| session.model_dir.join("report"));
        let mut evaluated =
            vec![eval_report::Evaluated { name: "SPAE", folder: session.model_dir, model, report: &report }];
        if let (Some(folder), Some(control_model), Some(control)) = (self.control.as_deref(), &control_model, &control)
        {
            evaluated.push(eval_report::Evaluated { name: "control", folder, model: control_model, report: control });
        }
        eval_report::write(&report_dir, &evaluated, &data, relevances.as_deref(), rounds)?;
        if self.json {
            let line = serde_json::json!({
                "psnr_db": report.psnr_db,
                "ssim": report.ssim,
                "latent_error": report.latent_error,
                "psnr_unquantized_db": report.psnr_unquantized_db,
                "semantic_precision": report.semantic_precision,
                "semantic_precision_control": control.as_ref().and_then(|c| c.semantic_precision),
                "psnr_db_control": control.as_ref().map(|c| &c.psnr_db),
                "ssim_control": control.as_ref().map(|c| &c.ssim),
                "latent_error_control": control.as_ref().map(|c| &c.latent_error),
                "psnr_unquantized_db_control": control.as_ref().map(|c| c.psnr_unquantized_db),
                "text_precision": report.text_precision,
                "specific_precision": report.specific_precision,
                "specific_precision_control": control.as_ref().and_then(|c| c.specific_precision),
                "distinct_words": report.distinct_words,
                "distinct_words_control": control.as_ref().map(|c| c.distinct_words),
                "perplexity": report.perplexity,
                "perplexity_control": control.as_ref().map(|c| &c.perplexity),
                "commonest_words": report.commonest,
                "commonest_words_control": control.as_ref().map(|c| &c.commonest),
                "images": report.images,
                "refine_rounds": rounds,
            });
            println!("{line}");
        }
        Ok(())
    }
}

fn print_report(model: &SpaeModel, report: &Report, control: Option<&Report>, refine_rounds: usize) {
    println!("model: {}", model.source());
    println!("held-out images: {}", report.images);
    if refine_rounds > 0 {
        println!("appearance words refined against the decoder: {refine_rounds} rounds");
    }
    println!(
        "layers  PSNR (dB)  SSIM    latent error{}",
        if control.is_some() { "    control: PSNR (dB)  SSIM    latent error" } else { "" }
    );
    for l in 0..report.psnr_db.len() {
        let control_columns = control.map_or(String::new(), |c| {
            format!("  {:>20.2}  {:.4}  {:>12.4}", c.psnr_db[l], c.ssim[l], c.latent_error[l])
        });
        println!(
            "{:>6}  {:>9.2}  {:.4}  {:>12.4}{control_columns}",
            l + 1,
            report.psnr_db[l],
            report.ssim[l],
            report.latent_error[l]
        );
    }
    println!(
        "the latent itself, no words: {:.2} dB{}",
        report.psnr_unquantized_db,
        control.map_or(String::new(), |c| format!(" (control {:.2} dB)", c.psnr_unquantized_db))
    );
    let percent = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.2}%", 100.0 * v));
    let words = |who: &str, r: &Report| {
        println!(
            "{who}words of layers 1-{SEMANTIC_LAYERS}: {} among the teacher's top {} words, {} one of the image's own text words",
            percent(r.semantic_precision),
            relevance_cache::TOP_WORDS,
            percent(r.text_precision)
        )
    };
    let variety = |who: &str, r: &Report| {
        let perplexities: Vec<String> = r.perplexity.iter().map(|p| format!("{p:.1}")).collect();
        println!(
            "{who}{} distinct words in layers 1-{SEMANTIC_LAYERS}; {} specific own-text words; perplexity per layer {}",
            r.distinct_words,
            percent(r.specific_precision),
            perplexities.join(" ")
        );
        let layers: Vec<String> = r
            .commonest
            .iter()
            .enumerate()
            .map(|(l, words)| {
                let words: Vec<String> = words.iter().map(|(w, share)| format!("{w} {:.0}%", 100.0 * share)).collect();
                format!("{}: {}", l + 1, words.join(", "))
            })
            .collect();
        println!("{who}commonest words per layer (share of its cells): {}", layers.join("; "));
    };
    words("", report);
    variety("", report);
    if let Some(control) = control {
        words("control (no semantic loss): ", control);
        variety("control: ", control);
    }
}
