//! The band driver: input rows -> padded f32 planes -> conv rows -> quantised planar staging -> interleaved output
//! rows, band by band, groups of bands in parallel, handed to the sink in order. The AVX-512 VBMI fast path for 8-bit
//! output skips the staging: it quantises, interleaves and replicates straight from its registers ([`FusedArgs`]).

use rayon::prelude::*;

use super::portable::LANES;
use super::{CpuPath, Image, OutRows, RowSamples, Samples, Single};

/// Output bytes one band aims at: the band's output rows stay in L2 while they are written and handed on.
const BAND_OUT_BYTES: usize = 192 << 10;
/// Extra f32/u16 elements after each padded row or staging plane, so that kernels can run whole blocks of vectors
/// past the end of a row without bounds checks: blocks are at most 8 vectors of 16 lanes, plus one vector.
const SLACK: usize = 8 * LANES + 2 * LANES;

/// Arguments of one general-path output row (`y*r + i`).
pub(crate) struct GeneralArgs<'a> {
    /// `3*k` padded rows, index `ic*k + dy`, expanded by r: output pixel `p` reads `rows[..][p + dx*r]`.
    pub rows: &'a [&'a [f32]],
    pub k: usize,
    pub r: usize,
    /// Output pixels in the row (`W*r`).
    pub n: usize,
    /// Lane-pattern weights of the `phases` row phases computed: `[phase][tap][c][16]`.
    pub w: &'a [f32],
    /// Lane-pattern bias of those row phases: `[phase][c][16]`.
    pub b: &'a [f32],
    /// Row phases computed in one call: 1, or r for kernels with `Kernels::general_all_phases` (then staging
    /// plane `phase*3 + c`).
    pub phases: usize,
    /// 255 or 65535.
    pub maxv: f32,
}

/// Arguments of one fast-path row (the 3 distinct channels of input row `y`).
pub(crate) struct FastArgs<'a> {
    /// `3*k` padded rows, index `ic*k + dy`, not expanded: input pixel `x` reads `rows[..][x + dx]`.
    pub rows: &'a [&'a [f32]],
    pub k: usize,
    /// Input pixels in the row (`W`).
    pub n: usize,
    /// `[tap][c]`.
    pub w: &'a [f32],
    pub b: [f32; 3],
    pub maxv: f32,
}

/// Quantised colour planes: plane `c` at `data[c*stride ..]`.
pub(crate) struct Staging<'a> {
    pub data: &'a mut [u16],
    pub stride: usize,
}

/// Highest index + 1 a conv kernel touches in a staging plane (and, plus `(k-1)*step`, in an input row) when it
/// covers `n` pixels with blocks of `nv` vectors advancing `l` pixels each (every store writes `LANES`).
pub(crate) fn extent(n: usize, l: usize, nv: usize) -> usize {
    n.div_ceil(l * nv) * l * nv + LANES
}

impl GeneralArgs<'_> {
    /// Like [`GeneralArgs::check`], for kernels that take *unexpanded* rows (`Kernels::general_expands`): output
    /// pixel `p` reads `rows[..][p / r + dx]`, loading 16 values from `(p0 + v*l) / r + dx`.
    // Only the AVX-512 kernel takes unexpanded rows.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn check_unexpanded(&self, l: usize, nv: usize, st: &Staging<'_>) {
        let ext = extent(self.n, l, nv);
        let taps = 3 * self.k * self.k;
        assert!(self.r >= 2 && l > 0 && l <= LANES && l.is_multiple_of(self.r));
        assert!(self.rows.len() == 3 * self.k && self.k <= 9);
        assert!(self.rows.iter().all(|row| row.len() >= ext / self.r + LANES + self.k - 1));
        assert!(self.w.len() >= self.phases * taps * 3 * LANES && self.b.len() >= self.phases * 3 * LANES);
        assert!(st.stride >= ext && st.data.len() >= (3 * self.phases - 1) * st.stride + ext);
    }

    /// Asserts every length a kernel with `l` pixels per vector and blocks of `nv` vectors relies on.
    pub(crate) fn check(&self, l: usize, nv: usize, st: &Staging<'_>) {
        let ext = extent(self.n, l, nv);
        let taps = 3 * self.k * self.k;
        assert!(l > 0 && l <= LANES && l.is_multiple_of(self.r));
        assert!(self.rows.len() == 3 * self.k && self.k <= 9);
        assert!(self.phases == 1);
        assert!(self.rows.iter().all(|row| row.len() >= ext + (self.k - 1) * self.r));
        assert!(self.w.len() >= taps * 3 * LANES && self.b.len() >= 3 * LANES);
        assert!(st.stride >= ext && st.data.len() >= 2 * st.stride + ext);
    }
}

