//! The forward-pass core: every CPU path against the portable one, the ICNR fast path against the general path,
//! the fast core against the scalar reference (`engine::reference`, a direct transcription of docs/MATHS.md),
//! block uniformity, alpha, streaming order, and the checkerboard score.
//!
//! Kernels are built directly as `Kernel { .. }` from a small deterministic generator (SplitMix64), so these tests
//! do not depend on the kernel module's initialisers.

mod support;

use icnr_upscale::engine::{reference, CpuPath, Image, Options, OutRows, RowSamples, Samples, Upscaler};
use icnr_upscale::kernel::Kernel;
use icnr_upscale::score::{checkerboard_score, ScoreAccumulator};
use ndarray::{Array1, Array4};
use support::paths::{every_path, PathsRan};

/// SplitMix64: a tiny, stable generator for test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

/// A random kernel whose outputs mostly land inside [0, 1] (some saturate, which is also worth testing).
/// `tied`: weight and bias tied in groups of r*r consecutive output channels (ICNR structure).
fn random_kernel(rng: &mut Rng, r: u32, k: u32, tied: bool) -> Kernel {
    let cout = 3 * (r * r) as usize;
    let per = 3 * (k * k) as usize;
    let scale = 2.0 / per as f32;
    let mut weight = vec![0f32; cout * per];
    let mut bias = vec![0f32; cout];
    for o in 0..cout {
        if tied && o % (r * r) as usize != 0 {
            let g = o - o % (r * r) as usize;
            weight.copy_within(g * per..(g + 1) * per, o * per);
            bias[o] = bias[g];
        } else {
            for w in &mut weight[o * per..(o + 1) * per] {
                *w = rng.uniform(-0.6, 1.3) * scale;
            }
            bias[o] = rng.uniform(-0.2, 0.2);
        }
    }
    let (ru, ku) = (r as usize, k as usize);
    let weight = Array4::from_shape_vec((3 * ru * ru, 3, ku, ku), weight).unwrap();
    Kernel::new(weight, Some(Array1::from_vec(bias))).unwrap()
}

fn random_image(rng: &mut Rng, width: u32, height: u32, channels: u8, depth: u8) -> Image {
    let n = (width * height) as usize * channels as usize;
    let samples = if depth == 8 {
        Samples::U8((0..n).map(|_| rng.next_u64() as u8).collect())
    } else {
        Samples::U16((0..n).map(|_| rng.next_u64() as u16).collect())
    };
    Image { width, height, channels, samples }
}

fn samples_u32(img: &Image) -> Vec<u32> {
    match &img.samples {
        Samples::U8(s) => s.iter().map(|&v| v as u32).collect(),
        Samples::U16(s) => s.iter().map(|&v| v as u32).collect(),
    }
}

/// Largest absolute difference between two images of the same shape, and how many samples differ.
fn diff(a: &Image, b: &Image) -> (u32, usize) {
    assert_eq!((a.width, a.height, a.channels), (b.width, b.height, b.channels));
    let (a, b) = (samples_u32(a), samples_u32(b));
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).fold((0, 0), |(m, n), (&x, &y)| (m.max(x.abs_diff(y)), n + (x != y) as usize))
}

/// Runs `opts`'s kernels, with the fast path allowed or not.
fn run(kernel: &Kernel, img: &Image, opts: Options, fast: bool) -> Image {
    let opts = Options { allow_fast_path: fast, ..opts };
    let up = Upscaler::from_kernel(kernel, opts).unwrap();
    assert_eq!((up.path(), up.path_name()), (opts.path, opts.path_name()));
    up.upscale(img).unwrap()
}

/// The options of one path (fast path allowed).
fn on(path: CpuPath) -> Options {
    Options { path, ..Options::default() }
}

