//! Snapshot tests of the real studio, rendered headless through wgpu (lavapipe works): the
//! editor, an edit, the finest layer with the pyramid text, the generation timeline, the
//! Classify, Mix and Gallery panels, and 1000 x 700 and 4K windows. The committed pictures under
//! `screenshots/` are the README's; after a deliberate change, rewrite them with
//! `UPDATE_SNAPSHOTS=1 cargo test --release --test studio_screenshots`.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::studio::{wait_for_worker, wait_until};
use eframe::egui::{Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use spae::model::SpaeModel;
use spae::studio::scripted_dialog::ScriptedDialog;
use spae::studio::{Command, DeviceChoice, StudioApp};

/// Compares the rendered studio with `screenshots/{name}.png` (the README's pictures), or
/// writes it there when `UPDATE_SNAPSHOTS` is set. The tolerance absorbs the status bar's
/// timings, which differ from run to run; a moved panel or a changed word does not pass.
fn snapshot(harness: &mut Harness<'_, StudioApp>, name: &str) {
    // Plots size their axes from the previous frame's labels: let them settle.
    harness.run_steps(20);
    let options = SnapshotOptions::new()
        .output_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots"))
        .max_failed_pixels(MAX_FAILED_PIXELS);
    harness.snapshot_options(name, &options);
}

/// Pixels that may differ from the committed picture (of about 1.45 million): a few
/// numbers of the status bar and the LLM's load time.
const MAX_FAILED_PIXELS: usize = 2500;

/// The main views, one after another in one studio session, each against its picture.
#[test]
fn the_main_views_match_their_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::DEFAULT_MODEL_DIR);
    let model = Arc::new(SpaeModel::open(&dir, &common::llm_path(), true).unwrap());
    let codebook = model.codebook().clone();
    let vocabulary = codebook.vocabulary();
    let dialog = ScriptedDialog::default();
    let for_app = Box::new(dialog.clone());
    let mut harness = Harness::builder()
        .with_size([1480.0, 980.0])
        .wgpu()
        .build_eframe(move |cc| StudioApp::new(cc, model, for_app, &common::sample("cat-face.png"), DeviceChoice::Gpu));
    wait_for_worker(&mut harness);

    // The words of layer 4 over the image, one cell hovered.
    harness.get_by_label("Layer 4: 8x8, 64 words").click();
    harness.run_steps(2);
    let pyramid = harness.state().document().unwrap().pyramid().clone();
    let word = vocabulary.word(pyramid.word(4, 3, 2)).to_string();
    harness.get_by_label(&format!("layer 4, row 4, column 3: {word}")).hover();
    harness.run_steps(4);
    snapshot(&mut harness, "pyramid-words");

    // An edit of a layer-2 word, before and after.
    harness.get_by_label("Layer 2: 2x2, 4 words").click();
    harness.run_steps(2);
    let word = vocabulary.word(pyramid.word(2, 0, 1)).to_string();
    harness.get_by_label(&format!("layer 2, row 1, column 2: {word}")).click();
    harness.run_steps(2);
    harness.get_by_label("New word:").focus();
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.get_by_label("New word:").type_text("ocean");
    harness.run_steps(2);
    snapshot(&mut harness, "edit-before");
    harness.key_press(Key::Enter);
    wait_for_worker(&mut harness);
    snapshot(&mut harness, "edit-after");

    // The whole pyramid as text, beside the finest layer's words.
    harness.get_by_label("Layer 6: 16x16, 256 words").click();
    harness.get_by_label("View").click();
    harness.run_steps(2);
    harness.get_by_label("Pyramid as text").click();
    harness.key_press(Key::Escape);
    harness.run_steps(3);
    snapshot(&mut harness, "layer-6-and-text");

    // A generation, stopped mid-timeline, with the words that changed at that step.
    let checkbox = eframe::egui::accesskit::Role::CheckBox;
    harness.get_by_label("View").click();
    harness.run_steps(2);
    harness.get_by_role_and_label(checkbox, "Pyramid as text").click();
    harness.key_press(Key::Escape);
    harness.run_steps(2);
    harness.get_by_label("View").click();
    harness.run_steps(2);
    harness.get_by_role_and_label(checkbox, "Generate").click();
    harness.key_press(Key::Escape);
    harness.run_steps(2);
    let form = harness.state_mut().generate_form_mut();
    form.options.steps = 6;
    form.options.layers = 3;
    form.examples = 4;
    harness.get_by_label("Run").click();
    harness.run_steps(2);
    wait_until(&mut harness, "the LLM's work", |app| app.generation().is_some_and(|g| !g.is_running()));
    harness.state_mut().command(Command::ShowFrame(3));
    harness.get_by_label("layer 3").click();
    harness.run_steps(3);
    snapshot(&mut harness, "generate-timeline");

    // Few-shot classification of the open image (the cat) among three classes.
    harness.get_by_label("View").click();
    harness.run_steps(2);
    harness.get_by_role_and_label(checkbox, "Generate").click();
    harness.key_press(Key::Escape);
    harness.run_steps(2);
    harness.get_by_label("View").click();
    harness.run_steps(2);
    harness.get_by_role_and_label(checkbox, "Classify").click();
    harness.key_press(Key::Escape);
    harness.run_steps(2);
    // Commands rather than clicks: the button moves down as each image is added.
    for name in ["cat-face.png", "red-apple.png", "sunflower.png", "automobile.png"] {
        dialog.answer_next(common::sample(name));
        harness.state_mut().command(Command::AddSupportImage);
        harness.run_steps(2);
    }
    assert_eq!(harness.state().classification().support.len(), 4);
    harness.state_mut().command(Command::Classify);
    harness.run_steps(2);
    wait_until(&mut harness, "the LLM's work", |app| !app.classification().is_running());
    snapshot(&mut harness, "classify");
    close_window(&mut harness, "Classify");

    // Mixing: the cat's layers 1-3 with the sunflower's 4-6.
    open_window(&mut harness, "Mix two pyramids");
    dialog.answer_next(common::sample("sunflower.png"));
    harness.get_by_label("Choose the second image…").click();
    wait_until(&mut harness, "the mix", |app| app.mix_is_current());
    snapshot(&mut harness, "mix");
    close_window(&mut harness, "Mix two pyramids");

    // The gallery: 24 images of the shipped pool, searched for the most common layer-1 word.
    // A fixed name: the panel shows the folder's path, and the picture must not change with it.
    let folder = std::env::temp_dir().join("spae-gallery-screenshot");
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    let pool = spae::tasks::context_pool::Pool::load(&spae::paths::resolve(spae::paths::POOL), 64).unwrap();
    for i in 0..24 {
        pool.image(i * 3).save(folder.join(format!("pool-{:03}.png", i * 3))).unwrap();
    }
    dialog.answer_next(&folder);
    harness.get_by_label("File").click();
    harness.run_steps(2);
    harness.get_by_label("Open folder in the gallery…").click();
    harness.run_steps(2);
    wait_until(&mut harness, "the gallery", |app| {
        app.gallery().is_some_and(|g| g.state != spae::studio::gallery::IndexState::Running)
    });
    let gallery = harness.state().gallery().unwrap();
    assert_eq!(gallery.state, spae::studio::gallery::IndexState::Finished, "{} done", gallery.done);
    let word = most_common_word(harness.state().gallery().unwrap(), 2);
    harness.state_mut().gallery_mut().unwrap().query = word;
    harness.run_steps(3);
    snapshot(&mut harness, "gallery-search");
    std::fs::remove_dir_all(&folder).unwrap();
}

