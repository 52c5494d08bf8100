//! The multi-layer engine: any [`Model`] (convs with fused activations, pixel shuffle, optional nearest residual),
//! fused band by band.
//!
//! # Layout
//! - Activations are NHWC f32 (channel innermost) rows. The input row has 3 channels (gray expanded); a conv's
//!   output row has `oc_pad` channels (`cout` rounded up to the path's vector width, the padding channels are 0).
//! - Weights are packed `[ky][kx][ic][oc_pad]`, bias `[oc_pad]`, per path (the vector width differs).
//! - The conv kernel ([`conv_chunk`]) is a register-blocked direct convolution: a block of `NP` output pixels x `NV`
//!   vectors of output channels lives in `NP * NV` accumulators, initialised with the bias; per tap and input
//!   channel it loads `NV` weight vectors and broadcasts one input value per pixel into `NV` FMAs. `NV` is the
//!   number of output-channel vectors (1 on AVX-512, up to 4 on the other paths; more channels run in chunks),
//!   `NP` fills the register file (AVX-512: 28 pixels of 1 vector; AVX2: 12/6/4/3 pixels for 1/2/3/4 vectors).
//!   The taps and input channels run as one flat loop (see [`conv_chunk`]). The first conv (3 input channels)
//!   needs no special case: input values are broadcast, so the input channel count never has to fill a vector;
//!   the sub-pixel conv (3r^2 outputs) pads to whole vectors (12 -> 16 on AVX-512). Activations (relu, tanh,
//!   leaky_relu, prelu) are applied to the accumulators before the store.
//! - Winograd F(4,3) along rows (AVX-512, a k3 conv that reads a conv's output of at most 64 channels;
//!   [`wino_chunk`]): tiles of 4 output pixels from 6 transformed input values and 6 transformed weights per row
//!   and input channel, 6 multiply-adds where the direct kernel takes 12. The sums are rounded in a different
//!   order than the direct kernel's (agreement to float rounding, tested), in the same order whatever the band,
//!   tile or thread count.
//! - Bands: input rows are cut into bands, bands into column tiles. For a tile, each layer keeps a ring of as many
//!   rows as the next conv's kernel height, over the tile's columns plus that layer's halo (the sum of k/2 of the
//!   later convs). Final rows are pulled one at a time; a layer computes a row when the next one needs it, so the
//!   band's rows of every layer are computed once (plus the halo rows at the band's top and bottom, and the halo
//!   columns at the tile's sides). Rows and columns outside the image are zeros (each conv's zero padding).
//! - The last conv's row goes straight into the epilogue: pixel shuffle, nearest residual, clamp/round and alpha,
//!   written into the band's interleaved output rows.
//!
//! # Memory
//! Per worker thread, the rings of one tile: the tile width is chosen so that they take about
//! [`TILE_BYTES`] (at least [`MIN_TILE_W`] columns), whatever the image size. Per band in flight, its output rows:
//! about [`BAND_OUT_BYTES`] (at least one input row's worth). At most `4 * threads` bands are in flight. Nothing
//! scales with the image height, and only the band output (one input row at least) with its width.
//!
//! # Determinism
//! Every value is computed by the same sequence of operations whatever the band, tile or thread count: outputs
//! are bit-identical across thread counts and band splits (tests check it).

use std::cell::RefCell;

use rayon::prelude::*;

use super::image::{Image, OutRows, RowSamples, Samples};
use super::path::CpuPath;
use super::portable::LUT8;
use super::simd::{self, Simd, P8};
use crate::model::{Layer, Model, Residual};

/// Pixels of slack after every row: a block of up to 28 pixels may read and write past the row's end.
const SLACK_PX: usize = 32;
/// Output bytes a band aims at.
pub(crate) const BAND_OUT_BYTES: usize = 1 << 20;
/// Ring bytes a column tile aims at (each core's L2 is larger).
pub(crate) const TILE_BYTES: usize = 1 << 20;
/// Narrowest column tile (below that the halo columns would dominate).
pub(crate) const MIN_TILE_W: usize = 64;

/// An activation fused into a conv's store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Act {
    Relu,
    Tanh,
    Leaky(f32),
    /// Offset of this prelu's `oc_pad` slopes in [`ConvLayer::slopes`].
    Prelu(usize),
}

/// One conv, packed for a vector width.
#[derive(Debug)]
pub(crate) struct ConvLayer {
    pub k: usize,
    pub cin: usize,
    pub cout: usize,
    pub oc_pad: usize,
    /// `[ky][kx][ic][oc_pad]`.
    pub w: Vec<f32>,
    /// `[oc_pad]`.
    pub b: Vec<f32>,
    /// Applied in order to the conv's output.
    pub acts: Vec<Act>,
    /// Prelu slopes, `oc_pad` per prelu (a single slope repeated).
    pub slopes: Vec<f32>,
    /// For the last conv of a model with the nearest residual: `[3][oc_pad]`, 1.0 where output channel `o` is of
    /// colour `c` (`o / r^2 == c`), else 0.0 (empty otherwise).
    pub res_sel: Vec<f32>,
    /// The Winograd F(4,3) weights of a k3 conv that reads a conv's output on the AVX-512 path (empty otherwise):
    /// `[ky][ic][6][oc_pad]`, see [`wino_weights`].
    pub wino: Vec<f32>,
}

/// A model prepared for one CPU path.
#[derive(Debug)]
pub(crate) struct Net {
    pub scale: usize,
    pub residual: Residual,
    pub convs: Vec<ConvLayer>,
    pub macs_per_pixel: u64,
}

/// Vector width of a path's kernels.
pub(crate) fn lanes(path: CpuPath) -> usize {
    match path {
        CpuPath::Avx512 => 16,
        CpuPath::Avx2Fma => 8,
        CpuPath::Neon => 4,
        CpuPath::Portable => 8,
    }
}

impl Net {
    pub(crate) fn new(model: &Model, path: CpuPath) -> Net {
        let lanes = lanes(path);
        let mut convs: Vec<ConvLayer> = Vec::new();
        for layer in model.layers() {
            match layer {
                Layer::Conv2d(c) => {
                    let (k, cin, cout) = (c.kernel_size(), c.in_channels(), c.out_channels());
                    let oc_pad = cout.next_multiple_of(lanes);
                    let wt = c.weight();
                    let mut w = vec![0f32; k * k * cin * oc_pad];
                    for ky in 0..k {
                        for kx in 0..k {
                            for ic in 0..cin {
                                for oc in 0..cout {
                                    w[((ky * k + kx) * cin + ic) * oc_pad + oc] = wt[[oc, ic, ky, kx]];
                                }
                            }
                        }
                    }
                    let mut b = vec![0f32; oc_pad];
                    for (d, s) in b.iter_mut().zip(c.bias().iter()) {
                        *d = *s;
                    }
                    // Only a conv's output has whole vectors of channels (the input has 3 a pixel).
                    let wino =
                        if path == CpuPath::Avx512 && k == 3 && convs.last().is_some_and(|c| c.oc_pad <= WINO_MAX_CS) {
                            wino_weights(&w, cin, oc_pad)
                        } else {
                            Vec::new()
                        };
                    convs.push(ConvLayer {
                        k,
                        cin,
                        cout,
                        oc_pad,
                        w,
                        b,
                        acts: Vec::new(),
                        slopes: Vec::new(),
                        res_sel: Vec::new(),
                        wino,
                    });
                }
                Layer::Relu => push_act(&mut convs, Act::Relu),
                Layer::Tanh => push_act(&mut convs, Act::Tanh),
                Layer::LeakyRelu { negative_slope } => push_act(&mut convs, Act::Leaky(*negative_slope)),
                Layer::Prelu { weight } => {
                    let conv = convs.last_mut().expect("a validated model starts with a conv");
                    let off = conv.slopes.len();
                    let mut s = vec![0f32; conv.oc_pad];
                    for (oc, d) in s.iter_mut().enumerate().take(conv.cout) {
                        *d = if weight.len() == 1 { weight[0] } else { weight[oc] };
                    }
                    conv.slopes.extend_from_slice(&s);
                    conv.acts.push(Act::Prelu(off));
                }
                Layer::PixelShuffle { .. } => {}
            }
        }
        let scale = model.scale() as usize;
        if model.residual() == Residual::Nearest {
            let last = convs.last_mut().expect("a validated model has a conv");
            let rr = scale * scale;
            last.res_sel = vec![0f32; 3 * last.oc_pad];
            for o in 0..last.cout.min(3 * rr) {
                last.res_sel[(o / rr) * last.oc_pad + o] = 1.0;
            }
        }
        Net { scale, residual: model.residual(), convs, macs_per_pixel: model.macs_per_pixel() }
    }
}

