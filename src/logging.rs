//! The one tracing setup, for the service and the command line alike: [`init`] installs the global subscriber.

/// Format of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable `key=value` lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogTarget {
    /// Standard output (the service: its log is its output).
    #[cfg(feature = "server")]
    Stdout,
    /// Standard error (the command line: stdout carries results).
    #[cfg(feature = "cli")]
    Stderr,
}

/// Installs the global tracing subscriber (once; later calls are ignored). `RUST_LOG` overrides `default_level`.
pub(crate) fn init(format: LogFormat, target: LogTarget, default_level: &str) {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let writer = match target {
        #[cfg(feature = "server")]
        LogTarget::Stdout => BoxMakeWriter::new(std::io::stdout),
        #[cfg(feature = "cli")]
        LogTarget::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
}
