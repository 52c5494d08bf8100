//! AVX-512 kernels (avx512f, avx512bw, avx512vl): one 16-lane zmm per logical vector, FMA, register-blocked over
//! 3 colours x `NV` vectors (24 accumulators), weights as lane-pattern vectors (general) or broadcasts (fast).

use std::arch::x86_64::*;

use super::kernels::{ExpandArgs, FastArgs, FusedArgs, GeneralArgs, InterleaveArgs, LoadArgs, SrcRow, Staging, LANES};
use super::path::CpuPath;

/// `SPREAD[r][lane] = lane / r` (clamped to 7): the input value of each output lane, for r in 2..=8.
static SPREAD: [[u32; 16]; 9] = {
    let mut t = [[0u32; 16]; 9];
    let mut r = 1;
    while r < 9 {
        let mut l = 0;
        while l < 16 {
            let v = l / r;
            t[r][l] = if v > 7 { 7 } else { v as u32 };
            l += 1;
        }
        r += 1;
    }
    t
};

/// Fast path vectors per block: 3 x 8 accumulators + 3 weights + 1 input fit the 32 zmm registers.
const NV_FAST: usize = 8;

/// Loads one row (see [`LoadArgs`]): RGB8 and RGBA8 vectorised, other layouts portable.
pub(crate) fn load(a: &LoadArgs<'_>, dst: &mut [&mut [f32]; 3]) {
    load_with::<false>(a, dst)
}

/// [`load`] with the VBMI RGB8 kernel, for CPUs with avx512vbmi.
pub(crate) fn load_vbmi(a: &LoadArgs<'_>, dst: &mut [&mut [f32]; 3]) {
    assert!(is_x86_feature_detected!("avx512vbmi"));
    load_with::<true>(a, dst)
}

/// `VBMI`: the CPU supports avx512vbmi (the caller asserted it).
fn load_with<const VBMI: bool>(a: &LoadArgs<'_>, dst: &mut [&mut [f32]; 3]) {
    assert!(CpuPath::Avx512.is_supported());
    a.check(dst);
    let d = [dst[0].as_mut_ptr(), dst[1].as_mut_ptr(), dst[2].as_mut_ptr()];
    match (a.src, a.ic) {
        // SAFETY: the CPU supports avx512f/bw/vl (asserted above) and vbmi (`load_vbmi` asserted it); `check`
        // asserted `src.len() == n * 3` and that each destination holds `n` rounded up to 16 values.
        (SrcRow::U8(s), 3) if VBMI => unsafe { load_rgb8_vbmi_k(s, a.n, d) },
        // SAFETY: as above, without vbmi.
        (SrcRow::U8(s), 3) => unsafe { load_u8_k::<3>(s, a.n, d) },
        // SAFETY: as above, with `src.len() == n * 4`.
        (SrcRow::U8(s), 4) => unsafe { load_u8_k::<4>(s, a.n, d) },
        _ => super::portable::load(a, dst),
    }
}

/// Expands one row (see [`ExpandArgs`]).
pub(crate) fn expand(a: &ExpandArgs<'_>, dst: &mut [f32]) {
    assert!(CpuPath::Avx512.is_supported());
    a.check(dst);
    // SAFETY: the CPU supports avx512f (asserted above); `check` asserted the source holds `n + 16` values, the
    // destination `n * e` rounded up to 16, and the table count.
    unsafe { expand_k(a, dst) }
}

/// General-path conv row (see [`GeneralArgs`]).
pub(crate) fn conv_general(a: &GeneralArgs<'_>, st: &mut Staging<'_>) {
    assert!(CpuPath::Avx512.is_supported());
    assert!(a.phases == a.r && (2..=8).contains(&a.r));
    let l = LANES - LANES % a.r;
    // Vectors per block: 3 * r * NV accumulators (at most 24), NV inputs and 3 weights fit 32 zmm registers.
    let nv = match a.r {
        2 => 4,
        3 | 4 => 2,
        _ => 1,
    };
    a.check_unexpanded(l, nv, st);
    // SAFETY: the CPU supports avx512f/bw/vl (asserted above); `phases == r` and `check_unexpanded` asserted every
    // length the kernel reads and writes for this lane width and block size `nv`, which each arm passes as NV.
    unsafe {
        match a.r {
            2 => conv_general_k::<2, 4>(a, st),
            3 => conv_general_k::<3, 2>(a, st),
            4 => conv_general_k::<4, 2>(a, st),
            5 => conv_general_k::<5, 1>(a, st),
            6 => conv_general_k::<6, 1>(a, st),
            7 => conv_general_k::<7, 1>(a, st),
            _ => conv_general_k::<8, 1>(a, st),
        }
    }
}

/// Fast-path conv row (see [`FastArgs`]).
pub(crate) fn conv_fast(a: &FastArgs<'_>, st: &mut Staging<'_>) {
    assert!(CpuPath::Avx512.is_supported());
    a.check(NV_FAST, st);
    // SAFETY: the CPU supports avx512f/bw/vl (asserted above), and `check` asserted every length the kernel reads
    // and writes for this block size.
    unsafe { conv_fast_k(a, st) }
}

/// Fused fast-path row for 8-bit output with VBMI (see [`FusedArgs`]).
pub(crate) fn conv_fast_fused8(a: &FastArgs<'_>, f: &FusedArgs<'_>, out: &mut [u8]) {
    assert!(CpuPath::Avx512.is_supported() && is_x86_feature_detected!("avx512vbmi"));
    assert!(a.maxv == 255.0, "8-bit output only");
    a.check_rows(NV_FAST);
    f.check(a.n, NV_FAST, out.len());
    // SAFETY: the CPU supports avx512f/bw/vl/vbmi (asserted above); `check_rows` asserted what the conv reads and
    // `f.check` the alpha, table and output lengths the epilogue reads and writes; `R` is 0 or `f.r`.
    unsafe {
        match f.r {
            2 => conv_fast_fused8_k::<2>(a, f, out),
            _ => conv_fast_fused8_k::<0>(a, f, out),
        }
    }
}

