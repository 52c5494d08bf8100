//! The HTTP service (axum 0.8 on tokio, tower-http layers).
//!
//! # Layout
//! The modules import each other in one direction only, leaves first:
//! - `routes`: the (method, path) list the router serves.
//! - `metrics`: Prometheus metrics, one recorder per app instance.
//! - `jobs`: the bounded job pool: admission (queue) and job slots, cancellation.
//! - `error`: [`ApiError`], the one error type, rendered as RFC 9457 `application/problem+json`.
//! - [`query`]: strict query-string parsing (unknown, repeated and bad parameters are 400s).
//! - `body`: reading a request body under the byte limit, raw or multipart.
//! - `config`: [`ServeArgs`], the `serve` flags and their `ICNR_UPSCALE_*` variables.
//! - `state`: [`AppState`], what every handler shares (limits, job pool, metrics, model registry).
//! - `handlers`: one function per route; `POST /upscale` is a thin adapter over [`crate::pipeline`].
//! - `app`: the router and the outer middleware (request id, timeout, metrics, access log).
//! - `listener`: the TCP listener whose connections close after a period without progress.
//! - this module: [`serve_blocking`] (the CLI entry point) and [`run`], which serves on a given listener until a
//!   given shutdown future completes, so tests can bind port 0 and stop the server without a signal (the
//!   mini-redis pattern).
//!
//! # Request life cycle of `POST /upscale`
//! 1. The query and the content type are checked (400, 415); a declared `Content-Length` over the limit is a 413.
//! 2. The request is admitted to the job pool, or shed at once with 503 + `Retry-After` when running + queued jobs
//!    are at capacity. An admitted request holds its place while its body arrives, so a slow upload occupies a
//!    queue place, never a CPU.
//! 3. The body is read under `--max-body-bytes` (413) and, for multipart, split into `image` and `kernel` or
//!    `model`.
//! 4. The job waits for one of `--max-concurrent-jobs` slots, then runs on tokio's blocking pool: the pipeline
//!    resolves the model, decodes (dimensions checked from the header first: 422), upscales and encodes the PNG
//!    into memory.
//! 5. The whole request runs under `--request-timeout-secs` (504). Whenever the client goes away or the timeout
//!    fires, the handler future is dropped: a queued job never starts, a running one is told to stop.

mod app;
mod body;
mod config;
mod error;
mod handlers;
mod jobs;
mod listener;
pub mod metrics;
pub mod query;
mod routes;
mod state;

use std::future::Future;
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;

use crate::logging::{self, LogTarget};

pub use crate::logging::LogFormat;
pub use app::app;
pub use config::ServeArgs;
pub use error::{ApiError, Problem};
pub use query::{ALLOWED_KERNEL_PARAMS, ALLOWED_UPSCALE_PARAMS};
pub use routes::ROUTES;
pub use state::AppState;

/// Starts the service and blocks until SIGTERM or Ctrl-C has drained it.
pub fn serve_blocking(args: ServeArgs) -> anyhow::Result<()> {
    logging::init(args.log_format, LogTarget::Stdout, "info");
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