fn push_act(convs: &mut [ConvLayer], act: Act) {
    convs.last_mut().expect("a validated model starts with a conv").acts.push(act);
}

/// Arguments of one conv row: `n` output pixels from `k` input rows.
pub(crate) struct ConvArgs<'a> {
    /// `k` input rows (NHWC, `cin_s` floats a pixel); output pixel `x` reads pixels `x .. x + k` of each.
    pub rows: &'a [&'a [f32]],
    /// Floats per input pixel (at least `cin`).
    pub cin_s: usize,
    pub n: usize,
    pub layer: &'a ConvLayer,
    /// NHWC, `oc_pad` floats a pixel.
    pub out: &'a mut [f32],
    /// The last conv's finish, fused into its store: see [`Finish`].
    pub finish: Option<Finish<'a>>,
}

/// What the last conv's store does after the activations: add the nearest residual (if `res` is given), then
/// quantise every value as [`quantize`](super::portable::quantize) does, left as an integral f32 (`round(clamp(y, 0, 1) * maxv)`). The same
/// IEEE operations as the scalar code, so the result is bit-identical to it.
#[derive(Clone, Copy)]
pub(crate) struct Finish<'a> {
    /// 3 floats a pixel: the input pixel's colour (`v / max`, gray expanded), added to the output channels of that
    /// colour (through [`ConvLayer::res_sel`]).
    pub res: Option<&'a [f32]>,
    pub maxv: f32,
}

impl ConvArgs<'_> {
    /// Asserts every length the kernels rely on, for vectors of `lanes` and blocks of at most `np_max` pixels
    /// (a block may read and write past `n`, up to the next multiple of its pixel count).
    pub(crate) fn check(&self, lanes: usize, np_max: usize) {
        let l = self.layer;
        let n_ceil = self.n.next_multiple_of(np_max);
        assert!(l.oc_pad.is_multiple_of(lanes) && l.oc_pad >= l.cout && l.cin <= self.cin_s && l.k <= 9);
        // Only the input rows have 3 floats a pixel (conv outputs are padded to whole vectors of at least 4).
        assert!(self.cin_s != 3 || l.cin == 3);
        assert!(self.rows.len() == l.k);
        assert!(self.rows.iter().all(|r| r.len() >= (n_ceil + l.k - 1) * self.cin_s));
        assert!(l.w.len() == l.k * l.k * l.cin * l.oc_pad && l.b.len() == l.oc_pad);
        assert!(l.acts.iter().all(|a| match a {
            Act::Prelu(o) => o + l.oc_pad <= l.slopes.len(),
            _ => true,
        }));
        assert!(self.out.len() >= n_ceil * l.oc_pad);
        assert!(l.wino.is_empty() || (l.k == 3 && l.wino.len() == WINO_LEN * l.cin * l.oc_pad));
        if let Some(Finish { res: Some(res), .. }) = self.finish {
            assert!(res.len() >= n_ceil * 3 && l.res_sel.len() == 3 * l.oc_pad);
        }
    }
}

