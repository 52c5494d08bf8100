//! icnr-upscale: image upscaling with sub-pixel convolution networks (Conv2d layers followed by PixelShuffle),
//! whose last layer can be ICNR-initialised.
//!
//! The library runs a [`Model`] on an [`Image`] with an [`Upscaler`]; the [`pipeline`] adds decoding with limits,
//! model selection, scoring and PNG encoding, and is what the `icnr-upscale` binary's CLI and HTTP service run.
//!
//! # Quick start
//! ```
//! use icnr_upscale::{Image, Kernel, KernelParams, Model, Options, Upscaler};
//!
//! // An ICNR kernel for 2x: one conv (3 -> 12 channels, 3x3) and a pixel shuffle.
//! let kernel = Kernel::generate(&KernelParams { scale: 2, ..KernelParams::default() })?;
//! let model = Model::from_kernel(&kernel);
//! let up = Upscaler::new(&model, Options::default())?;
//!
//! // Any `image` crate buffer converts into an engine image and back.
//! let input = image::RgbImage::from_pixel(4, 3, image::Rgb([200, 100, 50]));
//! let output = up.upscale(&Image::from(input))?;
//! let output = image::RgbImage::try_from(output)?;
//! assert_eq!(output.dimensions(), (8, 6));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - [`model`]: [`Model`], the one thing the engine runs: conv2d, activations and a pixel shuffle, with `ndarray`
//!   weights, validated on construction; the model JSON and safetensors formats.
//! - [`kernel`]: generated single-conv kernels: the initialisers (ICNR, PyTorch default, plain), the seeded RNG,
//!   and the kernel JSON and safetensors formats.
//! - [`engine`]: the forward pass ([`Upscaler`]): fused u8/u16 -> f32 -> conv -> pixel shuffle -> clamp/round, in
//!   parallel bands, with run-time CPU dispatch (AVX-512, AVX2+FMA, NEON, portable) and the ICNR fast path.
//! - [`score`]: the checkerboard score of an upscaled image.
//! - [`imageio`]: decoding (header limits first, EXIF orientation, ICC profile) and streaming PNG encoding.
//!   [`Image`] converts from the `image` crate's `DynamicImage` and `RgbImage` (`From`) and back (`TryFrom`,
//!   failing with [`ConvertError`]).
//! - [`pipeline`]: decode -> resolve and validate the model -> upscale -> score -> encode, shared by the CLI and
//!   the service; every default, range and contradiction rule of model selection lives there.
//! - `cli` (feature `cli`): the `icnr-upscale` command line.
//! - `server` (feature `server`): the HTTP service (axum): routes, limits, job pool, problem+json errors, metrics.
//!
//! The maths the code implements (Conv2d and PixelShuffle semantics, the initialisers, ICNR, value conversion and
//! the checkerboard score) is written down in `docs/MATHS.md`; `ARCHITECTURE.md` shows how the layers fit.
//!
//! # Features
//! - `server` (default): the HTTP service, with axum, tokio and metrics.
//! - `cli` (default): the command line, with clap; the binary needs it.
//!
//! With `default-features = false` the crate is the engine, the models and image I/O only.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod baseline;
#[cfg(feature = "cli")]
mod batch;
#[cfg(feature = "cli")]
pub mod cli;
mod convert;
#[cfg(any(feature = "cli", feature = "server"))]
mod cpu;
pub mod engine;
pub mod imageio;
pub mod kernel;
#[cfg(any(feature = "cli", feature = "server"))]
mod logging;
pub mod model;
mod names;
pub mod pipeline;
pub mod score;
#[cfg(feature = "server")]
pub mod server;

pub use baseline::Baseline;
pub use convert::ConvertError;
/// The names `--cpu` / `ICNR_UPSCALE_CPU` take: `auto`, then every CPU path name.
#[cfg(any(feature = "cli", feature = "server"))]
pub use cpu::cpu_names;
pub use engine::{CpuPath, EngineError, Image, Options, OutRows, RowSamples, Samples, Upscaler};
pub use imageio::{Compression, DecodeLimits, Decoded, EncodeStats, ImageError};
pub use kernel::{Init, Initializer, Kernel, KernelError, KernelParams};
pub use model::{Conv2d, Layer, Limit, Model, ModelError, ModelLimits, Op, Residual};
pub use names::UnknownName;
/// The tensor crate of the public API ([`Kernel`] and [`Conv2d`] weights are `ndarray` arrays), re-exported so a
/// dependent uses the same version.
pub use ndarray;
pub use pipeline::{
    ModelInfo, ModelKind, ModelRequest, Outcome, PipelineError, Registry, Resolved, RunLimits, Weights,
};
pub use score::{checkerboard_score, ScoreAccumulator};
