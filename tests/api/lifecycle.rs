//! The job pool under pressure: shedding with 503, vanished clients, timeouts of running jobs, graceful shutdown.
//!
//! Nothing here measures time. To hold a job slot for as long as a test needs, a "big job" is used: a 4096 x 4096
//! solid image (a small PNG) at scale 8 with a 9 x 9 untied kernel, about 1.5 TFLOP of work, far longer than any
//! of these tests; it is cancelled when its client goes away, which the tests also check. States are observed
//! through the `/metrics` gauges.

use std::sync::OnceLock;

use icnr_upscale::server::ServeArgs;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::*;

const BIG_JOB_QUERY: &str = "?scale=8&kernel_size=9&init=default";

/// The big job's input, encoded once.
fn big_input() -> &'static [u8] {
    static BIG: OnceLock<Vec<u8>> = OnceLock::new();
    BIG.get_or_init(|| {
        png(&image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(4096, 4096, image::Rgb([90, 120, 200]))))
    })
}

/// Limits that let the big job in (its output is 32768 x 32768).
fn big_args(jobs: usize, queue: usize) -> ServeArgs {
    ServeArgs { max_concurrent_jobs: jobs, max_queue: queue, max_output_pixels: 1 << 31, ..args() }
}

/// Sends a whole `POST /upscale{query}` on a raw connection and returns it, unread: dropping it is a client that
/// vanishes.
async fn raw_post(app: &TestServer, query: &str, body: &[u8]) -> TcpStream {
    let mut s = http::post_start(app.addr, &format!("/upscale{query}"), "image/png", body.len(), &[]).await;
    s.write_all(body).await.expect("write body");
    s.flush().await.expect("flush");
    s
}

/// With every slot running and no queue, a new request is shed at once with 503 + `Retry-After`, counted in
/// `requests_shed`, while `/healthz` still answers. When the running client goes away its job is told to stop and
/// the slot frees, and the next request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pool_sheds_with_503_and_retry_after() {
    let app = TestServer::start(big_args(1, 0)).await;
    let running = raw_post(&app, BIG_JOB_QUERY, big_input()).await;
    app.wait_metric("icnr_upscale_jobs_running", "", |v| v == 1.0).await;

    let small = png(&rgb8(8, 8));
    // Small bodies and bodies far larger than socket buffers alike get the 503 (the body is read away first, so
    // the answer is not lost to a connection reset).
    for body in [small.clone(), vec![0x55; 3 << 20], small.clone()] {
        let res = app.post_raw("", "image/png", body).await;
        assert_eq!(res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()), Some("1".to_owned()));
        assert_problem(res, 503).await;
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
    let m = app.metrics().await;
    assert_eq!(metric(&m, "icnr_upscale_requests_shed_total", ""), Some(3.0));
    assert_eq!(
        metric_with(&m, "icnr_upscale_http_requests_total", &["route=\"/upscale\"", "status=\"503\""]),
        Some(3.0)
    );

    drop(running);
    app.wait_metric("icnr_upscale_jobs_running", "", |v| v == 0.0).await;
    app.wait_metric("icnr_upscale_jobs_cancelled_total", "stage=\"running\"", |v| v == 1.0).await;
    assert_eq!(app.post_raw("", "image/png", small).await.status(), 200);
    app.shutdown().await.unwrap();
}

/// A slow upload holds a queue place (never a CPU): with one place in all, a second request is shed, and the
/// place frees when the slow client finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_holds_a_queue_place_not_a_slot() {
    let app = TestServer::start(ServeArgs { max_concurrent_jobs: 1, max_queue: 0, ..args() }).await;
    let input = png(&rgb8(12, 12));
    let mut slow = http::post_start(app.addr, "/upscale", "image/png", input.len(), &input[..5]).await;
    app.wait_metric("icnr_upscale_jobs_queued", "", |v| v == 1.0).await;
    assert_eq!(metric(&app.metrics().await, "icnr_upscale_jobs_running", ""), Some(0.0));
    assert_problem(app.post_raw("", "image/png", input.clone()).await, 503).await;

    slow.write_all(&input[5..]).await.unwrap();
    let RawAnswer { status, headers, body } = http::read_answer(slow).await;
    assert_eq!(status, 200);
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "image/png"));
    assert_eq!(decode_png(&body).to_rgb8().dimensions(), (24, 24));
    assert_eq!(app.post_raw("", "image/png", input).await.status(), 200);
    app.shutdown().await.unwrap();
}

