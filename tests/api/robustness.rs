//! Load, concurrency, disconnects, timeouts, shutdown and signals against the live service, bounded and loopback
//! only.
//!
//! Where each behaviour is tested (one obvious place each): `tests/api/`'s route modules = the HTTP contract of each route and
//! status, one request -> one answer, including every 4xx validation; `tests/api/corpus.rs` = the hostile-file corpus,
//! driven by `tests/corpus/manifest.json`; this file = what happens under load, with many or misbehaving
//! connections, when clients vanish or stall, when requests time out, and at shutdown and SIGTERM.
//!
//! Determinism without timing: the service admits a request (takes a place in the job pool) before reading its
//! body, so a raw client that has sent its head and half its body holds a place, and `/metrics` says when the
//! service has counted it. Holding such requests half-sent fills the pool exactly, so "every further request is shed
//! at once" is a fact to check, not a race. To keep the CPU slot busy for as long as a test needs, an "endless" job
//! ([`endless_job_png`]) runs until its client leaves or its time budget ends; no test waits for it to finish.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::support::http::{self, lossy, parse_answer, RawAnswer, BOUND};
use crate::support::images::{noise_png, small_png};
use crate::support::metrics::{metric, metric_with, wait_admitted};
use crate::support::png::{png_info, png_pixels};
use crate::support::problem::{assert_problem, check_problem, detail};
use crate::support::server::{client, TestServer};
use icnr_upscale::server::ServeArgs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn args(jobs: usize, queue: usize) -> ServeArgs {
    ServeArgs { max_concurrent_jobs: jobs, max_queue: queue, ..crate::support::server::args() }
}

/// A raw HTTP/1.1 `POST /upscale` with its head and the first half of its body sent; the rest waits for
/// [`HeldUpload::finish`]. The service admits a request (takes a place in the job pool) before reading its body,
/// so a held upload holds a place; [`wait_admitted`] tells when the service has counted it.
struct HeldUpload {
    stream: TcpStream,
    rest: Vec<u8>,
}

async fn start_upload(addr: SocketAddr, query: &str, body: &[u8]) -> HeldUpload {
    let half = body.len() / 2;
    let stream = http::post_start(addr, &format!("/upscale{query}"), "image/png", body.len(), &body[..half]).await;
    HeldUpload { stream, rest: body[half..].to_vec() }
}

impl HeldUpload {
    /// Sends the rest of the body and reads the final answer.
    async fn finish(mut self) -> RawAnswer {
        self.stream.write_all(&self.rest).await.expect("send the rest of the body");
        http::read_answer(self.stream).await
    }
}

/// Sends a whole `POST /upscale{query}` on a raw connection and returns it, unread: dropping it is a client that
/// vanishes before (or while) its answer comes.
async fn send_whole(addr: SocketAddr, query: &str, body: &[u8]) -> TcpStream {
    let mut s = http::post_start(addr, &format!("/upscale{query}"), "image/png", body.len(), body).await;
    s.flush().await.expect("flush");
    s
}

/// A solid 4096 x 4096 PNG (small to send) for a job far longer than any test: at [`ENDLESS_JOB_QUERY`] its output is
/// 32768 x 32768, about 1.5 TFLOP of untied convolution. Tests hold the job slot with it and end it by going away or
/// by the request timeout, which cancels it; none waits for it to finish, so none depends on the machine's speed.
fn endless_job_png() -> &'static [u8] {
    static PNG: OnceLock<Vec<u8>> = OnceLock::new();
    PNG.get_or_init(|| {
        let img = image::RgbImage::from_pixel(4096, 4096, image::Rgb([90, 120, 200]));
        crate::support::images::png(&image::DynamicImage::ImageRgb8(img))
    })
}
const ENDLESS_JOB_QUERY: &str = "?scale=8&kernel_size=9&init=default";

/// [`args`] with an output limit that lets the endless job in.
fn endless_args(jobs: usize, queue: usize) -> ServeArgs {
    ServeArgs { max_output_pixels: 1 << 31, ..args(jobs, queue) }
}

async fn healthz(c: &reqwest::Client, server: &TestServer) -> u16 {
    match tokio::time::timeout(BOUND, c.get(server.url("/healthz")).send()).await {
        Ok(Ok(r)) => r.status().as_u16(),
        _ => 0,
    }
}