/// A path's conv-row kernel.
pub(crate) type ConvFn = fn(&mut ConvArgs<'_>);

/// The one dispatch point of the model engine.
pub(crate) fn conv_fn(path: CpuPath) -> ConvFn {
    match path {
        #[cfg(target_arch = "x86_64")]
        CpuPath::Avx512 => x86::conv_avx512,
        #[cfg(target_arch = "x86_64")]
        CpuPath::Avx2Fma => x86::conv_avx2,
        #[cfg(target_arch = "aarch64")]
        CpuPath::Neon => arm::conv_neon,
        _ => conv_portable,
    }
}

/// Pixels per block for 1..=4 vectors of output channels, per path (`NP * NV` accumulators).
const NP_PORTABLE: [usize; 4] = [4, 2, 1, 1];

fn conv_portable(a: &mut ConvArgs<'_>) {
    a.check(P8::W, NP_PORTABLE[0]);
    // SAFETY: `P8` needs no CPU feature; `check` asserted every length the kernel reads and writes for 8-lane
    // vectors and blocks of at most `NP_PORTABLE[0]` pixels, N1; 2 and 1 divide 4.
    unsafe { conv_generic::<P8, 4, 2, 1, 1>(a) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{__m256, __m512};

    use super::{conv_generic, wino_chunk, ConvArgs, Simd};
    use crate::engine::path::CpuPath;

    pub(super) fn conv_avx512(a: &mut ConvArgs<'_>) {
        assert!(CpuPath::Avx512.is_supported());
        a.check(<__m512 as Simd>::W, 28);
        // SAFETY: the CPU supports avx512f (asserted above); `check` asserted every length the kernel reads and
        // writes for 16-lane vectors and blocks of at most 28 pixels, the largest block `conv_k512` uses.
        unsafe { conv_k512(a) }
    }

    pub(super) fn conv_avx2(a: &mut ConvArgs<'_>) {
        assert!(CpuPath::Avx2Fma.is_supported());
        a.check(<__m256 as Simd>::W, 12);
        // SAFETY: the CPU supports avx2 and fma (asserted above); `check` asserted every length for 8-lane vectors
        // and blocks of at most 12 pixels, the largest block `conv_k256` uses.
        unsafe { conv_k256(a) }
    }

    /// # Safety
    /// The CPU supports avx512f; `a.check(16, 28)` holds.
    #[target_feature(enable = "avx512f")]
    unsafe fn conv_k512(a: &mut ConvArgs<'_>) {
        // SAFETY: avx512f is enabled here and the caller guarantees `a.check(16, 28)`. Winograd: `check` asserted
        // `k == 3` and the transformed weights' length when `wino` is not empty, and `a.check(16, 16)` the extent
        // of its 16-pixel blocks; each arm's `CS` is `a.cin_s`, a multiple of 16 of at most 64. Direct: 32 zmm
        // registers hold 28 accumulators and the weight vector, and the broadcasts fold into the FMAs; 28 is N1
        // and, with 16 lanes, every chunk is one vector, so only N1 is used.
        unsafe {
            if !a.layer.wino.is_empty() {
                a.check(16, 16);
                match a.cin_s {
                    16 => return wino_chunk::<__m512, 16>(a),
                    32 => return wino_chunk::<__m512, 32>(a),
                    48 => return wino_chunk::<__m512, 48>(a),
                    64 => return wino_chunk::<__m512, 64>(a),
                    _ => {}
                }
            }
            conv_generic::<__m512, 28, 14, 9, 7>(a)
        }
    }

    /// # Safety
    /// The CPU supports avx2 and fma; `a.check(8, 12)` holds.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn conv_k256(a: &mut ConvArgs<'_>) {
        // 16 ymm registers: 12 accumulators, a broadcast, weights as FMA memory operands.
        // SAFETY: avx2 and fma are enabled here and the caller guarantees `a.check(8, 12)`; 6, 4 and 3 divide 12.
        unsafe { conv_generic::<__m256, 12, 6, 4, 3>(a) }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::float32x4_t;

    use super::{conv_generic, ConvArgs, Simd};
    use crate::engine::path::CpuPath;

    pub(super) fn conv_neon(a: &mut ConvArgs<'_>) {
        assert!(CpuPath::Neon.is_supported());
        a.check(<float32x4_t as Simd>::W, 24);
        // SAFETY: the CPU supports neon (asserted above); `check` asserted every length for 4-lane vectors and
        // blocks of at most 24 pixels, the largest block `conv_k128` uses.
        unsafe { conv_k128(a) }
    }

    /// # Safety
    /// The CPU supports neon; `a.check(4, 24)` holds.
    #[target_feature(enable = "neon")]
    unsafe fn conv_k128(a: &mut ConvArgs<'_>) {
        // 32 q registers: 24 accumulators, weights and a broadcast.
        // SAFETY: neon is enabled here and the caller guarantees `a.check(4, 24)`; 12, 8 and 6 divide 24.
        unsafe { conv_generic::<float32x4_t, 24, 12, 8, 6>(a) }
    }
}

/// One conv row: output channels in chunks of at most 4 vectors (as even as possible), each chunk over the whole
/// row. `N1..N4`: block pixels for chunks of 1..4 vectors.
///
/// # Safety
/// `V`'s CPU features are present; `a.check(V::W, N1)` holds; N2, N3 and N4 divide N1, unless `V::W == 16` (then
/// every chunk is one vector and only N1 is used). So every block, of NP pixels from a multiple of NP below n,
/// ends within n rounded up to N1, the extent `check` asserted.
#[inline(always)]
unsafe fn conv_generic<V: Simd, const N1: usize, const N2: usize, const N3: usize, const N4: usize>(
    a: &mut ConvArgs<'_>,
) {
    const { assert!(V::W == 16 || (N1.is_multiple_of(N2) && N1.is_multiple_of(N3) && N1.is_multiple_of(N4))) };
    let nv_tot = a.layer.oc_pad / V::W;
    // AVX-512: one vector a chunk. Its broadcasts fold into the FMAs as memory operands (one load each, the load
    // ports have room), and with two or more vectors a chunk the compiler stored every accumulator after each FMA.
    // The narrower paths need a broadcast instruction per pixel, so sharing it between vectors pays there.
    let chunks = if V::W == 16 { nv_tot } else { nv_tot.div_ceil(4) };
    let mut v0 = 0;
    for c in 0..chunks {
        let nv = (nv_tot - v0).div_ceil(chunks - c);
        // The input pixel stride as a constant where it is a common one: the 28 broadcast addresses of a block
        // are then constant displacements of one pointer (with a run-time stride they form a serial chain of
        // adds that halves the FMA rate).
        // SAFETY: this function's contract, passed on; each `CS` is `a.cin_s` or 0, and `v0 + nv <= nv_tot` (the
        // chunks split `nv_tot` vectors), with `nv` 1 when `V::W == 16` (`chunks == nv_tot`).
        unsafe {
            match a.cin_s {
                3 => conv_nv::<V, N1, N2, N3, N4, 3>(a, v0, nv),
                16 => conv_nv::<V, N1, N2, N3, N4, 16>(a, v0, nv),
                32 => conv_nv::<V, N1, N2, N3, N4, 32>(a, v0, nv),
                64 => conv_nv::<V, N1, N2, N3, N4, 64>(a, v0, nv),
                _ => conv_nv::<V, N1, N2, N3, N4, 0>(a, v0, nv),
            }
        }
        v0 += nv;
    }
}

/// One chunk of `nv` vectors with input pixel stride `CS` (0: `a.cin_s` at run time).
///
/// # Safety
/// As [`conv_generic`]; `CS` is 0 or `a.cin_s`; `v0 + nv <= oc_pad / W`, and `nv` is 1 if `V::W == 16`.
#[inline(always)]
unsafe fn conv_nv<V: Simd, const N1: usize, const N2: usize, const N3: usize, const N4: usize, const CS: usize>(
    a: &mut ConvArgs<'_>,
    v0: usize,
    nv: usize,
) {
    // SAFETY: this function's contract, passed on: NP is N1..N4 (dividing N1, or N1 itself on 16 lanes) and the
    // chunk's NV vectors are `nv` (at most 4, the chunks being as even as possible) from `v0`.
    unsafe {
        match nv {
            1 => conv_chunk::<V, 1, N1, CS>(a, v0),
            2 => conv_chunk::<V, 2, N2, CS>(a, v0),
            3 => conv_chunk::<V, 3, N3, CS>(a, v0),
            _ => conv_chunk::<V, 4, N4, CS>(a, v0),
        }
    }
}

/// Output-channel vectors `v0 .. v0 + NV` of a conv row, blocks of `NP` pixels (see the module doc).
///
/// # Safety
/// `V`'s CPU features are present; `a.check(V::W, m * NP)` holds for some `m >= 1` (so the blocks, of `NP` pixels
/// from multiples of `NP` below n, end within the `n_ceil` it asserted); `CS` is 0 or `a.cin_s`; and
/// `v0 + NV <= oc_pad / W`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn conv_chunk<V: Simd, const NV: usize, const NP: usize, const CS: usize>(a: &mut ConvArgs<'_>, v0: usize) {
    let l = a.layer;
    let cs = if CS == 0 { a.cin_s } else { CS };
    // A stride of 3 is the input's (3 channels): a constant trip count unrolls the first conv's channel loop.
    let cin = if CS == 3 { 3 } else { l.cin };
    let (k, ocp) = (l.k, l.oc_pad);
    // One flat loop over every (tap, input channel) pair, in the order ky, kx, ic: each step loads `NV` weight
    // vectors (contiguous in `w`) and broadcasts one input value per pixel from `src[j] + x * cs`. With nested
    // runtime loops (taps, then channels) the compiler kept the accumulators in memory and stored them after
    // every FMA; with one loop they stay in registers.
    let steps = k * k * cin;
    // The pointers below are formed with `wrapping_add` and only dereferenced in the blocks further down, within
    // what `check` asserted: a buffer may be empty when it is not used (`slopes` without prelu, `res_sel` without
    // the residual), and `.add` would then be out of bounds.
    let mut src: Vec<*const f32> = Vec::with_capacity(steps);
    for ky in 0..k {
        let row = a.rows[ky].as_ptr();
        for kx in 0..k {
            for ic in 0..cin {
                src.push(row.wrapping_add(kx * cs + ic));
            }
        }
    }
    let w = l.w.as_ptr().wrapping_add(v0 * V::W);
    let b = l.b.as_ptr().wrapping_add(v0 * V::W);
    // SAFETY: `V`'s CPU features are present (this function's contract), all `splat` needs.
    let zero = unsafe { V::splat(0.0) };
    let mut x = 0;
    while x < a.n {
        let mut acc = [[zero; NV]; NP];
        for v in 0..NV {
            // SAFETY: `V`'s CPU features are present; `check` asserted `b.len() == oc_pad`, and `(v0 + v + 1) * W <=
            // oc_pad` (the contract).
            let bv = unsafe { V::load(b.add(v * V::W)) };
            for p in 0..NP {
                acc[p][v] = bv;
            }
        }
        let xo = x * cs;
        let mut wp = w;
        // SAFETY: `V`'s CPU features are present. Inputs: `sp` is row `ky` plus `kx * cs + ic` (kx < k, ic < cin
        // <= cs), and pixel `x + p` (p < NP) is below `n_ceil`, so the value read, at `(x + p + kx) * cs + ic` of
        // the row, is below `(n_ceil + k - 1) * cs`, the row length `check` asserted (with `cs == cin_s`).
        // Weights: `w.len() == k * k * cin * oc_pad` (`check`): `wp` advances `oc_pad` per (tap, channel) step,
        // `steps` of them, reading `W` lanes at `(v0 + v) * W` (v < NV), within the step's `oc_pad`.
        unsafe {
            for &sp in &src {
                let xp = sp.add(xo);
                let mut wv = [zero; NV];
                for v in 0..NV {
                    wv[v] = V::load(wp.add(v * V::W));
                }
                for p in 0..NP {
                    let bx = V::splat(*xp.add(p * cs));
                    for v in 0..NV {
                        acc[p][v] = V::fma(wv[v], bx, acc[p][v]);
                    }
                }
                wp = wp.add(ocp);
            }
        }
        // SAFETY: `V`'s CPU features are present; the block's pixels `x .. x + NP` are below `n_ceil` and its
        // vectors `v0 .. v0 + NV` within `oc_pad` (this function's contract).
        unsafe { store_block::<V, NV, NP>(a, &mut acc, x, v0) };
        x += NP;
    }
}

/// The widest input pixel (floats) [`wino_chunk`] takes.
const WINO_MAX_CS: usize = 64;
/// Transformed weights per (input channel, output channel) of a k3 conv: 3 rows of 6.
const WINO_LEN: usize = 18;

/// Tiles of 4 output pixels in an F(4,3) block: 4 tiles of 6 products, 24 accumulators.
#[cfg(target_arch = "x86_64")]
const WINO_TILES: usize = 4;

/// One F(4,3) block's transformed input, `[ky][tile][6][CS]`.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct WinoBuf([f32; 3 * WINO_TILES * 6 * WINO_MAX_CS]);

/// The Winograd F(4,3) transform (Lavin and Gray's points 0, 1, -1, 2, -2 and infinity) of a k3 conv's packed
/// weights `[ky][kx][ic][oc_pad]`: `g0 / 4, -(g0 + g1 + g2) / 6, -(g0 - g1 + g2) / 6, (g0 + 2 g1 + 4 g2) / 24,
/// (g0 - 2 g1 + 4 g2) / 24, g2` (in f64, rounded once), laid out `[ky][ic][6][oc_pad]`.
fn wino_weights(w: &[f32], cin: usize, oc_pad: usize) -> Vec<f32> {
    let mut t = vec![0f32; WINO_LEN * cin * oc_pad];
    for ky in 0..3 {
        for ic in 0..cin {
            for oc in 0..oc_pad {
                let g = |kx: usize| f64::from(w[((ky * 3 + kx) * cin + ic) * oc_pad + oc]);
                let (g0, g1, g2) = (g(0), g(1), g(2));
                let tw = [
                    g0 / 4.0,
                    -(g0 + g1 + g2) / 6.0,
                    -(g0 - g1 + g2) / 6.0,
                    (g0 + 2.0 * g1 + 4.0 * g2) / 24.0,
                    (g0 - 2.0 * g1 + 4.0 * g2) / 24.0,
                    g2,
                ];
                for (i, v) in tw.iter().enumerate() {
                    t[((ky * cin + ic) * 6 + i) * oc_pad + oc] = *v as f32;
                }
            }
        }
    }
    t
}

/// A k3 conv row by Winograd F(4,3) along the row (see [`wino_weights`]), in blocks of [`WINO_TILES`] tiles of 4
/// output pixels (16 pixels), one vector of output channels at a time. For each block, the 3 input rows' values of
/// its pixels (18 of them) are transformed once into a [`WinoBuf`]; then each vector of output channels takes
/// `3 * cin` steps of 6 weight vectors and 24 multiply-adds (the direct kernel takes `9 * cin` steps of 28
/// multiply-adds for 28 pixels: twice the work per pixel), and the output transform. The tiles start at the row's
/// first pixel, whatever the band or thread count, so outputs stay bit-identical across them.
///
/// # Safety
/// `V`'s CPU features are present; `a.check(V::W, m * 16)` holds for some `m >= 1`; `a.layer.wino` is not empty
/// (so `check` asserted `k == 3` and its length, `18 * cin * oc_pad`); `CS == a.cin_s`, a multiple of `V::W` of at
/// most [`WINO_MAX_CS`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(crate) unsafe fn wino_chunk<V: Simd, const CS: usize>(a: &mut ConvArgs<'_>) {
    const { assert!(CS <= WINO_MAX_CS) };
    const T: usize = WINO_TILES;
    const NP: usize = 4 * T;
    let l = a.layer;
    let (cin, ocp) = (l.cin, l.oc_pad);
    debug_assert!(CS == a.cin_s && CS.is_multiple_of(V::W) && l.k == 3 && l.wino.len() == WINO_LEN * cin * ocp);
    let cin_v = cin.next_multiple_of(V::W);
    let mut buf = WinoBuf([0.0; 3 * T * 6 * WINO_MAX_CS]);
    let tb = buf.0.as_mut_ptr();
    let mut src: Vec<*const f32> = Vec::with_capacity(3 * cin);
    for ky in 0..3 {
        for ic in 0..cin {
            src.push(tb.wrapping_add(ky * T * 6 * CS + ic));
        }
    }
    // SAFETY: `V`'s CPU features are present (this function's contract), all `splat` needs.
    let (zero, two, four, five, eight) =
        unsafe { (V::splat(0.0), V::splat(2.0), V::splat(4.0), V::splat(5.0), V::splat(8.0)) };
    let mut x = 0;
    while x < a.n {
        // SAFETY: `V`'s CPU features are present. Reads: pixels `x .. x + NP + 2` of each row, `cin_v <= CS`
        // floats of each, within `(n_ceil + 2) * CS`, the row length `check` asserted. Writes: within the buffer
        // (ky < 3, tile < T, product < 6, `cin_v <= CS <= WINO_MAX_CS`).
        unsafe {
            for ky in 0..3 {
                let row = a.rows[ky].as_ptr().add(x * CS);
                for t in 0..T {
                    let s = row.add(4 * t * CS);
                    let d = tb.add((ky * T + t) * 6 * CS);
                    for c in (0..cin_v).step_by(V::W) {
                        let d0 = V::load(s.add(c));
                        let d1 = V::load(s.add(CS + c));
                        let d2 = V::load(s.add(2 * CS + c));
                        let d3 = V::load(s.add(3 * CS + c));
                        let d4 = V::load(s.add(4 * CS + c));
                        let d5 = V::load(s.add(5 * CS + c));
                        // t0 = 4 d0 - 5 d2 + d4; t1 = -4 (d1 + d2) + d3 + d4; t2 = 4 (d1 - d2) - d3 + d4;
                        // t3 = 2 (d3 - d1) - d2 + d4; t4 = 2 (d1 - d3) - d2 + d4; t5 = 4 d1 - 5 d3 + d5.
                        let d4m2 = V::sub(d4, d2);
                        let d31 = V::sub(d3, d1);
                        V::store(V::fma(four, d0, V::sub(d4, V::mul(five, d2))), d.add(c));
                        V::store(V::sub(V::add(d3, d4), V::mul(four, V::add(d1, d2))), d.add(CS + c));
                        V::store(V::add(V::mul(four, V::sub(d1, d2)), V::sub(d4, d3)), d.add(2 * CS + c));
                        V::store(V::fma(two, d31, d4m2), d.add(3 * CS + c));
                        V::store(V::sub(d4m2, V::mul(two, d31)), d.add(4 * CS + c));
                        V::store(V::fma(four, d1, V::sub(d5, V::mul(five, d3))), d.add(5 * CS + c));
                    }
                }
            }
        }
        for v0 in 0..ocp / V::W {
            let mut m = [[zero; 6]; T];
            let mut wp = l.wino.as_ptr().wrapping_add(v0 * V::W);
            // SAFETY: `V`'s CPU features are present. Inputs: within the buffer written above (`sp` is channel
            // `ic < cin <= CS` of row `ky`'s block). Weights: `wino.len() == 18 * cin * oc_pad` (`check`); `wp`
            // advances `6 * oc_pad` per step, `3 * cin` steps, reading `W` lanes at `i * oc_pad + v0 * W`.
            unsafe {
                for &sp in &src {
                    for i in 0..6 {
                        let wv = V::load(wp.add(i * ocp));
                        for t in 0..T {
                            m[t][i] = V::fma(wv, V::splat(*sp.add((t * 6 + i) * CS)), m[t][i]);
                        }
                    }
                    wp = wp.add(6 * ocp);
                }
            }
            // SAFETY: `V`'s CPU features are present; `check` asserted `b.len() == oc_pad` and `(v0 + 1) * W <=
            // oc_pad`.
            let bv = unsafe { V::load(l.b.as_ptr().add(v0 * V::W)) };
            let mut acc = [[zero; 1]; NP];
            for t in 0..T {
                // y0 = m0 + m1 + m2 + m3 + m4; y1 = (m1 - m2) + 2 (m3 - m4); y2 = (m1 + m2) + 4 (m3 + m4);
                // y3 = (m1 - m2) + 8 (m3 - m4) + m5; then the bias.
                // SAFETY: `V`'s CPU features are present, all these need.
                unsafe {
                    let [m0, m1, m2, m3, m4, m5] = m[t];
                    let (s12, d12, s34, d34) = (V::add(m1, m2), V::sub(m1, m2), V::add(m3, m4), V::sub(m3, m4));
                    acc[4 * t][0] = V::add(V::add(V::add(m0, s12), s34), bv);
                    acc[4 * t + 1][0] = V::add(V::fma(two, d34, d12), bv);
                    acc[4 * t + 2][0] = V::add(V::fma(four, s34, s12), bv);
                    acc[4 * t + 3][0] = V::add(V::add(V::fma(eight, d34, d12), m5), bv);
                }
            }
            // SAFETY: `V`'s CPU features are present; pixels `x .. x + NP` are below `n_ceil` (`check`, with `NP`
            // dividing the block size it was given) and vector `v0` is within `oc_pad`.
            unsafe { store_block::<V, 1, NP>(a, &mut acc, x, v0) };
        }
        x += NP;
    }
}