impl FastArgs<'_> {
    /// Asserts every length a kernel with blocks of `nv` vectors of `LANES` pixels relies on.
    pub(crate) fn check(&self, nv: usize, st: &Staging<'_>) {
        let ext = self.check_rows(nv);
        assert!(st.stride >= ext && st.data.len() >= 2 * st.stride + ext);
    }

    /// Asserts the input rows and weights hold what blocks of `nv` vectors read; returns the block extent.
    pub(crate) fn check_rows(&self, nv: usize) -> usize {
        let ext = extent(self.n, LANES, nv);
        assert!(self.rows.len() == 3 * self.k && self.k <= 9);
        assert!(self.rows.iter().all(|row| row.len() >= ext + self.k - 1));
        assert!(self.w.len() >= 3 * self.k * self.k * 3);
        ext
    }
}

/// The output side of a fused fast-path kernel (8-bit): each 16-pixel conv vector is quantised and packed to bytes
/// with its alpha; groups of `group` vectors are then permuted into whole 64-byte lines of output (`lines`), each
/// stored into the r identical output rows. Line-sized stores at line-sized steps stay aligned when the output row
/// is (see `BandBuf::out8_off`), where 96-byte steps would split every other store across two cache lines.
// Only the AVX-512 kernel reads it; other architectures build it for a `None` kernel.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct FusedArgs<'a> {
    /// Alpha per input pixel, or `None` for RGB output.
    pub alpha: Option<&'a [u16]>,
    pub r: usize,
    /// Vectors per group: the fewest whose output is whole 64-byte lines (1, 2 or 4).
    pub group: usize,
    /// The output lines of one group, [`fused_lines`]`(r, nc)`.
    pub lines: &'a [FusedLine],
}

/// One 64-byte output line of a group: `_mm512_permutex2var_epi8` of packed vectors `src` and `src + 1`.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct FusedLine {
    pub src: usize,
    pub idx: [u8; 64],
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl FusedArgs<'_> {
    /// Output channels: 3 or 4.
    pub(crate) fn nc(&self) -> usize {
        if self.alpha.is_some() {
            4
        } else {
            3
        }
    }

    /// Asserts every length a fused kernel writing rows of `n` input pixels with blocks of `nv` vectors relies on.
    pub(crate) fn check(&self, n: usize, nv: usize, out_len: usize) {
        let nc = self.nc();
        assert!(self.r >= 1 && self.group >= 1 && nv.is_multiple_of(self.group));
        if let Some(a) = self.alpha {
            assert!(a.len() >= extent(n, LANES, nv));
        }
        assert!(self.lines.len() == self.group * LANES * self.r * nc / 64);
        assert!(self.lines.iter().all(|l| l.src < self.group));
        assert!(out_len >= self.r * n * self.r * nc);
    }
}

/// The lines of a fused kernel's group, and the group size.
///
/// Packed vector layout (`_mm512_packus_epi32` then `_mm512_packus_epi16` of R, G, B, A): 128-bit lane `j / 4`
/// holds `[R G B A]` x 4 pixels, so pixel `j`'s channel `c` is byte `16 * (j / 4) + 4 * c + j % 4`. Output pixel
/// `p` of a group shows input pixel `p / r`, of vector `p / r / 16`; a 64-byte line never spans more than two
/// vectors, because one vector's output (`16 * r * nc` bytes) is at least 64 bytes.
pub(crate) fn fused_lines(r: usize, nc: usize) -> (usize, Vec<FusedLine>) {
    let per_vec = LANES * r * nc;
    let group = 64 / gcd(64, per_vec);
    let lines = (0..group * per_vec / 64)
        .map(|z| {
            let src = 64 * z / per_vec;
            let idx = std::array::from_fn(|b| {
                let q = 64 * z + b;
                let (i, c) = (q / nc / r, q % nc);
                let (v, j) = (i / LANES, i % LANES);
                ((v - src) * 64 + 16 * (j / 4) + 4 * c + j % 4) as u8
            });
            FusedLine { src, idx }
        })
        .collect();
    (group, lines)
}

