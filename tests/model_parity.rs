//! The multi-layer engine (`Upscaler::new`) against PyTorch and against the scalar reference.
//!
//! The fixtures in `tests/fixtures/models/` come from `scripts/make_model_fixtures.py`: seeded random models
//! covering every op (conv2d k 1/3/5/7/9, relu, tanh, leaky_relu, prelu of length 1 and C, residual none and
//! nearest, r = 2/3/4), odd image sizes, images wider than a tile and many bands tall, RGB/RGBA/gray, 8 and 16
//! bits, with the expected output computed by PyTorch (`scripts/models.py`, `upscale_image`):
//!
//! ```python
//! x = torch.from_numpy(img.astype(np.float32)) / maxv      # gray expanded to RGB
//! y = model(x)                                             # body, + nearest(x) when residual == "nearest"
//! out = torch.round(torch.clamp(y, 0, 1) * maxv)           # alpha: nearest-neighbour, value kept
//! ```
//!
//! Parity rule: every sample within 1 LSB of PyTorch, and for 8-bit output at least 99.9% of samples exact. For
//! 16-bit output an LSB is 1/65535: float32 rounding differences between two correct implementations (different
//! summation orders, tanh) reach it far more often, so there at least 99% of samples must be exact (99.3% or more
//! measured).

mod support;

use std::path::{Path, PathBuf};

use icnr_upscale::engine::{
    reference, tanh_slice, CpuPath, EngineError, Image, Options, OutRows, RowSamples, Samples, Upscaler,
};
use icnr_upscale::kernel::{Init, Initializer, Kernel, KernelParams};
use icnr_upscale::model::{Conv2d, Layer, Model, ModelLimits, Residual};
use ndarray::{Array1, Array4};
use serde_json::Value;
use support::paths::{every_path, PathsRan};

/// SplitMix64, for deterministic test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

fn conv(rng: &mut Rng, cout: usize, cin: usize, k: usize) -> Layer {
    let bound = 1.5 / ((cin * k * k) as f32).sqrt();
    let w = Array4::from_shape_fn((cout, cin, k, k), |_| rng.uniform(-bound, bound));
    let b = Array1::from_shape_fn(cout, |_| rng.uniform(-0.2, 0.2));
    Layer::Conv2d(Conv2d::new(w, Some(b)).unwrap())
}

/// A random model: `spec` lists (out channels, k, activation) of the hidden convs; the last conv is 3r^2 wide.
fn random_model(seed: u64, r: usize, spec: &[(usize, usize, &str)], last_k: usize, residual: Residual) -> Model {
    let mut rng = Rng(seed);
    let mut layers = Vec::new();
    let mut ch = 3;
    for &(cout, k, act) in spec {
        layers.push(conv(&mut rng, cout, ch, k));
        ch = cout;
        layers.push(match act {
            "relu" => Layer::Relu,
            "tanh" => Layer::Tanh,
            "leaky" => Layer::LeakyRelu { negative_slope: 0.1 },
            "prelu1" => Layer::Prelu { weight: Array1::from_elem(1, 0.25) },
            _ => Layer::Prelu { weight: Array1::from_shape_fn(cout, |_| rng.uniform(-0.5, 0.5)) },
        });
    }
    layers.push(conv(&mut rng, 3 * r * r, ch, last_k));
    layers.push(Layer::PixelShuffle { upscale_factor: r as u32 });
    Model::new("random", layers, residual).unwrap()
}

fn random_image(rng: &mut Rng, width: u32, height: u32, channels: u8, depth: u8) -> Image {
    let n = (width * height) as usize * channels as usize;
    let samples = match depth {
        8 => Samples::U8((0..n).map(|_| rng.next_u64() as u8).collect()),
        _ => Samples::U16((0..n).map(|_| rng.next_u64() as u16).collect()),
    };
    Image { width, height, channels, samples }
}

fn values(img: &Image) -> Vec<i64> {
    match &img.samples {
        Samples::U8(s) => s.iter().map(|&v| v as i64).collect(),
        Samples::U16(s) => s.iter().map(|&v| v as i64).collect(),
    }
}

/// (largest difference, samples that differ, samples).
fn diff(got: &Image, want: &Image) -> (i64, usize, usize) {
    assert_eq!((got.width, got.height, got.channels), (want.width, want.height, want.channels));
    let (a, b) = (values(got), values(want));
    assert_eq!(a.len(), b.len());
    let d: Vec<i64> = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).collect();
    (d.iter().copied().max().unwrap_or(0), d.iter().filter(|&&v| v != 0).count(), d.len())
}

