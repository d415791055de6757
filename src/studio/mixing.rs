//! Mixing two pyramids: layers 1..k from one image and k+1..L from another (and any one
//! layer swapped), decoded on the worker. SPAE means the upper layers to carry content and
//! the lower ones appearance; a mix shows what each layer of a model contributes.

use std::path::{Path, PathBuf};

use eframe::egui;
use image::RgbImage;

use super::commands::Choosing;
use super::file_dialog::Request;
use super::view::texture;
use super::worker::Job;
use super::StudioApp;
use crate::pyramid::{mix_choice, Pyramid};
use crate::{atomic_file, image_io};

/// The second image of a mix, encoded.
pub struct Second {
    pub path: PathBuf,
    pub original: RgbImage,
    pub pyramid: Pyramid,
    pub(super) texture: egui::TextureHandle,
}

/// A decoded mix and the pyramid it decodes.
pub struct Mixed {
    pub pyramid: Pyramid,
    pub image: RgbImage,
    pub(super) texture: egui::TextureHandle,
}

/// The Mix panel's state.
pub struct Mixing {
    pub second: Option<Second>,
    /// The image being encoded as the second.
    pub(super) opening: Option<PathBuf>,
    /// Layers 1..=split come from the first pyramid, the rest from the second.
    pub split: usize,
    /// One layer taken from the other side than `split` says.
    pub swapped: Option<usize>,
    /// The first pyramid is the second image's, the second the open document's.
    pub reversed: bool,
    /// The pyramid last sent to the worker, so each mix is decoded once.
    requested: Option<Pyramid>,
    pub mixed: Option<Mixed>,
}

impl Mixing {
    pub fn new(layers: usize) -> Self {
        Self {
            second: None,
            opening: None,
            split: layers.div_ceil(2),
            swapped: None,
            reversed: false,
            requested: None,
            mixed: None,
        }
    }

    /// For each layer: true where it comes from the second image (not the open one).
    pub fn from_second(&self, layers: usize) -> Vec<bool> {
        mix_choice(layers, self.split, self.swapped).into_iter().map(|b| b != self.reversed).collect()
    }
}

impl StudioApp {
    /// Asks for the second image of a mix.
    pub(super) fn pick_mix_image(&mut self) {
        self.ask(Request::Image { title: "Choose the second image of the mix".into() }, Choosing::MixImage);
    }

    pub(super) fn open_mix_image(&mut self, path: PathBuf) {
        self.mixing.opening = Some(path.clone());
        self.worker.send(Job::EncodeForMix { path });
    }

    pub(super) fn receive_mix_image(
        &mut self,
        ctx: &egui::Context,
        path: PathBuf,
        original: RgbImage,
        pyramid: Pyramid,
    ) {
        self.mixing.opening = None;
        let texture = texture(ctx, "mix second", &original);
        self.mixing.second = Some(Second { path, original, pyramid, texture });
    }

    pub(super) fn receive_mix(&mut self, ctx: &egui::Context, pyramid: Pyramid, image: RgbImage) {
        let texture = texture(ctx, "mix result", &image);
        self.mixing.mixed = Some(Mixed { pyramid, image, texture });
    }

    /// The mix of the open document's pyramid (as edited) with the second image's.
    pub fn mix_pyramid(&self) -> Option<Pyramid> {
        let (document, second) = (self.document.as_ref()?, self.mixing.second.as_ref()?);
        let from_second = self.mixing.from_second(self.model.shape().layers());
        document.pyramid().mixed(&second.pyramid, &from_second).ok()
    }

    /// Sends the current mix to the worker when it changed since the last request.
    pub(super) fn update_mix(&mut self) {
        if !self.settings.show_mix {
            return;
        }
        let Some(pyramid) = self.mix_pyramid() else { return };
        if self.mixing.requested.as_ref() != Some(&pyramid) {
            self.mixing.requested = Some(pyramid.clone());
            self.worker.send(Job::DecodeMix(pyramid));
        }
    }

    /// Whether the shown mix is the decode of the current choice.
    pub fn mix_is_current(&self) -> bool {
        let current = self.mix_pyramid();
        current.is_some() && self.mixing.mixed.as_ref().map(|m| &m.pyramid) == current.as_ref()
    }

    pub fn mixing(&self) -> &Mixing {
        &self.mixing
    }

    pub fn mixing_mut(&mut self) -> &mut Mixing {
        &mut self.mixing
    }

    pub(super) fn export_mix(&mut self) {
        if !self.mix_is_current() {
            self.notify_error("nothing to export yet: the mix is not decoded".into());
            return;
        }
        let stem = |path: &Path| path.file_stem().map_or("image".into(), |s| s.to_string_lossy().into_owned());
        let (Some(document), Some(second)) = (&self.document, &self.mixing.second) else { return };
        let file_name = format!("{}-mix-{}.png", stem(&document.path), stem(&second.path));
        let folder = self.settings.export_folder.clone().or_else(|| document.path.parent().map(Path::to_path_buf));
        let request = Request::Save { title: "Export the mix".into(), file_name, extension: "png".into(), folder };
        self.ask(request, Choosing::ExportMix);
    }

    pub(super) fn export_mix_to(&mut self, path: &Path) {
        let Some(mixed) = self.mixing.mixed.as_ref().filter(|_| self.mix_is_current()) else {
            self.notify_error("nothing to export: the mix is not decoded".into());
            return;
        };
        let inputs = self.document.iter().map(|d| &d.path).chain(self.mixing.second.iter().map(|s| &s.path));
        if let Some(e) = inputs.map(|input| atomic_file::check_not_input(input, path)).find_map(Result::err) {
            self.notify_error(format!("{e:#}"));
            return;
        }
        match image_io::save_png(&mixed.image, path) {
            Ok(()) => {
                self.settings.export_folder = path.parent().map(Path::to_path_buf);
                self.notify(format!("wrote {}", path.display()));
            }
            Err(e) => {
                self.notify_error(format!("cannot write {}: {e:#}; nothing in the studio was lost", path.display()))
            }
        }
    }
}