/// A block's activations, finish (residual, quantisation) and store: `acc[p][v]` is output pixel `x + p`,
/// channels `(v0 + v) * W ..`.
///
/// # Safety
/// `V`'s CPU features are present; `a.check(V::W, ..)` held with an `n_ceil` of at least `x + NP`, and
/// `(v0 + NV) * W <= oc_pad`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn store_block<V: Simd, const NV: usize, const NP: usize>(
    a: &mut ConvArgs<'_>,
    acc: &mut [[V; NV]; NP],
    x: usize,
    v0: usize,
) {
    let l = a.layer;
    let ocp = l.oc_pad;
    // The pointers below are formed with `wrapping_add`: a buffer may be empty when it is not used (`slopes`
    // without prelu, `res_sel` without the residual), and `.add` would then be out of bounds.
    let slopes = l.slopes.as_ptr().wrapping_add(v0 * V::W);
    let out = a.out.as_mut_ptr().wrapping_add(v0 * V::W);
    // SAFETY: `V`'s CPU features are present (this function's contract), all `splat` needs.
    let (zero, one, magic) = unsafe { (V::splat(0.0), V::splat(1.0), V::splat(8_388_608.0)) };
    let fin = a.finish;
    let res = fin.and_then(|f| f.res).map(|r| r.as_ptr());
    let sel = l.res_sel.as_ptr().wrapping_add(v0 * V::W);
    // Each activation over the whole block at once: the vectors are independent, so the long latency of
    // tanh's division overlaps across them (one vector at a time, it stalled).
    for act in &l.acts {
        match *act {
            Act::Tanh => {
                for p in 0..NP {
                    for v in 0..NV {
                        // SAFETY: `V`'s CPU features are present, all `tanh` needs.
                        acc[p][v] = unsafe { simd::tanh(acc[p][v]) };
                    }
                }
            }
            act => {
                for p in 0..NP {
                    for v in 0..NV {
                        // SAFETY: `V`'s CPU features are present; for `Prelu(o)`, `check` asserted
                        // `o + oc_pad <= slopes.len()`, so the `W` slopes at `o + (v0 + v) * W` exist.
                        acc[p][v] = unsafe { apply::<V>(act, acc[p][v], slopes.wrapping_add(v * V::W)) };
                    }
                }
            }
        }
    }
    for p in 0..NP {
        for v in 0..NV {
            let mut y = acc[p][v];
            // SAFETY: `V`'s CPU features are present. Residual: `check` asserted `res.len() >= n_ceil * 3` (pixel
            // `x + p` is below `n_ceil`) and `res_sel.len() == 3 * oc_pad` (the `W` values at
            // `c * oc_pad + (v0 + v) * W` exist). Store: `check` asserted `out.len() >= n_ceil * oc_pad`, and
            // the `W` values at `(x + p) * oc_pad + (v0 + v) * W` end within pixel `x + p`'s `oc_pad`.
            unsafe {
                if let Some(f) = fin {
                    if let Some(res) = res {
                        // `sel` is 0 or 1: the colour's value is added once (one rounding, as `y + r`), the
                        // other two add an exact 0.
                        let rp = res.add((x + p) * 3);
                        for c in 0..3 {
                            y = V::fma(V::load(sel.add(c * ocp + v * V::W)), V::splat(*rp.add(c)), y);
                        }
                    }
                    y = V::min(V::max(y, zero), one);
                    y = V::sub(V::add(V::mul(y, V::splat(f.maxv)), magic), magic);
                }
                V::store(y, out.add((x + p) * ocp + v * V::W));
            }
        }
    }
}