/// Arguments of one interleave: planar quantised colour (+ raw alpha) -> one interleaved output row.
pub(crate) struct InterleaveArgs<'a> {
    /// Three colour planes, plane `c` at `planes[c*stride ..]`.
    pub planes: &'a [u16],
    pub stride: usize,
    /// Output pixels per colour sample: 1 (general path, planes in output-pixel order) or r (fast path).
    pub rep_c: usize,
    /// Alpha per input pixel (each repeated r times), or `None` for RGB output.
    pub alpha: Option<&'a [u16]>,
    pub r: usize,
    /// Output pixels in the row.
    pub n: usize,
    /// Identical output rows to write, one after the other (r on the fast path, whose blocks are uniform).
    pub copies: usize,
    /// Word permutations for AVX-512, one per phase of 16-pixel chunks (see [`interleave_tables`]).
    pub tables: &'a [[u16; 64]],
    /// Byte permutations for AVX-512 VBMI, one per phase of 32-pixel chunks (see [`byte_tables`]).
    pub btables: &'a [ByteTable],
}

/// How to build 64 output bytes of a 32-pixel chunk from `[R G]` and `[B A]` (32 u16 samples each, the low byte
/// taken): `idx[0]` indexes `R|G` bytes, `idx[1]` `B|A` bytes, `mask` bit set where the byte comes from `B|A`.
#[derive(Clone, Copy)]
pub(crate) struct ByteTable {
    pub idx: [[[u8; 64]; 2]; 2],
    pub mask: [u64; 2],
}

/// Byte permutations for 32-pixel chunks: entry `s` serves chunks `32*s'` with `s' % period == s`,
/// period `r / gcd(32, r)`.
pub(crate) fn byte_tables(rep_c: usize, r: usize, nc: usize) -> Vec<ByteTable> {
    let period = r / gcd(2 * LANES, r);
    (0..period)
        .map(|s| {
            let p0 = 2 * LANES * s;
            let mut t = ByteTable { idx: [[[0; 64]; 2]; 2], mask: [0; 2] };
            for q in 0..2 * LANES * nc {
                let (z, b) = (q / 64, q % 64);
                let (p, c) = (p0 + q / nc, q % nc);
                let w = if c < 3 { p / rep_c - p0 / rep_c } else { p / r - p0 / r };
                let byte = ((c % 2) * 64 + 2 * w) as u8;
                if c < 2 {
                    t.idx[z][0][b] = byte;
                } else {
                    t.idx[z][1][b] = byte;
                    t.mask[z] |= 1 << b;
                }
            }
            t
        })
        .collect()
}

impl InterleaveArgs<'_> {
    /// Output channels: 3 or 4.
    pub(crate) fn nc(&self) -> usize {
        if self.alpha.is_some() {
            4
        } else {
            3
        }
    }
    /// Asserts every length an interleave kernel relies on: every 16-pixel chunk loads 16 samples per plane.
    pub(crate) fn check(&self, out_len: usize) {
        assert!(self.n > 0 && (self.rep_c == 1 || self.rep_c == self.r) && self.r >= 1);
        // Kernels load windows of up to 32 samples per plane.
        assert!(self.stride >= (self.n - 1) / self.rep_c + 2 * LANES);
        assert!(self.planes.len() >= 2 * self.stride + (self.n - 1) / self.rep_c + 2 * LANES);
        if let Some(a) = self.alpha {
            assert!(a.len() >= (self.n - 1) / self.r + 2 * LANES);
        }
        assert!(self.tables.len() == self.r / gcd(LANES, self.r));
        assert!(self.btables.len() == self.r / gcd(2 * LANES, self.r));
        assert!(self.copies >= 1 && out_len >= self.copies * self.n * self.nc());
    }

    /// Repeats the first output row into the other `copies - 1` (for kernels that write one row).
    pub(crate) fn replicate<T: Copy>(&self, out: &mut [T]) {
        let row = self.n * self.nc();
        for j in 1..self.copies {
            out.copy_within(0..row, j * row);
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Word permutations for interleaving 16 output pixels from `[R(16) G(16) B(16) A(16)]` (one 16-sample window per
/// plane, starting at the chunk's first sample): entry `s` serves chunks whose first pixel `p0 = 16*s'` has
/// `s' % period == s`, period `r / gcd(16, r)` (the pattern of `p0 % r`).
pub(crate) fn interleave_tables(rep_c: usize, r: usize, nc: usize) -> Vec<[u16; 64]> {
    let period = r / gcd(LANES, r);
    (0..period)
        .map(|s| {
            let p0 = LANES * s;
            let mut t = [0u16; 64];
            for (q, e) in t.iter_mut().enumerate().take(LANES * nc) {
                let (p, c) = (p0 + q / nc, q % nc);
                *e = if c < 3 { c * LANES + p / rep_c - p0 / rep_c } else { 3 * LANES + p / r - p0 / r } as u16;
            }
            t
        })
        .collect()
}

/// One input row, interleaved, `ic` channels.
#[derive(Clone, Copy)]
pub(crate) enum SrcRow<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
}

/// Arguments of one row load: `n` pixels of `src` -> three f32 rows (`v / 255` or `v / 65535`; gray fills all
/// three with channel 0; alpha is skipped).
pub(crate) struct LoadArgs<'a> {
    pub src: SrcRow<'a>,
    pub ic: usize,
    pub n: usize,
}

impl LoadArgs<'_> {
    /// Asserts the lengths a load kernel relies on: it may write whole 16-lane vectors (zeros past `n`).
    pub(crate) fn check(&self, dst: &[&mut [f32]; 3]) {
        let len = match self.src {
            SrcRow::U8(s) => s.len(),
            SrcRow::U16(s) => s.len(),
        };
        assert!((1..=4).contains(&self.ic) && len == self.n * self.ic);
        assert!(dst.iter().all(|d| d.len() >= self.n.next_multiple_of(LANES)));
    }
}