async fn upscale_status(c: &reqwest::Client, server: &TestServer, body: Vec<u8>) -> u16 {
    match tokio::time::timeout(
        BOUND,
        c.post(server.url("/upscale")).header("content-type", "image/png").body(body).send(),
    )
    .await
    {
        Ok(Ok(r)) => {
            let s = r.status().as_u16();
            let _ = r.bytes().await;
            s
        }
        _ => 0,
    }
}

/// A full pool sheds every further request at once with 503 + `Retry-After` + problem+json, and a held upload takes a
/// queue place, never the CPU slot. `--max-concurrent-jobs 1 --max-queue 2`: two uploads held half-sent are queued
/// (none running), and a job that outlasts the test, sent after them, still gets the one slot. With the three places
/// taken, 64 concurrent clients, a 3 MiB body (larger than socket buffers: the answer is not lost to a reset) and one
/// more small request are all shed without waiting for a place, each with `Retry-After: 1`, problem+json and an
/// `X-Request-Id`, and `/metrics` counts every one; `/healthz` answers meanwhile. When the running job's client
/// leaves, its job is stopped and the slot frees; the held uploads then complete with a complete PNG, and so does a
/// new request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_sheds_every_further_request_at_once_with_503_and_retry_after() {
    let server = TestServer::start(endless_args(1, 2)).await;
    let c = client();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(start_upload(server.addr, "?scale=2", &small_png()).await);
    }
    wait_admitted(server.addr, 2, "two held uploads").await;
    assert_eq!(server.metric("icnr_upscale_jobs_queued", "").await, 2.0, "held uploads hold queue places");
    assert_eq!(server.metric("icnr_upscale_jobs_running", "").await, 0.0, "a held upload took the CPU slot");
    let running = send_whole(server.addr, ENDLESS_JOB_QUERY, endless_job_png()).await;
    server.wait_metric("icnr_upscale_jobs_running", "", |v| v == 1.0).await;
    wait_admitted(server.addr, 3, "the running job and the two held uploads").await;

    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let c = c.clone();
            let url = server.url("/upscale");
            tokio::spawn(async move {
                let r = c.post(url).header("content-type", "image/png").body(small_png()).send().await.expect("send");
                let status = r.status().as_u16();
                let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let (retry, ct, id) = (header("retry-after"), header("content-type"), header("x-request-id"));
                let body = r.bytes().await.expect("body");
                (status, retry, ct, id, body)
            })
        })
        .collect();
    for t in tasks {
        let (status, retry, ct, id, body) = tokio::time::timeout(BOUND, t).await.expect("shed in time").expect("task");
        assert_eq!(status, 503, "surplus request: {}", lossy(&body));
        assert_eq!(retry.as_deref(), Some("1"), "Retry-After in whole seconds");
        assert!(id.is_some(), "X-Request-Id on a 503");
        check_problem(503, ct.as_deref(), &body).expect("503 problem+json");
    }
    // Small bodies and bodies far larger than socket buffers alike get the 503 (the body is read away first).
    for body in [vec![0x55; 3 << 20], small_png()] {
        let res = server.post_raw("", "image/png", body).await;
        assert_eq!(res.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
        assert_problem(res, 503).await;
    }
    assert_eq!(healthz(&c, &server).await, 200, "/healthz while the pool is full");
    let m = server.metrics().await;
    assert_eq!(metric(&m, "icnr_upscale_requests_shed_total", ""), Some(66.0), "{m}");
    assert_eq!(
        metric_with(&m, "icnr_upscale_http_requests_total", &["route=\"/upscale\"", "status=\"503\""]),
        Some(66.0)
    );

    drop(running);
    server.wait_metric("icnr_upscale_jobs_cancelled_total", "stage=\"running\"", |v| v == 1.0).await;
    server.wait_metric("icnr_upscale_jobs_running", "", |v| v == 0.0).await;
    for h in held {
        let a = h.finish().await;
        assert_eq!(a.status, 200, "an admitted request: {}", lossy(&a.body));
        assert_eq!(a.header("content-type"), Some("image/png"));
        let info = png_info(&a.body).expect("a complete PNG");
        assert_eq!((info.width, info.height), (128, 96));
        let _pixels = png_pixels(&a.body).expect("a decodable PNG");
    }
    assert_eq!(upscale_status(&c, &server, small_png()).await, 200, "after the overload");
    server.shutdown().await.expect("clean shutdown");
}

