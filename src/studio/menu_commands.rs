//! The one table of what menus and keyboard shortcuts start: each entry's label, its
//! shortcut and the [`Command`] it queues. Menus draw from it and the key handling reads
//! it, so a shortcut is defined once and shown where it works.

use eframe::egui::{self, Key, KeyboardShortcut, Modifiers};

use super::commands::{Command, ExportKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MenuCommand {
    OpenImage,
    OpenFolder,
    ExportReconstruction,
    ExportReconstructionUpscaled,
    ExportPyramidText,
    ExportContactSheet,
    Undo,
    Redo,
    Reset,
    Refine,
}

impl MenuCommand {
    /// The entries of the File menu, in order.
    pub const OPEN: [Self; 2] = [Self::OpenImage, Self::OpenFolder];
    pub const EXPORT: [Self; 4] = [
        Self::ExportReconstruction,
        Self::ExportReconstructionUpscaled,
        Self::ExportPyramidText,
        Self::ExportContactSheet,
    ];
    /// The Edit menu's entries and the pyramid panel's buttons.
    pub const HISTORY: [Self; 4] = [Self::Undo, Self::Redo, Self::Reset, Self::Refine];
    /// Every entry with a shortcut, in the order keys are matched: Redo before Undo, since
    /// a shortcut matches with extra Shift held and Ctrl+Z would take Ctrl+Shift+Z.
    pub const WITH_SHORTCUTS: [Self; 3] = [Self::OpenImage, Self::Redo, Self::Undo];

    pub fn label(self) -> &'static str {
        match self {
            Self::OpenImage => "Open image…",
            Self::OpenFolder => "Open folder in the gallery…",
            Self::ExportReconstruction => "Export reconstruction (PNG)…",
            Self::ExportReconstructionUpscaled => "Export reconstruction, upscaled (PNG)…",
            Self::ExportPyramidText => "Export pyramid as text…",
            Self::ExportContactSheet => "Export layer prefixes as a contact sheet (PNG)…",
            Self::Undo => "Undo",
            Self::Redo => "Redo",
            Self::Reset => "Reset to encoded",
            Self::Refine => "Refine words",
        }
    }

    pub fn shortcut(self) -> Option<KeyboardShortcut> {
        match self {
            Self::OpenImage => Some(KeyboardShortcut::new(Modifiers::COMMAND, Key::O)),
            Self::Undo => Some(KeyboardShortcut::new(Modifiers::COMMAND, Key::Z)),
            Self::Redo => Some(KeyboardShortcut::new(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z)),
            _ => None,
        }
    }

    /// Whether a focused text box keeps the shortcut for itself (its own undo and redo).
    pub fn yields_to_text_boxes(self) -> bool {
        matches!(self, Self::Undo | Self::Redo)
    }

    pub fn command(self) -> Command {
        match self {
            Self::OpenImage => Command::PickImage,
            Self::OpenFolder => Command::PickFolder,
            Self::ExportReconstruction => Command::Export(ExportKind::Reconstruction),
            Self::ExportReconstructionUpscaled => Command::Export(ExportKind::ReconstructionUpscaled),
            Self::ExportPyramidText => Command::Export(ExportKind::PyramidText),
            Self::ExportContactSheet => Command::Export(ExportKind::ContactSheet),
            Self::Undo => Command::Undo,
            Self::Redo => Command::Redo,
            Self::Reset => Command::Reset,
            Self::Refine => Command::Refine,
        }
    }

    /// A menu button or panel button for this entry, with its shortcut shown as the
    /// platform writes it; true when clicked.
    pub fn button(self, ui: &mut egui::Ui, enabled: bool) -> bool {
        let mut button = egui::Button::new(self.label());
        if let Some(shortcut) = self.shortcut() {
            button = button.shortcut_text(ui.ctx().format_shortcut(&shortcut));
        }
        ui.add_enabled(enabled, button).clicked()
    }
}
