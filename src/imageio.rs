//! Decoding with limits checked from the header before any pixel is decoded, and streaming PNG encoding.
//!
//! INTERFACE STUB: the public items below are the contract the CLI and the service build on.

use std::io::Write;

use crate::engine::{Image, Upscaler};

/// PNG compression level of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Fast,
    Balanced,
    Best,
}

/// Limits applied to a decode, checked from the header before decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_input_pixels: u64,
    pub max_output_pixels: u64,
    /// The scale the image will be upscaled by (to check the output size).
    pub scale: u32,
}

/// A decoded image, already EXIF-oriented, with its ICC profile if it had one.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub image: Image,
    pub icc_profile: Option<Vec<u8>>,
    /// `png`, `jpeg`, `webp`, `gif`, `bmp` or `tiff`.
    pub format: &'static str,
}

/// Why an image could not be read or written. Messages are written for the caller.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not a supported image, or undecodable bytes (HTTP 415).
    #[error("{0}")]
    Unsupported(String),
    /// Input or output dimensions over the limits (HTTP 422).
    #[error("{0}")]
    TooLarge(String),
    /// The caller asked to stop (`should_stop` returned true).
    #[error("cancelled")]
    Cancelled,
    /// Writing the output failed (I/O); internal, not the caller's fault.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Facts about a written PNG.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncodeStats {
    pub width: u32,
    pub height: u32,
    /// 3 or 4.
    pub channels: u8,
    /// 8 or 16.
    pub bit_depth: u8,
    /// Checkerboard score of the output.
    pub score: f64,
}

/// Decode `bytes` (PNG, JPEG, WebP, GIF first frame, BMP, TIFF), rejecting over-limit dimensions from the header.
pub fn decode(_bytes: &[u8], _limits: &DecodeLimits) -> Result<Decoded, ImageError> {
    todo!()
}

/// Upscale `img` and stream the result as PNG into `out`, row band by row band (never the whole output in memory
/// at once), embedding `icc` if given. `should_stop` is polled between bands; when it returns true the work stops
/// with `ImageError::Cancelled`.
pub fn upscale_to_png<W: Write>(
    _out: W,
    _up: &Upscaler,
    _img: &Image,
    _icc: Option<&[u8]>,
    _compression: Compression,
    _should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<EncodeStats, ImageError> {
    todo!()
}
