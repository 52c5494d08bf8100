//! `GET /kernel` and custom kernels sent back through multipart, including every bad kernel (a 400 each).

use icnr_upscale::kernel::{Init, Initializer, Kernel, KernelParams};

use crate::helpers::*;

/// `GET /kernel` answers exactly `Kernel::to_json()` (what `icnr-upscale kernel` prints) as application/json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_kernel_is_the_library_json() {
    let app = spawn_app().await;
    for (query, params) in [
        ("", KernelParams::default()),
        (
            "?scale=4&kernel_size=1&init=default&initializer=dirac&seed=18446744073709551615",
            KernelParams {
                scale: 4,
                kernel_size: 1,
                init: Init::Default,
                initializer: Initializer::Dirac,
                seed: u64::MAX,
            },
        ),
        (
            "?scale=8&kernel_size=9&init=icnr&initializer=kaiming_uniform&seed=5",
            KernelParams {
                scale: 8,
                kernel_size: 9,
                init: Init::Icnr,
                initializer: Initializer::KaimingUniform,
                seed: 5,
            },
        ),
    ] {
        let res = app.get(&format!("/kernel{query}")).await;
        assert_eq!(res.status(), 200, "{query}");
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(res.text().await.unwrap(), Kernel::generate(&params).unwrap().to_json(), "{query}");
    }
    app.shutdown().await.unwrap();
}

/// The round trip: `GET /kernel?P`, then `POST /upscale` with that JSON as the `kernel` field gives the same PNG
/// bytes as `POST /upscale?P` (the server's own parameters), with or without consistent scale/kernel_size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_round_trip_gives_the_same_png() {
    let app = spawn_app().await;
    let input = png(&rgb8(19, 13));
    for params in ["?scale=3&kernel_size=5&init=plain&seed=9", "?init=default&seed=77", "?scale=2&initializer=dirac"] {
        let kernel_json = app.get(&format!("/kernel{params}")).await.text().await.unwrap();
        let own = app.post_raw(params, "image/png", input.clone()).await;
        assert_eq!(own.status(), 200);
        let own_score = own.headers()["x-checkerboard-score"].clone();
        let own = own.bytes().await.unwrap();

        let custom = app.post_multipart("", input.clone(), Some(kernel_json.clone())).await;
        assert_eq!(custom.status(), 200, "{params}");
        assert_eq!(custom.headers()["x-checkerboard-score"], own_score, "{params}");
        assert_eq!(custom.bytes().await.unwrap(), own, "{params}: kernel round trip changed the output");

        // Repeating the kernel's own parameters in the query is consistent, so accepted.
        let same = app.post_multipart(params, input.clone(), Some(kernel_json)).await;
        assert_eq!(same.status(), 200, "{params}");
        assert_eq!(same.bytes().await.unwrap(), own, "{params}");
    }
    app.shutdown().await.unwrap();
}

/// A hand-written kernel (only `weight`) is taken; its scale comes from the weight shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_custom_kernel_is_accepted() {
    let app = spawn_app().await;
    // 1x1 kernel, r = 2: 12 output channels, each copying input channel o / 4 (a nearest-neighbour upscaler).
    let weight: Vec<Vec<Vec<Vec<f32>>>> =
        (0..12).map(|o| (0..3).map(|i| vec![vec![if i == o / 4 { 1.0 } else { 0.0 }]]).collect()).collect();
    let json = serde_json::json!({ "weight": weight }).to_string();
    let src = rgb8(9, 5);
    let res = app.post_multipart("", png(&src), Some(json)).await;
    assert_eq!(res.status(), 200);
    let out = decode_png(&res.bytes().await.unwrap()).to_rgb8();
    let src = src.to_rgb8();
    assert_eq!(out.dimensions(), (18, 10));
    for (x, y, p) in out.enumerate_pixels() {
        assert_eq!(p, src.get_pixel(x / 2, y / 2), "at {x},{y}");
    }
    app.shutdown().await.unwrap();
}

/// A `scale` or `kernel_size` in the query that contradicts the kernel is a 400 that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contradicting_scale_or_kernel_size_is_400() {
    let app = spawn_app().await;
    let r3k5 = app.get("/kernel?scale=3&kernel_size=5").await.text().await.unwrap();
    let r2k1 = format!("{{\"weight\":{}}}", nested(&[12, 3, 1, 1], "0.1"));
    let input = png(&rgb8(8, 8));
    for (kernel_json, query, word) in [
        (&r3k5, "?scale=2", "scale"),
        (&r3k5, "?kernel_size=3", "kernel_size"),
        (&r3k5, "?scale=3&kernel_size=7", "kernel_size"),
        (&r2k1, "?scale=3", "scale"),
        (&r2k1, "?kernel_size=3", "kernel_size"),
    ] {
        let res = app.post_multipart(query, input.clone(), Some(kernel_json.clone())).await;
        let p = assert_problem(res, 400).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(word) && detail.contains("contradicts"), "{query}: {detail}");
    }
    app.shutdown().await.unwrap();
}

/// A nested JSON array of the given shape filled with `v`.
fn nested(shape: &[usize], v: &str) -> String {
    match shape {
        [] => v.to_string(),
        [n, rest @ ..] => format!("[{}]", vec![nested(rest, v); *n].join(",")),
    }
}

