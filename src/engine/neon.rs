//! aarch64 NEON kernels of the single-layer engine (the multi-layer engine's NEON kernels are in `net` and
//! `simd`). They are the portable 16-lane kernels with fused multiply-add (`FUSED = true`), compiled with NEON
//! enabled, where LLVM turns the `mul_add` lanes into `fmla` on four q registers per logical vector.
//!
//! How they are tested: CI's `aarch64` step (`.ci/run`) cross-builds the library's unit tests and the engine,
//! parity, parity-range, model-parity and kernel tests for aarch64-unknown-linux-gnu and runs them under
//! qemu-user, so this path runs against the portable one and against the PyTorch fixtures, and the pinned kernel
//! weights are checked on a second architecture; the step fails unless the tests report that the NEON path ran.
//! On x86-64, `portable`'s unit test runs the same generic code with `FUSED = true`.

use super::kernels::{FastArgs, GeneralArgs, Staging};
use super::path::CpuPath;
use super::portable::{conv_fast_generic, conv_general_generic};

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