/// (r, k, width, height, channels, depth): odd sizes, every k and r, 8/16-bit, 1-4 channels; a few wide enough for
/// several register blocks per row and tall enough for several bands.
fn cases() -> Vec<(u32, u32, u32, u32, u8, u8)> {
    let mut v = Vec::new();
    let ks = [1, 3, 5, 7, 9];
    for r in 2..=8u32 {
        for (n, &k) in ks.iter().enumerate() {
            let ch = 1 + ((r as usize + n) % 4) as u8;
            let depth = if (r as usize + n).is_multiple_of(3) { 16 } else { 8 };
            let (w, h) = [(17, 13), (5, 3), (1, 1), (33, 7), (9, 2)][(r as usize + n) % 5];
            v.push((r, k, w, h, ch, depth));
        }
    }
    v.extend([(2, 3, 131, 45, 3, 8), (3, 5, 77, 9, 4, 16), (2, 3, 200, 3, 2, 8), (4, 1, 63, 5, 3, 16)]);
    v
}

/// Every supported CPU path (AVX-512 with and without VBMI) agrees with the portable path within 1 LSB, on
/// general and fast paths.
#[test]
fn every_path_matches_portable_within_1_lsb() {
    let mut ran = PathsRan::new("every_path_matches_portable_within_1_lsb");
    let mut rng = Rng(1);
    for (r, k, w, h, ch, depth) in cases() {
        let img = random_image(&mut rng, w, h, ch, depth);
        for tied in [false, true] {
            let kernel = random_kernel(&mut rng, r, k, tied);
            let want = run(&kernel, &img, on(CpuPath::Portable), true);
            for opts in every_path(true) {
                let got = run(&kernel, &img, opts, true);
                let (max, _) = diff(&got, &want);
                let name = opts.path_name();
                assert!(max <= 1, "{name} r={r} k={k} {w}x{h}x{ch} {depth}-bit tied={tied}: max diff {max}");
                ran.add(&opts);
            }
        }
    }
}

/// With a tied kernel the ICNR fast path is bit-identical to the general path, on every CPU path.
#[test]
fn fast_path_is_bit_identical_to_general_path() {
    let mut ran = PathsRan::new("fast_path_is_bit_identical_to_general_path");
    let mut rng = Rng(2);
    for (r, k, w, h, ch, depth) in cases() {
        let img = random_image(&mut rng, w, h, ch, depth);
        let kernel = random_kernel(&mut rng, r, k, true);
        for opts in every_path(true) {
            let general = Upscaler::from_kernel(&kernel, Options { allow_fast_path: false, ..opts }).unwrap();
            let fast = Upscaler::from_kernel(&kernel, opts).unwrap();
            assert!(!general.uses_fast_path() && fast.uses_fast_path());
            let (g, f) = (general.upscale(&img).unwrap(), fast.upscale(&img).unwrap());
            let name = opts.path_name();
            assert!(g == f, "{name} r={r} k={k} {w}x{h}x{ch} {depth}-bit: differ at {:?} samples", diff(&g, &f));
            ran.add(&opts);
        }
    }
}

/// An untied kernel never takes the fast path.
#[test]
fn untied_kernel_uses_general_path() {
    let kernel = random_kernel(&mut Rng(3), 2, 3, false);
    assert!(!Upscaler::from_kernel(&kernel, Options::default()).unwrap().uses_fast_path());
}

/// The fast core (every supported path) agrees with the scalar reference within 1 LSB, and almost everywhere
/// exactly (differences come only from float summation order at rounding ties).
#[test]
fn core_matches_scalar_reference() {
    let mut ran = PathsRan::new("core_matches_scalar_reference");
    let mut rng = Rng(4);
    for (r, k, w, h, ch, depth) in cases().into_iter().step_by(3) {
        let img = random_image(&mut rng, w, h, ch, depth);
        for tied in [false, true] {
            let kernel = random_kernel(&mut rng, r, k, tied);
            let want = reference::upscale(&kernel, &img);
            for opts in every_path(true) {
                let got = run(&kernel, &img, opts, true);
                let (max, n) = diff(&got, &want);
                let total = samples_u32(&want).len();
                let name = opts.path_name();
                assert!(max <= 1, "{name} r={r} k={k} {w}x{h}x{ch} {depth}-bit: max diff {max}");
                assert!(n * 100 <= total, "{name} r={r} k={k}: {n} of {total} samples differ");
                ran.add(&opts);
            }
        }
    }
}

