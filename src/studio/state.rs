//! What the studio remembers between runs (eframe keeps the window's own size and place).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The word grid's largest magnification.
pub const MAX_ZOOM: f32 = 4.0;
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
    /// Magnification of the word grid (1: fits the window; more scrolls).
    pub zoom: f32,
    pub show_plots: bool,
    pub show_text_editor: bool,
    pub show_generate: bool,
    pub show_classify: bool,
    pub show_mix: bool,
    pub show_gallery: bool,
    pub show_describe: bool,
    /// The folder the last export went to, where the next export's dialog starts (none:
    /// the open image's folder).
    pub export_folder: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            recent_files: Vec::new(),
            layer: 1,
            prefix_layers: 6,
            zoom: 1.0,
            show_plots: true,
            show_text_editor: false,
            show_generate: false,
            show_classify: false,
            show_mix: false,
            show_gallery: false,
            show_describe: false,
            export_folder: None,
        }
    }
}

impl Settings {
    /// The storage key under which eframe keeps these settings.
    pub const KEY: &'static str = "spae-studio-settings";

    /// The settings kept in eframe's storage, or the defaults.
    pub fn stored(storage: Option<&dyn eframe::Storage>) -> Self {
        storage.and_then(|storage| eframe::get_value(storage, Self::KEY)).unwrap_or_default()
    }

    /// The most recent file that still exists: what the studio reopens on start.
    pub fn last_file(&self) -> Option<&Path> {
        self.recent_files.iter().map(PathBuf::as_path).find(|path| path.is_file())
    }

    pub fn remember_file(&mut self, path: &Path) {
        self.recent_files.retain(|p| p != path);
        self.recent_files.insert(0, path.to_path_buf());
        self.recent_files.truncate(RECENT_FILES);
    }

    /// Keeps remembered layer choices inside a model with `layers` layers.
    pub fn fit_to(&mut self, layers: usize) {
        self.layer = self.layer.clamp(1, layers);
        self.prefix_layers = self.prefix_layers.clamp(1, layers);
        self.zoom = if self.zoom.is_finite() { self.zoom.clamp(1.0, MAX_ZOOM) } else { 1.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_file_is_the_newest_that_still_exists() {
        let dir = std::env::temp_dir().join(format!("spae-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (old, new) = (dir.join("old.png"), dir.join("new.png"));
        std::fs::write(&old, b"x").unwrap();
        std::fs::write(&new, b"x").unwrap();
        let mut settings = Settings::default();
        assert_eq!(settings.last_file(), None);
        settings.remember_file(&old);
        settings.remember_file(&new);
        assert_eq!(settings.last_file(), Some(new.as_path()));
        std::fs::remove_file(&new).unwrap();
        assert_eq!(settings.last_file(), Some(old.as_path()), "a file since removed is skipped");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
