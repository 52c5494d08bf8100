//! Checkerboard score (REFERENCE.md): how visible the r-periodic pattern of an upscaled image is.
//!
//! INTERFACE STUB: `ScoreAccumulator` consumes output rows as the engine streams them.

use crate::engine::{Image, OutRows};

/// Accumulates exact integer sums per (channel, phase) and per channel, so a uniform-block image scores exactly 0.
#[derive(Debug, Clone)]
pub struct ScoreAccumulator {
    _scale: u32,
}

impl ScoreAccumulator {
    pub fn new(scale: u32) -> Self {
        ScoreAccumulator { _scale: scale }
    }
    /// Feed rows in any order; alpha (4th channel) is ignored.
    pub fn push(&mut self, _rows: &OutRows<'_>) {
        todo!()
    }
    /// The score; 0 for an empty image.
    pub fn finish(&self) -> f64 {
        todo!()
    }
}

/// Score of a whole image (3 or 4 channels) upscaled by `scale`.
pub fn checkerboard_score(_img: &Image, _scale: u32) -> f64 {
    todo!()
}