/// A tied kernel makes every r x r output block uniform (ICNR's defining property).
#[test]
fn tied_kernel_gives_uniform_blocks() {
    let mut ran = PathsRan::new("tied_kernel_gives_uniform_blocks");
    let mut rng = Rng(5);
    for (r, k, w, h, ch, depth) in cases() {
        let img = random_image(&mut rng, w, h, ch, depth);
        let kernel = random_kernel(&mut rng, r, k, true);
        for opts in every_path(true) {
            let path = opts.path_name();
            for fast in [false, true] {
                let out = run(&kernel, &img, opts, fast);
                let s = samples_u32(&out);
                let (ow, nc, r) = (out.width as usize, out.channels as usize, r as usize);
                for (idx, &v) in s.iter().enumerate() {
                    let (px, c) = (idx / nc, idx % nc);
                    let (x, y) = (px % ow, px / ow);
                    let corner = ((y - y % r) * ow + (x - x % r)) * nc + c;
                    assert_eq!(v, s[corner], "{path} fast={fast} r={r} k={k} at ({x},{y}) c={c}");
                }
                assert_eq!(checkerboard_score(&out, r as u32), 0.0);
            }
            ran.add(&opts);
        }
    }
}

/// Alpha is not convolved: output alpha at (x, y) is input alpha at (x / r, y / r), bit depth kept.
#[test]
fn alpha_is_nearest_neighbour() {
    let mut ran = PathsRan::new("alpha_is_nearest_neighbour");
    let mut rng = Rng(6);
    for (ch, depth, r) in [(4u8, 8u8, 2u32), (2, 16, 3), (4, 16, 5), (2, 8, 8)] {
        let img = random_image(&mut rng, 11, 6, ch, depth);
        let kernel = random_kernel(&mut rng, r, 3, false);
        for opts in every_path(true) {
            let path = opts.path_name();
            let out = run(&kernel, &img, opts, true);
            assert_eq!((out.channels, out.bit_depth()), (4, depth));
            let (si, so) = (samples_u32(&img), samples_u32(&out));
            for y in 0..out.height as usize {
                for x in 0..out.width as usize {
                    let a_out = so[(y * out.width as usize + x) * 4 + 3];
                    let a_in = si[((y / r as usize) * 11 + x / r as usize) * ch as usize + ch as usize - 1];
                    assert_eq!(a_out, a_in, "{path} ch={ch} at ({x},{y})");
                }
            }
            ran.add(&opts);
        }
    }
}

/// Grayscale is expanded to RGB before the convolution: gray input gives exactly what R=G=B input gives.
#[test]
fn gray_equals_rgb_with_equal_channels() {
    let mut rng = Rng(7);
    let gray = random_image(&mut rng, 23, 9, 1, 8);
    let Samples::U8(g) = &gray.samples else { unreachable!() };
    let rgb = Image { channels: 3, samples: Samples::U8(g.iter().flat_map(|&v| [v, v, v]).collect()), ..gray.clone() };
    let kernel = random_kernel(&mut rng, 3, 5, false);
    let mut ran = PathsRan::new("gray_equals_rgb_with_equal_channels");
    for opts in every_path(true) {
        assert_eq!(run(&kernel, &gray, opts, true), run(&kernel, &rgb, opts, true), "{}", opts.path_name());
        ran.add(&opts);
    }
}

