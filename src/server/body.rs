//! Reading the `POST /upscale` body under `--max-body-bytes`: raw image bytes or `multipart/form-data` with the
//! fields `image` (required) and `kernel` (optional kernel JSON).
//!
//! The body is buffered by hand instead of through an extractor so that the limit error is our own 413 problem,
//! and so that the read happens inside the request timeout (a client trickling its body gets a 504 and frees its
//! place). Multipart is then split from the buffered bytes, under the same limit.

use std::pin::Pin;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequest, Multipart};
use axum::http::{header, request::Parts, HeaderMap, Request, StatusCode};

use super::error::ApiError;
use super::query::quote;

/// Content types `POST /upscale` takes, for error details.
pub const ACCEPTED_CONTENT_TYPES: &str = "image/* (raw image bytes), application/octet-stream or multipart/form-data";

/// The multipart fields, for error details.
const FIELDS: &str = "image (required, the image file), and at most one of kernel (kernel JSON as GET /kernel \
                      returns it) or model (model JSON as GET /models/{name} returns it, or its safetensors)";

/// How the body carries the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Raw,
    Multipart,
}

/// The parts of an upload.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The encoded image.
    pub image: Bytes,
    /// Kernel JSON bytes (multipart `kernel` field), if given.
    pub kernel: Option<Bytes>,
    /// Model JSON or safetensors bytes (multipart `model` field), if given.
    pub model: Option<Bytes>,
}

/// Classifies the body by its `Content-Type`; anything else is a 415.
///
/// A missing Content-Type, `application/octet-stream` and `application/x-www-form-urlencoded` (what
/// `curl --data-binary @photo.png URL` sends when no `-H` is given) are raw bytes whose format is decided from
/// their signature; bytes that are no supported image are then a 415 from the decoder.
pub fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Raw);
    };
    let raw = String::from_utf8_lossy(value.as_bytes());
    let essence = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("image", sub)) if !sub.is_empty() => Ok(BodyKind::Raw),
        Some(("application", "octet-stream")) | Some(("application", "x-www-form-urlencoded")) => Ok(BodyKind::Raw),
        Some(("multipart", "form-data")) => Ok(BodyKind::Multipart),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {} is not taken here; send one of: {ACCEPTED_CONTENT_TYPES}",
            quote(&essence)
        ))),
    }
}

/// Rejects a declared `Content-Length` over the limit before anything is read.
pub fn check_declared_length(headers: &HeaderMap, limit: u64) -> Result<(), ApiError> {
    match declared_length(headers) {
        Some(n) if n > limit => Err(ApiError::PayloadTooLarge { limit }),
        _ => Ok(()),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Reads the whole body, failing with 413 as soon as it passes `limit` bytes.
pub async fn read_limited(headers: &HeaderMap, mut body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    // Trust the declared length only as far as the limit (it was checked) for the first allocation.
    let initial = declared_length(headers).unwrap_or(0).min(limit) as usize;
    let mut buf = Vec::with_capacity(initial);
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame =
            frame.map_err(|e| ApiError::BadBody(format!("the request body could not be read ({e}); send it again")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len().saturating_add(data.len()) > limit_usize {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Longest time spent reading away the body of a request rejected before its body was needed.
pub const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops up to `limit` body bytes for at most `time`, so an early answer (400, 404, 405, 415, 503)
/// reaches a client that is still sending instead of being lost to a connection reset, and the connection stays
/// usable. Returns whether the whole body was read.
pub async fn discard(mut body: Body, limit: u64, time: std::time::Duration) -> bool {
    let drain = async {
        let mut seen = 0u64;
        loop {
            match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        seen = seen.saturating_add(data.len() as u64);
                        if seen > limit {
                            return false;
                        }
                    }
                }
            }
        }
    };
    tokio::time::timeout(time, drain).await.unwrap_or(false)
}

/// Splits a buffered multipart body into its `image` and `kernel` fields.
///
/// `parts` must carry the router's `DefaultBodyLimit` (it does inside a handler), or axum's Multipart would apply
/// its own 2 MB default.
pub async fn split_multipart(parts: Parts, bytes: Bytes) -> Result<Upload, ApiError> {
    let req = Request::from_parts(parts, Body::from(bytes));
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| {
        ApiError::BadBody(format!(
            "the multipart body has no valid boundary ({}); send multipart/form-data",
            e.body_text()
        ))
    })?;
    let mut image: Option<Bytes> = None;
    let mut kernel: Option<Bytes> = None;
    let mut model: Option<Bytes> = None;
    while let Some(field) = mp.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "image" if image.is_none() => image = Some(field.bytes().await.map_err(multipart_error)?),
            "kernel" if kernel.is_none() => kernel = Some(field.bytes().await.map_err(multipart_error)?),
            "model" if model.is_none() => model = Some(field.bytes().await.map_err(multipart_error)?),
            "image" | "kernel" | "model" => {
                return Err(ApiError::BadBody(format!(
                    "the multipart field {} is given more than once; give it once",
                    quote(&name)
                )))
            }
            _ => return Err(ApiError::BadBody(format!("unknown multipart field {}; fields: {FIELDS}", quote(&name)))),
        }
    }
    let image = image.ok_or_else(|| {
        ApiError::BadBody("the multipart body has no `image` field; add the image file as field `image`".to_owned())
    })?;
    if kernel.is_some() && model.is_some() {
        return Err(ApiError::BadBody(format!(
            "the multipart body has both `kernel` and `model`; give at most one. Fields: {FIELDS}"
        )));
    }
    Ok(Upload { image, kernel, model })
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The buffered body already passed the limit check; keep the mapping for safety.
        ApiError::BadBody("a multipart field is too large".to_owned())
    } else {
        ApiError::BadBody(format!(
            "the multipart body is malformed ({}); send valid multipart/form-data",
            e.body_text()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_ct(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn content_types_are_classified() {
        assert_eq!(body_kind(&with_ct("image/png")).unwrap(), BodyKind::Raw);
        assert_eq!(body_kind(&with_ct("Image/JPEG; q=1")).unwrap(), BodyKind::Raw);
        assert_eq!(body_kind(&with_ct("application/octet-stream")).unwrap(), BodyKind::Raw);
        assert_eq!(body_kind(&with_ct("multipart/form-data; boundary=x")).unwrap(), BodyKind::Multipart);
        // What `curl --data-binary @photo.png URL` sends without -H, and no Content-Type at all: raw bytes.
        assert_eq!(body_kind(&with_ct("application/x-www-form-urlencoded")).unwrap(), BodyKind::Raw);
        assert_eq!(body_kind(&HeaderMap::new()).unwrap(), BodyKind::Raw);
        for bad in ["text/plain", "application/json", "image/", "image", "", "multipart/mixed"] {
            assert!(matches!(body_kind(&with_ct(bad)), Err(ApiError::UnsupportedMediaType(_))), "{bad}");
        }
    }

    #[tokio::test]
    async fn body_over_the_limit_is_413() {
        let h = HeaderMap::new();
        assert_eq!(read_limited(&h, Body::from(vec![0u8; 10]), 10).await.unwrap().len(), 10);
        assert!(matches!(
            read_limited(&h, Body::from(vec![0u8; 11]), 10).await,
            Err(ApiError::PayloadTooLarge { limit: 10 })
        ));
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert!(matches!(check_declared_length(&h, 10), Err(ApiError::PayloadTooLarge { .. })));
        assert!(check_declared_length(&h, 11).is_ok());
    }
}
