//! The band driver: input rows -> padded f32 planes -> conv rows -> quantised planar staging -> interleaved output
//! rows, band by band, groups of bands in parallel, handed to the sink in order. The AVX-512 VBMI fast path for 8-bit
//! output skips the staging: it quantises, interleaves and replicates straight from its registers ([`FusedArgs`]).

use rayon::prelude::*;

use super::image::{output_dims, Image, OutRows, RowSamples, Samples};
use super::kernels::{
    byte_tables, expand_tables, fused_lines, interleave_tables, ByteTable, ExpandArgs, FastArgs, FusedArgs, FusedLine,
    GeneralArgs, InterleaveArgs, Kernels, LoadArgs, SrcRow, Staging, LANES,
};
#[cfg(target_arch = "aarch64")]
use super::neon;
use super::path::CpuPath;
use super::portable;
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};
use crate::kernel::{Kernel, IN_CHANNELS};

/// Output bytes one band aims at: the band's output rows stay in L2 while they are written and handed on.
const BAND_OUT_BYTES: usize = 192 << 10;
/// Extra f32/u16 elements after each padded row or staging plane, so that kernels can run whole blocks of vectors
/// past the end of a row without bounds checks: blocks are at most 8 vectors of 16 lanes, plus one vector.
const SLACK: usize = 8 * LANES + 2 * LANES;

/// The one dispatch point. `path` must be supported (the SIMD wrappers assert it); `vbmi`: the AVX-512 path
/// uses its VBMI kernels (`Options::uses_vbmi`, which checked the CPU).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) fn kernels_for(path: CpuPath, vbmi: bool) -> Kernels {
    match path {
        #[cfg(target_arch = "x86_64")]
        CpuPath::Avx512 => Kernels {
            load: if vbmi { avx512::load_vbmi } else { avx512::load },
            expand: avx512::expand,
            general: avx512::conv_general,
            general_expands: true,
            general_all_phases: true,
            fast: avx512::conv_fast,
            fast_fused8: vbmi.then_some(avx512::conv_fast_fused8 as _),
            interleave8: if vbmi { avx512::interleave8_vbmi } else { avx512::interleave8 },
            interleave16: avx512::interleave16,
        },
        #[cfg(target_arch = "x86_64")]
        CpuPath::Avx2Fma => Kernels {
            load: avx2::load,
            expand: avx2::expand,
            general: avx2::conv_general,
            general_expands: false,
            general_all_phases: false,
            fast: avx2::conv_fast,
            fast_fused8: None,
            interleave8: avx2::interleave8,
            interleave16: avx2::interleave16,
        },
        #[cfg(target_arch = "aarch64")]
        CpuPath::Neon => Kernels {
            load: portable::load,
            expand: portable::expand,
            general: neon::conv_general,
            general_expands: false,
            general_all_phases: false,
            fast: neon::conv_fast,
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

impl Single {
    /// Prepares `kernel`; the fast path runs when allowed and the kernel is tied ([`is_tied`]).
    pub(crate) fn new(kernel: &Kernel, allow_fast_path: bool) -> Single {
        Single { kernel: kernel.clone(), tied: allow_fast_path && is_tied(kernel), prep: Prepared::new(kernel) }
    }
}

impl Prepared {
    fn new(kernel: &Kernel) -> Prepared {
        let r = kernel.scale() as usize;
        let rr = r * r;
        let k = kernel.kernel_size() as usize;
        let taps = IN_CHANNELS * k * k;
        let lanes = LANES;
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
            output_dims(img.width, img.height, up.kernel.scale()).is_some(),
            "output dimensions overflow u32: callers bound the input size first"
        );
        let (w, h) = (img.width as usize, img.height as usize);
        let r = up.kernel.scale() as usize;
        let k = up.kernel.kernel_size() as usize;
        let pad = k / 2;
        let fast = up.tied;
        let kernels = kernels_for(path, vbmi);
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
            let row = Row { ly, rows: &rows[..3 * k], alpha };
            let mut st = Staging { data: &mut staging[..], stride: self.st_stride };
            match (self.fast, self.kernels.fast_fused8, &self.img.samples) {
                (true, Some(fused), Samples::U8(_)) => self.row_fast_fused8(fused, &row, out8),
                (true, _, _) => self.row_fast(&row, &mut st, out8, out16),
                (false, _, _) => self.row_general(&row, &mut st, out8, out16),
            }
        }
    }

    /// ICNR fast path, 8-bit output, fused kernel: conv, quantise, interleave and replicate into the r output rows of
    /// input row `row.ly`, with no staging.
    #[inline]
    fn row_fast_fused8(&self, fused: FastFused8, row: &Row<'_>, out8: &mut [u8]) {
        let r = self.r;
        let args = self.fast_args(row);
        let fa = FusedArgs { alpha: row.alpha, r, group: self.fused_group, lines: &self.fused_lines };
        let out_row = self.n_out * self.nc;
        let o = row.ly * r * out_row;
        fused(&args, &fa, &mut out8[o..o + r * out_row]);
    }

    /// ICNR fast path: the 3 distinct channels of input row `row.ly` into the staging, then interleaved and
    /// replicated into its r output rows.
    #[inline]
    fn row_fast(&self, row: &Row<'_>, st: &mut Staging<'_>, out8: &mut [u8], out16: &mut [u16]) {
        (self.kernels.fast)(&self.fast_args(row), st);
        self.interleave(row, st, 0, 0, self.r, out8, out16);
    }

    /// General path: every row phase `i` of input row `row.ly` (all at once where the kernel can), each interleaved
    /// into output row `ly*r + i`.
    #[inline]
    fn row_general(&self, row: &Row<'_>, st: &mut Staging<'_>, out8: &mut [u8], out16: &mut [u16]) {
        let (r, k) = (self.r, self.k);
        let per = 3 * k * k * 3 * LANES;
        let conv = |i: usize, phases: usize, st: &mut Staging<'_>| {
            let args = GeneralArgs {
                rows: row.rows,
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
        if self.kernels.general_all_phases {
            conv(0, r, st);
            for i in 0..r {
                self.interleave(row, st, 3 * i * self.st_stride, i, 1, out8, out16);
            }
        } else {
            for i in 0..r {
                conv(i, 1, st);
                self.interleave(row, st, 0, i, 1, out8, out16);
            }
        }
    }

    fn fast_args<'b>(&'b self, row: &Row<'b>) -> FastArgs<'b> {
        FastArgs { rows: row.rows, k: self.k, n: self.n_conv, w: &self.up.prep.w0, b: self.up.prep.b0, maxv: self.maxv }
    }

    /// Interleaves the staging planes at `at` (with alpha) into output row `ly*r + i` and the `copies - 1` rows
    /// after it.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn interleave(
        &self,
        row: &Row<'_>,
        st: &Staging<'_>,
        at: usize,
        i: usize,
        copies: usize,
        out8: &mut [u8],
        out16: &mut [u16],
    ) {
        let r = self.r;
        let ia = InterleaveArgs {
            planes: &st.data[at..],
            stride: self.st_stride,
            rep_c: if self.fast { r } else { 1 },
            alpha: row.alpha,
            r,
            n: self.n_out,
            copies,
            tables: &self.tables,
            btables: &self.btables,
        };
        let out_row = self.n_out * self.nc;
        let o = (row.ly * r + i) * out_row;
        let len = copies * out_row;
        match self.img.samples {
            Samples::U8(_) => (self.kernels.interleave8)(&ia, &mut out8[o..o + len]),
            Samples::U16(_) => (self.kernels.interleave16)(&ia, &mut out16[o..o + len]),
        }
    }
}

