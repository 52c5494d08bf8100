//! The model file formats (`src/model.rs`) against the PyTorch reference `scripts/models.py`, and every way an
//! uploaded model can be wrong.
//!
//! Fixtures in `tests/fixtures/model_io/` are written by `scripts/make_model_io_fixtures.py` (models.py's
//! `to_json` and `save_safetensors` of a seeded random model that uses every op), with the float32 bits torch
//! holds for each state_dict tensor.

use std::collections::BTreeMap;

use icnr_upscale::kernel::{Kernel, KernelParams};
use icnr_upscale::model::{Layer, Limit, Model, ModelError, ModelLimits, Residual};
use serde_json::{json, Value};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/model_io/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn limits() -> ModelLimits {
    ModelLimits::default()
}

/// The float32 bits torch holds, by state_dict key.
fn torch_tensors() -> BTreeMap<String, Vec<u32>> {
    let v: Value = serde_json::from_slice(&fixture("every_op.f32.json")).unwrap();
    v["tensors"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, vals)| {
            let bits = vals.as_array().unwrap().iter().map(|h| u32::from_str_radix(h.as_str().unwrap(), 16).unwrap());
            (k.clone(), bits.collect())
        })
        .collect()
}

/// The tensors of a model under models.py's state_dict keys (`body.N.weight`, `body.N.bias`).
fn our_tensors(m: &Model) -> BTreeMap<String, Vec<u32>> {
    let mut out = BTreeMap::new();
    for (i, l) in m.layers().iter().enumerate() {
        match l {
            Layer::Conv2d(c) => {
                out.insert(
                    format!("body.{i}.weight"),
                    c.weight().as_slice().unwrap().iter().map(|v| v.to_bits()).collect(),
                );
                out.insert(
                    format!("body.{i}.bias"),
                    c.bias().as_slice().unwrap().iter().map(|v| v.to_bits()).collect(),
                );
            }
            Layer::Prelu { weight } => {
                out.insert(format!("body.{i}.weight"), weight.iter().map(|v| v.to_bits()).collect());
            }
            _ => {}
        }
    }
    out
}

/// PyTorch's JSON and safetensors of the same model load to the same model, whose tensors are torch's bits.
#[test]
fn json_and_safetensors_from_pytorch_load_to_torch_bits() {
    let from_json = Model::from_json(&fixture("every_op.json"), &limits()).unwrap();
    let from_st = Model::from_safetensors(&fixture("every_op.safetensors"), &limits()).unwrap();
    assert_eq!(from_json, from_st);
    assert_eq!(from_json.name(), "every-op-x3");
    assert_eq!(from_json.scale(), 3);
    assert_eq!(from_json.residual(), Residual::Nearest);
    let ops: Vec<&str> = from_json.layers().iter().map(Layer::op).collect();
    for op in ["conv2d", "relu", "tanh", "leaky_relu", "prelu", "pixel_shuffle"] {
        assert!(ops.contains(&op), "fixture lacks {op}: {ops:?}");
    }
    let torch = torch_tensors();
    let ours = our_tensors(&from_json);
    for (key, bits) in &torch {
        assert_eq!(ours.get(key), Some(bits), "{key}");
    }
    // A conv without a bias in torch has zero bias here.
    for (key, bits) in &ours {
        if !torch.contains_key(key) {
            assert!(key.ends_with(".bias") && bits.iter().all(|b| *b == 0), "{key}");
        }
    }
}

/// `to_json` reads back to the same model (every f32 printed as its shortest round-trip decimal).
#[test]
fn to_json_round_trips() {
    let m = Model::from_json(&fixture("every_op.json"), &limits()).unwrap();
    let text = m.to_json();
    assert!(text.ends_with('\n') && !text.trim_end().contains('\n'));
    let back = Model::from_json(text.as_bytes(), &limits()).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.to_json(), text);
    // The same document as PyTorch wrote, value for value.
    let ours: Value = serde_json::from_str(&text).unwrap();
    let theirs: Value = serde_json::from_slice(&fixture("every_op.json")).unwrap();
    let f32s = |v: &Value| -> Vec<u32> {
        fn walk(v: &Value, out: &mut Vec<u32>) {
            match v {
                Value::Number(n) => out.push((n.as_f64().unwrap() as f32).to_bits()),
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                Value::Object(o) => o.values().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&v["layers"], &mut out);
        out
    };
    // Ours spells out zero biases PyTorch leaves absent; compare the convs that have one.
    assert!(f32s(&ours).len() >= f32s(&theirs).len());
    assert_eq!(ours["name"], theirs["name"]);
    assert_eq!(ours["residual"], theirs["residual"]);
}

