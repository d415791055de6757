//! In-context captioning and question answering with the real frozen LLM: the prompt's
//! layout, the choice of examples, and the LLM's completion.

mod common;

use spae::tasks::captioning::{self, Ask, Example};

fn words(list: &[&str]) -> Vec<u32> {
    let vocabulary = common::codebook();
    list.iter().map(|w| vocabulary.vocabulary().index_of_word(w).unwrap_or_else(|| panic!("{w}"))).collect()
}

#[test]
fn the_prompt_lays_out_the_examples_then_the_open_query() {
    let (_, tokenizer) = common::language();
    let codebook = common::codebook();
    let examples = vec![
        Example { words: words(&["apple", "fruit"]), text: "red apple".into() },
        Example { words: words(&["car", "road"]), text: "blue car".into() },
    ];
    let query = words(&["tree", "forest"]);
    let prompt = captioning::prompt(tokenizer, codebook.vocabulary(), &Ask::Caption, &examples, &query);
    assert_eq!(
        tokenizer.decode(&prompt),
        "Each input is an image written as words; the output is its caption.\n###\nInput: apple fruit\nOutput: red \
         apple\nInput: car road\nOutput: blue car\n###\nInput: tree forest\nOutput:"
    );
    let asked = Ask::Question("which colour is it mostly?".into());
    let prompt = captioning::prompt(tokenizer, codebook.vocabulary(), &asked, &examples[..1], &query);
    assert!(
        tokenizer.decode(&prompt).ends_with(
            "Input: apple fruit\nQuestion: which colour is it mostly?\nOutput: red apple\n###\nInput: tree \
             forest\nQuestion: which colour is it mostly?\nOutput:"
        ),
        "{}",
        tokenizer.decode(&prompt)
    );
    // Image words are the words' own token ids, not re-tokenized text.
    let ids: Vec<u32> = query.iter().map(|&w| codebook.vocabulary().token_id(w)).collect();
    assert!(prompt.windows(2).any(|pair| pair == ids.as_slice()));
}

#[test]
fn examples_are_the_candidates_nearest_in_mean_embedding() {
    let codebook = common::codebook();
    let query = words(&["apple", "fruit", "red"]);
    let candidates = vec![words(&["car", "road", "wheel"]), words(&["apple", "fruit", "green"]), query.clone()];
    // Cosine of mean embeddings, computed here in f64.
    let mean = |ws: &[u32]| -> Vec<f64> {
        (0..codebook.dim())
            .map(|d| ws.iter().map(|&w| codebook.row(w)[d] as f64).sum::<f64>() / ws.len() as f64)
            .collect()
    };
    let cosine = |a: &[f64], b: &[f64]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|x| x * x).sum::<f64>().sqrt() * b.iter().map(|x| x * x).sum::<f64>().sqrt())
    };
    let q = mean(&query);
    let mut expected: Vec<usize> = (0..3).collect();
    expected.sort_by(|&a, &b| cosine(&q, &mean(&candidates[b])).total_cmp(&cosine(&q, &mean(&candidates[a]))));
    assert_eq!(captioning::nearest(&codebook, &query, &candidates, 3), expected);
    assert_eq!(expected[0], 2, "the query's own words are nearest");
    assert_eq!(captioning::nearest(&codebook, &query, &candidates, 1).len(), 1);
}

#[test]
fn the_llm_writes_the_caption_its_examples_give_for_the_same_words() {
    let (llm, tokenizer) = common::language();
    let codebook = common::codebook();
    let examples = vec![
        Example { words: words(&["car", "road", "wheel"]), text: "blue car".into() },
        Example { words: words(&["apple", "fruit", "red"]), text: "red apple".into() },
        Example { words: words(&["tree", "forest", "leaf"]), text: "green tree".into() },
    ];
    let query = words(&["apple", "fruit", "red"]);
    let prompt = captioning::prompt(tokenizer, codebook.vocabulary(), &Ask::Caption, &examples, &query);
    assert_eq!(captioning::complete(llm, tokenizer, &prompt).unwrap(), "red apple");
}

