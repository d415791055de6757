//! An index of a folder of images by the words of their pyramids: every image encoded once,
//! its words kept per layer, so a word can be looked up across the folder (which images
//! hold it, in which layer and cell). The studio's gallery and `spae index` / `spae search`
//! share it. The index is cached beside the model as JSON lines, one image a line, and an
//! image whose size and modification time are unchanged is not encoded again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::gpu::EncodeDevice;
use crate::model::SpaeModel;
use crate::{atomic_file, image_io};

/// The folder, inside a model folder, that holds its cached indexes.
pub const CACHE_FOLDER: &str = "index";

/// One file of the folder: its words per layer, or why it was skipped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The file's name inside the folder.
    pub file: String,
    /// `words[l-1]`: the words of layer l, row-major.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<Vec<String>>>,
    /// Why the file is not in the index (not an image, unreadable, too large).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Size in bytes and modification time (ms since 1970) when it was indexed.
    pub size: u64,
    pub modified_ms: u64,
}

/// A cell of a pyramid: (layer, row, column), layer 1-based, row and column 0-based.
pub type CellAt = (usize, usize, usize);

/// Where a word occurs in one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub file: String,
    /// (layer, row, column) of each cell that holds the word, layer 1 first.
    pub cells: Vec<CellAt>,
}

/// A folder's index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WordIndex {
    pub entries: Vec<Entry>,
}

impl WordIndex {
    /// The indexed images (skipped files left out).
    pub fn images(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.words.is_some())
    }

    pub fn skipped(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.skipped.is_some())
    }

    /// The images whose pyramids hold `word` (compared without regard to case), with the
    /// cells; most cells first, then by file name.
    pub fn search(&self, word: &str) -> Vec<Hit> {
        search(&self.entries, word).into_iter().map(|(_, hit)| hit).collect()
    }

    /// JSON lines, one entry a line.
    pub fn to_json_lines(&self) -> String {
        self.entries.iter().map(|e| serde_json::to_string(e).expect("an entry always serialises") + "\n").collect()
    }

    pub fn from_json_lines(text: &str) -> Result<Self> {
        let entries = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).with_context(|| format!("line {} is not an index entry", i + 1))
            })
            .collect::<Result<_>>()?;
        Ok(Self { entries })
    }
}

/// The entries that hold `word` (by position in `entries`) with their cells; most cells
/// first, then by file name.
pub fn search<'a>(entries: impl IntoIterator<Item = &'a Entry>, word: &str) -> Vec<(usize, Hit)> {
    let mut hits: Vec<(usize, Hit)> =
        entries.into_iter().enumerate().filter_map(|(i, entry)| Some((i, hit(entry, word)?))).collect();
    hits.sort_by(|(_, a), (_, b)| b.cells.len().cmp(&a.cells.len()).then_with(|| a.file.cmp(&b.file)));
    hits
}

/// The cells of `entry` that hold `word`, if any.
pub fn hit(entry: &Entry, word: &str) -> Option<Hit> {
    let words = entry.words.as_ref()?;
    let mut cells = Vec::new();
    for (l, layer) in words.iter().enumerate() {
        let side = (layer.len() as f64).sqrt().round() as usize;
        for (i, w) in layer.iter().enumerate() {
            if w.eq_ignore_ascii_case(word) {
                cells.push((l + 1, i / side.max(1), i % side.max(1)));
            }
        }
    }
    (!cells.is_empty()).then(|| Hit { file: entry.file.clone(), cells })
}

/// The files of `folder` to index: every entry that is not a folder or hidden, by name.
pub fn list_files(folder: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for item in std::fs::read_dir(folder).with_context(|| format!("cannot read the folder {}", folder.display()))? {
        let item = item.with_context(|| format!("cannot read the folder {}", folder.display()))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || item.path().is_dir() {
            continue;
        }
        files.push(name);
    }
    files.sort();
    Ok(files)
}

/// Where the index of `folder` is cached: in the model's folder, named by a hash of the
/// folder's path and the model's weights file (size and time), so a retrained model
/// indexes anew. None for a model without a weights file (an untrained one).
pub fn cache_path(model: &SpaeModel, folder: &Path) -> Option<PathBuf> {
    let folder = folder.canonicalize().unwrap_or_else(|_| folder.to_path_buf());
    cache_file(model, &folder.display().to_string(), "jsonl")
}

