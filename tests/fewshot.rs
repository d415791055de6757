//! Few-shot classification with the real SmolLM2: the prompt's layout and token ids, class
//! scores against an independent full recomputation, the evaluation's task draws, and the
//! messages for bad input.

mod common;

use spae::eval::fewshot::{self as fewshot_eval, Classes};
use spae::llm::log_softmax;
use spae::tasks::fewshot::{self, Scoring, Task};

fn word(text: &str) -> u32 {
    common::codebook().vocabulary().index_of_word(text).unwrap_or_else(|| panic!("`{text}` is a vocabulary word"))
}

fn words(text: &str) -> Vec<u32> {
    text.split(' ').map(word).collect()
}

fn task() -> Task {
    Task {
        classes: vec!["cat".into(), "apple".into()],
        support: vec![(words("orange fur tail small face"), 0), (words("red round fruit green leaf"), 1)],
        query: words("orange fur tail small face"),
        induction: true,
    }
}

#[test]
fn image_words_enter_the_prompt_as_their_token_ids() {
    let (_, tokenizer) = common::language();
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    let task = task();
    let prompt = fewshot::prompt(tokenizer, vocabulary, &task);
    let query_ids: Vec<u32> = task.query.iter().map(|&w| vocabulary.token_id(w)).collect();
    let tail = tokenizer.encode("\nOutput:");
    assert_eq!(&prompt[prompt.len() - tail.len() - query_ids.len()..prompt.len() - tail.len()], query_ids.as_slice());
    let text = tokenizer.decode(&prompt);
    assert!(
        text.starts_with("For each of the following input output pairs, output is one of [cat, apple]\n###\n"),
        "{text}"
    );
    assert!(text.contains("Input: orange fur tail small face\nOutput: cat\n"), "{text}");
    assert!(text.ends_with("###\nInput: orange fur tail small face\nOutput:"), "{text}");
    // The open-ended protocol: the same prompt without the line naming the classes.
    let open = fewshot::prompt(tokenizer, vocabulary, &Task { induction: false, ..task });
    let open_text = tokenizer.decode(&open);
    assert_eq!(open_text, format!("###\n{}", text.split_once("\n###\n").unwrap().1), "{open_text}");
    assert!(!open_text.contains("one of"), "{open_text}");
}

/// Log-probability of ` name` after `prompt`, from an empty cache, every position's logits.
fn full_log_prob(prompt: &[u32], name: &str) -> f32 {
    let (llm, tokenizer) = common::language();
    let name_ids = tokenizer.encode(&format!(" {name}"));
    let mut sequence = prompt.to_vec();
    sequence.extend(&name_ids);
    let logits = llm.logits_all(&sequence, 0, &mut llm.new_cache()).unwrap();
    let vocab = llm.config().vocab;
    (0..name_ids.len())
        .map(|j| {
            let row = prompt.len() - 1 + j;
            log_softmax(&logits[row * vocab..(row + 1) * vocab])[name_ids[j] as usize]
        })
        .sum()
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-3 * b.abs().max(1.0)
}

#[test]
fn class_scores_equal_a_full_recomputation_and_the_answer_is_the_best() {
    let (llm, tokenizer) = common::language();
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    let task = task();
    let raw = fewshot::classify(llm, tokenizer, vocabulary, &task, Scoring::Raw, 1).unwrap();
    let calibrated = fewshot::classify(llm, tokenizer, vocabulary, &task, Scoring::Calibrated, 1).unwrap();
    assert_eq!(raw.prompt, calibrated.prompt);
    assert!(raw.without_query.is_none());
    // The prompt without the query: its words cut out between the last `Input:` and `Output:`.
    let query_len = task.query.len() + tokenizer.encode("\nOutput:").len();
    let mut without_query = raw.prompt[..raw.prompt.len() - query_len].to_vec();
    without_query.extend(tokenizer.encode("\nOutput:"));
    let lean = calibrated.without_query.as_ref().unwrap();
    for (i, name) in task.classes.iter().enumerate() {
        let expected = full_log_prob(&raw.prompt, name);
        assert!(close(raw.scores[i], expected), "{name}: {} vs {expected}", raw.scores[i]);
        assert!(close(calibrated.log_probs[i], expected), "{name}: {} vs {expected}", calibrated.log_probs[i]);
        let expected_lean = full_log_prob(&without_query, name);
        assert!(close(lean[i], expected_lean), "{name}: {} vs {expected_lean}", lean[i]);
        assert!(close(calibrated.scores[i], expected - expected_lean), "{name}");
    }
    for answer in [&raw, &calibrated] {
        let best = (0..2).max_by(|&a, &b| answer.scores[a].total_cmp(&answer.scores[b])).unwrap();
        assert_eq!(answer.class, best);
    }
    // The LLM reads the image words: a query repeating the cat example word for word leans
    // further to "cat" than one repeating the apple example (whatever its bias for the
    // last label shown).
    let apple_query = Task { query: words("red round fruit green leaf"), ..task };
    let other = fewshot::classify(llm, tokenizer, vocabulary, &apple_query, Scoring::Calibrated, 1).unwrap();
    let lean = |scores: &[f32]| scores[0] - scores[1];
    assert!(lean(&calibrated.scores) > lean(&other.scores) + 0.5, "{:?} vs {:?}", calibrated.scores, other.scores);
    assert_eq!((calibrated.class, other.class), (0, 1), "calibrated, each query gets its own example's class");
}

