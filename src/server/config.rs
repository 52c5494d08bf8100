//! The `serve` flags ([`ServeArgs`]): each has an `ICNR_UPSCALE_*` variable, and the documented defaults.

use clap::builder::TypedValueParser as _;

use crate::logging::LogFormat;

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
    /// CPU code path: auto (the best this CPU has), avx512, avx512-novbmi (AVX-512 with VBMI off), avx2, neon or
    /// portable. A path this CPU lacks stops the service from starting.
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