/// Arguments of one row expansion: `dst[p] = src[p / e]` for `p < n * e`.
pub(crate) struct ExpandArgs<'a> {
    pub src: &'a [f32],
    pub e: usize,
    pub n: usize,
    /// f32 lane permutations for AVX-512, one per phase of 16-value chunks (see [`expand_tables`]).
    pub tables: &'a [[u32; 16]],
}

impl ExpandArgs<'_> {
    /// Asserts the lengths an expand kernel relies on: it loads 16 source values per 16 outputs and may write whole
    /// 16-lane vectors (copies of the source past `n`).
    pub(crate) fn check(&self, dst: &[f32]) {
        assert!(self.e >= 1 && self.src.len() >= self.n + LANES);
        assert!(dst.len() >= (self.n * self.e).next_multiple_of(LANES));
        assert!(self.tables.len() == self.e / gcd(LANES, self.e));
    }
}

/// Lane permutations for expanding by `e`: entry `s` serves output chunks `16*s'` with `s' % period == s`.
pub(crate) fn expand_tables(e: usize) -> Vec<[u32; 16]> {
    let period = e / gcd(LANES, e);
    (0..period)
        .map(|s| {
            let p0 = LANES * s;
            std::array::from_fn(|l| ((p0 + l) / e - p0 / e) as u32)
        })
        .collect()
}

