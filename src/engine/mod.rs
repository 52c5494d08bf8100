//! The forward pass: Conv2d (zero padding k/2, stride 1, cross-correlation) followed by PixelShuffle(r), on 8/16-bit
//! RGB(A) or grayscale images, with PyTorch's value conversion (`v/255` in, `round(clamp(y,0,1)*255)` out).
//!
//! INTERFACE: the public items of this module are the contract the CLI, the service and the tests build on.
//! The body below is a plain scalar reference implementation, to be replaced by the fused SIMD core.

use crate::kernel::{Kernel, IN_CHANNELS};

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

/// The CPU code path that runs the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPath {
    Avx512,
    Avx2Fma,
    Neon,
    Portable,
}

impl CpuPath {
    /// The best path this CPU supports (run-time detection).
    pub fn detect() -> CpuPath {
        CpuPath::Portable
    }
    /// Whether this CPU can run `self`.
    pub fn is_supported(self) -> bool {
        self == CpuPath::Portable
    }
    /// Every path this CPU can run, best first; always ends with `Portable`.
    pub fn supported() -> Vec<CpuPath> {
        [CpuPath::Avx512, CpuPath::Avx2Fma, CpuPath::Neon, CpuPath::Portable]
            .into_iter()
            .filter(|p| p.is_supported())
            .collect()
    }
    /// Stable lower-case name: `avx512`, `avx2_fma`, `neon`, `portable`.
    pub fn name(self) -> &'static str {
        match self {
            CpuPath::Avx512 => "avx512",
            CpuPath::Avx2Fma => "avx2_fma",
            CpuPath::Neon => "neon",
            CpuPath::Portable => "portable",
        }
    }
}

/// How to run the core.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Must be supported (`CpuPath::is_supported`); `Upscaler::new` falls back to `Portable` otherwise.
    pub path: CpuPath,
    /// Use the ICNR fast path when the kernel is tied. `false` forces the general path (for tests).
    pub allow_fast_path: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { path: CpuPath::detect(), allow_fast_path: true }
    }
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

/// Whether weight and bias are tied in groups of r*r consecutive output channels (ICNR structure).
pub fn is_tied(kernel: &Kernel) -> bool {
    let rr = (kernel.scale * kernel.scale) as usize;
    let per_out = IN_CHANNELS * (kernel.kernel_size * kernel.kernel_size) as usize;
    (0..kernel.bias.len()).all(|o| {
        let g = o - o % rr;
        kernel.bias[o].to_bits() == kernel.bias[g].to_bits()
            && kernel.weight[o * per_out..(o + 1) * per_out]
                .iter()
                .zip(&kernel.weight[g * per_out..(g + 1) * per_out])
                .all(|(a, b)| a.to_bits() == b.to_bits())
    })
}

/// A kernel prepared for one CPU path. Cheap to share across threads.
#[derive(Debug, Clone)]
pub struct Upscaler {
    kernel: Kernel,
    path: CpuPath,
    tied: bool,
}

impl Upscaler {
    pub fn new(kernel: &Kernel, opts: Options) -> Upscaler {
        let path = if opts.path.is_supported() { opts.path } else { CpuPath::Portable };
        Upscaler { kernel: kernel.clone(), path, tied: opts.allow_fast_path && is_tied(kernel) }
    }
    pub fn path(&self) -> CpuPath {
        self.path
    }
    /// Whether the ICNR fast path runs.
    pub fn uses_fast_path(&self) -> bool {
        self.tied
    }
    pub fn scale(&self) -> u32 {
        self.kernel.scale
    }
    /// Floating-point operations of the general conv for an input of this size (2 per multiply-add).
    pub fn flops(&self, width: u32, height: u32) -> f64 {
        let k = self.kernel.kernel_size as f64;
        2.0 * k * k * IN_CHANNELS as f64 * self.kernel.bias.len() as f64 * width as f64 * height as f64
    }

