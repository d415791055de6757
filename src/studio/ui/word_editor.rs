//! Editing the word of the selected cell: a text box with completion over the lexical
//! vocabulary, the nearest alternatives as one-click choices, and replacing a word
//! everywhere in its layer. An unknown word is never applied; its suggestions are shown.

use eframe::egui;

use super::super::{Cell, Command, StudioApp};

/// Completions offered under the text box.
const COMPLETIONS: usize = 8;
/// Suggestions offered for a word outside the vocabulary.
const SUGGESTIONS: usize = 5;

/// What a word choice should do once the word is known to be in the vocabulary.
#[derive(Clone, Copy)]
enum Apply {
    ThisCell,
    EverywhereInLayer,
}

impl StudioApp {
    /// Opens a cell in the word editor.
    pub(in super::super) fn open_cell(&mut self, cell: Cell) {
        let Some(document) = &self.document else { return };
        let word = document.pyramid().word(cell.layer, cell.row, cell.col);
        self.editor.word = self.model.codebook().vocabulary().word(word).to_string();
        self.editor.unknown = None;
        self.editor.cell = Some(cell);
    }

    pub(super) fn word_editor_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Edit a word");
        let (Some(cell), Some(document)) = (self.editor.cell, &self.document) else {
            ui.label("Click a cell of the image to edit its word.");
            return;
        };
        let codebook = self.model.codebook().clone();
        let vocabulary = codebook.vocabulary();
        let current = vocabulary.word(document.pyramid().word(cell.layer, cell.row, cell.col)).to_string();
        ui.label(format!("layer {}, row {}, column {}: {current}", cell.layer, cell.row + 1, cell.col + 1));
        let mut choice: Option<(String, Apply)> = None;
        ui.horizontal(|ui| {
            let label = ui.label("New word:");
            let response = egui::TextEdit::singleline(&mut self.editor.word)
                .hint_text("type a word, Enter applies")
                .desired_width(160.0)
                .show(ui)
                .response
                .response
                .labelled_by(label.id);
            if std::mem::take(&mut self.editor.focus_word) {
                response.request_focus();
            }
            if response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                choice = Some((self.editor.word.trim().to_string(), Apply::ThisCell));
            }
            if ui.button("Apply").clicked() {
                choice = Some((self.editor.word.trim().to_string(), Apply::ThisCell));
            }
        });
        let typed = self.editor.word.trim().to_string();
        if !typed.is_empty() && vocabulary.index_of_word(&typed).is_none() {
            let completions = vocabulary.completions(&typed, COMPLETIONS);
            if !completions.is_empty() {
                ui.label("Completions:");
                choice = choice.or(word_buttons_ui(ui, &completions));
            }
        }
        let alternatives: Vec<String> =
            self.alternatives(cell).into_iter().map(|w| vocabulary.word(w).to_string()).collect();
        ui.label("Nearest words to this cell's target:");
        choice = choice.or(word_buttons_ui(ui, &alternatives));
        let everywhere = format!("Replace every `{current}` in layer {} with `{typed}`", cell.layer);
        if ui.add_enabled(!typed.is_empty() && typed != current, egui::Button::new(everywhere)).clicked() {
            choice = Some((typed, Apply::EverywhereInLayer));
        }
        if let Some((word, suggestions)) = &self.editor.unknown {
            ui.colored_label(ui.visuals().error_fg_color, format!("`{word}` is not in the vocabulary; did you mean:"));
            choice = word_buttons_ui(ui, suggestions).or(choice);
        }
        if let Some((word, apply)) = choice {
            self.choose_word(cell, &word, apply);
        }
    }

    fn choose_word(&mut self, cell: Cell, word: &str, apply: Apply) {
        let codebook = self.model.codebook().clone();
        let vocabulary = codebook.vocabulary();
        self.editor.word = word.to_string();
        let Some(index) = vocabulary.index_of_word(word) else {
            let suggestions = vocabulary.suggestions(word, SUGGESTIONS).into_iter().map(String::from).collect();
            self.editor.unknown = Some((word.to_string(), suggestions));
            return;
        };
        self.editor.unknown = None;
        let Some(document) = &self.document else { return };
        self.commands.push(match apply {
            Apply::ThisCell => Command::SetWord { cell, word: index },
            Apply::EverywhereInLayer => {
                let from = document.pyramid().word(cell.layer, cell.row, cell.col);
                Command::ReplaceInLayer { layer: cell.layer, from, to: index }
            }
        });
    }
}

/// One small button per word, wrapped; the clicked word applies to this cell.
fn word_buttons_ui(ui: &mut egui::Ui, words: &[impl AsRef<str>]) -> Option<(String, Apply)> {
    let mut clicked = None;
    ui.horizontal_wrapped(|ui| {
        for word in words {
            if ui.small_button(word.as_ref()).clicked() {
                clicked = Some((word.as_ref().to_string(), Apply::ThisCell));
            }
        }
    });
    clicked
}