/// Interleave into 8-bit samples.
pub(crate) fn interleave8(a: &InterleaveArgs<'_>, out: &mut [u8]) {
    assert!(CpuPath::Avx512.is_supported());
    a.check(out.len());
    // SAFETY: the CPU supports avx512f/bw/vl (asserted above), and `check` asserted the plane, alpha, table and
    // output lengths the kernel relies on.
    unsafe { interleave8_k(a, out) };
    a.replicate(out);
}

/// Interleave into 8-bit samples with AVX-512 VBMI byte permutes (32 pixels per step).
pub(crate) fn interleave8_vbmi(a: &InterleaveArgs<'_>, out: &mut [u8]) {
    assert!(CpuPath::Avx512.is_supported() && is_x86_feature_detected!("avx512vbmi"));
    a.check(out.len());
    // SAFETY: the CPU supports avx512f/bw/vl/vbmi (asserted above), and `check` asserted the plane, alpha, table
    // and output lengths the kernel relies on (32-sample windows).
    unsafe { interleave8_vbmi_k(a, out) }
}

/// Interleave into 16-bit samples.
pub(crate) fn interleave16(a: &InterleaveArgs<'_>, out: &mut [u16]) {
    assert!(CpuPath::Avx512.is_supported());
    a.check(out.len());
    // SAFETY: as in `interleave8`.
    unsafe { interleave16_k(a, out) };
    a.replicate(out);
}

/// `round_ties_even(clamp(acc, 0, 1) * maxv)` as 16 u16 stored at `dst`.
///
/// `min(one, acc)` returns `acc` when it is NaN (MINPS returns its second operand), NaN converts to i32::MIN, and
/// the max with 0 then gives 0, as the scalar reference does. `cvtps` rounds ties to even (the default MXCSR mode).
///
/// # Safety
/// The CPU supports avx512f; `dst` is valid for writing 16 u16.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store_q(dst: *mut u16, acc: __m512, one: __m512, maxv: __m512) {
    let t = _mm512_mul_ps(_mm512_min_ps(one, acc), maxv);
    let i = _mm512_max_epi32(_mm512_cvtps_epi32(t), _mm512_setzero_si512());
    // SAFETY: the caller guarantees `dst` is valid for writing 16 u16, the 32 bytes this unaligned store writes.
    unsafe { _mm256_storeu_si256(dst as *mut __m256i, _mm512_cvtusepi32_epi16(i)) };
}

/// Rows are *not* expanded: each input vector is 8 loaded values spread over 16 output lanes (`lane / r`) by a
/// permute, which runs on the shuffle port beside the FMAs and saves writing and reading r-times wider rows.
/// All r row phases are computed together, so each permuted input vector feeds `3 * PH` accumulators.
///
/// # Safety
/// - The CPU supports avx512f.
/// - `a.phases == PH == a.r` and `a.check_unexpanded(LANES - LANES % a.r, NV, st)` holds.
// Register blocking indexes the accumulator arrays by the same `v`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f")]
unsafe fn conv_general_k<const PH: usize, const NV: usize>(a: &GeneralArgs<'_>, st: &mut Staging<'_>) {
    let (k, r) = (a.k, a.r);
    let l = LANES - LANES % r;
    let per = 3 * k * k * 3 * LANES;
    let mut rows = [std::ptr::null::<f32>(); 27];
    for (d, s) in rows.iter_mut().zip(a.rows) {
        *d = s.as_ptr();
    }
    let (one, maxv) = (_mm512_set1_ps(1.0), _mm512_set1_ps(a.maxv));
    // SAFETY: `SPREAD[r]` (index checked) is 16 u32, the 64 bytes read.
    let spread = unsafe { _mm512_loadu_si512(SPREAD[r].as_ptr() as *const __m512i) };
    let (wp, bp) = (a.w.as_ptr(), a.b.as_ptr());
    let (out, stride) = (st.data.as_mut_ptr(), st.stride);
    let mut p0 = 0;
    while p0 < a.n {
        let mut acc = [[[_mm512_setzero_ps(); NV]; 3]; PH];
        for (i, acc) in acc.iter_mut().enumerate() {
            for (c, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `check_unexpanded` asserted `b.len() >= phases * 3 * LANES`; `i < PH == phases`, c < 3.
                *acc = [unsafe { _mm512_loadu_ps(bp.add((i * 3 + c) * LANES)) }; NV];
            }
        }
        let mut t = 0;
        // SAFETY: by the caller's `check_unexpanded(l, NV, st)`, every row (`rows[..3k]`) holds
        // `extent(n, l, NV) / r + LANES + k - 1` values; `p0 < n` is a multiple of `NV * l` (and l of r), so the
        // 8 values read at `(p0 + v*l) / r + dx` (v < NV, dx < k) end below `(p0 + NV*l) / r + 8 + k - 1`, within
        // that. `w` holds `phases * 3k^2` taps of `3 * LANES` weights: phase i < PH == phases, tap t < 3k^2.
        unsafe {
            for ic in 0..3 {
                for dy in 0..k {
                    let row = rows[ic * k + dy].add(p0 / r);
                    for dx in 0..k {
                        let src = row.add(dx);
                        let mut x = [_mm512_setzero_ps(); NV];
                        for v in 0..NV {
                            let x8 = _mm256_loadu_ps(src.add(v * l / r));
                            x[v] = _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(x8));
                        }
                        for i in 0..PH {
                            let w = wp.add(i * per + t * 3 * LANES);
                            let w0 = _mm512_loadu_ps(w);
                            let w1 = _mm512_loadu_ps(w.add(LANES));
                            let w2 = _mm512_loadu_ps(w.add(2 * LANES));
                            for v in 0..NV {
                                acc[i][0][v] = _mm512_fmadd_ps(w0, x[v], acc[i][0][v]);
                                acc[i][1][v] = _mm512_fmadd_ps(w1, x[v], acc[i][1][v]);
                                acc[i][2][v] = _mm512_fmadd_ps(w2, x[v], acc[i][2][v]);
                            }
                        }
                        t += 1;
                    }
                }
            }
        }
        // Vector v+1 overwrites the LANES - l garbage lanes vector v stored past its l pixels.
        for (i, acc) in acc.iter().enumerate() {
            for (c, acc) in acc.iter().enumerate() {
                for (v, &acc) in acc.iter().enumerate() {
                    // SAFETY: avx512f is enabled here. The 16 samples at `p0 + v*l` end below `p0 + NV*l + LANES
                    // <= extent(n, l, NV)`, and `check_unexpanded` asserted `stride >= extent` and `data.len() >=
                    // (3 * phases - 1) * stride + extent`, so plane `i*3 + c` holds them.
                    unsafe { store_q(out.add((i * 3 + c) * stride + p0 + v * l), acc, one, maxv) };
                }
            }
        }
        p0 += NV * l;
    }
}

