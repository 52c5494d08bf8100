//! AVX-512 kernels (avx512f, avx512bw, avx512vl): one 16-lane zmm per logical vector, FMA, register-blocked over
//! 3 colours x `NV` vectors (24 accumulators), weights as lane-pattern vectors (general) or broadcasts (fast).

use std::arch::x86_64::*;

use super::band::{FastArgs, GeneralArgs, InterleaveArgs, Staging};
use super::portable::LANES;
use super::CpuPath;

/// Vectors per block: 3 x 8 accumulators + 3 weights + 1 input fit the 32 zmm registers.
const NV_GENERAL: usize = 8;
const NV_FAST: usize = 8;

/// General-path conv row (see [`GeneralArgs`]).
pub(crate) fn conv_general(a: &GeneralArgs<'_>, st: &mut Staging<'_>) {
    assert!(CpuPath::Avx512.is_supported());
    a.check(LANES - LANES % a.r, NV_GENERAL, st);
    // SAFETY: the CPU supports avx512f/bw/vl (asserted above), and `check` asserted every length the kernel reads
    // and writes for this lane width and block size.
    unsafe { conv_general_k(a, st) }
}

/// Fast-path conv row (see [`FastArgs`]).
pub(crate) fn conv_fast(a: &FastArgs<'_>, st: &mut Staging<'_>) {
    assert!(CpuPath::Avx512.is_supported());
    a.check(NV_FAST, st);
    // SAFETY: the CPU supports avx512f/bw/vl (asserted above), and `check` asserted every length the kernel reads
    // and writes for this block size.
    unsafe { conv_fast_k(a, st) }
}

/// Interleave into 8-bit samples.
pub(crate) fn interleave8(a: &InterleaveArgs<'_>, out: &mut [u8]) {
    assert!(CpuPath::Avx512.is_supported());
    a.check(out.len());
    // SAFETY: the CPU supports avx512f/bw/vl (asserted above), and `check` asserted the plane, alpha, table and
    // output lengths the kernel relies on.
    unsafe { interleave8_k(a, out) }
}

/// Interleave into 16-bit samples.
pub(crate) fn interleave16(a: &InterleaveArgs<'_>, out: &mut [u16]) {
    assert!(CpuPath::Avx512.is_supported());
    a.check(out.len());
    // SAFETY: as in `interleave8`.
    unsafe { interleave16_k(a, out) }
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
    _mm256_storeu_si256(dst as *mut __m256i, _mm512_cvtusepi32_epi16(i));
}

/// # Safety
/// - The CPU supports avx512f.
/// - `a.check(LANES - LANES % a.r, NV_GENERAL, st)` holds.
// Register blocking indexes the three accumulator rows by the same `v`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f")]
unsafe fn conv_general_k(a: &GeneralArgs<'_>, st: &mut Staging<'_>) {
    const NV: usize = NV_GENERAL;
    let (k, r) = (a.k, a.r);
    let l = LANES - LANES % r;
    let mut rows = [std::ptr::null::<f32>(); 27];
    for (d, s) in rows.iter_mut().zip(a.rows) {
        *d = s.as_ptr();
    }
    let (one, maxv) = (_mm512_set1_ps(1.0), _mm512_set1_ps(a.maxv));
    let (wp, bp) = (a.w.as_ptr(), a.b.as_ptr());
    let (out, stride) = (st.data.as_mut_ptr(), st.stride);
    let mut p0 = 0;
    while p0 < a.n {
        let mut acc = [[_mm512_setzero_ps(); NV]; 3];
        for (c, acc) in acc.iter_mut().enumerate() {
            *acc = [_mm512_loadu_ps(bp.add(c * LANES)); NV];
        }
        let mut w = wp;
        for ic in 0..3 {
            for dy in 0..k {
                let row = rows[ic * k + dy].add(p0);
                for dx in 0..k {
                    let src = row.add(dx * r);
                    let w0 = _mm512_loadu_ps(w);
                    let w1 = _mm512_loadu_ps(w.add(LANES));
                    let w2 = _mm512_loadu_ps(w.add(2 * LANES));
                    w = w.add(3 * LANES);
                    for v in 0..NV {
                        let x = _mm512_loadu_ps(src.add(v * l));
                        acc[0][v] = _mm512_fmadd_ps(w0, x, acc[0][v]);
                        acc[1][v] = _mm512_fmadd_ps(w1, x, acc[1][v]);
                        acc[2][v] = _mm512_fmadd_ps(w2, x, acc[2][v]);
                    }
                }
            }
        }
        // Vector v+1 overwrites the LANES - l garbage lanes vector v stored past its l pixels.
        for (c, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                store_q(out.add(c * stride + p0 + v * l), acc, one, maxv);
            }
        }
        p0 += NV * l;
    }
}

/// # Safety
/// - The CPU supports avx512f.
/// - `a.check(NV_FAST, st)` holds.
// Register blocking indexes the three accumulator rows by the same `v`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f")]
unsafe fn conv_fast_k(a: &FastArgs<'_>, st: &mut Staging<'_>) {
    const NV: usize = NV_FAST;
    let k = a.k;
    let mut rows = [std::ptr::null::<f32>(); 27];
    for (d, s) in rows.iter_mut().zip(a.rows) {
        *d = s.as_ptr();
    }
    let (one, maxv) = (_mm512_set1_ps(1.0), _mm512_set1_ps(a.maxv));
    let wp = a.w.as_ptr();
    let (out, stride) = (st.data.as_mut_ptr(), st.stride);
    let mut x0 = 0;
    while x0 < a.n {
        let mut acc = [[_mm512_setzero_ps(); NV]; 3];
        for (c, acc) in acc.iter_mut().enumerate() {
            *acc = [_mm512_set1_ps(a.b[c]); NV];
        }
        let mut w = wp;
        for ic in 0..3 {
            for dy in 0..k {
                let row = rows[ic * k + dy].add(x0);
                for dx in 0..k {
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
        for (c, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                store_q(out.add(c * stride + x0 + v * LANES), acc, one, maxv);
            }
        }
        x0 += NV * LANES;
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
        let (o0, o1) = gather16(a, p0, &a.tables[phase]);
        let (b0, b1) = (_mm512_cvtepi16_epi8(o0), _mm512_cvtepi16_epi8(o1));
        let d = dst.add(p0 * nc);
        let ns = (a.n - p0).min(LANES) * nc;
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
        p0 += LANES;
        phase += 1;
        if phase == a.tables.len() {
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
        let (o0, o1) = gather16(a, p0, &a.tables[phase]);
        let d = dst.add(p0 * nc);
        let ns = (a.n - p0).min(LANES) * nc;
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
        p0 += LANES;
        phase += 1;
        if phase == a.tables.len() {
            phase = 0;
        }
    }
}
