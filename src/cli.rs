//! The `icnr-upscale` command line: `serve` (the default; with the `server` feature), `upscale`, `batch`, `models`,
//! `kernel`, `bench` and `healthcheck`. Commands are thin adapters over [`crate::pipeline`].
//!
//! Exit codes: 0 success, 1 failure (unreadable input, undecodable image, bad weights, I/O; for `batch`, any file
//! failed), 2 usage errors (bad flags or values, as clap reports them, unknown models, a CPU path this machine
//! lacks, and flags that contradict `--weights` or `--model`).

use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::batch;
use crate::engine::{Image, Options, Samples, Upscaler};
use crate::imageio::{self, Compression, ImageError};
use crate::kernel::{self, Init, Initializer, Kernel, KernelParams, MAX_KERNEL_SIZE, MAX_SCALE, MIN_SCALE};
use crate::logging::{self, LogFormat, LogTarget};
use crate::model::ModelLimits;
use crate::names::Named;
use crate::pipeline::{self, ModelKind, ModelRequest, PipelineError, Registry, Resolved, RunLimits, Weights};
#[cfg(feature = "server")]
use crate::server::{self, ServeArgs};

/// Largest input the CLI decodes: 2^28 pixels (16384 x 16384). Generous for local files, but still a bound.
const CLI_MAX_INPUT_PIXELS: u64 = 1 << 28;
/// Largest output the CLI writes: 2^30 pixels (32768 x 32768).
const CLI_MAX_OUTPUT_PIXELS: u64 = 1 << 30;
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
#[cfg_attr(
    not(feature = "server"),
    command(
        long_about = "Sub-pixel convolution (Conv2d + PixelShuffle) image upscaling with ICNR-initialised kernels.\n\n\
                      This build has no HTTP service (the `server` feature).",
        subcommand_required = true,
        arg_required_else_help = true
    )
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (the default when no subcommand is given).
    #[cfg(feature = "server")]
    Serve(ServeArgs),
    /// Upscale an image file and write a PNG.
    Upscale(UpscaleArgs),
    /// Upscale files and folders into --out-dir, in parallel, with progress.
    Batch(BatchArgs),
    /// List the models (a table, or --json as GET /models), or print one trained model's JSON.
    Models(ModelsArgs),
    /// Print the kernel JSON for the given parameters (the same bytes as `GET /kernel`).
    Kernel(KernelArgs),
    /// Time the core on an in-memory N x N RGB8 image (no codecs); the last line is JSON.
    Bench(BenchArgs),
    /// Probe a running service's /healthz; exit 0 when it answers 200, else 1.
    Healthcheck(HealthcheckArgs),
}

/// A parser that accepts exactly the names of `values` (one enum's spelling table) and gives the value; `--help`
/// lists the names, with each value's doc comment.
fn one_of<T: Named>(values: &'static [T]) -> impl TypedValueParser<Value = T> {
    let possible = values.iter().map(|v| match v.help() {
        "" => PossibleValue::new(v.name()),
        help => PossibleValue::new(v.name()).help(help),
    });
    PossibleValuesParser::new(possible.collect::<Vec<_>>())
        .map(move |s| *values.iter().find(|v| v.name() == s).expect("clap only passes a listed name"))
}

fn parse_scale(s: &str) -> Result<u32, String> {
    let v: u32 = s.parse().map_err(|_| format!("`{s}` is not a whole number"))?;
    if kernel::is_valid_scale(v) {
        Ok(v)
    } else {
        Err(format!("the scale must be {MIN_SCALE} to {MAX_SCALE}, got {v}"))
    }
}