/// # Safety
/// - The CPU supports avx512f.
/// - `a.check(NV_FAST, st)` holds.
#[target_feature(enable = "avx512f")]
unsafe fn conv_fast_k(a: &FastArgs<'_>, st: &mut Staging<'_>) {
    let rows = row_ptrs(a.rows);
    let (one, maxv) = (_mm512_set1_ps(1.0), _mm512_set1_ps(a.maxv));
    let (out, stride) = (st.data.as_mut_ptr(), st.stride);
    let mut x0 = 0;
    while x0 < a.n {
        // SAFETY: avx512f is enabled here; the caller's `check(NV_FAST, st)` includes `check_rows(NV_FAST)`,
        // `rows` is `row_ptrs(a.rows)`, and `x0 < n` is a multiple of `NV_FAST * LANES`.
        let acc = unsafe { fast_block(a, &rows, x0) };
        for (c, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                // SAFETY: avx512f is enabled here. The 16 samples at `x0 + v*LANES` end below `x0 + NV_FAST*LANES
                // <= extent(n, LANES, NV_FAST)`, and `check` asserted `stride >= extent` and `data.len() >=
                // 2 * stride + extent`.
                unsafe { store_q(out.add(c * stride + x0 + v * LANES), acc, one, maxv) };
            }
        }
        x0 += NV_FAST * LANES;
    }
}

/// The row pointers of `rows` (at most 27: 3 channels x k <= 9 rows).
fn row_ptrs(rows: &[&[f32]]) -> [*const f32; 27] {
    let mut p = [std::ptr::null::<f32>(); 27];
    for (d, s) in p.iter_mut().zip(rows) {
        *d = s.as_ptr();
    }
    p
}

/// The fast-path conv of pixels `x0 .. x0 + 16 * NV_FAST`: the three colour accumulators of each 16-pixel vector,
/// each started at the bias and accumulated over the taps in the order (input channel, dy, dx).
///
/// # Safety
/// - The CPU supports avx512f.
/// - `a.check_rows(NV_FAST)` holds, `rows == row_ptrs(a.rows)`, and `x0 < a.n` is a multiple of `16 * NV_FAST`.
// Register blocking indexes the three accumulator rows by the same `v`.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn fast_block(a: &FastArgs<'_>, rows: &[*const f32; 27], x0: usize) -> [[__m512; NV_FAST]; 3] {
    const NV: usize = NV_FAST;
    let mut acc = [[_mm512_setzero_ps(); NV]; 3];
    for (c, acc) in acc.iter_mut().enumerate() {
        *acc = [_mm512_set1_ps(a.b[c]); NV];
    }
    let mut w = a.w.as_ptr();
    // SAFETY: by `check_rows(NV)`, the rows `rows[..3k]` point at (`row_ptrs`) hold `extent(n, LANES, NV) + k - 1`
    // values, `extent` rounding n up to a multiple of `NV * LANES` (plus LANES); `x0 < n` is a multiple of
    // `NV * LANES`, so the 16 values read at `x0 + dx + v*LANES` (dx < k, v < NV) end below `x0 + NV*LANES + k - 1`,
    // within that. `w` holds `3k^2` taps of 3 weights and advances one tap per (ic, dy, dx).
    unsafe {
        for ic in 0..3 {
            for dy in 0..a.k {
                let row = rows[ic * a.k + dy].add(x0);
                for dx in 0..a.k {
                    let src = row.add(dx);
                    let w0 = _mm512_set1_ps(*w);
                    let w1 = _mm512_set1_ps(*w.add(1));
                    let w2 = _mm512_set1_ps(*w.add(2));
                    w = w.add(3);
                    for v in 0..NV {
                        let x = _mm512_loadu_ps(src.add(v * LANES));
                        acc[0][v] = _mm512_fmadd_ps(w0, x, acc[0][v]);
                        acc[1][v] = _mm512_fmadd_ps(w1, x, acc[1][v]);
                        acc[2][v] = _mm512_fmadd_ps(w2, x, acc[2][v]);
                    }
                }
            }
        }
    }
    acc
}

/// `round_ties_even(clamp(acc, 0, 1) * maxv)` as i32, except that values below 0 (and NaN, which converts to
/// i32::MIN) stay negative: the unsigned saturation of `_mm512_packus_epi32` turns them into 0, as `store_q`'s max
/// with 0 does.
#[inline]
#[target_feature(enable = "avx512f")]
fn quantise_unclamped(acc: __m512, one: __m512, maxv: __m512) -> __m512i {
    _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_min_ps(one, acc), maxv))
}

