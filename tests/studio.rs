//! The studio driven through its real UI with egui_kittest (headless, no GPU needed):
//! files come from a scripted dialog, clicks and keys go through egui like a user's.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use common::studio::wait_for_worker;
use eframe::egui::{self, Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use spae::model::SpaeModel;
use spae::studio::file_dialog::Request;
use spae::studio::scripted_dialog::ScriptedDialog;
use spae::studio::{DeviceChoice, StudioApp};

fn model() -> Arc<SpaeModel> {
    static MODEL: OnceLock<Arc<SpaeModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(spae::paths::DEFAULT_MODEL_DIR);
            Arc::new(SpaeModel::open(&dir, &common::llm_path(), true).expect("open the shipped model"))
        })
        .clone()
}

/// The studio on the cat sample, encoded and shown, with a dialog the test answers.
fn studio() -> (Harness<'static, StudioApp>, ScriptedDialog) {
    let dialog = ScriptedDialog::default();
    let for_app = Box::new(dialog.clone());
    let mut harness = Harness::builder().with_size([1480.0, 980.0]).build_eframe(move |cc| {
        StudioApp::new(cc, model(), for_app, &common::sample("cat-face.png"), DeviceChoice::Auto)
    });
    wait_for_worker(&mut harness);
    (harness, dialog)
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spae-studio-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn word_index(word: &str) -> u32 {
    model().codebook().vocabulary().index_of_word(word).unwrap_or_else(|| panic!("`{word}` is in the vocabulary"))
}

fn click_menu(harness: &mut Harness<'_, StudioApp>, menu: &str, item: &str) {
    harness.get_by_label(menu).click();
    harness.run_steps(2);
    harness.get_by_label(item).click();
    harness.run_steps(2);
}

#[test]
fn opens_on_the_sample_already_encoded() {
    let (harness, _) = studio();
    let app = harness.state();
    let document = app.document().expect("the sample is open");
    assert!(document.path.ends_with("cat-face.png"));
    assert_eq!(document.pyramid(), &model().encode(&document.original).unwrap());
    assert_eq!(app.shown_reconstruction().unwrap(), &model().decode(document.pyramid(), 6).unwrap());
    assert_eq!(app.title(), "cat-face.png - SPAE Studio");
    harness.get_by_label("image: cat-face.png");
}

#[test]
fn opens_an_image_through_the_dialog_and_keeps_everything_when_one_is_corrupt() {
    let (mut harness, dialog) = studio();
    dialog.answer_next(common::sample("red-apple.png"));
    click_menu(&mut harness, "File", "Open image… Ctrl+O");
    wait_for_worker(&mut harness);
    let apple = spae::image_io::prepare(&spae::image_io::load(&common::sample("red-apple.png")).unwrap(), 64);
    let document = harness.state().document().unwrap();
    assert!(document.path.ends_with("red-apple.png"));
    assert_eq!(document.original, apple);
    assert_eq!(harness.state().settings().recent_files[0], common::sample("red-apple.png"));

    harness.state_mut().command(spae::studio::Command::SetWord {
        cell: spae::studio::Cell { layer: 1, row: 0, col: 0 },
        word: word_index("house"),
    });
    wait_for_worker(&mut harness);
    let edited = harness.state().document().unwrap().pyramid().clone();
    let shown = harness.state().shown_reconstruction().unwrap().clone();

    let corrupt = scratch_dir("corrupt").join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\n not really a png").unwrap();
    dialog.answer_next(&corrupt);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::O);
    wait_for_worker(&mut harness);
    let app = harness.state();
    let notice = app.notice().expect("the failure is shown");
    assert!(notice.is_error && notice.text.contains("corrupt.png"), "{}", notice.text);
    assert_eq!(app.document().unwrap().original, apple);
    assert_eq!(app.document().unwrap().pyramid(), &edited);
    assert_eq!(app.shown_reconstruction().unwrap(), &shown);
    harness.get_by_label_contains("cannot open");
}

/// A file dropped on the window, as the windowing integration hands it to egui.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn a_dropped_image_opens() {
    let (mut harness, _) = studio();
    harness.input_mut().dropped_files.push(Arc::new(Dropped(common::sample("sunflower.png"))));
    wait_for_worker(&mut harness);
    assert!(harness.state().document().unwrap().path.ends_with("sunflower.png"));
}

