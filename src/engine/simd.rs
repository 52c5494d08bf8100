//! One vector abstraction for the model engine's kernels ([`super::net`]): a [`Simd`] trait implemented by
//! `__m512` (AVX-512), `__m256` (AVX2+FMA), `float32x4_t` (NEON) and [`P8`] (portable, 8 lanes written to
//! auto-vectorise). The kernels are written once, generic over `V: Simd`, as `#[inline(always)]` functions, and
//! instantiated inside `#[target_feature]` wrappers, so that every intrinsic is inlined into code compiled for the
//! path's instruction set.
//!
//! Also the vectorised `tanh` shared by every path; see [`tanh`] for its accuracy.

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
}

/// `tanh(x)`: the rational approximation `x P(x^2) / Q(x^2)` (P of degree 6, Q of degree 3; Eigen's
/// `generic_fast_tanh_float` coefficients) of `x` clamped to `[-7.905311, 7.905311]` (where tanh rounds to 1): 11
/// multiply-adds and a division, where `1 - 2 / (exp(2|x|) + 1)` and a polynomial for small `|x|`, blended, took
/// about 30 operations. Measured error against f64 `tanh` (test `tanh_is_accurate`, 2M points in `[-12, 12]`): at
/// most 4.9 ULP of the result with FMA, 7 without (the portable path); 4.1e-7 absolute at most, far below the
/// 1/65535 of a 16-bit output step.
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub(crate) unsafe fn tanh<V: Simd>(x: V) -> V {
    // SAFETY: these `V` methods need only `V`'s CPU features (no pointers), which the caller guarantees.
    unsafe {
        let x = V::max(V::min(x, V::splat(7.905_311)), V::splat(-7.905_311));
        let x2 = V::mul(x, x);
        let mut p = V::splat(-2.760_768_5e-16);
        p = V::fma(p, x2, V::splat(2.000_188e-13));
        p = V::fma(p, x2, V::splat(-8.604_672e-11));
        p = V::fma(p, x2, V::splat(5.122_297e-8));
        p = V::fma(p, x2, V::splat(1.485_722_4e-5));
        p = V::fma(p, x2, V::splat(6.372_619e-4));
        p = V::fma(p, x2, V::splat(4.893_524_6e-3));
        p = V::mul(p, x);
        let mut q = V::splat(1.198_258_4e-6);
        q = V::fma(q, x2, V::splat(1.185_347e-4));
        q = V::fma(q, x2, V::splat(2.268_434_7e-3));
        q = V::fma(q, x2, V::splat(4.893_525e-3));
        V::div(p, q)
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
    }
}