/// The fast-path conv (`fast_block`), then per 16-pixel vector: quantise and pack R, G, B, A to bytes; per group of
/// `f.group` vectors: permute into whole 64-byte output lines (`f.lines`) and store each into the r output rows.
///
/// # Safety
/// - The CPU supports avx512f/bw/vl/vbmi.
/// - `a.check_rows(NV_FAST)` and `f.check(a.n, NV_FAST, out.len())` hold.
/// - `R` is `f.r`, or 0 (then `f.r` is read at run time; a constant lets the compiler unroll the row stores).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
unsafe fn conv_fast_fused8_k<const R: usize>(a: &FastArgs<'_>, f: &FusedArgs<'_>, out: &mut [u8]) {
    let rows = row_ptrs(a.rows);
    let (r, nc, group) = (if R == 0 { f.r } else { R }, f.nc(), f.group);
    let row_len = a.n * r * nc;
    let (one, maxv) = (_mm512_set1_ps(1.0), _mm512_set1_ps(a.maxv));
    let dst = out.as_mut_ptr();
    let mut x0 = 0;
    while x0 < a.n {
        // SAFETY: avx512f is enabled here; the caller asserted `check_rows(NV_FAST)`, `rows` is
        // `row_ptrs(a.rows)`, and `x0 < n` is a multiple of `NV_FAST * LANES`.
        let acc = unsafe { fast_block(a, &rows, x0) };
        for g0 in (0..NV_FAST).step_by(group) {
            let xg = x0 + g0 * LANES;
            if xg >= a.n {
                break;
            }
            // One spare zero vector: the second source of a group's last line.
            let mut packed = [_mm512_setzero_si512(); 5];
            for (i, p) in packed.iter_mut().enumerate().take(group) {
                let (v, x) = (g0 + i, xg + i * LANES);
                let al = match f.alpha {
                    // SAFETY: `f.check` asserted `al.len() >= extent(n, LANES, NV_FAST)`, n rounded up to a
                    // multiple of `NV_FAST * LANES` (plus LANES); `x = x0 + (g0 + i) * LANES` with `g0 + i < NV_FAST`
                    // (`group` divides NV_FAST) and `x0` a multiple of `NV_FAST * LANES`, so the 16 u16 read fit.
                    Some(al) => unsafe {
                        _mm512_cvtepu16_epi32(_mm256_loadu_si256(al.as_ptr().add(x) as *const __m256i))
                    },
                    None => _mm512_setzero_si512(),
                };
                let rg = _mm512_packus_epi32(
                    quantise_unclamped(acc[0][v], one, maxv),
                    quantise_unclamped(acc[1][v], one, maxv),
                );
                let ba = _mm512_packus_epi32(quantise_unclamped(acc[2][v], one, maxv), al);
                *p = _mm512_packus_epi16(rg, ba);
            }
            // Output bytes of this group's pixels `xg .. xg + valid / (r * nc)` (all below n) in each output row.
            let valid = (a.n - xg).min(group * LANES) * r * nc;
            // SAFETY: `xg < n` and `f.check` asserted `out.len() >= r * n * r * nc`: the offset is within `out`.
            let d = unsafe { dst.add(xg * r * nc) };
            if valid == 64 * f.lines.len() {
                // A whole group: every line is whole.
                for (z, line) in f.lines.iter().enumerate() {
                    // SAFETY: `line.idx` is 64 bytes, the bytes read.
                    let idx = unsafe { _mm512_loadu_si512(line.idx.as_ptr() as *const __m512i) };
                    let o = _mm512_permutex2var_epi8(packed[line.src], idx, packed[line.src + 1]);
                    for j in 0..r {
                        // SAFETY: the lines cover the group's `valid` bytes exactly (`64 * lines.len()`), so line
                        // z of row j ends at `(xg * r * nc + valid) + j * row_len <= (j + 1) * row_len`, and
                        // `out.len() >= r * row_len` (`f.check`).
                        unsafe { _mm512_storeu_si512(d.add(j * row_len + 64 * z) as *mut __m512i, o) };
                    }
                }
                continue;
            }
            for (z, line) in f.lines.iter().enumerate() {
                let vz = valid.saturating_sub(64 * z).min(64);
                if vz == 0 {
                    break;
                }
                // SAFETY: `line.idx` is 64 bytes, the bytes read.
                let idx = unsafe { _mm512_loadu_si512(line.idx.as_ptr() as *const __m512i) };
                let o = _mm512_permutex2var_epi8(packed[line.src], idx, packed[line.src + 1]);
                for j in 0..r {
                    // SAFETY: line z writes `vz` bytes with `64 * z + vz <= valid`, so row j's bytes end at
                    // `(xg * r * nc + valid) + j * row_len <= (j + 1) * row_len <= out.len()` (`f.check`); the
                    // masked store neither writes nor faults on the bytes masked out.
                    unsafe {
                        let p = d.add(j * row_len + 64 * z);
                        if vz == 64 {
                            _mm512_storeu_si512(p as *mut __m512i, o);
                        } else {
                            _mm512_mask_storeu_epi8(p as *mut i8, (1u64 << vz) - 1, o);
                        }
                    }
                }
            }
        }
        x0 += NV_FAST * LANES;
    }
}

/// `x / d` correctly rounded, for integers `0 <= x <= d` with `d` 255 or 65535: `x * (1/d)` refined by one FMA
/// Newton step. Exhaustively checked against `x as f32 / d` by the unit test below.
#[inline]
#[target_feature(enable = "avx512f")]
fn div_exact(x: __m512, inv: __m512, d: __m512) -> __m512 {
    let q = _mm512_mul_ps(x, inv);
    let rem = _mm512_fnmadd_ps(q, d, x);
    _mm512_fmadd_ps(rem, inv, q)
}

