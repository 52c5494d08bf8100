//! [`ApiError`]: every error the service answers with, rendered as an RFC 9457 problem
//! (`application/problem+json` with `type`, `title`, `status` and `detail`).
//!
//! Details are written for the caller: they say what to change. Internal failures ([`ApiError::Internal`]) are
//! logged with their cause and answered with a generic detail, so nothing internal leaks.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::imageio::ImageError;

/// Content type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a shed client is told to wait before retrying (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 1;

/// Every error the service answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a query parameter is unknown, repeated or has a bad value.
    #[error("{0}")]
    BadQuery(String),
    /// 400: the `kernel` field is not valid kernel JSON, or contradicts `scale` / `kernel_size`.
    #[error("{0}")]
    BadKernel(String),
    /// 400: the `model` parameter names no model (the detail lists them).
    #[error("{0}")]
    UnknownModel(String),
    /// 400: an uploaded model is not valid (wrong shapes, unknown op, NaN weights, truncated file, or over the
    /// layer, channel or MAC limits); the detail names the problem.
    #[error("{0}")]
    BadModel(String),
    /// 413: an uploaded model file is over the model byte limit.
    #[error("{0}")]
    ModelTooLarge(String),
    /// 404: `GET /models/{name}` for a name that is not a trained model.
    #[error("{0}")]
    NoSuchModel(String),
    /// 400: a body that cannot be read, or multipart that cannot be parsed, lacks `image` or has unknown or
    /// repeated fields.
    #[error("{0}")]
    BadBody(String),
    /// 404: no route has this path.
    #[error("no route for this path")]
    NotFound,
    /// 405: the path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413: the body is over `--max-body-bytes`.
    #[error("body over {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// 415: a content type the route does not take, or bytes that are not a supported image.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: input or output dimensions over the limits (read from the image header, before decoding).
    #[error("{0}")]
    DimensionsTooLarge(String),
    /// 503 with `Retry-After`: running + queued jobs are at capacity; the request was shed without work.
    #[error("job queue full")]
    Overloaded,
    /// 504: the request took longer than `--request-timeout-secs`.
    #[error("request timed out after {secs} s")]
    Timeout { secs: u64 },
    /// 500: a fault of the service, not of the request. The cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The RFC 9457 problem body.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadQuery(_)
            | ApiError::BadKernel(_)
            | ApiError::BadBody(_)
            | ApiError::UnknownModel(_)
            | ApiError::BadModel(_) => StatusCode::BAD_REQUEST,
            ApiError::ModelTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NoSuchModel(_) => StatusCode::NOT_FOUND,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::DimensionsTooLarge(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The last segment of the problem `type` URI; stable, documented in openapi.yaml.
    pub fn slug(&self) -> &'static str {
        match self {
            ApiError::BadQuery(_) => "bad-query",
            ApiError::BadKernel(_) => "bad-kernel",
            ApiError::BadBody(_) => "bad-body",
            ApiError::UnknownModel(_) => "unknown-model",
            ApiError::BadModel(_) => "bad-model",
            ApiError::ModelTooLarge(_) => "model-too-large",
            ApiError::NoSuchModel(_) => "no-such-model",
            ApiError::NotFound => "not-found",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::DimensionsTooLarge(_) => "dimensions-too-large",
            ApiError::Overloaded => "overloaded",
            ApiError::Timeout { .. } => "timeout",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            ApiError::BadQuery(_) => "Bad query parameter",
            ApiError::BadKernel(_) => "Bad kernel",
            ApiError::BadBody(_) => "Bad request body",
            ApiError::UnknownModel(_) => "Unknown model",
            ApiError::BadModel(_) => "Bad model",
            ApiError::ModelTooLarge(_) => "Model too large",
            ApiError::NoSuchModel(_) => "No such model",
            ApiError::NotFound => "Not found",
            ApiError::MethodNotAllowed => "Method not allowed",
            ApiError::PayloadTooLarge { .. } => "Payload too large",
            ApiError::UnsupportedMediaType(_) => "Unsupported media type",
            ApiError::DimensionsTooLarge(_) => "Image dimensions over the limits",
            ApiError::Overloaded => "Service overloaded",
            ApiError::Timeout { .. } => "Request timeout",
            ApiError::Internal(_) => "Internal error",
        }
    }

    /// What the caller reads: what was wrong and what to change.
    pub fn detail(&self) -> String {
        match self {
            ApiError::BadQuery(m)
            | ApiError::BadKernel(m)
            | ApiError::BadBody(m)
            | ApiError::UnknownModel(m)
            | ApiError::BadModel(m)
            | ApiError::ModelTooLarge(m)
            | ApiError::NoSuchModel(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::DimensionsTooLarge(m) => m.clone(),
            ApiError::NotFound => format!("no such route; routes: {}", super::routes::route_list()),
            ApiError::MethodNotAllowed => {
                "this route does not take this method; the Allow header lists the methods it takes".to_owned()
            }
            ApiError::PayloadTooLarge { limit } => {
                format!("the request body is over the limit of {limit} bytes; send a smaller image")
            }
            ApiError::Overloaded => {
                format!("all job slots and queue places are taken; retry after {RETRY_AFTER_SECS} s (Retry-After)")
            }
            ApiError::Timeout { secs } => format!(
                "the request was not done within {secs} s (upload, queue wait and work); send a smaller image, \
                 a smaller scale or kernel_size, or upload faster"
            ),
            ApiError::Internal(_) => "the service failed to handle this request; it was logged".to_owned(),
        }
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("tag:icnr-upscale,2026:{}", self.slug()),
            title: self.title(),
            status: self.status().as_u16(),
            detail: self.detail(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(cause = %cause, "internal error");
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = (self.status(), body).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            ApiError::Overloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            // The request body was not read to its end: the connection cannot carry another request.
            ApiError::PayloadTooLarge { .. } | ApiError::Timeout { .. } => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        res.extensions_mut().insert(ErrorSlug(self.slug()));
        res
    }
}

/// Put on error responses so the access log can name the problem.
#[derive(Debug, Clone, Copy)]
pub struct ErrorSlug(pub &'static str);

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Unsupported(m) => ApiError::UnsupportedMediaType(m),
            ImageError::TooLarge(m) => ApiError::DimensionsTooLarge(m),
            // Only seen when the request was dropped (client gone or timeout), so nobody reads this answer.
            ImageError::Cancelled => ApiError::Internal("job cancelled".to_owned()),
            ImageError::Io(e) => ApiError::Internal(format!("writing the PNG: {e}")),
        }
    }
}

impl From<crate::pipeline::PipelineError> for ApiError {
    fn from(e: crate::pipeline::PipelineError) -> Self {
        use crate::model::{Limit, ModelError};
        use crate::pipeline::PipelineError as P;
        match e {
            P::BadRequest(m) => ApiError::BadQuery(m),
            P::UnknownModel(m) => ApiError::UnknownModel(m),
            P::BadModel(ModelError::TooLarge { limit: Limit::Bytes, actual, max }) => ApiError::ModelTooLarge(format!(
                "the uploaded model is {actual} bytes, over the model limit of {max} bytes; send a smaller model"
            )),
            e @ P::BadModel(_) => ApiError::BadModel(e.to_string()),
            P::BadKernel(m) | P::KernelContradiction(m) => ApiError::BadKernel(m),
            P::Image(e) => e.into(),
            P::Engine(m) => ApiError::Internal(format!("engine: {m}")),
        }
    }
}