#[test]
fn layer_3_shows_its_16_words() {
    let (mut harness, _) = studio();
    harness.get_by_label("Layer 3: 4x4, 16 words").click();
    harness.run_steps(2);
    let pyramid = harness.state().document().unwrap().pyramid().clone();
    let model = model();
    let vocabulary = model.codebook().vocabulary();
    for row in 0..4 {
        for col in 0..4 {
            let word = vocabulary.word(pyramid.word(3, row, col));
            harness.get_by_label(&format!("layer 3, row {}, column {}: {word}", row + 1, col + 1));
        }
    }
    assert_eq!(harness.query_all_by_label_contains("layer 3, row").count(), 16);
    assert_eq!(harness.query_all_by_label_contains("layer 2, row").count(), 0);
}

#[test]
fn editing_a_word_changes_pyramid_and_pixels_and_undo_restores_both() {
    let (mut harness, _) = studio();
    harness.get_by_label("Layer 3: 4x4, 16 words").click();
    harness.run_steps(2);
    let encoded = harness.state().document().unwrap().pyramid().clone();
    let encoded_pixels = harness.state().shown_reconstruction().unwrap().clone();
    let model = model();
    let vocabulary = model.codebook().vocabulary();
    let old = vocabulary.word(encoded.word(3, 1, 2)).to_string();
    let new = if old == "ocean" { "forest" } else { "ocean" };

    harness.get_by_label(&format!("layer 3, row 2, column 3: {old}")).click();
    harness.run_steps(2);
    let text_box = harness.get_by_label("New word:");
    text_box.focus();
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.get_by_label("New word:").type_text(new);
    harness.key_press(Key::Enter);
    wait_for_worker(&mut harness);
    let document = harness.state().document().unwrap();
    assert_eq!(document.pyramid().word(3, 1, 2), word_index(new));
    let mut expected = encoded.clone();
    expected.set_word(3, 1, 2, word_index(new));
    assert_eq!(document.pyramid(), &expected, "only the edited cell changed");
    let edited_pixels = harness.state().shown_reconstruction().unwrap().clone();
    assert_ne!(edited_pixels, encoded_pixels, "the decoded pixels changed");
    assert_eq!(edited_pixels, model.decode(&expected, 6).unwrap());

    // Enter left the text box, so Ctrl+Z reaches the studio's history.
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    wait_for_worker(&mut harness);
    assert_eq!(harness.state().document().unwrap().pyramid(), &encoded);
    assert_eq!(harness.state().shown_reconstruction().unwrap(), &encoded_pixels);

    harness.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    wait_for_worker(&mut harness);
    assert_eq!(harness.state().document().unwrap().pyramid(), &expected);
    assert_eq!(harness.state().shown_reconstruction().unwrap(), &edited_pixels);
}

#[test]
fn an_unknown_word_is_not_applied_and_suggestions_are_shown() {
    let (mut harness, _) = studio();
    let encoded = harness.state().document().unwrap().pyramid().clone();
    let old = model().codebook().vocabulary().word(encoded.word(1, 0, 0)).to_string();
    harness.get_by_label(&format!("layer 1, row 1, column 1: {old}")).click();
    harness.run_steps(2);
    harness.get_by_label("New word:").focus();
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.get_by_label("New word:").type_text("housse");
    harness.key_press(Key::Enter);
    harness.run_steps(2);
    harness.get_by_label_contains("`housse` is not in the vocabulary");
    harness.get_by_label("house").click();
    wait_for_worker(&mut harness);
    assert_eq!(harness.state().document().unwrap().pyramid().word(1, 0, 0), word_index("house"));
}

#[test]
fn replacing_a_word_everywhere_in_a_layer_is_one_undoable_edit() {
    let (mut harness, _) = studio();
    let encoded = harness.state().document().unwrap().pyramid().clone();
    let (from, to) = (encoded.word(5, 0, 0), word_index("ocean"));
    harness.state_mut().command(spae::studio::Command::ReplaceInLayer { layer: 5, from, to });
    wait_for_worker(&mut harness);
    let mut expected = encoded.clone();
    let s = encoded.shape().grid_size(5);
    for row in 0..s {
        for col in 0..s {
            if encoded.word(5, row, col) == from {
                expected.set_word(5, row, col, to);
            }
        }
    }
    assert_eq!(harness.state().document().unwrap().pyramid(), &expected);
    harness.state_mut().command(spae::studio::Command::Undo);
    wait_for_worker(&mut harness);
    assert_eq!(harness.state().document().unwrap().pyramid(), &encoded);
}