/// # Safety
/// - The CPU supports avx512f/bw/vl.
/// - `src.len() == n * IC`; each `dst[c]` is valid for writing `n` rounded up to 16 f32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn load_u8_k<const IC: usize>(src: &[u8], n: usize, dst: [*mut f32; 3]) {
    let (inv, d) = (_mm512_set1_ps(1.0 / 255.0), _mm512_set1_ps(255.0));
    let ff = _mm512_set1_epi32(0xFF);
    // RGB: dwords 0..12 (16 pixels) -> 3 dwords per 128-bit lane, then bytes -> one pixel per dword.
    let didx = _mm512_setr_epi32(0, 1, 2, 0, 3, 4, 5, 0, 6, 7, 8, 0, 9, 10, 11, 0);
    let spread = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1));
    let mut x = 0;
    while x < n {
        let bytes = (n - x).min(LANES) * IC;
        let mask = if bytes >= 64 { u64::MAX } else { (1u64 << bytes) - 1 };
        // Masked-out bytes are neither read (no fault past the slice) nor garbage: they load as 0.
        // SAFETY: `x < n` and `src.len() == n * IC` (the caller's contract): the load starts inside `src` and its
        // mask selects `(n - x).min(16) * IC` bytes, all before the end of `src`.
        let raw = unsafe { _mm512_maskz_loadu_epi8(mask, src.as_ptr().add(x * IC) as *const i8) };
        let px = if IC == 4 { raw } else { _mm512_shuffle_epi8(_mm512_permutexvar_epi32(didx, raw), spread) };
        let r = _mm512_and_si512(px, ff);
        let g = _mm512_and_si512(_mm512_srli_epi32::<8>(px), ff);
        let b = _mm512_and_si512(_mm512_srli_epi32::<16>(px), ff);
        // SAFETY: `x < n` is a multiple of 16, so the 16 f32 at `x` end within `n` rounded up to 16, which the
        // caller guarantees each `dst[c]` is valid for.
        unsafe {
            _mm512_storeu_ps(dst[0].add(x), div_exact(_mm512_cvtepi32_ps(r), inv, d));
            _mm512_storeu_ps(dst[1].add(x), div_exact(_mm512_cvtepi32_ps(g), inv, d));
            _mm512_storeu_ps(dst[2].add(x), div_exact(_mm512_cvtepi32_ps(b), inv, d));
        }
        x += LANES;
    }
}

/// `RGB_IDX[c]`: byte `4j` = `3j + c` (pixel j's channel c in 16 packed RGB pixels), the other bytes 48: a byte the
/// masked load left zero, so each dword is one zero-extended sample.
static RGB_IDX: [[u8; 64]; 3] = {
    let mut t = [[48u8; 64]; 3];
    let mut c = 0;
    while c < 3 {
        let mut j = 0;
        while j < 16 {
            t[c][4 * j] = (3 * j + c) as u8;
            j += 1;
        }
        c += 1;
    }
    t
};

/// RGB8 row load with one VBMI byte permute per channel.
///
/// # Safety
/// - The CPU supports avx512f/bw/vl/vbmi.
/// - `src.len() == n * 3`; each `dst[c]` is valid for writing `n` rounded up to 16 f32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
unsafe fn load_rgb8_vbmi_k(src: &[u8], n: usize, dst: [*mut f32; 3]) {
    let (inv, d) = (_mm512_set1_ps(1.0 / 255.0), _mm512_set1_ps(255.0));
    // SAFETY: each table `t` is 64 bytes, the bytes read.
    let idx = RGB_IDX.map(|t| unsafe { _mm512_loadu_si512(t.as_ptr() as *const __m512i) });
    let mut x = 0;
    while x < n {
        let bytes = (n - x).min(LANES) * 3;
        // Masked-out bytes are neither read (no fault past the slice) nor garbage: they load as 0.
        // SAFETY: `x < n` and `src.len() == n * 3` (the caller's contract): the load starts inside `src` and its
        // mask selects `(n - x).min(16) * 3` bytes, all before the end of `src`.
        let raw = unsafe { _mm512_maskz_loadu_epi8((1u64 << bytes) - 1, src.as_ptr().add(x * 3) as *const i8) };
        for c in 0..3 {
            let v = _mm512_permutexvar_epi8(idx[c], raw);
            // SAFETY: `x < n` is a multiple of 16, so the 16 f32 at `x` end within `n` rounded up to 16, which the
            // caller guarantees `dst[c]` is valid for.
            unsafe { _mm512_storeu_ps(dst[c].add(x), div_exact(_mm512_cvtepi32_ps(v), inv, d)) };
        }
        x += LANES;
    }
}

/// # Safety
/// - The CPU supports avx512f.
/// - `a.check(dst)` holds.
#[target_feature(enable = "avx512f")]
unsafe fn expand_k(a: &ExpandArgs<'_>, dst: &mut [f32]) {
    let (src, out) = (a.src.as_ptr(), dst.as_mut_ptr());
    let total = a.n * a.e;
    let (mut p0, mut phase) = (0, 0);
    while p0 < total {
        // SAFETY: `a.tables[phase]` (index checked) is 16 u32, the 64 bytes read. By the caller's `check(dst)`,
        // `src.len() >= n + LANES` and `dst.len() >= n * e` rounded up to 16: `p0 < n * e` gives `p0 / e < n`, so the
        // 16 source values fit, and `p0` is a multiple of 16 below `n * e`, so the 16 outputs fit.
        unsafe {
            let idx = _mm512_loadu_si512(a.tables[phase].as_ptr() as *const __m512i);
            let v = _mm512_loadu_ps(src.add(p0 / a.e));
            _mm512_storeu_ps(out.add(p0), _mm512_permutexvar_ps(idx, v));
        }
        p0 += LANES;
        phase += 1;
        if phase == a.tables.len() {
            phase = 0;
        }
    }
}

