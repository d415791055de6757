//! The studio's panels. They draw the state and queue [`Command`]s; they change nothing
//! else except what the user is typing and where the pointer is.

mod classify_panel;
mod describe_panel;
pub mod file_browser;
mod gallery_panel;
mod generate_panel;
mod mix_panel;
mod plots;
mod pyramid_panel;
mod text_editor;
mod word_editor;
mod word_grid;

use eframe::egui;

use super::menu_commands::MenuCommand;
use super::state::Settings;
use super::{Command, LlmStatus, StudioApp};

/// Height of the strip of prefix reconstructions, their labels included.
const STRIP_HEIGHT: f32 = 150.0;
/// Height of the plots row.
const PLOTS_HEIGHT: f32 = 190.0;
/// Room a horizontal separator takes.
const SEPARATOR: f32 = 6.0;

impl StudioApp {
    pub(super) fn studio_ui(&mut self, ui: &mut egui::Ui) {
        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        if self.notice.is_some() {
            egui::Panel::top("notice").show(ui, |ui| self.notice_ui(ui));
        }
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        egui::Panel::right("pyramid").default_size(380.0).resizable(true).show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| self.pyramid_panel_ui(ui));
        });
        egui::CentralPanel::default().show(ui, |ui| {
            // The view sizes itself to the panel; the scroll area only matters where the
            // panel is smaller than the view's least size.
            let available = ui.available_size();
            egui::ScrollArea::vertical().id_salt("main view").show(ui, |ui| self.main_view_ui(ui, available));
        });
        self.windows_ui(ui.ctx());
    }

    /// The Generate, Classify, Describe, Mix and Gallery panels, each a window opened from the
    /// View menu.
    fn windows_ui(&mut self, ctx: &egui::Context) {
        /// Title, the setting that shows it, default place and size, and what it draws.
        type PanelWindow =
            (&'static str, fn(&mut Settings) -> &mut bool, [f32; 2], [f32; 2], fn(&mut StudioApp, &mut egui::Ui));
        let windows: [PanelWindow; 5] = [
            ("Generate", |s| &mut s.show_generate, [40.0, 60.0], [1040.0, 640.0], Self::generate_panel_ui),
            ("Classify", |s| &mut s.show_classify, [420.0, 60.0], [640.0, 720.0], Self::classify_panel_ui),
            ("Describe", |s| &mut s.show_describe, [440.0, 90.0], [620.0, 520.0], Self::describe_panel_ui),
            ("Mix", |s| &mut s.show_mix, [300.0, 100.0], [660.0, 420.0], Self::mix_panel_ui),
            ("Gallery", |s| &mut s.show_gallery, [60.0, 80.0], [900.0, 620.0], Self::gallery_panel_ui),
        ];
        for (title, flag, position, size, panel) in windows {
            let mut open = *flag(&mut self.settings);
            egui::Window::new(title)
                .open(&mut open)
                .default_pos(position)
                .default_size(size)
                .show(ctx, |ui| panel(self, ui));
            *flag(&mut self.settings) = open;
        }
    }

    /// Where the frozen LLM stands, shared by the Generate, Classify and Describe panels.
    fn llm_status_ui(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| match &self.llm_status {
            LlmStatus::NotLoaded => ui.label("LLM: loads on the first run (about 0.7 GB, a few seconds)"),
            LlmStatus::Loading => {
                ui.spinner();
                ui.label("LLM: loading…")
            }
            LlmStatus::Ready { secs } => ui.label(format!("LLM: ready (loaded in {secs:.1} s)")),
            LlmStatus::Failed(message) => ui.colored_label(ui.visuals().error_fg_color, format!("LLM: {message}")),
        });
    }

    fn menu_ui(&mut self, ui: &mut egui::Ui) {
        let has_document = self.document.is_some();
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                for entry in MenuCommand::OPEN {
                    if entry.button(ui, true) {
                        self.commands.push(entry.command());
                    }
                }
                ui.menu_button("Open recent", |ui| {
                    if self.settings.recent_files.is_empty() {
                        ui.label("(none yet)");
                    }
                    for path in &self.settings.recent_files {
                        if ui.button(path.display().to_string()).clicked() {
                            self.commands.push(Command::Open(path.clone()));
                        }
                    }
                });
                ui.separator();
                for entry in MenuCommand::EXPORT {
                    if entry.button(ui, has_document) {
                        self.commands.push(entry.command());
                    }
                }
                ui.separator();
                if ui.button("Quit").clicked() {
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            ui.menu_button("Edit", |ui| self.history_buttons_ui(ui));
            ui.menu_button("View", |ui| {
                ui.checkbox(&mut self.settings.show_plots, "Plots");
                ui.checkbox(&mut self.settings.show_text_editor, "Pyramid as text");
                ui.separator();
                ui.checkbox(&mut self.settings.show_generate, "Generate");
                ui.checkbox(&mut self.settings.show_classify, "Classify");
                ui.checkbox(&mut self.settings.show_describe, "Describe");
                ui.checkbox(&mut self.settings.show_mix, "Mix two pyramids");
                ui.checkbox(&mut self.settings.show_gallery, "Gallery");
            });
        });
    }

    /// Undo, redo, reset and refine, shared by the Edit menu and the pyramid panel.
    fn history_buttons_ui(&mut self, ui: &mut egui::Ui) {
        let Some(document) = &self.document else { return };
        for entry in MenuCommand::HISTORY {
            let enabled = match entry {
                MenuCommand::Undo => document.can_undo(),
                MenuCommand::Redo => document.can_redo(),
                MenuCommand::Refine => self.refining.is_none(),
                _ => document.is_edited(),
            };
            if entry.button(ui, enabled) {
                self.commands.push(entry.command());
            }
        }
    }

    fn notice_ui(&mut self, ui: &mut egui::Ui) {
        let Some(notice) = &self.notice else { return };
        let mut dismissed = false;
        ui.horizontal(|ui| {
            let color = if notice.is_error { ui.visuals().error_fg_color } else { ui.visuals().text_color() };
            ui.colored_label(color, &notice.text);
            dismissed = ui.small_button("Dismiss").clicked();
        });
        if dismissed {
            self.notice = None;
        }
    }

    fn status_ui(&self, ui: &mut egui::Ui) {
        let millis = |secs: Option<f64>| secs.map_or("–".to_string(), |s| format!("{:.0} ms", s * 1e3));
        // Wrapped: in a narrow window the status goes on a second line instead of off the edge.
        ui.horizontal_wrapped(|ui| {
            if let Some(document) = &self.document {
                let edited = if document.is_edited() { " (edited)" } else { "" };
                ui.label(format!("image: {}{edited}", display_name(&document.path)))
                    .on_hover_text(document.path.display().to_string());
                ui.separator();
            }
            let source = self.model.source();
            ui.label(format!("model: {}", source.short_name())).on_hover_text(source.to_string());
            ui.separator();
            ui.label(format!("vocabulary: {} words", self.model.codebook().len()));
            ui.separator();
            if self.device_status == self.encode_status {
                ui.label(format!("encoding and decoding on: {}", self.device_status));
            } else {
                ui.label(format!("encoding on: {}", self.encode_status));
                ui.separator();
                ui.label(format!("decoding on: {}", self.device_status));
            }
            ui.separator();
            ui.label(format!("last encode: {}", millis(self.encode_secs)));
            ui.separator();
            ui.label(format!("last decode: {}", millis(self.decode_secs)));
            ui.separator();
            ui.label(format!("last edit to image: {}", millis(self.edit_secs))).on_hover_text(
                "from the edit to its decoded images on screen: the decode, its measurements and the texture uploads",
            );
            if let Some(path) = &self.opening {
                ui.separator();
                ui.spinner();
                ui.label(format!("opening {}", path.display()));
            } else if self.is_busy() {
                ui.separator();
                ui.spinner();
                ui.label("decoding");
            }
        });
    }

    /// The image views; `available` is the panel's size (the scroll area around the view
    /// would offer unbounded height).
    fn main_view_ui(&mut self, ui: &mut egui::Ui, available: egui::Vec2) {
        if self.view.is_none() {
            ui.centered_and_justified(|ui| match &self.opening {
                Some(path) => ui.label(format!("encoding {}…", path.display())),
                None => ui.label("Open an image: File > Open (Ctrl+O), or drop one on the window."),
            });
            return;
        }
        let plots_height = if self.settings.show_plots { PLOTS_HEIGHT } else { 0.0 };
        // The worded image gets most of the room; reconstruction and difference share a
        // column beside it at half its side.
        // Two labels and two separators besides the images and the plots.
        let text_height = ui.text_style_height(&egui::TextStyle::Body);
        let chrome = 2.0 * text_height + 6.0 * ui.spacing().item_spacing.y + 2.0 * SEPARATOR;
        let side = ((available.x - 3.0 * ui.spacing().item_spacing.x) / 1.5)
            .min(available.y - STRIP_HEIGHT - plots_height - chrome)
            .max(128.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                let layer = self.settings.layer;
                let what = if self.document.as_ref().is_some_and(|d| d.generated) {
                    "Generated frame (its decode from all layers)"
                } else {
                    "Original"
                };
                ui.label(format!("{what} with the words of layer {layer} (click a cell to edit it)"));
                let zoom = self.settings.zoom;
                if zoom > 1.0 {
                    egui::ScrollArea::both()
                        .id_salt("word grid")
                        .max_width(side)
                        .max_height(side)
                        .show(ui, |ui| self.word_grid_ui(ui, side * zoom));
                } else {
                    self.word_grid_ui(ui, side);
                }
            });
            ui.vertical(|ui| self.reconstruction_ui(ui, side / 2.0 - ui.spacing().item_spacing.y));
        });
        ui.separator();
        self.prefix_strip_ui(ui);
        if self.settings.show_plots {
            ui.separator();
            self.plots_ui(ui, plots_height - 2.0 * ui.spacing().item_spacing.y);
        }
    }
}

/// A file's name for the title and status bar (the whole path where it has no name).
pub(super) fn display_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |name| name.to_string_lossy().into_owned())
}

/// A PSNR for display: "identical" where the images are equal (infinite PSNR).
pub(super) fn decibels(psnr: f64) -> String {
    if psnr.is_finite() {
        format!("{psnr:.1} dB")
    } else {
        "identical".to_string()
    }
}