/// A real burst: 64 clients at once on `--max-concurrent-jobs 1 --max-queue 2`, with `/healthz` probed throughout.
/// Every answer is 200 or 503 (never an error or a hang), every 503 carries `Retry-After`, at least the admitted
/// ones succeed, and every health probe is 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_64_gets_only_200_or_503_and_healthz_stays_up() {
    let server = TestServer::start(args(1, 2)).await;
    let c = client();
    let body = noise_png(192, 192);
    let start = Arc::new(tokio::sync::Barrier::new(64));
    let done = Arc::new(AtomicBool::new(false));
    let probes = Arc::new(AtomicUsize::new(0));
    let prober = {
        let (c, url, done, probes) = (c.clone(), server.url("/healthz"), done.clone(), probes.clone());
        tokio::spawn(async move {
            let mut bad = Vec::new();
            while !done.load(Ordering::Relaxed) {
                match tokio::time::timeout(BOUND, c.get(&url).send()).await {
                    Ok(Ok(r)) if r.status() == 200 => {}
                    other => bad.push(format!("{other:?}")),
                }
                probes.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            bad
        })
    };
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (c, url, body, start) = (c.clone(), server.url("/upscale"), body.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let r = c.post(url).header("content-type", "image/png").body(body).send().await.expect("send");
                let status = r.status().as_u16();
                let retry = r.headers().contains_key("retry-after");
                let _ = r.bytes().await;
                (status, retry)
            })
        })
        .collect();
    let (mut ok, mut shed) = (0, 0);
    for t in tasks {
        let (status, retry) = tokio::time::timeout(BOUND, t).await.expect("answered in time").expect("task");
        match status {
            200 => ok += 1,
            503 => {
                assert!(retry, "503 without Retry-After");
                shed += 1
            }
            s => panic!("burst request answered {s}"),
        }
    }
    done.store(true, Ordering::Relaxed);
    let bad = prober.await.expect("prober");
    assert!(bad.is_empty(), "/healthz failed during the burst: {bad:?}");
    assert!(probes.load(Ordering::Relaxed) >= 1);
    assert_eq!(ok + shed, 64);
    assert!(ok >= 1, "nothing was served");
    eprintln!("burst: {ok} served, {shed} shed, {} health probes", probes.load(Ordering::Relaxed));
    server.shutdown().await.expect("clean shutdown");
}

/// Clients that vanish: mid-upload (headers and part of the body, then drop), after a full upload before the
/// answer, and mid-download (part of a large answer read, then drop). With one job place in all, the service
/// must free it every time: the next request is admitted and succeeds, and `/healthz` is 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_mid_upload_and_mid_download_free_their_place() {
    let server = TestServer::start(args(1, 0)).await;
    let c = client();
    let png = small_png();
    let big = noise_png(512, 512);

    // Mid-upload, five times over: admitted, half the body, gone; the place comes back each time.
    for i in 0..5 {
        let h = start_upload(server.addr, "", &png).await;
        wait_admitted(server.addr, 1, &format!("mid-upload client {i}")).await;
        drop(h);
        wait_admitted(server.addr, 0, &format!("after mid-upload client {i} left")).await;
    }
    // Full upload of a large job (512x512 at scale 4), then gone before the answer: the job is dropped or stopped.
    for i in 0..2 {
        let mut h = start_upload(server.addr, "?scale=4", &big).await;
        let rest = std::mem::take(&mut h.rest);
        h.stream.write_all(&rest).await.expect("the rest of the body");
        wait_admitted(server.addr, 1, &format!("full upload {i}")).await;
        drop(h);
        wait_admitted(server.addr, 0, &format!("after full upload {i} left")).await;
    }
    // Mid-download: a 1024x1024 noise PNG (about 3 MB) read 16 KB at most, then gone.
    for i in 0..2 {
        let mut h = start_upload(server.addr, "", &big).await;
        let rest = std::mem::take(&mut h.rest);
        h.stream.write_all(&rest).await.expect("the rest of the body");
        let mut part = vec![0u8; 16 * 1024];
        let n = tokio::time::timeout(BOUND, h.stream.read(&mut part)).await.expect("answer starts").expect("read");
        assert!(n > 0 && part.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&part[..n.min(200)]));
        drop(h);
        wait_admitted(server.addr, 0, &format!("after mid-download client {i} left")).await;
    }
    assert_eq!(healthz(&c, &server).await, 200);
    let a = start_upload(server.addr, "", &png).await.finish().await;
    assert_eq!(a.status, 200, "a normal request after the disconnects: {}", lossy(&a.body));
    server.shutdown().await.expect("clean shutdown");
}

