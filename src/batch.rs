//! Batch upscaling of files and folders (`icnr-upscale batch INPUT... --out-dir DIR`).
//!
//! - [`discover`]: INPUT files are taken as given (their relative path is their file name); directories are walked
//!   recursively (symbolic links to directories are not followed, so a loop cannot trap the walk) for the
//!   supported extensions, in sorted order. Each input's output is `DIR/<relative path>` with the extension
//!   replaced by `.png`. Inputs that would map to the same output all fail, and none of them is written; this is
//!   decided over every input, before sharding, so every shard agrees.
//! - [`shard_of`]: `--shard I/N` keeps the inputs whose relative path hashes (FNV-1a, 64-bit, over the path's
//!   components joined by `/`) to I modulo N. The shard depends only on the relative path, so N runs cover every
//!   input exactly once, and adding a file moves no other file to another shard.
//! - The CLI runs the kept inputs `--jobs` at a time, each through [`crate::pipeline::run`] into a temporary file
//!   renamed over the output (never a half-written output), within a memory budget (see [`estimate_bytes`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File extensions the batch picks up in directories (case-insensitive).
pub const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"];

/// One input file and where its output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub input: PathBuf,
    /// Relative to its INPUT root (for a file given directly, its file name); `/`-separated for hashing.
    pub relative: String,
    pub output: PathBuf,
    /// Set when the item cannot run (e.g. its output collides with another input's).
    pub conflict: Option<String>,
}

/// `I/N` of `--shard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("expected I/N with 0 <= I < N (e.g. 0/4), got {s:?}");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// The shard (0..count) of a relative path.
pub fn shard_of(relative: &str, count: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in relative.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % count
}

fn supported(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Every input under `inputs`, sorted by relative path within each root, with outputs under `out_dir` and
/// collisions marked. A missing INPUT is an error (a usage error for the CLI).
pub fn discover(inputs: &[PathBuf], out_dir: &Path) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    for root in inputs {
        let meta = std::fs::metadata(root).map_err(|e| format!("{}: {e}", root.display()))?;
        if meta.is_file() {
            let name = root.file_name().ok_or_else(|| format!("{}: not a file name", root.display()))?;
            items.push((root.clone(), vec![name.to_string_lossy().into_owned()]));
        } else if meta.is_dir() {
            let mut found = Vec::new();
            walk(root, &mut Vec::new(), &mut found).map_err(|e| format!("{}: {e}", root.display()))?;
            found.sort_by(|a, b| a.1.cmp(&b.1));
            items.extend(found);
        } else {
            return Err(format!("{}: not a file or directory", root.display()));
        }
    }
    let mut out: Vec<Item> = items
        .into_iter()
        .map(|(input, parts)| {
            let mut output = out_dir.to_path_buf();
            for p in &parts {
                output.push(p);
            }
            output.set_extension("png");
            Item { input, relative: parts.join("/"), output, conflict: None }
        })
        .collect();
    let mut by_output: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
    for (i, it) in out.iter().enumerate() {
        by_output.entry(it.output.clone()).or_default().push(i);
    }
    for idx in by_output.values().filter(|v| v.len() > 1) {
        let names: Vec<String> = idx.iter().map(|&i| out[i].input.display().to_string()).collect();
        for &i in idx {
            out[i].conflict = Some(format!(
                "{} inputs map to the same output {} ({}); none of them is written",
                idx.len(),
                out[i].output.display(),
                names.join(", ")
            ));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, prefix: &mut Vec<String>, found: &mut Vec<(PathBuf, Vec<String>)>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ty = e.file_type()?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if ty.is_dir() {
            prefix.push(name);
            walk(&path, prefix, found)?;
            prefix.pop();
        } else if (ty.is_file() || (ty.is_symlink() && path.is_file())) && supported(&path) {
            let mut parts = prefix.clone();
            parts.push(name);
            found.push((path, parts));
        }
    }
    Ok(())
}

/// Bytes one file's job may hold at its peak: the encoded file, the decoded input (at most 8 bytes a pixel) and
/// the engine's working set; the output streams to disk in bands. Unreadable headers count as the file size.
pub fn estimate_bytes(path: &Path) -> u64 {
    let file = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let pixels = image::ImageReader::open(path)
        .ok()
        .and_then(|r| r.with_guessed_format().ok())
        .and_then(|r| r.into_dimensions().ok())
        .map_or(0, |(w, h)| u64::from(w) * u64::from(h));
    file + pixels * 8 + (32 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_partition() {
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "0/0", "x/2", "1", "-1/2", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let names: Vec<String> = (0..200).map(|i| format!("d{}/f{i}.png", i % 7)).collect();
        let mut counts = [0usize; 4];
        for n in &names {
            counts[shard_of(n, 4) as usize] += 1;
        }
        assert_eq!(counts.iter().sum::<usize>(), names.len());
        assert!(counts.iter().all(|&c| c > 20), "{counts:?}");
    }
}
