//! Criterion benches of the core: `Upscaler::upscale_streaming` on an in-memory RGB8 image with a sink that
//! discards rows (no codecs). Names encode the parameters: `core/{size}/r{r}/k{k}/{untied|icnr|general}/{path}`.
//! `untied` is a random non-tied kernel (like PyTorch's default init), `icnr` a tied kernel on the fast path,
//! `general` the same tied kernel forced onto the general path.
//!
//! Threads: a rayon pool of `CORE_BENCH_THREADS` threads (default 2), entered with `install` as the CLI's
//! `bench --threads` does.
//! Run: `cargo bench --bench core -- --warm-up-time 1 --measurement-time 3 core/1024/r2/k3`.
//! Models (multi-layer engine): `cargo bench --bench core -- core/model/espcn` (see `bench_model`).

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{criterion_group, Criterion, Throughput};
use icnr_upscale::engine::{CpuPath, Image, Options, OutRows, Samples, Upscaler};
use icnr_upscale::kernel::Kernel;
use ndarray::{Array1, Array4};

/// SplitMix64 for deterministic test data.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A kernel with weights U(+-1/sqrt(fan_in)) (PyTorch's default range); tied in r*r groups when `tied`.
fn kernel(r: u32, k: u32, tied: bool) -> Kernel {
    let mut s = 42u64;
    let cout = 3 * (r * r) as usize;
    let per = 3 * (k * k) as usize;
    let bound = 1.0 / (per as f32).sqrt();
    let mut u = move || bound * (2.0 * (splitmix(&mut s) >> 40) as f32 / (1u64 << 24) as f32 - 1.0);
    let base: Vec<f32> = (0..cout * per).map(|_| u()).collect();
    let bias: Vec<f32> = (0..cout).map(|_| u()).collect();
    let rr = (r * r) as usize;
    let pick = |o: usize| if tied { o - o % rr } else { o };
    let (k, cout_k) = (k as usize, cout);
    let weight: Vec<f32> = (0..cout * per).map(|i| base[pick(i / per) * per + i % per]).collect();
    let bias: Array1<f32> = (0..cout).map(|o| bias[pick(o)]).collect();
    Kernel::new(Array4::from_shape_vec((cout_k, 3, k, k), weight).unwrap(), Some(bias)).unwrap()
}

fn image(n: u32) -> Image {
    let mut s = 7u64;
    let samples = (0..n as usize * n as usize * 3).map(|_| splitmix(&mut s) as u8).collect();
    Image { width: n, height: n, channels: 3, samples: Samples::U8(samples) }
}

fn bench_core(c: &mut Criterion) {
    let threads = std::env::var("CORE_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
    let mut g = c.benchmark_group("core");
    let discard = |rows: OutRows<'_>| {
        black_box(rows.first_row);
        Ok::<(), Infallible>(())
    };
    for (n, r, k) in [(1024u32, 2u32, 3u32), (2048, 2, 3), (1024, 4, 3), (512, 2, 9)] {
        let img = image(n);
        g.throughput(Throughput::Elements(n as u64 * n as u64));
        for path in CpuPath::supported() {
            for (name, tied, fast) in [("untied", false, true), ("icnr", true, true), ("general", true, false)] {
                if path != CpuPath::detect() && name == "general" {
                    continue;
                }
                let up = Upscaler::from_kernel(
                    &kernel(r, k, tied),
                    Options { path, allow_fast_path: fast, ..Options::default() },
                )
                .unwrap();
                g.bench_function(format!("{n}/r{r}/k{k}/{name}/{}", path.name()), |b| {
                    b.iter(|| pool.install(|| up.upscale_streaming(&img, discard).unwrap()))
                });
            }
        }
    }
    g.finish();
}

/// `CORE_BENCH_ITERS=N CORE_BENCH_CASE=1024/r2/k3/untied/avx512`: run that case N times without criterion and exit,
/// for `perf stat` (CPU cycles per image are far less sensitive to a busy machine than wall time).
fn fixed_iterations() -> bool {
    let (Some(iters), Some(case)) = (std::env::var("CORE_BENCH_ITERS").ok(), std::env::var("CORE_BENCH_CASE").ok())
    else {
        return false;
    };
    let iters: usize = iters.parse().expect("CORE_BENCH_ITERS");
    let parts: Vec<&str> = case.split('/').collect();
    let n: u32 = parts[0].parse().expect("size");
    let r: u32 = parts[1][1..].parse().expect("r");
    let k: u32 = parts[2][1..].parse().expect("k");
    let (tied, fast) = match parts[3] {
        "untied" => (false, true),
        "icnr" => (true, true),
        _ => (true, false),
    };
    let path = CpuPath::supported().into_iter().find(|p| p.name() == parts[4]).expect("supported path");
    let threads = std::env::var("CORE_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
    let img = image(n);
    let up = Upscaler::from_kernel(&kernel(r, k, tied), Options { path, allow_fast_path: fast, ..Options::default() })
        .unwrap();
    let mut times: Vec<f64> = (0..iters)
        .map(|_| {
            let t = std::time::Instant::now();
            pool.install(|| up.upscale_streaming(&img, |_| Ok::<(), Infallible>(())).unwrap());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    if let (Some(min), Some(med)) = (times.first(), times.get(times.len() / 2)) {
        eprintln!("{case} threads={threads}: min {min:.3} ms, median {med:.3} ms over {iters} iterations");
    }
    true
}

/// A random model of the default x2 model's shape (espcn-x2: conv 3->32 k5, tanh, 32->16 k3, tanh, 16->12 k3,
/// pixel shuffle 2, nearest residual; 4.6 GFLOP at 512x512), or `models/espcn-x2.json` when it exists, on the
/// multi-layer engine: `core/model/{name}/512/{path}`.
fn bench_model(c: &mut Criterion) {
    use icnr_upscale::model::{Conv2d, Layer, Model, ModelLimits, Residual};
    use ndarray::{Array1, Array4};
    let threads = std::env::var("CORE_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
    let mut s = 1u64;
    let mut conv = |o: usize, i: usize, k: usize| {
        let b = 1.0 / ((i * k * k) as f32).sqrt();
        let mut u = || b * (2.0 * (splitmix(&mut s) >> 40) as f32 / (1u64 << 24) as f32 - 1.0);
        let w = Array4::from_shape_fn((o, i, k, k), |_| u());
        let bias = Array1::from_shape_fn(o, |_| u());
        Layer::Conv2d(Conv2d::new(w, Some(bias)).expect("conv"))
    };
    let layers = vec![
        conv(32, 3, 5),
        Layer::Tanh,
        conv(16, 32, 3),
        Layer::Tanh,
        conv(12, 16, 3),
        Layer::PixelShuffle { upscale_factor: 2 },
    ];
    let mut models = vec![Model::new("espcn-random", layers, Residual::Nearest).expect("model")];
    let builtin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/espcn-x2.json");
    if let Ok(m) = Model::load_file(&builtin, &ModelLimits::default()) {
        models.push(m);
    }
    let img = image(512);
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(512 * 512));
    for model in &models {
        for path in CpuPath::supported() {
            let up =
                Upscaler::new(model, Options { path, allow_fast_path: true, ..Options::default() }).expect("engine");
            g.bench_function(format!("model/{}/512/{}", model.name(), path.name()), |b| {
                b.iter(|| pool.install(|| up.upscale_streaming(&img, |_| Ok::<(), Infallible>(())).unwrap()))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_core, bench_model);

fn main() {
    if !fixed_iterations() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
