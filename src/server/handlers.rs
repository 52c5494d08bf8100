//! One function per route. Handlers stay thin: parsing lives in [`super::query`] and [`super::body`], CPU work
//! runs in [`upscale_job`] on the job pool.

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::imageio::ImageError;
use crate::kernel::{Kernel, KernelParams};
use crate::model::ModelLimits;
use crate::pipeline::{self, ModelKind, PipelineError, Registry, RunLimits, Weights};

use super::body::{self, BodyKind, Upload};
use super::error::ApiError;
use super::jobs::{CancelFlag, JobError};
use super::query::{self, UpscaleQuery};
use super::state::{AppState, Config, JobDims};

/// Response header carrying the checkerboard score of the output.
pub const X_CHECKERBOARD_SCORE: &str = "x-checkerboard-score";
/// Response header naming the model that ran.
pub const X_MODEL: &str = "x-model";

/// `GET /healthz`.
pub async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#).into_response()
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics().render()).into_response()
}

/// The committed OpenAPI document, served as is.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// `GET /openapi.yaml`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML).into_response()
}

/// Fallback for unknown paths: 404 problem.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Fallback for known paths with another method: 405 problem (axum adds `Allow`).
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// `GET /kernel`: the kernel JSON for the query's parameters, byte for byte what `icnr-upscale kernel` prints.
pub async fn kernel(RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let params = query::parse_kernel(raw.as_deref())?.params();
    // Generating is cheap (at most 192*3*9*9 weights) but it is CPU work all the same.
    let json = tokio::task::spawn_blocking(move || generate(&params).map(|k| k.to_json()))
        .await
        .map_err(|e| ApiError::Internal(format!("kernel task: {e}")))??;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// The comparison page (`GET /`), served from the binary.
pub const PAGE_HTML: &str = include_str!("page.html");

/// `GET /`: the comparison page.
pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE_HTML).into_response()
}

/// `GET /models`: every model this instance serves.
pub async fn models(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], state.registry().list_json()).into_response()
}

/// `GET /models/{name}`: the model JSON of a trained model; 404 for anything else.
pub async fn model(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let registry = state.registry().clone();
    let Some(model) = registry.trained(&name) else {
        let trained: Vec<String> =
            registry.list().into_iter().filter(|m| m.kind == ModelKind::Trained).map(|m| m.name).collect();
        return Err(ApiError::NoSuchModel(format!(
            "no trained model is called {}; trained models: {} (baselines and init have no weights)",
            query::quote(&name),
            trained.join(", ")
        )));
    };
    let json = model.to_json();
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// `POST /upscale`: see the life cycle in the module doc of [`super`].
pub async fn upscale(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let cfg = state.config().clone();
    let (parts, body) = req.into_parts();
    let checked = (|| {
        let q = query::parse_upscale(parts.uri.query())?;
        let kind = body::body_kind(&parts.headers)?;
        body::check_declared_length(&parts.headers, cfg.max_body_bytes)?;
        let ticket = state.jobs().try_admit().map_err(|_| ApiError::Overloaded)?;
        Ok::<_, ApiError>((q, kind, ticket))
    })();
    let (q, kind, ticket) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            // Answering before the body is read would make hyper close the connection with the body unread,
            // and the client, still sending, could see a reset instead of our answer. Read it away first
            // (bounded in bytes and time; a body declared over the limit is not worth reading).
            let drained = !matches!(e, ApiError::PayloadTooLarge { .. })
                && body::discard(body, cfg.max_body_bytes, body::DISCARD_TIME).await;
            let mut res = e.into_response();
            if !drained {
                // The rest of the body is still on the wire: this connection cannot carry another request.
                res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return Ok(res);
        }
    };
    let bytes = body::read_limited(&parts.headers, body, cfg.max_body_bytes).await?;
    let upload = match kind {
        BodyKind::Raw => Upload { image: bytes, kernel: None, model: None },
        BodyKind::Multipart => body::split_multipart(parts, bytes).await?,
    };

    let registry = state.registry().clone();
    let out = ticket
        .run(move |cancel| upscale_job(&cfg, &registry, &q, upload, cancel))
        .await
        .map_err(|JobError::Panicked(msg)| ApiError::Internal(format!("upscale job panicked: {msg}")))??;

    state.metrics().output_pixels.increment(u64::from(out.dims.output.0) * u64::from(out.dims.output.1));
    let mut res = Response::new(Body::from(out.png));
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    if let Ok(v) = HeaderValue::from_str(&out.score.to_string()) {
        headers.insert(X_CHECKERBOARD_SCORE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&out.model) {
        headers.insert(X_MODEL, v);
    }
    *res.status_mut() = StatusCode::OK;
    res.extensions_mut().insert(out.dims);
    Ok(res)
}

/// What a finished upscale job hands back.
#[derive(Debug)]
pub struct JobOutput {
    pub png: Vec<u8>,
    pub score: f64,
    pub dims: JobDims,
    /// The name of the model that ran (`X-Model`).
    pub model: String,
}

/// The CPU part of `POST /upscale`, run on the blocking pool: resolve the model, then the pipeline (decode with
/// header limits first, upscale, PNG encode into memory). Polls `cancel` between bands.
pub fn upscale_job(
    cfg: &Config,
    registry: &Registry,
    q: &UpscaleQuery,
    upload: Upload,
    cancel: &CancelFlag,
) -> Result<JobOutput, ApiError> {
    let weights = match (&upload.kernel, &upload.model) {
        (Some(k), _) => Some(Weights::Kernel(k)),
        (None, Some(m)) => Some(Weights::Model(m)),
        (None, None) => None,
    };
    let resolved = registry.resolve(&q.model_request(), weights, &ModelLimits::default())?;
    let limits = RunLimits { max_input_pixels: cfg.max_input_pixels, max_output_pixels: cfg.max_output_pixels };
    let mut png = Vec::new();
    let should_stop = || cancel.is_cancelled();
    let outcome = pipeline::run(upload.image, &resolved, &limits, q.compression, &mut png, &should_stop).map_err(
        |e| match e {
            PipelineError::Image(ImageError::Cancelled) => {
                ApiError::Internal("job cancelled after its request went away".to_owned())
            }
            other => other.into(),
        },
    )?;
    let stats = outcome.stats;
    Ok(JobOutput {
        png,
        score: stats.score,
        dims: JobDims { input: outcome.input, output: (stats.width, stats.height) },
        model: resolved.name().to_string(),
    })
}

/// Generates the kernel for validated parameters.
fn generate(params: &KernelParams) -> Result<Kernel, ApiError> {
    Kernel::generate(params).map_err(|e| ApiError::BadQuery(e.to_string()))
}
