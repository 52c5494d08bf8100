//! aarch64 NEON kernels. They are the portable 16-lane kernels with fused multiply-add (`FUSED = true`), compiled
//! with NEON enabled, where LLVM turns the `mul_add` lanes into `fmla` on four q registers per logical vector.
//! Kept this simple on purpose: this tree is only built and tested on x86-64 (the aarch64 target is not installed
//! here), and the same generic code is exercised with `FUSED = true` by the unit test in this module's parent.

use super::band::{FastArgs, GeneralArgs, Staging};
use super::portable::{conv_fast_generic, conv_general_generic};
use super::CpuPath;

/// General-path conv row (see [`GeneralArgs`]).
pub(crate) fn conv_general(a: &GeneralArgs<'_>, st: &mut Staging<'_>) {
    assert!(CpuPath::Neon.is_supported());
    // SAFETY: the CPU supports neon (asserted above); the kernel itself is safe code (bounds-checked slices).
    unsafe { conv_general_k(a, st) }
}

/// Fast-path conv row (see [`FastArgs`]).
pub(crate) fn conv_fast(a: &FastArgs<'_>, st: &mut Staging<'_>) {
    assert!(CpuPath::Neon.is_supported());
    // SAFETY: the CPU supports neon (asserted above); the kernel itself is safe code (bounds-checked slices).
    unsafe { conv_fast_k(a, st) }
}

/// # Safety
/// The CPU supports neon.
#[target_feature(enable = "neon")]
unsafe fn conv_general_k(a: &GeneralArgs<'_>, st: &mut Staging<'_>) {
    conv_general_generic::<true>(a, st)
}

/// # Safety
/// The CPU supports neon.
#[target_feature(enable = "neon")]
unsafe fn conv_fast_k(a: &FastArgs<'_>, st: &mut Staging<'_>) {
    conv_fast_generic::<true>(a, st)
}
