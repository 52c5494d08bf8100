//! Choosing the engine's CPU code path by name: `ICNR_UPSCALE_CPU` / `--cpu` and [`options_for`].
//!
//! `auto` picks the best path this CPU has (run-time detection). Naming a path forces it: `avx512`, `avx2`, `neon`,
//! `portable`, or `avx512-novbmi` (the AVX-512 path without its VBMI kernels). A path this CPU lacks, or an unknown
//! name, is an error listing the valid names: never a silent downgrade. The names are the engine's
//! ([`PATH_NAMES`]), so that the bench and the tests report paths with the same spelling.

use crate::engine::{supported_path_names, Options, PATH_NAMES};

/// The names `--cpu` takes, in the order listed in errors: `auto`, then [`PATH_NAMES`].
pub fn cpu_names() -> Vec<&'static str> {
    std::iter::once("auto").chain(PATH_NAMES).collect()
}

/// Engine options for a `--cpu` name: the defaults for `auto`, else the forced path.
pub fn options_for(name: &str) -> Result<Options, String> {
    if name == "auto" {
        return Ok(Options::default());
    }
    let Some(opts) = Options::forced(name) else {
        return Err(format!(
            "unknown CPU path {name:?}; valid names: {} (this CPU has: {})",
            cpu_names().join(", "),
            supported_path_names()
        ));
    };
    if !opts.is_supported() {
        return Err(format!("this CPU cannot run the {name} path; valid names here: auto, {}", supported_path_names()));
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CpuPath, AVX512_NO_VBMI};

    #[test]
    fn every_supported_path_can_be_forced_and_others_are_refused() {
        assert_eq!(options_for("auto").unwrap(), Options::default());
        for name in PATH_NAMES {
            match options_for(name) {
                Ok(o) => {
                    assert!(o.path.is_supported(), "{name} accepted on a CPU without it");
                    assert_eq!(o.allow_vbmi, name != AVX512_NO_VBMI, "{name}");
                    if name != AVX512_NO_VBMI {
                        assert_eq!(o.path.name(), name);
                    }
                    assert!(supported_path_names().split(", ").any(|n| n == name), "{name}");
                }
                Err(e) => {
                    let path = Options::forced(name).unwrap().path;
                    assert!(!path.is_supported(), "{name} refused on a CPU with it: {e}");
                    assert!(e.contains("valid names here: auto, "), "{e}");
                    assert!(e.contains(&supported_path_names()), "{e}");
                }
            }
        }
        // Every path has its name, and the no-VBMI variant is the AVX-512 path.
        for p in CpuPath::ALL {
            assert!(PATH_NAMES.contains(&p.name()), "{p:?}");
        }
        assert_eq!(options_for(AVX512_NO_VBMI).ok().map(|o| o.path), options_for("avx512").ok().map(|o| o.path));
        for bad in ["avx1024", "AVX512", "", "avx2_fma", "avx512-vbmi"] {
            let e = options_for(bad).unwrap_err();
            for n in cpu_names() {
                assert!(e.contains(n), "{e} lacks {n}");
            }
        }
    }

    /// On a CPU with AVX-512 VBMI, `avx512` runs the VBMI kernels and `avx512-novbmi` does not; their names say
    /// which ran.
    #[test]
    fn vbmi_can_be_switched_off() {
        let Ok(on) = options_for("avx512") else {
            crate::engine::test_report("SKIP path avx512 in cpu::vbmi_can_be_switched_off: not supported by this CPU");
            return;
        };
        let off = options_for(AVX512_NO_VBMI).unwrap();
        assert!(!off.uses_vbmi());
        assert_eq!(off.path_name(), AVX512_NO_VBMI);
        if on.uses_vbmi() {
            assert_eq!(on.path_name(), "avx512");
        } else {
            assert_eq!(on.path_name(), AVX512_NO_VBMI, "without VBMI, avx512 runs the no-VBMI kernels");
        }
    }
}