/// Asserts the parity rule (module doc) and returns the exact fraction.
fn assert_parity(what: &str, got: &Image, want: &Image) -> f64 {
    let (max, differ, n) = diff(got, want);
    let exact = 1.0 - differ as f64 / n.max(1) as f64;
    assert!(max <= 1, "{what}: largest difference {max} LSB ({differ} of {n} samples differ)");
    let min_exact = if got.bit_depth() == 8 { 0.999 } else { 0.99 };
    assert!(exact >= min_exact, "{what}: only {:.4}% of samples exact ({differ} of {n} differ)", 100.0 * exact);
    exact
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join("models")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn samples(hex: &str, bit_depth: u64) -> Samples {
    let bytes = unhex(hex);
    match bit_depth {
        8 => Samples::U8(bytes),
        _ => Samples::U16(bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()),
    }
}

struct Fixture {
    name: String,
    model: Model,
    cases: Vec<(String, Image, Image)>,
}

fn fixtures() -> Vec<Fixture> {
    let dir = fixtures_dir();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/make_model_fixtures.py)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            // The model goes through the same JSON reader users get.
            let mjson = serde_json::to_vec(&v["model"]).unwrap();
            let limits = ModelLimits { max_bytes: 64 << 20, ..ModelLimits::default() };
            let model = Model::from_json(&mjson, &limits).unwrap_or_else(|e| panic!("{name}: {e}"));
            let cases = v["cases"]
                .as_array()
                .expect("cases")
                .iter()
                .map(|c| {
                    let u = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{name}: field {k}"));
                    let bits = u("bit_depth");
                    let input = Image {
                        width: u("width") as u32,
                        height: u("height") as u32,
                        channels: u("channels") as u8,
                        samples: samples(c["input"].as_str().unwrap(), bits),
                    };
                    let expected = Image {
                        width: u("out_width") as u32,
                        height: u("out_height") as u32,
                        channels: u("out_channels") as u8,
                        samples: samples(c["expected"].as_str().unwrap(), bits),
                    };
                    (c["label"].as_str().unwrap_or("case").to_string(), input, expected)
                })
                .collect();
            Fixture { name, model, cases }
        })
        .collect()
}

/// Every fixture, on every CPU path this machine supports, matches PyTorch (parity rule of the module doc).
#[test]
fn fixtures_match_pytorch_on_every_path() {
    let fx = fixtures();
    assert!(fx.len() >= 8, "fixtures missing: run scripts/make_model_fixtures.py");
    let mut ran = PathsRan::new("fixtures_match_pytorch_on_every_path");
    let paths = every_path(true);
    let mut worst = 1.0f64;
    let mut n_cases = 0;
    for f in &fx {
        for opts in &paths {
            let up = Upscaler::new(&f.model, *opts).unwrap();
            assert_eq!((up.path(), up.path_name()), (opts.path, opts.path_name()));
            for (label, input, expected) in &f.cases {
                let got = up.upscale(input).unwrap();
                let what = format!("{}/{label}/{}", f.name, opts.path_name());
                let exact = assert_parity(&what, &got, expected);
                if exact < 1.0 {
                    println!("{what}: {:.4}% exact", 100.0 * exact);
                }
                worst = worst.min(exact);
                n_cases += 1;
            }
            ran.add(opts);
        }
    }
    println!("{n_cases} fixture cases on {} paths; worst exact fraction {:.4}%", paths.len(), 100.0 * worst);
}

/// Random models (every op, every k, r 2..4) on odd sizes match the scalar f32 reference on every path.
#[test]
fn random_models_match_scalar_reference_on_every_path() {
    let mut ran = PathsRan::new("random_models_match_scalar_reference_on_every_path");
    let mut rng = Rng(11);
    let models = [
        random_model(1, 2, &[(8, 5, "tanh"), (6, 3, "relu")], 3, Residual::Nearest),
        random_model(2, 3, &[(17, 3, "leaky"), (5, 1, "prelu")], 5, Residual::None),
        random_model(3, 4, &[(4, 7, "prelu1")], 1, Residual::Nearest),
        random_model(4, 2, &[(33, 9, "relu"), (20, 3, "tanh")], 3, Residual::None),
        random_model(5, 2, &[], 3, Residual::Nearest),
    ];
    for (m, model) in models.iter().enumerate() {
        for (w, h, ch, depth) in [(13u32, 9u32, 3u8, 8u8), (5, 7, 4, 8), (31, 3, 1, 8), (9, 11, 2, 16), (1, 1, 3, 8)] {
            let img = random_image(&mut rng, w, h, ch, depth);
            let want = reference::upscale_model(model, &img);
            for opts in every_path(true) {
                let up = Upscaler::new(model, opts).unwrap();
                let got = up.upscale(&img).unwrap();
                assert_parity(&format!("model {m}, {w}x{h}x{ch}/{depth}, {}", opts.path_name()), &got, &want);
                ran.add(&opts);
            }
        }
    }
}

