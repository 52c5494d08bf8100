//! Parity with PyTorch across the documented range: r up to 8, k up to 9, conv rows wider than one block of kernel
//! work, images many bands tall, RGBA and gray+alpha (alpha compared exactly), 8 and 16 bits, on every CPU path
//! this machine supports, with and without the ICNR fast path, and on 1, 2 and 3 threads.
//!
//! The fixtures in `tests/fixtures/range/` come from `scripts/make_fixtures.py` (see its docstring). To stay small
//! they hold neither the weights nor the expected output:
//! - the weights are dyadic numbers from a xorshift64* stream that [`range_kernel`] regenerates bit for bit (the
//!   script checks that torch holds exactly those values);
//! - the expected output is one FNV-1a 64 hash per output row, taken after zeroing the samples whose exact value
//!   lies within `delta` of a rounding boundary (`delta` = 4 x PyTorch's own float32 error, at least 0.001 LSB).
//!   Those "ambiguous" samples are listed as `[index, lower]`: they may be `lower` or `lower + 1`. Every other
//!   sample, alpha included, must be exactly PyTorch's.

mod support;

use std::path::{Path, PathBuf};

use icnr_upscale::engine::{is_tied, Image, Options, Samples, Upscaler};
use icnr_upscale::kernel::Kernel;
use serde_json::Value;
use support::paths::{every_path, PathsRan};

fn range_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join("range")
}

fn read_json(name: &str) -> Value {
    let path = range_dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2));
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn u(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("fixture field {key}"))
}

/// xorshift64* with 24-bit outputs, as `scripts/make_fixtures.py` `xorshift64star`.
struct XorShift(u64);

impl XorShift {
    fn next24(&mut self) -> i64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as i64
    }
}

/// The case's kernel, as `scripts/make_fixtures.py` `range_kernel` makes it: weights `(v - 2^23) * 2^(e - 23)`,
/// bias `0.5 + ((v >> s) - 2^(23 - s)) * 2^-24` with `s = -1 - e`; tied kernels draw one sub-kernel and bias per
/// colour and repeat each r^2 times. Loaded through the kernel JSON reader users get.
fn range_kernel(r: usize, k: usize, tied: bool, seed: u64, e: i32) -> Kernel {
    let mut g = XorShift(if seed == 0 { 1 } else { seed });
    let step = 2f64.powi(e - 23);
    let groups = if tied { 3 } else { 3 * r * r };
    let per = 3 * k * k;
    let w0: Vec<f64> = (0..groups * per).map(|_| (g.next24() - (1 << 23)) as f64 * step).collect();
    let s = -1 - e;
    assert!(s >= 0);
    let b0: Vec<f64> =
        (0..groups).map(|_| 0.5 + ((g.next24() >> s) - (1 << (23 - s))) as f64 * 2f64.powi(-24)).collect();
    let rep = if tied { r * r } else { 1 };
    let weight: Vec<f32> =
        (0..3 * r * r).flat_map(|o| w0[o / rep * per..(o / rep + 1) * per].to_vec()).map(|v| v as f32).collect();
    let bias: Vec<f32> = (0..3 * r * r).map(|o| b0[o / rep] as f32).collect();
    // Every value is exact in f32 (24-bit mantissas times powers of two).
    assert!(weight
        .iter()
        .zip((0..3 * r * r).flat_map(|o| w0[o / rep * per..(o / rep + 1) * per].to_vec()))
        .all(|(a, b)| *a as f64 == b));
    assert!(bias.iter().enumerate().all(|(o, v)| *v as f64 == b0[o / rep]));
    // Nested [out][in][k][k] like conv.weight.tolist(), shortest round-trip f32 text.
    let num = |v: &f32| format!("{v:?}");
    let mut json = String::from("{\"weight\":[");
    for o in 0..3 * r * r {
        json.push_str(if o == 0 { "[" } else { ",[" });
        for i in 0..3 {
            json.push_str(if i == 0 { "[" } else { ",[" });
            for y in 0..k {
                let row = &weight[((o * 3 + i) * k + y) * k..((o * 3 + i) * k + y + 1) * k];
                json.push_str(if y == 0 { "[" } else { ",[" });
                json.push_str(&row.iter().map(num).collect::<Vec<_>>().join(","));
                json.push(']');
            }
            json.push(']');
        }
        json.push(']');
    }
    json.push_str("],\"bias\":[");
    json.push_str(&bias.iter().map(num).collect::<Vec<_>>().join(","));
    json.push_str("]}");
    let kernel = Kernel::from_json(json.as_bytes()).expect("range kernel JSON");
    assert_eq!((kernel.scale() as usize, kernel.kernel_size() as usize), (r, k));
    assert_eq!(kernel.weight().as_slice().unwrap(), weight);
    assert_eq!(kernel.bias().as_slice().unwrap(), bias);
    kernel
}