/// The kernels of one CPU path.
pub(crate) struct Kernels {
    pub load: fn(&LoadArgs<'_>, &mut [&mut [f32]; 3]),
    pub expand: fn(&ExpandArgs<'_>, &mut [f32]),
    pub general: fn(&GeneralArgs<'_>, &mut Staging<'_>),
    /// Whether `general` expands input rows by r itself (in registers): then rows are loaded unexpanded.
    pub general_expands: bool,
    /// Whether `general` computes all r row phases of an input row in one call.
    pub general_all_phases: bool,
    pub fast: fn(&FastArgs<'_>, &mut Staging<'_>),
    /// Fast path, 8-bit output: conv, quantise, interleave and replicate in one pass (no staging), where the CPU
    /// path has one.
    pub fast_fused8: Option<fn(&FastArgs<'_>, &FusedArgs<'_>, &mut [u8])>,
    pub interleave8: fn(&InterleaveArgs<'_>, &mut [u8]),
    pub interleave16: fn(&InterleaveArgs<'_>, &mut [u16]),
}

impl Kernels {
    /// The one dispatch point. `path` must be supported (the SIMD wrappers assert it); `vbmi`: the AVX-512 path
    /// uses its VBMI kernels (`Options::uses_vbmi`, which checked the CPU).
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    pub(crate) fn for_path(path: CpuPath, vbmi: bool) -> Kernels {
        use super::portable;
        match path {
            #[cfg(target_arch = "x86_64")]
            CpuPath::Avx512 => Kernels {
                load: if vbmi { super::avx512::load_vbmi } else { super::avx512::load },
                expand: super::avx512::expand,
                general: super::avx512::conv_general,
                general_expands: true,
                general_all_phases: true,
                fast: super::avx512::conv_fast,
                fast_fused8: vbmi.then_some(super::avx512::conv_fast_fused8 as _),
                interleave8: if vbmi { super::avx512::interleave8_vbmi } else { super::avx512::interleave8 },
                interleave16: super::avx512::interleave16,
            },
            #[cfg(target_arch = "x86_64")]
            CpuPath::Avx2Fma => Kernels {
                load: super::avx2::load,
                expand: super::avx2::expand,
                general: super::avx2::conv_general,
                general_expands: false,
                general_all_phases: false,
                fast: super::avx2::conv_fast,
                fast_fused8: None,
                interleave8: super::avx2::interleave8,
                interleave16: super::avx2::interleave16,
            },
            #[cfg(target_arch = "aarch64")]
            CpuPath::Neon => Kernels {
                load: portable::load,
                expand: portable::expand,
                general: super::neon::conv_general,
                general_expands: false,
                general_all_phases: false,
                fast: super::neon::conv_fast,
                fast_fused8: None,
                interleave8: portable::interleave8,
                interleave16: portable::interleave16,
            },
            _ => Kernels {
                load: portable::load,
                expand: portable::expand,
                general: portable::conv_general,
                general_expands: false,
                general_all_phases: false,
                fast: portable::conv_fast,
                fast_fused8: None,
                interleave8: portable::interleave8,
                interleave16: portable::interleave16,
            },
        }
    }
}

/// Everything fixed for one `upscale_streaming` call.
pub(crate) struct Plan<'a> {
    up: &'a Single,
    img: &'a Image,
    kernels: Kernels,
    w: usize,
    h: usize,
    r: usize,
    k: usize,
    pad: usize,
    /// Input channels (1..=4) and output channels (3 or 4).
    ic: usize,
    nc: usize,
    fast: bool,
    /// Expansion of the input planes: r on the general path, 1 on the fast path.
    e: usize,
    /// Pixels per conv row: `W*r` (general) or `W` (fast).
    n_conv: usize,
    /// Output pixels per row, `W*r`.
    n_out: usize,
    row_stride: usize,
    st_stride: usize,
    band_h: usize,
    maxv: f32,
    tables: Vec<[u16; 64]>,
    btables: Vec<ByteTable>,
    fused_group: usize,
    fused_lines: Vec<FusedLine>,
    expand_tables: Vec<[u32; 16]>,
    /// Stride of the unexpanded rows `load` writes before `expand`.
    tmp_stride: usize,
}

/// Band buffers kept by the calling thread between calls, so that repeated calls (the service, benchmarks) do not
/// fault in fresh pages every time. At most `BufCache::MAX_BYTES` stay cached per thread.
struct BufCache;

thread_local! {
    static CACHE: std::cell::RefCell<Vec<BandBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl BufCache {
    const MAX_BYTES: usize = 32 << 20;

    fn take(n: usize) -> Vec<BandBuf> {
        let mut v = CACHE.with(|c| std::mem::take(&mut *c.borrow_mut()));
        v.resize_with(n, BandBuf::default);
        v
    }

    fn give_back(mut v: Vec<BandBuf>) {
        let mut total = 0;
        v.retain(|b| {
            total += b.bytes();
            total <= Self::MAX_BYTES
        });
        CACHE.with(|c| *c.borrow_mut() = v);
    }
}

/// The working set of one band; reused across groups (and calls, see `BufCache`).
///
/// Invariant: for a given `geom`, the padding and slack of `planes` and the tail of `tmp` are zero. Kernels only
/// ever write zeros there, and a buffer is cleared when the geometry changes.
#[derive(Default)]
pub(crate) struct BandBuf {
    geom: [usize; 7],
    planes: Vec<f32>,
    tmp: Vec<f32>,
    staging: Vec<u16>,
    alpha: Vec<u16>,
    /// 8-bit output rows at `out8[out8_off..]`, 64-byte aligned (see [`FusedArgs`]).
    out8: Vec<u8>,
    out8_off: usize,
    out16: Vec<u16>,
    first_row: u32,
    rows: u32,
}

impl BandBuf {
    fn bytes(&self) -> usize {
        4 * (self.planes.capacity() + self.tmp.capacity())
            + 2 * (self.staging.capacity() + self.alpha.capacity() + self.out16.capacity())
            + self.out8.capacity()
    }
}

impl<'a> Plan<'a> {
    pub(crate) fn new(up: &'a Single, path: CpuPath, vbmi: bool, img: &'a Image) -> Plan<'a> {
        assert!(
            super::output_dims(img.width, img.height, up.kernel.scale()).is_some(),
            "output dimensions overflow u32: callers bound the input size first"
        );
        let (w, h) = (img.width as usize, img.height as usize);
        let r = up.kernel.scale() as usize;
        let k = up.kernel.kernel_size() as usize;
        let pad = k / 2;
        let fast = up.tied;
        let kernels = Kernels::for_path(path, vbmi);
        let e = if fast || kernels.general_expands { 1 } else { r };
        let n_conv = if fast { w } else { w * r };
        let n_out = w * r;
        let nc = img.out_channels() as usize;
        let bytes = if img.bit_depth() == 8 { 1 } else { 2 };
        let row_stride = ((w + 2 * pad) * e + SLACK).next_multiple_of(LANES);
        let st_stride = (n_conv + SLACK).next_multiple_of(LANES);
        let per_in_row = (r * n_out * nc * bytes).max(1);
        let (fused_group, fused_lines) = fused_lines(r, nc);
        let band_h = (BAND_OUT_BYTES / per_in_row).clamp(1, h.max(1));
        Plan {
            up,
            img,
            kernels,
            w,
            h,
            r,
            k,
            pad,
            ic: img.channels as usize,
            nc,
            fast,
            e,
            n_conv,
            n_out,
            row_stride,
            st_stride,
            band_h,
            maxv: if bytes == 1 { 255.0 } else { 65535.0 },
            tables: interleave_tables(if fast { r } else { 1 }, r, nc),
            btables: byte_tables(if fast { r } else { 1 }, r, nc),
            fused_group,
            fused_lines,
            expand_tables: expand_tables(e),
            tmp_stride: w.next_multiple_of(LANES) + LANES,
        }
    }

    /// Computes every band, group by group, and hands each band's rows to `sink` in order.
    pub(crate) fn run<E>(&self, mut sink: impl FnMut(OutRows<'_>) -> Result<(), E>) -> Result<(), E> {
        if self.w == 0 || self.h == 0 {
            return Ok(());
        }
        let n_bands = self.h.div_ceil(self.band_h);
        // 16 bands per thread per group: fewer fork-join barriers (threads sleeping and waking between groups was
        // ~11% of the ICNR path's profile) for a working set of a few MB.
        let group = (16 * rayon::current_num_threads()).clamp(1, n_bands);
        let mut bufs = BufCache::take(group);
        let res = self.run_groups(n_bands, group, &mut bufs, &mut sink);
        BufCache::give_back(bufs);
        res
    }

    fn run_groups<E>(
        &self,
        n_bands: usize,
        group: usize,
        bufs: &mut [BandBuf],
        sink: &mut impl FnMut(OutRows<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        for g0 in (0..n_bands).step_by(group) {
            let n = group.min(n_bands - g0);
            bufs[..n].par_iter_mut().enumerate().for_each(|(j, buf)| self.run_band(g0 + j, buf));
            for buf in &bufs[..n] {
                let len = buf.rows as usize * self.n_out * self.nc;
                let samples = match self.img.samples {
                    Samples::U8(_) => RowSamples::U8(&buf.out8[buf.out8_off..buf.out8_off + len]),
                    Samples::U16(_) => RowSamples::U16(&buf.out16[..len]),
                };
                sink(OutRows {
                    first_row: buf.first_row,
                    rows: buf.rows,
                    width: self.n_out as u32,
                    channels: self.nc as u8,
                    samples,
                })?;
            }
        }
        Ok(())
    }

    /// Loads input row `y` (zeros outside the image) into ring slot `slot` of the three planes.
    fn load_row(&self, y: isize, slot: usize, planes: &mut [f32], tmp: &mut [f32]) {
        let (w, e) = (self.w, self.e);
        let plane_len = self.k * self.row_stride;
        let vec_len = (w * e).next_multiple_of(LANES);
        let [p0, p1, p2] = plane_rows(planes, plane_len, slot * self.row_stride + self.pad * e, vec_len);
        if y < 0 || y >= self.h as isize {
            for d in [p0, p1, p2] {
                d[..w * e].fill(0.0);
            }
            return;
        }
        let y = y as usize;
        let row = w * self.ic;
        let src = match &self.img.samples {
            Samples::U8(s) => SrcRow::U8(&s[y * row..(y + 1) * row]),
            Samples::U16(s) => SrcRow::U16(&s[y * row..(y + 1) * row]),
        };
        let la = LoadArgs { src, ic: self.ic, n: w };
        if e == 1 {
            (self.kernels.load)(&la, &mut [p0, p1, p2]);
        } else {
            let [t0, t1, t2] = plane_rows(tmp, self.tmp_stride, 0, self.tmp_stride);
            (self.kernels.load)(&la, &mut [&mut t0[..], &mut t1[..], &mut t2[..]]);
            for (t, d) in [t0, t1, t2].into_iter().zip([p0, p1, p2]) {
                let ea = ExpandArgs { src: t, e, n: w, tables: &self.expand_tables };
                (self.kernels.expand)(&ea, d);
            }
        }
    }

    fn run_band(&self, band: usize, buf: &mut BandBuf) {
        let (r, k, pad, e, w) = (self.r, self.k, self.pad, self.e, self.w);
        let y0 = band * self.band_h;
        let y1 = (y0 + self.band_h).min(self.h);
        let nb = y1 - y0;
        // A ring of k padded rows per plane: input row `yy` lives in slot `(yy + pad) % k`.
        let plane_len = k * self.row_stride;
        // Pixel 0 of every padded row 64-byte aligned (row strides are multiples of 16 f32): the loads' stores never
        // split across cache lines.
        buf.planes.resize(3 * plane_len + LANES, 0.0);
        let planes_off = buf.planes[pad * e..].as_ptr().align_offset(64).min(LANES - 1);
        let geom = [plane_len, self.row_stride, self.tmp_stride, pad, e, w, planes_off];
        if buf.geom != geom {
            buf.geom = geom;
            buf.planes.fill(0.0);
            buf.tmp.clear();
        }
        buf.tmp.resize(3 * self.tmp_stride, 0.0);
        buf.staging.resize(3 * r * self.st_stride, 0);
        buf.alpha.resize(w + SLACK, 0);
        let out_row = self.n_out * self.nc;
        let out_len = nb * r * out_row;
        match self.img.samples {
            Samples::U8(_) => {
                buf.out8.resize(out_len + 63, 0);
                buf.out8_off = buf.out8.as_ptr().align_offset(64).min(63);
            }
            Samples::U16(_) => buf.out16.resize(out_len, 0),
        }
        buf.first_row = (y0 * r) as u32;
        buf.rows = (nb * r) as u32;
        let slot = |yy: isize| (yy + pad as isize) as usize % k;
        for yy in y0 as isize - pad as isize..(y0 + pad) as isize {
            self.load_row(yy, slot(yy), &mut buf.planes[planes_off..], &mut buf.tmp);
        }

        let BandBuf { planes, tmp, staging, alpha: alpha_buf, out8, out8_off, out16, .. } = buf;
        let planes = &mut planes[planes_off..planes_off + 3 * plane_len];
        let out8 = &mut out8[*out8_off..];
        for ly in 0..nb {
            let y = y0 + ly;
            let ahead = (y + pad) as isize;
            self.load_row(ahead, slot(ahead), planes, tmp);
            let planes: &[f32] = planes;
            let alpha = if self.nc == 4 {
                let row = &mut alpha_buf[..];
                match &self.img.samples {
                    Samples::U8(s) => {
                        for (d, px) in
                            row.iter_mut().zip(s[y * w * self.ic..(y + 1) * w * self.ic].chunks_exact(self.ic))
                        {
                            *d = px[self.ic - 1] as u16;
                        }
                    }
                    Samples::U16(s) => {
                        for (d, px) in
                            row.iter_mut().zip(s[y * w * self.ic..(y + 1) * w * self.ic].chunks_exact(self.ic))
                        {
                            *d = px[self.ic - 1];
                        }
                    }
                }
                Some(&alpha_buf[..])
            } else {
                None
            };
            let mut rows: [&[f32]; 27] = [&[]; 27];
            for ic in 0..3 {
                for dy in 0..k {
                    let at = ic * plane_len + slot((y + dy) as isize - pad as isize) * self.row_stride;
                    rows[ic * k + dy] = &planes[at..at + self.row_stride];
                }
            }
            let rows = &rows[..3 * k];
            let mut st = Staging { data: &mut staging[..], stride: self.st_stride };
            let per = 3 * k * k * 3 * LANES;
            let general = |i: usize, phases: usize, st: &mut Staging<'_>| {
                let args = GeneralArgs {
                    rows,
                    k,
                    r,
                    n: self.n_conv,
                    w: &self.up.prep.wv[i * per..(i + phases) * per],
                    b: &self.up.prep.bv[i * 3 * LANES..(i + phases) * 3 * LANES],
                    phases,
                    maxv: self.maxv,
                };
                (self.kernels.general)(&args, st);
            };
            let all_phases = !self.fast && self.kernels.general_all_phases;
            if all_phases {
                general(0, r, &mut st);
            }
            let copies = if self.fast { r } else { 1 };
            for i in 0..if self.fast { 1 } else { r } {
                if self.fast {
                    let args =
                        FastArgs { rows, k, n: self.n_conv, w: &self.up.prep.w0, b: self.up.prep.b0, maxv: self.maxv };
                    if let (Some(fused), Samples::U8(_)) = (self.kernels.fast_fused8, &self.img.samples) {
                        let fa = FusedArgs { alpha, r, group: self.fused_group, lines: &self.fused_lines };
                        let o = ly * r * out_row;
                        fused(&args, &fa, &mut out8[o..o + r * out_row]);
                        continue;
                    }
                    (self.kernels.fast)(&args, &mut st);
                } else if !all_phases {
                    general(i, 1, &mut st);
                }
                let at = if all_phases { 3 * i * self.st_stride } else { 0 };
                let ia = InterleaveArgs {
                    planes: &st.data[at..],
                    stride: self.st_stride,
                    rep_c: if self.fast { r } else { 1 },
                    alpha,
                    r,
                    n: self.n_out,
                    copies,
                    tables: &self.tables,
                    btables: &self.btables,
                };
                let o = (ly * r + i) * out_row;
                let len = copies * out_row;
                match self.img.samples {
                    Samples::U8(_) => (self.kernels.interleave8)(&ia, &mut out8[o..o + len]),
                    Samples::U16(_) => (self.kernels.interleave16)(&ia, &mut out16[o..o + len]),
                }
            }
        }
    }
}

/// Three disjoint `len`-long rows at `at` in each of the three planes of `buf` (plane `c` at `c * plane_len`).
fn plane_rows(buf: &mut [f32], plane_len: usize, at: usize, len: usize) -> [&mut [f32]; 3] {
    let (a, rest) = buf.split_at_mut(plane_len);
    let (b, c) = rest.split_at_mut(plane_len);
    [&mut a[at..at + len], &mut b[at..at + len], &mut c[at..at + len]]
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::engine::{test_report, Options, AVX512_NO_VBMI};

    /// `avx512` takes the VBMI kernels (fused 8-bit fast path, byte-permute load and interleave) on a CPU with
    /// VBMI; `avx512-novbmi` never does.
    #[test]
    fn vbmi_is_switched_off_at_the_dispatch() {
        let without = Options::forced(AVX512_NO_VBMI).unwrap();
        let with = Options::forced("avx512").unwrap();
        if !with.is_supported() {
            test_report("SKIP path avx512 in band::vbmi_is_switched_off_at_the_dispatch: not supported by this CPU");
            return;
        }
        type Interleave8 = fn(&InterleaveArgs<'_>, &mut [u8]);
        type Load = fn(&LoadArgs<'_>, &mut [&mut [f32]; 3]);
        let k = Kernels::for_path(without.path, without.uses_vbmi());
        assert!(k.fast_fused8.is_none());
        assert!(std::ptr::fn_addr_eq(k.interleave8, super::super::avx512::interleave8 as Interleave8));
        assert!(std::ptr::fn_addr_eq(k.load, super::super::avx512::load as Load));
        if !with.uses_vbmi() {
            test_report("SKIP path avx512 in band::vbmi_is_switched_off_at_the_dispatch: this CPU lacks avx512vbmi");
            return;
        }
        let k = Kernels::for_path(with.path, with.uses_vbmi());
        assert!(k.fast_fused8.is_some());
        assert!(std::ptr::fn_addr_eq(k.interleave8, super::super::avx512::interleave8_vbmi as Interleave8));
        assert!(std::ptr::fn_addr_eq(k.load, super::super::avx512::load_vbmi as Load));
    }
}
