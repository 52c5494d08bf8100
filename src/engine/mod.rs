//! The forward pass: Conv2d (zero padding k/2, stride 1, cross-correlation) followed by PixelShuffle(r), on 8/16-bit
//! RGB(A) or grayscale images, with PyTorch's value conversion (`v/255` in, `round(clamp(y,0,1)*255)` out).
//!
//! The public items of this module are the contract the CLI, the service and the tests build on.
//!
//! # How the core works
//! - `band`: the driver. Input rows are cut into bands sized so that a band's output stays in L2; each band keeps
//!   a ring of k zero-padded f32 input rows (3 planes), runs the convolution for each input row into a small
//!   quantised planar staging row per output row, and interleaves that into the band's output rows. Groups of
//!   bands run in parallel on the current rayon pool and are handed to the sink in order. There is no full-size
//!   f32 image; working buffers are cached per calling thread (at most 32 MB).
//! - General path, "output-lane" layout: one SIMD lane per *output* pixel of an output row `y*r + i`, each input
//!   value repeated r times (AVX-512 spreads 8 loaded values over 16 lanes with one permute; the other paths use
//!   r-times expanded rows), and the weights become per-lane vectors whose lane `l` holds the weight of sub-pixel
//!   `j = l % r`. A vector covers `L = 16 - 16 % r` output pixels (a multiple of r; 8 - 8 % r on AVX2), so the
//!   lane pattern is the same for every vector and the pixel shuffle costs nothing. AVX-512 computes all r row
//!   phases of an input row at once (3*r accumulators per input vector).
//! - ICNR fast path (tied kernels): only the 3 distinct channels, one lane per *input* pixel, then each value is
//!   replicated into its r x r block. Both paths compute every output value as `bias`, then the taps in the order
//!   (input channel, dy, dx), with the same multiply-add (FMA on SIMD paths, mul + add on the portable path), so
//!   the fast path is bit-identical to the general path on every CPU path. With AVX-512 VBMI and 8-bit output the
//!   fast path is one fused pass: the conv vectors are quantised, packed to bytes, permuted into whole 64-byte
//!   output lines and stored into the r identical rows, with no staging. `Options::allow_vbmi = false` (the path
//!   name `avx512-novbmi`) runs the AVX-512 kernels without VBMI, so both variants can be tested on one machine.
//! - [`portable`], `avx512`, `avx2`, `neon`: the kernels, picked once by [`CpuPath`] (one `match` in
//!   `band::Kernels::for_path`; AVX-512 additionally uses VBMI byte permutes for the 8-bit interleave when the
//!   CPU has them). [`mod@reference`] is the slow scalar transcription of the maths, for tests.
//! - Values: in `v / 255` (or `/ 65535`) exactly as PyTorch; out `round_ties_even(clamp(y, 0, 1) * 255)`.

use std::sync::Arc;

use crate::kernel::{Kernel, IN_CHANNELS};
use crate::model::Model;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod band;
#[cfg(target_arch = "aarch64")]
mod neon;
mod net;
pub mod portable;
pub mod reference;
mod simd;

pub use net::tanh_slice;

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

/// For unit tests: writes `line` past the test harness's output capture, so that it shows in `cargo test`'s
/// output (a test that cannot run its path says so there).
#[cfg(test)]
pub(crate) fn test_report(line: &str) {
    use std::io::Write as _;
    // One write, so that the harness's own output cannot land inside the line.
    let _ = std::io::stderr().lock().write_all(format!("\n{line}\n").as_bytes());
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
    /// Every path, best first.
    pub const ALL: [CpuPath; 4] = [CpuPath::Avx512, CpuPath::Avx2Fma, CpuPath::Neon, CpuPath::Portable];

    /// The best path this CPU supports (run-time detection).
    pub fn detect() -> CpuPath {
        CpuPath::ALL.into_iter().find(|p| p.is_supported()).unwrap_or(CpuPath::Portable)
    }
    /// Whether this CPU can run `self`.
    pub fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            CpuPath::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
            }
            #[cfg(target_arch = "x86_64")]
            CpuPath::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "aarch64")]
            CpuPath::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            CpuPath::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
    /// Every path this CPU can run, best first; always ends with `Portable`.
    pub fn supported() -> Vec<CpuPath> {
        CpuPath::ALL.into_iter().filter(|p| p.is_supported()).collect()
    }
    /// The path's name, as `--cpu` and `ICNR_UPSCALE_CPU` take it: `avx512`, `avx2`, `neon`, `portable`.
    pub fn name(self) -> &'static str {
        match self {
            CpuPath::Avx512 => "avx512",
            CpuPath::Avx2Fma => "avx2",
            CpuPath::Neon => "neon",
            CpuPath::Portable => "portable",
        }
    }
}

