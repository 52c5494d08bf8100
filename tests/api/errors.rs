//! Client errors: every one a clear 4xx problem+json, never a 5xx. Each 4xx validation is tested here, once (bad
//! queries, multipart bodies, body limits, media types, dimensions); bad kernels are `kernel.rs`'s.

use icnr_upscale::server::{ServeArgs, ALLOWED_KERNEL_PARAMS, ALLOWED_UPSCALE_PARAMS};

use crate::helpers::*;

/// Every bad query value is a 400 problem whose detail names the parameter and what is valid, on `POST /upscale`
/// and on `GET /kernel` (`compression` is `/upscale`'s alone); the good spellings of the same parameters are
/// accepted, so the 400s are about the values; the service keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_values_are_400() {
    let app = spawn_app().await;
    let input = png(&rgb8(4, 4));
    const SCALE: &str = "2 to 8";
    const SIZE: &str = "odd";
    const SEED: &str = "18446744073709551615";
    const INIT: &str = "icnr, default, plain";
    const INITIALIZER: &str = "kaiming_normal, kaiming_uniform, xavier_normal, xavier_uniform, dirac";
    const COMPRESSION: &str = "fast, balanced, best";
    let cases = [
        ("scale=0", SCALE),
        ("scale=1", SCALE),
        ("scale=9", SCALE),
        ("scale=99", SCALE),
        ("scale=abc", SCALE),
        ("scale=", SCALE),
        ("scale", SCALE),
        ("scale=-2", SCALE),
        ("scale=2.5", SCALE),
        ("scale=4294967298", SCALE),
        ("scale=99999999999999999999", SCALE),
        ("kernel_size=2", SIZE),
        ("kernel_size=4", SIZE),
        ("kernel_size=0", SIZE),
        ("kernel_size=11", SIZE),
        ("kernel_size=999", SIZE),
        ("kernel_size=18446744073709551617", SIZE),
        ("kernel_size=99999999999999999999999", SIZE),
        ("kernel_size=x", SIZE),
        ("seed=-1", SEED),
        ("seed=18446744073709551616", SEED),
        ("seed=1.5", SEED),
        ("seed=1e3", SEED),
        ("seed=abc", SEED),
        ("init=custom", INIT),
        ("init=ICNR", INIT),
        ("init=foo", INIT),
        ("init=", INIT),
        ("initializer=he_normal", INITIALIZER),
        ("initializer=kaiming", INITIALIZER),
        ("initializer=foo", INITIALIZER),
        ("initializer=", INITIALIZER),
        ("compression=max", COMPRESSION),
        ("compression=ultra", COMPRESSION),
        ("compression=", COMPRESSION),
    ];
    for (query, valid) in cases {
        let name = query.split('=').next().unwrap();
        let res = app.post_raw(&format!("?{query}"), "image/png", input.clone()).await;
        let text = detail(&assert_problem(res, 400).await);
        assert!(text.contains(name) && text.contains(valid), "POST /upscale?{query}: {text}");
        if name != "compression" {
            let text = detail(&assert_problem(app.get(&format!("/kernel?{query}")).await, 400).await);
            assert!(text.contains(name) && text.contains(valid), "GET /kernel?{query}: {text}");
        }
    }
    // The good spellings of the same parameters are accepted.
    for query in [
        "scale=8&kernel_size=9",
        "scale=2&kernel_size=1&seed=18446744073709551615",
        "init=plain&initializer=dirac",
        "init=default",
        "scale=%32",
    ] {
        assert_eq!(app.get(&format!("/kernel?{query}")).await.status(), 200, "GET /kernel?{query}");
    }
    app.assert_still_serving().await;
    app.shutdown().await.unwrap();
}

