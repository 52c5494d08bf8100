//! The HTTP service (axum 0.8 on tokio).
//!
//! INTERFACE STUB: `ServeArgs` and `serve_blocking` are what the CLI calls.

/// `icnr-upscale serve` flags; each also reads `ICNR_UPSCALE_<FLAG>` from the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ICNR_UPSCALE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
}

/// Starts the service and blocks until SIGTERM or Ctrl-C has drained it.
pub fn serve_blocking(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("the HTTP service is not built yet")
}
