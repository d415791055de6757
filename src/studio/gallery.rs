//! The gallery: a folder's images encoded on a background thread (cancellable, with
//! progress), shown as thumbnails with their top words; a word search across every image
//! and layer. The index is [`crate::tasks::word_index`]'s, cached beside the model, so a folder
//! opened again is not encoded again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use eframe::egui;
use image::RgbImage;

use super::background::Background;
use super::view::texture;
use super::StudioApp;
use crate::gpu::{EncodeDevice, Gpu, GpuEncoder};
use crate::image_io;
use crate::model::SpaeModel;
use crate::tasks::word_index::{self, CellAt, Entry};

/// One indexed image of the gallery.
pub struct Item {
    pub path: PathBuf,
    pub entry: Entry,
    pub(super) thumbnail: Option<egui::TextureHandle>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum IndexState {
    Running,
    Finished,
    Cancelled,
    Failed(String),
}

enum Event {
    Indexed {
        entry: Entry,
        image: Option<RgbImage>,
        done: usize,
        total: usize,
    },
    /// The GPU encoder failed; the batch that met the error and the rest ran on the CPU.
    GpuFailed(String),
    Finished {
        cancelled: bool,
    },
    Failed(String),
}

pub struct Gallery {
    pub folder: PathBuf,
    pub items: Vec<Item>,
    /// Files that are not in the index, with the reason.
    pub skipped: Vec<Entry>,
    pub done: usize,
    pub total: usize,
    pub state: IndexState,
    /// The word searched for (empty: every image shown, in file order).
    pub query: String,
    cancel: Arc<AtomicBool>,
    /// The indexing thread; it takes no jobs.
    thread: Background<(), Event>,
}

impl Gallery {
    /// Starts indexing `folder` on its own thread, encoding in batches on `gpu` where one
    /// is given (else on the CPU); `ctx` is woken as images arrive.
    pub fn open(model: Arc<SpaeModel>, folder: PathBuf, gpu: Option<Gpu>, ctx: egui::Context) -> Self {
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = cancel.clone();
        let dir = folder.clone();
        let thread = Background::start("gallery", ctx, move |_, reporter| {
            let send = |event| {
                reporter.send(event);
            };
            let mut device = match gpu.map(|gpu| GpuEncoder::new(gpu, &model, word_index::INDEX_BATCH)) {
                Some(Ok(encoder)) => EncodeDevice::gpu(encoder),
                Some(Err(e)) => {
                    send(Event::GpuFailed(format!("{e:#}")));
                    EncodeDevice::cpu()
                }
                None => EncodeDevice::cpu(),
            };
            let indexed = index(&model, &mut device, &dir, &stop, &send);
            if let Some(reason) = device.take_failure() {
                send(Event::GpuFailed(reason));
            }
            match indexed {
                Ok(()) => send(Event::Finished { cancelled: stop.load(Ordering::Relaxed) }),
                Err(e) => send(Event::Failed(format!("{e:#}"))),
            }
        });
        Self {
            folder,
            items: Vec::new(),
            skipped: Vec::new(),
            done: 0,
            total: 0,
            state: IndexState::Running,
            query: String::new(),
            cancel,
            thread,
        }
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Takes what the thread sent since the last poll; returns why the GPU encoder was
    /// given up, where it was.
    pub(super) fn poll(&mut self, ctx: &egui::Context) -> Option<String> {
        let mut gpu_failure = None;
        for event in self.thread.poll() {
            match event {
                Event::Indexed { entry, image, done, total } => {
                    (self.done, self.total) = (done, total);
                    if entry.words.is_some() {
                        let thumbnail = image.map(|image| texture(ctx, format!("gallery {}", entry.file), &image));
                        self.items.push(Item { path: self.folder.join(&entry.file), entry, thumbnail });
                    } else {
                        self.skipped.push(entry);
                    }
                }
                Event::Finished { cancelled } => {
                    self.state = if cancelled { IndexState::Cancelled } else { IndexState::Finished };
                }
                Event::Failed(message) => self.state = IndexState::Failed(message),
                Event::GpuFailed(reason) => gpu_failure = Some(reason),
            }
        }
        gpu_failure
    }

    /// The items to show for the query, with each one's cells that hold the word: all
    /// items in file order for an empty query, else those with the word, most cells first.
    pub fn shown(&self) -> Vec<(usize, Vec<CellAt>)> {
        let word = self.query.trim();
        if word.is_empty() {
            return (0..self.items.len()).map(|i| (i, Vec::new())).collect();
        }
        word_index::search(self.items.iter().map(|item| &item.entry), word)
            .into_iter()
            .map(|(i, hit)| (i, hit.cells))
            .collect()
    }
}

impl Drop for Gallery {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The thread's work: the index (cached entries reused), each image sent with its
/// thumbnail, the cache written at the end (also after a cancel, so a reopen goes on).
fn index(
    model: &SpaeModel,
    device: &mut EncodeDevice,
    folder: &Path,
    cancel: &AtomicBool,
    send: &impl Fn(Event),
) -> anyhow::Result<()> {
    let resolution = model.config().resolution as u32;
    word_index::index_cached(model, device, folder, cancel, |indexed| {
        let image = match indexed.image {
            Some(image) => Some(image.clone()),
            None if indexed.entry.words.is_some() => {
                image_io::load_prepared(&folder.join(&indexed.entry.file), resolution).ok()
            }
            None => None,
        };
        send(Event::Indexed { entry: indexed.entry.clone(), image, done: indexed.done, total: indexed.total });
    })?;
    Ok(())
}

impl StudioApp {
    /// Opens `folder` in the gallery, replacing (and stopping) the one shown.
    pub(super) fn open_folder(&mut self, folder: PathBuf) {
        if !folder.is_dir() {
            self.notify_error(format!("{} is not a folder", folder.display()));
            return;
        }
        let gpu = self.encode_gpu.clone();
        self.gallery = Some(Gallery::open(self.model.clone(), folder, gpu, self.ctx.clone()));
        self.settings.show_gallery = true;
    }

    pub fn gallery(&self) -> Option<&Gallery> {
        self.gallery.as_ref()
    }

    pub fn gallery_mut(&mut self) -> Option<&mut Gallery> {
        self.gallery.as_mut()
    }
}
