//! One vector abstraction for the model engine's kernels ([`super::net`]): a [`Simd`] trait implemented by
//! `__m512` (AVX-512), `__m256` (AVX2+FMA), `float32x4_t` (NEON) and [`P8`] (portable, 8 lanes written to
//! auto-vectorise). The kernels are written once, generic over `V: Simd`, as `#[inline(always)]` functions, and
//! instantiated inside `#[target_feature]` wrappers, so that every intrinsic is inlined into code compiled for the
//! path's instruction set.
//!
//! Also the vectorised `tanh` (and the `exp` it uses) shared by every path; see [`tanh`] for its accuracy.

/// A vector of `W` f32 lanes.
///
/// # Safety
/// Every method requires the CPU to support the implementing type's instruction set (`avx512f` for `__m512`,
/// `avx2` and `fma` for `__m256`, `neon` for `float32x4_t`; nothing for [`P8`]); `load`/`store` also require `p`
/// to be valid for `W` f32 reads/writes.
pub(crate) trait Simd: Copy {
    /// Lanes.
    const W: usize;
    unsafe fn splat(v: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// `a * b + c` (fused on the SIMD paths, multiply then add on the portable path).
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn sub(a: Self, b: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    unsafe fn div(a: Self, b: Self) -> Self;
    unsafe fn max(a: Self, b: Self) -> Self;
    unsafe fn min(a: Self, b: Self) -> Self;
    unsafe fn abs(a: Self) -> Self;
    /// Per lane: `if a < b { x } else { y }`.
    unsafe fn select_lt(a: Self, b: Self, x: Self, y: Self) -> Self;
    /// Per lane: `mag` (non-negative) with the sign bit of `sign`.
    unsafe fn with_sign_of(mag: Self, sign: Self) -> Self;
    /// Round to the nearest integer, ties to even.
    unsafe fn round(a: Self) -> Self;
    /// `2^n` for integral `n` in `[-126, 127]`.
    unsafe fn pow2i(n: Self) -> Self;
}

/// `exp(z)` for `z` in `[-87, 88]`: Cephes `expf` (Cody-Waite reduction by ln 2, degree-6 polynomial), about 1 ULP.
// The coefficients are Cephes' as published (they round to the f32 the code uses).
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub(crate) unsafe fn exp<V: Simd>(z: V) -> V {
    // SAFETY: these `V` methods need only `V`'s CPU features (no pointers), which the caller guarantees.
    unsafe {
        let n = V::round(V::mul(z, V::splat(std::f32::consts::LOG2_E)));
        let f = V::fma(n, V::splat(-0.693_359_4), z);
        let f = V::fma(n, V::splat(2.121_944_4e-4), f);
        let mut p = V::splat(1.987_569_2e-4);
        p = V::fma(p, f, V::splat(1.398_199_9e-3));
        p = V::fma(p, f, V::splat(8.333_452e-3));
        p = V::fma(p, f, V::splat(4.166_579_6e-2));
        p = V::fma(p, f, V::splat(1.666_666_5e-1));
        p = V::fma(p, f, V::splat(5.000_000_1e-1));
        let y = V::add(V::fma(p, V::mul(f, f), f), V::splat(1.0));
        V::mul(y, V::pow2i(n))
    }
}

/// `tanh(x)`, Cephes `tanhf`: for `|x| < 0.625` the odd polynomial `x + x^3 P(x^2)` (degree 5 in `x^2`), else
/// `1 - 2 / (exp(2|x|) + 1)` with `|x|` clamped at 9.1 (where tanh rounds to 1), sign restored. Both branches are
/// computed and blended. Measured error against f64 `tanh` (test `tanh_is_accurate` over 2M points in
/// `[-12, 12]`): at most 3 ULP of the result (2 ULP typical at the branch point), identical with and without FMA
/// to within an ULP.
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub(crate) unsafe fn tanh<V: Simd>(x: V) -> V {
    // SAFETY: these `V` methods and `exp` need only `V`'s CPU features (no pointers), which the caller
    // guarantees.
    unsafe {
        let ax = V::abs(x);
        let z = V::mul(ax, ax);
        let mut p = V::splat(-5.704_988_7e-3);
        p = V::fma(p, z, V::splat(2.063_908_9e-2));
        p = V::fma(p, z, V::splat(-5.373_971_6e-2));
        p = V::fma(p, z, V::splat(1.333_144_2e-1));
        p = V::fma(p, z, V::splat(-3.333_328_2e-1));
        let small = V::fma(V::mul(p, z), ax, ax);
        let e = exp(V::mul(V::min(ax, V::splat(9.1)), V::splat(2.0)));
        let large = V::sub(V::splat(1.0), V::div(V::splat(2.0), V::add(e, V::splat(1.0))));
        V::with_sign_of(V::select_lt(ax, V::splat(0.625), small, large), x)
    }
}

/// The portable vector: 8 lanes in an array; LLVM vectorises the lane loops for the baseline target (SSE2).
#[derive(Clone, Copy)]
pub(crate) struct P8(pub [f32; 8]);

impl P8 {
    #[inline(always)]
    fn map2(a: P8, b: P8, f: impl Fn(f32, f32) -> f32) -> P8 {
        P8(std::array::from_fn(|i| f(a.0[i], b.0[i])))
    }
}

impl Simd for P8 {
    const W: usize = 8;
    #[inline(always)]
    unsafe fn splat(v: f32) -> P8 {
        P8([v; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> P8 {
        // SAFETY: the caller guarantees `p` is valid for reading 8 f32 (the `Simd` contract); the read is unaligned.
        P8(unsafe { std::ptr::read_unaligned(p as *const [f32; 8]) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees `p` is valid for writing 8 f32 (the `Simd` contract); the write is
        // unaligned.
        unsafe { std::ptr::write_unaligned(p as *mut [f32; 8], self.0) }
    }
    #[inline(always)]
    unsafe fn fma(a: P8, b: P8, c: P8) -> P8 {
        P8(std::array::from_fn(|i| a.0[i] * b.0[i] + c.0[i]))
    }
    #[inline(always)]
    unsafe fn add(a: P8, b: P8) -> P8 {
        P8::map2(a, b, |x, y| x + y)
    }
    #[inline(always)]
    unsafe fn sub(a: P8, b: P8) -> P8 {
        P8::map2(a, b, |x, y| x - y)
    }
    #[inline(always)]
    unsafe fn mul(a: P8, b: P8) -> P8 {
        P8::map2(a, b, |x, y| x * y)
    }
    #[inline(always)]
    unsafe fn div(a: P8, b: P8) -> P8 {
        P8::map2(a, b, |x, y| x / y)
    }
    #[inline(always)]
    unsafe fn max(a: P8, b: P8) -> P8 {
        P8::map2(a, b, |x, y| if x > y { x } else { y })
    }
    #[inline(always)]
    unsafe fn min(a: P8, b: P8) -> P8 {
        P8::map2(a, b, |x, y| if x < y { x } else { y })
    }
    #[inline(always)]
    unsafe fn abs(a: P8) -> P8 {
        P8(a.0.map(|x| f32::from_bits(x.to_bits() & 0x7fff_ffff)))
    }
    #[inline(always)]
    unsafe fn select_lt(a: P8, b: P8, x: P8, y: P8) -> P8 {
        P8(std::array::from_fn(|i| if a.0[i] < b.0[i] { x.0[i] } else { y.0[i] }))
    }
    #[inline(always)]
    unsafe fn with_sign_of(mag: P8, sign: P8) -> P8 {
        P8::map2(mag, sign, |m, s| f32::from_bits(m.to_bits() | (s.to_bits() & 0x8000_0000)))
    }
    #[inline(always)]
    unsafe fn round(a: P8) -> P8 {
        // Adding and subtracting 2^23 rounds |x| < 2^22 to an integer, ties to even; it vectorises everywhere.
        const MAGIC: f32 = 12_582_912.0;
        P8(a.0.map(|x| (x + MAGIC) - MAGIC))
    }
    #[inline(always)]
    unsafe fn pow2i(n: P8) -> P8 {
        P8(n.0.map(|n| f32::from_bits(((n as i32 + 127) << 23) as u32)))
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Simd;

    impl Simd for __m512 {
        const W: usize = 16;
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe { _mm512_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f, and `p` is valid for reading 16 f32.
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the `Simd` contract: the CPU supports avx512f, and `p` is valid for writing 16 f32.
            unsafe { _mm512_storeu_ps(p, self) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn mul(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn div(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe { _mm512_div_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe { _mm512_max_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn min(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe { _mm512_min_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn abs(a: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe { _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fff_ffff))) }
        }
        #[inline(always)]
        unsafe fn select_lt(a: Self, b: Self, x: Self, y: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b), y, x) }
        }
        #[inline(always)]
        unsafe fn with_sign_of(mag: Self, sign: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe {
                let s = _mm512_and_si512(_mm512_castps_si512(sign), _mm512_set1_epi32(i32::MIN));
                _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(mag), s))
            }
        }
        #[inline(always)]
        unsafe fn round(a: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
        }
        #[inline(always)]
        unsafe fn pow2i(n: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx512f.
            unsafe {
                let e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
                _mm512_castsi512_ps(_mm512_slli_epi32::<23>(e))
            }
        }
    }

    impl Simd for __m256 {
        const W: usize = 8;
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe { _mm256_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma, and `p` is valid for reading 8 f32.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma, and `p` is valid for writing 8 f32.
            unsafe { _mm256_storeu_ps(p, self) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn mul(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn div(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe { _mm256_div_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe { _mm256_max_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn min(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe { _mm256_min_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn abs(a: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
        }
        #[inline(always)]
        unsafe fn select_lt(a: Self, b: Self, x: Self, y: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe { _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_LT_OQ>(a, b)) }
        }
        #[inline(always)]
        unsafe fn with_sign_of(mag: Self, sign: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe { _mm256_or_ps(mag, _mm256_and_ps(sign, _mm256_set1_ps(-0.0))) }
        }
        #[inline(always)]
        unsafe fn round(a: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
        }
        #[inline(always)]
        unsafe fn pow2i(n: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports avx2 and fma.
            unsafe {
                let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
                _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e))
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::Simd;

    impl Simd for float32x4_t {
        const W: usize = 4;
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe { vdupq_n_f32(v) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon, and `p` is valid for reading 4 f32.
            unsafe { vld1q_f32(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the `Simd` contract: the CPU supports neon, and `p` is valid for writing 4 f32.
            unsafe { vst1q_f32(p, self) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe { vfmaq_f32(c, a, b) }
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe { vaddq_f32(a, b) }
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe { vsubq_f32(a, b) }
        }
        #[inline(always)]
        unsafe fn mul(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe { vmulq_f32(a, b) }
        }
        #[inline(always)]
        unsafe fn div(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe { vdivq_f32(a, b) }
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe { vmaxq_f32(a, b) }
        }
        #[inline(always)]
        unsafe fn min(a: Self, b: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe { vminq_f32(a, b) }
        }
        #[inline(always)]
        unsafe fn abs(a: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe { vabsq_f32(a) }
        }
        #[inline(always)]
        unsafe fn select_lt(a: Self, b: Self, x: Self, y: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe { vbslq_f32(vcltq_f32(a, b), x, y) }
        }
        #[inline(always)]
        unsafe fn with_sign_of(mag: Self, sign: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe { vbslq_f32(vdupq_n_u32(0x8000_0000), sign, mag) }
        }
        #[inline(always)]
        unsafe fn round(a: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe { vrndnq_f32(a) }
        }
        #[inline(always)]
        unsafe fn pow2i(n: Self) -> Self {
            // SAFETY: the `Simd` contract: the CPU supports neon.
            unsafe {
                let e = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
                vreinterpretq_f32_s32(vshlq_n_s32::<23>(e))
            }
        }
    }
}