/// A client that goes away while its job is still queued: the job is dropped without running (the queued gauge
/// returns to 0, `jobs_cancelled_total{stage="queued"}` counts it, and no output pixels are produced for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_of_a_vanished_client_is_dropped() {
    let app = TestServer::start(big_args(1, 1)).await;
    let running = raw_post(&app, BIG_JOB_QUERY, big_input()).await;
    app.wait_metric("icnr_upscale_jobs_running", "", |v| v == 1.0).await;

    let queued = raw_post(&app, "", &png(&rgb8(8, 8))).await;
    app.wait_metric("icnr_upscale_jobs_queued", "", |v| v == 1.0).await;
    drop(queued);
    app.wait_metric("icnr_upscale_jobs_queued", "", |v| v == 0.0).await;
    app.wait_metric("icnr_upscale_jobs_cancelled_total", "stage=\"queued\"", |v| v == 1.0).await;

    drop(running);
    app.wait_metric("icnr_upscale_jobs_running", "", |v| v == 0.0).await;
    app.wait_metric("icnr_upscale_jobs_cancelled_total", "stage=\"running\"", |v| v == 1.0).await;
    // Neither job produced anything.
    assert_eq!(metric(&app.metrics().await, "icnr_upscale_output_pixels_total", ""), Some(0.0));
    app.shutdown().await.unwrap();
}

/// A job that runs past the request timeout is answered 504 and stopped (its slot frees).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_the_timeout_is_504_and_stopped() {
    let app = TestServer::start(ServeArgs { request_timeout_secs: 1, ..big_args(1, 0) }).await;
    let res = app.post_raw(BIG_JOB_QUERY, "image/png", big_input().to_vec()).await;
    let p = assert_problem(res, 504).await;
    assert!(p["detail"].as_str().unwrap().contains("1 s"), "{p}");
    app.wait_metric("icnr_upscale_jobs_running", "", |v| v == 0.0).await;
    app.wait_metric("icnr_upscale_jobs_cancelled_total", "stage=\"running\"", |v| v == 1.0).await;
    // The slot is free: the next request is admitted (within the same 1 s budget, so 200 or, slow machine, 504).
    assert_admitted(app.post_raw("", "image/png", png(&rgb8(4, 4))).await).await;
    app.shutdown().await.unwrap();
}

/// Graceful shutdown: with a request in flight (admitted, body still arriving), the shutdown signal stops new
/// connections, the in-flight request still completes with 200, and `run` returns `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let mut app = spawn_app().await;
    let input = png(&rgb8(30, 20));
    let mut in_flight = http::post_start(app.addr, "/upscale", "image/png", input.len(), &input[..20]).await;
    app.wait_metric("icnr_upscale_jobs_queued", "", |v| v == 1.0).await;

    app.trigger_shutdown();
    // New connections are refused once the listener is closed (polled; a liveness bound of about 60 s).
    let mut refused = false;
    for _ in 0..6000 {
        if TcpStream::connect(app.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener still accepts after shutdown");

    in_flight.write_all(&input[20..]).await.unwrap();
    let RawAnswer { status, body, .. } = http::read_answer(in_flight).await;
    assert_eq!(status, 200);
    assert_eq!(decode_png(&body).to_rgb8().dimensions(), (60, 40));
    app.join().await.expect("run() returns Ok after a graceful shutdown");
}

/// A connection that goes silent (half a request head, or an idle keep-alive connection after its answer) is
/// closed once nothing has moved on it for the request timeout plus 5 s, so silent clients cannot pile up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed() {
    use tokio::io::AsyncReadExt;
    let app = TestServer::start(ServeArgs { request_timeout_secs: 1, ..args() }).await;

    let half_head = async {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(60), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the silent connection was never closed");
        assert!(!String::from_utf8_lossy(&buf).contains("200 OK"), "{}", String::from_utf8_lossy(&buf));
    };
    let idle_keep_alive = async {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(60), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the idle keep-alive connection was never closed");
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 200 OK") && text.ends_with(r#"{"status":"ok"}"#), "{text}");
    };
    tokio::join!(half_head, idle_keep_alive);
    // The server itself is fine.
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.shutdown().await.unwrap();
}