/// A client trickling its body one byte at a time with `--request-timeout-secs 1` holds its queue place (the only
/// one: 1 job, no queue) until the timeout, then gets 504 problem+json with an `X-Request-Id`, and its place is freed:
/// the next request is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_gets_504_and_frees_its_place() {
    let server = TestServer::start(ServeArgs { request_timeout_secs: 1, ..args(1, 0) }).await;
    let png = small_png();
    let h = start_upload(server.addr, "", &png).await;
    server.wait_metric("icnr_upscale_jobs_queued", "", |v| v == 1.0).await;
    let (mut rd, mut wr) = h.stream.into_split();
    let trickle = tokio::spawn(async move {
        // At most 60 bytes, 10 per second: the body is never complete, the loop is bounded.
        for b in png.iter().take(60) {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wr
    });
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(BOUND, rd.read_to_end(&mut buf)).await.expect("an answer to the slow client");
    let a = parse_answer(&buf);
    assert_eq!(a.status, 504, "slow client: {}", lossy(&a.body));
    assert!(a.header("x-request-id").is_some(), "X-Request-Id on the 504");
    check_problem(504, a.header("content-type"), &a.body).expect("504 problem+json");
    trickle.abort();
    server.wait_metric("icnr_upscale_jobs_queued", "", |v| v == 0.0).await;
    wait_admitted(server.addr, 0, "the slow client's place freed").await;
    // The place is free: the next request is admitted. It has the same 1 s budget, so on a slow or busy machine it
    // may itself time out (504); a 503 would mean the place was never freed.
    let status = upscale_status(&client(), &server, small_png()).await;
    assert!(status == 200 || status == 504, "the next request after the slow client: {status}");
    if status == 504 {
        eprintln!("note: the machine was too slow for the 1 s budget of the next request (504), but it was admitted");
    }
    server.shutdown().await.expect("clean shutdown");
}

/// A job that runs past the request timeout is answered 504 (problem+json whose detail names the 1 s budget) and
/// stopped: `jobs_cancelled_total{stage="running"}` counts it and its slot frees, so the next request is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_the_timeout_is_504_and_stopped() {
    let server = TestServer::start(ServeArgs { request_timeout_secs: 1, ..endless_args(1, 0) }).await;
    let res = server.post_raw(ENDLESS_JOB_QUERY, "image/png", endless_job_png().to_vec()).await;
    let p = assert_problem(res, 504).await;
    assert!(detail(&p).contains("1 s"), "{p}");
    server.wait_metric("icnr_upscale_jobs_running", "", |v| v == 0.0).await;
    server.wait_metric("icnr_upscale_jobs_cancelled_total", "stage=\"running\"", |v| v == 1.0).await;
    // The slot is free: the next request is admitted (within the same 1 s budget, so 200 or, slow machine, 504).
    let status = upscale_status(&client(), &server, small_png()).await;
    assert!(status == 200 || status == 504, "the next request after the stopped job: {status}");
    server.shutdown().await.expect("clean shutdown");
}