/// A generated kernel is a one-conv model, and back.
#[test]
fn generated_kernel_is_a_model() {
    let p = KernelParams { scale: 3, kernel_size: 5, ..KernelParams::default() };
    let k = Kernel::generate(&p).unwrap();
    let m = Model::from_kernel(&k);
    assert_eq!(m.scale(), 3);
    assert_eq!(m.layers().len(), 2);
    assert_eq!(m.macs_per_pixel(), 27 * 3 * 25);
    let back = m.as_kernel().expect("one conv + pixel shuffle is a kernel");
    assert_eq!(back.weight(), k.weight());
    assert_eq!(back.bias(), k.bias());
    // With a residual it is no longer a plain kernel.
    let json = m.to_json().replace("\"residual\":\"none\"", "\"residual\":\"nearest\"");
    assert!(Model::from_json(json.as_bytes(), &limits()).unwrap().as_kernel().is_none());
}

fn conv(out: usize, inp: usize, k: usize) -> Value {
    json!({"op": "conv2d", "weight": vec![vec![vec![vec![0.01f32; k]; k]; inp]; out], "bias": vec![0.0f32; out]})
}

fn model_json(layers: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"name": "t", "residual": "nearest", "layers": layers})).unwrap()
}

fn err(bytes: &[u8]) -> ModelError {
    Model::from_json(bytes, &limits()).expect_err("must be rejected")
}

fn shuffle(r: u32) -> Value {
    json!({"op": "pixel_shuffle", "upscale_factor": r})
}