/// Unknown and repeated parameters (a typo, another case, a bare name, a non-UTF-8 name, a name given twice with the
/// same or another value) are 400s naming the offending parameter and the allowed ones, on both routes; `GET /kernel`
/// takes no `compression`. (That the 400 still arrives with a large body is `tests/api/robustness.rs`'s
/// `early_answers_to_large_bodies_keep_the_connection_usable`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_repeated_parameters_are_400() {
    let app = spawn_app().await;
    let input = png(&rgb8(4, 4));
    let both: &[(&str, &str)] = &[
        ("scael=2", "scael"),
        ("scale=2&scale=2", "scale"),
        ("scale=2&scale=3", "scale"),
        ("scale=3&scale=3", "scale"),
        ("seed=1&seed=1", "seed"),
        ("SCALE=2", "SCALE"),
        ("Scale=2", "Scale"),
        ("format=png", "format"),
        ("foo=1", "foo"),
        ("foo=bar", "foo"),
        ("scale=2&x", "x"),
        ("%ff%fe=1", ""),
    ];
    let upscale_only: &[(&str, &str)] = &[("compression=fast&compression=best", "compression")];
    for (query, name) in both.iter().chain(upscale_only) {
        let p = assert_problem(app.post_raw(&format!("?{query}"), "image/png", input.clone()).await, 400).await;
        let text = detail(&p);
        assert!(text.contains(&ALLOWED_UPSCALE_PARAMS.join(", ")) && text.contains(name), "?{query}: {p}");
    }
    for (query, name) in both.iter().chain(&[("compression=fast", "compression")]) {
        let p = assert_problem(app.get(&format!("/kernel?{query}")).await, 400).await;
        let text = detail(&p);
        assert!(text.contains(&ALLOWED_KERNEL_PARAMS.join(", ")) && text.contains(name), "/kernel?{query}: {p}");
    }
    app.shutdown().await.unwrap();
}

/// Unknown routes are 404 and known routes with another method 405 (with `Allow`), both problem+json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_404_and_wrong_method_405() {
    let app = spawn_app().await;
    for path in ["/index.html", "/upscale/", "/nope", "/kernel/x", "/HEALTHZ", "/models/a/b"] {
        let p = assert_problem(app.get(path).await, 404).await;
        assert!(p["detail"].as_str().unwrap().contains("POST /upscale"), "{p}");
    }
    for (method, path, allow) in [
        (reqwest::Method::GET, "/upscale", "POST"),
        (reqwest::Method::PUT, "/upscale", "POST"),
        (reqwest::Method::POST, "/kernel", "GET"),
        (reqwest::Method::DELETE, "/healthz", "GET"),
        (reqwest::Method::POST, "/metrics", "GET"),
        (reqwest::Method::PATCH, "/openapi.yaml", "GET"),
    ] {
        let res = app.client.request(method.clone(), app.url(path)).send().await.unwrap();
        let allowed = res.headers().get("allow").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert!(allowed.contains(allow), "{method} {path}: Allow {allowed:?}");
        assert_problem(res, 405).await;
    }
    app.shutdown().await.unwrap();
}

