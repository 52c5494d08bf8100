//! Choosing the engine's CPU code path by name: `ICNR_UPSCALE_CPU` / `--cpu` and [`options_for`].
//!
//! `auto` picks the best path this CPU has (run-time detection). Naming a path forces it; a path this CPU lacks, or
//! an unknown name, is an error listing the valid names: never a silent downgrade.

use crate::engine::{CpuPath, Options};

/// The names `--cpu` takes, in the order listed in errors.
pub const CPU_NAMES: &[&str] = &["auto", "portable", "avx2", "avx512", "neon"];

/// The path a name forces, `None` for `auto`.
pub fn parse_cpu(name: &str) -> Result<Option<CpuPath>, String> {
    let path = match name {
        "auto" => return Ok(None),
        "portable" => CpuPath::Portable,
        "avx2" => CpuPath::Avx2Fma,
        "avx512" => CpuPath::Avx512,
        "neon" => CpuPath::Neon,
        other => {
            return Err(format!(
                "unknown CPU path {other:?}; valid names: {} (this CPU has: {})",
                CPU_NAMES.join(", "),
                supported_names()
            ))
        }
    };
    if !path.is_supported() {
        return Err(format!("this CPU cannot run the {name} path; valid names here: auto, {}", supported_names()));
    }
    Ok(Some(path))
}

/// Engine options for a `--cpu` name.
pub fn options_for(name: &str) -> Result<Options, String> {
    let mut opts = Options::default();
    if let Some(path) = parse_cpu(name)? {
        opts.path = path;
    }
    Ok(opts)
}

/// The `--cpu` names of the paths this CPU supports, best first.
pub fn supported_names() -> String {
    CpuPath::supported().into_iter().map(cpu_name).collect::<Vec<_>>().join(", ")
}

/// The `--cpu` name of a path.
pub fn cpu_name(path: CpuPath) -> &'static str {
    match path {
        CpuPath::Avx512 => "avx512",
        CpuPath::Avx2Fma => "avx2",
        CpuPath::Neon => "neon",
        CpuPath::Portable => "portable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_path_can_be_forced_and_others_are_refused() {
        assert_eq!(parse_cpu("auto").unwrap(), None);
        for path in [CpuPath::Avx512, CpuPath::Avx2Fma, CpuPath::Neon, CpuPath::Portable] {
            let name = cpu_name(path);
            match parse_cpu(name) {
                Ok(p) => {
                    assert!(path.is_supported(), "{name} accepted on a CPU without it");
                    assert_eq!(p, Some(path));
                    assert_eq!(options_for(name).unwrap().path, path);
                }
                Err(e) => {
                    assert!(!path.is_supported(), "{name} refused on a CPU with it: {e}");
                    assert!(e.contains("valid names"), "{e}");
                }
            }
        }
        let e = parse_cpu("avx1024").unwrap_err();
        for n in CPU_NAMES {
            assert!(e.contains(n), "{e} lacks {n}");
        }
    }
}