#[test]
fn orderings_average_the_rotated_prompts_full_recomputations() {
    let (llm, tokenizer) = common::language();
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    let support = vec![
        (words("orange fur tail small face"), 0),
        (words("red round fruit green leaf"), 1),
        (words("cat ears fur"), 0),
        (words("sweet fruit red"), 1),
    ];
    let task = Task { support: support.clone(), query: words("small fur face"), ..task() };
    let query_len = task.query.len() + tokenizer.encode("\nOutput:").len();
    // Ordering k of 2 starts at example 2k; the support list written out by hand.
    let orders = [support.clone(), [&support[2..], &support[..2]].concat()];
    let (mut with, mut without) = (vec![0.0f32; 2], vec![0.0f32; 2]);
    for order in &orders {
        let prompt = fewshot::prompt(tokenizer, vocabulary, &Task { support: order.clone(), ..task.clone() });
        let mut no_query = prompt[..prompt.len() - query_len].to_vec();
        no_query.extend(tokenizer.encode("\nOutput:"));
        for (i, name) in task.classes.iter().enumerate() {
            with[i] += full_log_prob(&prompt, name) / 2.0;
            without[i] += full_log_prob(&no_query, name) / 2.0;
        }
    }
    let answer = fewshot::classify(llm, tokenizer, vocabulary, &task, Scoring::Calibrated, 2).unwrap();
    assert_eq!(answer.orderings, 2);
    for i in 0..2 {
        assert!(close(answer.log_probs[i], with[i]), "{i}: {} vs {}", answer.log_probs[i], with[i]);
        let lean = answer.without_query.as_ref().unwrap()[i];
        assert!(close(lean, without[i]), "{i}: {lean} vs {}", without[i]);
        assert!(close(answer.scores[i], with[i] - without[i]), "{i}");
    }
    // The prompt shown is the task's own ordering; more orderings than examples read each
    // rotation once, and none is refused.
    assert_eq!(answer.prompt, fewshot::prompt(tokenizer, vocabulary, &task));
    let every = fewshot::classify(llm, tokenizer, vocabulary, &task, Scoring::Raw, 4).unwrap();
    let beyond = fewshot::classify(llm, tokenizer, vocabulary, &task, Scoring::Raw, 9).unwrap();
    assert_eq!(every.scores, beyond.scores);
    assert_eq!((every.orderings, beyond.orderings), (4, 4));
    // Five examples in three readings start at examples 0, 1 and 3 (floor(k x 5 / 3)),
    // whose lists differ whichever way a rotation turned; raw scores are the plain means.
    let mut five = support.clone();
    five.push((words("fruit red"), 1));
    let task = Task { support: five.clone(), ..task };
    let raw = fewshot::classify(llm, tokenizer, vocabulary, &task, Scoring::Raw, 3).unwrap();
    assert_eq!(raw.orderings, 3);
    for (i, name) in task.classes.iter().enumerate() {
        let expected = [0, 1, 3]
            .iter()
            .map(|&start| {
                let order = [&five[start..], &five[..start]].concat();
                full_log_prob(&fewshot::prompt(tokenizer, vocabulary, &Task { support: order, ..task.clone() }), name)
            })
            .sum::<f32>()
            / 3.0;
        assert!(close(raw.scores[i], expected), "{name}: {} vs {expected}", raw.scores[i]);
    }
    let error = fewshot::classify(llm, tokenizer, vocabulary, &task, Scoring::Raw, 0).err().unwrap().to_string();
    assert!(error.contains("at least one ordering"), "{error}");
}

#[test]
fn bad_tasks_get_clear_messages() {
    let (llm, tokenizer) = common::language();
    let codebook = common::codebook();
    let vocabulary = codebook.vocabulary();
    let one_class =
        Task { classes: vec!["cat".into()], support: vec![(words("cat"), 0)], query: words("cat"), induction: true };
    let error =
        fewshot::classify(llm, tokenizer, vocabulary, &one_class, Scoring::default(), 1).err().unwrap().to_string();
    assert!(error.contains("at least two classes"), "{error}");
    let huge = Task {
        classes: vec!["cat".into(), "dog".into()],
        support: (0..40).map(|i| (vec![word("cat"); 597], i % 2)).collect(),
        query: words("cat"),
        induction: false,
    };
    let error = fewshot::classify(llm, tokenizer, vocabulary, &huge, Scoring::default(), 1).err().unwrap().to_string();
    assert!(error.contains("context holds"), "{error}");
}

