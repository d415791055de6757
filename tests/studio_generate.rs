//! The studio's Generate and Classify panels driven through the real UI with egui_kittest
//! (headless): short generations and classifications with the shipped LLM and example pool.
//! Each test loads the LLM once (a few seconds); the runs are kept small so that the whole
//! file takes well under a minute in release mode.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use common::studio::{wait_for_worker, wait_until};
use eframe::egui::Key;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use spae::model::SpaeModel;
use spae::studio::generation::RunState;
use spae::studio::scripted_dialog::ScriptedDialog;
use spae::studio::{Cell, Command, DeviceChoice, StudioApp};

fn model() -> Arc<SpaeModel> {
    static MODEL: OnceLock<Arc<SpaeModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::DEFAULT_MODEL_DIR);
            Arc::new(SpaeModel::open(&dir, &common::llm_path(), true).expect("open the shipped model"))
        })
        .clone()
}

/// The studio on the cat sample with one of its windows open (View > `window`).
fn studio_with(window: &str) -> (Harness<'static, StudioApp>, ScriptedDialog) {
    let dialog = ScriptedDialog::default();
    let for_app = Box::new(dialog.clone());
    let mut harness = Harness::builder().with_size([1480.0, 980.0]).build_eframe(move |cc| {
        StudioApp::new(cc, model(), for_app, &common::sample("cat-face.png"), DeviceChoice::Auto)
    });
    wait_for_worker(&mut harness);
    harness.get_by_label("View").click();
    harness.run_steps(2);
    harness.get_by_label(window).click();
    harness.key_press(Key::Escape);
    harness.run_steps(2);
    (harness, dialog)
}

