//! Scraping `/metrics` (Prometheus text) and reading series from it.

use std::net::SocketAddr;
use std::time::Duration;

use super::http;

/// The `/metrics` text, fetched over a fresh raw connection (so that a busy client pool cannot delay it).
pub async fn scrape(addr: SocketAddr) -> String {
    let a = http::get(addr, "/metrics").await;
    assert_eq!(a.status, 200, "/metrics: {}", http::lossy(&a.body));
    String::from_utf8(a.body).expect("/metrics is UTF-8")
}

/// The value of `name{labels}` in Prometheus text, where `labels` is the exact rendered label set (e.g.
/// `stage="queued"`), or empty for an unlabelled series.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() { name.to_owned() } else { format!("{name}{{{labels}}}") };
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

/// The value of the first series of `name` whose label set contains every one of `labels`.
pub fn metric_with(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().filter(|l| l.starts_with(&format!("{name}{{"))).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        labels.iter().all(|want| k.contains(want)).then(|| v.parse().ok()).flatten()
    })
}

/// Polls `/metrics` until `name{labels}` satisfies `pred`, and returns its value: a liveness bound of about 60 s,
/// not a timing check.
pub async fn wait(addr: SocketAddr, name: &str, labels: &str, pred: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..3000 {
        if let Some(v) = metric(&scrape(addr).await, name, labels) {
            if pred(v) {
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("metric {name}{{{labels}}} never reached the expected value:\n{}", scrape(addr).await);
}

/// Admitted requests (queued + running) as `/metrics` counts them.
pub async fn admitted(addr: SocketAddr) -> usize {
    let text = scrape(addr).await;
    let gauge = |name: &str| metric(&text, name, "").map_or(0, |v| v as usize);
    gauge("icnr_upscale_jobs_queued") + gauge("icnr_upscale_jobs_running")
}

/// Waits (polling; the bound of about 60 s is a liveness check, not a timing one) until the service counts exactly
/// `n` admitted requests.
pub async fn wait_admitted(addr: SocketAddr, n: usize, why: &str) {
    let mut last = usize::MAX;
    for _ in 0..3000 {
        last = admitted(addr).await;
        if last == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{why}: the service counts {last} admitted requests, expected {n}");
}