/// A file in the model's cache folder for what `key` names, valid for these weights only
/// (its name hashes the key with the weights file's size and time). None for a model
/// without a weights file.
pub fn cache_file(model: &SpaeModel, key: &str, extension: &str) -> Option<PathBuf> {
    let crate::model::WeightsSource::File(weights) = model.source() else { return None };
    let (size, modified) = stamp(weights).unwrap_or((0, 0));
    let digest = Sha256::digest(format!("{key}\n{size}\n{modified}").as_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Some(weights.parent()?.join(CACHE_FOLDER).join(format!("{name}.{extension}")))
}

/// A cached index, if there is a readable one.
fn read_cache(path: &Path) -> Option<WordIndex> {
    WordIndex::from_json_lines(&std::fs::read_to_string(path).ok()?).ok()
}

/// Writes a file of the model's cache folder (made where missing), atomically.
pub fn write_cache_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    atomic_file::write(path, bytes)
}

/// [`index_folder`] through the cache beside the model: entries of unchanged files come
/// from the cached index, and the new index is cached again (also after a cancel, so the
/// next run goes on). Returns the index and where it is cached (none for an untrained model).
pub fn index_cached(
    model: &SpaeModel,
    device: &mut EncodeDevice,
    folder: &Path,
    cancel: &AtomicBool,
    each: impl FnMut(Indexed),
) -> Result<(WordIndex, Option<PathBuf>)> {
    let cache = cache_path(model, folder);
    let previous = cache.as_deref().and_then(read_cache);
    let index = index_folder(model, device, folder, previous.as_ref(), cancel, each)?;
    if let Some(cache) = &cache {
        write_cache_file(cache, index.to_json_lines().as_bytes())?;
    }
    Ok((index, cache))
}

/// A file's size and modification time in ms.
fn stamp(path: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    Some((meta.len(), modified))
}

/// What indexing one file gave.
pub struct Indexed<'a> {
    pub entry: &'a Entry,
    /// The prepared image, when the file was read (not for entries taken from the cache).
    pub image: Option<&'a RgbImage>,
    /// Files done so far (this one included) and in all.
    pub done: usize,
    pub total: usize,
}

/// Images encoded per batch while indexing (the GPU encoder's batch).
pub const INDEX_BATCH: usize = 16;

/// Indexes the files of `folder`, reusing `previous` entries whose file is unchanged and
/// encoding the others on `device` in batches of [`INDEX_BATCH`]; `each` sees every file,
/// in the folder's order, as it is done. Stops early, with the entries so far, when
/// `cancel` is set (images read but not yet encoded are left for the next run). Files that
/// cannot be read or encoded are entries with a reason.
pub fn index_folder(
    model: &SpaeModel,
    device: &mut EncodeDevice,
    folder: &Path,
    previous: Option<&WordIndex>,
    cancel: &AtomicBool,
    mut each: impl FnMut(Indexed),
) -> Result<WordIndex> {
    let files = list_files(folder)?;
    let total = files.len();
    let mut index = WordIndex::default();
    let mut pending: Vec<Pending> = Vec::new();
    for file in files {
        if cancel.load(Ordering::Relaxed) {
            pending.retain(|p| p.image.is_none());
            break;
        }
        let path = folder.join(&file);
        let (size, modified_ms) = stamp(&path).unwrap_or((0, 0));
        let cached = previous.and_then(|p| {
            p.entries.iter().find(|e| e.file == file && e.size == size && e.modified_ms == modified_ms && size > 0)
        });
        pending.push(match cached {
            Some(entry) => Pending { entry: entry.clone(), image: None },
            None => match image_io::load_prepared(&path, model.config().resolution as u32) {
                Ok(image) => {
                    Pending { entry: Entry { file, words: None, skipped: None, size, modified_ms }, image: Some(image) }
                }
                Err(e) => Pending {
                    entry: Entry { file, words: None, skipped: Some(format!("{e:#}")), size, modified_ms },
                    image: None,
                },
            },
        });
        // A batch is full, or nothing awaits encoding (cached and unreadable files pass at once).
        let waiting = pending.iter().filter(|p| p.image.is_some()).count();
        if waiting == 0 || waiting == INDEX_BATCH {
            flush(model, device, &mut pending, &mut index, total, &mut each)?;
        }
    }
    flush(model, device, &mut pending, &mut index, total, &mut each)?;
    Ok(index)
}

