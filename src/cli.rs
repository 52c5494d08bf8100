//! The `icnr-upscale` command line: `serve` (the default), `upscale`, `kernel`, `bench` and `healthcheck`.
//!
//! Exit codes: 0 success, 1 failure (unreadable input, undecodable image, bad weights, I/O), 2 usage errors (bad
//! flags or values, as clap reports them, and flags that contradict `--weights`).

use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::{Image, Options, Samples, Upscaler};
use crate::imageio::{self, Compression, DecodeLimits};
use crate::kernel::{Init, Initializer, Kernel, KernelParams, MAX_KERNEL_SIZE, MAX_SCALE, MIN_SCALE};
use crate::server::{self, ServeArgs};

/// Largest input the CLI decodes: 2^28 pixels (16384 x 16384). Generous for local files, but still a bound.
pub const CLI_MAX_INPUT_PIXELS: u64 = 1 << 28;
/// Largest output the CLI writes: 2^30 pixels (32768 x 32768).
pub const CLI_MAX_OUTPUT_PIXELS: u64 = 1 << 30;
/// How long `healthcheck` waits to connect, and then for the answer.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Parser)]
#[command(
    name = "icnr-upscale",
    version,
    about = "Sub-pixel convolution (Conv2d + PixelShuffle) image upscaling with ICNR-initialised kernels",
    long_about = "Sub-pixel convolution (Conv2d + PixelShuffle) image upscaling with ICNR-initialised kernels.\n\n\
                  With no subcommand, starts the HTTP service (`serve`) configured from ICNR_UPSCALE_* variables."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Upscale an image file and write a PNG.
    Upscale(UpscaleArgs),
    /// Print the kernel JSON for the given parameters (the same bytes as `GET /kernel`).
    Kernel(KernelArgs),
    /// Time the core on an in-memory N x N RGB8 image (no codecs); the last line is JSON.
    Bench(BenchArgs),
    /// Probe a running service's /healthz; exit 0 when it answers 200, else 1.
    Healthcheck(HealthcheckArgs),
}

/// `--init` on the command line: how the kernel is made (custom kernels come from `--weights` instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
#[value(rename_all = "snake_case")]
enum InitArg {
    /// Sub-kernel from `--initializer`, tied in r*r groups; bias zero.
    #[default]
    Icnr,
    /// PyTorch's own nn.Conv2d initialisation (shows the checkerboard).
    Default,
    /// `--initializer` over the whole kernel, untied (the ablation).
    Plain,
}

impl From<InitArg> for Init {
    fn from(a: InitArg) -> Init {
        match a {
            InitArg::Icnr => Init::Icnr,
            InitArg::Default => Init::Default,
            InitArg::Plain => Init::Plain,
        }
    }
}

fn parse_scale(s: &str) -> Result<u32, String> {
    let v: u32 = s.parse().map_err(|_| format!("`{s}` is not a whole number"))?;
    if (MIN_SCALE..=MAX_SCALE).contains(&v) {
        Ok(v)
    } else {
        Err(format!("the scale must be {MIN_SCALE} to {MAX_SCALE}, got {v}"))
    }
}

fn parse_kernel_size(s: &str) -> Result<u32, String> {
    let v: u32 = s.parse().map_err(|_| format!("`{s}` is not a whole number"))?;
    if v % 2 == 1 && v <= MAX_KERNEL_SIZE {
        Ok(v)
    } else {
        Err(format!("the kernel size must be odd, 1 to {MAX_KERNEL_SIZE}, got {v}"))
    }
}

/// Flags that pick a generated kernel.
#[derive(Debug, Clone, Args)]
struct GenArgs {
    /// Scale factor r (2 to 8) [default: 2]
    #[arg(long, value_parser = parse_scale)]
    scale: Option<u32>,
    /// Convolution kernel size k (odd, 1 to 9) [default: 3]
    #[arg(long, value_parser = parse_kernel_size)]
    kernel_size: Option<u32>,
    /// How the kernel is made [default: icnr]
    #[arg(long, value_enum)]
    init: Option<InitArg>,
    /// Initializer of the (sub-)kernel [default: kaiming_normal]
    #[arg(long, value_enum)]
    initializer: Option<Initializer>,
    /// RNG seed (ChaCha8) [default: 0]
    #[arg(long)]
    seed: Option<u64>,
}