/// The output samples of 16 pixels starting at `p0`, as words: `[R G B A]` windows permuted by `tbl`.
/// Returns samples 0..32 and 32..64 (only the first `16 * nc` are meaningful).
///
/// # Safety
/// - The CPU supports avx512f/bw/vl.
/// - `a.check(..)` holds and `p0 < a.n`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn gather16(a: &InterleaveArgs<'_>, p0: usize, tbl: &[u16; 64]) -> (__m512i, __m512i) {
    let x0 = p0 / a.rep_c;
    // SAFETY: `p0 < n`, so `x0 <= (n - 1) / rep_c`; the caller's `check` asserted `planes.len() >= 2 * stride +
    // (n - 1) / rep_c + 32`, so 16 samples at `x0` of each plane fit, and `alpha.len() >= (n - 1) / r + 32`, so
    // 16 at `p0 / r` fit. `tbl` is 64 u16: the two 32-sample halves read.
    unsafe {
        let pl = a.planes.as_ptr().add(x0);
        let r = _mm256_loadu_si256(pl as *const __m256i);
        let g = _mm256_loadu_si256(pl.add(a.stride) as *const __m256i);
        let b = _mm256_loadu_si256(pl.add(2 * a.stride) as *const __m256i);
        let al = match a.alpha {
            Some(al) => _mm256_loadu_si256(al.as_ptr().add(p0 / a.r) as *const __m256i),
            None => _mm256_setzero_si256(),
        };
        let rg = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(r), g);
        let ba = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(b), al);
        let i0 = _mm512_loadu_si512(tbl.as_ptr() as *const __m512i);
        let i1 = _mm512_loadu_si512(tbl.as_ptr().add(32) as *const __m512i);
        (_mm512_permutex2var_epi16(rg, i0, ba), _mm512_permutex2var_epi16(rg, i1, ba))
    }
}

/// Mask of the first `n` (at most 32) elements.
#[inline(always)]
fn mask32(n: usize) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// # Safety
/// - The CPU supports avx512f/bw/vl.
/// - `a.check(out.len())` holds.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn interleave8_k(a: &InterleaveArgs<'_>, out: &mut [u8]) {
    let nc = a.nc();
    let dst = out.as_mut_ptr();
    let (mut p0, mut phase) = (0, 0);
    while p0 < a.n {
        // SAFETY: avx512f/bw/vl are enabled here, the caller's `check` holds and `p0 < n`.
        let (o0, o1) = unsafe { gather16(a, p0, &a.tables[phase]) };
        let (b0, b1) = (_mm512_cvtepi16_epi8(o0), _mm512_cvtepi16_epi8(o1));
        let ns = (a.n - p0).min(LANES) * nc;
        // SAFETY: the `ns` samples of pixels `p0 ..` written here end at `p0 * nc + ns <= n * nc <= out.len()`
        // (`check`): the whole-chunk case writes 32 + 32 (nc 4) or 32 + 16 (nc 3) bytes, `ns` exactly; the masked
        // stores write the first `ns` bytes only (masked-out bytes are not written and do not fault).
        unsafe {
            let d = dst.add(p0 * nc);
            if ns == LANES * nc {
                _mm256_storeu_si256(d as *mut __m256i, b0);
                if nc == 4 {
                    _mm256_storeu_si256(d.add(32) as *mut __m256i, b1);
                } else {
                    _mm_storeu_si128(d.add(32) as *mut __m128i, _mm256_castsi256_si128(b1));
                }
            } else {
                _mm256_mask_storeu_epi8(d as *mut i8, mask32(ns), b0);
                if ns > 32 {
                    _mm256_mask_storeu_epi8(d.add(32) as *mut i8, mask32(ns - 32), b1);
                }
            }
        }
        p0 += LANES;
        phase += 1;
        if phase == a.tables.len() {
            phase = 0;
        }
    }
}

/// # Safety
/// - The CPU supports avx512f/bw/vl/vbmi.
/// - `a.check(out.len())` holds.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
unsafe fn interleave8_vbmi_k(a: &InterleaveArgs<'_>, out: &mut [u8]) {
    const CHUNK: usize = 2 * LANES;
    let nc = a.nc();
    let dst = out.as_mut_ptr();
    let (mut p0, mut phase) = (0, 0);
    while p0 < a.n {
        // SAFETY: `p0 < n`, so `p0 / rep_c <= (n - 1) / rep_c`; the caller's `check` asserted `planes.len() >=
        // 2 * stride + (n - 1) / rep_c + 32`, so 32 samples at `p0 / rep_c` of each plane fit, and `alpha.len() >=
        // (n - 1) / r + 32`, so 32 at `p0 / r` fit.
        let (r, g, b, al) = unsafe {
            let pl = a.planes.as_ptr().add(p0 / a.rep_c);
            let r = _mm512_loadu_si512(pl as *const __m512i);
            let g = _mm512_loadu_si512(pl.add(a.stride) as *const __m512i);
            let b = _mm512_loadu_si512(pl.add(2 * a.stride) as *const __m512i);
            let al = match a.alpha {
                Some(al) => _mm512_loadu_si512(al.as_ptr().add(p0 / a.r) as *const __m512i),
                None => _mm512_setzero_si512(),
            };
            (r, g, b, al)
        };
        let t = &a.btables[phase];
        let ns = (a.n - p0).min(CHUNK) * nc;
        let row = a.n * nc;
        // SAFETY: `p0 < n` and `check` asserted `out.len() >= copies * n * nc`: the offset is within `out`.
        let d = unsafe { dst.add(p0 * nc) };
        for z in 0..nc.div_ceil(2) {
            // SAFETY: `t.idx[z][0]` and `t.idx[z][1]` (indices checked) are 64 bytes each, the bytes read.
            let (i0, i1) = unsafe {
                (
                    _mm512_loadu_si512(t.idx[z][0].as_ptr() as *const __m512i),
                    _mm512_loadu_si512(t.idx[z][1].as_ptr() as *const __m512i),
                )
            };
            let o = _mm512_mask_blend_epi8(
                t.mask[z],
                _mm512_permutex2var_epi8(r, i0, g),
                _mm512_permutex2var_epi8(b, i1, al),
            );
            let valid = ns.saturating_sub(64 * z).min(64);
            for j in 0..a.copies {
                // SAFETY: row j's bytes written here end at `j * row + p0 * nc + ns <= (j + 1) * row`, with
                // `64 * z + valid <= ns`, and `check` asserted `out.len() >= copies * row`; the masked store
                // writes the first `valid` bytes only (masked-out bytes are not written and do not fault).
                unsafe {
                    let dz = d.add(j * row + 64 * z);
                    if valid == 64 {
                        _mm512_storeu_si512(dz as *mut __m512i, o);
                    } else if valid > 0 {
                        _mm512_mask_storeu_epi8(dz as *mut i8, (1u64 << valid) - 1, o);
                    }
                }
            }
        }
        p0 += CHUNK;
        phase += 1;
        if phase == a.btables.len() {
            phase = 0;
        }
    }
}