    /// Upscale into a new image (channels 3 or 4, same bit depth).
    pub fn upscale(&self, img: &Image) -> Image {
        let (ow, oh) = output_dims(img.width, img.height, self.kernel.scale).expect("output dims overflow");
        let oc = img.out_channels();
        let n = ow as usize * oh as usize * oc as usize;
        let mut samples = match img.samples {
            Samples::U8(_) => Samples::U8(Vec::with_capacity(n)),
            Samples::U16(_) => Samples::U16(Vec::with_capacity(n)),
        };
        let _ = self.upscale_streaming(img, |rows: OutRows<'_>| -> Result<(), ()> {
            match (&mut samples, rows.samples) {
                (Samples::U8(v), RowSamples::U8(s)) => v.extend_from_slice(s),
                (Samples::U16(v), RowSamples::U16(s)) => v.extend_from_slice(s),
                _ => unreachable!("sample type follows the input"),
            }
            Ok(())
        });
        Image { width: ow, height: oh, channels: oc, samples }
    }

    /// Upscale, handing output rows to `sink` in order. Stops at the first error from `sink` and returns it.
    /// Memory is bounded by the input plus a working set of a few bands, whatever the output size.
    pub fn upscale_streaming<E>(
        &self,
        img: &Image,
        mut sink: impl FnMut(OutRows<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        // Reference scalar implementation, one input row at a time.
        let r = self.kernel.scale as usize;
        let k = self.kernel.kernel_size as usize;
        let p = k / 2;
        let (w, h) = (img.width as usize, img.height as usize);
        let ic = img.channels as usize;
        let oc = img.out_channels() as usize;
        let ow = w * r;
        let max = if img.bit_depth() == 8 { 255.0f32 } else { 65535.0f32 };
        let get = |x: usize, y: usize, c: usize| -> f32 {
            let idx = (y * w + x) * ic + c;
            match &img.samples {
                Samples::U8(s) => s[idx] as f32 / 255.0,
                Samples::U16(s) => s[idx] as f32 / 65535.0,
            }
        };
        let color = |x: usize, y: usize, c: usize| -> f32 {
            if ic <= 2 {
                get(x, y, 0)
            } else {
                get(x, y, c)
            }
        };
        let cout = self.kernel.bias.len();
        let mut row_f = vec![0f32; ow * r * oc];
        for y in 0..h {
            for x in 0..w {
                for o in 0..cout {
                    let mut acc = self.kernel.bias[o];
                    for i in 0..IN_CHANNELS {
                        for dy in 0..k {
                            let yy = y as isize + dy as isize - p as isize;
                            if yy < 0 || yy >= h as isize {
                                continue;
                            }
                            for dx in 0..k {
                                let xx = x as isize + dx as isize - p as isize;
                                if xx < 0 || xx >= w as isize {
                                    continue;
                                }
                                acc += self.kernel.weight[((o * IN_CHANNELS + i) * k + dy) * k + dx]
                                    * color(xx as usize, yy as usize, i);
                            }
                        }
                    }
                    let c = o / (r * r);
                    let sub = o % (r * r);
                    let (si, sj) = (sub / r, sub % r);
                    row_f[(si * ow + x * r + sj) * oc + c] = (acc.clamp(0.0, 1.0) * max).round_ties_even();
                }
                if oc == 4 {
                    let a = get(x, y, ic - 1) * max;
                    for si in 0..r {
                        for sj in 0..r {
                            row_f[(si * ow + x * r + sj) * oc + 3] = a.round_ties_even();
                        }
                    }
                }
            }
            let first_row = (y * r) as u32;
            match img.samples {
                Samples::U8(_) => {
                    let v: Vec<u8> = row_f.iter().map(|&f| f as u8).collect();
                    sink(OutRows {
                        first_row,
                        rows: r as u32,
                        width: ow as u32,
                        channels: oc as u8,
                        samples: RowSamples::U8(&v),
                    })?;
                }
                Samples::U16(_) => {
                    let v: Vec<u16> = row_f.iter().map(|&f| f as u16).collect();
                    sink(OutRows {
                        first_row,
                        rows: r as u32,
                        width: ow as u32,
                        channels: oc as u8,
                        samples: RowSamples::U16(&v),
                    })?;
                }
            }
        }
        Ok(())
    }
}