impl GenArgs {
    fn params(&self) -> KernelParams {
        let d = KernelParams::default();
        KernelParams {
            scale: self.scale.unwrap_or(d.scale),
            kernel_size: self.kernel_size.unwrap_or(d.kernel_size),
            init: self.init.map_or(d.init, Init::from),
            initializer: self.initializer.unwrap_or(d.initializer),
            seed: self.seed.unwrap_or(d.seed),
        }
    }
}

#[derive(Debug, Args)]
struct UpscaleArgs {
    /// Input image: PNG, JPEG, WebP, GIF (first frame), BMP or TIFF.
    #[arg(value_name = "IN")]
    input: PathBuf,
    /// Output PNG, written atomically (temporary file + rename).
    #[arg(value_name = "OUT")]
    output: PathBuf,
    #[command(flatten)]
    kernel: GenArgs,
    /// Kernel weights instead of generating them: kernel JSON (as `kernel` prints) or `.safetensors`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["init", "initializer", "seed"])]
    weights: Option<PathBuf>,
    /// PNG compression.
    #[arg(long, value_enum, default_value_t = Compression::Fast)]
    compression: Compression,
}

#[derive(Debug, Args)]
struct KernelArgs {
    #[command(flatten)]
    kernel: GenArgs,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Width and height of the synthetic input image.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=16384))]
    size: u32,
    /// Scale factor r (2 to 8).
    #[arg(long, default_value_t = 2, value_parser = parse_scale)]
    scale: u32,
    /// Convolution kernel size k (odd, 1 to 9).
    #[arg(long, default_value_t = 3, value_parser = parse_kernel_size)]
    kernel_size: u32,
    /// How the kernel is made.
    #[arg(long, value_enum, default_value_t = InitArg::Icnr)]
    init: InitArg,
    /// Worker threads [default: all cores]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Timed iterations (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    iters: u32,
}

#[derive(Debug, Args)]
struct HealthcheckArgs {
    /// Where to probe, e.g. `http://127.0.0.1:8080/healthz` [default: the address in ICNR_UPSCALE_BIND, with
    /// 0.0.0.0 mapped to 127.0.0.1, else 127.0.0.1:8080]
    #[arg(long)]
    url: Option<String>,
}

/// A failed command: what to tell the user, and the exit code.
#[derive(Debug)]
struct Failure {
    code: i32,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure { code: 2, message: message.into() }
    }
    fn other(message: impl Into<String>) -> Failure {
        Failure { code: 1, message: message.into() }
    }
}

/// Runs the CLI with the process arguments; returns the exit code.
pub fn main() -> i32 {
    run(std::env::args_os())
}

/// Runs the CLI with `args` (the first is the program name); returns the exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version land here too, on stdout with exit 0.
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let command = match cli.command {
        Some(c) => c,
        // No subcommand: serve, configured from the environment (and defaults).
        None => match Cli::try_parse_from(["icnr-upscale", "serve"]) {
            Ok(Cli { command: Some(c) }) => c,
            Ok(_) => unreachable!("`serve` parses as the serve subcommand"),
            Err(e) => {
                let _ = e.print();
                return 2;
            }
        },
    };
    if !matches!(command, Command::Serve(_)) {
        init_tracing();
    }
    let result = match command {
        Command::Serve(args) => server::serve_blocking(args).map_err(|e| Failure::other(format!("{e:#}"))),
        Command::Upscale(args) => upscale(&args),
        Command::Kernel(args) => kernel(&args),
        Command::Bench(args) => bench(&args),
        Command::Healthcheck(args) => healthcheck(&args),
    };
    match result {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("error: {}", f.message);
            f.code
        }
    }
}

/// Logs to stderr, warnings and up unless `RUST_LOG` says otherwise; the service sets up its own format.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).try_init();
}

fn generate(params: &KernelParams) -> Result<Kernel, Failure> {
    Kernel::generate(params).map_err(|e| Failure::usage(e.to_string()))
}

/// Reads `--weights`: `.safetensors` as safetensors, anything else as kernel JSON.
fn load_weights(path: &Path) -> Result<Kernel, Failure> {
    Kernel::load_file(path).map_err(|e| Failure::other(format!("bad weights: {e}")))
}