#[test]
fn refining_the_words_is_the_library_s_refinement_and_undoable() {
    let (mut harness, _) = studio();
    let encoded = harness.state().document().unwrap().pyramid().clone();
    let encoded_pixels = harness.state().shown_reconstruction().unwrap().clone();
    // The Edit menu's entry (the pyramid panel has the same button).
    harness.get_by_label("Edit").click();
    harness.run_steps(2);
    harness.get_all_by_label("Refine words").last().expect("the menu's entry").click();
    harness.run_steps(2);
    assert!(harness.state().is_busy(), "refining");
    wait_for_worker(&mut harness);
    let model = model();
    let original = harness.state().document().unwrap().original.clone();
    let expected = model.encode_refined(&original, spae::model::DEFAULT_REFINE_ROUNDS).unwrap();
    assert_ne!(expected, encoded, "the refinement changes words of the sample");
    assert_eq!(harness.state().document().unwrap().pyramid(), &expected);
    assert_eq!(harness.state().shown_reconstruction().unwrap(), &model.decode(&expected, 6).unwrap());
    let notice = &harness.state().notice().expect("the refinement says what it did").text;
    assert!(notice.starts_with("refined: ") && notice.contains("dB (Undo takes it back)"), "{notice}");

    harness.state_mut().command(spae::studio::Command::Undo);
    wait_for_worker(&mut harness);
    assert_eq!(harness.state().document().unwrap().pyramid(), &encoded);
    assert_eq!(harness.state().shown_reconstruction().unwrap(), &encoded_pixels);

    // A refinement of a revision that an edit replaced while it ran is dropped.
    harness.state_mut().command(spae::studio::Command::Refine);
    harness.state_mut().command(spae::studio::Command::SetWord {
        cell: spae::studio::Cell { layer: 6, row: 0, col: 0 },
        word: word_index("ocean"),
    });
    wait_for_worker(&mut harness);
    let mut edited = encoded.clone();
    edited.set_word(6, 0, 0, word_index("ocean"));
    assert_eq!(harness.state().document().unwrap().pyramid(), &edited);
    assert!(harness.state().notice().unwrap().text.contains("the refinement was dropped"));
}

