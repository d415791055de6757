//! The image being studied: its pixels, its latent, the pyramid the encoder gave, and the
//! pyramid as the user has edited it, with undo and redo across every kind of edit.

use std::path::PathBuf;

use image::RgbImage;

use crate::model::Latent;
use crate::pyramid::Pyramid;

/// Which state of which document a decode belongs to: results for any other are stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub document: u64,
    pub revision: u64,
}

pub struct Document {
    id: u64,
    pub path: PathBuf,
    /// The prepared image (model resolution).
    pub original: RgbImage,
    /// The encoder's output, kept for quantization errors and SAQ targets of edited words.
    pub latent: Latent,
    /// The teacher's relevance of every vocabulary word to the image, or why there is none.
    pub relevance: Result<Vec<f32>, String>,
    /// A generated frame opened for editing: its "original" is its own decode from all
    /// layers, not an image anyone made.
    pub generated: bool,
    encoded: Pyramid,
    pyramid: Pyramid,
    /// Whole pyramids: one is a few kilobytes, so snapshots are simpler than edit records.
    undo: Vec<Pyramid>,
    redo: Vec<Pyramid>,
    revision: u64,
}

impl Document {
    /// `id` must differ between documents so that their decodes cannot be mixed up.
    pub fn new(id: u64, path: PathBuf, original: RgbImage, latent: Latent, encoded: Pyramid) -> Self {
        let relevance = Err("not computed".to_string());
        Self {
            id,
            path,
            original,
            latent,
            relevance,
            generated: false,
            pyramid: encoded.clone(),
            encoded,
            undo: Vec::new(),
            redo: Vec::new(),
            revision: 0,
        }
    }

    pub fn version(&self) -> Version {
        Version { document: self.id, revision: self.revision }
    }

    /// The pyramid as edited.
    pub fn pyramid(&self) -> &Pyramid {
        &self.pyramid
    }

    /// The pyramid as the encoder produced it.
    pub fn encoded(&self) -> &Pyramid {
        &self.encoded
    }

    pub fn is_edited(&self) -> bool {
        self.pyramid != self.encoded
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Sets one word; false when it was already that word.
    pub fn set_word(&mut self, layer: usize, row: usize, col: usize, word: u32) -> bool {
        let mut next = self.pyramid.clone();
        next.set_word(layer, row, col, word);
        self.commit(next)
    }

    /// Replaces every `from` in a layer by `to`; returns how many cells changed.
    pub fn replace_in_layer(&mut self, layer: usize, from: u32, to: u32) -> usize {
        if from == to {
            return 0;
        }
        let mut next = self.pyramid.clone();
        let s = next.shape().grid_size(layer);
        let mut count = 0;
        for row in 0..s {
            for col in 0..s {
                if next.word(layer, row, col) == from {
                    next.set_word(layer, row, col, to);
                    count += 1;
                }
            }
        }
        self.commit(next);
        count
    }

    /// Replaces the whole pyramid (the text editor); false when nothing changed.
    pub fn replace(&mut self, pyramid: Pyramid) -> bool {
        self.commit(pyramid)
    }

    /// Back to the encoded pyramid, itself an undoable edit.
    pub fn reset(&mut self) -> bool {
        self.commit(self.encoded.clone())
    }

    pub fn undo(&mut self) -> bool {
        let Some(previous) = self.undo.pop() else { return false };
        self.redo.push(std::mem::replace(&mut self.pyramid, previous));
        self.revision += 1;
        true
    }

    pub fn redo(&mut self) -> bool {
        let Some(next) = self.redo.pop() else { return false };
        self.undo.push(std::mem::replace(&mut self.pyramid, next));
        self.revision += 1;
        true
    }

    fn commit(&mut self, next: Pyramid) -> bool {
        if next == self.pyramid {
            return false;
        }
        self.undo.push(std::mem::replace(&mut self.pyramid, next));
        self.redo.clear();
        self.revision += 1;
        true
    }
}
