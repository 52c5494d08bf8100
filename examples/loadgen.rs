//! A closed-loop HTTP load generator for benchmarking and soaking `icnr-upscale serve` (and its Python peer).
//!
//! ```text
//! cargo run --release --example loadgen -- --url 'http://127.0.0.1:8080/upscale?scale=2' --body img.png \
//!     --connections 8 --duration 20 [--requests N] [--warmup 2] [--healthz-probe]
//! ```
//!
//! Each of `--connections` workers keeps exactly one request in flight: send, read the whole response, record the
//! status and latency, repeat. The run stops issuing requests at `--duration` seconds or after `--requests` requests,
//! whichever comes first, then waits for the requests in flight (each bounded by `--timeout`). With neither bound
//! given it runs for 10 s; with only `--requests` it still stops at `MAX_DURATION_SECS`, so a run is always bounded in
//! time.
//!
//! Safety: it only ever talks to loopback. The URL's host must be `localhost` (every address it resolves to must be
//! loopback), an address in 127.0.0.0/8, or `::1`; anything else is refused before a single packet is sent. Proxies
//! from the environment are ignored and redirects are not followed, so no request can leave the machine.
//!
//! Output: human-readable lines (requests/s, latency p50/p90/p99/max, status-code counts, non-2xx, 503s and how many
//! carried `Retry-After`, transport errors, and with `--healthz-probe` the health probe's record), then one JSON
//! object as the last stdout line. Exit code: 0, or 1 when `--fail-on-error` is given and anything was non-2xx, a
//! transport error, a non-PNG 2xx body under `--check-png`, or a failed health probe; 2 on bad arguments or a
//! refused host.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Method, Url};
use serde_json::json;

/// Upper bound of any run, whatever the flags say: a load generator must never run unattended forever.
const MAX_DURATION_SECS: f64 = 3600.0;
/// Interval between `/healthz` probes.
const HEALTHZ_INTERVAL: Duration = Duration::from_millis(100);
/// How many distinct transport-error messages to keep for the report.
const ERROR_SAMPLES: usize = 5;
/// Pause of a worker after a transport error (e.g. the server is gone), so it does not spin on the CPU.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

#[derive(Debug, Parser)]
#[command(about = "Closed-loop HTTP load generator for loopback targets only")]
struct Args {
    /// Target URL; its host must be loopback (127.0.0.0/8, ::1 or localhost).
    #[arg(long)]
    url: String,
    /// File sent as the request body (POST by default when given).
    #[arg(long)]
    body: Option<PathBuf>,
    /// HTTP method; default POST with --body, else GET.
    #[arg(long)]
    method: Option<String>,
    /// Content-Type of the body.
    #[arg(long, default_value = "image/png")]
    content_type: String,
    /// Extra request header `Name: value`; repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Measured duration in seconds (default 10 when --requests is not given either).
    #[arg(long)]
    duration: Option<f64>,
    /// Stop after this many measured requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds of load before measuring, whose results are discarded.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Per-request timeout in seconds (connect + send + whole response).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Poll GET /healthz on the same host every 100 ms during the measured run, on its own connection.
    #[arg(long)]
    healthz_probe: bool,
    /// Timeout of one health probe, in milliseconds; a slower answer counts as a failure.
    #[arg(long, default_value_t = 1000)]
    healthz_timeout_ms: u64,
    /// Count 2xx responses whose body is not a PNG.
    #[arg(long)]
    check_png: bool,
    /// Exit 1 if anything was non-2xx, a transport error, a bad PNG (with --check-png) or a failed health probe.
    #[arg(long)]
    fail_on_error: bool,
    /// Worker threads of the load generator's own runtime (keep it small: it shares the CPU with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    retry_after_503: u64,
    errors_timeout: u64,
    errors_connect: u64,
    errors_other: u64,
    error_samples: Vec<String>,
    bytes_received: u64,
    not_png: u64,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.latencies_us.extend(o.latencies_us);
        for (s, n) in o.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.retry_after_503 += o.retry_after_503;
        self.errors_timeout += o.errors_timeout;
        self.errors_connect += o.errors_connect;
        self.errors_other += o.errors_other;
        for e in o.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&e) {
                self.error_samples.push(e);
            }
        }
        self.bytes_received += o.bytes_received;
        self.not_png += o.not_png;
    }
    fn errors(&self) -> u64 {
        self.errors_timeout + self.errors_connect + self.errors_other
    }
    fn record_error(&mut self, e: &reqwest::Error) {
        if e.is_timeout() {
            self.errors_timeout += 1;
        } else if e.is_connect() {
            self.errors_connect += 1;
        } else {
            self.errors_other += 1;
        }
        let msg = error_chain(e);
        if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&msg) {
            self.error_samples.push(msg);
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The request every worker sends.
struct Job {
    client: Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<bytes::Bytes>,
    check_png: bool,
}

impl Job {
    /// Sends one request and reads the whole response into `t`; `false` on a transport error.
    async fn one(&self, t: &mut Tally) -> bool {
        let mut req = self.client.request(self.method.clone(), self.url.clone()).headers(self.headers.clone());
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        let start = Instant::now();
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                t.record_error(&e);
                return false;
            }
        };
        let status = resp.status();
        let retry_after = resp.headers().contains_key(RETRY_AFTER);
        let mut head = Vec::with_capacity(PNG_SIGNATURE.len());
        let mut n = 0u64;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if head.len() < PNG_SIGNATURE.len() {
                        let take = (PNG_SIGNATURE.len() - head.len()).min(c.len());
                        head.extend_from_slice(&c[..take]);
                    }
                    n += c.len() as u64;
                }
                Ok(None) => break,
                Err(e) => {
                    t.record_error(&e);
                    return false;
                }
            }
        }
        t.latencies_us.push(start.elapsed().as_micros() as u64);
        *t.statuses.entry(status.as_u16()).or_default() += 1;
        if status.as_u16() == 503 && retry_after {
            t.retry_after_503 += 1;
        }
        if self.check_png && status.is_success() && head != PNG_SIGNATURE {
            t.not_png += 1;
        }
        t.bytes_received += n;
        true
    }
}