/// Every way a model can be wrong is a typed error whose message names the layer and the problem.
#[test]
fn bad_models_are_rejected_with_what_is_wrong() {
    // The good one first, so the cases below fail for their own reason.
    assert!(Model::from_json(
        &model_json(vec![conv(8, 3, 3), json!({"op": "tanh"}), conv(12, 8, 3), shuffle(2)]),
        &limits()
    )
    .is_ok());

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (model_json(vec![conv(8, 4, 3), conv(12, 8, 3), shuffle(2)]), "layers[0].weight: expected [out, 3, k, k]"),
        (model_json(vec![conv(8, 3, 3), conv(12, 7, 3), shuffle(2)]), "layers[1].weight: expected [out, 8, k, k]"),
        (model_json(vec![conv(8, 3, 3), conv(13, 8, 3), shuffle(2)]), "needs 3*2*2 = 12 channels"),
        (model_json(vec![conv(12, 3, 4), shuffle(2)]), "k odd"),
        (model_json(vec![conv(12, 3, 3)]), "the last op must be pixel_shuffle"),
        (model_json(vec![conv(12, 3, 3), shuffle(2), json!({"op": "relu"})]), "pixel_shuffle must be the last op"),
        (model_json(vec![json!({"op": "relu"}), conv(12, 3, 3), shuffle(2)]), "the first op must be conv2d"),
        (model_json(vec![conv(12, 3, 3), json!({"op": "gelu"}), shuffle(2)]), "unknown op `gelu`"),
        (model_json(vec![conv(12, 3, 3), json!({"op": "prelu", "weight": [0.1, 0.2]}), shuffle(2)]), "[1] or [12]"),
        (
            model_json(vec![conv(12, 3, 3), json!({"op": "relu", "inplace": true}), shuffle(2)]),
            "unknown field `inplace`",
        ),
        (model_json(vec![conv(12, 3, 3), shuffle(9)]), "upscale_factor must be 2 to 8"),
        (model_json(vec![json!({"op": "conv2d", "bias": [0.0]}), shuffle(2)]), "missing `weight`"),
        (model_json(vec![json!({"op": "conv2d", "weight": [[[[0.0, 0.0], [0.0]]]]}), shuffle(2)]), "ragged array"),
        (model_json(vec![json!({"op": "conv2d", "weight": [[[["x"]]]]}), shuffle(2)]), "expected a number"),
        (
            model_json(vec![
                json!({"op": "conv2d", "weight": vec![vec![vec![vec![0.0; 3]; 3]; 3]; 12], "bias": [0.0]}),
                shuffle(2),
            ]),
            "layers[0].bias: expected [12], got [1]",
        ),
        (b"{\"layers\": [".to_vec(), "model JSON"),
        (b"[]".to_vec(), "expected an object"),
        (br#"{"layers": [], "extra": 1}"#.to_vec(), "unknown field `extra`"),
        (br#"{"name": "a b", "layers": []}"#.to_vec(), "name: must be 1 to 64 characters"),
        (
            serde_json::to_vec(&json!({"scale": 3, "layers": [conv(12, 3, 1), shuffle(2)]})).unwrap(),
            "scale: 3 does not match",
        ),
    ];
    for (bytes, want) in cases {
        let e = err(&bytes);
        assert!(e.to_string().contains(want), "{:?}: got {e}", String::from_utf8_lossy(&bytes[..bytes.len().min(80)]));
    }
    // Shape errors in the weight of the first conv: 4 input channels cannot follow RGB.
    assert!(matches!(err(&model_json(vec![conv(8, 4, 3), conv(12, 8, 3), shuffle(2)])), ModelError::Shape { .. }));
    assert!(matches!(
        err(&model_json(vec![conv(12, 3, 3), json!({"op": "x"}), shuffle(2)])),
        ModelError::UnknownOp { layer: 1, .. }
    ));
}

/// Values that are not finite f32 (JSON has no NaN; a number beyond f32 is one) are rejected with their place.
#[test]
fn non_finite_weights_are_rejected() {
    let mut c = conv(12, 3, 1);
    c["weight"][5][1][0][0] = json!(1e39);
    let e = err(&model_json(vec![c, shuffle(2)]));
    assert!(matches!(e, ModelError::NotFinite { .. }), "{e}");
    assert!(e.to_string().contains("layers[0].weight") && e.to_string().contains("not a finite"), "{e}");
    let e = err(&model_json(vec![conv(12, 3, 1), json!({"op": "leaky_relu", "negative_slope": -1e40}), shuffle(2)]));
    assert!(matches!(e, ModelError::NotFinite { .. }), "{e}");
    // NaN is not JSON at all.
    let mut c = conv(12, 3, 1);
    c["weight"][0][0][0][0] = json!(12345);
    let text = String::from_utf8(model_json(vec![c, shuffle(2)])).unwrap().replacen("12345", "NaN", 1);
    assert!(text.contains("NaN"));
    assert!(matches!(err(text.as_bytes()), ModelError::Syntax(_)));
}

/// Each limit is enforced and named: bytes, layers, channels and MACs per input pixel.
#[test]
fn limits_are_enforced_and_named() {
    let ok = model_json(vec![conv(32, 3, 5), json!({"op": "tanh"}), conv(12, 32, 3), shuffle(2)]);
    let small = |f: fn(&mut ModelLimits)| {
        let mut l = ModelLimits::default();
        f(&mut l);
        l
    };
    for (l, want) in [
        (small(|l| l.max_bytes = 100), Limit::Bytes),
        (small(|l| l.max_layers = 3), Limit::Layers),
        (small(|l| l.max_channels = 16), Limit::Channels),
        (small(|l| l.max_macs_per_pixel = 1000), Limit::MacsPerPixel),
    ] {
        match Model::from_json(&ok, &l) {
            Err(ModelError::TooLarge { limit, actual, max }) => {
                assert_eq!(limit, want);
                assert!(actual > max);
            }
            other => panic!("{want}: {other:?}"),
        }
        assert!(Model::from_safetensors(&fixture("every_op.safetensors"), &l).is_err() || want == Limit::Channels);
    }
    assert!(Model::from_json(&ok, &limits()).is_ok());
    let e = Model::from_json(&ok, &small(|l| l.max_macs_per_pixel = 1000)).unwrap_err().to_string();
    assert!(e.contains("MACs per input pixel") && e.contains("limit 1000"), "{e}");
}

/// Broken safetensors: truncated, no metadata, a metadata entry naming a missing tensor.
#[test]
fn bad_safetensors_are_rejected() {
    let good = fixture("every_op.safetensors");
    for cut in [0, 4, 8, 20, good.len() / 2, good.len() - 1] {
        let e = Model::from_safetensors(&good[..cut], &limits()).unwrap_err();
        assert!(matches!(e, ModelError::Syntax(_)), "cut {cut}: {e}");
    }
    // The kernel fixtures are plain state_dicts without our metadata.
    let plain = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/conv_f32.safetensors")).unwrap();
    let e = Model::from_safetensors(&plain, &limits()).unwrap_err();
    assert!(e.to_string().contains("icnr_upscale_model"), "{e}");
    // Rename a tensor in the header (same length, so the file stays well-formed) so the metadata points nowhere.
    let mut renamed = good.clone();
    let hlen = u64::from_le_bytes(renamed[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(renamed[8..8 + hlen].to_vec()).unwrap();
    let at = 8 + header.find("\"body.0.weight\"").expect("tensor key in the header");
    renamed[at + 1] = b'X';
    let e = Model::from_safetensors(&renamed, &limits()).unwrap_err();
    assert!(e.to_string().contains("no tensor"), "{e}");
}
