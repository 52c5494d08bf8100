//! Shared test plumbing: a server on an ephemeral loopback port, image makers, problem and metric checks, and a
//! raw HTTP/1.1 client for what reqwest cannot do (trickled bodies, vanishing clients).

use std::io::Cursor;
use std::net::SocketAddr;
use std::time::Duration;

use icnr_upscale::server::{run, ServeArgs};
use image::{DynamicImage, ImageFormat};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A service started in this test on 127.0.0.1:0 through `server::run`, stopped by [`TestApp::shutdown`].
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Test defaults: the documented defaults with two job slots.
pub fn args() -> ServeArgs {
    ServeArgs { bind: "127.0.0.1:0".to_owned(), max_concurrent_jobs: 2, ..ServeArgs::default() }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(args()).await
}

pub async fn spawn_app_with(args: ServeArgs) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(run(args, listener, async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder().no_proxy().build().expect("reqwest client");
    TestApp { addr, client, stop: Some(tx), handle: Some(handle) }
}

impl TestApp {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client.get(self.url(path_and_query)).send().await.expect("GET")
    }

    /// `POST /upscale{query}` with raw bytes.
    pub async fn post_raw(&self, query: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/upscale{query}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST /upscale")
    }

    /// `POST /upscale{query}` as multipart with `image` and, if given, `kernel`.
    pub async fn post_multipart(&self, query: &str, image: Vec<u8>, kernel: Option<String>) -> reqwest::Response {
        let mut form =
            reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(image).file_name("in.png"));
        if let Some(k) = kernel {
            form = form.text("kernel", k);
        }
        self.client.post(self.url(&format!("/upscale{query}"))).multipart(form).send().await.expect("POST multipart")
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.expect("metrics text")
    }

    /// Polls `/metrics` until `metric{labels}` satisfies `pred` (a liveness bound of 60 s, not a timing check).
    pub async fn wait_metric(&self, name: &str, labels: &str, pred: impl Fn(f64) -> bool) -> f64 {
        for _ in 0..3000 {
            if let Some(v) = metric(&self.metrics().await, name, labels) {
                if pred(v) {
                    return v;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("metric {name}{{{labels}}} never reached the expected value:\n{}", self.metrics().await);
    }

    /// Asks the server to stop and waits for `run` to return (bounded).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.trigger_shutdown();
        self.join().await
    }

    /// Sends the shutdown signal without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `run` to return (bounded by 60 s).
    pub async fn join(&mut self) -> anyhow::Result<()> {
        let handle = self.handle.take().expect("joined once");
        tokio::time::timeout(Duration::from_secs(60), handle).await.expect("run() returned").expect("run() task")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Images

/// A w x h RGB8 test pattern (smooth gradients plus a little texture, deterministic).
pub fn rgb8(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, ((x * 7 + y * 13) % 256) as u8])
    }))
}

/// A w x h RGBA8 pattern with varying alpha.
pub fn rgba8(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgba8(image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([(x * 30) as u8, (y * 40) as u8, 128, ((x + y) * 20) as u8])
    }))
}

/// A w x h RGBA16 pattern using the low byte too (so 16 bits really matter).
pub fn rgba16(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgba16(image::ImageBuffer::from_fn(w, h, |x, y| {
        image::Rgba([(x * 4099 + 1) as u16, (y * 3001 + 7) as u16, 40_000, (x * 1000 + y * 77) as u16])
    }))
}

/// A w x h Luma16 ramp.
pub fn gray16(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(w, h, |x, y| image::Luma([(x * 2003 + y * 511) as u16])))
}

/// Encodes `img` in `format` with the image crate.
pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap_or_else(|e| panic!("encoding {format:?}: {e}"));
    buf.into_inner()
}

pub fn png(img: &DynamicImage) -> Vec<u8> {
    encode(img, ImageFormat::Png)
}

/// A PNG with an embedded ICC profile (`iCCP`).
pub fn png_with_icc(img: &DynamicImage, icc: &[u8]) -> Vec<u8> {
    use image::ImageEncoder as _;
    let mut buf = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut buf);
    enc.set_icc_profile(icc.to_vec()).expect("PNG takes ICC profiles");
    enc.write_image(img.as_bytes(), img.width(), img.height(), img.color().into()).expect("encode PNG");
    buf
}

/// A well-formed PNG signature + IHDR claiming `w` x `h` RGB8, then a tiny IDAT and IEND: the "header bomb".
pub fn png_header_bomb(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream of a few zero bytes: nowhere near the promised size.
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// CRC-32 (ISO 3309, as PNG uses).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Decodes a PNG answer, checking it is a PNG.
pub fn decode_png(bytes: &[u8]) -> DynamicImage {
    assert_eq!(image::guess_format(bytes).expect("a known format"), ImageFormat::Png);
    image::load_from_memory_with_format(bytes, ImageFormat::Png).expect("decodable PNG")
}

/// The ICC profile of a PNG, if any.
pub fn png_icc(bytes: &[u8]) -> Option<Vec<u8>> {
    let reader = png::Decoder::new(Cursor::new(bytes)).read_info().expect("PNG header");
    reader.info().icc_profile.as_ref().map(|p| p.to_vec())
}

// ---------------------------------------------------------------------------------------------------------------
// Answers

/// Checks a problem+json answer with this status and returns its body. Every error must carry `type`, `title`,
/// `status` (equal to the HTTP status) and a non-empty `detail`, and an `X-Request-Id`.
pub async fn assert_problem(res: reqwest::Response, status: u16) -> serde_json::Value {
    let got = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.expect("problem body");
    assert_eq!(got, status, "status; body: {text}");
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/problem+json"),
        "content type of a {status}"
    );
    assert!(headers.get("x-request-id").is_some(), "X-Request-Id on a {status}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("problem body is JSON");
    assert!(v["type"].as_str().is_some_and(|t| t.contains(':')), "type is a URI: {v}");
    assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()), "title: {v}");
    assert_eq!(v["status"].as_u64(), Some(status as u64), "status field: {v}");
    assert!(v["detail"].as_str().is_some_and(|t| !t.is_empty()), "detail: {v}");
    v
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

// ---------------------------------------------------------------------------------------------------------------
// Raw HTTP

/// Opens a connection and sends the head of `POST {path}` declaring `content_length` body bytes, then `first`
/// bytes of the body. The rest can follow with `write_all`, or never.
pub async fn raw_post_start(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    content_length: usize,
    first: &[u8],
) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(first).await.expect("write first bytes");
    s.flush().await.expect("flush");
    s
}

/// Reads a whole `Connection: close` response: (status, lower-case headers, body).
pub async fn raw_read_response(mut s: TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf))
        .await
        .expect("response within 60 s")
        .expect("read response");
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head") + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, buf[end..].to_vec())
}

/// A request that must have been admitted (given a place in the job pool) after an earlier one freed it, on a server
/// with a 1 s request timeout: 200, or that timeout's 504 when the machine is too slow for the budget (admitted all
/// the same). A 503 (shed: the place was never freed) or anything else fails.
pub async fn assert_admitted(res: reqwest::Response) {
    let status = res.status().as_u16();
    let body = res.text().await.unwrap_or_default();
    match status {
        200 => {}
        504 => eprintln!("note: admitted, but the machine was too slow for the 1 s budget (504): {body}"),
        s => panic!("expected the request to be admitted (200, or 504 on a slow machine), got {s}: {body}"),
    }
}
