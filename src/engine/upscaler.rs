//! [`Upscaler`]: a model prepared for one CPU path, the engine's one entry point. A one-conv model runs on the
//! single-layer driver ([`super::band`]), any other model on the multi-layer engine ([`super::net`]).

use std::sync::Arc;

use super::band::{self, Single};
use super::image::{output_dims, Image, OutRows, RowSamples, Samples};
use super::net;
use super::path::{supported_path_names, CpuPath, Options};
use crate::kernel::{Kernel, IN_CHANNELS};
use crate::model::Model;

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
        let single = Single::new(kernel, opts.allow_fast_path);
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