/// Content types other than image/*, application/octet-stream, application/x-www-form-urlencoded (curl's
/// default for --data-binary), none at all and multipart/form-data are 415, and so are bytes that are not a
/// supported image (empty, random, SVG, truncated), whatever the content type says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_media_is_415() {
    let app = spawn_app().await;
    let good = png(&rgb8(8, 8));
    for ct in ["text/plain", "application/json", "video/mp4"] {
        assert_problem(app.post_raw("", ct, good.clone()).await, 415).await;
    }
    // What `curl --data-binary @photo.png URL` sends, and no Content-Type at all: the bytes decide the format.
    let res = app.post_raw("", "application/x-www-form-urlencoded", good.clone()).await;
    assert_eq!(res.status(), 200);
    let res = app.client.post(app.url("/upscale")).body(good.clone()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let not_image = b"scale=2&this=is+a+form".to_vec();
    let detail_as_png = assert_problem(app.post_raw("", "image/png", not_image.clone()).await, 415).await;
    for ct in [Some("application/x-www-form-urlencoded"), Some("application/octet-stream"), None] {
        let mut req = app.client.post(app.url("/upscale")).body(not_image.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let p = assert_problem(req.send().await.unwrap(), 415).await;
        assert_eq!(p["detail"], detail_as_png["detail"], "{ct:?}");
    }

    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>"#;
    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for (name, body) in [
        ("empty", Vec::new()),
        ("random", random),
        ("svg", svg.to_vec()),
        ("truncated png", good[..good.len() / 2].to_vec()),
        ("png signature only", good[..8].to_vec()),
    ] {
        let res = app.post_raw("", "image/png", body.clone()).await;
        let p = assert_problem(res, 415).await;
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{name}");
        assert_problem(app.post_multipart("", body, None).await, 415).await;
    }
    app.shutdown().await.unwrap();
}

/// Malformed multipart is a 4xx problem that says what is wrong, never a 5xx: no `image` field (nor any field at
/// all), an unknown or a repeated field, a part without a name, 10,000 empty parts, an empty image, only the closing
/// boundary, garbage, a body cut off, no boundary. The service keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_multipart_is_400() {
    let app = spawn_app().await;
    let img = png(&rgb8(4, 4));
    let part = |b: &[u8]| reqwest::multipart::Part::bytes(b.to_vec()).file_name("x.png");
    let kernel_file = || {
        reqwest::multipart::Part::bytes(b"{\"weight\":[[[[1]]]]}".to_vec())
            .file_name("kernel.json")
            .mime_str("application/json")
            .unwrap()
    };
    let forms = [
        ("no image", reqwest::multipart::Form::new().text("kernel", "{}"), "`image`"),
        ("no image, a kernel file", reqwest::multipart::Form::new().part("kernel", kernel_file()), "`image`"),
        ("unknown field", reqwest::multipart::Form::new().part("image", part(&img)).text("scale", "2"), "\"scale\""),
        (
            "image twice",
            reqwest::multipart::Form::new().part("image", part(&img)).part("image", part(&img)),
            "more than once",
        ),
        ("empty form", reqwest::multipart::Form::new(), ""),
    ];
    for (name, form, needle) in forms {
        let res = app.client.post(app.url("/upscale")).multipart(form).send().await.unwrap();
        let text = detail(&assert_problem(res, 400).await);
        assert!(text.contains(needle), "{name}: {text}");
        if name == "unknown field" {
            assert!(text.contains("kernel"), "{name} names the allowed fields: {text}");
        }
    }

    // Hand-made bodies.
    let png = small_png();
    let field = |name: &str, filename: Option<&str>, ct: &str, data: &[u8]| -> Vec<u8> {
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
    let many: Vec<u8> = (0..10_000).flat_map(|i| field(&format!("f{i}"), None, "text/plain", b"")).collect();
    const B: &str = "multipart/form-data; boundary=B0undary";
    let cases: Vec<(&str, &str, Vec<u8>, &[u16])> = vec![
        ("no boundary, only a delimiter", "multipart/form-data", b"--x\r\n".to_vec(), &[400]),
        (
            "no boundary",
            "multipart/form-data",
            [field("image", Some("a.png"), "image/png", &png), end.clone()].concat(),
            &[400, 415],
        ),
        (
            "garbage without boundaries",
            "multipart/form-data; boundary=x",
            b"garbage without boundaries".to_vec(),
            &[400],
        ),
        ("garbage", B, b"\x00\x01garbage--B0undary".to_vec(), &[400]),
        (
            "unterminated part",
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc".to_vec(),
            &[400],
        ),
        (
            "cut off inside the image",
            "multipart/form-data; boundary=XyZ",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n\x89PN".to_vec(),
            &[400, 415],
        ),
        ("part without a name", B, [field("", None, "image/png", &png), end.clone()].concat(), &[400]),
        (
            "duplicate image",
            B,
            [
                field("image", Some("a.png"), "image/png", &png),
                field("image", Some("b.png"), "image/png", &png),
                end.clone(),
            ]
            .concat(),
            &[400],
        ),
        (
            "unknown field",
            B,
            [
                field("image", Some("a.png"), "image/png", &png),
                field("colour", None, "text/plain", b"red"),
                end.clone(),
            ]
            .concat(),
            &[200, 400],
        ),
        ("10000 empty parts", B, [many, end.clone()].concat(), &[400]),
        ("image field empty", B, [field("image", Some("a.png"), "image/png", b""), end.clone()].concat(), &[400, 415]),
        ("only the closing boundary", B, end.clone(), &[400]),
    ];
    for (name, ct, body, want) in cases {
        let res = app.post_raw("", ct, body).await;
        let status = res.status().as_u16();
        assert!(want.contains(&status), "{name}: status {status}, expected {want:?}");
        if status == 200 {
            png_info(&res.bytes().await.unwrap()).unwrap_or_else(|e| panic!("{name}: 200 but {e}"));
        } else {
            assert_problem(res, status).await;
        }
    }
    app.assert_still_serving().await;
    app.shutdown().await.unwrap();
}

/// Bodies over `--max-body-bytes` are 413 problem+json naming the limit: declared (`Content-Length` one byte over,
/// or a claimed 1 TB, answered from the header) or not (chunked), raw or multipart; exactly at the limit is not a
/// 413. At the default limit (32 MiB), one byte over is a 413 too, a body far larger than socket buffers, sent by a
/// raw client that reads the answer even if the server stops reading. The service keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_413() {
    const LIMIT: u64 = 8192;
    let app = TestServer::start(ServeArgs { max_body_bytes: LIMIT, ..args() }).await;
    let small = png(&rgb8(4, 4));
    assert!(small.len() < 1000);
    assert_eq!(app.post_raw("", "image/png", small.clone()).await.status(), 200);
    // Exactly at the limit: not a 413 (a valid PNG padded after IEND: the decoder's business, 200 or 415).
    let mut at = small.clone();
    at.resize(LIMIT as usize, 0);
    let status = app.post_raw("", "image/png", at).await.status().as_u16();
    assert!(status != 413 && status < 500, "at the limit: {status}");

    let big = vec![0u8; LIMIT as usize + 1];
    let p = assert_problem(app.post_raw("", "image/png", big.clone()).await, 413).await;
    assert!(detail(&p).contains(&LIMIT.to_string()), "{p}");
    assert_problem(app.post_multipart("", big, None).await, 413).await;
    let head = |len: u64| {
        format!(
            "POST /upscale HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: {len}\r\n\
             connection: close\r\n\r\n"
        )
    };
    // The same from a raw client, which reads the answer even if the server stops reading; and a declared 1 TB,
    // answered from the header.
    for (what, len, sent) in [("one byte over", LIMIT + 1, LIMIT as usize + 1), ("1 TB", 1_000_000_000_000, 1024)] {
        let a = http::send_streamed(app.addr, &head(len), sent).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(a.status, 413, "{what}: {}", http::lossy(&a.body));
        check_problem(413, a.header("content-type"), &a.body).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // Chunked transfer: no Content-Length to check up front, the limit applies while reading.
    let mut req = b"POST /upscale HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
        .to_vec();
    for _ in 0..2 * LIMIT / 1024 {
        req.extend_from_slice(b"400\r\n");
        req.extend_from_slice(&[7u8; 1024]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let a = http::parse_answer(&http::exchange(app.addr, &req).await);
    assert_eq!(a.status, 413, "chunked: {}", http::lossy(&a.body));
    check_problem(413, a.header("content-type"), &a.body).expect("chunked: problem+json");
    app.assert_still_serving().await;
    app.shutdown().await.unwrap();

    // The default limit, 32 MiB: one byte over.
    let app = spawn_app().await;
    let n = 32 * 1024 * 1024 + 1;
    let a = http::send_streamed(app.addr, &head(n), n as usize).await.expect("32 MiB + 1: an answer");
    assert_eq!(a.status, 413, "32 MiB + 1: {}", http::lossy(&a.body));
    app.assert_still_serving().await;
    app.shutdown().await.unwrap();
}

/// Dimensions over the limits are a 422 read from the header: a PNG claiming 100000 x 100000 in a few dozen bytes
/// (the decompression bomb) costs nothing, and an image whose output would pass the output limit is refused before
/// any work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dimensions_over_the_limits_are_422() {
    let app = spawn_app().await;
    let bomb = png_header_bomb(100_000, 100_000);
    assert!(bomb.len() < 100);
    let p = assert_problem(app.post_raw("", "image/png", bomb.clone()).await, 422).await;
    assert!(p["detail"].as_str().unwrap().contains("100000"), "{p}");
    assert_problem(app.post_multipart("", bomb, None).await, 422).await;

    // 1100 x 1100 = 1.21 MP input is fine, but at scale 8 the output is 77.4 MP > 67,108,864.
    let solid = png(&image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(1100, 1100, image::Rgb([9, 9, 9]))));
    let p = assert_problem(app.post_raw("?scale=8", "image/png", solid).await, 422).await;
    assert!(p["detail"].as_str().unwrap().contains("output"), "{p}");
    app.shutdown().await.unwrap();

    // Tighter limits from the flags.
    let app = TestServer::start(ServeArgs { max_input_pixels: 100, max_output_pixels: 1000, ..args() }).await;
    assert_problem(app.post_raw("", "image/png", png(&rgb8(11, 10))).await, 422).await;
    assert_problem(app.post_raw("?scale=4", "image/png", png(&rgb8(10, 10))).await, 422).await;
    assert_eq!(app.post_raw("?scale=3", "image/png", png(&rgb8(10, 10))).await.status(), 200);
    app.shutdown().await.unwrap();
}

/// Every error status has its documented problem `type` (`tag:icnr-upscale,2026:<slug>`), the one README.md and
/// openapi.yaml list: 400 bad-query, bad-kernel, bad-body, unknown-model; 404 not-found, no-such-model; 405
/// method-not-allowed; 413 payload-too-large; 415 unsupported-media-type; 422 dimensions-too-large; 503 overloaded;
/// 504 timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_status_has_its_type_slug() {
    let slug = |p: &serde_json::Value| -> String {
        let t = p["type"].as_str().expect("type");
        t.strip_prefix("tag:icnr-upscale,2026:")
            .unwrap_or_else(|| panic!("type {t} is not tag:icnr-upscale,2026:*"))
            .to_owned()
    };
    let app = TestServer::start(ServeArgs { max_body_bytes: 64 << 10, ..args() }).await;
    let input = png(&rgb8(4, 4));
    let no_image = reqwest::multipart::Form::new().text("kernel", "{}");
    let cases: Vec<(&str, reqwest::Response, u16, &str)> = vec![
        ("bad query", app.post_raw("?scale=9", "image/png", input.clone()).await, 400, "bad-query"),
        ("bad kernel", app.post_multipart("", input.clone(), Some("{\"weight\": 1}".into())).await, 400, "bad-kernel"),
        (
            "no image field",
            app.client.post(app.url("/upscale")).multipart(no_image).send().await.unwrap(),
            400,
            "bad-body",
        ),
        ("unknown model", app.post_raw("?model=nope", "image/png", input.clone()).await, 400, "unknown-model"),
        ("unknown route", app.get("/nope").await, 404, "not-found"),
        ("no such trained model", app.get("/models/nope").await, 404, "no-such-model"),
        ("wrong method", app.client.delete(app.url("/healthz")).send().await.unwrap(), 405, "method-not-allowed"),
        ("body over the limit", app.post_raw("", "image/png", vec![0x55; 65 << 10]).await, 413, "payload-too-large"),
        ("not an image", app.post_raw("", "image/png", b"GIF? no".to_vec()).await, 415, "unsupported-media-type"),
        (
            "over the pixel limits",
            app.post_raw("", "image/png", png_header_bomb(100_000, 100_000)).await,
            422,
            "dimensions-too-large",
        ),
    ];
    for (what, res, status, want) in cases {
        let p = assert_problem(res, status).await;
        assert_eq!(slug(&p), want, "{what}: {p}");
    }
    app.shutdown().await.unwrap();

    // 503: the only place is held by an upload in progress.
    let app = TestServer::start(ServeArgs { max_concurrent_jobs: 1, max_queue: 0, ..args() }).await;
    let held = http::post_start(app.addr, "/upscale", "image/png", input.len(), &input[..5]).await;
    app.wait_metric("icnr_upscale_jobs_queued", "", |v| v == 1.0).await;
    let p = assert_problem(app.post_raw("", "image/png", input.clone()).await, 503).await;
    assert_eq!(slug(&p), "overloaded", "{p}");
    drop(held);
    app.shutdown().await.unwrap();

    // 504: an upload that stalls past the request timeout.
    let app = TestServer::start(ServeArgs { request_timeout_secs: 1, ..args() }).await;
    let stalled = http::post_start(app.addr, "/upscale", "image/png", input.len(), &input[..5]).await;
    let a = http::read_answer(stalled).await;
    assert_eq!(a.status, 504, "{}", http::lossy(&a.body));
    let p = check_problem(504, a.header("content-type"), &a.body).expect("504 problem+json");
    assert_eq!(slug(&p), "timeout", "{p}");
    app.shutdown().await.unwrap();
}