/// A connection that goes silent (half a request head, or an idle keep-alive connection after its answer) is
/// closed once nothing has moved on it for the request timeout plus 5 s, so silent clients cannot pile up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed() {
    let server = TestServer::start(ServeArgs { request_timeout_secs: 1, ..crate::support::server::args() }).await;
    let half_head = async {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.expect("half a head");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(BOUND, s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the silent connection was never closed");
        assert!(!String::from_utf8_lossy(&buf).contains("200 OK"), "{}", lossy(&buf));
    };
    let idle_keep_alive = async {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("request");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(BOUND, s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the idle keep-alive connection was never closed");
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 200 OK") && text.ends_with(r#"{"status":"ok"}"#), "{text}");
    };
    tokio::join!(half_head, idle_keep_alive);
    // The server itself is fine.
    assert_eq!(healthz(&client(), &server).await, 200);
    server.shutdown().await.expect("clean shutdown");
}

/// Graceful shutdown with requests in flight: three admitted uploads are half-way when shutdown is asked; the
/// listener closes (new connections are refused) but `run` does not return; the three still complete with 200 and
/// a complete PNG of the right size, and `run` then returns `Ok`, after which nothing answers on the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_completes_in_flight_requests() {
    let mut server = TestServer::start(args(1, 4)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(start_upload(server.addr, "", &small_png()).await);
    }
    wait_admitted(server.addr, 3, "three uploads in flight").await;
    let addr = server.addr;
    server.trigger_shutdown();
    http::wait_until_refused(addr).await;
    assert!(!server.is_finished(), "run returned with requests in flight");
    let answers: Vec<_> = held.into_iter().map(|h| tokio::spawn(h.finish())).collect();
    for a in answers {
        let a = a.await.expect("task");
        assert_eq!(a.status, 200, "in-flight request during shutdown: {}", lossy(&a.body));
        let info = png_info(&a.body).expect("a complete PNG");
        assert_eq!((info.width, info.height), (128, 96));
        let _pixels = png_pixels(&a.body).expect("a decodable PNG");
    }
    server.join().await.expect("run returns Ok after draining");
    // Stopped: nothing accepts on the port any more.
    let refused = match TcpStream::connect(addr).await {
        Err(_) => true,
        Ok(mut s) => {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
            let mut buf = [0u8; 64];
            !matches!(tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await, Ok(Ok(n)) if n > 0)
        }
    };
    assert!(refused, "the server still answers after run returned");
}

/// Shutdown while a CPU job is running: with a job running that outlasts the 1 s request timeout and shutdown
/// asked, new connections are refused, the running request is answered (504 problem+json when its budget runs out:
/// the job is stopped, not waited for; 200 is accepted too) and `run` returns `Ok` within the grace period (request
/// timeout + 5 s), which bounds how long a shutdown waits for work in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_a_cpu_job_runs_stops_it_within_the_grace_period() {
    let mut server = TestServer::start(ServeArgs { request_timeout_secs: 1, ..endless_args(1, 0) }).await;
    let running = send_whole(server.addr, ENDLESS_JOB_QUERY, endless_job_png()).await;
    server.wait_metric("icnr_upscale_jobs_running", "", |v| v == 1.0).await;
    server.trigger_shutdown();
    http::wait_until_refused(server.addr).await;
    let a = http::read_answer(running).await;
    assert!(a.status == 504 || a.status == 200, "the running request during shutdown: {}", a.status);
    if a.status == 504 {
        check_problem(504, a.header("content-type"), &a.body).expect("504 problem+json");
    }
    // `join` is bounded (60 s); the grace period is 6 s.
    server.join().await.expect("run() returns Ok after the grace period at the latest");
}

/// The real binary under SIGTERM: `icnr-upscale serve` on port 0 with a request in flight; SIGTERM; the request
/// completes with 200 and the process exits 0.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_exits_0() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_icnr-upscale"))
        .args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json", "--max-concurrent-jobs", "1"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start icnr-upscale serve");
    // The log goes to stdout or stderr (either is fine): read both, keep draining them so the server never blocks.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("stdout"));
    let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().expect("stderr"));
    for pipe in [out, err] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    // The listening line names the bound address.
    let addr: SocketAddr = loop {
        let line = rx.recv_timeout(BOUND).expect("the server logs its address");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if let Some(a) = v.get("addr").and_then(|a| a.as_str()) {
            break a.parse().expect("addr");
        }
    };
    let h = start_upload(addr, "", &small_png()).await;
    wait_admitted(addr, 1, "the upload in flight").await;
    let status = Command::new("sh").args(["-c", &format!("kill -TERM {}", child.id())]).status().expect("sh -c kill");
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(child.try_wait().expect("try_wait").is_none(), "exited with a request in flight");
    let a = h.finish().await;
    assert_eq!(a.status, 200, "in-flight request under SIGTERM: {}", lossy(&a.body));
    png_info(&a.body).expect("a complete PNG");
    let exit = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + BOUND;
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("wait task");
    let exit = exit.expect("the server exits after SIGTERM");
    assert_eq!(exit.code(), Some(0), "exit status after SIGTERM: {exit:?}");
}