/// Runs `connections` workers until `deadline` or until `budget` requests have been started.
async fn phase(job: Arc<Job>, connections: usize, deadline: Instant, budget: Option<u64>) -> (Tally, Duration) {
    let started = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let job = job.clone();
        let started = started.clone();
        set.spawn(async move {
            let mut t = Tally::default();
            while Instant::now() < deadline {
                if let Some(b) = budget {
                    if started.fetch_add(1, Ordering::Relaxed) >= b {
                        break;
                    }
                }
                if !job.one(&mut t).await {
                    // A refused or broken connection fails at once: back off a little rather than spin.
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
            t
        });
    }
    let mut all = Tally::default();
    while let Some(r) = set.join_next().await {
        all.merge(r.expect("load worker panicked"));
    }
    (all, t0.elapsed())
}

/// The health prober's record.
#[derive(Default)]
struct Probe {
    probes: u64,
    failures: u64,
    latencies_us: Vec<u64>,
    failure_samples: Vec<String>,
}

async fn probe_healthz(url: Url, timeout: Duration, stop: Arc<tokio::sync::Notify>) -> Probe {
    let client = match base_client(1).timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            return Probe { probes: 1, failures: 1, failure_samples: vec![error_chain(&e)], ..Default::default() }
        }
    };
    let mut p = Probe::default();
    let mut tick = tokio::time::interval(HEALTHZ_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.notified() => break,
            _ = tick.tick() => {}
        }
        p.probes += 1;
        let start = Instant::now();
        let fail = match client.get(url.clone()).send().await {
            Ok(r) => {
                let status = r.status();
                match r.bytes().await {
                    Ok(_) if status.as_u16() == 200 => None,
                    Ok(_) => Some(format!("status {status}")),
                    Err(e) => Some(error_chain(&e)),
                }
            }
            Err(e) => Some(error_chain(&e)),
        };
        p.latencies_us.push(start.elapsed().as_micros() as u64);
        if let Some(f) = fail {
            p.failures += 1;
            if p.failure_samples.len() < ERROR_SAMPLES && !p.failure_samples.contains(&f) {
                p.failure_samples.push(f);
            }
        }
    }
    p
}

fn base_client(connections: usize) -> reqwest::ClientBuilder {
    Client::builder()
        // Never route through a proxy named in the environment, never follow a redirect: loopback only.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
}

