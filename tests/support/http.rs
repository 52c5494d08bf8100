//! Raw HTTP/1.1 over a TCP socket, for what a well-behaved client (reqwest) cannot do: half-sent or trickled
//! bodies, vanishing clients, malformed heads, reading an answer the server gives before the body is sent.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on any single wait for the server: a liveness bound, hitting it is a failure, not a slow pass.
pub const BOUND: Duration = Duration::from_secs(120);

/// A parsed answer: status, lower-case header names with their values, and the body (de-chunked).
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Parses a complete `Connection: close` HTTP/1.1 answer (fixed length or chunked body).
pub fn try_parse_answer(bytes: &[u8]) -> Result<RawAnswer, String> {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete response head: {:?}", lossy(bytes)))?;
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| format!("{status_line:?}"))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string())).collect();
    let raw = &bytes[split + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Ok(RawAnswer { status, headers, body })
}

/// [`try_parse_answer`], panicking on a malformed answer.
pub fn parse_answer(bytes: &[u8]) -> RawAnswer {
    try_parse_answer(bytes).unwrap_or_else(|e| panic!("not an HTTP answer: {e}"))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || raw.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
    out
}

/// The status of the answer in `bytes`, 0 if there is none (the connection closed without one).
pub fn status_of(bytes: &[u8]) -> u16 {
    String::from_utf8_lossy(bytes).get(9..12).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Up to 300 bytes of `body` as text, on one line, for messages.
pub fn lossy(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).replace('\n', " ")
}

/// Opens a connection and sends the head of `POST {path}` declaring `content_length` body bytes
/// (`Connection: close`), then `first` bytes of the body. The rest can follow with `write_all`, or never.
pub async fn post_start(
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

/// Reads the whole answer on a `Connection: close` stream (bounded by [`BOUND`]).
pub async fn read_answer(mut s: TcpStream) -> RawAnswer {
    let mut buf = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut buf)).await.expect("an answer in time").expect("read answer");
    parse_answer(&buf)
}

/// Sends `bytes` on a fresh connection and reads until the server closes it (bounded by [`BOUND`]; what arrived
/// by then is returned, possibly nothing).
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(BOUND, s.read_to_end(&mut buf)).await;
    buf
}

/// Polls until nothing accepts connections on `addr` any more (the listener is closed); a liveness bound of about
/// 60 s, not a timing check.
pub async fn wait_until_refused(addr: SocketAddr) {
    for _ in 0..6000 {
        if TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{addr} still accepts connections");
}

/// `GET {path}` on a fresh connection, the whole answer.
pub async fn get(addr: SocketAddr, path: &str) -> RawAnswer {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .expect("send");
    read_answer(s).await
}

/// Sends `head`, then `body_bytes` zero bytes in 64 KiB writes, stopping at the first failed write (the server may
/// answer and close before the body is all sent), and reads the answer that arrived.
pub async fn send_streamed(addr: SocketAddr, head: &str, body_bytes: usize) -> Result<RawAnswer, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    let chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < body_bytes {
        let n = chunk.len().min(body_bytes - sent);
        if s.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        sent += n;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(BOUND, s.read_to_end(&mut buf)).await;
    try_parse_answer(&buf)
}

/// Sends one request with a body on an open keep-alive connection and reads one answer (`Content-Length` framed);
/// `None` if the connection failed first.
pub async fn keepalive_exchange(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Option<RawAnswer> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).await.is_err() || s.write_all(body).await.is_err() {
        return None;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..split]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= split + 4 + len {
                return Some(parse_answer(&buf[..split + 4 + len]));
            }
        }
        match tokio::time::timeout(BOUND, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}
