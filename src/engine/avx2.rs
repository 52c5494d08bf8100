//! AVX2 + FMA kernels: 8-lane ymm vectors, register-blocked over 3 colours x `NV` vectors (12 of the 16 ymm
//! registers hold accumulators). On the general path a vector covers `8 - 8 % r` output pixels, a multiple of r,
//! so the first 8 lanes of the 16-lane weight patterns apply to every vector. Load, expand and interleave are the
//! portable kernels compiled with AVX2 enabled, so that LLVM vectorises them for this path.

use std::arch::x86_64::*;

use super::kernels::{ExpandArgs, FastArgs, GeneralArgs, InterleaveArgs, LoadArgs, Staging};
use super::path::CpuPath;
use super::portable;

/// Lanes of one ymm.
const L8: usize = 8;
const NV_GENERAL: usize = 3;
const NV_FAST: usize = 3;

/// General-path conv row (see [`GeneralArgs`]).
pub(crate) fn conv_general(a: &GeneralArgs<'_>, st: &mut Staging<'_>) {
    assert!(CpuPath::Avx2Fma.is_supported());
    a.check(L8 - L8 % a.r, NV_GENERAL, st);
    // SAFETY: the CPU supports avx2 and fma (asserted above), and `check` asserted every length the kernel reads
    // and writes for this lane width and block size.
    unsafe { conv_general_k(a, st) }
}

/// Fast-path conv row (see [`FastArgs`]).
pub(crate) fn conv_fast(a: &FastArgs<'_>, st: &mut Staging<'_>) {
    assert!(CpuPath::Avx2Fma.is_supported());
    a.check(NV_FAST, st);
    // SAFETY: the CPU supports avx2 and fma (asserted above), and `check` asserted every length the kernel reads
    // and writes for this block size (blocks of 16-lane steps cover at least what 8-lane steps touch).
    unsafe { conv_fast_k(a, st) }
}

/// The portable load, compiled with AVX2.
pub(crate) fn load(a: &LoadArgs<'_>, dst: &mut [&mut [f32]; 3]) {
    assert!(CpuPath::Avx2Fma.is_supported());
    // SAFETY: the CPU supports avx2 (asserted above); the kernel is safe, bounds-checked code.
    unsafe { load_k(a, dst) }
}

/// The portable expand, compiled with AVX2.
pub(crate) fn expand(a: &ExpandArgs<'_>, dst: &mut [f32]) {
    assert!(CpuPath::Avx2Fma.is_supported());
    // SAFETY: the CPU supports avx2 (asserted above); the kernel is safe, bounds-checked code.
    unsafe { expand_k(a, dst) }
}

/// The portable 8-bit interleave, compiled with AVX2.
pub(crate) fn interleave8(a: &InterleaveArgs<'_>, out: &mut [u8]) {
    assert!(CpuPath::Avx2Fma.is_supported());
    // SAFETY: the CPU supports avx2 (asserted above); the kernel is safe, bounds-checked code.
    unsafe { interleave8_k(a, out) }
}

/// The portable 16-bit interleave, compiled with AVX2.
pub(crate) fn interleave16(a: &InterleaveArgs<'_>, out: &mut [u16]) {
    assert!(CpuPath::Avx2Fma.is_supported());
    // SAFETY: the CPU supports avx2 (asserted above); the kernel is safe, bounds-checked code.
    unsafe { interleave16_k(a, out) }
}

/// # Safety
/// The CPU supports avx2.
#[target_feature(enable = "avx2")]
unsafe fn load_k(a: &LoadArgs<'_>, dst: &mut [&mut [f32]; 3]) {
    portable::load(a, dst)
}

/// # Safety
/// The CPU supports avx2.
#[target_feature(enable = "avx2")]
unsafe fn expand_k(a: &ExpandArgs<'_>, dst: &mut [f32]) {
    portable::expand(a, dst)
}

/// # Safety
/// The CPU supports avx2.
#[target_feature(enable = "avx2")]
unsafe fn interleave8_k(a: &InterleaveArgs<'_>, out: &mut [u8]) {
    portable::interleave8(a, out)
}

/// # Safety
/// The CPU supports avx2.
#[target_feature(enable = "avx2")]
unsafe fn interleave16_k(a: &InterleaveArgs<'_>, out: &mut [u16]) {
    portable::interleave16(a, out)
}

/// `round_ties_even(clamp(acc, 0, 1) * maxv)` as 8 u16 stored at `dst` (NaN gives 0, see the AVX-512 `store_q`).
///
/// # Safety
/// The CPU supports avx2; `dst` is valid for writing 8 u16.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store_q(dst: *mut u16, acc: __m256, one: __m256, maxv: __m256) {
    let t = _mm256_mul_ps(_mm256_min_ps(one, acc), maxv);
    let i = _mm256_max_epi32(_mm256_cvtps_epi32(t), _mm256_setzero_si256());
    // Values are in [0, 65535]: the saturating pack is exact. It packs within 128-bit halves; gather qwords 0, 2.
    let p = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(i, i));
    // SAFETY: the caller guarantees `dst` is valid for writing 8 u16, the 16 bytes this unaligned store writes.
    unsafe { _mm_storeu_si128(dst as *mut __m128i, _mm256_castsi256_si128(p)) };
}

