//! The kernel interface of the single-layer engine: the argument struct of each kernel with the lengths it relies on
//! (each `check` asserts them; the SIMD kernels call it before any unchecked access), the dispatch table of one CPU
//! path ([`Kernels`]) and the permutation tables the kernels read. The per-ISA files (`portable`, `avx2`, `avx512`,
//! `neon`) and the band driver (`band`) import this module; it imports none of them.

/// Lanes of the widest vector (AVX-512, 16 x f32): rows and staging planes are padded to whole vectors of it.
pub const LANES: usize = 16;

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