/// The name of the AVX-512 kernels without VBMI: `Options { path: CpuPath::Avx512, allow_vbmi: false, .. }`.
pub const AVX512_NO_VBMI: &str = "avx512-novbmi";

/// The names of the kernel sets a run can be forced to, best first: every [`CpuPath::name`], and
/// [`AVX512_NO_VBMI`] after `avx512`. Parsed by [`Options::forced`].
pub const PATH_NAMES: [&str; 5] = ["avx512", AVX512_NO_VBMI, "avx2", "neon", "portable"];

/// Whether the CPU has AVX-512 VBMI (byte permutes), which the AVX-512 path uses when allowed.
fn has_vbmi() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        CpuPath::Avx512.is_supported() && is_x86_feature_detected!("avx512vbmi")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// How to run the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Must be supported (`CpuPath::is_supported`): `Upscaler::new` and `Upscaler::from_kernel` refuse it otherwise.
    pub path: CpuPath,
    /// Use the ICNR fast path when the kernel is tied. `false` forces the general path (for tests).
    pub allow_fast_path: bool,
    /// On the AVX-512 path, use the AVX-512 VBMI byte-permute kernels (the RGB8 load, the 8-bit interleave and
    /// the fused 8-bit ICNR fast path) when the CPU has avx512vbmi. `false` runs the AVX-512 kernels without VBMI
    /// ([`AVX512_NO_VBMI`]), so that both AVX-512 variants run on a VBMI machine. Other paths ignore it.
    pub allow_vbmi: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { path: CpuPath::detect(), allow_fast_path: true, allow_vbmi: true }
    }
}

impl Options {
    /// The options that force the kernel set `name` (one of [`PATH_NAMES`]), with the fast path allowed; `None`
    /// for any other name. Whether this CPU can run them is [`Options::is_supported`].
    pub fn forced(name: &str) -> Option<Options> {
        let (path, allow_vbmi) = if name == AVX512_NO_VBMI {
            (CpuPath::Avx512, false)
        } else {
            (CpuPath::ALL.into_iter().find(|p| p.name() == name)?, true)
        };
        Some(Options { path, allow_fast_path: true, allow_vbmi })
    }
    /// Whether this CPU can run these options' path.
    pub fn is_supported(&self) -> bool {
        self.path.is_supported()
    }
    /// Whether the run uses the VBMI kernels: the AVX-512 path, VBMI allowed, and a CPU with avx512vbmi.
    pub fn uses_vbmi(&self) -> bool {
        self.path == CpuPath::Avx512 && self.allow_vbmi && has_vbmi()
    }
    /// The name of the kernels these options run on this CPU (one of [`PATH_NAMES`]): the path's name, except
    /// [`AVX512_NO_VBMI`] for the AVX-512 path without VBMI (not allowed, or a CPU without avx512vbmi).
    pub fn path_name(&self) -> &'static str {
        if self.path == CpuPath::Avx512 && !self.uses_vbmi() {
            AVX512_NO_VBMI
        } else {
            self.path.name()
        }
    }
    /// One option set for every kernel set this CPU runs, best first, with the fast path allowed: every supported
    /// path, and on a CPU with AVX-512 VBMI the AVX-512 path both with and without it. The `path_name`s are
    /// distinct; tests run each of them.
    pub fn every_supported() -> Vec<Options> {
        let mut v: Vec<Options> = Vec::new();
        for name in PATH_NAMES {
            let o = Options::forced(name).expect("a PATH_NAMES entry");
            if o.is_supported() && !v.iter().any(|p| p.path_name() == o.path_name()) {
                v.push(o);
            }
        }
        v
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
    let rr = (kernel.scale() * kernel.scale()) as usize;
    let per_out = IN_CHANNELS * (kernel.kernel_size() * kernel.kernel_size()) as usize;
    (0..kernel.bias_flat().len()).all(|o| {
        let g = o - o % rr;
        kernel.bias_flat()[o].to_bits() == kernel.bias_flat()[g].to_bits()
            && kernel.weight_flat()[o * per_out..(o + 1) * per_out]
                .iter()
                .zip(&kernel.weight_flat()[g * per_out..(g + 1) * per_out])
                .all(|(a, b)| a.to_bits() == b.to_bits())
    })
}

