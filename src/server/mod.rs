//! The HTTP service (axum 0.8 on tokio, tower-http layers).
//!
//! # Layout
//! - [`mod@self`]: [`ServeArgs`] (the `serve` flags), [`serve_blocking`] (the CLI entry point) and [`run`], which
//!   serves on a given listener until a given shutdown future completes, so tests can bind port 0 and stop the
//!   server without a signal (the mini-redis pattern).
//! - [`app`]: the router, the shared state and the outer middleware (request id, timeout, metrics, access log).
//! - [`handlers`]: one function per route.
//! - [`body`]: reading a request body under the byte limit, raw or multipart.
//! - [`query`]: strict query-string parsing (unknown, repeated and bad parameters are 400s).
//! - [`jobs`]: the bounded job pool: admission (queue) and job slots, cancellation.
//! - [`listener`]: the TCP listener whose connections close after a period without progress.
//! - [`error`]: [`ApiError`], the one error type, rendered as RFC 9457 `application/problem+json`.
//! - [`metrics`]: Prometheus metrics, one recorder per app instance.
//!
//! # Request life cycle of `POST /upscale`
//! 1. The query and the content type are checked (400, 415); a declared `Content-Length` over the limit is a 413.
//! 2. The request is admitted to the job pool, or shed at once with 503 + `Retry-After` when running + queued jobs
//!    are at capacity. An admitted request holds its place while its body arrives, so a slow upload occupies a
//!    queue place, never a CPU.
//! 3. The body is read under `--max-body-bytes` (413) and, for multipart, split into `image` and `kernel`.
//! 4. The job waits for one of `--max-concurrent-jobs` slots, then runs on tokio's blocking pool: kernel, decode
//!    (dimensions checked from the header first: 422), upscale, PNG encode into memory.
//! 5. The whole request runs under `--request-timeout-secs` (504). Whenever the client goes away or the timeout
//!    fires, the handler future is dropped: a queued job never starts, a running one is told to stop.

pub mod app;
pub mod body;
pub mod error;
pub mod handlers;
pub mod jobs;
pub mod listener;
pub mod metrics;
pub mod query;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use std::future::IntoFuture as _;

use anyhow::Context as _;
use clap::builder::TypedValueParser as _;

pub use app::{app, AppState, ROUTES};
pub use error::ApiError;
pub use query::{ALLOWED_KERNEL_PARAMS, ALLOWED_UPSCALE_PARAMS};

/// Format of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable `key=value` lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// `icnr-upscale serve` flags; each also reads `ICNR_UPSCALE_<FLAG>` from the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ICNR_UPSCALE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Largest request body in bytes (raw or multipart); larger bodies get 413.
    #[arg(long, env = "ICNR_UPSCALE_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=(isize::MAX as u64)))]
    pub max_body_bytes: u64,
    /// Largest input image in pixels (width * height), read from the header before decoding; larger gets 422.
    #[arg(long, env = "ICNR_UPSCALE_MAX_INPUT_PIXELS", default_value_t = 16_777_216,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_input_pixels: u64,
    /// Largest output image in pixels (width * height * scale^2); larger gets 422 before any work.
    #[arg(long, env = "ICNR_UPSCALE_MAX_OUTPUT_PIXELS", default_value_t = 67_108_864,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_output_pixels: u64,
    /// Time budget of a whole request (body upload, queue wait and job), in seconds; over it, 504.
    #[arg(long, env = "ICNR_UPSCALE_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub request_timeout_secs: u64,
    /// Jobs that run at the same time (CPU-bound upscales). Default: the number of CPUs.
    #[arg(long, env = "ICNR_UPSCALE_MAX_CONCURRENT_JOBS", default_value_t = default_jobs(),
          value_parser = clap::value_parser!(u64).range(1..=4096).map(|v| v as usize))]
    pub max_concurrent_jobs: usize,
    /// Requests that may wait for a job slot; beyond running + queued, requests are shed with 503.
    #[arg(long, env = "ICNR_UPSCALE_MAX_QUEUE", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000).map(|v| v as usize))]
    pub max_queue: usize,
    /// Log line format.
    #[arg(long, env = "ICNR_UPSCALE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Registers a trained model from a model file (JSON or .safetensors) under NAME; repeatable (the variable
    /// takes a comma-separated list). Each is validated at start: a bad file stops the service from starting.
    #[arg(long = "model", value_name = "NAME=FILE", env = "ICNR_UPSCALE_MODEL", value_delimiter = ',')]
    pub models: Vec<String>,
    /// CPU code path: auto (the best this CPU has), portable, avx2, avx512 or neon. A path this CPU
    /// lacks stops the service from starting.
    #[arg(long, env = "ICNR_UPSCALE_CPU", default_value = "auto")]
    pub cpu: String,
}

impl ServeArgs {
    /// The engine options of `--cpu`.
    pub fn engine_options(&self) -> anyhow::Result<crate::engine::Options> {
        crate::cpu::options_for(&self.cpu).map_err(|e| anyhow::anyhow!("--cpu / ICNR_UPSCALE_CPU: {e}"))
    }
}

