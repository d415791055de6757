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
    let bad = common::spae().args(["ask", "assets/samples/red-apple.png", "  "]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("the question is empty"));
}
