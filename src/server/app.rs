//! The router ([`app`]) and the outer middleware ([`observe`]): request id, request timeout, metrics and the one
//! access-log line per request.

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument as _;

use super::body;
use super::error::{ApiError, ErrorSlug};
use super::handlers;
use super::jobs::panic_message;
use super::state::{AppState, JobDims};

/// Request and response header carrying the request id.
pub const X_REQUEST_ID: &str = "x-request-id";
/// Longest caller-supplied request id kept; longer or odd ones are replaced by a new UUID.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The whole service as a `Router`.
pub fn app(state: AppState) -> Router {
    let body_limit = usize::try_from(state.config().max_body_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/", get(handlers::page))
        .route("/upscale", post(handlers::upscale))
        .route("/models", get(handlers::models))
        .route("/models/{name}", get(handlers::model))
        .route("/kernel", get(handlers::kernel))
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.yaml", get(handlers::openapi))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        // Each `.layer` wraps everything added before it, so the last one is the outermost.
        // The limit axum's extractors apply (Multipart re-reads the already limited body under it).
        .layer(DefaultBodyLimit::max(body_limit))
        // The last fence: a panic in a handler becomes a 500 problem instead of a dropped connection. Clients must
        // not be able to reach it (tests check that every client error is a 4xx).
        .layer(CatchPanicLayer::custom(panic_response))
        // Outermost: request id, timeout, metrics and the access log see every response, errors included.
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The answer to a panic caught by `CatchPanicLayer`: a 500 problem; the panic message is only logged.
fn panic_response(payload: Box<dyn std::any::Any + Send>) -> Response {
    ApiError::Internal(format!("handler panicked: {}", panic_message(payload.as_ref()))).into_response()
}

/// Request id in, timeout around the handler, request id out, metrics and one access-log line.
///
/// On timeout the handler future is dropped, which abandons its job (see the `jobs` module).
async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = request_id(req.headers());
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let path = req.uri().path().chars().take(200).collect::<String>();
    // Only `POST /upscale` reads its body (and reads it away itself when it answers early). For every other
    // request, read any body away first, bounded, so the answer reaches a client still sending and the
    // connection stays usable; a body that cannot be read away in time closes the connection after the answer.
    let mut close = false;
    if !(route == "/upscale" && req.method() == Method::POST) {
        let (parts, unread) = req.into_parts();
        close = !body::discard(unread, state.config().max_body_bytes, body::DISCARD_TIME).await;
        req = Request::from_parts(parts, axum::body::Body::empty());
    }

    let timeout = state.config().request_timeout;
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut res = match tokio::time::timeout(timeout, next.run(req).instrument(span)).await {
        Ok(res) => res,
        Err(_) => ApiError::Timeout { secs: timeout.as_secs() }.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(X_REQUEST_ID, v);
    }
    if close {
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    let latency = start.elapsed();
    let status = res.status().as_u16();
    state.metrics().record_request(&route, method, status, latency);
    let dims = res.extensions().get::<JobDims>().copied();
    let fmt_dims = |d: Option<(u32, u32)>| d.map_or_else(String::new, |(w, h)| format!("{w}x{h}"));
    tracing::info!(
        target: "icnr_upscale::access",
        request_id = %request_id,
        method,
        route = %route,
        path = %path,
        status,
        latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3,
        input = %fmt_dims(dims.map(|d| d.input)),
        output = %fmt_dims(dims.map(|d| d.output)),
        problem = res.extensions().get::<ErrorSlug>().map_or("", |s| s.0),
        "request"
    );
    res
}

/// The caller's `X-Request-Id` if it is 1 to 64 characters of `[A-Za-z0-9._-]`, else a new UUID v4.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= MAX_REQUEST_ID_LEN
                && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Known methods by name, anything else as `other`, so clients cannot grow the metric label set.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::config::ServeArgs;
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_becomes_a_500_problem_without_its_message() {
        use tower::ServiceExt as _;
        let app: Router = Router::new()
            .route("/boom", get(|| async { panic!("secret internals") as &'static str }))
            .layer(CatchPanicLayer::custom(panic_response));
        let res = app.oneshot(Request::builder().uri("/boom").body(axum::body::Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status().as_u16(), 500);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/problem+json");
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let p: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(p["status"], 500);
        assert!(!String::from_utf8_lossy(&body).contains("secret"), "{p}");
    }

    /// A `MakeWriter` collecting log output in memory.
    #[derive(Clone, Default)]
    struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    /// One JSON access-log line per request, with request id, method, route, status, latency and the input and
    /// output dimensions of an upscale.
    #[tokio::test(flavor = "current_thread")]
    async fn each_request_logs_one_structured_line() {
        use tower::ServiceExt as _;
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt().json().flatten_event(true).with_writer(capture.clone()).finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let app = app(AppState::new(&ServeArgs::default()));
        let mut png = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(image::RgbImage::new(5, 3)).write_to(&mut png, image::ImageFormat::Png).unwrap();
        let req = Request::builder()
            .method("POST")
            .uri("/upscale?scale=3")
            .header("content-type", "image/png")
            .header(X_REQUEST_ID, "log-test-1")
            .body(axum::body::Body::from(png.into_inner()))
            .unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status().as_u16(), 200);
        let req = Request::builder().uri("/nope").body(axum::body::Body::empty()).unwrap();
        assert_eq!(app.oneshot(req).await.unwrap().status().as_u16(), 404);

        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|v: &serde_json::Value| v["target"] == "icnr_upscale::access")
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let up = &lines[0];
        assert_eq!(up["request_id"], "log-test-1");
        assert_eq!(
            (up["method"].as_str(), up["route"].as_str(), up["status"].as_u64()),
            (Some("POST"), Some("/upscale"), Some(200))
        );
        assert_eq!((up["input"].as_str(), up["output"].as_str()), (Some("5x3"), Some("15x9")));
        assert!(up["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{up}");
        let nf = &lines[1];
        assert_eq!((nf["route"].as_str(), nf["status"].as_u64()), (Some("unmatched"), Some(404)));
        assert_eq!(nf["problem"], "not-found");
        assert!(uuid::Uuid::parse_str(nf["request_id"].as_str().unwrap()).is_ok(), "{nf}");
    }

    #[test]
    fn sane_request_ids_are_kept_and_others_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123_x.y"));
        assert_eq!(request_id(&h), "abc-123_x.y");
        for bad in ["", "has space", "semi;colon", &"a".repeat(65)] {
            h.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = request_id(&h);
            assert_ne!(id, bad);
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        }
        assert!(uuid::Uuid::parse_str(&request_id(&HeaderMap::new())).is_ok());
    }
}
