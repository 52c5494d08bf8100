//! Times `Upscaler::new` on an in-memory N x N RGB8 image (sink discards rows), like `icnr-upscale bench`
//! for kernels; the last stdout line is JSON (`median_ms`, `min_ms`, `gflops`, `path`, ...). Used by
//! `scripts/bench_peers.py --model`.
//!
//! `cargo run --release --example model_bench -- models/espcn-x2.json 512 2 30`
//! (model, size, threads, iterations; the model may also be `espcn-random` for a random model of the espcn-x2 shape).

use std::convert::Infallible;

use icnr_upscale::engine::{CpuPath, Image, Options, Samples, Upscaler};
use icnr_upscale::model::{Conv2d, Layer, Model, ModelLimits, Residual};
use ndarray::{Array1, Array4};

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// conv 3->32 k5, tanh, conv 32->16 k3, tanh, conv 16->12 k3, pixel_shuffle(2), nearest residual; random weights.
fn espcn_random() -> Model {
    let mut s = 1u64;
    let mut conv = |o: usize, i: usize, k: usize| {
        let b = 1.0 / ((i * k * k) as f32).sqrt();
        let mut u = || b * (2.0 * (splitmix(&mut s) >> 40) as f32 / (1u64 << 24) as f32 - 1.0);
        let w = Array4::from_shape_fn((o, i, k, k), |_| u());
        let bias = Array1::from_shape_fn(o, |_| u());
        Layer::Conv2d(Conv2d::new(w, Some(bias)).unwrap())
    };
    let layers = vec![
        conv(32, 3, 5),
        Layer::Tanh,
        conv(16, 32, 3),
        Layer::Tanh,
        conv(12, 16, 3),
        Layer::PixelShuffle { upscale_factor: 2 },
    ];
    Model::new("espcn-random", layers, Residual::Nearest).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let model_arg = arg(1, "espcn-random");
    let n: u32 = arg(2, "512").parse().expect("size");
    let threads: usize = arg(3, "2").parse().expect("threads");
    let iters: usize = arg(4, "30").parse().expect("iterations");
    let path = std::env::var("MODEL_BENCH_PATH")
        .ok()
        .and_then(|p| CpuPath::supported().into_iter().find(|c| c.name() == p))
        .unwrap_or_else(CpuPath::detect);
    let model = if model_arg == "espcn-random" {
        espcn_random()
    } else {
        Model::load_file(&model_arg, &ModelLimits::default()).expect("model")
    };
    let up = Upscaler::new(&model, Options { path, allow_fast_path: true, ..Options::default() }).expect("engine");
    let mut s = 7u64;
    let samples = (0..n as usize * n as usize * 3).map(|_| splitmix(&mut s) as u8).collect();
    let img = Image { width: n, height: n, channels: 3, samples: Samples::U8(samples) };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    let run = || pool.install(|| up.upscale_streaming(&img, |_| Ok::<(), Infallible>(())).unwrap());
    for _ in 0..3 {
        run();
    }
    let mut times: Vec<f64> = (0..iters)
        .map(|_| {
            let t = std::time::Instant::now();
            run();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let gflop = up.flops(n, n) / 1e9;
    println!(
        "{{\"model\": {:?}, \"size\": {n}, \"threads\": {threads}, \"iters\": {iters}, \"median_ms\": {median:.3}, \
         \"min_ms\": {:.3}, \"gflop\": {gflop:.3}, \"gflops\": {:.1}, \"path\": {:?}}}",
        model.name(),
        times[0],
        gflop / (median / 1e3),
        up.path().name()
    );
}