#[test]
fn export_writes_a_png_that_decodes_to_the_shown_image() {
    let (mut harness, dialog) = studio();
    let dir = scratch_dir("export");
    let path = dir.join("reconstruction.png");
    dialog.answer_next(&path);
    click_menu(&mut harness, "File", "Export reconstruction (PNG)…");
    let written = spae::image_io::load(&path).expect("the export is a readable PNG").to_rgb8();
    assert_eq!(&written, harness.state().shown_reconstruction().unwrap());

    // The first export's dialog starts beside the image, the next where the last one went.
    let folders: Vec<Option<PathBuf>> = dialog
        .requests()
        .into_iter()
        .map(|r| match r {
            Request::Save { folder, .. } => folder,
            other => panic!("an export asks where to save, not {other:?}"),
        })
        .collect();
    assert_eq!(folders, vec![Some(common::sample("cat-face.png").parent().unwrap().to_path_buf())]);
    assert_eq!(harness.state().notice().unwrap().text, format!("wrote {}", path.display()));

    dialog.answer_next(dir.join("pyramid.txt"));
    click_menu(&mut harness, "File", "Export pyramid as text…");
    assert!(
        matches!(&dialog.requests()[1], Request::Save { folder: Some(f), file_name, .. } if f == &dir && file_name == "cat-face.pyramid.txt"),
        "{:?}",
        dialog.requests()[1]
    );
    let text = std::fs::read_to_string(dir.join("pyramid.txt")).unwrap();
    let shape = model().shape().clone();
    let parsed = spae::pyramid::text::parse(&text, &shape, model().codebook().vocabulary()).unwrap();
    assert_eq!(&parsed, harness.state().document().unwrap().pyramid());

    // A write that cannot succeed says why and changes nothing.
    let before = harness.state().document().unwrap().pyramid().clone();
    dialog.answer_next(dir.join("no-such-folder").join("sheet.png"));
    click_menu(&mut harness, "File", "Export layer prefixes as a contact sheet (PNG)…");
    let notice = harness.state().notice().expect("the failure is shown");
    assert!(notice.is_error && notice.text.contains("sheet.png"), "{}", notice.text);
    assert_eq!(harness.state().document().unwrap().pyramid(), &before);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_pyramid_text_editor_shows_errors_inline_and_applies_valid_text() {
    let (mut harness, _) = studio();
    click_menu(&mut harness, "View", "Pyramid as text");
    harness.key_press(Key::Escape);
    harness.run_steps(2);
    let text = harness.get_by_label("Edit any word, then apply:");
    text.focus();
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.get_by_label("Edit any word, then apply:").type_text("layer 1 1x1\ncatt\n");
    harness.run_steps(2);
    harness.get_by_label("Apply text").click();
    harness.run_steps(2);
    harness.get_by_label_contains("line 2, column 1");
    assert!(!harness.state().document().unwrap().is_edited());

    let mut edited = harness.state().document().unwrap().pyramid().clone();
    edited.set_word(1, 0, 0, word_index("cat"));
    let text = spae::pyramid::text::format(&edited, model().codebook().vocabulary());
    harness.get_by_label("Edit any word, then apply:").focus();
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.get_by_label("Edit any word, then apply:").type_text(&text);
    harness.run_steps(2);
    harness.get_by_label("Apply text").click();
    wait_for_worker(&mut harness);
    assert_eq!(harness.state().document().unwrap().pyramid(), &edited);
}

#[test]
fn with_a_wgpu_renderer_edits_decode_on_the_gpu_and_match_the_cpu() {
    // eframe's wgpu device (lavapipe here), shared with the decoder.
    let mut harness = Harness::builder().with_size([1480.0, 980.0]).wgpu().build_eframe(|cc| {
        StudioApp::new(
            cc,
            model(),
            Box::new(ScriptedDialog::default()),
            &common::sample("cat-face.png"),
            DeviceChoice::Gpu,
        )
    });
    wait_for_worker(&mut harness);
    assert!(harness.state().device_status().starts_with("GPU: "), "{}", harness.state().device_status());
    assert!(harness.state().shown_on_gpu());
    harness.get_by_label(&format!("encoding and decoding on: {}", harness.state().device_status())).hover();

    let mut edited = harness.state().document().unwrap().pyramid().clone();
    let old = model().codebook().vocabulary().word(edited.word(2, 0, 1)).to_string();
    let new = if old == "river" { "castle" } else { "river" };
    harness.get_by_label("Layer 2: 2x2, 4 words").click();
    harness.run_steps(2);
    harness.get_by_label(&format!("layer 2, row 1, column 2: {old}")).click();
    harness.run_steps(2);
    harness.get_by_label("New word:").focus();
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.get_by_label("New word:").type_text(new);
    harness.key_press(Key::Enter);
    wait_for_worker(&mut harness);
    edited.set_word(2, 0, 1, word_index(new));
    assert_eq!(harness.state().document().unwrap().pyramid(), &edited);
    assert!(harness.state().shown_on_gpu());
    let shown = harness.state().shown_reconstruction().unwrap();
    let cpu = model().decode(&edited, 6).unwrap();
    let worst = shown.as_raw().iter().zip(cpu.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    assert!(worst <= 1, "the GPU decode differs from the CPU's by {worst}/255");
}

#[test]
fn with_a_wgpu_renderer_images_encode_on_the_gpu_as_on_the_cpu() {
    // eframe's wgpu device (lavapipe here), shared with the encoder.
    let mut harness = Harness::builder().with_size([1480.0, 980.0]).wgpu().build_eframe(|cc| {
        StudioApp::new(
            cc,
            model(),
            Box::new(ScriptedDialog::default()),
            &common::sample("sunflower.png"),
            DeviceChoice::Gpu,
        )
    });
    wait_for_worker(&mut harness);
    let status = harness.state().encode_status().to_string();
    assert!(status.starts_with("GPU: "), "{status}");
    assert_eq!(status, harness.state().device_status());
    harness.get_by_label(&format!("encoding and decoding on: {status}"));
    let prepared = spae::image_io::load_prepared(&common::sample("sunflower.png"), 64).unwrap();
    let (latent, cpu) = model().quantize(&spae::image_io::to_tensor(std::slice::from_ref(&prepared)).unwrap()).unwrap();
    let document = harness.state().document().unwrap();
    assert_eq!(document.encoded(), &cpu.pyramids[0], "the GPU pyramid differs from the CPU's");
    let worst = (&document.latent.z - &latent.z).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(worst <= 1e-4, "the GPU latent differs from the CPU's by {worst}");
}

#[test]
fn without_a_wgpu_renderer_decodes_on_the_cpu_and_says_so() {
    let (harness, _) = studio();
    assert_eq!(harness.state().device_status(), "CPU (no wgpu renderer)");
    assert!(!harness.state().shown_on_gpu());
    assert_eq!(harness.state().encode_status(), "CPU (no wgpu renderer)");
    harness.get_by_label("encoding and decoding on: CPU (no wgpu renderer)");
}

#[test]
fn arrow_keys_move_the_selected_cell_and_enter_edits_its_word() {
    let (mut harness, _) = studio();
    harness.get_by_label("Layer 3: 4x4, 16 words").click();
    harness.run_steps(2);
    let pyramid = harness.state().document().unwrap().pyramid().clone();
    let word = |row, col| model().codebook().vocabulary().word(pyramid.word(3, row, col)).to_string();
    harness.get_by_label(&format!("layer 3, row 1, column 1: {}", word(0, 0))).click();
    harness.run_steps(2);
    for key in [Key::ArrowRight, Key::ArrowRight, Key::ArrowDown, Key::ArrowLeft, Key::ArrowUp, Key::ArrowUp] {
        harness.key_press(key);
        harness.run_steps(2);
    }
    // Right, right, down, left, up, up (the last one stops at the top row): row 1, column 2.
    let label = format!("layer 3, row 1, column 2: {}", word(0, 1));
    assert_eq!(harness.query_all_by_label(&label).count(), 2, "the cell, and the word editor's heading on it");
    harness.key_press(Key::Enter);
    harness.run_steps(3);
    let new = if word(0, 1) == "ocean" { "forest" } else { "ocean" };
    // Enter gave the word box the focus: typing replaces the selected cell's word.
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.get_by_label("New word:").type_text(new);
    harness.key_press(Key::Enter);
    wait_for_worker(&mut harness);
    let mut expected = pyramid.clone();
    expected.set_word(3, 0, 1, word_index(new));
    assert_eq!(harness.state().document().unwrap().pyramid(), &expected);
}

#[test]
fn a_mix_takes_the_upper_layers_from_one_image_and_the_rest_from_another_and_exports() {
    let (mut harness, dialog) = studio();
    click_menu(&mut harness, "View", "Mix two pyramids");
    dialog.answer_next(common::sample("sunflower.png"));
    harness.get_by_label("Choose the second image…").click();
    common::studio::wait_until(&mut harness, "the mix", |app| app.mix_is_current());
    let model = model();
    let cat = harness.state().document().unwrap().pyramid().clone();
    let sunflower =
        model.encode(&spae::image_io::load_prepared(&common::sample("sunflower.png"), 64).unwrap()).unwrap();
    // By default layers 1-3 come from the open image, 4-6 from the second.
    let by_hand = spae::pyramid::Pyramid::new(
        cat.shape().clone(),
        (1..=6).map(|l| if l <= 3 { cat.layer(l).to_vec() } else { sunflower.layer(l).to_vec() }).collect(),
    )
    .unwrap();
    let mixed = harness.state().mixing().mixed.as_ref().unwrap();
    assert_eq!(mixed.pyramid, by_hand);
    assert_eq!(mixed.image, model.decode(&by_hand, 6).unwrap());

    // Layer 2 swapped, the two exchanged: layers 1 and 3 from the sunflower, 2 and 4-6 from the cat.
    harness.state_mut().mixing_mut().swapped = Some(2);
    harness.state_mut().mixing_mut().reversed = true;
    common::studio::wait_until(&mut harness, "the new mix", |app| app.mix_is_current());
    let mixed = harness.state().mixing().mixed.as_ref().unwrap();
    for (layer, from_cat) in [(1, false), (2, true), (3, false), (4, true), (5, true), (6, true)] {
        let source = if from_cat { &cat } else { &sunflower };
        assert_eq!(mixed.pyramid.layer(layer), source.layer(layer), "layer {layer}");
    }
    let dir = scratch_dir("mix");
    dialog.answer_next(dir.join("mix.png"));
    harness.get_by_label("Export the mix (PNG)…").click();
    harness.run_steps(3);
    let written = spae::image_io::load(&dir.join("mix.png")).unwrap().to_rgb8();
    assert_eq!(written, harness.state().mixing().mixed.as_ref().unwrap().image);
    assert!(
        matches!(&dialog.requests()[1], Request::Save { file_name, .. } if file_name == "cat-face-mix-sunflower.png")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_gallery_indexes_a_folder_finds_a_word_and_opens_an_image() {
    let dir = scratch_dir("gallery");
    for name in ["cat-face.png", "red-apple.png", "sunflower.png"] {
        std::fs::copy(common::sample(name), dir.join(name)).unwrap();
    }
    std::fs::write(dir.join("readme.txt"), "not an image").unwrap();
    let (mut harness, dialog) = studio();
    dialog.answer_next(&dir);
    click_menu(&mut harness, "File", "Open folder in the gallery…");
    common::studio::wait_until(&mut harness, "the gallery", |app| {
        app.gallery().is_some_and(|g| g.state == spae::studio::gallery::IndexState::Finished)
    });
    let gallery = harness.state().gallery().unwrap();
    assert_eq!(gallery.items.len(), 3);
    assert_eq!(gallery.skipped.len(), 1);
    assert_eq!(gallery.skipped[0].file, "readme.txt");
    harness.get_by_label("1 skipped (not images, or unreadable)");
    // Search the apple's layer-1 word: the apple is among the images shown, first where it
    // holds the word most often.
    let model = model();
    let apple = model.encode(&spae::image_io::load_prepared(&common::sample("red-apple.png"), 64).unwrap()).unwrap();
    let word = model.codebook().vocabulary().word(apple.layer(1)[0]).to_string();
    harness.state_mut().gallery_mut().unwrap().query = word.clone();
    harness.run_steps(2);
    let gallery = harness.state().gallery().unwrap();
    let shown = gallery.shown();
    let counts: Vec<usize> = shown.iter().map(|(_, cells)| cells.len()).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "most cells first: {counts:?}");
    let (apple_item, apple_cells) =
        shown.iter().find(|(i, _)| gallery.items[*i].entry.file == "red-apple.png").expect("the apple holds its word");
    let expected = (1..=6)
        .map(|l| apple.layer(l).iter().filter(|&&w| model.codebook().vocabulary().word(w) == word).count())
        .sum::<usize>();
    assert_eq!(apple_cells.len(), expected);
    let apple_path = gallery.items[*apple_item].path.clone();
    let summary = format!("{} of 3 images hold \"{word}\"", shown.len());
    assert!(harness.query_by_label_contains(&summary).is_some(), "the panel says {summary}");
    harness.state_mut().command(spae::studio::Command::Open(apple_path.clone()));
    wait_for_worker(&mut harness);
    assert_eq!(harness.state().document().unwrap().path, apple_path);
    std::fs::remove_dir_all(dir).unwrap();
}

/// As on a desktop without a portal: the in-app browser answers File > Open and File >
/// Export, and the exported PNG is the edited reconstruction.
#[test]
fn with_the_in_app_browser_an_image_opens_is_edited_and_exported_through_the_menus() {
    // A folder of its own, so the export's default place (beside the image) is not the repository.
    let dir = scratch_dir("in-app-browser");
    std::fs::copy(common::sample("red-apple.png"), dir.join("red-apple.png")).unwrap();
    let dialog = spae::studio::file_dialog::SystemDialog::in_app_only().starting_in(dir.clone());
    let mut harness = Harness::builder().with_size([1480.0, 980.0]).build_eframe(move |cc| {
        StudioApp::new(cc, model(), Box::new(dialog), &common::sample("cat-face.png"), DeviceChoice::Auto)
    });
    wait_for_worker(&mut harness);
    click_menu(&mut harness, "File", "Open image… Ctrl+O");
    harness.run_steps(3);
    harness.get_by_label("red-apple.png").click();
    harness.run_steps(2);
    harness.get_by_label("Open").click();
    wait_for_worker(&mut harness);
    assert!(harness.state().document().unwrap().path.ends_with("red-apple.png"));

    let before = harness.state().document().unwrap().pyramid().clone();
    let word = if before.word(1, 0, 0) == word_index("ocean") { word_index("forest") } else { word_index("ocean") };
    harness
        .state_mut()
        .command(spae::studio::Command::SetWord { cell: spae::studio::Cell { layer: 1, row: 0, col: 0 }, word });
    wait_for_worker(&mut harness);
    assert!(harness.state().document().unwrap().is_edited());

    click_menu(&mut harness, "File", "Export reconstruction (PNG)…");
    harness.run_steps(3);
    let target = dir.join("apple-edited.png");
    harness.get_by_label("File name:").focus();
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.get_by_label("File name:").type_text("apple-edited.png");
    harness.run_steps(2);
    harness.get_by_label("Save").click();
    harness.run_steps(3);
    let notice = harness.state().notice().map(|n| n.text.clone());
    let written =
        spae::image_io::load(&target).unwrap_or_else(|e| panic!("{e:#}; the studio says {notice:?}")).to_rgb8();
    assert_eq!(&written, harness.state().shown_reconstruction().unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}
