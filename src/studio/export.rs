//! Writing the studio's results: reconstructions as PNG, the pyramid as text, a contact
//! sheet of the layer prefixes, and a generation's frames (PNG files or an animated GIF).
//! Every file is written atomically; a failed write says why and leaves the studio's state
//! as it was.

use std::path::Path;

use anyhow::{Context, Result};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, RgbImage};

use super::commands::{Choosing, ExportKind, FrameExport};
use super::file_dialog::Request;
use super::generation::GeneratedFrame;
use super::StudioApp;
use crate::pyramid::text as pyramid_text;
use crate::tasks::denoising;
use crate::{atomic_file, image_io};

/// How much the upscaled copy and the contact sheet enlarge the model's pixels.
const UPSCALE: u32 = 8;
/// Pixels of background grey around the contact sheet's images.
const SHEET_GAP: u32 = 8;
/// How much the animated GIF enlarges the frames.
const GIF_UPSCALE: u32 = 4;
/// Milliseconds each frame of the GIF is shown (as the timeline plays).
const GIF_FRAME_MS: u32 = 500;

impl StudioApp {
    pub(super) fn export(&mut self, kind: ExportKind) {
        let Some(document) = &self.document else {
            self.notify_error("nothing to export yet: no image is open".into());
            return;
        };
        let stem = document.path.file_stem().map_or("image".into(), |s| s.to_string_lossy().into_owned());
        let prefix = self.settings.prefix_layers;
        let (title, file_name, extension) = match kind {
            ExportKind::Reconstruction => ("Export the reconstruction", format!("{stem}-{prefix}-layers.png"), "png"),
            ExportKind::ReconstructionUpscaled => {
                ("Export the reconstruction, upscaled", format!("{stem}-{prefix}-layers-x{UPSCALE}.png"), "png")
            }
            ExportKind::PyramidText => ("Export the pyramid as text", format!("{stem}.pyramid.txt"), "txt"),
            ExportKind::ContactSheet => ("Export the layer prefixes", format!("{stem}-prefixes.png"), "png"),
        };
        let folder = self.settings.export_folder.clone().or_else(|| document.path.parent().map(Path::to_path_buf));
        let request = Request::Save { title: title.into(), file_name, extension: extension.into(), folder };
        self.ask(request, Choosing::Export(kind));
    }

    /// Writes the export `kind` to `path` (the save dialog's answer).
    pub(super) fn export_to(&mut self, kind: ExportKind, path: &Path) {
        let (Some(document), Some(view)) = (&self.document, &self.view) else {
            self.notify_error("nothing to export: no image is open".into());
            return;
        };
        let shown = &view.decoded.prefixes[self.settings.prefix_layers - 1];
        if let Err(e) = atomic_file::check_not_input(&document.path, path) {
            self.notify_error(format!("{e:#}"));
            return;
        }
        let written = match kind {
            ExportKind::Reconstruction => image_io::save_png(shown, path),
            ExportKind::ReconstructionUpscaled => image_io::save_png(&image_io::upscale(shown, UPSCALE), path),
            ExportKind::PyramidText => {
                let text = pyramid_text::format(document.pyramid(), self.model.codebook().vocabulary());
                atomic_file::write(path, text.as_bytes())
            }
            ExportKind::ContactSheet => {
                image_io::save_png(&contact_sheet(&document.original, &view.decoded.prefixes), path)
            }
        };
        match written.with_context(|| format!("cannot write {}", path.display())) {
            Ok(()) => {
                self.settings.export_folder = path.parent().map(Path::to_path_buf);
                self.notify(format!("wrote {}", path.display()))
            }
            Err(e) => self.notify_error(format!("{e:#}; nothing in the studio was lost")),
        }
    }
}