/// Steps the UI until `done` holds (bounded: two minutes).
fn generation_ended(app: &StudioApp) -> bool {
    app.generation().is_some_and(|g| !g.is_running())
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spae-studio-generate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A short text-to-image run: `steps` steps of 2 layers (1 AR) from 2 examples.
fn run_generation(harness: &mut Harness<'_, StudioApp>, steps: usize) {
    let form = harness.state_mut().generate_form_mut();
    form.prompt = "cat face".into();
    form.options.steps = steps;
    form.options.layers = 2;
    form.options.ar_layers = 1;
    form.examples = 2;
    harness.run_steps(1);
    harness.get_by_label("Run").click();
    harness.run_steps(2);
}

#[test]
fn a_generation_streams_frames_that_the_timeline_steps_through_and_the_editor_opens() {
    let (mut harness, dialog) = studio_with("Generate");
    run_generation(&mut harness, 2);
    wait_until(&mut harness, "the generation", generation_ended);
    let model = model();
    let generation = harness.state().generation().unwrap();
    assert_eq!(generation.state, RunState::Finished, "{:?}", generation.state);
    assert_eq!(generation.frames.iter().map(|f| f.frame.step).collect::<Vec<_>>(), [0, 1, 2]);
    for frame in &generation.frames {
        assert_eq!(frame.frame.words.len(), 5, "layers 1 and 2: 1 + 4 words");
        assert_eq!(frame.pyramid, frame.frame.pyramid(&model).unwrap());
        assert_eq!(frame.image, model.decode(&frame.pyramid, 6).unwrap());
    }
    assert_eq!(generation.shown, 2, "the timeline follows the newest frame");
    let frames: Vec<_> =
        generation.frames.iter().map(|f| (f.frame.clone(), f.pyramid.clone(), f.image.clone())).collect();
    harness.get_by_label_contains("done: 3 frames");

    // The timeline, one frame at a time; the label counts the frame's changed words.
    harness.get_by_label("Previous").click();
    harness.run_steps(2);
    assert_eq!(harness.state().generation().unwrap().shown, 1);
    harness.get_by_label_contains(&format!("step 1 of 2: {} of 5 words changed", frames[1].0.changed.len()));
    harness.get_by_label("Previous").click();
    harness.run_steps(2);
    harness.get_by_label_contains(&format!("step 0 of 2: {} of 5 words changed", frames[0].0.changed.len()));
    assert_eq!(frames[0].0.changed.len(), 5, "the random start counts every word as changed");
    harness.get_by_label("Next").click();
    harness.run_steps(2);
    assert_eq!(harness.state().generation().unwrap().shown, 1);

    // Play advances on a timer (kittest's clock: a quarter second per step) and stops at the end.
    harness.get_by_label("Play").click();
    harness.run_steps(2);
    assert!(harness.state().generation().unwrap().is_playing());
    harness.run_steps(6);
    let generation = harness.state().generation().unwrap();
    assert_eq!(generation.shown, 2);
    assert!(!generation.is_playing(), "playing stops at the last frame");

    // Frame 1 as the document: its words are editable, undoable and exportable.
    harness.get_by_label("Previous").click();
    harness.run_steps(2);
    harness.get_by_label("Open in editor").click();
    harness.run_steps(2);
    wait_for_worker(&mut harness);
    let document = harness.state().document().unwrap();
    assert_eq!(document.pyramid(), &frames[1].1);
    assert_eq!(document.original, frames[1].2);
    assert!(document.path.ends_with("cat-face-step-01.png"), "{}", document.path.display());
    assert_eq!(harness.state().settings().recent_files.len(), 1, "a frame is not a recent file");
    // A frame has no original: it is labelled as generated, and its own full decode shows
    // as identical rather than "inf dB".
    assert!(document.generated);
    harness.get_by_label_contains("Generated frame (its decode from all layers) with the words of layer");
    // The strip's label: "layers 1–6: identical", or "1–6: identical" where the strip is narrow.
    harness.get_by_label_contains("1–6: identical");
    assert!(harness.query_by_label_contains("inf dB").is_none());
    let word = if frames[1].1.word(2, 0, 0) == 7 { 8 } else { 7 };
    harness.state_mut().command(Command::SetWord { cell: Cell { layer: 2, row: 0, col: 0 }, word });
    wait_for_worker(&mut harness);
    assert_ne!(harness.state().document().unwrap().pyramid(), &frames[1].1);
    harness.state_mut().command(Command::Undo);
    wait_for_worker(&mut harness);
    assert_eq!(harness.state().document().unwrap().pyramid(), &frames[1].1);

    // Every frame as PNG, one file each, and the animated GIF.
    let dir = scratch_dir("export");
    dialog.answer_next(&dir);
    harness.get_by_label("Export all frames (PNG)…").click();
    harness.run_steps(2);
    let mut written: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    written.sort();
    // The frames, and the mark that lets a later export replace them.
    assert_eq!(written, [".spae-generation", "frame-000.png", "frame-001.png", "frame-002.png"]);
    for (step, (_, _, image)) in frames.iter().enumerate() {
        let file = spae::image_io::load(&dir.join(format!("frame-{step:03}.png"))).unwrap().to_rgb8();
        assert_eq!(&file, image);
    }
    let gif = dir.join("frames.gif");
    dialog.answer_next(&gif);
    harness.get_by_label("Export animated GIF…").click();
    harness.run_steps(2);
    let decoder =
        image::codecs::gif::GifDecoder::new(std::io::BufReader::new(std::fs::File::open(&gif).unwrap())).unwrap();
    let gif_frames = image::AnimationDecoder::into_frames(decoder).collect_frames().unwrap();
    assert_eq!(gif_frames.len(), 3);

    // A write that cannot succeed says why and keeps the frames.
    dialog.answer_next(dir.join("no-such-folder").join("frame.png"));
    harness.get_by_label("Export frame (PNG)…").click();
    harness.run_steps(2);
    let notice = harness.state().notice().expect("the failure is shown");
    assert!(notice.is_error && notice.text.contains("frame.png"), "{}", notice.text);
    assert_eq!(harness.state().generation().unwrap().frames.len(), 3);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cancelling_keeps_the_frames_made_so_far() {
    let (mut harness, _) = studio_with("Generate");
    run_generation(&mut harness, 32);
    wait_until(&mut harness, "two frames", |app| app.generation().unwrap().frames.len() >= 2);
    harness.get_by_label("Cancel").click();
    harness.run_steps(2);
    wait_until(&mut harness, "the cancelled generation to end", generation_ended);
    let generation = harness.state().generation().unwrap();
    assert_eq!(generation.state, RunState::Cancelled);
    let count = generation.frames.len();
    assert!((2..33).contains(&count), "{count} frames");
    assert!(generation.frames.iter().enumerate().all(|(i, f)| f.frame.step == i));
    harness.get_by_label_contains(&format!("its {count} frames are kept"));
    harness.get_by_label("Previous").click();
    harness.run_steps(2);
    assert_eq!(harness.state().generation().unwrap().shown, count - 2);
}

/// Adds support images through the dialog; their labels come from the file names.
fn add_support(harness: &mut Harness<'_, StudioApp>, dialog: &ScriptedDialog, names: &[&str]) {
    for name in names {
        let expected = harness.state().classification().support.len() + 1;
        dialog.answer_next(common::sample(name));
        harness.get_by_label("Add support image…").click();
        wait_until(harness, "the support image", |app| app.classification().support.len() == expected);
    }
}

#[test]
fn classifies_the_open_image_between_two_classes() {
    let (mut harness, dialog) = studio_with("Classify");
    add_support(&mut harness, &dialog, &["cat-face.png", "red-apple.png", "sunflower.png"]);
    let labels: Vec<_> = harness.state().classification().support.iter().map(|s| s.label.clone()).collect();
    assert_eq!(labels, ["cat face", "red apple", "sunflower"]);
    harness.query_all_by_label("Remove").nth(2).expect("one Remove button per image").click();
    harness.run_steps(2);
    assert_eq!(harness.state().classification().support.len(), 2);
    // The apple's label, retyped as a user would.
    harness.get_by_label("red-apple.png").focus();
    harness.key_press_modifiers(eframe::egui::Modifiers::COMMAND, Key::A);
    harness.get_by_label("red-apple.png").type_text("apple");
    harness.run_steps(2);
    harness.get_by_label("Run classification").click();
    harness.run_steps(2);
    wait_until(&mut harness, "the classification", |app| !app.classification().is_running());
    let result = match &harness.state().classification().result {
        Some(Ok(result)) => result,
        other => panic!("no answer: {:?}", other.as_ref().map(|r| r.as_ref().err())),
    };
    assert_eq!(result.classes, ["cat face", "apple"]);
    assert_eq!(result.scores.len(), 2);
    // Calibrated scores (log-probability differences, of either sign); the answer is the best.
    assert!(result.scores.iter().all(|s| s.is_finite()), "{:?}", result.scores);
    let best = if result.scores[0] >= result.scores[1] { 0 } else { 1 };
    assert_eq!(result.answer, best, "{:?}", result.scores);
    assert!(result.prompt.contains("output is one of [cat face, apple]"), "{}", result.prompt);
    let answer = result.classes[result.answer].clone();
    harness.get_by_label(&format!("Answer: {answer}"));
    harness.get_by_label_contains("Prompt (");
}

#[test]
fn a_one_class_support_set_shows_the_libraries_error() {
    let (mut harness, dialog) = studio_with("Classify");
    add_support(&mut harness, &dialog, &["red-apple.png", "sunflower.png"]);
    for image in &mut harness.state_mut().classification_mut().support {
        image.label = "plant".into();
    }
    harness.get_by_label("Run classification").click();
    harness.run_steps(2);
    wait_until(&mut harness, "the classification", |app| !app.classification().is_running());
    let Some(Err(message)) = &harness.state().classification().result else { panic!("the run did not fail") };
    assert!(message.contains("at least two classes"), "{message}");
    harness.get_by_label_contains("at least two classes");
}

#[test]
fn describes_the_open_image_as_the_library_does_and_refuses_an_empty_question() {
    let (mut harness, _) = studio_with("Describe");
    {
        let form = harness.state_mut().describe_form_mut();
        // Ask reads the question's layers, not the caption's.
        form.ask_layers = 2;
        form.caption_layers = 1;
        form.examples = 4;
        form.question = "What colour is it?".into();
    }
    harness.get_by_label("Ask").click();
    harness.run_steps(2);
    wait_until(&mut harness, "the answer", |app| app.description().is_some_and(|d| !d.is_running()));
    let done = match &harness.state().description().unwrap().state {
        spae::studio::describe::DescribeState::Done(done) => done,
        spae::studio::describe::DescribeState::Failed(message) => panic!("{message}"),
        spae::studio::describe::DescribeState::Running => unreachable!("waited for it"),
    };
    // The same question through the library, from scratch: the same examples, prompt and answer.
    let model = model();
    let pool = spae::tasks::context_pool::Pool::load(&spae::paths::resolve(spae::paths::POOL), 64).unwrap();
    let count = spae::studio::llm_worker::DESCRIBE_CANDIDATES;
    let images: Vec<image::RgbImage> = (0..count).map(|i| pool.image(i).clone()).collect();
    let words = model.encode_prefix_words(&images, 2).unwrap();
    let query = model.encode(&harness.state().document().unwrap().original).unwrap().prefix_words(2);
    let (llm, tokenizer) = common::language();
    let candidates = spae::tasks::captioning::Candidates { pool: &pool, words: &words };
    let expected = spae::tasks::captioning::describe(
        llm,
        tokenizer,
        model.codebook(),
        &candidates,
        &query,
        4,
        Some("What colour is it?"),
    )
    .unwrap();
    assert_eq!(done.answer, expected.answer);
    assert_eq!(done.prompt, tokenizer.decode(&expected.prompt));
    assert_eq!(done.examples.len(), 4);
    assert_eq!(done.answered, "which colour is it mostly?");
    harness.get_by_label("Q: What colour is it?");

    // An empty question is refused with the library's message; nothing else changes.
    harness.state_mut().describe_form_mut().question = "   ".into();
    harness.get_by_label("Ask").click();
    harness.run_steps(2);
    wait_until(&mut harness, "the refusal", |app| app.description().is_some_and(|d| !d.is_running()));
    match &harness.state().description().unwrap().state {
        spae::studio::describe::DescribeState::Failed(message) => assert!(message.contains("empty"), "{message}"),
        _ => panic!("an empty question was answered"),
    }
}
