//! Screenshots of the real studio for the README, rendered headless through wgpu (lavapipe
//! works): `cargo test --release --test studio_screenshots -- --ignored`. Ignored by default
//! because it rewrites the PNGs under `screenshots/`.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::studio::{wait_for_worker, wait_until};
use eframe::egui::{Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use spae::model::SpaeModel;
use spae::studio::file_dialog::ScriptedDialog;
use spae::studio::{Command, DeviceChoice, StudioApp};

fn save(harness: &mut Harness<'_, StudioApp>, name: &str) {
    let image = harness.render().expect("render the studio");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    spae::atomic_file::write(&dir.join(name), &png).unwrap();
}

/// Steps the UI until `done` holds (bounded: three minutes).
#[test]
#[ignore = "writes screenshots/; run with --ignored"]
fn screenshots() {
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
    save(&mut harness, "pyramid-words.png");

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
    save(&mut harness, "edit-before.png");
    harness.key_press(Key::Enter);
    wait_for_worker(&mut harness);
    save(&mut harness, "edit-after.png");

    // The whole pyramid as text, beside the finest layer's words.
    harness.get_by_label("Layer 6: 16x16, 256 words").click();
    harness.get_by_label("View").click();
    harness.run_steps(2);
    harness.get_by_label("Pyramid as text").click();
    harness.key_press(Key::Escape);
    harness.run_steps(3);
    save(&mut harness, "layer-6-and-text.png");

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
    save(&mut harness, "generate-timeline.png");

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
    for name in ["cat-face.png", "red-apple.png", "sunflower.png", "automobile.png"] {
        dialog.answer_next(common::sample(name));
        harness.get_by_label("Add support image…").click();
        harness.run_steps(2);
    }
    harness.get_by_label("Run classification").click();
    harness.run_steps(2);
    wait_until(&mut harness, "the LLM's work", |app| !app.classification().is_running());
    save(&mut harness, "classify.png");
}