/// # Safety
/// - The CPU supports avx512f/bw/vl.
/// - `a.check(out.len())` holds.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn interleave16_k(a: &InterleaveArgs<'_>, out: &mut [u16]) {
    let nc = a.nc();
    let dst = out.as_mut_ptr();
    let (mut p0, mut phase) = (0, 0);
    while p0 < a.n {
        // SAFETY: avx512f/bw/vl are enabled here, the caller's `check` holds and `p0 < n`.
        let (o0, o1) = unsafe { gather16(a, p0, &a.tables[phase]) };
        let ns = (a.n - p0).min(LANES) * nc;
        // SAFETY: the `ns` samples of pixels `p0 ..` written here end at `p0 * nc + ns <= n * nc <= out.len()`
        // (`check`): the whole-chunk case writes 32 + 32 (nc 4) or 32 + 16 (nc 3) u16, `ns` exactly; the masked
        // stores write the first `ns` samples only (masked-out samples are not written and do not fault).
        unsafe {
            let d = dst.add(p0 * nc);
            if ns == LANES * nc {
                _mm512_storeu_si512(d as *mut __m512i, o0);
                if nc == 4 {
                    _mm512_storeu_si512(d.add(32) as *mut __m512i, o1);
                } else {
                    _mm256_storeu_si256(d.add(32) as *mut __m256i, _mm512_castsi512_si256(o1));
                }
            } else {
                _mm512_mask_storeu_epi16(d as *mut i16, mask32(ns), o0);
                if ns > 32 {
                    _mm512_mask_storeu_epi16(d.add(32) as *mut i16, mask32(ns - 32), o1);
                }
            }
        }
        p0 += LANES;
        phase += 1;
        if phase == a.tables.len() {
            phase = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this CPU runs the AVX-512 kernels (and, with `vbmi`, the VBMI ones); if not, says so in the test
    /// output.
    fn can_run(test: &str, vbmi: bool) -> bool {
        let why = if !CpuPath::Avx512.is_supported() {
            "not supported by this CPU"
        } else if vbmi && !is_x86_feature_detected!("avx512vbmi") {
            "this CPU lacks avx512vbmi"
        } else {
            return true;
        };
        let path = if vbmi { "avx512" } else { "avx512-novbmi" };
        crate::engine::test_report(&format!("SKIP path {path} in avx512::{test}: {why}"));
        false
    }

    /// `div_exact` equals IEEE division (`v as f32 / d`, PyTorch's conversion) for every 8- and 16-bit value.
    #[test]
    fn div_exact_is_exhaustively_exact() {
        if !can_run("div_exact_is_exhaustively_exact", false) {
            return;
        }
        for d in [255u32, 65535] {
            for base in (0..=d).step_by(16) {
                let xs: [f32; 16] = std::array::from_fn(|l| (base + l as u32).min(d) as f32);
                let mut got = [0f32; 16];
                // SAFETY: avx512f is supported (checked above); `xs` and `got` hold 16 f32 each.
                unsafe {
                    let q = div_exact(
                        _mm512_loadu_ps(xs.as_ptr()),
                        _mm512_set1_ps(1.0 / d as f32),
                        _mm512_set1_ps(d as f32),
                    );
                    _mm512_storeu_ps(got.as_mut_ptr(), q);
                }
                for (x, g) in xs.iter().zip(got) {
                    assert_eq!(g.to_bits(), (x / d as f32).to_bits(), "{x} / {d}");
                }
            }
        }
    }

    /// Both row loads (with and without VBMI) equal the portable one, bit for bit, for RGB8 and RGBA8 (the
    /// vectorised layouts) and a gray row (portable fallback), at ragged lengths.
    #[test]
    fn loads_match_portable() {
        use crate::engine::kernels::{LoadArgs, SrcRow};
        if !can_run("loads_match_portable", false) {
            return;
        }
        let vbmi = can_run("loads_match_portable", true);
        for ic in [1usize, 3, 4] {
            for n in [1usize, 5, 16, 17, 33, 100] {
                let src: Vec<u8> = (0..n * ic).map(|i| (i * 37 % 256) as u8).collect();
                let a = LoadArgs { src: SrcRow::U8(&src), ic, n };
                let run = |f: fn(&LoadArgs<'_>, &mut [&mut [f32]; 3])| {
                    let mut rows = vec![vec![f32::NAN; n.next_multiple_of(LANES)]; 3];
                    let [r0, r1, r2] = &mut rows[..] else { unreachable!() };
                    f(&a, &mut [&mut r0[..], &mut r1[..], &mut r2[..]]);
                    rows.iter().map(|r| r[..n].iter().map(|v| v.to_bits()).collect::<Vec<_>>()).collect::<Vec<_>>()
                };
                let want = run(crate::engine::portable::load);
                assert_eq!(run(load), want, "ic={ic} n={n}");
                if vbmi {
                    assert_eq!(run(load_vbmi), want, "vbmi ic={ic} n={n}");
                }
            }
        }
    }

    /// The fused fast-path kernel equals the staged one (`conv_fast`, then the portable interleave with r copies)
    /// for every scale, RGB and RGBA, ragged widths, and accumulators that are negative, above 1, infinite or NaN.
    #[test]
    fn fused_fast_path_matches_staged() {
        use crate::engine::kernels::{byte_tables, fused_lines, interleave_tables, FusedArgs, InterleaveArgs};
        if !can_run("fused_fast_path_matches_staged", true) {
            return;
        }
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed >> 8
        };
        for r in 2..=8usize {
            for nc in [3usize, 4] {
                for (n, k) in [(1usize, 1usize), (5, 3), (16, 1), (33, 3), (70, 5), (129, 3), (300, 1)] {
                    let len = n + 400;
                    let rows: Vec<Vec<f32>> = (0..3 * k)
                        .map(|_| {
                            (0..len)
                                .map(|_| match next() % 50 {
                                    0 => 3e38,
                                    1 => -3e38,
                                    v => (v as f32 - 12.0) / 30.0,
                                })
                                .collect()
                        })
                        .collect();
                    let row_refs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
                    let w: Vec<f32> = (0..27 * k * k).map(|_| (next() % 41) as f32 / 20.0 - 1.0).collect();
                    let a = FastArgs { rows: &row_refs, k, n, w: &w, b: [0.1, -0.2, 0.5], maxv: 255.0 };
                    let alpha: Vec<u16> = (0..len).map(|_| (next() % 256) as u16).collect();
                    let alpha = (nc == 4).then_some(&alpha[..]);
                    let row = n * r * nc;

                    let stride = len;
                    let mut staging = vec![0u16; 3 * stride];
                    conv_fast(&a, &mut Staging { data: &mut staging, stride });
                    let (tables, btables) = (interleave_tables(r, r, nc), byte_tables(r, r, nc));
                    let ia = InterleaveArgs {
                        planes: &staging,
                        stride,
                        rep_c: r,
                        alpha,
                        r,
                        n: n * r,
                        copies: r,
                        tables: &tables,
                        btables: &btables,
                    };
                    let mut want = vec![0u8; r * row + 5];
                    crate::engine::portable::interleave8(&ia, &mut want);

                    let (group, lines) = fused_lines(r, nc);
                    let mut got = vec![0u8; r * row + 5];
                    conv_fast_fused8(&a, &FusedArgs { alpha, r, group, lines: &lines }, &mut got);
                    assert_eq!(got, want, "r={r} nc={nc} n={n} k={k}");
                }
            }
        }
    }

    /// Both 8-bit interleaves (BW words, VBMI bytes) and the 16-bit one equal the portable interleave, for every
    /// scale, both colour repetitions (general and fast path), with and without alpha, and ragged row ends.
    #[test]
    fn interleaves_match_portable() {
        use crate::engine::kernels::{byte_tables, interleave_tables, InterleaveArgs};
        if !can_run("interleaves_match_portable", false) {
            return;
        }
        let vbmi = can_run("interleaves_match_portable", true);
        let mut seed = 1u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 16) as u16
        };
        for r in 1..=8usize {
            for w in [1usize, 5, 16, 33, 70] {
                for fast in [false, true] {
                    for nc in [3usize, 4] {
                        let rep_c = if fast { r } else { 1 };
                        let n = w * r;
                        let stride = n + 200;
                        let planes: Vec<u16> = (0..3 * stride).map(|_| next() & 0xFF).collect();
                        let alpha: Vec<u16> = (0..w + 200).map(|_| next() & 0xFF).collect();
                        let (tables, btables) = (interleave_tables(rep_c, r, nc), byte_tables(rep_c, r, nc));
                        let a = InterleaveArgs {
                            planes: &planes,
                            stride,
                            rep_c,
                            alpha: (nc == 4).then_some(&alpha[..]),
                            r,
                            n,
                            copies: 1 + r % 3,
                            tables: &tables,
                            btables: &btables,
                        };
                        let mut want = vec![0u8; (1 + r % 3) * n * nc + 7];
                        crate::engine::portable::interleave8(&a, &mut want);
                        let mut got = vec![0u8; (1 + r % 3) * n * nc + 7];
                        interleave8(&a, &mut got);
                        assert_eq!(got, want, "bw r={r} w={w} fast={fast} nc={nc}");
                        if vbmi {
                            let mut got = vec![0u8; (1 + r % 3) * n * nc + 7];
                            interleave8_vbmi(&a, &mut got);
                            assert_eq!(got, want, "vbmi r={r} w={w} fast={fast} nc={nc}");
                        }
                        let mut want16 = vec![0u16; (1 + r % 3) * n * nc + 7];
                        crate::engine::portable::interleave16(&a, &mut want16);
                        let mut got16 = vec![0u16; (1 + r % 3) * n * nc + 7];
                        interleave16(&a, &mut got16);
                        assert_eq!(got16, want16, "16-bit r={r} w={w} fast={fast} nc={nc}");
                    }
                }
            }
        }
    }
}