/// Refuses any URL whose host is not loopback.
async fn check_loopback(url: &Url) -> Result<(), String> {
    if url.scheme() != "http" {
        return Err(format!("scheme {:?} not supported: use http:// on loopback", url.scheme()));
    }
    let host = url.host_str().ok_or("the URL has no host")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return if ip.is_loopback() {
            Ok(())
        } else {
            Err(format!("refusing {ip}: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed"))
        };
    }
    if !host.eq_ignore_ascii_case("localhost") {
        return Err(format!("refusing host {host:?}: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed"));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<_> =
        tokio::net::lookup_host((host, port)).await.map_err(|e| format!("cannot resolve {host}: {e}"))?.collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(format!("refusing {host}: it resolves to {addrs:?}, not only loopback addresses"));
    }
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1e3
}

fn ms_json(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!((v * 1000.0).round() / 1000.0)
    } else {
        serde_json::Value::Null
    }
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    std::process::exit(rt.block_on(run(args)));
}

async fn run(args: Args) -> i32 {
    let url = match Url::parse(&args.url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("loadgen: bad --url {:?}: {e}", args.url);
            return 2;
        }
    };
    if let Err(e) = check_loopback(&url).await {
        eprintln!("loadgen: {e}");
        return 2;
    }
    if args.connections == 0 || args.connections > 10_000 {
        eprintln!("loadgen: --connections must be 1 to 10000");
        return 2;
    }
    for (name, v) in [("--duration", args.duration), ("--warmup", Some(args.warmup)), ("--timeout", Some(args.timeout))]
    {
        if let Some(v) = v {
            if !v.is_finite() || !(0.0..=MAX_DURATION_SECS).contains(&v) {
                eprintln!("loadgen: {name} must be 0 to {MAX_DURATION_SECS} seconds");
                return 2;
            }
        }
    }
    let duration = match (args.duration, args.requests) {
        (Some(d), _) => d,
        (None, Some(_)) => MAX_DURATION_SECS,
        (None, None) => 10.0,
    };
    let body = match &args.body {
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(bytes::Bytes::from(b)),
            Err(e) => {
                eprintln!("loadgen: cannot read --body {}: {e}", p.display());
                return 2;
            }
        },
        None => None,
    };
    let method = match &args.method {
        Some(m) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                eprintln!("loadgen: bad --method {m:?}");
                return 2;
            }
        },
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut headers = HeaderMap::new();
    if body.is_some() {
        match HeaderValue::from_str(&args.content_type) {
            Ok(v) => {
                headers.insert(CONTENT_TYPE, v);
            }
            Err(_) => {
                eprintln!("loadgen: bad --content-type");
                return 2;
            }
        }
    }
    for h in &args.headers {
        let parsed = h.split_once(':').and_then(|(k, v)| {
            Some((HeaderName::from_bytes(k.trim().as_bytes()).ok()?, HeaderValue::from_str(v.trim()).ok()?))
        });
        match parsed {
            Some((k, v)) => {
                headers.append(k, v);
            }
            None => {
                eprintln!("loadgen: bad --header {h:?}: expected `Name: value`");
                return 2;
            }
        }
    }
    let client = match base_client(args.connections).timeout(Duration::from_secs_f64(args.timeout)).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: cannot build the HTTP client: {}", error_chain(&e));
            return 2;
        }
    };
    let job = Arc::new(Job { client, method, url: url.clone(), headers, body, check_png: args.check_png });
    let body_kib = job.body.as_ref().map_or(0.0, |b| b.len() as f64 / 1024.0);
    println!(
        "target {} {} ({body_kib:.0} KiB body), {} connections, {}{}",
        job.method,
        url,
        args.connections,
        match args.duration {
            Some(d) => format!("{d} s"),
            None if args.requests.is_some() => format!("at most {MAX_DURATION_SECS} s"),
            None => format!("{duration} s"),
        },
        args.requests.map_or(String::new(), |n| format!(", at most {n} requests")),
    );

    if args.warmup > 0.0 {
        let deadline = Instant::now() + Duration::from_secs_f64(args.warmup);
        let (w, _) = phase(job.clone(), args.connections, deadline, None).await;
        println!("warm-up: {} responses in {} s (discarded)", w.latencies_us.len(), args.warmup);
    }

    let stop = Arc::new(tokio::sync::Notify::new());
    let prober = if args.healthz_probe {
        let mut hz = url.clone();
        hz.set_path("/healthz");
        hz.set_query(None);
        let timeout = Duration::from_millis(args.healthz_timeout_ms);
        Some(tokio::spawn(probe_healthz(hz, timeout, stop.clone())))
    } else {
        None
    };
    let deadline = Instant::now() + Duration::from_secs_f64(duration);
    let (mut t, elapsed) = phase(job.clone(), args.connections, deadline, args.requests).await;
    stop.notify_one();
    let probe = match prober {
        Some(h) => Some(h.await.expect("health prober panicked")),
        None => None,
    };

    t.latencies_us.sort_unstable();
    let secs = elapsed.as_secs_f64();
    let responses = t.latencies_us.len() as u64;
    let ok = t.statuses.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum::<u64>();
    let non_2xx = responses - ok;
    let s503 = t.statuses.get(&503).copied().unwrap_or(0);
    let rps = responses as f64 / secs;
    let ok_rps = ok as f64 / secs;
    let mean =
        if responses > 0 { t.latencies_us.iter().sum::<u64>() as f64 / responses as f64 / 1e3 } else { f64::NAN };
    let (p50, p90, p99) =
        (percentile(&t.latencies_us, 50.0), percentile(&t.latencies_us, 90.0), percentile(&t.latencies_us, 99.0));
    let max = t.latencies_us.last().map_or(f64::NAN, |&v| v as f64 / 1e3);

    println!("requests: {responses} responses in {secs:.2} s = {rps:.1} req/s ({ok_rps:.1} 2xx/s)");
    println!("latency ms: p50 {p50:.1}, p90 {p90:.1}, p99 {p99:.1}, max {max:.1}, mean {mean:.1}");
    let codes: Vec<String> = t.statuses.iter().map(|(s, n)| format!("{s}={n}")).collect();
    println!("status: {}", if codes.is_empty() { "none".into() } else { codes.join(" ") });
    println!("non-2xx: {non_2xx} (503: {s503}, of which with Retry-After: {})", t.retry_after_503);
    println!(
        "transport errors: {} (timeout {}, connect {}, other {}){}",
        t.errors(),
        t.errors_timeout,
        t.errors_connect,
        t.errors_other,
        if t.error_samples.is_empty() { String::new() } else { format!(": {}", t.error_samples.join(" | ")) }
    );
    if args.check_png {
        println!("2xx bodies that are not PNG: {}", t.not_png);
    }
    println!("received: {:.1} MiB", t.bytes_received as f64 / (1024.0 * 1024.0));
    let probe_json = probe.as_ref().map(|p| {
        let mut l = p.latencies_us.clone();
        l.sort_unstable();
        let (p50, p99) = (percentile(&l, 50.0), percentile(&l, 99.0));
        let pmax = l.last().map_or(f64::NAN, |&v| v as f64 / 1e3);
        println!(
            "healthz probe: {} probes, {} failures, latency ms p50 {p50:.1}, p99 {p99:.1}, max {pmax:.1}{}",
            p.probes,
            p.failures,
            if p.failure_samples.is_empty() { String::new() } else { format!(": {}", p.failure_samples.join(" | ")) }
        );
        json!({"probes": p.probes, "failures": p.failures, "p50_ms": ms_json(p50), "p99_ms": ms_json(p99),
               "max_ms": ms_json(pmax), "failure_samples": p.failure_samples})
    });

    let statuses: serde_json::Map<String, serde_json::Value> =
        t.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect();
    let report = json!({
        "url": url.as_str(),
        "method": job.method.as_str(),
        "connections": args.connections,
        "duration_s": (secs * 1000.0).round() / 1000.0,
        "responses": responses,
        "requests_per_s": (rps * 100.0).round() / 100.0,
        "ok_2xx": ok,
        "ok_per_s": (ok_rps * 100.0).round() / 100.0,
        "non_2xx": non_2xx,
        "status_503": s503,
        "status_503_with_retry_after": t.retry_after_503,
        "status_counts": statuses,
        "errors": t.errors(),
        "errors_timeout": t.errors_timeout,
        "errors_connect": t.errors_connect,
        "errors_other": t.errors_other,
        "error_samples": t.error_samples,
        "not_png": if args.check_png { json!(t.not_png) } else { serde_json::Value::Null },
        "bytes_received": t.bytes_received,
        "latency_ms": {"p50": ms_json(p50), "p90": ms_json(p90), "p99": ms_json(p99), "max": ms_json(max),
                       "mean": ms_json(mean)},
        "healthz": probe_json,
    });
    println!("{report}");

    let failed = non_2xx > 0 || t.errors() > 0 || t.not_png > 0 || probe.as_ref().is_some_and(|p| p.failures > 0);
    if args.fail_on_error && failed {
        1
    } else {
        0
    }
}
