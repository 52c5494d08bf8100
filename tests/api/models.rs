//! Models over HTTP: `GET /models`, `GET /models/{name}`, the `model` parameter and its rules, `X-Model`, uploaded
//! models (JSON and safetensors), and bad uploads, which are 4xx problems naming the problem, never 5xx.

use icnr_upscale::engine::Options;
use icnr_upscale::pipeline::Registry;
use serde_json::{json, Value};

use crate::helpers::*;

fn x_model(res: &reqwest::Response) -> String {
    res.headers().get("x-model").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

async fn multipart_model(
    app: &TestServer,
    query: &str,
    image: Vec<u8>,
    name: &str,
    model: Vec<u8>,
) -> reqwest::Response {
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(image).file_name("in.png"))
        .part("model", reqwest::multipart::Part::bytes(model).file_name(name.to_owned()));
    app.client.post(app.url(&format!("/upscale{query}"))).multipart(form).send().await.unwrap()
}

/// `GET /models` lists the trained defaults, `init` and the baselines; `GET /models/{name}` serves the model JSON
/// byte for byte as the library writes it; other names are 404 problems.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed_and_served() {
    let app = spawn_app().await;
    let res = app.get("/models").await;
    assert_eq!(res.status(), 200);
    let v: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    let models = v["models"].as_array().unwrap();
    let find = |n: &str| models.iter().find(|m| m["name"] == n).unwrap_or_else(|| panic!("{n} not listed: {v}"));
    for (r, name) in [(2, "espcn-x2"), (3, "espcn-x3"), (4, "espcn-x4")] {
        let m = find(name);
        assert_eq!(m["kind"], "trained");
        assert_eq!(m["scale"], r);
        assert_eq!(m["default"], true);
        assert!(m["parameters"].as_u64().unwrap() > 1000 && m["macs_per_pixel"].as_u64().unwrap() > 1000, "{m}");
        for key in ["name", "kind", "scale", "default", "parameters", "macs_per_pixel", "description"] {
            assert!(m.get(key).is_some(), "{key}");
        }
    }
    assert_eq!(find("init")["kind"], "generated");
    assert_eq!(find("init")["scale"], Value::Null);
    for b in ["nearest", "bicubic", "lanczos3"] {
        assert_eq!(find(b)["kind"], "baseline");
    }
    // One default per scale.
    for r in 2..=8 {
        let n = models.iter().filter(|m| m["default"] == true && m["scale"] == r).count();
        assert!(n <= 1, "scale {r}: {n} defaults");
    }

    let registry = Registry::builtin(Options::default());
    let res = app.get("/models/espcn-x2").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.text().await.unwrap(), registry.trained("espcn-x2").unwrap().to_json());

    for name in ["nope", "bicubic", "init", "ESPCN-X2"] {
        let p = assert_problem(app.get(&format!("/models/{name}")).await, 404).await;
        assert_eq!(p["type"], "tag:icnr-upscale,2026:no-such-model");
        assert!(p["detail"].as_str().unwrap().contains("espcn-x2"), "{p}");
    }
    app.shutdown().await.unwrap();
}

/// Which model runs: the default trained model for the scale, `init` when init parameters are given or the scale
/// has no trained model, or the named one; `X-Model` says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_parameter_picks_the_model() {
    let app = spawn_app().await;
    let img = png(&rgb8(20, 14));
    for (query, model, scale) in [
        ("", "espcn-x2", 2),
        ("?scale=3", "espcn-x3", 3),
        ("?scale=4", "espcn-x4", 4),
        ("?scale=5", "init", 5),
        ("?init=icnr", "init", 2),
        ("?seed=3&scale=3", "init", 3),
        ("?model=bicubic&scale=3", "bicubic", 3),
        ("?model=nearest", "nearest", 2),
        ("?model=lanczos3&scale=4", "lanczos3", 4),
        ("?model=espcn-x4", "espcn-x4", 4),
        ("?model=espcn-x3&scale=3", "espcn-x3", 3),
        ("?model=init&init=default&scale=2", "init", 2),
    ] {
        let res = app.post_raw(query, "image/png", img.clone()).await;
        assert_eq!(res.status(), 200, "{query}");
        assert_eq!(x_model(&res), model, "{query}");
        let out = decode_png(&res.bytes().await.unwrap());
        assert_eq!((out.width(), out.height()), (20 * scale, 14 * scale), "{query}");
    }
    // Nearest is exact: every r x r block is the input pixel.
    let res = app.post_raw("?model=nearest&scale=3", "image/png", img.clone()).await;
    let out = decode_png(&res.bytes().await.unwrap()).to_rgb8();
    let inp = rgb8(20, 14).to_rgb8();
    for (x, y, p) in out.enumerate_pixels() {
        assert_eq!(p, inp.get_pixel(x / 3, y / 3), "({x}, {y})");
    }
    app.shutdown().await.unwrap();
}

