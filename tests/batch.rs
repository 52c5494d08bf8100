//! `icnr-upscale batch`: folders walked recursively in sorted order, outputs at the same relative paths with
//! `.png`, collisions fail without writing, existing outputs skipped (or replaced with `--overwrite`), failures
//! reported and the run continues, exit codes 0 / 1 / 2, the summary line, and `--shard I/N` covering every input
//! exactly once with shards decided by relative path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn batch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_icnr-upscale")).arg("batch").args(args).output().expect("run the binary")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn write_image(path: &Path, w: u32, h: u32, format: image::ImageFormat) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 20) as u8, (y * 30) as u8, ((x + y) * 7) as u8]));
    img.save_with_format(path, format).unwrap();
}

/// Every file under `dir`, relative, `/`-separated.
fn files(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in");
    write_image(&inp.join("a.png"), 12, 10, image::ImageFormat::Png);
    write_image(&inp.join("sub/b.jpg"), 9, 7, image::ImageFormat::Jpeg);
    write_image(&inp.join("sub/deeper/c.bmp"), 5, 6, image::ImageFormat::Bmp);
    std::fs::write(inp.join("notes.txt"), "not an image").unwrap();
    let out = tmp.path().join("out");
    (tmp, inp, out)
}

/// A folder is walked recursively; outputs keep the relative paths with `.png`, at the model's scale; a rerun
/// skips and reports what exists, `--overwrite` replaces it.
#[test]
fn folders_map_to_relative_png_outputs_and_reruns_skip() {
    let (_tmp, inp, out) = tree();
    let o = batch(&[inp.to_str().unwrap(), "--out-dir", out.to_str().unwrap(), "--progress", "never"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(files(&out), ["a.png", "sub/b.png", "sub/deeper/c.png"].map(String::from).into());
    let a = image::open(out.join("a.png")).unwrap();
    assert_eq!((a.width(), a.height()), (24, 20));
    assert!(stdout.contains("3 succeeded, 0 failed, 0 skipped"), "{stdout}");
    assert!(stdout.contains("model espcn-x2"), "{stdout}");

    let before = std::fs::read(out.join("a.png")).unwrap();
    let o = batch(&[inp.to_str().unwrap(), "--out-dir", out.to_str().unwrap(), "--progress", "never"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout.contains("0 succeeded, 0 failed, 3 skipped"), "{stdout}");
    assert!(stderr.contains("skipped:") && stderr.contains("a.png") && stderr.contains("--overwrite"), "{stderr}");

    // --overwrite with another model replaces the outputs.
    let o = batch(&[
        inp.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
        "--progress",
        "never",
        "--overwrite",
        "--model",
        "nearest",
        "--scale",
        "3",
    ]);
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout.contains("3 succeeded"), "{stdout}");
    let after = std::fs::read(out.join("a.png")).unwrap();
    assert_ne!(before, after);
    assert_eq!(image::load_from_memory(&after).unwrap().width(), 36);
}

/// Two inputs that map to the same output both fail and neither is written; an undecodable file fails with its
/// path and reason; the others still run; the exit code is 1. Usage errors are 2.
#[test]
fn collisions_and_bad_files_fail_alone_and_usage_errors_are_2() {
    let (_tmp, inp, out) = tree();
    write_image(&inp.join("sub/b.png"), 4, 4, image::ImageFormat::Png); // collides with sub/b.jpg
    std::fs::write(inp.join("broken.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    let o = batch(&[inp.to_str().unwrap(), "--out-dir", out.to_str().unwrap(), "--progress", "never", "--jobs", "2"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(files(&out), ["a.png", "sub/deeper/c.png"].map(String::from).into(), "{stderr}");
    assert!(stdout.contains("2 succeeded, 3 failed, 0 skipped"), "{stdout}");
    assert!(stderr.contains("same output") && stderr.contains("b.jpg") && stderr.contains("b.png"), "{stderr}");
    assert!(stderr.contains("broken.png"), "{stderr}");
    // No temporary files are left behind.
    assert!(files(&out).iter().all(|f| !f.contains(".tmp")));

    for args in [
        vec![inp.to_str().unwrap(), "--out-dir", out.to_str().unwrap(), "--shard", "3/3"],
        vec![inp.to_str().unwrap(), "--out-dir", out.to_str().unwrap(), "--model", "nope"],
        vec!["/nonexistent/input", "--out-dir", out.to_str().unwrap()],
        vec![inp.to_str().unwrap()],
    ] {
        let o = batch(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {:?}", text(&o));
    }
}

/// N shards cover every input exactly once, and a file's shard depends on its relative path only: adding files
/// moves no other file to another shard.
#[test]
fn shards_cover_every_input_once_and_are_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in");
    for i in 0..12 {
        write_image(&inp.join(format!("d{}/f{i}.png", i % 3)), 3, 3, image::ImageFormat::Png);
    }
    let run = |n: u32| -> Vec<BTreeSet<String>> {
        (0..n)
            .map(|i| {
                let out = tmp.path().join(format!("out-{n}-{i}-{}", files(&inp).len()));
                let o = batch(&[
                    inp.to_str().unwrap(),
                    "--out-dir",
                    out.to_str().unwrap(),
                    "--shard",
                    &format!("{i}/{n}"),
                    "--model",
                    "nearest",
                    "--progress",
                    "never",
                ]);
                assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
                files(&out)
            })
            .collect()
    };
    let shards = run(3);
    let all: Vec<&String> = shards.iter().flatten().collect();
    assert_eq!(all.len(), 12, "{shards:?}");
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 12);
    assert!(shards.iter().filter(|s| !s.is_empty()).count() >= 2, "{shards:?}");

    for i in 12..20 {
        write_image(&inp.join(format!("new/g{i}.png")), 3, 3, image::ImageFormat::Png);
    }
    let grown = run(3);
    for (old, new) in shards.iter().zip(&grown) {
        assert!(old.is_subset(new), "a file changed shard: {old:?} -> {new:?}");
    }
    assert_eq!(grown.iter().map(BTreeSet::len).sum::<usize>(), 20);
}