fn parse_kernel_size(s: &str) -> Result<u32, String> {
    let v: u32 = s.parse().map_err(|_| format!("`{s}` is not a whole number"))?;
    if kernel::is_valid_kernel_size(v) {
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
    #[arg(long, value_parser = one_of(&Init::GENERATED))]
    init: Option<Init>,
    /// Initializer of the (sub-)kernel [default: kaiming_normal]
    #[arg(long, value_parser = one_of(Initializer::ALL))]
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
            init: self.init.unwrap_or(d.init),
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
    #[command(flatten)]
    select: SelectArgs,
    /// PNG compression.
    #[arg(long, value_parser = one_of(Compression::ALL), default_value_t = Compression::Fast)]
    compression: Compression,
}

/// Flags that pick the model besides the generated-kernel ones, shared by `upscale` and `batch`.
#[derive(Debug, Clone, Args)]
struct SelectArgs {
    /// A model name (`icnr-upscale models` lists them) or a model file (JSON or .safetensors). Without it: the
    /// default trained model for --scale, or the generated kernel when --init, --initializer, --seed or
    /// --kernel-size is given.
    #[arg(long, value_name = "NAME|FILE", conflicts_with = "weights")]
    model: Option<String>,
    /// Kernel weights instead of generating them: kernel JSON (as `kernel` prints) or `.safetensors`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["init", "initializer", "seed"])]
    weights: Option<PathBuf>,
    /// CPU code path: auto, avx512, avx512-novbmi (AVX-512 with VBMI off), avx2, neon or portable (a path this CPU
    /// lacks is an error).
    #[arg(long, env = "ICNR_UPSCALE_CPU", default_value = "auto")]
    cpu: String,
}

#[derive(Debug, Args)]
struct BatchArgs {
    /// Input files and directories (walked recursively for png, jpg, jpeg, webp, gif, bmp, tif, tiff).
    #[arg(value_name = "INPUT", required = true)]
    inputs: Vec<PathBuf>,
    /// Where outputs go, at each input's relative path with the extension replaced by .png.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    #[command(flatten)]
    kernel: GenArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// PNG compression.
    #[arg(long, value_parser = one_of(Compression::ALL), default_value_t = Compression::Fast)]
    compression: Compression,
    /// Files processed at the same time [default: the number of CPUs, at most 4]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    jobs: Option<u32>,
    /// Memory budget in MiB for the files in flight (estimated from each image's header); a file over the budget
    /// runs alone.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(64..=1_048_576))]
    memory_mb: u64,
    /// Process only shard I of N (I from 0): a stable, disjoint part of the inputs, decided by relative path.
    #[arg(long, value_name = "I/N")]
    shard: Option<crate::batch::Shard>,
    /// Replace outputs that exist (otherwise they are skipped and reported).
    #[arg(long)]
    overwrite: bool,
    /// Progress bar on stderr: auto (when stderr is a terminal), always or never.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    progress: Progress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Progress {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
struct ModelsArgs {
    /// Print this trained model's JSON (the same bytes as GET /models/{name}).
    name: Option<String>,
    /// Print the listing as JSON (the same document as GET /models).
    #[arg(long, conflicts_with = "name")]
    json: bool,
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
    #[arg(long, value_parser = one_of(&Init::GENERATED), default_value_t = Init::Icnr)]
    init: Init,
    /// Time a model instead of a generated kernel: a model name (`icnr-upscale models`) or a model file; --scale,
    /// --kernel-size and --init then do not apply.
    #[arg(long, value_name = "NAME|FILE")]
    model: Option<String>,
    /// CPU code path: auto, avx512, avx512-novbmi (AVX-512 with VBMI off), avx2, neon or portable (a path this CPU
    /// lacks is an error).
    #[arg(long, env = "ICNR_UPSCALE_CPU", default_value = "auto")]
    cpu: String,
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
        None => match default_command() {
            Ok(c) => c,
            Err(code) => return code,
        },
    };
    if !is_serve(&command) {
        // Warnings and up on stderr unless `RUST_LOG` says otherwise; the service sets up its own.
        logging::init(LogFormat::Text, LogTarget::Stderr, "warn");
    }
    let result = match command {
        #[cfg(feature = "server")]
        Command::Serve(args) => server::serve_blocking(args).map_err(|e| Failure::other(format!("{e:#}"))),
        Command::Upscale(args) => upscale(&args),
        Command::Batch(args) => batch(&args),
        Command::Models(args) => models(&args),
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

/// The command run when none is given: serve, configured from the environment (and defaults).
#[cfg(feature = "server")]
fn default_command() -> Result<Command, i32> {
    match Cli::try_parse_from(["icnr-upscale", "serve"]) {
        Ok(Cli { command: Some(c) }) => Ok(c),
        Ok(_) => unreachable!("`serve` parses as the serve subcommand"),
        Err(e) => {
            let _ = e.print();
            Err(2)
        }
    }
}

/// Without the service there is no default command; clap already asked for one (`subcommand_required`).
#[cfg(not(feature = "server"))]
fn default_command() -> Result<Command, i32> {
    Err(2)
}

fn is_serve(command: &Command) -> bool {
    #[cfg(feature = "server")]
    if matches!(command, Command::Serve(_)) {
        return true;
    }
    let _ = command;
    false
}

fn generate(params: &KernelParams) -> Result<Kernel, Failure> {
    Kernel::generate(params).map_err(|e| Failure::usage(e.to_string()))
}

/// Reads a file the user named, bounded (weights and model files are small).
fn read_small(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    let limit = ModelLimits::default().max_bytes as u64;
    let file = std::fs::File::open(path).map_err(|e| Failure::other(format!("cannot read {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, limit + 1), &mut bytes)
        .map_err(|e| Failure::other(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() as u64 > limit {
        return Err(Failure::other(format!("bad {what}: {}: over the limit of {limit} bytes", path.display())));
    }
    Ok(bytes)
}

/// Whether a `--model` value names a file rather than a model.
fn is_model_file(value: &str) -> bool {
    let p = Path::new(value);
    p.is_file() || value.ends_with(".json") || value.ends_with(".safetensors") || value.contains('/')
}

/// The CLI's reading of a pipeline error: usage (2) or failure (1).
fn pipeline_failure(e: PipelineError, context: &str) -> Failure {
    match e {
        PipelineError::BadRequest(m) | PipelineError::UnknownModel(m) => Failure::usage(m),
        // The pipeline speaks of query parameters; on the command line they are flags.
        PipelineError::KernelContradiction(m) => Failure::usage(
            m.replace("scale=", "--scale ")
                .replace("kernel_size=", "--kernel-size ")
                .replace("`scale`", "--scale")
                .replace("`kernel_size`", "--kernel-size"),
        ),
        PipelineError::BadModel(e) => Failure::other(format!("bad model: {context}{e}")),
        PipelineError::BadKernel(m) => Failure::other(format!("bad weights: {context}{m}")),
        other => Failure::other(format!("{context}{other}")),
    }
}

/// Resolves the model of `upscale` / `batch` through the pipeline's one set of rules.
fn resolve_model(gen: &GenArgs, select: &SelectArgs) -> Result<Resolved, Failure> {
    let opts = crate::cpu::options_for(&select.cpu).map_err(|e| Failure::usage(format!("--cpu: {e}")))?;
    let registry = Registry::builtin(opts);
    let mut req = ModelRequest {
        model: None,
        scale: gen.scale,
        kernel_size: gen.kernel_size,
        init: gen.init,
        initializer: gen.initializer,
        seed: gen.seed,
    };
    let (bytes, is_model, path) = match (&select.model, &select.weights) {
        (Some(m), _) if is_model_file(m) => (Some(read_small(Path::new(m), "model")?), true, m.clone()),
        (Some(m), _) => {
            req.model = Some(m.clone());
            (None, false, String::new())
        }
        (None, Some(w)) => (Some(read_small(w, "weights")?), false, w.display().to_string()),
        (None, None) => (None, false, String::new()),
    };
    let weights = bytes.as_deref().map(|b| if is_model { Weights::Model(b) } else { Weights::Kernel(b) });
    let context = if path.is_empty() { String::new() } else { format!("{path}: ") };
    registry.resolve(&req, weights, &ModelLimits::default()).map_err(|e| pipeline_failure(e, &context))
}

const CLI_LIMITS: RunLimits =
    RunLimits { max_input_pixels: CLI_MAX_INPUT_PIXELS, max_output_pixels: CLI_MAX_OUTPUT_PIXELS };

/// Upscales one file into `output` atomically.
fn upscale_file(
    input: &Path,
    output: &Path,
    model: &Resolved,
    compression: Compression,
) -> Result<pipeline::Outcome, String> {
    let bytes = std::fs::read(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    imageio::write_atomic(output, |file| -> Result<_, PipelineError> {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let outcome = pipeline::run(bytes, model, &CLI_LIMITS, compression, &mut out, &|| false)?;
        out.flush().map_err(ImageError::from)?;
        Ok(outcome)
    })
    .map_err(|e| match e {
        PipelineError::Image(ImageError::Io(e)) => format!("cannot write {}: {e}", output.display()),
        other => other.to_string(),
    })
}

fn upscale(args: &UpscaleArgs) -> Result<(), Failure> {
    let start = Instant::now();
    let model = resolve_model(&args.kernel, &args.select)?;
    let outcome = upscale_file(&args.input, &args.output, &model, args.compression)
        .map_err(|e| Failure::other(format!("{}: {e}", args.input.display())))?;
    let stats = outcome.stats;
    let elapsed = start.elapsed();
    println!(
        "{} -> {}: {}x{} -> {}x{} ({} {}-bit), model {}, scale {}, checkerboard score {:.6}, {:.1} ms",
        args.input.display(),
        args.output.display(),
        outcome.input.0,
        outcome.input.1,
        stats.width,
        stats.height,
        if stats.channels == 4 { "RGBA" } else { "RGB" },
        stats.bit_depth,
        model.name(),
        model.scale(),
        stats.score,
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}

fn models(args: &ModelsArgs) -> Result<(), Failure> {
    let registry = Registry::builtin(Options::default());
    let text = match &args.name {
        Some(name) => match registry.trained(name) {
            Some(m) => m.to_json(),
            None => {
                return Err(Failure::usage(format!(
                    "no trained model is called {name:?}; trained models: {}",
                    registry
                        .list()
                        .into_iter()
                        .filter(|m| m.kind == ModelKind::Trained)
                        .map(|m| m.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        },
        None if args.json => registry.list_json(),
        None => {
            let mut t = format!(
                "{:<14} {:<9} {:>5} {:>7} {:>10} {:>8}  {}\n",
                "NAME", "KIND", "SCALE", "DEFAULT", "PARAMETERS", "MACS/PX", "DESCRIPTION"
            );
            let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            for m in registry.list() {
                t.push_str(&format!(
                    "{:<14} {:<9} {:>5} {:>7} {:>10} {:>8}  {}\n",
                    m.name,
                    m.kind.name(),
                    m.scale.map_or_else(|| "any".to_string(), |s| s.to_string()),
                    if m.default { "yes" } else { "" },
                    opt(m.parameters),
                    opt(m.macs_per_pixel),
                    m.description
                ));
            }
            t
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::other(format!("cannot write to stdout: {e}")))
}

/// What happened to one batch item.
enum ItemResult {
    Done,
    Skipped,
    Failed(String),
}

fn batch(args: &BatchArgs) -> Result<(), Failure> {
    use std::io::IsTerminal;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};

    let start = Instant::now();
    let model = resolve_model(&args.kernel, &args.select)?;
    let items = batch::discover(&args.inputs, &args.out_dir).map_err(Failure::usage)?;
    let items: Vec<batch::Item> = match args.shard {
        Some(s) => items.into_iter().filter(|it| batch::shard_of(&it.relative, s.count) == s.index).collect(),
        None => items,
    };
    let show = match args.progress {
        Progress::Always => true,
        Progress::Never => false,
        Progress::Auto => std::io::stderr().is_terminal(),
    };
    let bar = if show {
        let bar = indicatif::ProgressBar::new(items.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} files  {per_sec}  ETA {eta}  {elapsed} elapsed  {wide_msg}",
            )
            .expect("the template is valid"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = |line: String| {
        if show {
            bar.println(line);
        } else {
            eprintln!("{line}");
        }
    };
    let jobs =
        args.jobs.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(4), |j| j as usize);
    let budget = args.memory_mb << 20;
    // Memory in flight, guarded; a file is admitted when it fits, or when nothing else runs.
    let in_flight = Mutex::new(0u64);
    let freed = Condvar::new();
    let next = AtomicUsize::new(0);
    let (done, skipped, failed) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    let run_one = |it: &batch::Item| -> ItemResult {
        if let Some(c) = &it.conflict {
            return ItemResult::Failed(c.clone());
        }
        if !args.overwrite && it.output.exists() {
            return ItemResult::Skipped;
        }
        if let Some(dir) = it.output.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return ItemResult::Failed(format!("cannot create {}: {e}", dir.display()));
            }
        }
        let need = batch::estimate_bytes(&it.input).min(budget);
        {
            let mut used = in_flight.lock().unwrap_or_else(|e| e.into_inner());
            while *used > 0 && *used + need > budget {
                used = freed.wait(used).unwrap_or_else(|e| e.into_inner());
            }
            *used += need;
        }
        let result = upscale_file(&it.input, &it.output, &model, args.compression);
        *in_flight.lock().unwrap_or_else(|e| e.into_inner()) -= need;
        freed.notify_all();
        match result {
            Ok(_) => ItemResult::Done,
            Err(e) => ItemResult::Failed(e),
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(items.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(it) = items.get(i) else { break };
                match run_one(it) {
                    ItemResult::Done => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    ItemResult::Skipped => {
                        skipped.fetch_add(1, Ordering::Relaxed);
                        report(format!(
                            "skipped: {} ({} exists; --overwrite replaces it)",
                            it.input.display(),
                            it.output.display()
                        ));
                    }
                    ItemResult::Failed(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        report(format!("failed: {}: {e}", it.input.display()));
                    }
                }
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let (done, skipped, failed) = (done.into_inner(), skipped.into_inner(), failed.into_inner());
    println!(
        "batch: {done} succeeded, {failed} failed, {skipped} skipped, {:.1} s (model {}, scale {})",
        start.elapsed().as_secs_f64(),
        model.name(),
        model.scale()
    );
    if failed > 0 {
        return Err(Failure { code: 1, message: format!("{failed} of {} files failed", items.len()) });
    }
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
fn bench_image(size: u32) -> Image {
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
    let opts = crate::cpu::options_for(&args.cpu).map_err(|e| Failure::usage(format!("--cpu: {e}")))?;
    let (up, model_name) = match &args.model {
        Some(m) => {
            let registry = Registry::builtin(opts);
            let (req, bytes) = if is_model_file(m) {
                (ModelRequest::default(), Some(read_small(Path::new(m), "model")?))
            } else {
                (ModelRequest { model: Some(m.clone()), ..ModelRequest::default() }, None)
            };
            let resolved = registry
                .resolve(&req, bytes.as_deref().map(Weights::Model), &ModelLimits::default())
                .map_err(|e| pipeline_failure(e, ""))?;
            let up = resolved
                .upscaler()
                .cloned()
                .ok_or_else(|| Failure::usage(format!("--model {m}: a baseline does not run on the engine")))?;
            (up, Some(resolved.name().to_string()))
        }
        None => {
            let params = KernelParams {
                scale: args.scale,
                kernel_size: args.kernel_size,
                init: args.init,
                ..KernelParams::default()
            };
            (Upscaler::from_kernel(&generate(&params)?, opts).map_err(|e| Failure::usage(e.to_string()))?, None)
        }
    };
    let threads = match args.threads {
        Some(t) => t as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Failure::other(format!("cannot start {threads} threads: {e}")))?;
    let img = bench_image(args.size);
    let scale = up.scale();
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
        "{n}x{n} RGB8, r={r}, {what}, {threads} threads, path {path}{fast}: median {median_ms:.3} ms \
         (min {min_ms:.3}, max {max_ms:.3}), {gflops:.2} GFLOP/s (general-conv equivalent)",
        n = args.size,
        r = scale,
        what = match &model_name {
            Some(m) => format!("model {m}"),
            None => format!("k={}, init {}", args.kernel_size, args.init),
        },
        path = up.path_name(),
        fast = if up.uses_fast_path() { " (ICNR fast path)" } else { "" },
    );
    let report = serde_json::json!({
        "median_ms": median_ms,
        "min_ms": min_ms,
        "max_ms": max_ms,
        "gflops": gflops,
        "path": up.path_name(),
        "fast_path": up.uses_fast_path(),
        "size": args.size,
        "scale": scale,
        "kernel_size": model_name.is_none().then_some(args.kernel_size),
        "init": model_name.is_none().then_some(args.init.name()),
        "model": model_name,
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