/// The kernel for `upscale`: loaded from `--weights` (which then fix scale and kernel size) or generated.
fn upscale_kernel(args: &UpscaleArgs) -> Result<Kernel, Failure> {
    let Some(path) = &args.weights else {
        return generate(&args.kernel.params());
    };
    let kernel = load_weights(path)?;
    if let Some(s) = args.kernel.scale.filter(|&s| s != kernel.scale) {
        return Err(Failure::usage(format!(
            "--scale {s} contradicts the weights in {}, which are for scale {}; drop --scale",
            path.display(),
            kernel.scale
        )));
    }
    if let Some(k) = args.kernel.kernel_size.filter(|&k| k != kernel.kernel_size) {
        return Err(Failure::usage(format!(
            "--kernel-size {k} contradicts the weights in {}, which have kernel size {}; drop --kernel-size",
            path.display(),
            kernel.kernel_size
        )));
    }
    Ok(kernel)
}

fn upscale(args: &UpscaleArgs) -> Result<(), Failure> {
    let start = Instant::now();
    let kernel = upscale_kernel(args)?;
    let bytes =
        std::fs::read(&args.input).map_err(|e| Failure::other(format!("cannot read {}: {e}", args.input.display())))?;
    let limits = DecodeLimits {
        max_input_pixels: CLI_MAX_INPUT_PIXELS,
        max_output_pixels: CLI_MAX_OUTPUT_PIXELS,
        scale: kernel.scale,
    };
    let decoded =
        imageio::decode(&bytes, &limits).map_err(|e| Failure::other(format!("{}: {e}", args.input.display())))?;
    drop(bytes);
    let up = Upscaler::new(&kernel, Options::default());
    let stats = imageio::write_atomic(&args.output, |file| -> Result<_, imageio::ImageError> {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let stats = imageio::upscale_to_png(
            &mut out,
            &up,
            &decoded.image,
            decoded.icc_profile.as_deref(),
            args.compression,
            &|| false,
        )?;
        out.flush()?;
        Ok(stats)
    })
    .map_err(|e| Failure::other(format!("cannot write {}: {e}", args.output.display())))?;
    let elapsed = start.elapsed();
    println!(
        "{} -> {}: {}x{} -> {}x{} ({} {}-bit), scale {}, checkerboard score {:.6}, {:.1} ms",
        args.input.display(),
        args.output.display(),
        decoded.image.width,
        decoded.image.height,
        stats.width,
        stats.height,
        if stats.channels == 4 { "RGBA" } else { "RGB" },
        stats.bit_depth,
        kernel.scale,
        stats.score,
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}

fn kernel(args: &KernelArgs) -> Result<(), Failure> {
    let kernel = generate(&args.kernel.params())?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(kernel.to_json().as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::other(format!("cannot write to stdout: {e}")))
}

/// A deterministic, textured N x N RGB8 test image (smooth gradients plus a hash-like pattern).
pub fn bench_image(size: u32) -> Image {
    let n = size as usize;
    let mut samples = Vec::with_capacity(n * n * 3);
    for y in 0..n {
        for x in 0..n {
            let h = (x as u32).wrapping_mul(0x9E37_79B1) ^ (y as u32).wrapping_mul(0x85EB_CA77);
            samples.push(((x * 255) / n.max(1)) as u8 ^ (h >> 27) as u8);
            samples.push(((y * 255) / n.max(1)) as u8);
            samples.push((h >> 24) as u8);
        }
    }
    Image { width: size, height: size, channels: 3, samples: Samples::U8(samples) }
}

fn bench(args: &BenchArgs) -> Result<(), Failure> {
    let params = KernelParams {
        scale: args.scale,
        kernel_size: args.kernel_size,
        init: args.init.into(),
        ..KernelParams::default()
    };
    let kernel = generate(&params)?;
    let threads = match args.threads {
        Some(t) => t as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Failure::other(format!("cannot start {threads} threads: {e}")))?;
    let img = bench_image(args.size);
    let up = Upscaler::new(&kernel, Options::default());
    let discard = |_: crate::engine::OutRows<'_>| Ok::<(), std::convert::Infallible>(());
    let mut times_ms: Vec<f64> = pool.install(|| {
        let _ = up.upscale_streaming(&img, discard); // warm-up: page faults, caches, thread start
        (0..args.iters)
            .map(|_| {
                let t = Instant::now();
                let _ = up.upscale_streaming(&img, discard);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect()
    });
    times_ms.sort_by(f64::total_cmp);
    let median_ms = median(&times_ms);
    let gflops = up.flops(args.size, args.size) / (median_ms * 1e-3) / 1e9;
    let (min_ms, max_ms) = (times_ms[0], times_ms[times_ms.len() - 1]);
    println!(
        "{n}x{n} RGB8, r={r}, k={k}, init {init}, {threads} threads, path {path}{fast}: median {median_ms:.3} ms \
         (min {min_ms:.3}, max {max_ms:.3}), {gflops:.2} GFLOP/s (general-conv equivalent)",
        n = args.size,
        r = args.scale,
        k = args.kernel_size,
        init = args.init.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string()),
        path = up.path().name(),
        fast = if up.uses_fast_path() { " (ICNR fast path)" } else { "" },
    );
    let report = serde_json::json!({
        "median_ms": median_ms,
        "min_ms": min_ms,
        "max_ms": max_ms,
        "gflops": gflops,
        "path": up.path().name(),
        "fast_path": up.uses_fast_path(),
        "size": args.size,
        "scale": args.scale,
        "kernel_size": args.kernel_size,
        "init": args.init.to_possible_value().map(|v| v.get_name().to_string()),
        "threads": threads,
        "iters": args.iters,
    });
    println!("{report}");
    Ok(())
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Host, port and path of a plain `http://` URL (or a bare `host:port`).
fn parse_http_url(url: &str) -> Result<(String, u16, String), Failure> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(Failure::usage(format!("--url: only http:// is supported, got {scheme}://")));
        }
        None => url,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/healthz"),
    };
    let bad = || Failure::usage(format!("--url: expected http://HOST:PORT[/PATH], got `{url}`"));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse::<u16>().map_err(|_| bad())?),
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port, path.to_string()))
}

