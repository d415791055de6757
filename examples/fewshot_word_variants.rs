//! What a frozen LLM makes of an image's five words of layers 1-2, and why the semantic
//! loss hands distinct words to the cells (docs/method.md section 5b): the few-shot
//! evaluation's 2-way 5-shot concept tasks (seed 0, 200 tasks, calibrated scores, the
//! same tasks `spae eval-fewshot` asks), answered from
//! - the model's own five words;
//! - the model's words with each cell of layer 2 taking its nearest word that neither
//!   layer 1 nor another cell took (greedily, nearest first over the cells): the same rule
//!   as the loss's, applied when encoding;
//! - the teacher's top word said five times;
//! - the model's layer-1 word, then the next distinct words of the semantic target q
//!   (the teacher's relevances discounted by how often each word is relevant, here over
//!   the held-out split);
//! - the target's top five words (where q's own order leads; `--frequency-penalty`
//!   sets q's alpha for this and the variant above);
//! - the teacher's top five words (anchored on the image's own text too, so a ceiling
//!   that pixels alone need not reach).
//!
//! Also the mean number of distinct words among each image's five.
//! `cargo run --release --example fewshot_word_variants -- [--model DIR] [--cache DIR] [--orderings N]`

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::Result;
use spae::data::{prepare, relevance_cache, Dataset, Split};
use spae::eval::concepts::{Concepts, MIN_IMAGES};
use spae::eval::fewshot;
use spae::llm::gguf::LlmFile;
use spae::llm::model::SmolLm;
use spae::llm::tokenizer::Tokenizer;
use spae::model::SpaeModel;
use spae::paths;
use spae::train::semantic::{self, SemanticOptions};

/// Words per image: layers 1 and 2.
const WORDS: usize = 5;

#[derive(clap::Parser)]
struct Args {
    #[arg(long, default_value_os_t = paths::resolve(paths::DEFAULT_MODEL_DIR))]
    model: PathBuf,
    #[arg(long, default_value_os_t = paths::resolve(paths::LLM_GGUF))]
    llm: PathBuf,
    #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
    cache: PathBuf,
    /// alpha of the target q (docs/method.md section 5b) for the variants built from it.
    #[arg(long, default_value_t = SemanticOptions::default().frequency_penalty)]
    frequency_penalty: f64,
    /// Orderings of the support examples each task is read in (see `spae eval-fewshot`).
    #[arg(long, default_value_t = spae::tasks::fewshot::DEFAULT_ORDERINGS)]
    orderings: usize,
}

