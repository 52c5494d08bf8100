//! Portable kernels, written to auto-vectorise (fixed 16-lane arrays, `chunks_exact`). The conv kernels are generic
//! over `FUSED`: `false` (this path) multiplies then adds, as baseline x86-64 has no FMA; `true` uses `mul_add`,
//! which the NEON path compiles to `fmla`.

pub use super::kernels::LANES;
use super::kernels::{ExpandArgs, FastArgs, GeneralArgs, InterleaveArgs, LoadArgs, SrcRow, Staging};

#[inline(always)]
fn madd<const FUSED: bool>(w: f32, x: f32, acc: f32) -> f32 {
    if FUSED {
        w.mul_add(x, acc)
    } else {
        acc + w * x
    }
}

/// `round_ties_even(clamp(y, 0, 1) * maxv)` as an integer (NaN gives 0, as `NaN as u16` does).
///
/// Adding and subtracting 2^23 rounds any `t` in `[0, 2^23)` to an integer, ties to even (the IEEE default
/// rounding mode), and unlike `f32::round_ties_even` it vectorises on every target.
// Not `clamp`: `max` first maps NaN to 0, as the reference's `NaN as u16` does.
#[allow(clippy::manual_clamp)]
#[inline(always)]
pub fn quantize(y: f32, maxv: f32) -> u16 {
    const MAGIC: f32 = 8_388_608.0;
    let t = y.max(0.0).min(1.0) * maxv;
    ((t + MAGIC) - MAGIC) as u16
}

/// `v / 255` for every u8 `v`, exactly as PyTorch divides (`x / 255.0` in f32).
pub static LUT8: [f32; 256] = {
    let mut t = [0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as f32 / 255.0;
        i += 1;
    }
    t
};

/// Loads one row into three f32 rows (see [`LoadArgs`]); writes exactly `n` values per row.
#[inline(always)]
pub(crate) fn load(a: &LoadArgs<'_>, dst: &mut [&mut [f32]; 3]) {
    a.check(dst);
    match (a.src, a.ic) {
        (SrcRow::U8(s), 1) => load_ic::<_, 1>(s, |v| LUT8[v as usize], dst, a.n),
        (SrcRow::U8(s), 2) => load_ic::<_, 2>(s, |v| LUT8[v as usize], dst, a.n),
        (SrcRow::U8(s), 3) => load_ic::<_, 3>(s, |v| LUT8[v as usize], dst, a.n),
        (SrcRow::U8(s), _) => load_ic::<_, 4>(s, |v| LUT8[v as usize], dst, a.n),
        (SrcRow::U16(s), 1) => load_ic::<_, 1>(s, |v| v as f32 / 65535.0, dst, a.n),
        (SrcRow::U16(s), 2) => load_ic::<_, 2>(s, |v| v as f32 / 65535.0, dst, a.n),
        (SrcRow::U16(s), 3) => load_ic::<_, 3>(s, |v| v as f32 / 65535.0, dst, a.n),
        (SrcRow::U16(s), _) => load_ic::<_, 4>(s, |v| v as f32 / 65535.0, dst, a.n),
    }
}

#[inline(always)]
fn load_ic<T: Copy, const IC: usize>(s: &[T], cv: impl Fn(T) -> f32, dst: &mut [&mut [f32]; 3], n: usize) {
    let [d0, d1, d2] = dst;
    if IC <= 2 {
        // Grayscale is expanded to RGB: all three rows get channel 0.
        for (d, px) in d0[..n].iter_mut().zip(s.chunks_exact(IC)) {
            *d = cv(px[0]);
        }
        d1[..n].copy_from_slice(&d0[..n]);
        d2[..n].copy_from_slice(&d0[..n]);
    } else {
        let rows = d0[..n].iter_mut().zip(d1[..n].iter_mut()).zip(d2[..n].iter_mut());
        for (((r, g), b), px) in rows.zip(s.chunks_exact(IC)) {
            *r = cv(px[0]);
            *g = cv(px[1]);
            *b = cv(px[2]);
        }
    }
}

/// Expands one row (see [`ExpandArgs`]); writes exactly `n * e` values.
#[inline(always)]
pub(crate) fn expand(a: &ExpandArgs<'_>, dst: &mut [f32]) {
    fn rep<const E: usize>(dst: &mut [f32], src: &[f32]) {
        for (d, &v) in dst.chunks_exact_mut(E).zip(src) {
            let d: &mut [f32; E] = d.try_into().expect("chunk of E");
            *d = [v; E];
        }
    }
    a.check(dst);
    let (dst, src) = (&mut dst[..a.n * a.e], &a.src[..a.n]);
    match a.e {
        1 => dst.copy_from_slice(src),
        2 => rep::<2>(dst, src),
        3 => rep::<3>(dst, src),
        4 => rep::<4>(dst, src),
        5 => rep::<5>(dst, src),
        6 => rep::<6>(dst, src),
        7 => rep::<7>(dst, src),
        8 => rep::<8>(dst, src),
        e => {
            for (d, &v) in dst.chunks_exact_mut(e).zip(src) {
                d.fill(v);
            }
        }
    }
}