/// One fused activation on one vector; `slopes` points at the vector's channels in [`ConvLayer::slopes`].
///
/// # Safety
/// `V`'s CPU features are present; for prelu, `slopes + o` is valid for `W` reads.
#[inline(always)]
unsafe fn apply<V: Simd>(act: Act, y: V, slopes: *const f32) -> V {
    // SAFETY: `V`'s CPU features are present and, for prelu, `slopes + o` is valid for `W` reads (the contract).
    unsafe {
        let zero = V::splat(0.0);
        match act {
            Act::Relu => V::max(y, zero),
            Act::Tanh => simd::tanh(y),
            // `s * min(y, 0) + max(y, 0)` is exactly `y > 0 ? y : s * y` (one rounding, of the product).
            Act::Leaky(s) => V::fma(V::splat(s), V::min(y, zero), V::max(y, zero)),
            Act::Prelu(o) => V::fma(V::load(slopes.add(o)), V::min(y, zero), V::max(y, zero)),
        }
    }
}

/// `tanh` of every value with the kernels of `path` (for tests of the approximation).
pub fn tanh_slice(path: CpuPath, xs: &mut [f32]) {
    let layer = ConvLayer {
        k: 1,
        cin: 1,
        cout: 1,
        oc_pad: lanes(path),
        w: {
            let mut w = vec![0f32; lanes(path)];
            w[0] = 1.0;
            w
        },
        b: vec![0f32; lanes(path)],
        acts: vec![Act::Tanh],
        slopes: Vec::new(),
        res_sel: Vec::new(),
        wino: Vec::new(),
    };
    let conv = conv_fn(path);
    let n = xs.len();
    let mut input = vec![0f32; n + SLACK_PX];
    input[..n].copy_from_slice(xs);
    let mut out = vec![0f32; (n + SLACK_PX) * layer.oc_pad];
    let rows = [&input[..]];
    conv(&mut ConvArgs { rows: &rows, cin_s: 1, n, layer: &layer, out: &mut out, finish: None });
    for (i, x) in xs.iter_mut().enumerate() {
        *x = out[i * layer.oc_pad];
    }
}

