//! What the studio remembers between runs (eframe keeps the window's own size and place).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How many recently opened files the File menu lists.
const RECENT_FILES: usize = 8;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Most recent first.
    pub recent_files: Vec<PathBuf>,
    /// The layer whose word grid is drawn over the image (1-based).
    pub layer: usize,
    /// How many layers the reconstruction is decoded from (the prefix slider).
    pub prefix_layers: usize,
    pub show_plots: bool,
    pub show_text_editor: bool,
    pub show_generate: bool,
    pub show_classify: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            recent_files: Vec::new(),
            layer: 1,
            prefix_layers: 6,
            show_plots: true,
            show_text_editor: false,
            show_generate: false,
            show_classify: false,
        }
    }
}

impl Settings {
    /// The storage key under which eframe keeps these settings.
    pub const KEY: &'static str = "spae-studio-settings";

    pub fn remember_file(&mut self, path: &Path) {
        self.recent_files.retain(|p| p != path);
        self.recent_files.insert(0, path.to_path_buf());
        self.recent_files.truncate(RECENT_FILES);
    }

    /// Keeps remembered layer choices inside a model with `layers` layers.
    pub fn fit_to(&mut self, layers: usize) {
        self.layer = self.layer.clamp(1, layers);
        self.prefix_layers = self.prefix_layers.clamp(1, layers);
    }
}
