//! The default x2 model beats bicubic on a small committed photo (a validation crop, never trained on), measured
//! exactly as the evaluation script measures it, and matches the Y-PSNR PyTorch gets with the same model.
//!
//! `tests/fixtures/quality/`: `hr.png` (96 x 96), `lr_x2.png` (Pillow bicubic downscale of it) and
//! `expected.json` (Pillow bicubic's and PyTorch's espcn-x2 Y-PSNR), written by `scripts/eval_quality.py --fixture`.
//! Also checks the built-in models against `models/SHA256SUMS` (written by `sha256sum models/*.json`).

use icnr_upscale::engine::{Image, Samples};
use icnr_upscale::imageio::{self, DecodeLimits};
use icnr_upscale::pipeline::{self, ModelRequest, Registry, RunLimits};
use icnr_upscale::{engine::Options, model::ModelLimits};
use serde_json::Value;

fn read(rel: &str) -> Vec<u8> {
    let path = format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn decode(bytes: &[u8]) -> Image {
    let limits = DecodeLimits { max_input_pixels: 1 << 20, max_output_pixels: 1 << 24, scale: 1 };
    imageio::decode(bytes, &limits).unwrap().image
}

/// Y-PSNR as the SR literature (and scripts/eval_quality.py) computes it: BT.601 Y on 0..255 RGB, `shave` pixels
/// off each border, `10 log10(255^2 / MSE)`.
fn y_psnr(a: &Image, b: &Image, shave: u32) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    let (Samples::U8(x), Samples::U8(y)) = (&a.samples, &b.samples) else { panic!("8-bit images") };
    let y_of = |p: &[u8]| 16.0 + (65.481 * p[0] as f64 + 128.553 * p[1] as f64 + 24.966 * p[2] as f64) / 255.0;
    let (ca, cb) = (a.channels as usize, b.channels as usize);
    let mut se = 0.0;
    let mut n = 0.0;
    for row in shave..a.height - shave {
        for col in shave..a.width - shave {
            let i = (row * a.width + col) as usize;
            let d = y_of(&x[i * ca..]) - y_of(&y[i * cb..]);
            se += d * d;
            n += 1.0;
        }
    }
    10.0 * (255.0f64 * 255.0 / (se / n)).log10()
}

fn upscale(model: &str, lr: &[u8]) -> Image {
    let registry = Registry::builtin(Options::default());
    let req = ModelRequest { model: Some(model.into()), scale: Some(2), ..ModelRequest::default() };
    let resolved = registry.resolve(&req, None, &ModelLimits::default()).unwrap();
    let mut png = Vec::new();
    let limits = RunLimits { max_input_pixels: 1 << 20, max_output_pixels: 1 << 24 };
    pipeline::run(lr, &resolved, &limits, Default::default(), &mut png, &|| false).unwrap();
    decode(&png)
}

#[test]
fn default_x2_model_beats_bicubic_and_matches_pytorch() {
    let expected: Value = serde_json::from_slice(&read("tests/fixtures/quality/expected.json")).unwrap();
    let hr = decode(&read("tests/fixtures/quality/hr.png"));
    let lr = read("tests/fixtures/quality/lr_x2.png");
    let registry = Registry::builtin(Options::default());
    let default = registry.default_for(2).expect("a default x2 model").name().to_string();
    let ours = y_psnr(&upscale(&default, &lr), &hr, 2);
    let bicubic = y_psnr(&upscale("bicubic", &lr), &hr, 2);
    let torch = expected["espcn_x2_y_psnr"].as_f64().unwrap();
    let pillow_bicubic = expected["bicubic_y_psnr"].as_f64().unwrap();
    println!("{default} {ours:.4} dB (PyTorch {torch:.4}), bicubic {bicubic:.4} dB (Pillow {pillow_bicubic:.4})");
    assert!(ours > bicubic + 0.5, "{default} {ours:.3} dB does not beat bicubic {bicubic:.3} dB");
    assert!(ours > pillow_bicubic + 0.5, "{default} {ours:.3} dB does not beat Pillow's bicubic {pillow_bicubic:.3}");
    // Same model, same rounding: within 1 LSB on a few samples moves the PSNR by far less than 0.01 dB.
    assert!((ours - torch).abs() < 0.01, "ours {ours:.4} dB, PyTorch {torch:.4} dB");
    // The image crate's Catmull-Rom and Pillow's bicubic are the same filter up to edge handling and rounding.
    assert!((bicubic - pillow_bicubic).abs() < 0.3, "bicubic {bicubic:.4} vs Pillow {pillow_bicubic:.4}");
}

/// Every built-in model file matches its recorded SHA-256, and is the model the registry serves.
#[test]
fn builtin_models_match_their_checksums() {
    use sha2::Digest;
    let sums = String::from_utf8(read("models/SHA256SUMS")).unwrap();
    let registry = Registry::builtin(Options::default());
    let mut checked = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (hex, file) = line.split_once("  ").expect("sha256sum format: HEX  FILE");
        let bytes = read(file);
        let got: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, hex, "{file}");
        let model = icnr_upscale::model::Model::from_json(&bytes, &ModelLimits::default()).unwrap();
        let served = registry.trained(model.name()).unwrap_or_else(|| panic!("{} is not built in", model.name()));
        assert_eq!(served, &model, "{file}");
        checked += 1;
    }
    let trained = registry.list().into_iter().filter(|m| m.kind == pipeline::ModelKind::Trained).count();
    assert_eq!(checked, trained, "every built-in model has a checksum");
}