/// One input row of a band, ready for the conv kernels.
struct Row<'a> {
    /// The row's index in its band.
    ly: usize,
    /// The `3*k` padded input rows its outputs read (`ic*k + dy`).
    rows: &'a [&'a [f32]],
    /// Its alpha samples, for 4-channel output.
    alpha: Option<&'a [u16]>,
}

/// The fused 8-bit fast-path kernel's type (see [`Kernels::fast_fused8`]).
type FastFused8 = fn(&FastArgs<'_>, &FusedArgs<'_>, &mut [u8]);

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
        let k = kernels_for(without.path, without.uses_vbmi());
        assert!(k.fast_fused8.is_none());
        assert!(std::ptr::fn_addr_eq(k.interleave8, super::avx512::interleave8 as Interleave8));
        assert!(std::ptr::fn_addr_eq(k.load, super::avx512::load as Load));
        if !with.uses_vbmi() {
            test_report("SKIP path avx512 in band::vbmi_is_switched_off_at_the_dispatch: this CPU lacks avx512vbmi");
            return;
        }
        let k = kernels_for(with.path, with.uses_vbmi());
        assert!(k.fast_fused8.is_some());
        assert!(std::ptr::fn_addr_eq(k.interleave8, super::avx512::interleave8_vbmi as Interleave8));
        assert!(std::ptr::fn_addr_eq(k.load, super::avx512::load_vbmi as Load));
    }
}