/// A model that is one conv and a pixel shuffle runs the single-layer engine: bit-identical to `Upscaler::new`,
/// with the ICNR fast path for a tied kernel.
#[test]
fn single_conv_model_is_bit_identical_to_kernel_engine() {
    let mut ran = PathsRan::new("single_conv_model_is_bit_identical_to_kernel_engine");
    let mut rng = Rng(5);
    for (r, k, tied) in [(2u32, 3u32, false), (3, 5, true), (4, 1, false)] {
        let init = if tied { Init::Icnr } else { Init::Default };
        let params = KernelParams { scale: r, kernel_size: k, init, initializer: Initializer::KaimingNormal, seed: 7 };
        let kernel = Kernel::generate(&params).unwrap();
        let model = Model::from_kernel(&kernel);
        for opts in every_path(true) {
            let a = Upscaler::new(&model, opts).unwrap();
            let b = Upscaler::from_kernel(&kernel, opts).unwrap();
            assert_eq!(a.uses_fast_path(), b.uses_fast_path());
            assert_eq!(a.uses_fast_path(), tied);
            assert_eq!(a.flops(10, 10), b.flops(10, 10));
            assert_eq!((a.path_name(), b.path_name()), (opts.path_name(), opts.path_name()));
            let img = random_image(&mut rng, 37, 21, 4, 8);
            assert_eq!(a.upscale(&img).unwrap(), b.upscale(&img).unwrap(), "r{r} k{k} {}", opts.path_name());
            ran.add(&opts);
        }
    }
}

fn espcn_like(seed: u64) -> Model {
    random_model(seed, 2, &[(32, 5, "tanh"), (16, 3, "tanh")], 3, Residual::Nearest)
}

/// The same output with 1 and 2 rayon threads (bands and groups differ), bit for bit.
#[test]
fn output_identical_across_thread_counts() {
    let model = espcn_like(9);
    let mut rng = Rng(3);
    // 129 rows: bands of 33 rows on 1 thread, 17 on 2 (see `NetPlan::new`), so the bands and their groups differ.
    let img = random_image(&mut rng, 151, 129, 3, 8);
    let mut ran = PathsRan::new("output_identical_across_thread_counts");
    for opts in every_path(true) {
        let up = Upscaler::new(&model, opts).unwrap();
        let run = |t: usize| {
            rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap().install(|| up.upscale(&img).unwrap())
        };
        assert_eq!(run(1), run(2), "{}", opts.path_name());
        ran.add(&opts);
    }
}

/// Tall and wide images (many bands, several column tiles) have no seams: they match the scalar reference,
/// which has neither bands nor tiles, and each band's rows arrive once, in order. On 2 threads, whatever the
/// machine's core count, 80 rows make 6 bands of the shortest height the engine takes (8 rows plus the halo); no
/// more rows than that, as the scalar reference is most of the test's time (10x more under qemu in CI).
#[test]
fn bands_and_tiles_have_no_seams() {
    // The column tiles are narrow when the rings are wide: a ring holds `k` rows of the next conv (128 channels
    // times the 3 rows of a k3 conv here), which costs few multiply-adds (a 1x1 conv makes the 128 channels,
    // a k3 conv takes them down to 4), so the reference stays cheap. 700 columns make two tiles on every path;
    // the k3 convs give each tile a halo. Tall images make many bands.
    let model = random_model(21, 2, &[(128, 1, "relu"), (4, 3, "tanh")], 3, Residual::Nearest);
    let mut rng = Rng(8);
    let img = random_image(&mut rng, 700, 80, 3, 8);
    let want = reference::upscale_model(&model, &img);
    let up = Upscaler::new(&model, Options::default()).unwrap();
    let mut next = 0;
    let mut got = Vec::new();
    let mut calls = 0;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("rayon pool");
    pool.install(|| {
        up.upscale_streaming(&img, |rows: OutRows<'_>| -> Result<(), ()> {
            assert_eq!(rows.first_row, next);
            next += rows.rows;
            calls += 1;
            match rows.samples {
                RowSamples::U8(s) => got.extend_from_slice(s),
                RowSamples::U16(_) => unreachable!(),
            }
            Ok(())
        })
    })
    .unwrap();
    assert!(calls > 4, "expected many bands, got {calls}");
    assert_eq!(next, 160);
    let got = Image { width: 1400, height: 160, channels: 3, samples: Samples::U8(got) };
    assert_parity("700x80 many bands and tiles", &got, &want);
}