/// General-path conv row (see [`GeneralArgs`]), one 16-lane vector at a time.
pub(crate) fn conv_general(a: &GeneralArgs<'_>, st: &mut Staging<'_>) {
    conv_general_generic::<false>(a, st)
}

/// Fast-path conv row (see [`FastArgs`]), one 16-lane vector at a time.
pub(crate) fn conv_fast(a: &FastArgs<'_>, st: &mut Staging<'_>) {
    conv_fast_generic::<false>(a, st)
}

#[inline(always)]
pub(crate) fn conv_general_generic<const FUSED: bool>(a: &GeneralArgs<'_>, st: &mut Staging<'_>) {
    let l = LANES - LANES % a.r;
    a.check(l, 1, st);
    let (k, r) = (a.k, a.r);
    let mut p0 = 0;
    while p0 < a.n {
        let mut acc = [[0f32; LANES]; 3];
        // One colour at a time keeps a single 16-lane accumulator live, which LLVM vectorises.
        for (c, acc) in acc.iter_mut().enumerate() {
            let mut v: [f32; LANES] = a.b[c * LANES..(c + 1) * LANES].try_into().expect("16 lanes");
            let mut ws = a.w.chunks_exact(3 * LANES);
            for ic in 0..3 {
                for dy in 0..k {
                    let row = &a.rows[ic * k + dy][p0..];
                    for dx in 0..k {
                        let x: &[f32; LANES] = row[dx * r..dx * r + LANES].try_into().expect("16 lanes");
                        let w = ws.next().expect("3k^2 taps");
                        let w: &[f32; LANES] = w[c * LANES..(c + 1) * LANES].try_into().expect("16 lanes");
                        v = std::array::from_fn(|q| madd::<FUSED>(w[q], x[q], v[q]));
                    }
                }
            }
            *acc = v;
        }
        store(&acc, a.maxv, st, p0);
        p0 += l;
    }
}

#[inline(always)]
pub(crate) fn conv_fast_generic<const FUSED: bool>(a: &FastArgs<'_>, st: &mut Staging<'_>) {
    a.check(1, st);
    let k = a.k;
    let mut x0 = 0;
    while x0 < a.n {
        let mut acc = [[0f32; LANES]; 3];
        // One colour at a time, as in `conv_general_generic`.
        for (c, acc) in acc.iter_mut().enumerate() {
            let mut v = [a.b[c]; LANES];
            let mut ws = a.w.chunks_exact(3);
            for ic in 0..3 {
                for dy in 0..k {
                    let row = &a.rows[ic * k + dy][x0..];
                    for dx in 0..k {
                        let x: &[f32; LANES] = row[dx..dx + LANES].try_into().expect("16 lanes");
                        let w = ws.next().expect("3k^2 taps")[c];
                        v = std::array::from_fn(|q| madd::<FUSED>(w, x[q], v[q]));
                    }
                }
            }
            *acc = v;
        }
        store(&acc, a.maxv, st, x0);
        x0 += LANES;
    }
}

#[inline(always)]
fn store(acc: &[[f32; LANES]; 3], maxv: f32, st: &mut Staging<'_>, p0: usize) {
    for (c, acc) in acc.iter().enumerate() {
        let o = &mut st.data[c * st.stride + p0..c * st.stride + p0 + LANES];
        for (o, &v) in o.iter_mut().zip(acc) {
            *o = quantize(v, maxv);
        }
    }
}

/// Interleaves planar colour (+ alpha) into 8-bit output samples.
#[inline(always)]
pub(crate) fn interleave8(a: &InterleaveArgs<'_>, out: &mut [u8]) {
    interleave_generic(a, out, |v| v as u8);
    a.replicate(out);
}

/// Interleaves planar colour (+ alpha) into 16-bit output samples.
#[inline(always)]
pub(crate) fn interleave16(a: &InterleaveArgs<'_>, out: &mut [u16]) {
    interleave_generic(a, out, |v| v);
    a.replicate(out);
}

