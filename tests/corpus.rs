//! Hostile input against the live service: every case of the committed corpus
//! (`tests/corpus/`, made by `scripts/make_corpus.py`, listed in `tests/corpus/manifest.json`), every bad query
//! value, bad kernel JSON in multipart uploads and bodies over the limit. Each answer must be the expected status;
//! errors must be `application/problem+json` with `type`, `title`, `status` and `detail`; successes must be a
//! complete PNG of the expected size, depth and alpha, with the expected pixels where the manifest gives them.
//! After all of it the service must still be healthy and still upscale.
//!
//! The server runs in-process on 127.0.0.1:0; every request goes over real TCP.

mod support;

use icnr_upscale::server::ServeArgs;
use serde::Deserialize;
use support::http::{self, lossy};
use support::images::{corpus_dir, corpus_file, small_png};
use support::png::{png_info, png_pixels};
use support::problem::{check_problem, detail};
use support::server::{args, client, TestServer};

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

/// Checks an error answer: the status and a problem+json body whose detail mentions every word of `mention`
/// (case-insensitive). Returns the detail.
fn expect_problem(a: &Answer, status: &[u16], mention: &[&str]) -> Result<String, String> {
    if !status.contains(&a.status) {
        return Err(format!("status {}, expected {status:?}; body: {}", a.status, lossy(&a.body)));
    }
    let detail = detail(&check_problem(a.status, a.content_type.as_deref(), &a.body)?);
    let lower = detail.to_lowercase();
    for m in mention {
        if !lower.contains(&m.to_lowercase()) {
            return Err(format!("detail does not mention {m:?}: {detail:?}"));
        }
    }
    Ok(detail)
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

/// Healthy and still doing real work.
async fn assert_still_serving(c: &reqwest::Client, server: &TestServer) {
    let h = send(c.get(server.url("/healthz"))).await.expect("healthz");
    assert_eq!(h.status, 200, "healthz after the corpus");
    let a = send(c.post(server.url("/upscale?scale=2")).header("content-type", "image/png").body(small_png()))
        .await
        .expect("upscale");
    assert_eq!(a.status, 200, "a normal upscale after the corpus: {}", lossy(&a.body));
    let info = png_info(&a.body).expect("a PNG");
    assert_eq!((info.width, info.height), (128, 96));
    assert!(!server.is_finished(), "the server stopped");
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
    assert_still_serving(&c, &server).await;
    server.shutdown().await.expect("clean shutdown");
    assert!(failures.is_empty(), "{} of {} corpus cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Every bad query value is a 400 whose detail names the parameter at fault, on `POST /upscale` and on
/// `GET /kernel`; unknown and repeated parameters name the allowed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_values_are_400_naming_the_problem() {
    let bad: &[(&str, &[&str])] = &[
        ("scale=0", &["scale"]),
        ("scale=1", &["scale"]),
        ("scale=9", &["scale"]),
        ("scale=99", &["scale"]),
        ("scale=abc", &["scale"]),
        ("scale=", &["scale"]),
        ("scale=2.5", &["scale"]),
        ("scale=-2", &["scale"]),
        ("scale=99999999999999999999", &["scale"]),
        ("kernel_size=0", &["kernel_size"]),
        ("kernel_size=2", &["kernel_size"]),
        ("kernel_size=4", &["kernel_size"]),
        ("kernel_size=11", &["kernel_size"]),
        ("kernel_size=999", &["kernel_size"]),
        ("kernel_size=18446744073709551617", &["kernel_size"]),
        ("kernel_size=x", &["kernel_size"]),
        ("seed=-1", &["seed"]),
        ("seed=abc", &["seed"]),
        ("seed=18446744073709551616", &["seed"]),
        ("seed=1e3", &["seed"]),
        ("init=foo", &["init"]),
        ("init=custom", &["init"]),
        ("init=", &["init"]),
        ("initializer=foo", &["initializer"]),
        ("initializer=kaiming", &["initializer"]),
        ("initializer=", &["initializer"]),
        ("scale=2&scale=2", &["scale"]),
        ("scale=2&scale=3", &["scale"]),
        ("seed=1&seed=1", &["seed"]),
        ("foo=1", &["foo", "scale", "kernel_size", "initializer"]),
        ("Scale=2", &["scale", "kernel_size"]),
        ("scale", &["scale"]),
        ("%ff%fe=1", &["scale"]),
    ];
    let upscale_only: &[(&str, &[&str])] = &[
        ("compression=ultra", &["compression"]),
        ("compression=", &["compression"]),
        ("compression=fast&compression=best", &["compression"]),
    ];
    let server = TestServer::start(args()).await;
    let c = client();
    let mut failures = Vec::new();
    for (q, mention) in bad.iter().chain(upscale_only) {
        let req = c.post(server.url(&format!("/upscale?{q}"))).header("content-type", "image/png").body(small_png());
        match send(req).await {
            Ok(a) => {
                if let Err(e) = expect_problem(&a, &[400], mention) {
                    failures.push(format!("POST /upscale?{q}: {e}"));
                }
            }
            Err(e) => failures.push(format!("POST /upscale?{q}: {e}")),
        }
    }
    let mut kernel_bad: Vec<(&str, &[&str])> = bad.to_vec();
    kernel_bad.push(("compression=fast", &["compression"]));
    for (q, mention) in kernel_bad {
        match send(c.get(server.url(&format!("/kernel?{q}")))).await {
            Ok(a) => {
                if let Err(e) = expect_problem(&a, &[400], mention) {
                    failures.push(format!("GET /kernel?{q}: {e}"));
                }
            }
            Err(e) => failures.push(format!("GET /kernel?{q}: {e}")),
        }
    }
    // The good spellings of the same parameters are accepted (so the 400s above are about the values).
    for q in [
        "scale=8&kernel_size=9",
        "scale=2&kernel_size=1&seed=18446744073709551615",
        "init=plain&initializer=dirac",
        "init=default",
        "scale=%32",
    ] {
        match send(c.get(server.url(&format!("/kernel?{q}")))).await {
            Ok(a) if a.status == 200 => {}
            Ok(a) => failures.push(format!("GET /kernel?{q}: status {}, expected 200", a.status)),
            Err(e) => failures.push(format!("GET /kernel?{q}: {e}")),
        }
    }
    assert_still_serving(&c, &server).await;
    server.shutdown().await.expect("clean shutdown");
    assert!(failures.is_empty(), "{} bad-query checks failed:\n{}", failures.len(), failures.join("\n"));
}

fn multipart(image: Option<Vec<u8>>, kernel: Option<Vec<u8>>) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    if let Some(img) = image {
        form = form.part(
            "image",
            reqwest::multipart::Part::bytes(img).file_name("in.png").mime_str("image/png").expect("mime"),
        );
    }
    if let Some(k) = kernel {
        form = form.part(
            "kernel",
            reqwest::multipart::Part::bytes(k).file_name("kernel.json").mime_str("application/json").expect("mime"),
        );
    }
    form
}

/// Nested JSON array of the given shape filled with `v`.
fn nested(shape: &[usize], v: &str) -> String {
    match shape {
        [] => v.to_string(),
        [n, rest @ ..] => format!("[{}]", vec![nested(rest, v); *n].join(",")),
    }
}

/// Malformed, wrongly shaped, huge and non-finite kernel JSON in a multipart upload: 400 with a detail that says
/// what is wrong; a kernel that contradicts `scale` or `kernel_size` is a 400; a good kernel is a 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kernel_json_is_400() {
    let server = TestServer::start(args()).await;
    let c = client();
    let w_r2k1 = nested(&[12, 3, 1, 1], "0.1");
    let good = format!("{{\"weight\":{w_r2k1}}}");
    // Over the kernel size limit (4 MiB) but well under the body limit: whitespace-padded valid JSON.
    let huge = format!("{{\"weight\":{w_r2k1}{}}}", " ".repeat(5 << 20));
    // Largest legal shape is 192x3x9x9; this claims scale 8 with an enormous kernel (k = 99).
    let big_k = format!("{{\"weight\":{}}}", nested(&[12, 3, 99, 99], "0"));
    let deep = format!("{{\"weight\":{}0{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, String, &str, &[&str])> = vec![
        ("malformed", "{\"weight\": [[[".into(), "", &["kernel"]),
        ("not json", "\u{1}\u{2}binary".into(), "", &["kernel"]),
        ("empty", String::new(), "", &["kernel"]),
        ("json array", "[1,2,3]".into(), "", &["kernel"]),
        ("no weight", "{\"bias\":[0]}".into(), "", &["weight"]),
        ("unknown field", format!("{{\"weight\":{w_r2k1},\"extra\":1}}"), "", &["extra"]),
        ("even k", format!("{{\"weight\":{}}}", nested(&[12, 3, 2, 2], "0.1")), "", &["weight"]),
        ("out not 3r^2", format!("{{\"weight\":{}}}", nested(&[5, 3, 1, 1], "0.1")), "", &["weight"]),
        ("in channels 4", format!("{{\"weight\":{}}}", nested(&[12, 4, 1, 1], "0.1")), "", &["weight"]),
        ("weight rank 2", format!("{{\"weight\":{}}}", nested(&[12, 3], "0.1")), "", &["weight"]),
        ("non-square", format!("{{\"weight\":{}}}", nested(&[12, 3, 1, 3], "0.1")), "", &["weight"]),
        ("ragged", "{\"weight\":[[[[1]]],[[[1],[2]]]]}".into(), "", &["weight"]),
        ("string value", format!("{{\"weight\":{}}}", nested(&[12, 3, 1, 1], "\"0.1\"")), "", &["weight"]),
        ("bias shape", format!("{{\"weight\":{w_r2k1},\"bias\":[0,0]}}"), "", &["bias"]),
        ("bias nested", format!("{{\"weight\":{w_r2k1},\"bias\":{}}}", nested(&[12, 1], "0")), "", &["bias"]),
        ("scale field contradicts shape", format!("{{\"scale\":3,\"weight\":{w_r2k1}}}"), "", &["scale"]),
        ("kernel_size field contradicts", format!("{{\"kernel_size\":3,\"weight\":{w_r2k1}}}"), "", &["kernel_size"]),
        ("huge scale field", format!("{{\"scale\":4294967295,\"weight\":{w_r2k1}}}"), "", &["scale"]),
        ("k over the max", big_k, "", &[]),
        ("over the size limit", huge, "", &["kernel"]),
        ("deeply nested", deep, "", &["kernel"]),
        ("1e39 (f32 overflow)", format!("{{\"weight\":{}}}", nested(&[12, 3, 1, 1], "1e39")), "", &["finite"]),
        ("1e999", format!("{{\"weight\":{}}}", nested(&[12, 3, 1, 1], "1e999")), "", &["kernel"]),
        ("NaN literal", format!("{{\"weight\":{}}}", nested(&[12, 3, 1, 1], "NaN")), "", &["kernel"]),
        (
            "Infinity literal",
            format!("{{\"weight\":{w_r2k1},\"bias\":{}}}", nested(&[12], "Infinity")),
            "",
            &["kernel"],
        ),
        ("query scale contradicts kernel", good.clone(), "scale=3", &["scale"]),
        ("query kernel_size contradicts kernel", good.clone(), "kernel_size=3", &["kernel_size"]),
    ];
    let mut failures = Vec::new();
    for (name, kernel, query, mention) in cases {
        let url = server.url(&format!("/upscale?{query}"));
        match send(c.post(url).multipart(multipart(Some(small_png()), Some(kernel.into_bytes())))).await {
            Ok(a) => {
                if let Err(e) = expect_problem(&a, &[400], mention) {
                    failures.push(format!("{name}: {e}"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    // Multipart without the required `image` field.
    match send(c.post(server.url("/upscale")).multipart(multipart(None, Some(good.clone().into_bytes())))).await {
        Ok(a) => {
            if let Err(e) = expect_problem(&a, &[400], &["image"]) {
                failures.push(format!("no image field: {e}"));
            }
        }
        Err(e) => failures.push(format!("no image field: {e}")),
    }
    // A multipart body that is cut off (no closing boundary).
    let cut = "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n\u{89}PN";
    let req = c.post(server.url("/upscale")).header("content-type", "multipart/form-data; boundary=XyZ").body(cut);
    match send(req).await {
        Ok(a) => {
            if let Err(e) = expect_problem(&a, &[400, 415], &[]) {
                failures.push(format!("cut multipart: {e}"));
            }
        }
        Err(e) => failures.push(format!("cut multipart: {e}")),
    }
    // The same upload with a good kernel works, and gives a 2x image (so the 400s above are about the kernels).
    match send(c.post(server.url("/upscale")).multipart(multipart(Some(small_png()), Some(good.into_bytes())))).await {
        Ok(a) if a.status == 200 => match png_info(&a.body) {
            Ok(i) if (i.width, i.height) == (128, 96) => {}
            other => failures.push(format!("good kernel: {other:?}")),
        },
        Ok(a) => failures.push(format!("good kernel: status {}: {}", a.status, lossy(&a.body))),
        Err(e) => failures.push(format!("good kernel: {e}")),
    }
    assert_still_serving(&c, &server).await;
    server.shutdown().await.expect("clean shutdown");
    assert!(failures.is_empty(), "{} kernel JSON checks failed:\n{}", failures.len(), failures.join("\n"));
}

/// Bodies over `--max-body-bytes` are 413 problem+json, declared (`Content-Length`) or not (chunked, multipart),
/// at a small limit and at the default 32 MiB; the service keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413() {
    const LIMIT: u64 = 256 * 1024;
    let small = TestServer::start(ServeArgs { max_body_bytes: LIMIT, ..args() }).await;
    let c = client();
    let mut failures = Vec::new();
    let over = |n: u64| {
        let mut v = small_png();
        v.resize(n as usize, 0); // a valid PNG followed by padding: only the size is wrong
        v
    };
    // At the limit exactly: not a 413 (the trailing bytes after IEND are the decoder's business: 200 or 415).
    match send(c.post(small.url("/upscale")).header("content-type", "image/png").body(over(LIMIT))).await {
        Ok(a) if a.status != 413 && a.status < 500 => {}
        Ok(a) => failures.push(format!("at the limit: status {}", a.status)),
        Err(e) => failures.push(format!("at the limit: {e}")),
    }
    // Declared length one over the limit, sent by a raw client that reads the answer even if cut off.
    let head = format!(
        "POST /upscale HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        LIMIT + 1
    );
    match http::send_streamed(small.addr, &head, LIMIT as usize + 1).await {
        Ok(a) if a.status == 413 => {
            if let Err(e) = check_problem(413, a.header("content-type"), &a.body) {
                failures.push(format!("content-length over: {e}"));
            }
        }
        Ok(a) => failures.push(format!("content-length over: status {}: {}", a.status, lossy(&a.body))),
        Err(e) => failures.push(format!("content-length over: {e}")),
    }
    // Declared length of 1 TB: answered at once from the header.
    let head = "POST /upscale HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: 1000000000000\r\n\
                connection: close\r\n\r\n";
    match http::send_streamed(small.addr, head, 1024).await {
        Ok(a) if a.status == 413 => {}
        Ok(a) => failures.push(format!("content-length 1 TB: status {}: {}", a.status, lossy(&a.body))),
        Err(e) => failures.push(format!("content-length 1 TB: {e}")),
    }
    // Chunked (no Content-Length): the limit applies to what arrives.
    let head = "POST /upscale HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ntransfer-encoding: chunked\r\n\
                connection: close\r\n\r\n";
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let result: Result<u16, String> = async {
            let mut s = tokio::net::TcpStream::connect(small.addr).await.map_err(|e| e.to_string())?;
            s.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
            let piece = vec![7u8; 32 * 1024];
            for _ in 0..(2 * LIMIT as usize / piece.len()) {
                let frame = [format!("{:x}\r\n", piece.len()).into_bytes(), piece.clone(), b"\r\n".to_vec()].concat();
                if s.write_all(&frame).await.is_err() {
                    break;
                }
            }
            let _ = s.write_all(b"0\r\n\r\n").await;
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(http::BOUND, s.read_to_end(&mut buf)).await;
            match http::status_of(&buf) {
                0 => Err(format!("no status: {:?}", lossy(&buf))),
                status => Ok(status),
            }
        }
        .await;
        match result {
            Ok(413) => {}
            other => failures.push(format!("chunked over: {other:?}")),
        }
    }
    // Multipart whose image part alone is over the limit.
    let form = multipart(Some(over(LIMIT + 1024)), None);
    match send(c.post(small.url("/upscale")).multipart(form)).await {
        Ok(a) => {
            if let Err(e) = expect_problem(&a, &[413], &[]) {
                failures.push(format!("multipart over: {e}"));
            }
        }
        // reqwest may see the connection closed while it is still sending; then the raw checks above stand.
        Err(e) => eprintln!("multipart over: client-side error (server closed early): {e}"),
    }
    assert_still_serving(&c, &small).await;
    small.shutdown().await.expect("clean shutdown");

    // The default limit, 32 MiB: one byte over.
    let server = TestServer::start(args()).await;
    let n = 32 * 1024 * 1024 + 1;
    let head = format!(
        "POST /upscale HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: {n}\r\n\
         connection: close\r\n\r\n"
    );
    match http::send_streamed(server.addr, &head, n).await {
        Ok(a) if a.status == 413 => {}
        Ok(a) => failures.push(format!("32 MiB + 1: status {}: {}", a.status, lossy(&a.body))),
        Err(e) => failures.push(format!("32 MiB + 1: {e}")),
    }
    assert_still_serving(&c, &server).await;
    server.shutdown().await.expect("clean shutdown");
    assert!(failures.is_empty(), "{} body-limit checks failed:\n{}", failures.len(), failures.join("\n"));
}

/// Odd multipart bodies: a missing boundary, a part without a name, duplicate and unknown fields, ten thousand
/// empty parts, a kernel field larger than the image. Each gets a 4xx problem+json (or a 200 where the request is
/// still unambiguous), never a 5xx, and the service keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_multipart_bodies_get_clear_answers() {
    let server = TestServer::start(args()).await;
    let c = client();
    let png = small_png();
    let part = |name: &str, filename: Option<&str>, ct: &str, data: &[u8]| -> Vec<u8> {
        let disp = match filename {
            Some(f) => format!("form-data; name=\"{name}\"; filename=\"{f}\""),
            None if name.is_empty() => "form-data".to_string(),
            None => format!("form-data; name=\"{name}\""),
        };
        [
            format!("--B0undary\r\nContent-Disposition: {disp}\r\nContent-Type: {ct}\r\n\r\n").into_bytes(),
            data.to_vec(),
            b"\r\n".to_vec(),
        ]
        .concat()
    };
    let end = b"--B0undary--\r\n".to_vec();
    let many: Vec<u8> = (0..10_000).flat_map(|i| part(&format!("f{i}"), None, "text/plain", b"")).collect();
    let cases: Vec<(&str, &str, Vec<u8>, &[u16])> = vec![
        (
            "no boundary",
            "multipart/form-data",
            [part("image", Some("a.png"), "image/png", &png), end.clone()].concat(),
            &[400, 415],
        ),
        (
            "part without a name",
            "multipart/form-data; boundary=B0undary",
            [part("", None, "image/png", &png), end.clone()].concat(),
            &[400],
        ),
        (
            "duplicate image",
            "multipart/form-data; boundary=B0undary",
            [
                part("image", Some("a.png"), "image/png", &png),
                part("image", Some("b.png"), "image/png", &png),
                end.clone(),
            ]
            .concat(),
            &[400],
        ),
        (
            "unknown field",
            "multipart/form-data; boundary=B0undary",
            [part("image", Some("a.png"), "image/png", &png), part("colour", None, "text/plain", b"red"), end.clone()]
                .concat(),
            &[200, 400],
        ),
        ("10000 empty parts", "multipart/form-data; boundary=B0undary", [many, end.clone()].concat(), &[400]),
        (
            "image field empty",
            "multipart/form-data; boundary=B0undary",
            [part("image", Some("a.png"), "image/png", b""), end.clone()].concat(),
            &[400, 415],
        ),
        ("only the closing boundary", "multipart/form-data; boundary=B0undary", end.clone(), &[400]),
        ("garbage", "multipart/form-data; boundary=B0undary", b"\x00\x01garbage--B0undary".to_vec(), &[400]),
    ];
    let mut failures = Vec::new();
    for (name, ct, body, want) in cases {
        match send(c.post(server.url("/upscale")).header("content-type", ct).body(body)).await {
            Ok(a) if a.status == 200 && want.contains(&200) => {
                if let Err(e) = png_info(&a.body) {
                    failures.push(format!("{name}: 200 but {e}"));
                }
            }
            Ok(a) => {
                if let Err(e) = expect_problem(&a, want, &[]) {
                    failures.push(format!("{name}: {e}"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert_still_serving(&c, &server).await;
    server.shutdown().await.expect("clean shutdown");
    assert!(failures.is_empty(), "{} multipart checks failed:\n{}", failures.len(), failures.join("\n"));
}
