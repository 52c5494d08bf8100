//! `GET /metrics`: Prometheus text with every documented metric, counting what happened.

use icnr_upscale::server::metrics::ALL;

use crate::helpers::*;

/// A fresh server already lists every metric; after a few requests the counters, the latency histogram and the
/// output pixels say what was served, per route and status (404s under `route="unmatched"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_latency_and_pixels() {
    let app = spawn_app().await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let fresh = res.text().await.unwrap();
    for name in [
        "icnr_upscale_jobs_running",
        "icnr_upscale_jobs_queued",
        "icnr_upscale_requests_shed_total",
        "icnr_upscale_output_pixels_total",
        "icnr_upscale_jobs_cancelled_total",
    ] {
        assert!(fresh.contains(&format!("\n{name}")) || fresh.starts_with(name), "{name} missing:\n{fresh}");
    }

    assert_eq!(app.post_raw("?scale=3", "image/png", png(&rgb8(10, 7))).await.status(), 200);
    assert_eq!(app.get("/nope").await.status(), 404);
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/kernel?scale=9").await.status(), 400);

    let m = app.metrics().await;
    for name in ALL {
        assert!(m.contains(name), "{name} missing:\n{m}");
    }
    let count = |labels: &[&str]| metric_with(&m, "icnr_upscale_http_requests_total", labels);
    assert_eq!(count(&["route=\"/upscale\"", "method=\"POST\"", "status=\"200\""]), Some(1.0));
    assert_eq!(count(&["route=\"unmatched\"", "status=\"404\""]), Some(1.0));
    assert_eq!(count(&["route=\"/healthz\"", "status=\"200\""]), Some(1.0));
    assert_eq!(count(&["route=\"/kernel\"", "status=\"400\""]), Some(1.0));
    assert_eq!(metric(&m, "icnr_upscale_output_pixels_total", ""), Some((30 * 21) as f64));
    assert!(m.contains("# TYPE icnr_upscale_http_request_duration_seconds histogram"), "{m}");
    assert_eq!(metric_with(&m, "icnr_upscale_http_request_duration_seconds_count", &["route=\"/upscale\""]), Some(1.0));
    assert_eq!(
        metric_with(&m, "icnr_upscale_http_request_duration_seconds_bucket", &["route=\"/upscale\"", "le=\"+Inf\""]),
        Some(1.0)
    );
    assert_eq!(metric(&m, "icnr_upscale_jobs_running", ""), Some(0.0));
    assert_eq!(metric(&m, "icnr_upscale_jobs_queued", ""), Some(0.0));
    app.shutdown().await.unwrap();
}

/// Two servers in one process keep separate counts (one recorder per app instance, no global).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_has_its_own_metrics() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    for _ in 0..3 {
        a.get("/healthz").await;
    }
    b.get("/healthz").await;
    let labels = ["route=\"/healthz\"", "status=\"200\""];
    assert_eq!(metric_with(&a.metrics().await, "icnr_upscale_http_requests_total", &labels), Some(3.0));
    assert_eq!(metric_with(&b.metrics().await, "icnr_upscale_http_requests_total", &labels), Some(1.0));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
