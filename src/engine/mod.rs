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
//!   `band::kernels_for`, over the interface in `kernels`; AVX-512 additionally uses VBMI byte permutes for the 8-bit interleave when the
//!   CPU has them). [`mod@reference`] is the slow scalar transcription of the maths, for tests.
//! - Values: in `v / 255` (or `/ 65535`) exactly as PyTorch; out `round_ties_even(clamp(y, 0, 1) * 255)`.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod band;
mod image;
mod kernels;
#[cfg(target_arch = "aarch64")]
mod neon;
mod net;
mod path;
pub mod portable;
pub mod reference;
mod simd;
mod upscaler;

pub use band::is_tied;
pub use image::{output_dims, Image, OutRows, RowSamples, Samples};
pub use net::tanh_slice;
#[cfg(test)]
pub(crate) use path::test_report;
pub use path::{supported_path_names, CpuPath, Options, AVX512_NO_VBMI, PATH_NAMES};
pub use upscaler::{EngineError, Upscaler};