fn main() -> std::process::ExitCode {
    match run(<Args as clap::Parser>::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `first`, then `rest`'s words not yet taken, to [`WORDS`] (repeating `first` if short).
fn distinct_after(first: u32, rest: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut words = vec![first];
    for word in rest {
        if words.len() < WORDS && !words.contains(&word) {
            words.push(word);
        }
    }
    words.resize(WORDS, first);
    words
}

/// Layer 1's word (the first of each image's `own` words), then layer 2's cells each the
/// nearest word not yet taken, assigned greedily by distance over all cells (each cell's
/// eight nearest words are enough: at most four are taken before it).
fn exclusive_words(model: &SpaeModel, data: &Dataset, own: &[Vec<u32>]) -> Result<Vec<Vec<u32>>> {
    let codebook = model.codebook();
    let (dim, cells) = (codebook.dim(), model.shape().tokens_in_layer(2));
    anyhow::ensure!(cells + 1 == WORDS, "layers 1-2 of this model hold {} words, not {WORDS}", cells + 1);
    let mut all = Vec::new();
    for start in (0..data.len()).step_by(32) {
        let images: Vec<_> = (start..(start + 32).min(data.len())).map(|i| data.image(i)).collect();
        let latent = model.encode_latent(&spae::image_io::to_tensor(&images)?)?;
        anyhow::ensure!(latent.named.len() >= 2, "the model's branch does not name layers 1-2");
        let l2: Vec<f32> = latent.named[1].permute((0, 2, 3, 1))?.flatten_all()?.to_vec1()?;
        for b in 0..images.len() {
            let first = own[start + b][0];
            let mut options: Vec<(f32, usize, u32)> = Vec::new();
            for c in 0..cells {
                let row = &l2[(b * cells + c) * dim..(b * cells + c + 1) * dim];
                options.extend(codebook.nearest_k(row, 8).into_iter().map(|(w, d)| (d, c, w)));
            }
            options.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut chosen = vec![None; cells];
            let mut taken = vec![first];
            for (_, c, w) in options {
                if chosen[c].is_none() && !taken.contains(&w) {
                    chosen[c] = Some(w);
                    taken.push(w);
                }
            }
            let mut words = vec![first];
            words
                .extend(chosen.iter().map(|w| w.expect("eight candidates a cell, at most four words taken before it")));
            all.push(words);
        }
    }
    Ok(all)
}

fn run(args: Args) -> Result<()> {
    let model = SpaeModel::open(&args.model, &args.llm, false)?;
    let dir = prepare::data_dir(&args.cache);
    let data = Dataset::load(&dir, Split::HeldOut, model.config().resolution)?;
    let relevances = relevance_cache::load(&dir, Split::HeldOut, data.len())?;
    let labels = fewshot::concept_labels(&data, &Concepts::shipped())?;
    let vocabulary = model.codebook().vocabulary();
    eprintln!("encoding {} held-out images", data.len());
    let own = fewshot::image_words(&model, &data, 2)?;
    let teacher = fewshot::teacher_words(&relevances, vocabulary, WORDS);
    let frequency_penalty = semantic::checked_frequency_penalty(args.frequency_penalty)?;
    let target_options = SemanticOptions { frequency_penalty, ..SemanticOptions::default() };
    let by_target: Vec<Vec<u32>> = semantic::targets(&relevances, vocabulary, &target_options)
        .into_iter()
        .map(|mut target| {
            target.sort_by(|a, b| b.1.total_cmp(&a.1));
            target.into_iter().map(|(word, _)| word).collect()
        })
        .collect();
    let variants: Vec<(&str, Vec<Vec<u32>>)> = vec![
        ("the model's words", own.clone()),
        ("the model's words, layer 2 excluding words taken", exclusive_words(&model, &data, &own)?),
        ("the teacher's top word, five times", teacher.iter().map(|t| vec![t[0]; WORDS]).collect()),
        (
            "the model's layer-1 word, then the target's next words",
            own.iter().zip(&by_target).map(|(o, q)| distinct_after(o[0], q.iter().copied())).collect(),
        ),
        ("the target's top five words", by_target.iter().map(|q| distinct_after(q[0], q.iter().copied())).collect()),
        ("the teacher's top five words", teacher.clone()),
    ];
    let file = LlmFile::open(&args.llm)?;
    let (llm, tokenizer) = (SmolLm::load(&file)?, Tokenizer::from_gguf(&file)?);
    let options = fewshot::Options { ways: vec![2], shots: vec![5], orderings: args.orderings, ..Default::default() };
    for (name, words) in variants {
        let labelled: Vec<&Vec<u32>> = words.iter().zip(&labels).filter(|(_, l)| l.is_some()).map(|(w, _)| w).collect();
        let distinct = labelled.iter().map(|w| w.iter().collect::<HashSet<_>>().len()).sum::<usize>() as f64
            / labelled.len() as f64;
        let classes = fewshot::group(&words, &labels, MIN_IMAGES);
        let cell = fewshot::evaluate(&llm, &tokenizer, &model, &classes, &options, |_| {})?.remove(0);
        println!(
            "{name}: 2-way 5-shot {:.3} [{:.3}, {:.3}], {distinct:.2} distinct words of {WORDS} ({} images)",
            cell.accuracy,
            cell.interval.0,
            cell.interval.1,
            labelled.len()
        );
    }
    Ok(())
}
