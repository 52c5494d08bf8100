//! Classical upscalers listed beside the models, for comparison: `nearest`, `bicubic` (Catmull-Rom, a = -0.5, as
//! Pillow's BICUBIC) and `lanczos3`, computed by the `image` crate's separable resampler.
//!
//! The colour channels are resampled; alpha, as for the models, is upscaled nearest-neighbour. Gray becomes RGB and
//! the bit depth is kept, as for the models. The resampler holds the whole output (and a float intermediate of
//! `out_width x in_height` pixels) in memory, so callers bound the output with [`MAX_BASELINE_OUTPUT_PIXELS`].

use image::imageops::FilterType;
use image::{ImageBuffer, Rgb};

use crate::engine::{Image, OutRows, RowSamples, Samples};
use crate::names::named_enum;

/// Largest output a baseline computes (the resampler is not banded): 4096 x 4096.
pub const MAX_BASELINE_OUTPUT_PIXELS: u64 = 1 << 24;
/// Output rows handed to the sink at a time.
const ROWS_PER_CALL: usize = 64;

named_enum! {
    /// A classical upscaler; its name is its model name.
    pub enum Baseline ("baseline") {
        /// Nearest-neighbour.
        Nearest = "nearest",
        /// Bicubic (Catmull-Rom).
        Bicubic = "bicubic",
        /// Lanczos, 3 lobes.
        Lanczos3 = "lanczos3",
    }
}

impl Baseline {
    /// One sentence for model listings.
    pub fn description(self) -> &'static str {
        match self {
            Baseline::Nearest => "Nearest-neighbour: every input pixel becomes an r x r block.",
            Baseline::Bicubic => "Bicubic (Catmull-Rom, a = -0.5, as Pillow's BICUBIC), the image crate's resampler.",
            Baseline::Lanczos3 => "Lanczos with a 3-lobe window, the image crate's resampler.",
        }
    }

    fn filter(self) -> FilterType {
        match self {
            Baseline::Nearest => FilterType::Nearest,
            Baseline::Bicubic => FilterType::CatmullRom,
            Baseline::Lanczos3 => FilterType::Lanczos3,
        }
    }

    /// Upscales `img` by `scale` and hands the output rows (3 or 4 channels, the input's bit depth) to `sink` in
    /// order. The caller has checked the output size.
    pub fn upscale_rows<E>(
        self,
        img: &Image,
        scale: u32,
        mut sink: impl FnMut(OutRows<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let (w, h) = (img.width, img.height);
        let ow = w * scale;
        let oc = img.out_channels() as usize;
        fn rows_at(i: usize, n: usize, ow: u32, oc: usize, samples: RowSamples<'_>) -> OutRows<'_> {
            OutRows {
                first_row: (i * ROWS_PER_CALL) as u32,
                rows: (n / (ow as usize * oc)) as u32,
                width: ow,
                channels: oc as u8,
                samples,
            }
        }
        let chunk = ow as usize * oc * ROWS_PER_CALL;
        match &img.samples {
            Samples::U8(s) => {
                let out = self.resample::<u8>(s, img.channels as usize, w, h, scale);
                for (i, rows) in out.chunks(chunk).enumerate() {
                    sink(rows_at(i, rows.len(), ow, oc, RowSamples::U8(rows)))?;
                }
            }
            Samples::U16(s) => {
                let out = self.resample::<u16>(s, img.channels as usize, w, h, scale);
                for (i, rows) in out.chunks(chunk).enumerate() {
                    sink(rows_at(i, rows.len(), ow, oc, RowSamples::U16(rows)))?;
                }
            }
        }
        Ok(())
    }

    /// The whole output, interleaved RGB or RGBA.
    fn resample<T>(self, s: &[T], channels: usize, w: u32, h: u32, scale: u32) -> Vec<T>
    where
        T: image::Primitive + 'static,
        Rgb<T>: image::Pixel<Subpixel = T>,
    {
        let px = w as usize * h as usize;
        let mut rgb: Vec<T> = Vec::with_capacity(px * 3);
        for p in s.chunks_exact(channels) {
            match channels {
                1 | 2 => rgb.extend_from_slice(&[p[0], p[0], p[0]]),
                _ => rgb.extend_from_slice(&p[..3]),
            }
        }
        let buf: ImageBuffer<Rgb<T>, Vec<T>> = ImageBuffer::from_raw(w, h, rgb).expect("3 samples per pixel");
        let (ow, oh) = (w * scale, h * scale);
        let up = image::imageops::resize(&buf, ow, oh, self.filter()).into_raw();
        if channels % 2 == 1 {
            return up;
        }
        // Alpha: nearest-neighbour, as for the models.
        let a = channels - 1;
        let mut out = Vec::with_capacity(ow as usize * oh as usize * 4);
        for oy in 0..oh as usize {
            let iy = oy / scale as usize;
            for ox in 0..ow as usize {
                let ix = ox / scale as usize;
                let o = (oy * ow as usize + ox) * 3;
                out.extend_from_slice(&up[o..o + 3]);
                out.push(s[(iy * w as usize + ix) * channels + a]);
            }
        }
        out
    }
}