/// Rows reach the sink in order, contiguous, top to bottom, covering the output exactly once, in several bands.
#[test]
fn streaming_hands_rows_in_order() {
    let mut rng = Rng(8);
    let img = random_image(&mut rng, 700, 301, 3, 16);
    let kernel = random_kernel(&mut rng, 2, 3, false);
    let up = Upscaler::from_kernel(&kernel, Options::default()).unwrap();
    let mut next = 0u32;
    let mut calls = 0;
    let mut collected = Vec::new();
    up.upscale_streaming(&img, |rows: OutRows<'_>| -> Result<(), ()> {
        assert_eq!(rows.first_row, next);
        assert_eq!((rows.width, rows.channels), (1400, 3));
        let RowSamples::U16(s) = rows.samples else { panic!("16-bit in, 16-bit out") };
        assert_eq!(s.len(), rows.rows as usize * 1400 * 3);
        collected.extend_from_slice(s);
        next += rows.rows;
        calls += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(next, 602);
    assert!(calls > 1, "expected several bands, got {calls}");
    assert_eq!(Samples::U16(collected), up.upscale(&img).unwrap().samples);
}

/// The first error from the sink stops the run and is returned; the sink is not called again.
#[test]
fn streaming_stops_at_first_sink_error() {
    let mut rng = Rng(9);
    let img = random_image(&mut rng, 700, 301, 3, 8);
    let kernel = random_kernel(&mut rng, 2, 3, true);
    let up = Upscaler::from_kernel(&kernel, Options::default()).unwrap();
    let mut calls = 0;
    let res = up.upscale_streaming(&img, |_rows| {
        calls += 1;
        Err("stop")
    });
    assert_eq!(res, Err("stop"));
    assert_eq!(calls, 1);
}

/// An empty image produces no rows and no error.
#[test]
fn empty_image_produces_nothing() {
    let kernel = random_kernel(&mut Rng(10), 2, 3, false);
    let img = Image { width: 0, height: 5, channels: 3, samples: Samples::U8(vec![]) };
    let up = Upscaler::from_kernel(&kernel, Options::default()).unwrap();
    let mut calls = 0;
    up.upscale_streaming(&img, |_| -> Result<(), ()> {
        calls += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(calls, 0);
    assert_eq!(up.upscale(&img).unwrap().samples, Samples::U8(vec![]));
}

/// Hand-built case, r = 2, one 2x2 block, R = [[255, 0], [0, 0]], G = B = 0. Exactly:
/// m[R] = {1, 0, 0, 0}, mbar[R] = 1/4, sum of squared deviations (3/4)^2 + 3 (1/4)^2 = 3/4; G and B contribute 0;
/// mean over the 12 (c, i, j) = 1/16, sqrt = 1/4. std(R) = sqrt(1/4 - 1/16) = sqrt(3)/4, std(G) = std(B) = 0,
/// mean_c std = sqrt(3)/12. Score = (1/4) / (sqrt(3)/12) = sqrt(3).
/// numpy: `Y=np.zeros((3,2,2)); Y[0,0,0]=1; m=Y.reshape(3,1,2,1,2).mean((1,3)); ...` gives 1.7320508075688772.
#[test]
fn score_of_hand_built_case_is_sqrt_3() {
    let mut s = vec![0u8; 2 * 2 * 3];
    s[0] = 255;
    let img = Image { width: 2, height: 2, channels: 3, samples: Samples::U8(s) };
    let score = checkerboard_score(&img, 2);
    assert!((score - 3f64.sqrt()).abs() < 1e-9, "{score}");
}

/// The streaming accumulator, fed rows in any order and with alpha, equals a direct f64 evaluation of the formula.
#[test]
fn score_matches_direct_formula() {
    let mut rng = Rng(11);
    let (w, h, r) = (12usize, 9usize, 3usize);
    let img = random_image(&mut rng, w as u32, h as u32, 4, 16);
    let s = samples_u32(&img);
    let y = |c: usize, yy: usize, xx: usize| s[(yy * w + xx) * 4 + c] as f64 / 65535.0;
    let mut dev = 0.0;
    let mut std_sum = 0.0;
    for c in 0..3 {
        let mut m = vec![];
        for i in 0..r {
            for j in 0..r {
                let vals: Vec<f64> = (i..h)
                    .step_by(r)
                    .flat_map(|yy| (j..w).step_by(r).map(move |xx| (yy, xx)))
                    .map(|(yy, xx)| y(c, yy, xx))
                    .collect();
                m.push(vals.iter().sum::<f64>() / vals.len() as f64);
            }
        }
        let mbar = m.iter().sum::<f64>() / m.len() as f64;
        dev += m.iter().map(|v| (v - mbar).powi(2)).sum::<f64>();
        let all: Vec<f64> = (0..h).flat_map(|yy| (0..w).map(move |xx| (yy, xx))).map(|(yy, xx)| y(c, yy, xx)).collect();
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        std_sum += (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64).sqrt();
    }
    let want = (dev / (3 * r * r) as f64).sqrt() / (std_sum / 3.0 + 1e-12);

    let Samples::U16(raw) = &img.samples else { unreachable!() };
    let mut acc = ScoreAccumulator::new(r as u32);
    for first in [6usize, 0, 3] {
        let rows = OutRows {
            first_row: first as u32,
            rows: 3,
            width: w as u32,
            channels: 4,
            samples: RowSamples::U16(&raw[first * w * 4..(first + 3) * w * 4]),
        };
        acc.push(&rows);
    }
    assert!((acc.finish() - want).abs() < 1e-9, "{} vs {want}", acc.finish());
    assert!((checkerboard_score(&img, r as u32) - want).abs() < 1e-9);
}

/// An untied kernel on a noisy image shows a checkerboard (score well above 0); a constant image scores 0.
#[test]
fn score_of_untied_output_is_positive_and_constant_image_zero() {
    let mut rng = Rng(12);
    let img = random_image(&mut rng, 40, 30, 3, 8);
    let out = run(&random_kernel(&mut rng, 2, 3, false), &img, Options::default(), true);
    assert!(checkerboard_score(&out, 2) > 0.01);
    let flat = Image { width: 4, height: 4, channels: 3, samples: Samples::U8(vec![77; 48]) };
    assert_eq!(checkerboard_score(&flat, 2), 0.0);
}

/// Working buffers are reused between calls on a thread: alternating geometries (width, k, r, depth, channels)
/// must not leak data from one call into the next.
#[test]
fn repeated_calls_with_changing_geometry_are_independent() {
    let mut rng = Rng(13);
    let a_img = random_image(&mut rng, 61, 17, 3, 8);
    let b_img = random_image(&mut rng, 29, 40, 4, 8);
    let a_k = random_kernel(&mut rng, 2, 5, false);
    let b_k = random_kernel(&mut rng, 3, 3, false);
    let mut ran = PathsRan::new("repeated_calls_with_changing_geometry_are_independent");
    for opts in every_path(true) {
        let a1 = run(&a_k, &a_img, opts, true);
        let b1 = run(&b_k, &b_img, opts, true);
        let a2 = run(&a_k, &a_img, opts, true);
        let b2 = run(&b_k, &b_img, opts, true);
        assert!(a1 == a2 && b1 == b2, "{}", opts.path_name());
        assert!(diff(&a1, &reference::upscale(&a_k, &a_img)).0 <= 1);
        assert!(diff(&b1, &reference::upscale(&b_k, &b_img)).0 <= 1);
        ran.add(&opts);
    }
}

/// On a CPU with AVX-512 VBMI, `avx512` runs the VBMI kernels (fused 8-bit fast path, byte-permute load and
/// interleave) and `avx512-novbmi` the others; both give the same bytes, on the fast and the general path, 8 and 16
/// bits, with and without alpha.
#[test]
fn avx512_with_and_without_vbmi_are_bit_identical() {
    let with = Options::forced("avx512").expect("a path name");
    let without = Options::forced(icnr_upscale::engine::AVX512_NO_VBMI).expect("a path name");
    if !with.uses_vbmi() {
        let why = if with.is_supported() { "this CPU lacks avx512vbmi" } else { "not supported by this CPU" };
        support::paths::report(&format!(
            "SKIP path avx512 in engine::avx512_with_and_without_vbmi_are_bit_identical: {why}"
        ));
        return;
    }
    assert!(!without.uses_vbmi() && without.is_supported());
    let mut rng = Rng(14);
    for (r, k, w, h, ch, depth) in cases() {
        let img = random_image(&mut rng, w, h, ch, depth);
        for tied in [false, true] {
            let kernel = random_kernel(&mut rng, r, k, tied);
            for fast in [false, true] {
                let a = Upscaler::from_kernel(&kernel, Options { allow_fast_path: fast, ..with }).unwrap();
                let b = Upscaler::from_kernel(&kernel, Options { allow_fast_path: fast, ..without }).unwrap();
                assert_eq!((a.path_name(), b.path_name()), ("avx512", "avx512-novbmi"));
                let (x, y) = (a.upscale(&img).unwrap(), b.upscale(&img).unwrap());
                assert!(x == y, "r={r} k={k} {w}x{h}x{ch} {depth}-bit tied={tied} fast={fast}: {:?}", diff(&x, &y));
            }
        }
    }
}