impl StudioApp {
    pub(super) fn export_frames(&mut self, kind: FrameExport) {
        let Some(generation) = self.generation.as_ref().filter(|g| !g.frames.is_empty()) else {
            self.notify_error("nothing to export yet: no frames have been generated".into());
            return;
        };
        let shown = &generation.frames[generation.shown];
        let folder = self.settings.export_folder.clone();
        let request = match kind {
            FrameExport::Current => Request::Save {
                title: "Export the frame".into(),
                file_name: format!("{}.png", generation.frame_stem(shown.frame.step)),
                extension: "png".into(),
                folder,
            },
            FrameExport::AllPng => Request::Folder { title: "Export every frame into a folder".into() },
            FrameExport::Gif => Request::Save {
                title: "Export the frames as an animated GIF".into(),
                file_name: format!("{}.gif", generation.file_stem()),
                extension: "gif".into(),
                folder,
            },
        };
        self.ask(request, Choosing::ExportFrames(kind));
    }

    /// Writes the generated frames as `kind` to `path` (the dialog's answer).
    pub(super) fn export_frames_to(&mut self, kind: FrameExport, path: &Path) {
        let Some(generation) = self.generation.as_ref().filter(|g| !g.frames.is_empty()) else {
            self.notify_error("nothing to export: no frames have been generated".into());
            return;
        };
        let frames = &generation.frames;
        let shown = &frames[generation.shown];
        let written = match kind {
            FrameExport::Current => image_io::save_png(&shown.image, path)
                .with_context(|| format!("cannot write {}", path.display()))
                .map(|()| path.display().to_string()),
            FrameExport::AllPng => write_frames(frames, path),
            FrameExport::Gif => write_gif(frames, path).map(|()| path.display().to_string()),
        };
        match written {
            Ok(what) => {
                let folder = if kind == FrameExport::AllPng { Some(path) } else { path.parent() };
                self.settings.export_folder = folder.map(Path::to_path_buf);
                self.notify(format!("wrote {what}"))
            }
            Err(e) => self.notify_error(format!("{e:#}; the frames in the studio are kept")),
        }
    }
}

/// Every frame as `frame-NNN.png` (NNN: its step) in `folder`, after removing an earlier
/// generation's files there; stops at the first failure, saying how many were written.
fn write_frames(frames: &[GeneratedFrame], folder: &Path) -> Result<String> {
    let removed = denoising::clear_output_folder(folder, None)?;
    for (written, frame) in frames.iter().enumerate() {
        let path = folder.join(denoising::frame_file_name(frame.frame.step));
        image_io::save_png(&frame.image, &path).with_context(|| {
            format!("cannot write {} ({written} of {} frames written)", path.display(), frames.len())
        })?;
    }
    let replaced =
        if removed > 0 { format!(", replacing {removed} files of an earlier generation") } else { String::new() };
    Ok(format!("{} frames (frame-NNN.png) to {}{replaced}", frames.len(), folder.display()))
}

/// The frames as an animated GIF, enlarged, looping.
fn write_gif(frames: &[GeneratedFrame], path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut bytes);
        encoder.set_repeat(Repeat::Infinite).context("cannot encode the GIF")?;
        let delay = Delay::from_numer_denom_ms(GIF_FRAME_MS, 1);
        let gif_frames = frames.iter().map(|frame| {
            let rgba = image::DynamicImage::ImageRgb8(image_io::upscale(&frame.image, GIF_UPSCALE)).to_rgba8();
            image::Frame::from_parts(rgba, 0, 0, delay)
        });
        encoder.encode_frames(gif_frames).context("cannot encode the GIF")?;
    }
    atomic_file::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Each pixel as a `factor` x `factor` block (no smoothing, so the model's pixels show).
/// The original, then the reconstruction from 1, 2, ... layers, in one row.
fn contact_sheet(original: &RgbImage, prefixes: &[RgbImage]) -> RgbImage {
    let side = original.width() * UPSCALE;
    let count = 1 + prefixes.len() as u32;
    let mut sheet =
        RgbImage::from_pixel(count * side + (count + 1) * SHEET_GAP, side + 2 * SHEET_GAP, image_io::BACKGROUND);
    for (i, image) in std::iter::once(original).chain(prefixes).enumerate() {
        let x = SHEET_GAP + i as u32 * (side + SHEET_GAP);
        image::imageops::replace(&mut sheet, &image_io::upscale(image, UPSCALE), x.into(), SHEET_GAP.into());
    }
    sheet
}