/// Bad kernel JSON in the multipart `kernel` field is a 400 carrying the kernel module's own message
/// (`Kernel::from_json`'s error) and naming what is wrong: malformed, binary, empty, a JSON array, no `weight`, an
/// unknown field, even / non-square / rank-2 / ragged / string-valued / wrongly shaped weights, out channels not 3r^2,
/// 4 input channels, a wrong bias shape, `scale` / `kernel_size` fields contradicting the shape, a huge scale, k = 99,
/// a million weights, over the 4 MiB kernel limit, 100,000-deep nesting, a BOM, values that are not finite f32
/// (1e39, 1e999, `NaN`, `Infinity`). The same upload with a good kernel, sent as a JSON file part, is a 200 of the
/// right size; the service keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kernel_json_is_400_with_the_kernel_message() {
    let app = spawn_app().await;
    let input = png(&rgb8(8, 8));
    let good: serde_json::Value = serde_json::from_str(&app.get("/kernel").await.text().await.unwrap()).unwrap();
    let mut wrong_shape = good.clone();
    wrong_shape["weight"][0][0] = serde_json::json!([[1.0, 2.0]]);
    let mut even = good.clone();
    even["kernel_size"] = serde_json::json!(2);
    let w_r2k1 = nested(&[12, 3, 1, 1], "0.1");
    let weight = |shape: &[usize], v: &str| format!("{{\"weight\":{}}}", nested(shape, v));
    // (what, kernel JSON, words the detail must name, case-insensitive)
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("not json", "not json".to_owned(), &["kernel"]),
        ("malformed", "{\"weight\": [[[".into(), &["kernel"]),
        ("binary", "\u{1}\u{2}binary".into(), &["kernel"]),
        ("empty", String::new(), &["kernel"]),
        ("empty object", "{}".to_owned(), &[]),
        ("empty array", "[]".to_owned(), &[]),
        ("json array", "[1,2,3]".into(), &["kernel"]),
        ("weight a number", r#"{"weight": 1}"#.to_owned(), &[]),
        ("no weight", "{\"bias\":[0]}".into(), &["weight"]),
        ("unknown field", format!("{{\"weight\":{w_r2k1},\"extra\":1}}"), &["extra"]),
        ("wrong shape", wrong_shape.to_string(), &[]),
        ("even kernel_size field", even.to_string(), &[]),
        ("even k", weight(&[12, 3, 2, 2], "0.1"), &["weight"]),
        ("out not 3r^2", weight(&[5, 3, 1, 1], "0.1"), &["weight"]),
        ("in channels 4", weight(&[12, 4, 1, 1], "0.1"), &["weight"]),
        ("weight rank 2", weight(&[12, 3], "0.1"), &["weight"]),
        ("non-square", weight(&[12, 3, 1, 3], "0.1"), &["weight"]),
        ("ragged", "{\"weight\":[[[[1]]],[[[1],[2]]]]}".into(), &["weight"]),
        ("string value", weight(&[12, 3, 1, 1], "\"0.1\""), &["weight"]),
        ("bias shape", format!("{{\"weight\":{w_r2k1},\"bias\":[0,0]}}"), &["bias"]),
        ("bias nested", format!("{{\"weight\":{w_r2k1},\"bias\":{}}}", nested(&[12, 1], "0")), &["bias"]),
        ("scale field contradicts shape", format!("{{\"scale\":3,\"weight\":{w_r2k1}}}"), &["scale"]),
        ("kernel_size field contradicts", format!("{{\"kernel_size\":3,\"weight\":{w_r2k1}}}"), &["kernel_size"]),
        ("huge scale field", format!("{{\"scale\":4294967295,\"weight\":{w_r2k1}}}"), &["scale"]),
        ("k over the max", weight(&[12, 3, 99, 99], "0"), &[]),
        ("a million weights", format!(r#"{{"weight": [{}]}}"#, vec!["0.0"; 1_000_000].join(",")), &[]),
        ("over the size limit", format!("{{\"weight\":{w_r2k1}{}}}", " ".repeat(5 << 20)), &["kernel"]),
        ("deeply nested", format!("{{\"weight\":{}0{}}}", "[".repeat(100_000), "]".repeat(100_000)), &["kernel"]),
        ("BOM", "\u{feff}{".to_owned(), &[]),
        ("1e39 (f32 overflow)", weight(&[12, 3, 1, 1], "1e39"), &["finite"]),
        ("1e999", r#"{"weight": [[[[1e999]]]]}"#.to_owned(), &["kernel"]),
        ("1e999 everywhere", weight(&[12, 3, 1, 1], "1e999"), &["kernel"]),
        ("NaN literal", weight(&[12, 3, 1, 1], "NaN"), &["kernel"]),
        ("Infinity literal", format!("{{\"weight\":{w_r2k1},\"bias\":{}}}", nested(&[12], "Infinity")), &["kernel"]),
    ];
    for (what, json, words) in cases {
        let expected = match Kernel::from_json(json.as_bytes()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{what}: the library accepts this kernel"),
        };
        let res = app.post_multipart("", input.clone(), Some(json)).await;
        let p = assert_problem(res, 400).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(&expected), "{what}: {detail} lacks {expected}");
        for w in words {
            assert!(detail.to_lowercase().contains(&w.to_lowercase()), "{what}: {detail} does not name {w}");
        }
    }
    // The same upload with a good kernel as a JSON file part: a 2x image, so the 400s above are about the kernels.
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(small_png()).file_name("in.png").mime_str("image/png").unwrap())
        .part(
            "kernel",
            reqwest::multipart::Part::bytes(format!("{{\"weight\":{w_r2k1}}}").into_bytes())
                .file_name("kernel.json")
                .mime_str("application/json")
                .unwrap(),
        );
    let res = app.client.post(app.url("/upscale")).multipart(form).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let info = png_info(&res.bytes().await.unwrap()).expect("a complete PNG");
    assert_eq!((info.width, info.height), (128, 96));
    app.assert_still_serving().await;
    app.shutdown().await.unwrap();
}
