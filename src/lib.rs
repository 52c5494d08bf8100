//! icnr-upscale: sub-pixel convolution (Conv2d followed by PixelShuffle) with ICNR-initialised kernels.
//!
//! # Layout
//! - [`kernel`]: kernel weights: initialisers (ICNR, PyTorch default, plain), the seeded RNG, validation, and the
//!   kernel JSON and safetensors formats.
//! - [`engine`]: the forward pass: fused u8/u16 -> f32 -> conv -> pixel shuffle -> clamp/round, in parallel bands,
//!   with run-time CPU dispatch (AVX-512, AVX2+FMA, NEON, portable) and the ICNR fast path.
//! - [`score`]: the checkerboard score of an upscaled image.
//! - [`imageio`]: decoding (header limits first, EXIF orientation, ICC profile) and streaming PNG encoding.
//! - [`cli`]: the `icnr-upscale` command line (`serve`, `upscale`, `kernel`, `bench`, `healthcheck`).
//! - [`server`]: the HTTP service (axum): routes, limits, job pool, problem+json errors, metrics.

pub mod baseline;
pub mod batch;
pub mod cli;
pub mod cpu;
pub mod engine;
pub mod imageio;
pub mod kernel;
pub mod model;
pub mod pipeline;
pub mod score;
pub mod server;
