//! `GET /kernel` and custom kernels sent back through multipart.

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

/// A `scale` or `kernel_size` that contradicts the kernel is a 400 that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contradicting_scale_or_kernel_size_is_400() {
    let app = spawn_app().await;
    let kernel_json = app.get("/kernel?scale=3&kernel_size=5").await.text().await.unwrap();
    let input = png(&rgb8(8, 8));
    for (query, word) in
        [("?scale=2", "scale"), ("?kernel_size=3", "kernel_size"), ("?scale=3&kernel_size=7", "kernel_size")]
    {
        let res = app.post_multipart(query, input.clone(), Some(kernel_json.clone())).await;
        let p = assert_problem(res, 400).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(word) && detail.contains("contradicts"), "{query}: {detail}");
    }
    app.shutdown().await.unwrap();
}

/// Bad kernel JSON is a 400 carrying the kernel module's own message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kernel_json_is_400_with_the_kernel_message() {
    let app = spawn_app().await;
    let input = png(&rgb8(8, 8));
    let good: serde_json::Value = serde_json::from_str(&app.get("/kernel").await.text().await.unwrap()).unwrap();
    let mut wrong_shape = good.clone();
    wrong_shape["weight"][0][0] = serde_json::json!([[1.0, 2.0]]);
    let mut even = good.clone();
    even["kernel_size"] = serde_json::json!(2);
    let cases = [
        "not json".to_owned(),
        "{}".to_owned(),
        "[]".to_owned(),
        r#"{"weight": 1}"#.to_owned(),
        r#"{"weight": [[[[1e999]]]]}"#.to_owned(),
        wrong_shape.to_string(),
        even.to_string(),
        format!(r#"{{"weight": [{}]}}"#, vec!["0.0"; 1_000_000].join(",")),
        "\u{feff}{".to_owned(),
    ];
    for json in cases {
        let short: String = json.chars().take(40).collect();
        let expected = Kernel::from_json(json.as_bytes()).unwrap_err().to_string();
        let res = app.post_multipart("", input.clone(), Some(json)).await;
        let p = assert_problem(res, 400).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(&expected), "{short}: {detail} lacks {expected}");
    }
    app.shutdown().await.unwrap();
}
