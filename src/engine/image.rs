//! The engine's images: interleaved 8/16-bit samples in ([`Image`]), output rows out ([`OutRows`]).

/// Interleaved samples of an image.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

/// An interleaved image. `channels`: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
/// `samples.len() == width * height * channels`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub samples: Samples,
}

impl Image {
    /// Whether the image carries an alpha channel (2 or 4 channels).
    pub fn has_alpha(&self) -> bool {
        self.channels == 2 || self.channels == 4
    }
    /// 8 or 16.
    pub fn bit_depth(&self) -> u8 {
        match self.samples {
            Samples::U8(_) => 8,
            Samples::U16(_) => 16,
        }
    }
    /// Channels of the upscaled image: gray is expanded to RGB, alpha is kept.
    pub fn out_channels(&self) -> u8 {
        if self.has_alpha() {
            4
        } else {
            3
        }
    }
}

/// Output dimensions for scale r, or `None` on overflow of u32.
pub fn output_dims(width: u32, height: u32, scale: u32) -> Option<(u32, u32)> {
    Some((width.checked_mul(scale)?, height.checked_mul(scale)?))
}

/// A borrowed run of consecutive output rows, interleaved, `channels` 3 or 4.
#[derive(Debug, Clone, Copy)]
pub enum RowSamples<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
}

/// Output rows handed to a streaming sink, in order, top to bottom.
#[derive(Debug, Clone, Copy)]
pub struct OutRows<'a> {
    /// Output row index of the first row.
    pub first_row: u32,
    pub rows: u32,
    /// Output width in pixels.
    pub width: u32,
    /// 3 or 4.
    pub channels: u8,
    /// `rows * width * channels` samples.
    pub samples: RowSamples<'a>,
}
