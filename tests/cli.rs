//! Black-box tests of the `icnr-upscale` binary: `upscale`, `kernel`, `bench` and `healthcheck`, their output, exit
//! codes (0 ok, 1 failure, 2 usage) and atomic output files.

mod support;
use support::jpeg_with_orientation;

use std::io::{Cursor, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use icnr_upscale::kernel::{Init, Initializer, Kernel, KernelParams};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_icnr-upscale"));
    c.env_remove("ICNR_UPSCALE_BIND").env_remove("RUST_LOG");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run icnr-upscale")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn pattern_rgb8(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 37 + y * 11) as u8, ((x * 5) ^ (y * 23)) as u8, (x * y) as u8])
    })
}

fn write_image(path: &Path, img: &image::DynamicImage, format: image::ImageFormat) {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    std::fs::write(path, out.into_inner()).unwrap();
}

/// Output PNG facts via the png crate: (width, height, color type, bit depth).
fn png_info(path: &Path) -> (u32, u32, png::ColorType, png::BitDepth) {
    let bytes = std::fs::read(path).unwrap();
    let reader = png::Decoder::new(Cursor::new(bytes)).read_info().expect("output is a PNG");
    let info = reader.info();
    (info.width, info.height, info.color_type, info.bit_depth)
}

/// Names in `dir`, sorted.
fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { dir: tempfile::tempdir().unwrap() }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// A 20x12 RGB8 PNG named `in.png`.
    fn input_png(&self) -> PathBuf {
        let path = self.path("in.png");
        write_image(&path, &image::DynamicImage::ImageRgb8(pattern_rgb8(20, 12)), image::ImageFormat::Png);
        path
    }
}

