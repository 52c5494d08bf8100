//! Prometheus metrics (`GET /metrics`).
//!
//! Each app instance owns its own `PrometheusRecorder` instead of installing a global one, so several servers in
//! one process (the integration tests) keep separate counts. Unlabelled metrics are registered once as handles;
//! labelled ones are recorded through `metrics::with_local_recorder`, which only lasts for the closure and so is
//! safe on any thread.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Counter: requests answered, labels `route` (the route template, or `unmatched`), `method`, `status`.
pub const HTTP_REQUESTS: &str = "icnr_upscale_http_requests_total";
/// Histogram: seconds from request start to response head, labels `route`, `method`.
pub const HTTP_DURATION: &str = "icnr_upscale_http_request_duration_seconds";
/// Gauge: jobs holding a job slot (running on the blocking pool).
pub const JOBS_RUNNING: &str = "icnr_upscale_jobs_running";
/// Gauge: admitted requests waiting for a job slot, including those still receiving their body.
pub const JOBS_QUEUED: &str = "icnr_upscale_jobs_queued";
/// Counter: requests shed with 503 because running + queued jobs were at capacity.
pub const REQUESTS_SHED: &str = "icnr_upscale_requests_shed_total";
/// Counter: pixels (width * height) of the images produced.
pub const OUTPUT_PIXELS: &str = "icnr_upscale_output_pixels_total";
/// Counter: jobs dropped because their request went away (client gone or timeout), label `stage`: `queued`
/// (never ran) or `running` (told to stop).
pub const JOBS_CANCELLED: &str = "icnr_upscale_jobs_cancelled_total";

/// Every metric name, for documentation and tests.
pub const ALL: &[&str] =
    &[HTTP_REQUESTS, HTTP_DURATION, JOBS_RUNNING, JOBS_QUEUED, REQUESTS_SHED, OUTPUT_PIXELS, JOBS_CANCELLED];

/// Latency buckets in seconds: from a cached healthz to a job near the default 30 s timeout.
const DURATION_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The metrics of one app instance. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    pub jobs_running: Gauge,
    pub jobs_queued: Gauge,
    pub requests_shed: Counter,
    pub output_pixels: Counter,
    pub cancelled_queued: Counter,
    pub cancelled_running: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), DURATION_BUCKETS)
            .expect("non-empty bucket list")
            .build_recorder();
        let handle = recorder.handle();
        let (jobs_running, jobs_queued, requests_shed, output_pixels, cancelled_queued, cancelled_running) =
            metrics::with_local_recorder(&recorder, || {
                metrics::describe_counter!(HTTP_REQUESTS, "Requests answered, by route, method and status.");
                metrics::describe_histogram!(
                    HTTP_DURATION,
                    metrics::Unit::Seconds,
                    "Request latency (start to response head), by route and method."
                );
                metrics::describe_gauge!(JOBS_RUNNING, "Jobs holding a job slot.");
                metrics::describe_gauge!(JOBS_QUEUED, "Admitted requests waiting for a job slot.");
                metrics::describe_counter!(REQUESTS_SHED, "Requests shed with 503 because the job queue was full.");
                metrics::describe_counter!(OUTPUT_PIXELS, "Pixels of the images produced.");
                metrics::describe_counter!(JOBS_CANCELLED, "Jobs dropped because their request went away.");
                let m = (
                    metrics::gauge!(JOBS_RUNNING),
                    metrics::gauge!(JOBS_QUEUED),
                    metrics::counter!(REQUESTS_SHED),
                    metrics::counter!(OUTPUT_PIXELS),
                    metrics::counter!(JOBS_CANCELLED, "stage" => "queued"),
                    metrics::counter!(JOBS_CANCELLED, "stage" => "running"),
                );
                // Register every series at zero so a fresh scrape already lists them.
                m.0.set(0.0);
                m.1.set(0.0);
                m.2.absolute(0);
                m.3.absolute(0);
                m.4.absolute(0);
                m.5.absolute(0);
                m
            });
        Metrics {
            recorder: Arc::new(recorder),
            handle,
            jobs_running,
            jobs_queued,
            requests_shed,
            output_pixels,
            cancelled_queued,
            cancelled_running,
        }
    }

    /// Counts one answered request and its latency.
    pub fn record_request(&self, route: &str, method: &str, status: u16, latency: Duration) {
        metrics::with_local_recorder(self.recorder.as_ref(), || {
            metrics::counter!(HTTP_REQUESTS, "route" => route.to_owned(), "method" => method.to_owned(),
                "status" => status.to_string())
            .increment(1);
            metrics::histogram!(HTTP_DURATION, "route" => route.to_owned(), "method" => method.to_owned())
                .record(latency.as_secs_f64());
        });
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; call periodically.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}