/// An error from the sink stops the work between bands and is returned.
#[test]
fn sink_error_stops_the_run() {
    let model = espcn_like(1);
    let mut rng = Rng(2);
    let img = random_image(&mut rng, 64, 400, 3, 8);
    let up = Upscaler::new(&model, Options::default()).unwrap();
    let mut calls = 0;
    let res = up.upscale_streaming(&img, |_| {
        calls += 1;
        Err("cancelled")
    });
    assert_eq!(res, Err("cancelled"));
    assert_eq!(calls, 1);
}

/// Output dimensions that overflow u32 are an error, not a panic; an unsupported path is an error.
#[test]
fn errors_are_typed() {
    let model = espcn_like(1);
    let up = Upscaler::new(&model, Options::default()).unwrap();
    let img = Image { width: u32::MAX / 2 + 1, height: 0, channels: 3, samples: Samples::U8(vec![]) };
    assert!(matches!(up.upscale(&img), Err(EngineError::OutputTooLarge { .. })));
    // Every machine lacks one of these (no CPU has both NEON and AVX2).
    let p = [CpuPath::Avx512, CpuPath::Avx2Fma, CpuPath::Neon].into_iter().find(|p| !p.is_supported()).unwrap();
    let err = Upscaler::new(&model, Options { path: p, ..Options::default() }).unwrap_err();
    assert_eq!(err, EngineError::UnsupportedPath(p));
    assert!(err.to_string().contains(&format!("CPU path {} is not supported", p.name())), "{err}");
    assert_eq!(up.flops(10, 10), 2.0 * 100.0 * model.macs_per_pixel() as f64);
    assert_eq!(up.scale(), 2);
    assert!(!up.uses_fast_path());
}

/// The vectorised tanh (a rational approximation, see `engine::simd::tanh`) is within 5 ULP of f64 tanh on the
/// paths with FMA and 7 ULP on the portable one (measured 4.9 and 6.9), and within 5e-7 absolute on every path.
#[test]
fn tanh_is_accurate() {
    let n = 1 << 21;
    let xs: Vec<f32> = (0..n).map(|i| -12.0 + 24.0 * i as f32 / n as f32).chain([0.0, -0.0, 1e-30, 0.625]).collect();
    let mut ran = PathsRan::new("tanh_is_accurate");
    for opts in every_path(true) {
        // tanh has no VBMI variant: avx512-novbmi runs the AVX-512 one again.
        let (path, name) = (opts.path, opts.path_name());
        let mut ys = xs.clone();
        tanh_slice(path, &mut ys);
        let mut worst = (0f64, 0f32);
        let mut worst_abs = 0f64;
        for (&x, &y) in xs.iter().zip(&ys) {
            let t = (x as f64).tanh();
            worst_abs = worst_abs.max((y as f64 - t).abs());
            let ulp = (t.abs() as f32).max(f32::MIN_POSITIVE);
            let ulp = (f32::from_bits(ulp.to_bits() + 1) - ulp) as f64;
            let e = (y as f64 - t).abs() / ulp;
            if e > worst.0 {
                worst = (e, x);
            }
        }
        println!("tanh {name}: max error {:.2} ULP at x = {}, {worst_abs:.1e} absolute", worst.0, worst.1);
        let bound = if path == CpuPath::Portable { 7.0 } else { 5.0 };
        assert!(worst.0 <= bound, "tanh {name}: {:.2} ULP at x = {}", worst.0, worst.1);
        assert!(worst_abs <= 5e-7, "tanh {name}: {worst_abs:e} absolute");
        ran.add(&opts);
    }
}