#[inline(always)]
fn interleave_generic<T: Copy>(a: &InterleaveArgs<'_>, out: &mut [T], cv: impl Fn(u16) -> T) {
    a.check(out.len());
    let nc = a.nc();
    let s = a.stride;
    let (pr, pg, pb) = (&a.planes[..s], &a.planes[s..2 * s], &a.planes[2 * s..3 * s]);
    // One group = the r output pixels of one input pixel: one alpha sample, one colour sample on the fast path.
    for (g, grp) in out[..a.n * nc].chunks_exact_mut(nc * a.r).enumerate() {
        for (j, px) in grp.chunks_exact_mut(nc).enumerate() {
            let q = if a.rep_c == 1 { g * a.r + j } else { g };
            px[0] = cv(pr[q]);
            px[1] = cv(pg[q]);
            px[2] = cv(pb[q]);
            if let Some(al) = a.alpha {
                px[3] = cv(al[g]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The magic-number rounding equals `round_ties_even(clamp(y,0,1)*max)` (PyTorch's `round`) on every tie and
    /// its neighbours, and on out-of-range values.
    #[test]
    fn quantize_matches_round_ties_even() {
        for maxv in [255.0f32, 65535.0] {
            for n in 0..=(maxv as u32) * 2 {
                let t = n as f32 / 2.0; // exact: integers and ties
                for y in [
                    t / maxv,
                    f32::from_bits((t / maxv).to_bits() + 1),
                    f32::from_bits((t / maxv).to_bits().max(1) - 1),
                ] {
                    let want = (y.clamp(0.0, 1.0) * maxv).round_ties_even() as u16;
                    assert_eq!(quantize(y, maxv), want, "y={y} maxv={maxv}");
                }
            }
            for y in [-1.0f32, -0.0, 2.0, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY] {
                assert_eq!(quantize(y, maxv), (y.clamp(0.0, 1.0) * maxv).round_ties_even() as u16);
            }
            assert_eq!(quantize(f32::NAN, maxv), 0);
        }
    }

    /// The generic kernels with `FUSED = true` (the NEON path's code, also run here on x86-64 machines): the
    /// fast path is bit-identical to the general path for tied weights, and fused and unfused results agree within
    /// 1 LSB.
    #[test]
    fn fused_generic_kernels_fast_equals_general() {
        use crate::engine::kernels::extent;
        let mut seed = 7u64;
        let mut rnd = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        for (r, k, w) in [(2usize, 3usize, 37usize), (3, 5, 20), (5, 1, 9), (8, 9, 5)] {
            let pad = k / 2;
            let taps = 3 * k * k;
            let n = w * r;
            let l = LANES - LANES % r;
            let len_g = extent(n, l, 1) + (k - 1) * r + 64;
            let len_f = extent(w, LANES, 1) + k + 64;
            // Padded input rows (zeros outside), unexpanded and expanded by r.
            let mut small = vec![vec![0f32; len_f]; 3 * k];
            for row in &mut small {
                for v in &mut row[pad..pad + w] {
                    *v = rnd();
                }
            }
            let big: Vec<Vec<f32>> = small
                .iter()
                .map(|s| (0..len_g).map(|p| if p / r < len_f { s[p / r] } else { 0.0 }).collect())
                .collect();
            let w0: Vec<f32> = (0..taps * 3).map(|_| (rnd() - 0.4) * 4.0 / taps as f32).collect();
            let b0 = [rnd() * 0.2, rnd() * 0.2, rnd() * 0.2];
            let wv: Vec<f32> = (0..taps * 3 * LANES).map(|i| w0[i / LANES]).collect();
            let bv: Vec<f32> = (0..3 * LANES).map(|i| b0[i / LANES]).collect();
            let small_rows: Vec<&[f32]> = small.iter().map(|v| &v[..]).collect();
            let big_rows: Vec<&[f32]> = big.iter().map(|v| &v[..]).collect();
            let ga = GeneralArgs { rows: &big_rows, k, r, n, w: &wv, b: &bv, phases: 1, maxv: 255.0 };
            let fa = FastArgs { rows: &small_rows, k, n: w, w: &w0, b: b0, maxv: 255.0 };
            let stride = n + 256;
            let run_g = |fused: bool| {
                let mut d = vec![0u16; 3 * stride];
                let mut st = Staging { data: &mut d, stride };
                if fused {
                    conv_general_generic::<true>(&ga, &mut st)
                } else {
                    conv_general_generic::<false>(&ga, &mut st)
                }
                d
            };
            let run_f = |fused: bool| {
                let mut d = vec![0u16; 3 * stride];
                let mut st = Staging { data: &mut d, stride };
                if fused {
                    conv_fast_generic::<true>(&fa, &mut st)
                } else {
                    conv_fast_generic::<false>(&fa, &mut st)
                }
                d
            };
            for fused in [true, false] {
                let (g, f) = (run_g(fused), run_f(fused));
                for c in 0..3 {
                    for p in 0..n {
                        assert_eq!(g[c * stride + p], f[c * stride + p / r], "fused={fused} r={r} k={k} c={c} p={p}");
                    }
                }
            }
            let (g1, g0) = (run_g(true), run_g(false));
            for c in 0..3 {
                for p in 0..n {
                    assert!(g1[c * stride + p].abs_diff(g0[c * stride + p]) <= 1, "r={r} k={k} c={c} p={p}");
                }
            }
        }
    }
}
