//! The hostile-file corpus against the live service: every case of `tests/corpus/` (made by
//! `scripts/make_corpus.py`, listed in `tests/corpus/manifest.json`), each answered with the status the manifest
//! gives. Errors must be `application/problem+json` with `type`, `title`, `status` and `detail`; successes must be a
//! complete PNG of the expected size, depth and alpha, with the expected pixels where the manifest gives them. After
//! all of it the service must still be healthy and still upscale.
//!
//! Where each behaviour is tested (one obvious place each): this file = the hostile-file corpus, manifest-driven;
//! `tests/api/`'s route modules = the HTTP contract of each route and status, one request -> one answer, including every 4xx
//! validation (bad queries, kernels, multipart bodies, body limits); `tests/api/robustness.rs` = load, concurrency,
//! disconnects, timeouts, shutdown and signals.
//!
//! The server runs in-process on 127.0.0.1:0; every request goes over real TCP.

use crate::support::http::lossy;
use crate::support::images::{corpus_dir, corpus_file};
use crate::support::png::{png_info, png_pixels};
use crate::support::problem::check_problem;
use crate::support::server::{args, client, TestServer};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    file: String,
    content_type: String,
    query: String,
    status: Option<u16>,
    status_any: Option<Vec<u16>>,
    expect: Option<Expect>,
    #[serde(default)]
    pixels: Vec<PixelCheck>,
}

#[derive(Debug, Deserialize)]
struct Expect {
    width: u32,
    height: u32,
    channels: Option<u8>,
    channels_any: Option<Vec<u8>>,
    bit_depth: u8,
    #[serde(default)]
    icc: bool,
}

#[derive(Debug, Deserialize)]
struct PixelCheck {
    x: u32,
    y: u32,
    value: Vec<u32>,
    tol: u32,
    #[serde(default)]
    rgb_only: bool,
}

/// One response, reduced to what the checks need.
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

async fn send(req: reqwest::RequestBuilder) -> Result<Answer, String> {
    let resp = req.send().await.map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = resp.bytes().await.map_err(|e| format!("reading the body failed: {e}"))?.to_vec();
    Ok(Answer { status, content_type, body })
}

fn check_png(case: &Case, a: &Answer) -> Result<(), String> {
    if a.content_type.as_deref() != Some("image/png") {
        return Err(format!("content-type {:?}, expected image/png", a.content_type));
    }
    let info = png_info(&a.body)?;
    let Some(e) = &case.expect else { return Ok(()) };
    let channels_ok = match (&e.channels, &e.channels_any) {
        (Some(c), _) => info.channels == *c,
        (None, Some(any)) => any.contains(&info.channels),
        (None, None) => true,
    };
    if (info.width, info.height) != (e.width, e.height) || !channels_ok || info.bit_depth != e.bit_depth {
        return Err(format!(
            "output {}x{} {}ch {}-bit, expected {}x{} {:?}ch {}-bit",
            info.width, info.height, info.channels, info.bit_depth, e.width, e.height, e.channels, e.bit_depth
        ));
    }
    if e.icc && !info.has_iccp {
        return Err("the input's ICC profile is missing from the output (no iCCP chunk)".into());
    }
    let px = png_pixels(&a.body)?;
    for p in &case.pixels {
        let mut got = px(p.x, p.y);
        let mut want = p.value.clone();
        if p.rgb_only {
            got.truncate(3);
            want.truncate(3);
        }
        let close = got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| g.abs_diff(*w) <= p.tol);
        if !close {
            return Err(format!("pixel ({}, {}) is {got:?}, expected {want:?} +- {}", p.x, p.y, p.tol));
        }
    }
    Ok(())
}

async fn run_case(c: &reqwest::Client, server: &TestServer, case: &Case) -> Result<(), String> {
    let body = corpus_file(&case.file);
    let url =
        if case.query.is_empty() { server.url("/upscale") } else { server.url(&format!("/upscale?{}", case.query)) };
    let a = send(c.post(url).header("content-type", &case.content_type).body(body)).await?;
    eprintln!("{:<32} {} ({} bytes)", case.name, a.status, a.body.len());
    let allowed = case.status_any.clone().unwrap_or_else(|| vec![case.status.expect("status or status_any")]);
    if !allowed.contains(&a.status) {
        return Err(format!("status {}, expected {allowed:?}; body: {}", a.status, lossy(&a.body)));
    }
    if a.status == 200 {
        check_png(case, &a)
    } else {
        check_problem(a.status, a.content_type.as_deref(), &a.body).map(|_| ())
    }
}

/// Every case of `tests/corpus/manifest.json` at the documented default limits (16 Mpx in, 64 Mpx out), then
/// health and a normal upscale. All failures are collected and reported together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_cases_answer_as_the_manifest_says() {
    let manifest = std::fs::read(corpus_dir().join("manifest.json")).expect("manifest");
    let cases: Vec<Case> = serde_json::from_slice(&manifest).expect("manifest parses");
    assert!(cases.len() >= 60, "the corpus lost cases: {}", cases.len());
    let server = TestServer::start(args()).await;
    let c = client();
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(e) = run_case(&c, &server, case).await {
            failures.push(format!("{} ({}?{}): {e}", case.name, case.file, case.query));
        }
    }
    server.assert_still_serving().await;
    server.shutdown().await.expect("clean shutdown");
    assert!(failures.is_empty(), "{} of {} corpus cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
