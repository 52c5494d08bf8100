//! Kernel generation, validation and the kernel JSON / safetensors formats.
//!
//! Expected numbers come from PyTorch's definitions (torch/nn/init.py distributions, ICNR tying with
//! `repeat_interleave`, PixelShuffle) or from exact properties; the one pinned vector is a regression guard.

mod support;

use icnr_upscale::engine::{Image, Options, Samples, Upscaler};
use icnr_upscale::kernel::{Init, Initializer, Kernel, KernelParams, IN_CHANNELS, MAX_KERNEL_BYTES};
use ndarray::{Array1, Array4};
use support::paths::{every_path, PathsRan};

const RANDOM_INITIALIZERS: [Initializer; 4] =
    [Initializer::KaimingNormal, Initializer::KaimingUniform, Initializer::XavierNormal, Initializer::XavierUniform];
const ALL_INITIALIZERS: [Initializer; 5] = [
    Initializer::KaimingNormal,
    Initializer::KaimingUniform,
    Initializer::XavierNormal,
    Initializer::XavierUniform,
    Initializer::Dirac,
];

fn params(scale: u32, kernel_size: u32, init: Init, initializer: Initializer, seed: u64) -> KernelParams {
    KernelParams { scale, kernel_size, init, initializer, seed }
}

fn gen(p: KernelParams) -> Kernel {
    Kernel::generate(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"))
}

fn err_json(json: &str) -> String {
    match Kernel::from_json(json.as_bytes()) {
        Ok(k) => panic!("accepted {json:.200}: {k:?}"),
        Err(e) => e.to_string(),
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Nested `[out][in][k][k]` JSON text of a flat tensor with an arbitrary shape (like `tensor.tolist()`).
fn nested(values: &[f32], shape: &[usize]) -> String {
    if shape.len() == 1 {
        let v: Vec<String> = values.iter().map(|x| format!("{x:?}")).collect();
        return format!("[{}]", v.join(","));
    }
    let stride: usize = shape[1..].iter().product();
    let parts: Vec<String> =
        (0..shape[0]).map(|i| nested(&values[i * stride..(i + 1) * stride], &shape[1..])).collect();
    format!("[{}]", parts.join(","))
}

fn weight_json(shape: &[usize]) -> String {
    let n: usize = shape.iter().product();
    let vals: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.125 - 0.25).collect();
    format!("{{\"weight\":{}}}", nested(&vals, shape))
}

struct Stats {
    n: f64,
    mean: f64,
    std: f64,
    max_abs: f64,
}

fn stats(v: &[f32]) -> Stats {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    let max_abs = v.iter().map(|&x| (x as f64).abs()).fold(0.0, f64::max);
    Stats { n, mean, std: var.sqrt(), max_abs }
}

enum Dist {
    /// N(0, std)
    Normal(f64),
    /// U(-b, b)
    Uniform(f64),
}

/// Checks sample mean, std and bounds against the distribution with 5 standard errors of tolerance: a correct
/// generator fails this with probability below 1e-6 per check, a wrong std (e.g. a gain or fan off by a factor
/// of sqrt(2) or more) fails it for these sample sizes (>= 46656 values, tolerance under 2% of the std).
fn check_dist(what: &str, v: &[f32], dist: Dist) {
    let s = stats(v);
    let (sigma, rel_se_std) = match dist {
        // SE(std)/std = 1/sqrt(2n) for a normal sample.
        Dist::Normal(sd) => (sd, (1.0 / (2.0 * s.n)).sqrt()),
        // Uniform: var = b^2/3, Var(X^2) = 4b^4/45, so SE(std)/std = sqrt(1/5)/sqrt(n).
        Dist::Uniform(b) => (b / 3f64.sqrt(), (0.2 / s.n).sqrt()),
    };
    let se_mean = sigma / s.n.sqrt();
    assert!(s.mean.abs() < 5.0 * se_mean, "{what}: mean {} vs 0 (5 SE = {})", s.mean, 5.0 * se_mean);
    assert!(
        (s.std / sigma - 1.0).abs() < 5.0 * rel_se_std,
        "{what}: std {} vs {sigma} (rel tol {})",
        s.std,
        5.0 * rel_se_std
    );
    match dist {
        Dist::Normal(sd) => {
            // P(|z| > 6) = 2e-9 per value: under 1e-4 for 46656 values.
            assert!(s.max_abs < 6.0 * sd, "{what}: max |w| {} beyond 6 std", s.max_abs);
            assert!(s.max_abs > 3.0 * sd, "{what}: max |w| {} never reaches 3 std", s.max_abs);
        }
        Dist::Uniform(b) => {
            assert!(v.iter().all(|&x| (x as f64) >= -b && (x as f64) < b), "{what}: value outside [-{b}, {b})");
            // P(all |x| < 0.99 b) = 0.99^n, about 1e-200 for n = 46656.
            assert!(s.max_abs > 0.99 * b, "{what}: max |w| {} does not reach the bound {b}", s.max_abs);
        }
    }
}

fn expected_dist(initializer: Initializer, fan_in: f64, fan_out: f64) -> Dist {
    match initializer {
        Initializer::KaimingNormal => Dist::Normal((2.0 / fan_in).sqrt()),
        Initializer::KaimingUniform => Dist::Uniform((6.0 / fan_in).sqrt()),
        Initializer::XavierNormal => Dist::Normal((2.0 / (fan_in + fan_out)).sqrt()),
        Initializer::XavierUniform => Dist::Uniform((6.0 / (fan_in + fan_out)).sqrt()),
        Initializer::Dirac => unreachable!(),
    }
}

/// `plain` on the largest kernel (r = 8, k = 9: 46656 weights): torch.nn.init's distributions with fan_in = 3*k*k and
/// fan_out = 3r^2*k*k; bias zero.
#[test]
fn plain_initializer_statistics() {
    let (fan_in, fan_out) = (3.0 * 81.0, 192.0 * 81.0);
    for init in RANDOM_INITIALIZERS {
        let k = gen(params(8, 9, Init::Plain, init, 7));
        check_dist(&format!("plain {init:?}"), k.weight().as_slice().unwrap(), expected_dist(init, fan_in, fan_out));
        assert!(k.bias().as_slice().unwrap().iter().all(|&b| b.to_bits() == 0));
    }
}

/// `icnr` draws W0 with fan_in = fan_out = 3*k*k (fan_out = (C_out/r^2)*k*k). W0 has only 729 values at k = 9,
/// so 64 seeds are pooled (46656 values), taking one representative channel per group.
#[test]
fn icnr_initializer_statistics() {
    let fan = 3.0 * 81.0;
    for init in RANDOM_INITIALIZERS {
        let mut pooled = Vec::new();
        for seed in 0..64 {
            let k = gen(params(8, 9, Init::Icnr, init, seed));
            let per_out = IN_CHANNELS * 81;
            for g in 0..3 {
                let o = g * 64;
                pooled.extend_from_slice(&k.weight().as_slice().unwrap()[o * per_out..(o + 1) * per_out]);
            }
        }
        assert_eq!(pooled.len(), 46656);
        check_dist(&format!("icnr {init:?}"), &pooled, expected_dist(init, fan, fan));
    }
}

/// `default` is nn.Conv2d's own init: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 3*k*k.
#[test]
fn default_init_statistics() {
    let k = gen(params(8, 9, Init::Default, Initializer::KaimingNormal, 3));
    let b = 1.0 / (243f64).sqrt();
    check_dist("default weight", k.weight().as_slice().unwrap(), Dist::Uniform(b));
    // Only 192 bias values: bounds, and that they are not all zero / not tied.
    assert!(k.bias().as_slice().unwrap().iter().all(|&x| (x as f64) >= -b && (x as f64) < b));
    assert!(k.bias().as_slice().unwrap().windows(2).all(|w| w[0] != w[1]));
    // The initializer does not matter for `default`.
    let k2 = gen(params(8, 9, Init::Default, Initializer::Dirac, 3));
    assert_eq!(bits(k.weight().as_slice().unwrap()), bits(k2.weight().as_slice().unwrap()));
}

/// Dirac: W0[c, c, k/2, k/2] = 1, else 0; plain dirac is torch.nn.init.dirac_ on [3r^2, 3, k, k]: W[i, i, centre] = 1
/// for i < 3.
#[test]
fn dirac_layout() {
    for ks in [1u32, 3, 5] {
        let k = ks as usize;
        let c = k / 2;
        let icnr = gen(params(3, ks, Init::Icnr, Initializer::Dirac, 0));
        let plain = gen(params(3, ks, Init::Plain, Initializer::Dirac, 0));
        for o in 0..27 {
            for i in 0..3 {
                for y in 0..k {
                    for x in 0..k {
                        let idx = ((o * 3 + i) * k + y) * k + x;
                        let centre = y == c && x == c;
                        assert_eq!(
                            icnr.weight().as_slice().unwrap()[idx],
                            if centre && o / 9 == i { 1.0 } else { 0.0 }
                        );
                        assert_eq!(plain.weight().as_slice().unwrap()[idx], if centre && o == i { 1.0 } else { 0.0 });
                    }
                }
            }
        }
    }
}

/// Same parameters give the same bits, also when generated concurrently on several threads; another seed differs.
#[test]
fn determinism() {
    for init in [Init::Icnr, Init::Default, Init::Plain] {
        for initializer in RANDOM_INITIALIZERS {
            let p = params(4, 5, init, initializer, 42);
            let a = gen(p);
            let handles: Vec<_> = (0..4).map(|_| std::thread::spawn(move || gen(p))).collect();
            for h in handles {
                let b = h.join().unwrap();
                assert_eq!(bits(a.weight().as_slice().unwrap()), bits(b.weight().as_slice().unwrap()));
                assert_eq!(bits(a.bias().as_slice().unwrap()), bits(b.bias().as_slice().unwrap()));
            }
            let c = gen(KernelParams { seed: 43, ..p });
            assert_ne!(
                bits(a.weight().as_slice().unwrap()),
                bits(c.weight().as_slice().unwrap()),
                "{p:?}: seed does not matter"
            );
        }
    }
}

/// Regression guard, pinned from this implementation (ChaCha8Rng::seed_from_u64(0) + rand_distr 0.5 Normal<f32>,
/// W0 drawn row-major): if these change, every generated kernel changed on this platform or dependency version.
#[test]
fn pinned_default_params() {
    let k = gen(KernelParams::default());
    let pinned: [u32; 8] =
        [0x3e4313cb, 0xbd209936, 0x3da8d3ca, 0xbebf896b, 0x3ea74421, 0x3cf6fef4, 0x3ebd3892, 0x3e8a5c92];
    // 0.19050519, -0.039208613, 0.082435206, -0.3740953, 0.32669166, 0.030150868, 0.36957222, 0.2702375
    assert_eq!(bits(&k.weight().as_slice().unwrap()[..8]), pinned);
}

/// ICNR ties in runs of r^2 consecutive output channels (repeat_interleave), not tiles (repeat): W[o] == W[o - o % r^2],
/// and channel 1 (same group as 0) equals channel 0 while channel r^2 (next colour group) differs.
#[test]
fn icnr_follows_repeat_interleave() {
    for r in 2..=8u32 {
        for ks in [1u32, 3] {
            for initializer in RANDOM_INITIALIZERS {
                let k = gen(params(r, ks, Init::Icnr, initializer, u64::from(r * 10 + ks)));
                let r2 = (r * r) as usize;
                let per = IN_CHANNELS * (ks * ks) as usize;
                let ch = |o: usize| bits(&k.weight().as_slice().unwrap()[o * per..(o + 1) * per]);
                for o in 0..3 * r2 {
                    assert_eq!(ch(o), ch(o - o % r2), "r={r} k={ks} o={o}");
                }
                assert_eq!(ch(1), ch(0));
                // With repeat (W[o] = W0[o % 3]) channel 3 would equal channel 0 and channel 1 would not.
                assert_ne!(ch(0), ch(r2));
                assert_ne!(ch(r2), ch(2 * r2));
                assert!(k.bias().as_slice().unwrap().iter().all(|&b| b.to_bits() == 0), "icnr bias must be zero");
                assert!(icnr_upscale::engine::is_tied(&k));
            }
        }
    }
}

fn random_image(w: u32, h: u32, channels: u8, sixteen: bool, seed: u64) -> Image {
    // A small LCG is enough for test pixels.
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    let n = (w * h) as usize * channels as usize;
    let samples = if sixteen {
        Samples::U16((0..n).map(|_| next() as u16).collect())
    } else {
        Samples::U8((0..n).map(|_| next() as u8).collect())
    };
    Image { width: w, height: h, channels, samples }
}

fn sample(img: &Image, i: usize) -> u32 {
    match &img.samples {
        Samples::U8(v) => v[i] as u32,
        Samples::U16(v) => v[i] as u32,
    }
}

/// ICNR(dirac) is exact nearest-neighbour upscaling (W0 is the identity at the centre tap): out[c, y, x] = in[c, y / r, x / r], on every
/// CPU path, fast path or not, 8 and 16 bit, with and without alpha (gray is expanded to RGB).
#[test]
fn icnr_dirac_is_nearest_neighbour() {
    let mut ran = PathsRan::new("icnr_dirac_is_nearest_neighbour");
    for (r, ks) in [(2u32, 3u32), (3, 1), (4, 5)] {
        let k = gen(params(r, ks, Init::Icnr, Initializer::Dirac, 0));
        for (channels, sixteen) in [(3u8, false), (4, true), (1, false), (2, true)] {
            let img = random_image(11, 7, channels, sixteen, u64::from(r + ks));
            for opts in every_path(true) {
                let path = opts.path_name();
                for allow_fast_path in [true, false] {
                    let out =
                        Upscaler::from_kernel(&k, Options { allow_fast_path, ..opts }).unwrap().upscale(&img).unwrap();
                    assert_eq!((out.width, out.height), (11 * r, 7 * r));
                    let oc = out.channels as usize;
                    let ic = channels as usize;
                    for y in 0..out.height as usize {
                        for x in 0..out.width as usize {
                            let src = (y / r as usize) * 11 + x / r as usize;
                            for c in 0..oc {
                                let sc = if c == 3 {
                                    ic - 1
                                } else if ic <= 2 {
                                    0
                                } else {
                                    c
                                };
                                assert_eq!(
                                    sample(&out, (y * out.width as usize + x) * oc + c),
                                    sample(&img, src * ic + sc),
                                    "r={r} k={ks} ch={channels} {path} fast={allow_fast_path} at ({x},{y},{c})"
                                );
                            }
                        }
                    }
                }
                ran.add(&opts);
            }
        }
    }
}

/// Every r x r output block is uniform for an ICNR kernel (tied weight and zero bias), any initializer.
#[test]
fn icnr_blocks_are_uniform() {
    let mut ran = PathsRan::new("icnr_blocks_are_uniform");
    for (r, ks, initializer) in [
        (2u32, 3u32, Initializer::KaimingNormal),
        (3, 5, Initializer::XavierUniform),
        (4, 1, Initializer::KaimingUniform),
    ] {
        let k = gen(params(r, ks, Init::Icnr, initializer, 9));
        let img = random_image(9, 13, 3, false, 5);
        for opts in every_path(true) {
            for allow_fast_path in [true, false] {
                let out =
                    Upscaler::from_kernel(&k, Options { allow_fast_path, ..opts }).unwrap().upscale(&img).unwrap();
                let (w, r) = (out.width as usize, r as usize);
                for y in 0..out.height as usize {
                    for x in 0..w {
                        for c in 0..3 {
                            let corner = ((y - y % r) * w + (x - x % r)) * 3 + c;
                            let (got, want) = (sample(&out, (y * w + x) * 3 + c), sample(&out, corner));
                            assert_eq!(got, want, "{} fast={allow_fast_path} at ({x},{y},{c})", opts.path_name());
                        }
                    }
                }
            }
            ran.add(&opts);
        }
    }
}

/// to_json -> from_json gives the identical kernel (bits and provenance) for every init and initializer, and the
/// bytes are deterministic.
#[test]
fn json_round_trip() {
    for init in [Init::Icnr, Init::Default, Init::Plain] {
        for initializer in ALL_INITIALIZERS {
            for (r, ks) in [(2u32, 1u32), (3, 3), (8, 9)] {
                let k = gen(params(r, ks, init, initializer, 1234));
                let j = k.to_json();
                assert_eq!(j, gen(params(r, ks, init, initializer, 1234)).to_json());
                assert!(j.ends_with("}\n"));
                let back = Kernel::from_json(j.as_bytes()).unwrap();
                assert_eq!(bits(back.weight().as_slice().unwrap()), bits(k.weight().as_slice().unwrap()));
                assert_eq!(bits(back.bias().as_slice().unwrap()), bits(k.bias().as_slice().unwrap()));
                assert_eq!((back.init(), back.initializer(), back.seed()), (k.init(), k.initializer(), k.seed()));
                assert_eq!((back.scale(), back.kernel_size()), (r, ks));
            }
        }
    }
}

/// The JSON field order and nesting follow `conv.weight.tolist()`: weight[o][i][y][x].
#[test]
fn json_layout() {
    let k = gen(params(2, 3, Init::Plain, Initializer::KaimingNormal, 5));
    let v: serde_json::Value = serde_json::from_str(&k.to_json()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
    let mut sorted =
        vec!["scale", "kernel_size", "in_channels", "out_channels", "init", "initializer", "seed", "weight", "bias"];
    sorted.sort_unstable();
    assert_eq!(keys, sorted); // serde_json::Map is sorted without preserve_order
    assert!(k.to_json().starts_with(r#"{"scale":2,"kernel_size":3,"in_channels":3,"out_channels":12,"init":"plain","initializer":"kaiming_normal","seed":5,"weight":[[[["#));
    assert_eq!(
        v["weight"][7][2][1][0].as_f64().unwrap() as f32,
        k.weight().as_slice().unwrap()[((7 * 3 + 2) * 3 + 1) * 3]
    );
    assert_eq!(v["weight"].as_array().unwrap().len(), 12);
    assert_eq!(v["bias"].as_array().unwrap().len(), 12);
}

/// Weights that are not what the claimed parameters generate become Custom, print `null` provenance, and read back
/// unchanged. A minimal `{"weight": ...}` gets a zero bias.
#[test]
fn json_custom_weights() {
    let mut w = gen(KernelParams::default()).weight().clone();
    w[[0, 0, 1, 2]] += 1.0; // flat index 5
    let k = Kernel::from_json(Kernel::new(w, None).unwrap().to_json().replace("custom", "icnr").as_bytes()).unwrap();
    let back = Kernel::from_json(k.to_json().as_bytes()).unwrap();
    assert_eq!(back.init(), Init::Custom);
    assert_eq!(bits(back.weight().as_slice().unwrap()), bits(k.weight().as_slice().unwrap()));
    let j = back.to_json();
    assert!(j.contains(r#""init":"custom","initializer":null,"seed":null"#), "{j:.200}");
    assert_eq!(Kernel::from_json(j.as_bytes()).unwrap(), back);

    let minimal = Kernel::from_json(weight_json(&[27, 3, 1, 1]).as_bytes()).unwrap();
    assert_eq!((minimal.scale(), minimal.kernel_size(), minimal.init()), (3, 1, Init::Custom));
    assert_eq!(minimal.bias().as_slice().unwrap(), vec![0.0; 27]);
    assert_eq!(minimal.weight().as_slice().unwrap()[6], 0.5);
    // Integers are numbers too, and a given bias is used.
    let ints = format!(
        "{{\"weight\":{},\"bias\":{}}}",
        nested(&[1.0; 324], &[12, 3, 3, 3]).replacen(
            "[[1.0,1.0,1.0],[1.0,1.0,1.0],[1.0,1.0,1.0]]",
            "[[1,2,3],[4,5,6],[7,8,9]]",
            1
        ),
        nested(&[0.5; 12], &[12])
    );
    let k = Kernel::from_json(ints.as_bytes()).unwrap();
    assert_eq!(&k.weight().as_slice().unwrap()[..9], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    assert_eq!(k.bias().as_slice().unwrap(), vec![0.5; 12]);
}

/// Shortest-decimal f32 printing reads back to the same bits through the JSON path, over a spread of bit patterns
/// (every 9973rd pattern of the 2^32, plus a dense run around typical weight magnitudes).
#[test]
fn json_f32_text_round_trip() {
    let mut values: Vec<f32> =
        (0..u32::MAX / 9973).map(|i| f32::from_bits(i * 9973)).filter(|v| v.is_finite()).collect();
    values.extend((0..200_000u32).map(|i| f32::from_bits(0x3c00_0000 + i * 97)));
    for chunk in values.chunks(12 * 27) {
        let mut w = vec![0.0f32; 12 * 27];
        w[..chunk.len()].copy_from_slice(chunk);
        let k = Kernel::new(Array4::from_shape_vec((12, 3, 3, 3), w).unwrap(), None).unwrap();
        let back = Kernel::from_json(k.to_json().as_bytes()).unwrap();
        assert_eq!(bits(back.weight().as_slice().unwrap()), bits(k.weight().as_slice().unwrap()));
    }
}

/// Every rejected JSON names what is wrong.
#[test]
fn json_errors() {
    let cases: Vec<(String, &str)> = vec![
        (weight_json(&[12, 3, 2, 3]), "weight: expected [12, 3, k, k], got [12, 3, 2, 3]"),
        (weight_json(&[12, 4, 3, 3]), "weight: expected [12, 3, k, k], got [12, 4, 3, 3]"),
        (weight_json(&[12, 3, 3]), "weight: expected a 4-d array of numbers, got a number at weight[0][0][0]"),
        (weight_json(&[12, 3, 2, 2]), "kernel_size: must be odd, 1 to 9, got 2 (weight [12, 3, 2, 2])"),
        (weight_json(&[12, 3, 11, 11]), "kernel_size: must be odd, 1 to 9, got 11 (weight [12, 3, 11, 11])"),
        (
            weight_json(&[5, 3, 3, 3]),
            "out_channels: must be 3*r*r for a scale r from 2 to 8 (12, 27, 48, 75, 108, 147, 192), got 5 (weight [5, 3, 3, 3])",
        ),
        (
            weight_json(&[243, 3, 1, 1]),
            "out_channels: must be 3*r*r for a scale r from 2 to 8 (12, 27, 48, 75, 108, 147, 192), got 243 (weight [243, 3, 1, 1])",
        ),
        (r#"{"weight":[]}"#.into(), "weight: expected [3*r*r, 3, k, k], got [0]"),
        (
            weight_json(&[12, 3, 1, 1]).replacen("[0.25]", "[0.25,1.0]", 1),
            "weight: ragged array: weight[1][1][0] has 2 elements but weight[0][0][0] has 1",
        ),
        (
            weight_json(&[12, 3, 1, 1]).replacen("[[[-0.25]],[[-0.125]],[[0.0]]]", "[[[-0.25]],[[-0.125]]]", 1),
            "weight: ragged array: weight[1] has 3 elements but weight[0] has 2",
        ),
        (weight_json(&[12, 3, 1, 1]).replacen("-0.25", "1e39", 1), "weight[0][0][0][0]: 1e39 is not a finite f32"),
        (
            weight_json(&[12, 3, 1, 1]).replacen("-0.125", "-3.5e38", 1),
            "weight[0][1][0][0]: -3.5e38 is not a finite f32",
        ),
        (weight_json(&[12, 3, 1, 1]).replacen("-0.25", "\"x\"", 1), "weight[0][0][0][0]: expected a number, got a string"),
        (weight_json(&[12, 3, 1, 1]).replacen("-0.25", "[1.0]", 1), "weight: expected a 4-d array of numbers, got more levels at weight[0][0][0][0]"),
        (r#"{"weight":{"a":1}}"#.into(), "weight: expected a 4-d array of numbers, got an object at weight"),
        (r#"{"bias":[0.0]}"#.into(), "weight: missing (kernel JSON needs at least `weight`, nested [out][in][k][k])"),
        (r#"{"weight":null}"#.into(), "weight: missing (kernel JSON needs at least `weight`, nested [out][in][k][k])"),
        (weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"bias":[0.0,0.0],"#, 1), "bias: expected [12], got [2]"),
        (weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"bias":[[0.0]],"#, 1), "bias: expected a 1-d array of numbers, got more levels at bias[0]"),
        (weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"bias":[1e40,0],"#, 1), "bias[0]: 1e40 is not a finite f32"),
        (weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"scale":3,"#, 1), "weight: expected [27, 3, k, k] for scale 3, got [12, 3, 1, 1]"),
        (weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"scale":9,"#, 1), "scale: must be 2 to 8, got 9"),
        (weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"out_channels":27,"#, 1), "weight: expected [27, 3, k, k] for out_channels 27, got [12, 3, 1, 1]"),
        (
            weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"out_channels":13,"#, 1),
            "out_channels: must be 3*r*r for a scale r from 2 to 8 (12, 27, 48, 75, 108, 147, 192), got 13",
        ),
        (weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"out_channels":12,"scale":3,"#, 1), "out_channels: 12 does not match scale 3 (3*3*3 = 27)"),
        (weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"in_channels":4,"#, 1), "in_channels: must be 3, got 4"),
        (weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"kernel_size":3,"#, 1), "weight: expected [12, 3, 3, 3] for kernel_size 3, got [12, 3, 1, 1]"),
        (weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"kernel_size":4,"#, 1), "kernel_size: must be odd, 1 to 9, got 4"),
    ];
    for (json, want) in cases {
        // Errors found while the arrays are read also carry serde_json's position.
        let got = err_json(&json);
        let rest = got.strip_prefix(want).unwrap_or_else(|| panic!("for {json:.120}:\n got: {got}\nwant: {want}"));
        assert!(rest.is_empty() || rest.starts_with(" at line 1 column "), "for {json:.120}: {got}");
    }
    // Reading stops after the values of the largest valid kernel, whatever the size of the file.
    let too_many = format!("{{\"weight\":[[[[{}0]]]]}}", "0,".repeat(192 * 3 * 81));
    assert!(err_json(&too_many).starts_with("weight: more than 46656 values, more than any valid kernel at line 1"));
    let too_many = format!("{{\"weight\":[[[[0]]]],\"bias\":[{}0]}}", "0,".repeat(192));
    assert!(err_json(&too_many).starts_with("bias: more than 192 values"));
    // Messages from the JSON parser keep serde_json's position.
    let m = err_json(&weight_json(&[12, 3, 1, 1]).replacen("-0.25", "1e309", 1));
    assert!(
        m.starts_with("kernel JSON: number out of range at line 1 column") && m.ends_with("not a finite f32"),
        "{m}"
    );
    let m = err_json(&weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"weights":1,"#, 1));
    assert!(m.starts_with("kernel JSON: unknown field `weights`"), "{m}");
    let m = err_json(&weight_json(&[12, 3, 1, 1]).replacen('{', r#"{"init":"magic","#, 1));
    assert!(m.starts_with("kernel JSON: unknown variant `magic`"), "{m}");
    let m = err_json("[1, 2]");
    assert!(m.starts_with("kernel JSON: "), "{m}");
    assert!(err_json("{\"weight\": [").starts_with("kernel JSON: EOF while parsing"));
    assert!(err_json("").starts_with("kernel JSON: EOF while parsing"));
    // Size bound, checked before parsing.
    let big = " ".repeat(MAX_KERNEL_BYTES + 1);
    assert_eq!(
        err_json(&big),
        format!("kernel JSON too large: {} bytes (limit {MAX_KERNEL_BYTES})", MAX_KERNEL_BYTES + 1)
    );
    // The largest valid kernel fits well within the bound.
    let largest = gen(params(8, 9, Init::Plain, Initializer::KaimingUniform, 0)).to_json();
    assert!(largest.len() < MAX_KERNEL_BYTES / 2, "{}", largest.len());
}

/// Parameter validation for generation.
#[test]
fn generate_errors() {
    let e = |p: KernelParams| match Kernel::generate(&p) {
        Ok(_) => panic!("accepted {p:?}"),
        Err(e) => e.to_string(),
    };
    let d = KernelParams::default();
    assert_eq!(e(KernelParams { scale: 1, ..d }), "scale: must be 2 to 8, got 1");
    assert_eq!(e(KernelParams { scale: 9, ..d }), "scale: must be 2 to 8, got 9");
    assert_eq!(e(KernelParams { kernel_size: 0, ..d }), "kernel_size: must be odd, 1 to 9, got 0");
    assert_eq!(e(KernelParams { kernel_size: 4, ..d }), "kernel_size: must be odd, 1 to 9, got 4");
    assert_eq!(e(KernelParams { kernel_size: 11, ..d }), "kernel_size: must be odd, 1 to 9, got 11");
    assert!(e(KernelParams { init: Init::Custom, ..d }).starts_with("init: custom"));
    for r in 2..=8 {
        for ks in [1, 3, 5, 7, 9] {
            let k = gen(params(r, ks, Init::Icnr, Initializer::KaimingNormal, 0));
            assert_eq!(k.weight().as_slice().unwrap().len(), (3 * r * r * 3 * ks * ks) as usize);
            assert_eq!(k.out_channels(), (3 * r * r) as usize);
            assert_eq!(k.weight().shape(), [(3 * r * r) as usize, 3, ks as usize, ks as usize]);
            assert_eq!(k.bias().shape(), [(3 * r * r) as usize]);
        }
    }
}

/// `Kernel::new` refuses tensors that break the invariants with an error that names the problem (the fields are
/// private, so no kernel can be built around it).
#[test]
fn validate_errors() {
    let good = gen(KernelParams::default());
    let same = Kernel::new(good.weight().clone(), Some(good.bias().clone())).unwrap();
    assert_eq!((same.weight(), same.bias(), same.init()), (good.weight(), good.bias(), Init::Custom));
    let e = |w: Array4<f32>, b: Option<Array1<f32>>| Kernel::new(w, b).unwrap_err().to_string();
    assert_eq!(e(Array4::zeros((12, 3, 3, 2)), None), "weight: expected [12, 3, k, k], got [12, 3, 3, 2]");
    assert_eq!(e(Array4::zeros((12, 4, 3, 3)), None), "weight: expected [12, 3, k, k], got [12, 4, 3, 3]");
    assert!(e(Array4::zeros((13, 3, 3, 3)), None).starts_with("out_channels: must be 3*r*r"));
    assert!(e(Array4::zeros((12, 3, 4, 4)), None).starts_with("kernel_size: must be odd, 1 to 9, got 4"));
    assert_eq!(e(good.weight().clone(), Some(Array1::zeros(13))), "bias: expected [12], got [13]");
    let mut w = good.weight().clone();
    w[[5, 1, 2, 0]] = f32::NAN;
    assert_eq!(e(w, None), "weight[5][1][2][0]: NaN is not a finite value");
    let mut b = good.bias().clone();
    b[11] = f32::NEG_INFINITY;
    assert_eq!(e(good.weight().clone(), Some(b)), "bias[11]: -inf is not a finite value");
    // A transposed (non-standard-layout) weight is accepted and stored in PyTorch's order.
    let t = good.weight().clone().reversed_axes().reversed_axes();
    assert_eq!(Kernel::new(t, None).unwrap().weight(), good.weight());
}

// ---- safetensors, built in memory with the safetensors crate (same format as safetensors.torch.save_file) ----

fn st_file(tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::tensor::serialize(views, None).unwrap()
}

fn le_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn st_err(bytes: &[u8]) -> String {
    match Kernel::from_safetensors(bytes) {
        Ok(k) => panic!("accepted: {k:?}"),
        Err(e) => e.to_string(),
    }
}

/// Keys `weight`/`bias`, one `<prefix>.weight`/`<prefix>.bias` pair, and f16/bf16 conversions (exact for values
/// representable in those formats).
#[test]
fn safetensors_loading() {
    use safetensors::Dtype;
    let k = gen(params(3, 3, Init::Default, Initializer::KaimingNormal, 11));
    let shape = vec![27, 3, 3, 3];
    let plain = st_file(&[
        ("weight", Dtype::F32, shape.clone(), le_f32(k.weight().as_slice().unwrap())),
        ("bias", Dtype::F32, vec![27], le_f32(k.bias().as_slice().unwrap())),
    ]);
    let got = Kernel::from_safetensors(&plain).unwrap();
    assert_eq!(
        (bits(got.weight().as_slice().unwrap()), bits(got.bias().as_slice().unwrap())),
        (bits(k.weight().as_slice().unwrap()), bits(k.bias().as_slice().unwrap()))
    );
    assert_eq!((got.scale(), got.kernel_size(), got.init()), (3, 3, Init::Custom));

    let prefixed = st_file(&[
        ("up.0.weight", Dtype::F32, shape.clone(), le_f32(k.weight().as_slice().unwrap())),
        ("up.0.bias", Dtype::F32, vec![27], le_f32(k.bias().as_slice().unwrap())),
        ("other.running_mean", Dtype::F32, vec![2], le_f32(&[1.0, 2.0])),
    ]);
    let got = Kernel::from_safetensors(&prefixed).unwrap();
    assert_eq!(
        (bits(got.weight().as_slice().unwrap()), bits(got.bias().as_slice().unwrap())),
        (bits(k.weight().as_slice().unwrap()), bits(k.bias().as_slice().unwrap()))
    );

    // No bias (Conv2d(bias=False)): zeros.
    let nobias = st_file(&[("weight", Dtype::F32, shape.clone(), le_f32(k.weight().as_slice().unwrap()))]);
    assert_eq!(Kernel::from_safetensors(&nobias).unwrap().bias().as_slice().unwrap(), vec![0.0; 27]);

    let f16: Vec<u8> =
        k.weight().as_slice().unwrap().iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
    let bf16: Vec<u8> =
        k.weight().as_slice().unwrap().iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect();
    let got16 = Kernel::from_safetensors(&st_file(&[("weight", Dtype::F16, shape.clone(), f16)])).unwrap();
    let gotbf = Kernel::from_safetensors(&st_file(&[("weight", Dtype::BF16, shape.clone(), bf16)])).unwrap();
    for (i, &w) in k.weight().as_slice().unwrap().iter().enumerate() {
        assert_eq!(got16.weight().as_slice().unwrap()[i], half::f16::from_f32(w).to_f32());
        assert_eq!(gotbf.weight().as_slice().unwrap()[i], half::bf16::from_f32(w).to_f32());
    }
    // An ICNR kernel stored as safetensors keeps its tying, so the engine's fast path applies.
    let icnr = gen(params(2, 3, Init::Icnr, Initializer::KaimingNormal, 0));
    let got = Kernel::from_safetensors(&st_file(&[(
        "weight",
        Dtype::F32,
        vec![12, 3, 3, 3],
        le_f32(icnr.weight().as_slice().unwrap()),
    )]))
    .unwrap();
    assert!(icnr_upscale::engine::is_tied(&got));
}

#[test]
fn safetensors_errors() {
    use safetensors::Dtype;
    let w12 = le_f32(&[0.5; 12 * 3 * 9]);
    assert_eq!(
        st_err(&st_file(&[("weight", Dtype::F32, vec![12, 3, 3, 1], le_f32(&[0.5; 12 * 9]))])),
        "weight: expected [12, 3, k, k], got [12, 3, 3, 1]"
    );
    assert_eq!(
        st_err(&st_file(&[("up.0.weight", Dtype::F32, vec![12, 3, 3, 1], le_f32(&[0.5; 12 * 9]))])),
        "up.0.weight: expected [12, 3, k, k], got [12, 3, 3, 1]"
    );
    assert_eq!(
        st_err(&st_file(&[("weight", Dtype::F32, vec![12, 3, 2, 2], le_f32(&[0.5; 12 * 12]))])),
        "kernel_size: must be odd, 1 to 9, got 2 (weight [12, 3, 2, 2])"
    );
    assert_eq!(
        st_err(&st_file(&[("weight", Dtype::F32, vec![6, 3, 3, 3], le_f32(&[0.5; 6 * 27]))])),
        "out_channels: must be 3*r*r for a scale r from 2 to 8 (12, 27, 48, 75, 108, 147, 192), got 6 (weight [6, 3, 3, 3])"
    );
    assert_eq!(
        st_err(&st_file(&[
            ("weight", Dtype::F32, vec![12, 3, 3, 3], w12.clone()),
            ("bias", Dtype::F32, vec![11], le_f32(&[0.0; 11]))
        ])),
        "bias: expected [12], got [11]"
    );
    assert_eq!(
        st_err(&st_file(&[("weight", Dtype::I32, vec![12, 3, 3, 3], w12.clone())])),
        "weight: dtype I32 is not supported (expected F32, F16 or BF16)"
    );
    assert_eq!(
        st_err(&st_file(&[
            ("a.weight", Dtype::F32, vec![12, 3, 3, 3], w12.clone()),
            ("b.weight", Dtype::F32, vec![12, 3, 3, 3], w12.clone())
        ])),
        "safetensors: expected exactly one `weight` or `<prefix>.weight` tensor, found a.weight, b.weight"
    );
    assert_eq!(
        st_err(&st_file(&[("kernel", Dtype::F32, vec![12, 3, 3, 3], w12.clone())])),
        "safetensors: no `weight` or `<prefix>.weight` tensor (found: kernel)"
    );
    let mut inf16: Vec<u8> = (0..12 * 27).flat_map(|_| half::f16::from_f32(0.25).to_le_bytes()).collect();
    inf16[2 * 30..2 * 31].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
    assert_eq!(
        st_err(&st_file(&[("weight", Dtype::F16, vec![12, 3, 3, 3], inf16)])),
        "weight[1][0][1][0]: inf is not a finite value"
    );
    assert!(st_err(b"not a safetensors file").starts_with("safetensors: "));
    assert!(st_err(&[]).starts_with("safetensors: "));
    let big = vec![0u8; MAX_KERNEL_BYTES + 1];
    assert!(st_err(&big).starts_with("safetensors file too large"));
}

/// `load_file` picks the format by extension and names the file in errors.
#[test]
fn load_file_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let k = gen(KernelParams::default());
    let json = dir.path().join("k.json");
    std::fs::write(&json, k.to_json()).unwrap();
    assert_eq!(Kernel::load_file(&json).unwrap(), k);
    let st = dir.path().join("k.SafeTensors");
    std::fs::write(
        &st,
        st_file(&[("weight", safetensors::Dtype::F32, vec![12, 3, 3, 3], le_f32(k.weight().as_slice().unwrap()))]),
    )
    .unwrap();
    assert_eq!(
        bits(Kernel::load_file(&st).unwrap().weight().as_slice().unwrap()),
        bits(k.weight().as_slice().unwrap())
    );
    let missing = dir.path().join("missing.json");
    assert!(Kernel::load_file(&missing).unwrap_err().to_string().starts_with("cannot read "));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, weight_json(&[12, 3, 2, 3])).unwrap();
    assert_eq!(
        Kernel::load_file(&bad).unwrap_err().to_string(),
        format!("{}: weight: expected [12, 3, k, k], got [12, 3, 2, 3]", bad.display())
    );
}