/// `upscale` doubles a PNG by default, exits 0 and reports the size, the checkerboard score and the time.
#[test]
fn upscale_doubles_a_png() {
    let f = Fixture::new();
    let input = f.input_png();
    let out = f.path("out.png");
    let o = run(&["upscale", p(&input), p(&out)]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert_eq!(png_info(&out), (40, 24, png::ColorType::Rgb, png::BitDepth::Eight));
    let s = stdout(&o);
    assert!(s.contains("40x24"), "{s}");
    assert!(s.contains("checkerboard score"), "{s}");
    assert!(s.contains(" ms"), "{s}");
    // Only the output was added: no temporary file left behind.
    assert_eq!(dir_names(f.dir.path()), ["in.png", "out.png"]);
}

/// 16-bit RGBA input gives 16-bit RGBA output; `--scale 3 --compression best` are honoured.
#[test]
fn upscale_keeps_16_bit_and_alpha() {
    let f = Fixture::new();
    let input = f.path("in16.png");
    let img = image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(7, 5, |x, y| {
        image::Rgba([(x * 9000) as u16, (y * 13000) as u16, 40000, (x * y * 3000) as u16])
    });
    write_image(&input, &image::DynamicImage::ImageRgba16(img), image::ImageFormat::Png);
    let out = f.path("out.png");
    let o = run(&["upscale", p(&input), p(&out), "--scale", "3", "--compression", "best"]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert_eq!(png_info(&out), (21, 15, png::ColorType::Rgba, png::BitDepth::Sixteen));
    assert!(stdout(&o).contains("21x15"));
}

/// `kernel` prints exactly `Kernel::generate(..).to_json()`, which parses as JSON with PyTorch's nested shapes.
#[test]
fn kernel_prints_the_kernel_json() {
    let o = run(&[
        "kernel",
        "--scale",
        "3",
        "--kernel-size",
        "5",
        "--init",
        "plain",
        "--initializer",
        "xavier_uniform",
        "--seed",
        "42",
    ]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let params =
        KernelParams { scale: 3, kernel_size: 5, init: Init::Plain, initializer: Initializer::XavierUniform, seed: 42 };
    assert_eq!(stdout(&o), Kernel::generate(&params).unwrap().to_json(), "same bytes as the library (and GET /kernel)");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["scale"], 3);
    assert_eq!(j["kernel_size"], 5);
    assert_eq!(j["init"], "plain");
    assert_eq!(j["initializer"], "xavier_uniform");
    assert_eq!(j["seed"], 42);
    let w = j["weight"].as_array().unwrap();
    assert_eq!(w.len(), 27);
    assert!(w.iter().all(|o| o.as_array().unwrap().len() == 3));
    assert!(w[26][2].as_array().unwrap().iter().all(|row| row.as_array().unwrap().len() == 5));
    assert_eq!(w[26][2].as_array().unwrap().len(), 5);
    assert_eq!(j["bias"].as_array().unwrap().len(), 27);

    // Defaults: r=2, k=3, icnr, kaiming_normal, seed 0.
    let o = run(&["kernel"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), Kernel::generate(&KernelParams::default()).unwrap().to_json());
}

/// `bench --size 64 --iters 2`: the last stdout line is one JSON object with the timing, the path and the
/// parameters.
#[test]
fn bench_ends_with_a_json_line() {
    let o = run(&["bench", "--size", "64", "--iters", "2", "--threads", "1"]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    let last = out.lines().last().expect("some output");
    let j: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert!(j["median_ms"].as_f64().unwrap() > 0.0);
    assert!(j["gflops"].as_f64().unwrap() > 0.0);
    assert!(icnr_upscale::engine::PATH_NAMES.contains(&j["path"].as_str().unwrap()), "{last}");
    assert_eq!(j["fast_path"], true, "ICNR is tied");
    assert_eq!(j["size"], 64);
    assert_eq!(j["scale"], 2);
    assert_eq!(j["kernel_size"], 3);
    assert_eq!(j["init"], "icnr");
    assert_eq!(j["threads"], 1);
    assert_eq!(j["iters"], 2);

    let o = run(&["bench", "--size", "16", "--iters", "1", "--init", "default", "--scale", "3", "--kernel-size", "1"]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(
        (j["fast_path"].as_bool(), j["init"].as_str(), j["scale"].as_u64()),
        (Some(false), Some("default"), Some(3))
    );
}

/// `--cpu NAME` runs that path and the bench JSON names the kernels that ran (so `avx512-novbmi` on a VBMI machine
/// reports itself); an unknown name exits 2 listing every valid name.
#[test]
fn bench_runs_the_forced_cpu_path_and_unknown_names_exit_2() {
    let supported = icnr_upscale::engine::supported_path_names();
    for name in icnr_upscale::engine::PATH_NAMES {
        let o = run(&["bench", "--size", "32", "--iters", "1", "--threads", "1", "--cpu", name]);
        if !supported.split(", ").any(|s| s == name) {
            assert_eq!(o.status.code(), Some(2), "{name} is not supported here: {}", stderr(&o));
            eprintln!("SKIP path {name} in cli::bench_runs_the_forced_cpu_path: not supported by this CPU");
            continue;
        }
        assert!(o.status.success(), "--cpu {name}: {}", stderr(&o));
        let j: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
        assert_eq!(j["path"], *name, "--cpu {name}");
    }
    let o = run(&["bench", "--size", "32", "--iters", "1", "--cpu", "avx1024"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    for name in icnr_upscale::cpu_names() {
        assert!(stderr(&o).contains(name), "{name} missing from: {}", stderr(&o));
    }
}

/// Usage errors exit 2 with clap's message on stderr and nothing written.
#[test]
fn bad_arguments_exit_2() {
    let f = Fixture::new();
    let input = f.input_png();
    let out = f.path("out.png");
    let weights = f.path("k.json");
    std::fs::write(&weights, Kernel::generate(&KernelParams::default()).unwrap().to_json()).unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["upscale", p(&input)],
        vec!["upscale", p(&input), p(&out), "--scale", "9"],
        vec!["upscale", p(&input), p(&out), "--scale", "1"],
        vec!["upscale", p(&input), p(&out), "--kernel-size", "4"],
        vec!["upscale", p(&input), p(&out), "--kernel-size", "11"],
        vec!["upscale", p(&input), p(&out), "--init", "custom"],
        vec!["upscale", p(&input), p(&out), "--initializer", "kaiming-normal"],
        vec!["upscale", p(&input), p(&out), "--compression", "max"],
        vec!["upscale", p(&input), p(&out), "--weights", p(&weights), "--init", "plain"],
        vec!["upscale", p(&input), p(&out), "--weights", p(&weights), "--seed", "3"],
        vec!["upscale", p(&input), p(&out), "--weights", p(&weights), "--scale", "3"],
        vec!["upscale", p(&input), p(&out), "--weights", p(&weights), "--kernel-size", "5"],
        vec!["kernel", "--seed", "-1"],
        vec!["bench", "--size", "0"],
        vec!["bench", "--threads", "0"],
        vec!["frobnicate"],
    ];
    for args in cases {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: stderr {}", stderr(&o));
        assert!(!stderr(&o).trim().is_empty(), "{args:?}: a message on stderr");
        assert!(!out.exists(), "{args:?}: nothing written");
    }
    // The contradiction message says what to change.
    let o = run(&["upscale", p(&input), p(&out), "--weights", p(&weights), "--scale", "3"]);
    assert!(stderr(&o).contains("--scale 3") && stderr(&o).contains("scale 2"), "{}", stderr(&o));
    // A --scale or --kernel-size that agrees with the weights is fine.
    let o = run(&["upscale", p(&input), p(&out), "--weights", p(&weights), "--scale", "2", "--kernel-size", "3"]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    // --help is not an error.
    assert_eq!(run(&["--help"]).status.code(), Some(0));
    assert_eq!(run(&["upscale", "--help"]).status.code(), Some(0));
}

/// Runtime failures exit 1 with a clear message: missing input, undecodable input, over-size input, bad weights.
#[test]
fn failures_exit_1_with_a_message() {
    let f = Fixture::new();
    let input = f.input_png();
    let out = f.path("out.png");

    let missing = f.path("missing.png");
    let o = run(&["upscale", p(&missing), p(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.png"), "{}", stderr(&o));

    let text = f.path("notes.png");
    std::fs::write(&text, "these are not pixels").unwrap();
    let o = run(&["upscale", p(&text), p(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("PNG, JPEG"), "lists the supported formats: {}", stderr(&o));

    let truncated = f.path("truncated.png");
    let full = std::fs::read(&input).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let o = run(&["upscale", p(&truncated), p(&out)]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));

    // Bad weights: wrong shape, not JSON, missing, not safetensors.
    let shape = f.path("shape.json");
    std::fs::write(&shape, r#"{"weight": [[[[1.0, 2.0]]]]}"#).unwrap();
    let garbage = f.path("garbage.json");
    std::fs::write(&garbage, "{not json").unwrap();
    let fake_st = f.path("fake.safetensors");
    std::fs::write(&fake_st, "not a safetensors file").unwrap();
    let no_such = f.path("no_such.json");
    for w in [&shape, &garbage, &fake_st, &no_such] {
        let o = run(&["upscale", p(&input), p(&out), "--weights", p(w)]);
        assert_eq!(o.status.code(), Some(1), "{w:?}: stderr {}", stderr(&o));
        assert!(stderr(&o).starts_with("error: "), "{w:?}: {}", stderr(&o));
    }
    let o = run(&["upscale", p(&input), p(&out), "--weights", p(&shape)]);
    assert!(stderr(&o).contains("weight"), "names the bad field: {}", stderr(&o));

    // Output into a directory that does not exist.
    let o = run(&["upscale", p(&input), p(&f.path("no/such/dir/out.png"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!out.exists());
}

/// A failing run leaves a pre-existing OUT byte-identical and no temporary file behind, whether it fails before
/// writing (undecodable input) or at the very end (the final rename onto a directory).
#[test]
fn failed_runs_leave_out_untouched() {
    let f = Fixture::new();
    let input = f.input_png();
    let out = f.path("out.png");
    std::fs::write(&out, b"precious previous output").unwrap();
    let bad = f.path("bad.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let o = run(&["upscale", p(&bad), p(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(&out).unwrap(), b"precious previous output");
    assert_eq!(dir_names(f.dir.path()), ["bad.png", "in.png", "out.png"]);

    // OUT is a (non-empty) directory: the whole PNG is written to the temp file, then the rename fails.
    let out_dir = f.path("taken");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("keep"), b"k").unwrap();
    let o = run(&["upscale", p(&input), p(&out_dir)]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    assert_eq!(dir_names(&out_dir), ["keep"]);
    assert_eq!(dir_names(f.dir.path()), ["bad.png", "in.png", "out.png", "taken"]);

    // And a successful run replaces OUT.
    let o = run(&["upscale", p(&input), p(&out)]);
    assert!(o.status.success());
    assert_eq!(png_info(&out).0, 40);
}

/// `--weights` with the JSON that `kernel` printed, or the same weights as safetensors, gives the same PNG bytes
/// as the flags that made the kernel.
#[test]
fn weights_file_matches_flags() {
    let f = Fixture::new();
    let input = f.input_png();
    let flags =
        ["--scale", "3", "--kernel-size", "5", "--init", "plain", "--initializer", "kaiming_uniform", "--seed", "7"];
    let o = bin().arg("kernel").args(flags).output().unwrap();
    assert!(o.status.success());
    let json_path = f.path("k.json");
    std::fs::write(&json_path, &o.stdout).unwrap();

    let by_flags = f.path("flags.png");
    let o = bin().args(["upscale", p(&input), p(&by_flags)]).args(flags).output().unwrap();
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let by_json = f.path("json.png");
    let o = run(&["upscale", p(&input), p(&by_json), "--weights", p(&json_path)]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert_eq!(std::fs::read(&by_flags).unwrap(), std::fs::read(&by_json).unwrap());

    // The same weights as f32 safetensors (`safetensors.torch.save_file(conv.state_dict())` layout).
    let k = Kernel::from_json(&std::fs::read(&json_path).unwrap()).unwrap();
    let wbytes: Vec<u8> = k.weight().iter().flat_map(|v| v.to_le_bytes()).collect();
    let bbytes: Vec<u8> = k.bias().iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensors = vec![
        ("weight", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![27, 3, 5, 5], &wbytes).unwrap()),
        ("bias", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![27], &bbytes).unwrap()),
    ];
    let st_path = f.path("k.safetensors");
    std::fs::write(&st_path, safetensors::tensor::serialize(tensors, None).unwrap()).unwrap();
    let by_st = f.path("st.png");
    let o = run(&["upscale", p(&input), p(&by_st), "--weights", p(&st_path)]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert_eq!(std::fs::read(&by_flags).unwrap(), std::fs::read(&by_st).unwrap());
}

/// A JPEG with EXIF orientation 6 (rotate 90 degrees) comes out as a photo viewer shows it: width and height
/// swapped.
#[test]
fn exif_orientation_swaps_the_output_dimensions() {
    let f = Fixture::new();
    let img = image::DynamicImage::ImageRgb8(pattern_rgb8(30, 10));
    let input = f.path("photo.jpg");
    std::fs::write(&input, jpeg_with_orientation(&img, 6)).unwrap();
    let out = f.path("out.png");
    let o = run(&["upscale", p(&input), p(&out)]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert_eq!(png_info(&out), (20, 60, png::ColorType::Rgb, png::BitDepth::Eight));

    std::fs::write(&input, jpeg_with_orientation(&img, 1)).unwrap();
    let o = run(&["upscale", p(&input), p(&out)]);
    assert!(o.status.success());
    assert_eq!(png_info(&out).0, 60);
}

/// Serves one HTTP answer with `status` on a loopback port; returns the port and the request it received.
fn one_shot_server(status: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let mut req = Vec::new();
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        let body = "{\"status\":\"ok\"}";
        let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        String::from_utf8_lossy(&req).into_owned()
    });
    (port, handle)
}

/// `healthcheck` exits 0 on a 200 from /healthz and 1 on any other status or when nothing listens; by default it
/// targets ICNR_UPSCALE_BIND with 0.0.0.0 mapped to loopback.
#[test]
fn healthcheck_probes_healthz() {
    let (port, server) = one_shot_server("200 OK");
    let o = run(&["healthcheck", "--url", &format!("http://127.0.0.1:{port}/healthz")]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let req = server.join().unwrap();
    assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");

    let (port, server) = one_shot_server("503 Service Unavailable");
    let o = run(&["healthcheck", "--url", &format!("http://127.0.0.1:{port}/healthz")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("503"), "{}", stderr(&o));
    server.join().unwrap();

    let (port, server) = one_shot_server("200 OK");
    let o = bin().arg("healthcheck").env("ICNR_UPSCALE_BIND", format!("0.0.0.0:{port}")).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(server.join().unwrap().starts_with("GET /healthz "));

    // Nothing listening: a port that was just free.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = run(&["healthcheck", "--url", &format!("http://127.0.0.1:{port}/healthz")]);
    assert_eq!(o.status.code(), Some(1));
}

/// With no subcommand the binary is the service (`cargo run --release` starts it), configured from
/// `ICNR_UPSCALE_*`; `healthcheck` with the same environment finds it.
#[test]
fn no_subcommand_serves() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bind = format!("127.0.0.1:{port}");
    let mut child = bin()
        .env("ICNR_UPSCALE_BIND", &bind)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the service");
    // Bounded wait for the listener (the service starts in milliseconds; the 60 s bound only guards a hang, and
    // does not depend on how fast a busy machine runs the probes).
    let mut healthy = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if bin().arg("healthcheck").env("ICNR_UPSCALE_BIND", &bind).output().unwrap().status.success() {
            healthy = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(healthy, "the service answered /healthz on {bind}");
}