/// Contradictions and unknown names are 400 problems that name the alternatives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_contradictions_are_400_naming_alternatives() {
    let app = spawn_app().await;
    let img = png(&rgb8(8, 8));
    for (query, slug, needles) in [
        ("?model=espcn-x2&scale=3", "bad-query", vec!["espcn-x3", "bicubic"]),
        ("?model=espcn-x2&seed=1", "bad-query", vec!["model=init"]),
        ("?model=espcn-x3&kernel_size=5", "bad-query", vec!["model=init"]),
        ("?model=bicubic&init=icnr", "bad-query", vec!["model=init"]),
        ("?model=espcn", "unknown-model", vec!["espcn-x2", "espcn-x3", "espcn-x4", "init", "bicubic", "lanczos3"]),
        ("?model=", "bad-query", vec!["GET /models"]),
    ] {
        let p = assert_problem(app.post_raw(query, "image/png", img.clone()).await, 400).await;
        assert_eq!(p["type"], format!("tag:icnr-upscale,2026:{slug}"), "{query}: {p}");
        for n in needles {
            assert!(p["detail"].as_str().unwrap().contains(n), "{query}: {n} not in {p}");
        }
    }
    app.shutdown().await.unwrap();
}

/// A model uploaded as JSON or safetensors runs like the built-in it came from (the same pixels); with `model=`,
/// init parameters, a contradicting scale or a `kernel` field beside it, it is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_models_run() {
    let app = spawn_app().await;
    let img = png(&rgba8(17, 11));
    let json = app.get("/models/espcn-x2").await.bytes().await.unwrap().to_vec();
    let builtin = app.post_raw("?model=espcn-x2", "image/png", img.clone()).await.bytes().await.unwrap();
    let renamed = String::from_utf8(json.clone()).unwrap().replacen("\"espcn-x2\"", "\"mine\"", 1).into_bytes();
    let res = multipart_model(&app, "", img.clone(), "m.json", renamed.clone()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(x_model(&res), "mine");
    assert_eq!(res.bytes().await.unwrap(), builtin, "uploaded copy of espcn-x2 gives espcn-x2's pixels");

    let st =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/model_io/every_op.safetensors")).unwrap();
    let res = multipart_model(&app, "?scale=3", img.clone(), "m.safetensors", st).await;
    assert_eq!(res.status(), 200);
    assert_eq!(x_model(&res), "every-op-x3");
    assert_eq!(decode_png(&res.bytes().await.unwrap()).width(), 17 * 3);

    for query in ["?model=espcn-x2", "?seed=2", "?scale=3", "?init=icnr"] {
        assert_problem(multipart_model(&app, query, img.clone(), "m.json", json.clone()).await, 400).await;
    }
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(img.clone()))
        .text("kernel", app.get("/kernel").await.text().await.unwrap())
        .part("model", reqwest::multipart::Part::bytes(json.clone()));
    let res = app.client.post(app.url("/upscale")).multipart(form).send().await.unwrap();
    let p = assert_problem(res, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("at most one"), "{p}");
    app.shutdown().await.unwrap();
}

/// Bad model uploads are 400 (or 413 over the size limit) problems that say what is wrong; none is a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_model_uploads_are_4xx_naming_the_problem() {
    let app = spawn_app().await;
    let img = png(&rgb8(8, 8));
    let conv = |out: usize, inp: usize, k: usize| json!({"op": "conv2d", "weight": vec![vec![vec![vec![0.01f32; k]; k]; inp]; out]});
    let shuffle = json!({"op": "pixel_shuffle", "upscale_factor": 2});
    let doc = |layers: Vec<Value>| serde_json::to_vec(&json!({"name": "bad", "layers": layers})).unwrap();
    let mut nan = conv(12, 3, 3);
    nan["weight"][0][0][0][0] = json!(1e39);
    // 234k MACs per input pixel (over the 200k limit) in about 1 MB of JSON (under the 4 MiB byte limit).
    let zeros =
        |out: usize, inp: usize, k: usize| json!({"op": "conv2d", "weight": vec![vec![vec![vec![0; k]; k]; inp]; out]});
    let huge_macs = doc(vec![zeros(48, 3, 3), zeros(48, 48, 9), zeros(12, 48, 9), shuffle.clone()]);
    let st =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/model_io/every_op.safetensors")).unwrap();
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        ("wrong shape", doc(vec![conv(12, 4, 3), shuffle.clone()]), 400, "bad-model", "layers[0].weight"),
        ("wrong out", doc(vec![conv(13, 3, 3), shuffle.clone()]), 400, "bad-model", "12 channels"),
        ("unknown op", doc(vec![conv(12, 3, 3), json!({"op": "gelu"}), shuffle.clone()]), 400, "bad-model", "gelu"),
        ("not finite", doc(vec![nan, shuffle.clone()]), 400, "bad-model", "not a finite value"),
        ("too many MACs", huge_macs, 400, "bad-model", "MACs per input pixel"),
        ("too many layers", doc(vec![json!({"op": "relu"}); 40]), 400, "bad-model", "layers"),
        ("truncated safetensors", st[..st.len() / 2].to_vec(), 400, "bad-model", "safetensors"),
        ("not JSON", b"{\"layers\": [".to_vec(), 400, "bad-model", "model JSON"),
        ("over the byte limit", vec![b' '; (4 << 20) + 1], 413, "model-too-large", "bytes"),
    ];
    for (what, body, status, slug, needle) in cases {
        let res = multipart_model(&app, "", img.clone(), "m", body).await;
        let p = assert_problem(res, status).await;
        assert_eq!(p["type"], format!("tag:icnr-upscale,2026:{slug}"), "{what}: {p}");
        assert!(p["detail"].as_str().unwrap().contains(needle), "{what}: {needle} not in {p}");
    }
    app.shutdown().await.unwrap();
}