/// Output rows of one band.
#[derive(Default)]
struct BandOut {
    out8: Vec<u8>,
    out16: Vec<u16>,
    first_row: u32,
    rows: u32,
}

thread_local! {
    /// Band outputs kept by the calling thread between calls (the service and benchmarks call repeatedly).
    static OUTS: RefCell<Vec<BandOut>> = const { RefCell::new(Vec::new()) };
    /// Ring scratch of the worker thread.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Everything fixed for one call.
pub(crate) struct NetPlan<'a> {
    net: &'a Net,
    img: &'a Image,
    conv: ConvFn,
    w: usize,
    h: usize,
    r: usize,
    ic: usize,
    nc: usize,
    maxv: f32,
    band_h: usize,
    tile_w: usize,
    n_tiles: usize,
    /// `e[l]`: halo of layer `l`'s rows (0 = input, `l` = conv `l`): the sum of k/2 of the convs after it.
    e: Vec<usize>,
    /// Floats per pixel of layer `l`'s rows: 3 for the input, `oc_pad` for a conv.
    cs: Vec<usize>,
    /// Rows in layer `l`'s ring (the next conv's k); 1 for the last conv.
    ring_rows: Vec<usize>,
    /// Floats per ring row of layer `l` (tile width + 2 halo + slack, times `cs`).
    row_len: Vec<usize>,
    /// Offset of layer `l`'s ring in the scratch.
    ring_off: Vec<usize>,
    /// Offset of the residual row (3 floats a pixel of the tile, plus slack) in the scratch, after the rings.
    res_off: usize,
    scratch_len: usize,
}