/// Why the engine cannot run a model or an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// [`Upscaler::new`] or [`Upscaler::from_kernel`] was asked for a CPU path this CPU cannot run.
    #[error("CPU path {} is not supported by this CPU (supported: {})", .0.name(), supported_path_names())]
    UnsupportedPath(CpuPath),
    /// The output image would be wider or taller than `u32::MAX` pixels.
    #[error("output dimensions overflow: {width}x{height} upscaled {scale}x exceeds u32")]
    OutputTooLarge { width: u32, height: u32, scale: u32 },
}

/// The [`PATH_NAMES`] this CPU can be forced to, best first, comma-separated.
pub fn supported_path_names() -> String {
    PATH_NAMES
        .into_iter()
        .filter(|n| Options::forced(n).is_some_and(|o| o.is_supported()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A model or kernel prepared for one CPU path. Cheap to share across threads.
#[derive(Debug, Clone)]
pub struct Upscaler {
    /// The options it runs with (a supported path).
    opts: Options,
    scale: u32,
    core: Core,
}

#[derive(Debug, Clone)]
enum Core {
    /// One conv 3 -> 3r^2 and a pixel shuffle: the single-layer engine ([`band`]).
    Single(Arc<Single>),
    /// Any other model: the multi-layer engine ([`net`]).
    Net(Arc<net::Net>),
}

/// The single-layer engine's kernel and its prepared weights.
#[derive(Debug)]
pub(crate) struct Single {
    pub(crate) kernel: Kernel,
    /// Whether the ICNR fast path runs.
    pub(crate) tied: bool,
    pub(crate) prep: Prepared,
}

/// Weights rearranged for the kernels (see the module doc).
#[derive(Debug)]
pub(crate) struct Prepared {
    /// General path: `[i][tap][c][16]`, lane `l` = `weight[c*r*r + i*r + l % r][tap]`; tap = (ic*k + dy)*k + dx.
    wv: Vec<f32>,
    /// General path: `[i][c][16]`, lane `l` = `bias[c*r*r + i*r + l % r]`.
    bv: Vec<f32>,
    /// Fast path: `[tap][c]` = `weight[c*r*r][tap]`.
    w0: Vec<f32>,
    /// Fast path: `bias[c*r*r]`.
    b0: [f32; 3],
}

impl Prepared {
    fn new(kernel: &Kernel) -> Prepared {
        let r = kernel.scale() as usize;
        let rr = r * r;
        let k = kernel.kernel_size() as usize;
        let taps = IN_CHANNELS * k * k;
        let lanes = portable::LANES;
        let mut wv = vec![0f32; r * taps * 3 * lanes];
        let mut bv = vec![0f32; r * 3 * lanes];
        for i in 0..r {
            for c in 0..3 {
                for l in 0..lanes {
                    let o = c * rr + i * r + l % r;
                    bv[(i * 3 + c) * lanes + l] = kernel.bias_flat()[o];
                    for t in 0..taps {
                        wv[((i * taps + t) * 3 + c) * lanes + l] = kernel.weight_flat()[o * taps + t];
                    }
                }
            }
        }
        let mut w0 = vec![0f32; taps * 3];
        for t in 0..taps {
            for c in 0..3 {
                w0[t * 3 + c] = kernel.weight_flat()[c * rr * taps + t];
            }
        }
        let b0 = [kernel.bias_flat()[0], kernel.bias_flat()[rr], kernel.bias_flat()[2 * rr]];
        Prepared { wv, bv, w0, b0 }
    }
}

impl Upscaler {
    /// Prepares `model` for `opts.path`; an error when the CPU lacks that path (never a silent downgrade). A model
    /// that is exactly one conv (3 -> 3r^2) and a pixel shuffle without residual ([`Model::as_kernel`]) runs on the
    /// single-layer engine, bit-identical to [`Upscaler::from_kernel`] (with its ICNR fast path when allowed, the
    /// tie detected from the weights); any other model on the multi-layer engine.
    ///
    /// ```
    /// use icnr_upscale::{CpuPath, Image, Kernel, KernelParams, Model, Options, Samples, Upscaler};
    ///
    /// let model = Model::from_kernel(&Kernel::generate(&KernelParams::default())?);
    /// let up = Upscaler::new(&model, Options::default())?;
    /// let img = Image { width: 3, height: 2, channels: 3, samples: Samples::U8(vec![100; 18]) };
    /// let out = up.upscale(&img)?;
    /// assert_eq!((out.width, out.height, out.channels), (6, 4, 3));
    /// // An ICNR kernel is tied: the fast path runs.
    /// assert!(up.uses_fast_path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(model: &Model, opts: Options) -> Result<Upscaler, EngineError> {
        if !opts.path.is_supported() {
            return Err(EngineError::UnsupportedPath(opts.path));
        }
        if let Some(kernel) = model.as_kernel() {
            return Upscaler::from_kernel(&kernel, opts);
        }
        let net = net::Net::new(model, opts.path);
        // The multi-layer kernels do not use VBMI: `allow_vbmi` does not change them.
        Ok(Upscaler { opts, scale: model.scale(), core: Core::Net(Arc::new(net)) })
    }

    /// The single-layer engine for `kernel` (what [`Upscaler::new`] picks for a one-conv model); an error when the
    /// CPU lacks `opts.path`.
    pub fn from_kernel(kernel: &Kernel, opts: Options) -> Result<Upscaler, EngineError> {
        if !opts.path.is_supported() {
            return Err(EngineError::UnsupportedPath(opts.path));
        }
        let single = Single {
            kernel: kernel.clone(),
            tied: opts.allow_fast_path && is_tied(kernel),
            prep: Prepared::new(kernel),
        };
        Ok(Upscaler { opts, scale: kernel.scale(), core: Core::Single(Arc::new(single)) })
    }

    pub fn path(&self) -> CpuPath {
        self.opts.path
    }
    /// The name of the kernels that run (see [`Options::path_name`]): `avx512`, `avx512-novbmi`, `avx2`, `neon` or
    /// `portable`.
    pub fn path_name(&self) -> &'static str {
        self.opts.path_name()
    }
    /// Whether the ICNR fast path runs (single-layer engine with a tied kernel).
    pub fn uses_fast_path(&self) -> bool {
        match &self.core {
            Core::Single(s) => s.tied,
            Core::Net(_) => false,
        }
    }
    pub fn scale(&self) -> u32 {
        self.scale
    }
    /// Floating-point operations of the network for an input of this size (2 per multiply-add, every conv; for a
    /// single kernel, the general conv).
    pub fn flops(&self, width: u32, height: u32) -> f64 {
        let macs = match &self.core {
            Core::Single(s) => {
                let k = s.kernel.kernel_size() as f64;
                k * k * IN_CHANNELS as f64 * s.kernel.bias_flat().len() as f64
            }
            Core::Net(n) => n.macs_per_pixel as f64,
        };
        2.0 * macs * width as f64 * height as f64
    }

    /// Upscale into a new image (channels 3 or 4, same bit depth); an error when the output dimensions overflow
    /// u32.
    pub fn upscale(&self, img: &Image) -> Result<Image, EngineError> {
        let Some((ow, oh)) = output_dims(img.width, img.height, self.scale) else {
            return Err(EngineError::OutputTooLarge { width: img.width, height: img.height, scale: self.scale });
        };
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
        Ok(Image { width: ow, height: oh, channels: oc, samples })
    }

    /// Upscale, handing output rows to `sink` in order. Stops at the first error from `sink` and returns it.
    /// Memory is bounded by the input plus a working set of a few bands, whatever the output size.
    ///
    /// Bands of input rows are computed in parallel on the current rayon pool (the caller picks the thread count
    /// with `ThreadPool::install`), a group at a time, then handed to `sink` in order on the calling thread.
    ///
    /// Panics if the output dimensions overflow u32 (see [`output_dims`]); callers bound the input size first.
    pub fn upscale_streaming<E>(&self, img: &Image, sink: impl FnMut(OutRows<'_>) -> Result<(), E>) -> Result<(), E> {
        assert!(
            output_dims(img.width, img.height, self.scale).is_some(),
            "output dimensions overflow u32: callers bound the input size first"
        );
        match &self.core {
            Core::Single(s) => band::Plan::new(s, self.opts.path, self.opts.uses_vbmi(), img).run(sink),
            Core::Net(n) => net::NetPlan::new(n, self.opts.path, img).run(sink),
        }
    }
}