/// A file read but not yet in the index: its entry, and its image while it awaits encoding.
struct Pending {
    entry: Entry,
    image: Option<RgbImage>,
}

/// Encodes the pending images as one batch and moves every pending file into the index;
/// where the batch cannot be encoded, its files are entries with the reason.
fn flush(
    model: &SpaeModel,
    device: &mut EncodeDevice,
    pending: &mut Vec<Pending>,
    index: &mut WordIndex,
    total: usize,
    each: &mut impl FnMut(Indexed),
) -> Result<()> {
    let images: Vec<RgbImage> = pending.iter().filter_map(|p| p.image.clone()).collect();
    let encoded = if images.is_empty() { Ok(Vec::new()) } else { device.encode(model, &images).map(|b| b.pyramids) };
    let (mut pyramids, failure) = match encoded {
        Ok(pyramids) => (pyramids.into_iter(), None),
        Err(e) => (Vec::new().into_iter(), Some(format!("{e:#}"))),
    };
    let vocabulary = model.codebook().vocabulary();
    for Pending { mut entry, image } in pending.drain(..) {
        if image.is_some() {
            match (&failure, pyramids.next()) {
                (None, Some(pyramid)) => {
                    entry.words = Some(
                        (1..=pyramid.shape().layers())
                            .map(|l| pyramid.layer(l).iter().map(|&w| vocabulary.word(w).to_string()).collect())
                            .collect(),
                    )
                }
                _ => entry.skipped = Some(failure.clone().unwrap_or_else(|| "not encoded".into())),
            }
        }
        let image = image.filter(|_| entry.words.is_some());
        index.entries.push(entry);
        let done = index.entries.len();
        each(Indexed { entry: index.entries.last().expect("just pushed"), image: image.as_ref(), done, total });
    }
    Ok(())
}

/// Writes the hits of a search as plain lines: the file, the cell count, and each cell as
/// `layer L (row R, column C)`.
pub fn write_hits(out: &mut impl Write, hits: &[Hit]) -> std::io::Result<()> {
    for hit in hits {
        let cells: Vec<String> =
            hit.cells.iter().map(|&(l, r, c)| format!("layer {l} (row {}, column {})", r + 1, c + 1)).collect();
        writeln!(out, "{}\t{} cell(s)\t{}", hit.file, hit.cells.len(), cells.join(", "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(file: &str, words: &[&[&str]]) -> Entry {
        let words = words.iter().map(|layer| layer.iter().map(|w| w.to_string()).collect()).collect();
        Entry { file: file.into(), words: Some(words), skipped: None, size: 1, modified_ms: 1 }
    }

    #[test]
    fn search_finds_every_cell_and_ranks_by_count() {
        let index = WordIndex {
            entries: vec![
                entry("a.png", &[&["cat"], &["dog", "cat", "sun", "Cat"]]),
                entry("b.png", &[&["dog"], &["cat", "x", "y", "z"]]),
                Entry {
                    file: "c.txt".into(),
                    words: None,
                    skipped: Some("not an image".into()),
                    size: 3,
                    modified_ms: 0,
                },
                entry("d.png", &[&["sun"], &["x", "y", "z", "w"]]),
            ],
        };
        let hits = index.search("CAT");
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0], Hit { file: "a.png".into(), cells: vec![(1, 0, 0), (2, 0, 1), (2, 1, 1)] });
        assert_eq!(hits[1], Hit { file: "b.png".into(), cells: vec![(2, 0, 0)] });
        assert!(index.search("moon").is_empty());
        assert_eq!(index.skipped().count(), 1);
        let again = WordIndex::from_json_lines(&index.to_json_lines()).unwrap();
        assert_eq!(again, index, "JSON lines keep everything");
        let mut out = Vec::new();
        write_hits(&mut out, &hits[1..]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "b.png\t1 cell(s)\tlayer 2 (row 1, column 1)\n");
    }
}