impl<'a> NetPlan<'a> {
    pub(crate) fn new(net: &'a Net, path: CpuPath, img: &'a Image) -> NetPlan<'a> {
        let (w, h) = (img.width as usize, img.height as usize);
        let r = net.scale;
        let nl = net.convs.len();
        let mut e = vec![0usize; nl + 1];
        for l in (0..nl).rev() {
            e[l] = e[l + 1] + net.convs[l].k / 2;
        }
        let mut cs = vec![3usize];
        cs.extend(net.convs.iter().map(|c| c.oc_pad));
        let mut ring_rows: Vec<usize> = net.convs.iter().map(|c| c.k).collect();
        ring_rows.push(1);
        // Floats per tile column, and fixed floats (halo and slack columns), over all rings.
        let per_col: usize = (0..=nl).map(|l| ring_rows[l] * cs[l]).sum();
        let fixed: usize = (0..=nl).map(|l| ring_rows[l] * cs[l] * (2 * e[l] + SLACK_PX)).sum();
        let budget = (TILE_BYTES / 4).saturating_sub(fixed) / per_col;
        let max_w = budget.max(MIN_TILE_W);
        let n_tiles = w.div_ceil(max_w).max(1);
        let tile_w = w.div_ceil(n_tiles).max(1);
        let row_len: Vec<usize> = (0..=nl).map(|l| (tile_w + 2 * e[l] + SLACK_PX) * cs[l]).collect();
        let mut ring_off = Vec::with_capacity(nl + 1);
        let mut off = 0;
        for l in 0..=nl {
            ring_off.push(off);
            off += ring_rows[l] * row_len[l];
        }
        let res_off = off;
        off += (tile_w + SLACK_PX) * 3;
        let nc = img.out_channels() as usize;
        let bytes = if img.bit_depth() == 8 { 1 } else { 2 };
        let per_in_row = (r * w * r * nc * bytes).max(1);
        let by_mem = (BAND_OUT_BYTES / per_in_row).max(1);
        // Enough bands for the threads (4 each), but not so short that halo rows dominate.
        let by_par = h.div_ceil(4 * rayon::current_num_threads()).max(8 + 2 * e[0]);
        let band_h = by_mem.min(by_par).clamp(1, h.max(1));
        NetPlan {
            net,
            img,
            conv: conv_fn(path),
            w,
            h,
            r,
            ic: img.channels as usize,
            nc,
            maxv: if bytes == 1 { 255.0 } else { 65535.0 },
            band_h,
            tile_w,
            n_tiles,
            e,
            cs,
            ring_rows,
            row_len,
            ring_off,
            res_off,
            scratch_len: off,
        }
    }

    /// Computes every band, a group at a time in parallel, handing each band's rows to `sink` in order.
    pub(crate) fn run<E>(&self, mut sink: impl FnMut(OutRows<'_>) -> Result<(), E>) -> Result<(), E> {
        if self.w == 0 || self.h == 0 {
            return Ok(());
        }
        let n_bands = self.h.div_ceil(self.band_h);
        let group = (4 * rayon::current_num_threads()).clamp(1, n_bands);
        let mut outs = OUTS.with(|c| std::mem::take(&mut *c.borrow_mut()));
        outs.resize_with(group, BandOut::default);
        let res = self.run_groups(n_bands, group, &mut outs, &mut sink);
        OUTS.with(|c| *c.borrow_mut() = outs);
        res
    }

    fn run_groups<E>(
        &self,
        n_bands: usize,
        group: usize,
        outs: &mut [BandOut],
        sink: &mut impl FnMut(OutRows<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let row = self.w * self.r * self.nc;
        for g0 in (0..n_bands).step_by(group) {
            let n = group.min(n_bands - g0);
            outs[..n].par_iter_mut().enumerate().for_each(|(j, out)| {
                SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    if s.len() < self.scratch_len {
                        s.resize(self.scratch_len, 0.0);
                    }
                    self.run_band(g0 + j, out, &mut s[..self.scratch_len]);
                })
            });
            for out in &outs[..n] {
                let len = out.rows as usize * row;
                let samples = match self.img.samples {
                    Samples::U8(_) => RowSamples::U8(&out.out8[..len]),
                    Samples::U16(_) => RowSamples::U16(&out.out16[..len]),
                };
                sink(OutRows {
                    first_row: out.first_row,
                    rows: out.rows,
                    width: (self.w * self.r) as u32,
                    channels: self.nc as u8,
                    samples,
                })?;
            }
        }
        Ok(())
    }

    fn run_band(&self, band: usize, out: &mut BandOut, scratch: &mut [f32]) {
        let y0 = band * self.band_h;
        let y1 = (y0 + self.band_h).min(self.h);
        let len = (y1 - y0) * self.r * self.w * self.r * self.nc;
        match self.img.samples {
            Samples::U8(_) => out.out8.resize(len, 0),
            Samples::U16(_) => out.out16.resize(len, 0),
        }
        out.first_row = (y0 * self.r) as u32;
        out.rows = ((y1 - y0) * self.r) as u32;
        let nl = self.net.convs.len();
        for t in 0..self.n_tiles {
            let tx0 = t * self.tile_w;
            let tx1 = (tx0 + self.tile_w).min(self.w);
            if tx0 >= tx1 {
                break;
            }
            let mut tile =
                Tile { tx0, tw: tx1 - tx0, y0, next: (0..=nl).map(|l| y0 as isize - self.e[l] as isize).collect() };
            for y in y0..y1 {
                self.pull(&mut tile, scratch, nl, y as isize, out);
            }
        }
    }

    /// Columns of layer `l`'s rows in a tile of width `tw`.
    fn cols(&self, l: usize, tw: usize) -> usize {
        tw + 2 * self.e[l]
    }

    /// The ring slot of layer `l`'s row `row`, as an offset into the scratch.
    fn slot(&self, l: usize, row: isize) -> usize {
        self.ring_off[l] + row.rem_euclid(self.ring_rows[l] as isize) as usize * self.row_len[l]
    }

    /// Computes layer `l`'s rows up to `upto` (in order), pulling the rows they need from the layers before.
    fn pull(&self, t: &mut Tile, scratch: &mut [f32], l: usize, upto: isize, out: &mut BandOut) {
        while t.next[l] <= upto {
            let row = t.next[l];
            t.next[l] += 1;
            let cols = self.cols(l, t.tw);
            let at = self.slot(l, row);
            if l == 0 {
                self.load_row(t, row, &mut scratch[at..at + cols * 3]);
                continue;
            }
            let last = l == self.net.convs.len();
            if row < 0 || row >= self.h as isize {
                debug_assert!(!last, "final rows are inside the image");
                scratch[at..at + cols * self.cs[l]].fill(0.0);
                continue;
            }
            let layer = &self.net.convs[l - 1];
            let p = (layer.k / 2) as isize;
            self.pull(t, scratch, l - 1, row + p, out);
            let (lo, hi) = scratch.split_at_mut(self.ring_off[l]);
            let mut rows: [&[f32]; 9] = [&[]; 9];
            for (dy, d) in rows.iter_mut().enumerate().take(layer.k) {
                let s = self.slot(l - 1, row + dy as isize - p);
                *d = &lo[s..s + self.row_len[l - 1]];
            }
            let o = at - self.ring_off[l];
            let (hi, res_buf) = hi.split_at_mut(self.res_off - self.ring_off[l]);
            let dst = &mut hi[o..o + self.row_len[l]];
            let finish = last.then(|| {
                let res = (self.net.residual == Residual::Nearest).then(|| {
                    self.residual_row(t, row as usize, res_buf);
                    &res_buf[..]
                });
                Finish { res, maxv: self.maxv }
            });
            let args =
                &mut ConvArgs { rows: &rows[..layer.k], cin_s: self.cs[l - 1], n: cols, layer, out: dst, finish };
            (self.conv)(args);
            if last {
                self.epilogue(t, row as usize, dst, layer.oc_pad, out);
            } else {
                // Columns outside the image are the next conv's zero padding.
                let gx0 = t.tx0 as isize - self.e[l] as isize;
                let cs = self.cs[l];
                let left = (-gx0).clamp(0, cols as isize) as usize;
                let right = (self.w as isize - gx0).clamp(0, cols as isize) as usize;
                dst[..left * cs].fill(0.0);
                dst[right * cs..cols * cs].fill(0.0);
            }
        }
    }

    /// Input row `row` over the tile's columns with halo: `v / 255` (or `/ 65535`), gray expanded, zeros outside.
    fn load_row(&self, t: &Tile, row: isize, dst: &mut [f32]) {
        dst.fill(0.0);
        if row < 0 || row >= self.h as isize {
            return;
        }
        let y = row as usize;
        let gx0 = t.tx0 as isize - self.e[0] as isize;
        let x0 = gx0.max(0) as usize;
        let x1 = ((t.tx0 + t.tw + self.e[0]).min(self.w)).max(x0);
        let d0 = (x0 as isize - gx0) as usize;
        let ic = self.ic;
        let src = y * self.w * ic;
        let dst = &mut dst[d0 * 3..(d0 + x1 - x0) * 3];
        match &self.img.samples {
            Samples::U8(s) => load_px(&s[src + x0 * ic..src + x1 * ic], ic, dst, |v| LUT8[v as usize]),
            Samples::U16(s) => load_px(&s[src + x0 * ic..src + x1 * ic], ic, dst, |v| v as f32 / 65535.0),
        }
    }

    /// The input colours of row `y` over the tile's pixels, 3 floats a pixel (`v / max`, gray expanded): the
    /// nearest residual the last conv's store adds.
    fn residual_row(&self, t: &Tile, y: usize, dst: &mut [f32]) {
        let ic = self.ic;
        let src = (y * self.w + t.tx0) * ic;
        let dst = &mut dst[..t.tw * 3];
        match &self.img.samples {
            Samples::U8(s) => load_px(&s[src..src + t.tw * ic], ic, dst, |v| LUT8[v as usize]),
            Samples::U16(s) => load_px(&s[src..src + t.tw * ic], ic, dst, |v| v as f32 / 65535.0),
        }
    }

    /// Pixel shuffle + alpha of final row `y` (`fin`: the last conv's row, NHWC, already quantised by its store).
    fn epilogue(&self, t: &Tile, y: usize, fin: &[f32], ocp: usize, out: &mut BandOut) {
        let ly = y - t.y0;
        let row = self.w * self.r * self.nc;
        let base = ly * self.r * row;
        match &self.img.samples {
            Samples::U8(s) => {
                let dst = &mut out.out8[base..base + self.r * row];
                self.shuffle(t, y, fin, ocp, dst, |q| q as u8, s)
            }
            Samples::U16(s) => {
                let dst = &mut out.out16[base..base + self.r * row];
                self.shuffle(t, y, fin, ocp, dst, |q| q, s)
            }
        }
    }

    /// `fin` holds integral values in `[0, maxv]` (see [`Finish`]): the `as u16` below is exact.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn shuffle<T: Copy>(
        &self,
        t: &Tile,
        y: usize,
        fin: &[f32],
        ocp: usize,
        dst: &mut [T],
        q: impl Fn(u16) -> T,
        src: &[T],
    ) {
        let (r, nc, ic) = (self.r, self.nc, self.ic);
        let rr = r * r;
        let row = self.w * r * nc;
        let fin = &fin[..t.tw * ocp];
        for i in 0..r {
            let d = &mut dst[i * row + t.tx0 * r * nc..i * row + (t.tx0 + t.tw) * r * nc];
            for (j, (dp, f)) in d.chunks_exact_mut(r * nc).zip(fin.chunks_exact(ocp)).enumerate() {
                for (jj, o) in dp.chunks_exact_mut(nc).enumerate() {
                    for c in 0..3 {
                        o[c] = q(f[c * rr + i * r + jj] as u16);
                    }
                    if nc == 4 {
                        o[3] = src[(y * self.w + t.tx0 + j) * ic + ic - 1];
                    }
                }
            }
        }
    }
}

fn load_px<S: Copy>(src: &[S], ic: usize, dst: &mut [f32], cv: impl Fn(S) -> f32) {
    if ic <= 2 {
        for (d, px) in dst.chunks_exact_mut(3).zip(src.chunks_exact(ic)) {
            let v = cv(px[0]);
            d.copy_from_slice(&[v, v, v]);
        }
    } else {
        for (d, px) in dst.chunks_exact_mut(3).zip(src.chunks_exact(ic)) {
            d.copy_from_slice(&[cv(px[0]), cv(px[1]), cv(px[2])]);
        }
    }
}

/// Per-tile progress: the next row each layer computes.
struct Tile {
    tx0: usize,
    tw: usize,
    y0: usize,
    next: Vec<isize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Conv2d;
    use ndarray::{Array1, Array4};

