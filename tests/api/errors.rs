//! Client errors: every one a clear 4xx problem+json, never a 5xx.

use icnr_upscale::server::{ServeArgs, ALLOWED_KERNEL_PARAMS, ALLOWED_UPSCALE_PARAMS};
use tokio::io::AsyncWriteExt;

use crate::helpers::*;

/// Every bad query value is a 400 whose detail names the parameter and what is valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_values_are_400() {
    let app = spawn_app().await;
    let input = png(&rgb8(4, 4));
    let cases = [
        ("scale=0", "2 to 8"),
        ("scale=1", "2 to 8"),
        ("scale=9", "2 to 8"),
        ("scale=99", "2 to 8"),
        ("scale=abc", "2 to 8"),
        ("scale=", "2 to 8"),
        ("scale=-2", "2 to 8"),
        ("scale=2.5", "2 to 8"),
        ("scale=4294967298", "2 to 8"),
        ("kernel_size=2", "odd"),
        ("kernel_size=4", "odd"),
        ("kernel_size=0", "odd"),
        ("kernel_size=11", "odd"),
        ("kernel_size=99999999999999999999999", "odd"),
        ("seed=-1", "18446744073709551615"),
        ("seed=18446744073709551616", "18446744073709551615"),
        ("seed=1.5", "18446744073709551615"),
        ("seed=abc", "18446744073709551615"),
        ("init=custom", "icnr, default, plain"),
        ("init=ICNR", "icnr, default, plain"),
        ("init=", "icnr, default, plain"),
        ("initializer=he_normal", "kaiming_normal, kaiming_uniform, xavier_normal, xavier_uniform, dirac"),
        ("compression=max", "fast, balanced, best"),
    ];
    for (query, valid) in cases {
        let res = app.post_raw(&format!("?{query}"), "image/png", input.clone()).await;
        let p = assert_problem(res, 400).await;
        let detail = p["detail"].as_str().unwrap();
        let name = query.split('=').next().unwrap();
        assert!(detail.contains(name) && detail.contains(valid), "{query}: {detail}");
        if name != "compression" {
            let res = app.get(&format!("/kernel?{query}")).await;
            assert_problem(res, 400).await;
        }
    }
    app.shutdown().await.unwrap();
}

/// Unknown and repeated parameters are 400s naming the allowed ones; `GET /kernel` takes no `compression`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_repeated_parameters_are_400() {
    let app = spawn_app().await;
    let input = png(&rgb8(4, 4));
    for query in ["?scael=2", "?scale=2&scale=2", "?seed=1&seed=1", "?SCALE=2", "?format=png", "?scale=2&x"] {
        let res = app.post_raw(query, "image/png", input.clone()).await;
        let p = assert_problem(res, 400).await;
        assert!(p["detail"].as_str().unwrap().contains(&ALLOWED_UPSCALE_PARAMS.join(", ")), "{query}: {p}");
    }
    // With a body far larger than socket buffers, the 400 still arrives (no connection reset).
    assert_problem(app.post_raw("?scael=2", "image/png", vec![1; 4 << 20]).await, 400).await;
    assert_problem(app.post_raw("", "text/plain", vec![1; 4 << 20]).await, 415).await;
    for query in ["?compression=fast", "?scale=3&scale=3", "?foo=bar"] {
        let p = assert_problem(app.get(&format!("/kernel{query}")).await, 400).await;
        assert!(p["detail"].as_str().unwrap().contains(&ALLOWED_KERNEL_PARAMS.join(", ")), "{query}: {p}");
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

/// Malformed multipart is a 400: no `image` field, unknown or repeated fields, a broken body, no boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_multipart_is_400() {
    let app = spawn_app().await;
    let img = png(&rgb8(4, 4));
    let part = |b: &[u8]| reqwest::multipart::Part::bytes(b.to_vec()).file_name("x.png");
    let forms = [
        ("no image", reqwest::multipart::Form::new().text("kernel", "{}")),
        ("unknown field", reqwest::multipart::Form::new().part("image", part(&img)).text("scale", "2")),
        ("image twice", reqwest::multipart::Form::new().part("image", part(&img)).part("image", part(&img))),
        ("empty form", reqwest::multipart::Form::new()),
    ];
    for (name, form) in forms {
        let res = app.client.post(app.url("/upscale")).multipart(form).send().await.unwrap();
        let p = assert_problem(res, 400).await;
        let detail = p["detail"].as_str().unwrap();
        match name {
            "no image" => assert!(detail.contains("`image`"), "{name}: {detail}"),
            "unknown field" => assert!(detail.contains("\"scale\"") && detail.contains("kernel"), "{name}: {detail}"),
            "image twice" => assert!(detail.contains("more than once"), "{name}: {detail}"),
            _ => {}
        }
    }
    for (ct, body) in [
        ("multipart/form-data", b"--x\r\n".to_vec()),
        ("multipart/form-data; boundary=x", b"garbage without boundaries".to_vec()),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc".to_vec(),
        ),
    ] {
        assert_problem(app.post_raw("", ct, body).await, 400).await;
    }
    app.shutdown().await.unwrap();
}

/// Bodies over `--max-body-bytes` are 413, raw or multipart, declared (Content-Length) or chunked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_413() {
    let limit = 4096u64;
    let app = TestServer::start(ServeArgs { max_body_bytes: limit, ..args() }).await;
    let small = png(&rgb8(4, 4));
    assert!(small.len() < 1000);
    assert_eq!(app.post_raw("", "image/png", small.clone()).await.status(), 200);

    let big = vec![0u8; limit as usize + 1];
    let p = assert_problem(app.post_raw("", "image/png", big.clone()).await, 413).await;
    assert!(p["detail"].as_str().unwrap().contains("4096"), "{p}");
    assert_problem(app.post_multipart("", big, None).await, 413).await;

    // Chunked transfer: no Content-Length to check up front, the limit applies while reading.
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut req = b"POST /upscale HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
        .to_vec();
    for _ in 0..5 {
        req.extend_from_slice(b"400\r\n");
        req.extend_from_slice(&[7u8; 1024]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let RawAnswer { status, headers, body } = http::read_answer(s).await;
    assert_eq!(status, 413);
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "application/problem+json"));
    assert!(String::from_utf8_lossy(&body).contains("\"status\":413"));
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

/// A client that sends half its body and then stalls gets a 504 problem once the request timeout passes, and its
/// queue place is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_body_times_out_with_504() {
    let app =
        TestServer::start(ServeArgs { request_timeout_secs: 1, max_concurrent_jobs: 1, max_queue: 0, ..args() }).await;
    let input = png(&rgb8(16, 16));
    let s = http::post_start(app.addr, "/upscale", "image/png", input.len(), &input[..10]).await;
    app.wait_metric("icnr_upscale_jobs_queued", "", |v| v == 1.0).await;
    let RawAnswer { status, headers, body } = http::read_answer(s).await;
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "application/problem+json"));
    assert!(headers.iter().any(|(k, _)| k == "x-request-id"));
    let p: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(p["status"], 504);
    // The place is free again: a normal request is admitted. It has the same 1 s budget, so a slow or busy machine
    // may time it out too (504); only a 503 would mean that the place was never freed.
    app.wait_metric("icnr_upscale_jobs_queued", "", |v| v == 0.0).await;
    assert_admitted(app.post_raw("", "image/png", input).await).await;
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
    let RawAnswer { status, body, .. } = http::read_answer(stalled).await;
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    let p: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(slug(&p), "timeout", "{p}");
    app.shutdown().await.unwrap();
}
