//! Shared helpers of the hostile-input tests (`tests/corpus.rs`, `tests/robustness.rs`): an in-process server on
//! 127.0.0.1:0, problem+json checks and a small PNG reader for the responses.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::path::PathBuf;

use icnr_upscale::server::{run, ServeArgs};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A service started in this process on an ephemeral loopback port, stopped by [`TestServer::shutdown`].
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// Binds 127.0.0.1:0 and serves `args` (its `bind` is ignored) until [`TestServer::shutdown`].
    pub async fn start(args: ServeArgs) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(run(args, listener, async move {
            let _ = rx.await;
        }));
        TestServer { addr, stop: Some(tx), handle }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Asks the server to stop and waits for `run` to return.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.handle).await.expect("server task panicked")
    }

    /// Whether `run` has returned (it must not, while the server is meant to be up).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// The documented default limits (`ServeArgs::default()`), bound to loopback; tests override what they exercise.
pub fn args() -> ServeArgs {
    ServeArgs { bind: "127.0.0.1:0".into(), ..ServeArgs::default() }
}

pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("corpus")
}

pub fn corpus_file(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A 64x48 RGB PNG from the corpus: a request with it and default parameters must succeed.
pub fn small_png() -> Vec<u8> {
    corpus_file("ok_rgb8.png")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("reqwest client")
}

/// Checks an error response is RFC 9457 `application/problem+json` with `type`, `title`, `status` (equal to the
/// HTTP status) and a non-empty `detail`; returns the detail.
pub fn check_problem(status: u16, content_type: Option<&str>, body: &[u8]) -> Result<String, String> {
    let ct = content_type.unwrap_or("");
    if !ct.starts_with("application/problem+json") {
        return Err(format!("content-type {ct:?}, expected application/problem+json"));
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("problem body is not JSON ({e}): {}", lossy(body)))?;
    for field in ["type", "title", "detail"] {
        match v.get(field).and_then(|f| f.as_str()) {
            Some(s) if !s.is_empty() => {}
            _ => return Err(format!("problem without a non-empty string `{field}`: {v}")),
        }
    }
    if v.get("status").and_then(|s| s.as_u64()) != Some(status as u64) {
        return Err(format!("problem `status` is not {status}: {v}"));
    }
    Ok(v["detail"].as_str().unwrap_or_default().to_string())
}

pub fn lossy(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    s.replace('\n', " ")
}

/// Header facts of a PNG, read from the bytes themselves (independent of the service's own encoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PngInfo {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub bit_depth: u8,
    pub has_iccp: bool,
}

/// Parses the signature, IHDR and the chunk list (CRCs are checked by the decoder in [`png_pixels`]).
pub fn png_info(bytes: &[u8]) -> Result<PngInfo, String> {
    if bytes.len() < 33 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return Err(format!("not a PNG: {}", lossy(&bytes[..bytes.len().min(16)])));
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let channels = match bytes[25] {
        0 => 1,
        2 => 3,
        3 => 3,
        4 => 2,
        6 => 4,
        t => return Err(format!("bad PNG colour type {t}")),
    };
    let mut has_iccp = false;
    let mut seen_iend = false;
    let mut pos = 8;
    while pos + 12 <= bytes.len() {
        let len = be(&bytes[pos..]) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        has_iccp |= kind == b"iCCP";
        seen_iend |= kind == b"IEND";
        pos += 12 + len;
    }
    if !seen_iend || pos != bytes.len() {
        return Err("PNG is truncated or has trailing bytes (no complete IEND)".into());
    }
    Ok(PngInfo { width: be(&bytes[16..]), height: be(&bytes[20..]), channels, bit_depth: bytes[24], has_iccp })
}

/// Decodes a PNG fully (checking every CRC) and returns a pixel getter: `(x, y) -> samples` in the PNG's own
/// depth (8-bit values 0..=255 or 16-bit 0..=65535), `channels` values per pixel.
pub fn png_pixels(bytes: &[u8]) -> Result<impl Fn(u32, u32) -> Vec<u32>, String> {
    let info = png_info(bytes)?;
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .map_err(|e| format!("output PNG does not decode: {e}"))?;
    let n = info.channels as usize;
    let (w, px): (u32, Vec<u32>) = if info.bit_depth == 16 {
        (img.width(), img.to_rgba16().into_raw().into_iter().map(u32::from).collect())
    } else {
        (img.width(), img.to_rgba8().into_raw().into_iter().map(u32::from).collect())
    };
    Ok(move |x: u32, y: u32| {
        let i = (y as usize * w as usize + x as usize) * 4;
        let mut v = px[i..i + 4].to_vec();
        v.truncate(n.max(3));
        v
    })
}