    /// A splitmix sequence in `[-1, 1)`.
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    /// The F(4,3) identity, in f64 with the f32 transformed weights: the input transform `B^T d` of 6 pixels, the
    /// products with the weights' transform and the output transform `A^T m` equal the direct 3-tap sums of the 4
    /// outputs (to the rounding of the weights' transform to f32).
    #[test]
    fn wino_weights_reproduce_the_direct_taps() {
        let (cin, ocp) = (5, 16);
        let w = values(1, 9 * cin * ocp);
        let t = wino_weights(&w, cin, ocp);
        for seed in 2..6 {
            let d: Vec<f64> = values(seed, 6).iter().map(|&v| f64::from(v)).collect();
            let tr = [
                4.0 * d[0] - 5.0 * d[2] + d[4],
                -4.0 * d[1] - 4.0 * d[2] + d[3] + d[4],
                4.0 * d[1] - 4.0 * d[2] - d[3] + d[4],
                -2.0 * d[1] - d[2] + 2.0 * d[3] + d[4],
                2.0 * d[1] - d[2] - 2.0 * d[3] + d[4],
                4.0 * d[1] - 5.0 * d[3] + d[5],
            ];
            for ky in 0..3 {
                for ic in 0..cin {
                    for oc in 0..ocp {
                        let g = |kx: usize| f64::from(w[((ky * 3 + kx) * cin + ic) * ocp + oc]);
                        let m: Vec<f64> =
                            (0..6).map(|i| tr[i] * f64::from(t[((ky * cin + ic) * 6 + i) * ocp + oc])).collect();
                        let y = [
                            m[0] + m[1] + m[2] + m[3] + m[4],
                            m[1] - m[2] + 2.0 * m[3] - 2.0 * m[4],
                            m[1] + m[2] + 4.0 * m[3] + 4.0 * m[4],
                            m[1] - m[2] + 8.0 * m[3] - 8.0 * m[4] + m[5],
                        ];
                        for (j, yj) in y.iter().enumerate() {
                            let e = d[j] * g(0) + d[j + 1] * g(1) + d[j + 2] * g(2);
                            assert!((yj - e).abs() < 1e-6, "output {j}: {yj} vs {e}");
                        }
                    }
                }
            }
        }
    }

    /// On AVX-512, every k3 conv after the first takes the Winograd weights; other convs and paths do not.
    #[test]
    fn winograd_is_prepared_for_k3_convs_after_the_first_on_avx512() {
        let conv = |o: usize, i: usize, k: usize, seed: u64| {
            let w = Array4::from_shape_vec((o, i, k, k), values(seed, o * i * k * k)).unwrap();
            Layer::Conv2d(Conv2d::new(w, Some(Array1::from_vec(values(seed + 1, o)))).unwrap())
        };
        let layers = vec![
            conv(8, 3, 3, 1),
            Layer::Tanh,
            conv(8, 8, 5, 3),
            conv(12, 8, 3, 5),
            Layer::PixelShuffle { upscale_factor: 2 },
        ];
        let model = Model::new("t", layers, Residual::Nearest).unwrap();
        let has = |path| Net::new(&model, path).convs.iter().map(|c| !c.wino.is_empty()).collect::<Vec<_>>();
        assert_eq!(has(CpuPath::Avx512), [false, false, true]);
        assert_eq!(has(CpuPath::Avx2Fma), [false, false, false]);
        assert_eq!(has(CpuPath::Portable), [false, false, false]);
    }

    /// The AVX-512 Winograd row kernel agrees with the portable direct kernel to float rounding, for every input
    /// width it takes (16 to 64 floats a pixel), row lengths around its 16-pixel block, several output vectors,
    /// each activation and the last conv's finish (residual and quantisation).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_winograd_rows_match_the_direct_kernel() {
        if !CpuPath::Avx512.is_supported() {
            crate::engine::test_report(
                "SKIP path avx512 in net::avx512_winograd_rows_match_the_direct_kernel: not supported by this CPU",
            );
            return;
        }
        let mut cases = 0;
        for (cs, cin, cout) in [(16usize, 9usize, 12usize), (32, 32, 16), (48, 40, 20), (64, 64, 33)] {
            for n in [1usize, 2, 13, 14, 15, 16, 17, 28, 57] {
                for (acts, last) in
                    [(vec![Act::Tanh], false), (vec![Act::Relu, Act::Leaky(0.1)], false), (vec![], true)]
                {
                    let oc_pad = cout.next_multiple_of(16);
                    let mut w = values(cs as u64, 9 * cin * oc_pad);
                    for (i, v) in w.iter_mut().enumerate() {
                        if i % oc_pad >= cout {
                            *v = 0.0;
                        }
                    }
                    let mut b = values(7, oc_pad);
                    b[cout..].fill(0.0);
                    let mut res_sel = Vec::new();
                    if last {
                        res_sel = vec![0f32; 3 * oc_pad];
                        for o in 0..cout.min(12) {
                            res_sel[(o / 4) * oc_pad + o] = 1.0;
                        }
                    }
                    let mut layer = ConvLayer {
                        k: 3,
                        cin,
                        cout,
                        oc_pad,
                        w,
                        b,
                        acts: acts.clone(),
                        slopes: Vec::new(),
                        res_sel,
                        wino: Vec::new(),
                    };
                    let len = (n.next_multiple_of(28) + SLACK_PX) * cs;
                    let rows: Vec<Vec<f32>> = (0..3).map(|r| values(100 + r, len)).collect();
                    let rows: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
                    let res = values(9, len).iter().map(|v| v.abs()).collect::<Vec<_>>();
                    let run = |layer: &ConvLayer, conv: ConvFn| {
                        let mut out = vec![0f32; len * oc_pad];
                        let finish = last.then_some(Finish { res: Some(&res), maxv: 65535.0 });
                        conv(&mut ConvArgs { rows: &rows, cin_s: cs, n, layer, out: &mut out, finish });
                        out
                    };
                    let want = run(&layer, conv_portable);
                    // The scale of each output's rounding: the sum of |products| (and |bias|), from the direct
                    // kernel on absolute values, with no activation or finish.
                    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
                    let abs_rows: Vec<Vec<f32>> = rows.iter().map(|r| abs(r)).collect();
                    let abs_rows: Vec<&[f32]> = abs_rows.iter().map(|r| &r[..]).collect();
                    let abs_layer = ConvLayer {
                        k: 3,
                        cin,
                        cout,
                        oc_pad,
                        w: abs(&layer.w),
                        b: abs(&layer.b),
                        acts: Vec::new(),
                        slopes: Vec::new(),
                        res_sel: Vec::new(),
                        wino: Vec::new(),
                    };
                    let mut scale = vec![0f32; len * oc_pad];
                    conv_portable(&mut ConvArgs {
                        rows: &abs_rows,
                        cin_s: cs,
                        n,
                        layer: &abs_layer,
                        out: &mut scale,
                        finish: None,
                    });
                    layer.wino = wino_weights(&layer.w, cin, oc_pad);
                    let got = run(&layer, x86::conv_avx512);
                    for x in 0..n {
                        for o in 0..oc_pad {
                            let i = x * oc_pad + o;
                            // Both kernels round every product and partial sum (the transforms add a few more
                            // roundings): a few ULP of the sum of |products| each; quantised outputs (0..65535)
                            // may also round the other way.
                            let err = 8.0 * f32::EPSILON * scale[i] + 1e-7;
                            let tol = if last { 1.0 + 65535.0 * err } else { err };
                            let (g, e) = (got[i], want[i]);
                            assert!(
                                (g - e).abs() <= tol,
                                "cs {cs} n {n} pixel {x} channel {o}: {g} vs {e} (tol {tol})"
                            );
                        }
                    }
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 4 * 9 * 3);
    }
}
