//! One function per route. Handlers stay thin: parsing lives in [`super::query`] and [`super::body`], CPU work
//! runs in [`upscale_job`] on the job pool.

use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::engine::{Options, Upscaler};
use crate::imageio::{self, Compression, DecodeLimits, ImageError};
use crate::kernel::{Kernel, KernelParams};

use super::app::{AppState, Config, JobDims};
use super::body::{self, BodyKind, Upload};
use super::error::ApiError;
use super::jobs::{CancelFlag, JobError};
use super::query::{self, KernelQuery};

/// Response header carrying the checkerboard score of the output.
pub const X_CHECKERBOARD_SCORE: &str = "x-checkerboard-score";

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
        BodyKind::Raw => Upload { image: bytes, kernel: None },
        BodyKind::Multipart => body::split_multipart(parts, bytes).await?,
    };

    let out = ticket
        .run(move |cancel| upscale_job(&cfg, q.kernel, q.compression, upload, cancel))
        .await
        .map_err(|JobError::Panicked(msg)| ApiError::Internal(format!("upscale job panicked: {msg}")))??;

    state.metrics().output_pixels.increment(u64::from(out.dims.output.0) * u64::from(out.dims.output.1));
    let mut res = Response::new(Body::from(out.png));
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    if let Ok(v) = HeaderValue::from_str(&out.score.to_string()) {
        headers.insert(X_CHECKERBOARD_SCORE, v);
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
}

/// The CPU part of `POST /upscale`, run on the blocking pool: kernel, decode (header limits first), upscale and
/// PNG encode into memory. Polls `cancel` between bands.
pub fn upscale_job(
    cfg: &Config,
    q: KernelQuery,
    compression: Compression,
    upload: Upload,
    cancel: &CancelFlag,
) -> Result<JobOutput, ApiError> {
    let kernel = match &upload.kernel {
        Some(json) => custom_kernel(json, &q)?,
        None => generate(&q.params())?,
    };
    let limits = DecodeLimits {
        max_input_pixels: cfg.max_input_pixels,
        max_output_pixels: cfg.max_output_pixels,
        scale: kernel.scale,
    };
    let decoded = imageio::decode(&upload.image, &limits)?;
    // The encoded input is no longer needed; free it before the output grows.
    drop(upload);
    let input = (decoded.image.width, decoded.image.height);
    let up = Upscaler::new(&kernel, Options::default());
    let mut png = Vec::new();
    let should_stop = || cancel.is_cancelled();
    let stats = imageio::upscale_to_png(
        &mut png,
        &up,
        &decoded.image,
        decoded.icc_profile.as_deref(),
        compression,
        &should_stop,
    )
    .map_err(|e| match e {
        ImageError::Cancelled => ApiError::Internal("job cancelled after its request went away".to_owned()),
        other => other.into(),
    })?;
    Ok(JobOutput { png, score: stats.score, dims: JobDims { input, output: (stats.width, stats.height) } })
}

/// Generates the kernel for validated parameters.
fn generate(params: &KernelParams) -> Result<Kernel, ApiError> {
    Kernel::generate(params).map_err(|e| ApiError::BadQuery(e.to_string()))
}

/// Parses a caller's kernel JSON and checks it against the `scale` / `kernel_size` the caller also gave.
fn custom_kernel(json: &[u8], q: &KernelQuery) -> Result<Kernel, ApiError> {
    let kernel = Kernel::from_json(json)
        .map_err(|e| ApiError::BadKernel(format!("the `kernel` field is not valid kernel JSON: {e}")))?;
    if let Some(scale) = q.scale.filter(|s| *s != kernel.scale) {
        return Err(ApiError::BadKernel(format!(
            "scale={scale} contradicts the kernel, which is for scale {} (out_channels {}); drop `scale` or send a \
             kernel for scale {scale}",
            kernel.scale,
            kernel.bias.len()
        )));
    }
    if let Some(k) = q.kernel_size.filter(|k| *k != kernel.kernel_size) {
        return Err(ApiError::BadKernel(format!(
            "kernel_size={k} contradicts the kernel, whose kernel_size is {}; drop `kernel_size` or send a \
             {k}x{k} kernel",
            kernel.kernel_size
        )));
    }
    Ok(kernel)
}