/// Answers given before the body is needed (400 bad query, 415 content type, 503 shed, 404, 405) to a request
/// with a large body (48 KB on a raw keep-alive connection; 4 MiB from reqwest for the 400 and the 415) still reach
/// the client, and the keep-alive connection stays usable for the next request (or the answer says
/// `Connection: close`). Otherwise a pooled client, still sending, sees a reset instead of
/// the answer, or its next request on that connection fails (`BrokenPipe` / `IncompleteMessage`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_to_large_bodies_keep_the_connection_usable() {
    let server = TestServer::start(args(1, 0)).await;
    let big = noise_png(128, 128); // about 48 KB, more than the server reads with the request head
    let mut failures = Vec::new();
    let cases: &[(&str, &str, &str, u16)] = &[
        ("POST", "/upscale?scale=0", "image/png", 400),
        ("POST", "/upscale", "text/plain", 415),
        ("POST", "/nope", "image/png", 404),
        ("POST", "/healthz", "image/png", 405),
        ("POST", "/upscale", "image/png", 503),
    ];
    for &(method, path, ct, want) in cases {
        // The 503 case: the only place is held by another upload.
        let holder = if want == 503 {
            let h = start_upload(server.addr, "", &small_png()).await;
            wait_admitted(server.addr, 1, "the holder").await;
            Some(h)
        } else {
            None
        };
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        match http::keepalive_exchange(&mut s, method, path, ct, &big).await {
            None => failures.push(format!("{method} {path}: no answer (connection reset before it)")),
            Some(a) if a.status != want => {
                failures.push(format!("{method} {path}: status {}, expected {want}", a.status))
            }
            Some(a) => {
                let closes = a.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
                if !closes {
                    match http::keepalive_exchange(&mut s, "GET", "/healthz", "text/plain", b"").await {
                        Some(h) if h.status == 200 => {}
                        other => failures.push(format!(
                            "{method} {path} -> {want} without `Connection: close`, then the connection was unusable \
                             (next request: {:?})",
                            other.map(|h| h.status)
                        )),
                    }
                }
            }
        }
        if let Some(h) = holder {
            assert_eq!(h.finish().await.status, 200);
            wait_admitted(server.addr, 0, "holder done").await;
        }
    }
    // With a body far larger than socket buffers (4 MiB), a pooled client still gets the 400 and the 415 as problems.
    assert_problem(server.post_raw("?scael=2", "image/png", vec![1; 4 << 20]).await, 400).await;
    assert_problem(server.post_raw("", "text/plain", vec![1; 4 << 20]).await, 415).await;
    server.shutdown().await.expect("clean shutdown");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Malformed and oversized request heads each get their own 4xx (hyper answers those it cannot parse, with an empty
/// body; the app answers the rest with problem+json): garbage, a bad request line, HTTP/9.9, a bad or doubled
/// Content-Length and a bad chunk size 400; a 1 MB URI, a 1 MB header and 10,000 headers 431; 10,000 query
/// parameters (a 69 KB URI) 414; Content-Length with chunked is read as chunked (an empty body: 415). Never a 5xx or
/// a hang; 256 connections that never finish their head (slowloris) do not stop `/healthz` or an upscale on a new
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_heads_and_half_open_connections_do_not_hurt() {
    let server = TestServer::start(args(1, 2)).await;
    let c = client();
    let long_query =
        format!("GET /kernel?scale={} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n", "9".repeat(1 << 20));
    let many_params = format!(
        "GET /kernel?{} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        (0..10_000).map(|i| format!("p{i}=1")).collect::<Vec<_>>().join("&")
    );
    let big_header =
        format!("GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: {}\r\nconnection: close\r\n\r\n", "a".repeat(1 << 20));
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nhost: t\r\n{}connection: close\r\n\r\n",
        (0..10_000).map(|i| format!("x-h{i}: 1\r\n")).collect::<String>()
    );
    let cases: Vec<(&str, u16, Vec<u8>)> = vec![
        ("garbage", 400, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec()),
        ("bad request line", 400, b"GET\r\n\r\n".to_vec()),
        ("HTTP/9", 400, b"GET /healthz HTTP/9.9\r\nhost: t\r\n\r\n".to_vec()),
        ("1 MB URI", 431, long_query.into_bytes()),
        ("10,000 query parameters", 414, many_params.into_bytes()),
        ("1 MB header", 431, big_header.into_bytes()),
        ("10,000 headers", 431, many_headers.into_bytes()),
        (
            "bad content-length",
            400,
            b"POST /upscale HTTP/1.1\r\nhost: t\r\ncontent-type: image/png\r\ncontent-length: -5\r\n\r\n".to_vec(),
        ),
        (
            "two content-lengths",
            400,
            b"POST /upscale HTTP/1.1\r\nhost: t\r\ncontent-type: image/png\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nabcdef"
                .to_vec(),
        ),
        (
            "content-length and chunked",
            415,
            b"POST /upscale HTTP/1.1\r\nhost: t\r\ncontent-type: image/png\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
        ),
        ("bad chunk size", 400, b"POST /upscale HTTP/1.1\r\nhost: t\r\ncontent-type: image/png\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec()),
    ];
    let mut failures = Vec::new();
    for (name, want, bytes) in cases {
        let status = http::status_of(&http::exchange(server.addr, &bytes).await);
        eprintln!("{name}: {status}");
        if status != want {
            failures.push(format!("{name}: status {status}, expected {want}"));
        }
    }
    // Slowloris: 256 connections with half a request head each, held open.
    let mut idle = Vec::new();
    for _ in 0..256 {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(b"POST /upscale HTTP/1.1\r\nhost: t\r\ncontent-ty").await.expect("half a head");
        idle.push(s);
    }
    assert_eq!(healthz(&c, &server).await, 200, "/healthz with 256 half-open connections");
    assert_eq!(upscale_status(&c, &server, small_png()).await, 200, "an upscale with 256 half-open connections");
    drop(idle);
    assert_eq!(healthz(&c, &server).await, 200);
    server.shutdown().await.expect("clean shutdown");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A client that goes away while its job waits in the queue: the job never runs. With the one slot busy on a job
/// that outlasts the test, a second request (whole body sent) is queued behind it and its client disconnects; the
/// queued gauge returns to 0, `jobs_cancelled_total{stage="queued"}` counts it, and the long job still runs. Then
/// the long job's client leaves too: a running cancellation, the slot frees, and no output pixels were produced by
/// either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_whose_client_left_never_runs() {
    let server = TestServer::start(endless_args(1, 2)).await;
    let addr = server.addr;
    let long = send_whole(addr, ENDLESS_JOB_QUERY, endless_job_png()).await;
    server.wait_metric("icnr_upscale_jobs_running", "", |v| v == 1.0).await;
    let queued = send_whole(addr, "", &small_png()).await;
    wait_admitted(addr, 2, "the long job and the queued one").await;
    assert_eq!(server.metric("icnr_upscale_jobs_queued", "").await, 1.0, "the second request is not queued");
    drop(queued);
    server.wait_metric("icnr_upscale_jobs_queued", "", |v| v == 0.0).await;
    server.wait_metric("icnr_upscale_jobs_cancelled_total", "stage=\"queued\"", |v| v == 1.0).await;
    assert_eq!(server.metric("icnr_upscale_jobs_running", "").await, 1.0, "the long job still runs");
    drop(long);
    server.wait_metric("icnr_upscale_jobs_running", "", |v| v == 0.0).await;
    wait_admitted(addr, 0, "everything done").await;
    server.wait_metric("icnr_upscale_jobs_cancelled_total", "stage=\"running\"", |v| v == 1.0).await;
    assert_eq!(
        server.metric("icnr_upscale_output_pixels_total", "").await,
        0.0,
        "a cancelled or dropped job produced output"
    );
    server.shutdown().await.expect("clean shutdown");
}