#[test]
fn spae_caption_and_ask_show_their_examples_and_prompt() {
    let output = common::spae()
        .args(["caption", "assets/samples/red-apple.png", "--examples", "4", "--layers", "2", "--show-prompt"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stderr.matches("example: ").count(), 4, "{stderr}");
    assert!(stdout.starts_with("Each input is an image written as words; the output is its caption."), "{stdout}");
    let caption = stdout.lines().last().unwrap();
    assert!(!caption.trim().is_empty() && !caption.starts_with("----"), "{stdout}");

    let output = common::spae()
        .args(["ask", "assets/samples/red-apple.png", "What colour is it?", "--examples", "3", "--layers", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("the examples answer \"which colour is it mostly?\" from the data"), "{stderr}");
    // Without --layers a question reads 4 layers per image: 1 + 4 + 16 + 64 words per example.
    let output = common::spae()
        .args(["ask", "assets/samples/red-apple.png", "Which colour?", "--examples", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let examples: Vec<&str> = stderr.lines().filter_map(|line| line.strip_prefix("example: ")).collect();
    assert_eq!(examples.len(), 2, "{stderr}");
    for example in examples {
        let words = example.split(" -> ").next().unwrap();
        assert_eq!(words.split(' ').count(), 85, "{example}");
    }
    let bad = common::spae().args(["ask", "assets/samples/red-apple.png", "  "]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("the question is empty"));
}

#[test]
fn caption_metrics_match_hand_counts() {
    use spae::eval::captioning::{chance, content_words, name_word, same_answer, score_caption};
    assert_eq!(content_words("The red apple, on a TREE!"), ["red", "apple", "tree"]);
    assert_eq!(name_word("playing card black joker").as_deref(), Some("joker"));
    assert_eq!(name_word("of the"), None);
    // {red, car} against {red, apple}: one shared word of two each; "apple" is not named.
    let score = score_caption("a red car", "red apple").unwrap();
    assert_eq!((score.precision, score.recall, score.names), (0.5, 0.5, false));
    // {apples, apple} against {red, apple}: only the exact word counts.
    let score = score_caption("apples and an apple", "red apple").unwrap();
    assert_eq!((score.precision, score.recall, score.names), (0.5, 0.5, true));
    // Repeats count once; three of the truth's five content words.
    let score = score_caption("ball ball red ball shoe", "red ball and blue shoe lace").unwrap();
    assert_eq!((score.precision, score.recall, score.names), (1.0, 0.6, false));
    let empty = score_caption("", "red apple").unwrap();
    assert_eq!((empty.precision, empty.recall, empty.names), (0.0, 0.0, false));
    assert!(score_caption("anything", "of the").is_none(), "no content words: not scored");
    assert!(same_answer(" Red.", "red") && !same_answer("reddish", "red"));
    // Examples answer a (1/2), b (1/4), c (1/4); the truths are a and b (1/2 each):
    // 1/2 * 1/2 + 1/4 * 1/2 = 0.375.
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(chance(&strings(&["a", "A", "b", "c"]), &strings(&["a", "b"])), 0.375);
}

/// Queries that are themselves candidates: their own words are nearest, so the
/// nearest-example baseline copies the true caption; the report's means are those of the
/// captions it lists, scored again here.
#[test]
fn the_caption_evaluation_scores_the_captions_it_wrote() {
    use spae::data::{Dataset, Sample};
    use spae::eval::captioning::{evaluate, score_caption, Options};
    use spae::tasks::context_pool::Pool;

    let model =
        spae::model::SpaeModel::open(&spae::paths::resolve(spae::paths::DEFAULT_MODEL_DIR), &common::llm_path(), false)
            .unwrap();
    let shipped = Pool::load(&spae::paths::resolve(spae::paths::POOL), 64).unwrap();
    let (candidates_dataset, queries_dataset) = {
        let pick = |indices: &[usize]| {
            let samples = indices
                .iter()
                .map(|&i| Sample {
                    package: "pool".into(),
                    file: format!("{i}.png"),
                    caption: None,
                    name: shipped.text(i).to_string(),
                    category: shipped.category(i).to_string(),
                    subcategory: None,
                })
                .collect();
            let pixels = indices.iter().flat_map(|&i| shipped.image(i).as_raw().clone()).collect();
            Dataset::new(64, samples, pixels).unwrap()
        };
        (pick(&(0..24).map(|i| i * 7).collect::<Vec<_>>()), pick(&[7, 70]))
    };
    let candidates = Pool::from_dataset(&candidates_dataset, 24, |_| true);
    let queries = Pool::from_dataset(&queries_dataset, 2, |_| true);
    let images: Vec<image::RgbImage> = (0..candidates.len()).map(|i| candidates.image(i).clone()).collect();
    let words = model.encode_prefix_words(&images, 3).unwrap();
    let (llm, tokenizer) = common::language();
    // Questions over fewer layers than captions: each prompt reads its own prefix of the words.
    let options = Options { caption_layers: 3, ask_layers: 2, examples: 3, seed: 1, questions: true };
    let mut heard = Vec::new();
    let report = evaluate(llm, tokenizer, &model, &candidates, &words, &queries, &options, |done, total| {
        heard.push((done, total))
    })
    .unwrap();
    assert_eq!(report.images, 2);
    assert_eq!(heard, [(1, 2), (2, 2)]);
    assert_eq!(report.caption_nearest.recall, 1.0, "{:?}", report.captioned);
    assert_eq!(report.caption_nearest.name_rate, 1.0);
    for (i, captioned) in report.captioned.iter().enumerate() {
        assert_eq!(captioned.truth, queries.text(i));
        assert_eq!(captioned.nearest, captioned.truth, "the query's own caption is nearest");
        assert_eq!(captioned.answers.len(), 4);
        assert_eq!(captioned.answers[0].0, captioned.truth, "what is it: its name");
    }
    let mean = |f: &dyn Fn(&spae::eval::captioning::Captioned) -> f64| {
        report.captioned.iter().map(f).sum::<f64>() / report.captioned.len() as f64
    };
    let recall = mean(&|c| score_caption(&c.caption, &c.truth).unwrap().recall);
    assert!((report.caption.recall - recall).abs() < 1e-12);
    let control = mean(&|c| score_caption(&c.control, &c.truth).unwrap().precision);
    assert!((report.caption_control.precision - control).abs() < 1e-12);
    let what = mean(&|c| f64::from(u8::from(spae::eval::captioning::same_answer(&c.answers[0].1, &c.answers[0].0))));
    assert!((report.ask.what - what).abs() < 1e-12);
    assert!(report.ask_interval["what"].0 <= report.ask.what && report.ask.what <= report.ask_interval["what"].1);
    assert!((0.0..=1.0).contains(&report.ask_chance.kind));

    let deeper = Options { caption_layers: 3, ask_layers: 4, ..Options::default() };
    let error = evaluate(llm, tokenizer, &model, &candidates, &words, &queries, &deeper, |_, _| {}).unwrap_err();
    assert!(error.to_string().contains("need the words of 4 layers"), "{error}");
    let none = Options { examples: 0, ..Options::default() };
    let error = evaluate(llm, tokenizer, &model, &candidates, &words, &queries, &none, |_, _| {}).unwrap_err();
    assert!(error.to_string().contains("at least one example"), "{error}");
}