#[test]
fn support_sets_are_read_from_folders_and_lists() {
    let dir = std::env::temp_dir().join(format!("spae-support-{}", std::process::id()));
    for (class, file) in [("animal", "cat-face.png"), ("fruit", "red-apple.png"), ("animal", "sunflower.png")] {
        std::fs::create_dir_all(dir.join("folders").join(class)).unwrap();
        std::fs::copy(common::sample(file), dir.join("folders").join(class).join(file)).unwrap();
    }
    let (classes, images) = fewshot::read_support(&dir.join("folders")).unwrap();
    assert_eq!(classes, ["animal", "fruit"]);
    assert_eq!(images.iter().map(|(_, c)| *c).collect::<Vec<_>>(), [0, 0, 1]);
    std::fs::write(dir.join("list.tsv"), "car\tfolders/animal/cat-face.png\n\nplant\tfolders/fruit/red-apple.png\n")
        .unwrap();
    let (classes, images) = fewshot::read_support(&dir.join("list.tsv")).unwrap();
    assert_eq!(classes, ["car", "plant"]);
    assert_eq!(images[1].0, dir.join("folders/fruit/red-apple.png"));
    std::fs::write(dir.join("one.tsv"), "car\ta.png\ncar\tb.png\n").unwrap();
    let error = fewshot::read_support(&dir.join("one.tsv")).err().unwrap().to_string();
    assert!(error.contains("one class"), "{error}");
    std::fs::write(dir.join("bad.tsv"), "car a.png\n").unwrap();
    let error = fewshot::read_support(&dir.join("bad.tsv")).err().unwrap().to_string();
    assert!(error.contains("line 1"), "{error}");
}

#[test]
fn tasks_are_drawn_by_seed_with_the_query_apart_from_the_support() {
    // Six classes of seven distinct one-word "images" each.
    let classes = Classes {
        names: (0..6).map(|c| format!("class {c}")).collect(),
        images: (0..6u32).map(|c| (0..7u32).map(|i| vec![c * 100 + i]).collect()).collect(),
    };
    for (ways, shots) in [(2, 1), (5, 5)] {
        for index in 0..20 {
            let (task, answer) = fewshot_eval::task(&classes, ways, shots, 7, index, true);
            let (again, same_answer) = fewshot_eval::task(&classes, ways, shots, 7, index, true);
            assert_eq!((task.support.clone(), task.query.clone(), answer), (again.support, again.query, same_answer));
            // The open-ended protocol asks the very same task, without the class list.
            let (open, open_answer) = fewshot_eval::task(&classes, ways, shots, 7, index, false);
            assert_eq!((&open.support, &open.query, open_answer), (&task.support, &task.query, answer));
            assert!(task.induction && !open.induction);
            assert_eq!(task.classes.len(), ways);
            assert_eq!(task.support.len(), ways * shots);
            for label in 0..ways {
                assert_eq!(task.support.iter().filter(|(_, l)| *l == label).count(), shots);
            }
            // The query belongs to its answer's class and is none of the support images.
            let class = classes.names.iter().position(|n| n == &task.classes[answer]).unwrap();
            assert!(classes.images[class].contains(&task.query));
            assert!(task.support.iter().all(|(w, _)| w != &task.query));
        }
    }
    let answers: Vec<usize> = (0..40).map(|i| fewshot_eval::task(&classes, 2, 1, 7, i, true).1).collect();
    assert!(answers.contains(&0) && answers.contains(&1), "both positions are asked");
}

#[test]
fn wilson_intervals_match_published_values() {
    // Newcombe (1998), Table I: 81/263 -> 0.2553..0.3662; 15/148 -> 0.0624..0.1605.
    let (lo, hi) = fewshot_eval::wilson(81, 263);
    assert!((lo - 0.2553).abs() < 5e-4 && (hi - 0.3662).abs() < 5e-4, "{lo} {hi}");
    let (lo, hi) = fewshot_eval::wilson(15, 148);
    assert!((lo - 0.0624).abs() < 5e-4 && (hi - 0.1605).abs() < 5e-4, "{lo} {hi}");
}

#[test]
fn class_names_come_from_category_labels() {
    assert_eq!(spae::data::class_name("People & Body"), "people body");
    assert_eq!(spae::data::class_name("signs_and_symbols"), "signs and symbols");
}
