//! The studio's document history: every kind of edit is undoable, redo follows undo, and a
//! new edit clears redo.

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use spae::model::Latent;
use spae::pyramid::{Pyramid, PyramidShape};
use spae::studio::document::Document;

fn document() -> Document {
    let shape = PyramidShape::new(16, 6).unwrap();
    let layers = (1..=6).map(|l| vec![0u32; shape.tokens_in_layer(l)]).collect();
    let pyramid = Pyramid::new(shape, layers).unwrap();
    let z = Tensor::zeros((1, 4, 16, 16), DType::F32, &Device::Cpu).unwrap();
    Document::new(0, "test.png".into(), RgbImage::new(64, 64), Latent { z, named: Vec::new() }, pyramid)
}

#[test]
fn edits_undo_and_redo_in_order() {
    let mut doc = document();
    let encoded = doc.pyramid().clone();
    assert!(!doc.can_undo() && !doc.is_edited());
    assert!(doc.set_word(3, 1, 2, 7));
    let one = doc.pyramid().clone();
    assert_eq!(doc.replace_in_layer(6, 0, 9), 256);
    let two = doc.pyramid().clone();
    assert!(doc.reset());
    assert_eq!(doc.pyramid(), &encoded);

    assert!(doc.undo());
    assert_eq!(doc.pyramid(), &two);
    assert!(doc.undo());
    assert_eq!(doc.pyramid(), &one);
    assert!(doc.redo());
    assert_eq!(doc.pyramid(), &two);
    assert!(doc.undo() && doc.undo());
    assert_eq!(doc.pyramid(), &encoded);
    assert!(!doc.undo());

    assert!(doc.redo());
    assert!(doc.set_word(1, 0, 0, 5));
    assert!(!doc.can_redo(), "a new edit clears redo");
}

#[test]
fn edits_that_change_nothing_are_not_recorded() {
    let mut doc = document();
    let version = doc.version();
    assert!(!doc.set_word(2, 0, 0, 0));
    assert_eq!(doc.replace_in_layer(2, 5, 6), 0);
    assert_eq!(doc.replace_in_layer(2, 0, 0), 0);
    assert!(!doc.reset());
    assert!(!doc.can_undo());
    assert_eq!(doc.version(), version);
}

#[test]
fn every_change_gives_a_new_version() {
    let mut doc = document();
    let v0 = doc.version();
    doc.set_word(4, 0, 0, 3);
    let v1 = doc.version();
    doc.undo();
    let v2 = doc.version();
    assert!(v0 != v1 && v1 != v2 && v0 != v2, "a decode of an older state is never taken for the current one");
}
