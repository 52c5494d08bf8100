//! `openapi.yaml` and the router agree: the same paths and methods, the same query parameters and values, the
//! documented responses and headers; and the live server serves the committed file.

use std::collections::BTreeSet;

use icnr_upscale::kernel::{MAX_KERNEL_SIZE, MAX_SCALE, MIN_SCALE};
use icnr_upscale::server::query::{COMPRESSION_VALUES, INITIALIZER_VALUES, INIT_VALUES};
use icnr_upscale::server::{ALLOWED_KERNEL_PARAMS, ALLOWED_UPSCALE_PARAMS, ROUTES};
use serde_yaml::Value;

use crate::helpers::*;

const HTTP_METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("read openapi.yaml")).expect("openapi.yaml is YAML")
}

/// Follows a local `$ref` (`#/a/b/c`) if `v` is one.
fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut cur = spec;
            for seg in r.trim_start_matches("#/").split('/') {
                cur = cur.get(seg).unwrap_or_else(|| panic!("dangling $ref {r}"));
            }
            resolve(spec, cur)
        }
        None => v,
    }
}

fn operation<'a>(spec: &'a Value, path: &str, method: &str) -> &'a Value {
    spec["paths"].get(path).and_then(|p| p.get(method)).unwrap_or_else(|| panic!("no {method} {path} in the spec"))
}

/// Names of the query parameters of an operation, in order.
fn query_params(spec: &Value, op: &Value) -> Vec<String> {
    op["parameters"]
        .as_sequence()
        .map(|ps| {
            ps.iter()
                .map(|p| resolve(spec, p))
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().expect("a list").iter().map(|s| s.as_str().expect("a string").to_owned()).collect()
}

/// The spec's paths and methods are exactly the router's `ROUTES`.
#[test]
fn spec_paths_and_methods_equal_the_router() {
    let spec = spec();
    assert_eq!(spec["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true));
    let mut in_spec = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        for (method, _) in item.as_mapping().expect("path item") {
            let method = method.as_str().unwrap();
            if HTTP_METHODS.contains(&method) {
                in_spec.insert((method.to_uppercase(), path.as_str().unwrap().to_owned()));
            }
        }
    }
    let in_router: BTreeSet<_> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(in_spec, in_router);
}

/// Query parameter names equal what the parser allows, and their enums and ranges equal what it accepts.
#[test]
fn spec_parameters_equal_the_query_parser() {
    let spec = spec();
    assert_eq!(query_params(&spec, operation(&spec, "/upscale", "post")), ALLOWED_UPSCALE_PARAMS);
    assert_eq!(query_params(&spec, operation(&spec, "/kernel", "get")), ALLOWED_KERNEL_PARAMS);
    for (path, method) in [("/healthz", "get"), ("/metrics", "get"), ("/openapi.yaml", "get")] {
        assert!(query_params(&spec, operation(&spec, path, method)).is_empty(), "{path}");
    }
    let p = &spec["components"]["parameters"];
    assert_eq!(strings(&p["init"]["schema"]["enum"]), INIT_VALUES);
    assert_eq!(strings(&p["initializer"]["schema"]["enum"]), INITIALIZER_VALUES);
    assert_eq!(strings(&p["compression"]["schema"]["enum"]), COMPRESSION_VALUES);
    assert_eq!(p["scale"]["schema"]["minimum"].as_u64(), Some(MIN_SCALE as u64));
    assert_eq!(p["scale"]["schema"]["maximum"].as_u64(), Some(MAX_SCALE as u64));
    let sizes: Vec<u64> =
        p["kernel_size"]["schema"]["enum"].as_sequence().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(sizes, (1..=MAX_KERNEL_SIZE as u64).step_by(2).collect::<Vec<_>>());
    assert_eq!(p["seed"]["schema"]["minimum"].as_u64(), Some(0));
    assert_eq!(p["seed"]["schema"]["maximum"].as_u64(), Some(u64::MAX));
}

/// `POST /upscale` documents every status of the contract with problem+json bodies, the image and multipart
/// request bodies, and the headers `X-Request-Id`, `X-Checkerboard-Score` and `Retry-After`.
#[test]
fn spec_documents_bodies_statuses_and_headers() {
    let spec = spec();
    let op = operation(&spec, "/upscale", "post");
    let content = op["requestBody"]["content"].as_mapping().unwrap();
    for ct in
        ["image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff", "application/octet-stream"]
    {
        assert!(content.contains_key(ct), "request body {ct}");
    }
    let mp = &op["requestBody"]["content"]["multipart/form-data"]["schema"];
    assert_eq!(strings(&mp["required"]), ["image"]);
    assert!(mp["properties"].get("kernel").is_some());
    assert!(mp["properties"].get("model").is_some());

    let ok = &op["responses"]["200"];
    assert!(ok["content"].get("image/png").is_some());
    for h in ["X-Request-Id", "X-Checkerboard-Score", "X-Model"] {
        assert!(ok["headers"].get(h).is_some(), "200 header {h}");
    }
    for status in ["400", "413", "415", "422", "503", "504"] {
        let res = resolve(&spec, &op["responses"][status]);
        let problem = &res["content"]["application/problem+json"]["schema"];
        assert_eq!(
            resolve(&spec, problem)["required"],
            serde_yaml::from_str::<Value>("[type, title, status, detail]").unwrap(),
            "{status}"
        );
        assert!(res["headers"].get("X-Request-Id").is_some(), "{status} X-Request-Id");
    }
    assert!(resolve(&spec, &op["responses"]["503"])["headers"].get("Retry-After").is_some());
}

/// The live server serves the committed file byte for byte, answers every route of `ROUTES` (no 404 or 405),
/// and answers 405 for every other method on those paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_router_matches_routes() {
    let app = spawn_app().await;
    let res = app.get("/openapi.yaml").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/yaml");
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    assert_eq!(res.text().await.unwrap(), file);

    for (method, path) in ROUTES {
        // The path template of GET /models/{name}, filled with a built-in trained model.
        let path = &path.replace("{name}", "espcn-x2");
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let status = app.client.request(m, app.url(path)).send().await.unwrap().status().as_u16();
        // POST /upscale without a body is a 415; every other route answers 200.
        assert!(![404, 405].contains(&status) && status < 500, "{method} {path}: {status}");
        for other in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if other != *method {
                let m = reqwest::Method::from_bytes(other.as_bytes()).unwrap();
                let res = app.client.request(m, app.url(path)).send().await.unwrap();
                assert_problem(res, 405).await;
            }
        }
    }
    app.shutdown().await.unwrap();
}