struct Case {
    name: String,
    scale: usize,
    tied: bool,
    kernel: Kernel,
    input: Image,
    out_dims: (u32, u32, u8),
    /// Output sample indices that may be `lower` or `lower + 1`.
    ambiguous: Vec<(usize, u32)>,
    row_hashes: Vec<u64>,
}

fn cases() -> Vec<Case> {
    let index = read_json("index.json");
    let names: Vec<String> =
        index["cases"].as_array().expect("cases").iter().map(|n| n.as_str().unwrap().to_string()).collect();
    names
        .into_iter()
        .map(|name| {
            let c = read_json(&format!("{name}.json"));
            let (r, k) = (u(&c, "scale") as usize, u(&c, "kernel_size") as usize);
            let tied = c["weights"] == "icnr";
            let kernel = range_kernel(r, k, tied, u(&c, "kernel_seed"), c["kernel_exponent"].as_i64().unwrap() as i32);
            let bytes = unhex(c["input"].as_str().unwrap());
            let samples = match u(&c, "bit_depth") {
                8 => Samples::U8(bytes),
                16 => Samples::U16(bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()),
                d => panic!("bit depth {d}"),
            };
            let input = Image {
                width: u(&c, "width") as u32,
                height: u(&c, "height") as u32,
                channels: u(&c, "channels") as u8,
                samples,
            };
            let (ow, oh, oc) =
                (u(&c, "out_width") as usize, u(&c, "out_height") as usize, u(&c, "out_channels") as usize);
            // Expand per-block entries (tied kernels) to the r x r output samples of their block.
            let per_block = c["ambiguous_per_block"].as_bool().unwrap();
            let mut ambiguous = Vec::new();
            for e in c["ambiguous"].as_array().unwrap() {
                let (i, lower) = (e[0].as_u64().unwrap() as usize, e[1].as_u64().unwrap() as u32);
                if per_block {
                    let (px, ch) = (i / 3, i % 3);
                    let (y, x) = (px / input.width as usize, px % input.width as usize);
                    for oy in y * r..(y + 1) * r {
                        for ox in x * r..(x + 1) * r {
                            ambiguous.push(((oy * ow + ox) * oc + ch, lower));
                        }
                    }
                } else {
                    ambiguous.push((i, lower));
                }
            }
            let row_hashes = c["row_hashes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| u64::from_str_radix(h.as_str().unwrap(), 16).unwrap())
                .collect::<Vec<_>>();
            assert_eq!(row_hashes.len(), oh, "{name}: one hash per output row");
            Case {
                name,
                scale: r,
                tied,
                kernel,
                input,
                out_dims: (ow as u32, oh as u32, oc as u8),
                ambiguous,
                row_hashes,
            }
        })
        .collect()
}

fn fnv1a64(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Checks one engine output against the case; returns a description of every problem (empty: parity).
fn check(got: &Image, case: &Case) -> Vec<String> {
    let (ow, oh, oc) = case.out_dims;
    let mut problems = Vec::new();
    if (got.width, got.height, got.channels, got.bit_depth()) != (ow, oh, oc, case.input.bit_depth()) {
        problems.push(format!(
            "output {}x{}x{} at {} bits, want {ow}x{oh}x{oc} at {}",
            got.width,
            got.height,
            got.channels,
            got.bit_depth(),
            case.input.bit_depth()
        ));
        return problems;
    }
    let mut s: Vec<u32> = match &got.samples {
        Samples::U8(v) => v.iter().map(|&x| x as u32).collect(),
        Samples::U16(v) => v.iter().map(|&x| x as u32).collect(),
    };
    for &(i, lower) in &case.ambiguous {
        if s[i] != lower && s[i] != lower + 1 {
            problems.push(format!(
                "sample {i} is {}, must be {lower} or {} (its exact value is near {lower}.5)",
                s[i],
                lower + 1
            ));
        }
        s[i] = 0;
    }
    let row = ow as usize * oc as usize;
    let sixteen = case.input.bit_depth() == 16;
    let mut bad_rows = Vec::new();
    for (y, want) in case.row_hashes.iter().enumerate() {
        let samples = &s[y * row..(y + 1) * row];
        let h = if sixteen {
            fnv1a64(samples.iter().flat_map(|&v| (v as u16).to_le_bytes()))
        } else {
            fnv1a64(samples.iter().map(|&v| v as u8))
        };
        if h != *want {
            bad_rows.push(y);
        }
    }
    if !bad_rows.is_empty() {
        problems.push(format!(
            "{} of {oh} output rows differ from PyTorch's outside the ambiguous samples (first: {:?})",
            bad_rows.len(),
            &bad_rows[..bad_rows.len().min(10)]
        ));
    }
    problems
}

/// Every range case matches PyTorch on every CPU path this machine supports (AVX-512 with and without VBMI), with
/// and without the fast path; the paths that ran and those that could not are printed (CI checks that every
/// supported path ran).
#[test]
fn matches_pytorch_across_the_range() {
    let cases = cases();
    // The set covers the range the README documents.
    assert!(cases.iter().any(|c| c.scale == 8) && cases.iter().any(|c| c.kernel.kernel_size() == 9));
    for r in 2..=8 {
        assert!(cases.iter().any(|c| c.scale == r), "no case with r = {r}");
    }
    for k in [1, 3, 5, 7, 9] {
        assert!(cases.iter().any(|c| c.kernel.kernel_size() == k), "no case with k = {k}");
    }
    assert!(cases.iter().any(|c| c.input.channels == 4 && c.input.bit_depth() == 16));
    assert!(cases.iter().any(|c| c.input.channels == 4 && c.input.bit_depth() == 8 && c.tied));
    assert!(cases.iter().any(|c| c.input.channels == 2));
    // Wide conv rows: more than 128 conv pixels (one block) on the fast path (input width) and the general one.
    assert!(cases.iter().any(|c| c.tied && c.input.width > 128));
    assert!(cases.iter().any(|c| !c.tied && c.input.width as usize * c.scale > 128));
    // Many bands tall: more bands than one group of 16 a thread on 2 threads. A band is as many input rows as fit
    // 192 KiB of output (src/engine/band.rs, BAND_OUT_BYTES).
    let bands = |c: &Case| {
        let (w, _, ch) = c.out_dims;
        let per_in_row = c.scale * w as usize * ch as usize * (c.input.bit_depth() as usize / 8);
        let band_h = ((192 << 10) / per_in_row).max(1);
        (c.input.height as usize).div_ceil(band_h)
    };
    assert!(cases.iter().any(|c| bands(c) > 32), "no case of more than 32 bands");

    let mut ran = PathsRan::new("matches_pytorch_across_the_range");
    let mut failures = Vec::new();
    for c in &cases {
        assert_eq!(is_tied(&c.kernel), c.tied, "{}: tying detection", c.name);
        for opts in every_path(true) {
            let name = opts.path_name();
            for allow_fast_path in [true, false] {
                if !c.tied && !allow_fast_path {
                    continue; // the same run as allow_fast_path = true
                }
                let up = Upscaler::from_kernel(&c.kernel, Options { allow_fast_path, ..opts }).unwrap();
                assert_eq!(up.path_name(), name, "Upscaler::new did not take path {name}");
                assert_eq!(up.uses_fast_path(), c.tied && allow_fast_path, "{}", c.name);
                for p in check(&up.upscale(&c.input).unwrap(), c) {
                    failures.push(format!("{} path {name} fast={allow_fast_path}: {p}", c.name));
                }
            }
            ran.add(&opts);
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// The output does not depend on the number of threads: every range case gives the same samples on 1, 2 and 3
/// rayon threads (bands are grouped per thread, so the grouping differs), on every supported path.
#[test]
fn output_is_identical_across_thread_counts() {
    let cases = cases();
    let mut ran = PathsRan::new("output_is_identical_across_thread_counts");
    let mut failures = Vec::new();
    for c in &cases {
        for opts in every_path(true) {
            let path = opts.path_name();
            let up = Upscaler::from_kernel(&c.kernel, opts).unwrap();
            let outs: Vec<(usize, Image)> = [1, 2, 3]
                .into_iter()
                .map(|threads| {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
                    (threads, pool.install(|| up.upscale(&c.input).unwrap()))
                })
                .collect();
            for (threads, out) in &outs[1..] {
                if out.samples != outs[0].1.samples {
                    failures.push(format!("{} path {path}: {threads} threads differ from 1 thread", c.name));
                }
            }
            // And each of them is PyTorch's.
            for p in check(&outs[0].1, c) {
                failures.push(format!("{} path {path} on 1 thread: {p}", c.name));
            }
            ran.add(&opts);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