impl Default for ServeArgs {
    /// The documented defaults (the same as `icnr-upscale serve` with no flags and no environment).
    fn default() -> Self {
        ServeArgs {
            bind: "127.0.0.1:8080".to_owned(),
            max_body_bytes: 32 * 1024 * 1024,
            max_input_pixels: 16_777_216,
            max_output_pixels: 67_108_864,
            request_timeout_secs: 30,
            max_concurrent_jobs: default_jobs(),
            max_queue: 64,
            log_format: LogFormat::Text,
            models: Vec::new(),
            cpu: "auto".to_owned(),
        }
    }
}

/// Starts the service and blocks until SIGTERM or Ctrl-C has drained it.
pub fn serve_blocking(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.bind)
            .await
            .with_context(|| format!("binding {} (--bind / ICNR_UPSCALE_BIND)", args.bind))?;
        run(args, listener, shutdown_signal()).await
    });
    // Jobs whose requests were dropped have been told to stop; do not wait long for them.
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets in-flight requests finish
/// (bounded by the request timeout plus a small margin, after which remaining connections are dropped) and
/// returns `Ok(())`.
pub async fn run(
    args: ServeArgs,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::try_new(&args)?;
    let addr: SocketAddr = listener.local_addr().context("reading the bound address")?;
    // Every request is bounded by the request timeout, so in-flight work is over by then; the margin covers
    // writing the last responses. The same period bounds a connection's silence.
    let grace = Duration::from_secs(args.request_timeout_secs) + Duration::from_secs(5);

    // Histograms accumulate samples until drained; drain them even if nobody scrapes /metrics.
    let upkeep = {
        let metrics = state.metrics().clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                metrics.run_upkeep();
            }
        })
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutdown requested: no new connections, finishing in-flight requests");
        let _ = stop_tx.send(());
    };
    // No request is silent for longer than the request timeout, so a connection silent for longer is dead or
    // hostile (see `listener`).
    let listener = listener::IdleTimeoutListener::new(listener, grace);
    tracing::info!(%addr, jobs = args.max_concurrent_jobs, queue = args.max_queue, "icnr-upscale listening");
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(signal).into_future();
    let deadline = async move {
        if stop_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        r = server => r.context("serving HTTP"),
        () = deadline => {
            tracing::warn!(grace_secs = grace.as_secs(), "grace period over: dropping the remaining connections");
            Ok(())
        }
    };
    upkeep.abort();
    tracing::info!("stopped");
    result
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Installs the global tracing subscriber on stdout (once; later calls are ignored). `RUST_LOG` overrides the
/// `info` level.
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use clap::{Args as _, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn every_flag_has_its_environment_variable() {
        let cmd = ServeArgs::augment_args(clap::Command::new("serve"));
        let mut flags = Vec::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(env, Some(format!("ICNR_UPSCALE_{}", long.replace('-', "_").to_uppercase())), "--{long}");
            flags.push(long.to_owned());
        }
        flags.sort();
        assert_eq!(
            flags,
            [
                "bind",
                "cpu",
                "log-format",
                "max-body-bytes",
                "max-concurrent-jobs",
                "max-input-pixels",
                "max-output-pixels",
                "max-queue",
                "model",
                "request-timeout-secs"
            ]
        );
    }

    #[test]
    fn flags_parse_and_bad_values_are_refused() {
        let args = Cli::try_parse_from([
            "serve",
            "--bind",
            "0.0.0.0:9",
            "--max-body-bytes",
            "10",
            "--max-input-pixels",
            "11",
            "--max-output-pixels",
            "12",
            "--request-timeout-secs",
            "13",
            "--max-concurrent-jobs",
            "3",
            "--max-queue",
            "0",
            "--log-format",
            "json",
        ])
        .unwrap()
        .serve;
        assert_eq!(args.bind, "0.0.0.0:9");
        assert_eq!(
            (args.max_body_bytes, args.max_input_pixels, args.max_output_pixels, args.request_timeout_secs),
            (10, 11, 12, 13)
        );
        assert_eq!((args.max_concurrent_jobs, args.max_queue, args.log_format), (3, 0, LogFormat::Json));
        for bad in [
            ["--max-concurrent-jobs", "0"],
            ["--request-timeout-secs", "0"],
            ["--max-body-bytes", "-1"],
            ["--log-format", "xml"],
            ["--max-queue", "many"],
        ] {
            assert!(Cli::try_parse_from(["serve", bad[0], bad[1]]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_matches_the_documented_defaults() {
        let d = ServeArgs::default();
        assert_eq!(d.bind, "127.0.0.1:8080");
        assert_eq!(d.max_body_bytes, 33_554_432);
        assert_eq!((d.max_input_pixels, d.max_output_pixels), (16_777_216, 67_108_864));
        assert_eq!((d.request_timeout_secs, d.max_queue, d.log_format), (30, 64, LogFormat::Text));
        assert!(d.max_concurrent_jobs >= 1);
    }
}