/// The word that most images hold in layer `layer`.
fn most_common_word(gallery: &spae::studio::gallery::Gallery, layer: usize) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for item in &gallery.items {
        let words = item.entry.words.as_ref().unwrap();
        let unique: std::collections::BTreeSet<&str> = words[layer - 1].iter().map(String::as_str).collect();
        for word in unique {
            *counts.entry(word).or_default() += 1;
        }
    }
    counts.into_iter().max_by_key(|&(word, n)| (n, std::cmp::Reverse(word))).unwrap().0.to_string()
}

fn open_window(harness: &mut Harness<'_, StudioApp>, checkbox: &str) {
    harness.get_by_label("View").click();
    harness.run_steps(2);
    harness.get_by_role_and_label(eframe::egui::accesskit::Role::CheckBox, checkbox).click();
    harness.key_press(Key::Escape);
    harness.run_steps(2);
}

fn close_window(harness: &mut Harness<'_, StudioApp>, checkbox: &str) {
    open_window(harness, checkbox);
}

/// The editor in a 1000 x 700 window: nothing cut off, no label wrapped letter by letter.
#[test]
fn a_1000_by_700_window_fits_its_snapshot() {
    window_snapshot([1000.0, 700.0], "small-window");
}

/// The editor in a 4K window (3840 x 2160 points): the views grow with it.
#[test]
fn a_4k_window_fits_its_snapshot() {
    window_snapshot([3840.0, 2160.0], "4k-window");
}

fn window_snapshot(size: [f32; 2], name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::DEFAULT_MODEL_DIR);
    let model = Arc::new(SpaeModel::open(&dir, &common::llm_path(), true).unwrap());
    let mut harness = Harness::builder().with_size(size).wgpu().build_eframe(move |cc| {
        StudioApp::new(
            cc,
            model,
            Box::new(ScriptedDialog::default()),
            &common::sample("cat-face.png"),
            DeviceChoice::Gpu,
        )
    });
    wait_for_worker(&mut harness);
    harness.get_by_label("Layer 3: 4x4, 16 words").click();
    harness.run_steps(3);
    snapshot(&mut harness, name);
}
