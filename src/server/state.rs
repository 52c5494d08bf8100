//! [`AppState`]: what every handler of one app instance shares (the limits, the job pool, the metrics and the
//! model registry), and the job dimensions handlers put on responses.

use std::sync::Arc;
use std::time::Duration;

use super::config::ServeArgs;
use super::jobs::JobPool;
use super::metrics::Metrics;
use crate::model::{Model, ModelLimits};
use crate::pipeline::Registry;

/// The limits a request is checked against, parsed from [`ServeArgs`].
#[derive(Debug, Clone)]
pub struct Config {
    pub max_body_bytes: u64,
    pub max_input_pixels: u64,
    pub max_output_pixels: u64,
    pub request_timeout: Duration,
}

/// Input and output dimensions of a finished job, put on the response for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobDims {
    pub input: (u32, u32),
    pub output: (u32, u32),
}

#[derive(Debug)]
struct Shared {
    config: Config,
    jobs: JobPool,
    metrics: Metrics,
    /// The models this instance serves: the built-in ones plus `--model NAME=FILE`.
    registry: Arc<Registry>,
}

/// State shared by every handler of one app instance. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state for `args`. Panics if a `--model` file is invalid; [`AppState::try_new`] reports it instead.
    pub fn new(args: &ServeArgs) -> AppState {
        AppState::try_new(args).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The state for `args`; fails when a `--model NAME=FILE` cannot be read or is not a valid model, or the
    /// requested CPU path is not available.
    pub fn try_new(args: &ServeArgs) -> anyhow::Result<AppState> {
        let mut registry = Registry::builtin(args.engine_options()?);
        for spec in &args.models {
            let (name, file) = spec
                .split_once('=')
                .filter(|(n, f)| !n.is_empty() && !f.is_empty())
                .ok_or_else(|| anyhow::anyhow!("--model {spec:?}: expected NAME=FILE"))?;
            let model = Model::load_file(file, &ModelLimits::default())
                .map_err(|e| anyhow::anyhow!("--model {name}={file}: {e}"))?;
            registry.register(name, model).map_err(|e| anyhow::anyhow!("--model {name}={file}: {e}"))?;
        }
        let metrics = Metrics::new();
        let config = Config {
            max_body_bytes: args.max_body_bytes,
            max_input_pixels: args.max_input_pixels,
            max_output_pixels: args.max_output_pixels,
            request_timeout: Duration::from_secs(args.request_timeout_secs),
        };
        let jobs = JobPool::new(args.max_concurrent_jobs, args.max_queue, metrics.clone());
        Ok(AppState(Arc::new(Shared { config, jobs, metrics, registry: Arc::new(registry) })))
    }
    pub fn config(&self) -> &Config {
        &self.0.config
    }
    pub fn jobs(&self) -> &JobPool {
        &self.0.jobs
    }
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
    pub fn registry(&self) -> &Arc<Registry> {
        &self.0.registry
    }
}
