//! The CPU paths the engine can run ([`CpuPath`]), how a run is configured ([`Options`]) and the names a path can be
//! forced by ([`PATH_NAMES`]).

/// The CPU code path that runs the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPath {
    Avx512,
    Avx2Fma,
    Neon,
    Portable,
}

impl CpuPath {
    /// Every path, best first.
    pub const ALL: [CpuPath; 4] = [CpuPath::Avx512, CpuPath::Avx2Fma, CpuPath::Neon, CpuPath::Portable];

    /// The best path this CPU supports (run-time detection).
    pub fn detect() -> CpuPath {
        CpuPath::ALL.into_iter().find(|p| p.is_supported()).unwrap_or(CpuPath::Portable)
    }
    /// Whether this CPU can run `self`.
    pub fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            CpuPath::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
            }
            #[cfg(target_arch = "x86_64")]
            CpuPath::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "aarch64")]
            CpuPath::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            CpuPath::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
    /// Every path this CPU can run, best first; always ends with `Portable`.
    pub fn supported() -> Vec<CpuPath> {
        CpuPath::ALL.into_iter().filter(|p| p.is_supported()).collect()
    }
    /// The path's name, as `--cpu` and `ICNR_UPSCALE_CPU` take it: `avx512`, `avx2`, `neon`, `portable`.
    pub fn name(self) -> &'static str {
        match self {
            CpuPath::Avx512 => "avx512",
            CpuPath::Avx2Fma => "avx2",
            CpuPath::Neon => "neon",
            CpuPath::Portable => "portable",
        }
    }
}

/// The name of the AVX-512 kernels without VBMI: `Options { path: CpuPath::Avx512, allow_vbmi: false, .. }`.
pub const AVX512_NO_VBMI: &str = "avx512-novbmi";

/// The names of the kernel sets a run can be forced to, best first: every [`CpuPath::name`], and
/// [`AVX512_NO_VBMI`] after `avx512`. Parsed by [`Options::forced`].
pub const PATH_NAMES: [&str; 5] = ["avx512", AVX512_NO_VBMI, "avx2", "neon", "portable"];

/// Whether the CPU has AVX-512 VBMI (byte permutes), which the AVX-512 path uses when allowed.
fn has_vbmi() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        CpuPath::Avx512.is_supported() && is_x86_feature_detected!("avx512vbmi")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// How to run the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Must be supported (`CpuPath::is_supported`): `Upscaler::new` and `Upscaler::from_kernel` refuse it otherwise.
    pub path: CpuPath,
    /// Use the ICNR fast path when the kernel is tied. `false` forces the general path (for tests).
    pub allow_fast_path: bool,
    /// On the AVX-512 path, use the AVX-512 VBMI byte-permute kernels (the RGB8 load, the 8-bit interleave and
    /// the fused 8-bit ICNR fast path) when the CPU has avx512vbmi. `false` runs the AVX-512 kernels without VBMI
    /// ([`AVX512_NO_VBMI`]), so that both AVX-512 variants run on a VBMI machine. Other paths ignore it.
    pub allow_vbmi: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { path: CpuPath::detect(), allow_fast_path: true, allow_vbmi: true }
    }
}

impl Options {
    /// The options that force the kernel set `name` (one of [`PATH_NAMES`]), with the fast path allowed; `None`
    /// for any other name. Whether this CPU can run them is [`Options::is_supported`].
    pub fn forced(name: &str) -> Option<Options> {
        let (path, allow_vbmi) = if name == AVX512_NO_VBMI {
            (CpuPath::Avx512, false)
        } else {
            (CpuPath::ALL.into_iter().find(|p| p.name() == name)?, true)
        };
        Some(Options { path, allow_fast_path: true, allow_vbmi })
    }
    /// Whether this CPU can run these options' path.
    pub fn is_supported(&self) -> bool {
        self.path.is_supported()
    }
    /// Whether the run uses the VBMI kernels: the AVX-512 path, VBMI allowed, and a CPU with avx512vbmi.
    pub fn uses_vbmi(&self) -> bool {
        self.path == CpuPath::Avx512 && self.allow_vbmi && has_vbmi()
    }
    /// The name of the kernels these options run on this CPU (one of [`PATH_NAMES`]): the path's name, except
    /// [`AVX512_NO_VBMI`] for the AVX-512 path without VBMI (not allowed, or a CPU without avx512vbmi).
    pub fn path_name(&self) -> &'static str {
        if self.path == CpuPath::Avx512 && !self.uses_vbmi() {
            AVX512_NO_VBMI
        } else {
            self.path.name()
        }
    }
    /// One option set for every kernel set this CPU runs, best first, with the fast path allowed: every supported
    /// path, and on a CPU with AVX-512 VBMI the AVX-512 path both with and without it. The `path_name`s are
    /// distinct; tests run each of them.
    pub fn every_supported() -> Vec<Options> {
        let mut v: Vec<Options> = Vec::new();
        for name in PATH_NAMES {
            let o = Options::forced(name).expect("a PATH_NAMES entry");
            if o.is_supported() && !v.iter().any(|p| p.path_name() == o.path_name()) {
                v.push(o);
            }
        }
        v
    }
}

/// The [`PATH_NAMES`] this CPU can be forced to, best first, comma-separated.
pub fn supported_path_names() -> String {
    PATH_NAMES
        .into_iter()
        .filter(|n| Options::forced(n).is_some_and(|o| o.is_supported()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// For unit tests: writes `line` past the test harness's output capture, so that it shows in `cargo test`'s
/// output (a test that cannot run its path says so there).
#[cfg(test)]
pub(crate) fn test_report(line: &str) {
    use std::io::Write as _;
    // One write, so that the harness's own output cannot land inside the line.
    let _ = std::io::stderr().lock().write_all(format!("\n{line}\n").as_bytes());
}
