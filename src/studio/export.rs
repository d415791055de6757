//! Writing the studio's results: reconstructions as PNG, the pyramid as text, a contact
//! sheet of the layer prefixes. Every file is written atomically; a failed write says why
//! and leaves the studio's state as it was.

use anyhow::Context;
use image::RgbImage;

use super::commands::ExportKind;
use super::StudioApp;
use crate::{atomic_file, image_io, pyramid_text};

/// How much the upscaled copy and the contact sheet enlarge the model's pixels.
const UPSCALE: u32 = 8;
/// Pixels of background grey around the contact sheet's images.
const SHEET_GAP: u32 = 8;

impl StudioApp {
    pub(super) fn export(&mut self, kind: ExportKind) {
        let (Some(document), Some(view)) = (&self.document, &self.view) else {
            self.notify_error("nothing to export yet: no image is open".into());
            return;
        };
        let stem = document.path.file_stem().map_or("image".into(), |s| s.to_string_lossy().into_owned());
        let prefix = self.settings.prefix_layers;
        let shown = &view.decoded.prefixes[prefix - 1];
        let (title, file_name, extension) = match kind {
            ExportKind::Reconstruction => ("Export the reconstruction", format!("{stem}-{prefix}-layers.png"), "png"),
            ExportKind::ReconstructionUpscaled => {
                ("Export the reconstruction, upscaled", format!("{stem}-{prefix}-layers-x{UPSCALE}.png"), "png")
            }
            ExportKind::PyramidText => ("Export the pyramid as text", format!("{stem}.pyramid.txt"), "txt"),
            ExportKind::ContactSheet => ("Export the layer prefixes", format!("{stem}-prefixes.png"), "png"),
        };
        let Some(path) = self.dialog.save_file(title, &file_name, extension) else { return };
        let written = match kind {
            ExportKind::Reconstruction => image_io::save_png(shown, &path),
            ExportKind::ReconstructionUpscaled => image_io::save_png(&upscale(shown, UPSCALE), &path),
            ExportKind::PyramidText => {
                let text = pyramid_text::format(document.pyramid(), self.model.codebook().vocabulary());
                atomic_file::write(&path, text.as_bytes())
            }
            ExportKind::ContactSheet => image_io::save_png(&contact_sheet(&document.original, &view.decoded.prefixes), &path),
        };
        match written.with_context(|| format!("cannot write {}", path.display())) {
            Ok(()) => self.notify(format!("wrote {}", path.display())),
            Err(e) => self.notify_error(format!("{e:#}; nothing in the studio was lost")),
        }
    }
}

/// Each pixel as a `factor` x `factor` block (no smoothing, so the model's pixels show).
fn upscale(image: &RgbImage, factor: u32) -> RgbImage {
    RgbImage::from_fn(image.width() * factor, image.height() * factor, |x, y| *image.get_pixel(x / factor, y / factor))
}

/// The original, then the reconstruction from 1, 2, ... layers, in one row.
fn contact_sheet(original: &RgbImage, prefixes: &[RgbImage]) -> RgbImage {
    let side = original.width() * UPSCALE;
    let count = 1 + prefixes.len() as u32;
    let mut sheet = RgbImage::from_pixel(count * side + (count + 1) * SHEET_GAP, side + 2 * SHEET_GAP, image_io::BACKGROUND);
    for (i, image) in std::iter::once(original).chain(prefixes).enumerate() {
        let x = SHEET_GAP + i as u32 * (side + SHEET_GAP);
        image::imageops::replace(&mut sheet, &upscale(image, UPSCALE), x.into(), SHEET_GAP.into());
    }
    sheet
}
