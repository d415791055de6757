//! Screenshots of the real studio for the README, rendered headless through wgpu (lavapipe
//! works): `cargo test --release --test studio_screenshots -- --ignored`. Ignored by default
//! because it rewrites the PNGs under `screenshots/`.

mod common;

use std::path::Path;
use std::sync::Arc;

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use eframe::egui::{Key, Modifiers};
use spae::model::SpaeModel;
use spae::studio::file_dialog::ScriptedDialog;
use common::studio::wait_for_worker;
use spae::studio::{GpuUse, StudioApp};

fn save(harness: &mut Harness<'_, StudioApp>, name: &str) {
    let image = harness.render().expect("render the studio");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    spae::atomic_file::write(&dir.join(name), &png).unwrap();
}


#[test]
#[ignore = "writes screenshots/; run with --ignored"]
fn screenshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::DEFAULT_MODEL_DIR);
    let model = Arc::new(SpaeModel::open(&dir, &common::llm_path(), true).unwrap());
    let codebook = model.codebook().clone();
    let vocabulary = codebook.vocabulary();
    let mut harness = Harness::builder().with_size([1480.0, 980.0]).wgpu().build_eframe(move |cc| {
        StudioApp::new(cc, model, Box::new(ScriptedDialog::default()), &common::sample("cat-face.png"), GpuUse::Always)
    });
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
}