/// # Safety
/// - The CPU supports avx2 and fma.
/// - `a.check(8 - 8 % a.r, NV_GENERAL, st)` holds (so `a.r <= 8`).
// Register blocking indexes the three accumulator rows by the same `v`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma")]
unsafe fn conv_general_k(a: &GeneralArgs<'_>, st: &mut Staging<'_>) {
    const NV: usize = NV_GENERAL;
    const LANES: usize = super::kernels::LANES;
    let (k, r) = (a.k, a.r);
    let l = L8 - L8 % r;
    let mut rows = [std::ptr::null::<f32>(); 27];
    for (d, s) in rows.iter_mut().zip(a.rows) {
        *d = s.as_ptr();
    }
    let (one, maxv) = (_mm256_set1_ps(1.0), _mm256_set1_ps(a.maxv));
    let (wp, bp) = (a.w.as_ptr(), a.b.as_ptr());
    let (out, stride) = (st.data.as_mut_ptr(), st.stride);
    let mut p0 = 0;
    while p0 < a.n {
        let mut acc = [[_mm256_setzero_ps(); NV]; 3];
        for (c, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `check` asserted `b.len() >= 3 * LANES`; for c < 3 the 8 values at `c * LANES` are in it.
            *acc = [unsafe { _mm256_loadu_ps(bp.add(c * LANES)) }; NV];
        }
        let mut w = wp;
        // SAFETY: by the caller's `check(l, NV, st)`, every row (`rows[..3k]`) holds `extent(n, l, NV) + (k-1)*r`
        // values; `p0 < n` is a multiple of `NV * l`, so the 8 values read at `p0 + dx*r + v*l` (dx < k, v < NV)
        // end below `p0 + NV*l + 8 + (k-1)*r`, within that. `w` holds `3k^2` taps of `3 * LANES` weights and
        // advances one tap per (ic, dy, dx), reading 8 lanes at 0, LANES and 2 * LANES of it.
        unsafe {
            for ic in 0..3 {
                for dy in 0..k {
                    let row = rows[ic * k + dy].add(p0);
                    for dx in 0..k {
                        let src = row.add(dx * r);
                        let w0 = _mm256_loadu_ps(w);
                        let w1 = _mm256_loadu_ps(w.add(LANES));
                        let w2 = _mm256_loadu_ps(w.add(2 * LANES));
                        w = w.add(3 * LANES);
                        for v in 0..NV {
                            let x = _mm256_loadu_ps(src.add(v * l));
                            acc[0][v] = _mm256_fmadd_ps(w0, x, acc[0][v]);
                            acc[1][v] = _mm256_fmadd_ps(w1, x, acc[1][v]);
                            acc[2][v] = _mm256_fmadd_ps(w2, x, acc[2][v]);
                        }
                    }
                }
            }
        }
        for (c, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                // SAFETY: avx2 is enabled here. The 8 samples at `p0 + v*l` end below `p0 + NV*l + 8 <=
                // extent(n, l, NV)`, and `check` asserted `stride >= extent` and `data.len() >= 2 * stride +
                // extent`, so plane c < 3 holds them.
                unsafe { store_q(out.add(c * stride + p0 + v * l), acc, one, maxv) };
            }
        }
        p0 += NV * l;
    }
}

/// # Safety
/// - The CPU supports avx2 and fma.
/// - `a.check(NV_FAST, st)` holds.
// Register blocking indexes the three accumulator rows by the same `v`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma")]
unsafe fn conv_fast_k(a: &FastArgs<'_>, st: &mut Staging<'_>) {
    const NV: usize = NV_FAST;
    let k = a.k;
    let mut rows = [std::ptr::null::<f32>(); 27];
    for (d, s) in rows.iter_mut().zip(a.rows) {
        *d = s.as_ptr();
    }
    let (one, maxv) = (_mm256_set1_ps(1.0), _mm256_set1_ps(a.maxv));
    let wp = a.w.as_ptr();
    let (out, stride) = (st.data.as_mut_ptr(), st.stride);
    let mut x0 = 0;
    while x0 < a.n {
        let mut acc = [[_mm256_setzero_ps(); NV]; 3];
        for (c, acc) in acc.iter_mut().enumerate() {
            *acc = [_mm256_set1_ps(a.b[c]); NV];
        }
        let mut w = wp;
        // SAFETY: by the caller's `check(NV, st)`, every row (`rows[..3k]`) holds `extent(n, LANES, NV) + k - 1`
        // values, `extent` rounding n up to a multiple of `NV * LANES` (plus LANES); `x0 < n` is a multiple of
        // `NV * 8`, so the 8 values read at `x0 + dx + 8v` (dx < k, v < NV) end below `x0 + NV*8 + k - 1`, within
        // that. `w` holds `3k^2` taps of 3 weights and advances one tap per (ic, dy, dx).
        unsafe {
            for ic in 0..3 {
                for dy in 0..k {
                    let row = rows[ic * k + dy].add(x0);
                    for dx in 0..k {
                        let src = row.add(dx);
                        let w0 = _mm256_set1_ps(*w);
                        let w1 = _mm256_set1_ps(*w.add(1));
                        let w2 = _mm256_set1_ps(*w.add(2));
                        w = w.add(3);
                        for v in 0..NV {
                            let x = _mm256_loadu_ps(src.add(v * L8));
                            acc[0][v] = _mm256_fmadd_ps(w0, x, acc[0][v]);
                            acc[1][v] = _mm256_fmadd_ps(w1, x, acc[1][v]);
                            acc[2][v] = _mm256_fmadd_ps(w2, x, acc[2][v]);
                        }
                    }
                }
            }
        }
        for (c, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                // SAFETY: avx2 is enabled here. The 8 samples at `x0 + 8v` end below `x0 + NV*8 <= extent(n,
                // LANES, NV)`, and `check` asserted `stride >= extent` and `data.len() >= 2 * stride + extent`.
                unsafe { store_q(out.add(c * stride + x0 + v * L8), acc, one, maxv) };
            }
        }
        x0 += NV * L8;
    }
}