/// Shutdown while a CPU job is running: with the big job running (it cannot finish within the 1 s request timeout
/// on any machine this runs on) and shutdown asked, new connections are refused, the running request is answered
/// (504 when its budget runs out: the job is stopped, not waited for), and `run` returns `Ok` within the grace
/// period (request timeout + 5 s), which bounds how long a shutdown waits for work in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_a_cpu_job_runs_stops_it_within_the_grace_period() {
    let mut app = TestServer::start(ServeArgs { request_timeout_secs: 1, ..big_args(1, 0) }).await;
    let running = raw_post(&app, BIG_JOB_QUERY, big_input()).await;
    app.wait_metric("icnr_upscale_jobs_running", "", |v| v == 1.0).await;

    app.trigger_shutdown();
    let mut refused = false;
    for _ in 0..6000 {
        if TcpStream::connect(app.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener still accepts after shutdown");
    let RawAnswer { status, headers, body } = http::read_answer(running).await;
    assert!(status == 504 || status == 200, "the running request during shutdown: {status}");
    if status == 504 {
        assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "application/problem+json"));
    }
    // `join` is bounded (60 s); the grace period is 6 s.
    app.join().await.expect("run() returns Ok after the grace period at the latest");
    drop(body);
}

/// `--cpu` / `ICNR_UPSCALE_CPU`: an unknown name, or a path this CPU lacks, stops the service from starting with an
/// error that lists the valid names (never a silent downgrade); every path this CPU has, `avx512-novbmi` included
/// on an AVX-512 machine, starts and upscales.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_path_is_forced_or_the_service_refuses_to_start() {
    use icnr_upscale::cpu_names;
    use icnr_upscale::engine::{Options, PATH_NAMES};

    let refusal = |cpu: &str| {
        let args = ServeArgs { cpu: cpu.to_owned(), ..args() };
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let res = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                icnr_upscale::server::run(args, listener, std::future::pending::<()>()),
            )
            .await
            .expect("run() refuses at once instead of serving");
            format!("{:#}", res.expect_err("run() must refuse this --cpu"))
        }
    };
    let e = refusal("avx1024").await;
    for name in cpu_names() {
        assert!(e.contains(name), "{e} lacks {name}");
    }
    // No CPU has every path (NEON is aarch64's, AVX2 and AVX-512 x86-64's).
    let lacking = PATH_NAMES.into_iter().find(|n| !Options::forced(n).unwrap().is_supported()).unwrap();
    let e = refusal(lacking).await;
    assert!(e.contains(&format!("cannot run the {lacking} path")) && e.contains("valid names here: auto"), "{e}");

    for opts in Options::every_supported() {
        let app = TestServer::start(ServeArgs { cpu: opts.path_name().to_owned(), ..args() }).await;
        let res = app.post_raw("?scale=2", "image/png", png(&rgb8(9, 7))).await;
        assert_eq!(res.status(), 200, "--cpu {}", opts.path_name());
        assert_eq!(decode_png(&res.bytes().await.unwrap()).to_rgb8().dimensions(), (18, 14));
        app.shutdown().await.unwrap();
    }
}