/// The default probe target: the service's bind address from the environment, reachable from this host.
fn default_health_url() -> String {
    let bind = std::env::var("ICNR_UPSCALE_BIND").unwrap_or_default();
    let bind = bind.trim();
    if bind.is_empty() {
        return "http://127.0.0.1:8080/healthz".to_string();
    }
    let target = match bind.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => SocketAddr::new(
            if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() },
            addr.port(),
        )
        .to_string(),
        _ => bind.to_string(),
    };
    format!("http://{target}/healthz")
}

fn healthcheck(args: &HealthcheckArgs) -> Result<(), Failure> {
    let url = args.url.clone().unwrap_or_else(default_health_url);
    let (host, port, path) = parse_http_url(&url)?;
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| Failure::other(format!("{url}: cannot resolve {host}: {e}")))?
        .collect();
    let mut last_err = None;
    let mut stream = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, HEALTHCHECK_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let mut stream = stream.ok_or_else(|| {
        Failure::other(format!("{url}: cannot connect: {}", last_err.map_or("no address".into(), |e| e.to_string())))
    })?;
    let io_err = |e: std::io::Error| Failure::other(format!("{url}: {e}"));
    stream.set_read_timeout(Some(HEALTHCHECK_TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(HEALTHCHECK_TIMEOUT)).map_err(io_err)?;
    let host_header = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: icnr-upscale-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io_err)?;
    // The status line is all we need; read a bounded prefix of the answer.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status_line = line.lines().next().unwrap_or("").trim();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .filter(|_| status_line.starts_with("HTTP/"))
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(200) => {
            println!("ok: {url} answered 200");
            Ok(())
        }
        Some(s) => Err(Failure::other(format!("{url} answered {s}"))),
        None => Err(Failure::other(format!("{url}: not an HTTP answer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_health_urls() {
        let p = |u: &str| parse_http_url(u).map_err(|f| f.message).unwrap();
        assert_eq!(p("http://127.0.0.1:9000/healthz"), ("127.0.0.1".into(), 9000, "/healthz".into()));
        assert_eq!(p("127.0.0.1:9000"), ("127.0.0.1".into(), 9000, "/healthz".into()));
        assert_eq!(p("http://localhost/x"), ("localhost".into(), 80, "/x".into()));
        assert_eq!(p("http://[::1]:8080/healthz"), ("::1".into(), 8080, "/healthz".into()));
        assert!(parse_http_url("https://x:1/").is_err());
        assert!(parse_http_url("http://:80/").is_err());
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&[1.0, 2.0, 3.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 3.0, 5.0]), 2.5);
    }
}
