//! icnr-upscale as a library: make an ICNR model, upscale an in-memory `image` buffer, and load weights saved by
//! PyTorch as safetensors. Every step asserts its result.
//!
//! ```text
//! cargo run --release --example library
//! ```
//!
//! It needs no default feature (`--no-default-features` runs it too): only the engine, the models and image I/O.

use std::collections::HashMap;
use std::path::PathBuf;

use icnr_upscale::{
    checkerboard_score, Conv2d, Image, Init, Initializer, Kernel, KernelParams, Layer, Model, ModelLimits, Options,
    Residual, Upscaler,
};
use image::{Rgb, RgbImage};
use ndarray::Array4;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let input = test_photo(24, 16);

    // 1. An ICNR model by hand: draw a sub-kernel W0 [3, 3, k, k], then tie it over groups of r*r consecutive output
    //    channels, W[o] = W0[o / r^2] (PyTorch: W0.repeat_interleave(r * r, dim=0)), with a zero bias (tied too).
    //    With the dirac sub-kernel (1 at the centre tap of channel c -> c), ICNR is exact nearest-neighbour.
    let (r, k) = (2usize, 3usize);
    let mut w0 = Array4::<f32>::zeros((3, 3, k, k));
    for c in 0..3 {
        w0[[c, c, k / 2, k / 2]] = 1.0;
    }
    let weight = Array4::from_shape_fn((3 * r * r, 3, k, k), |(o, i, y, x)| w0[[o / (r * r), i, y, x]]);
    let icnr = Model::new(
        "icnr-dirac-x2",
        vec![Layer::Conv2d(Conv2d::new(weight, None)?), Layer::PixelShuffle { upscale_factor: r as u32 }],
        Residual::None,
    )?;
    // The same model, generated: Kernel::generate draws W0 with the initializer and ties it the same way.
    let generated = Model::from_kernel(&Kernel::generate(&KernelParams {
        scale: 2,
        kernel_size: 3,
        init: Init::Icnr,
        initializer: Initializer::Dirac,
        seed: 0,
    })?);
    assert_eq!(icnr.layers(), generated.layers());
    println!("1. ICNR model: {} parameters, {} MACs per input pixel", icnr.parameters(), icnr.macs_per_pixel());

    // 2. Upscale an in-memory `image` buffer. The engine detects the tied weights and computes only the 3 distinct
    //    channels (the ICNR fast path); every 2x2 block of the output is uniform, so the checkerboard score is 0.
    let up = Upscaler::new(&icnr, Options::default())?;
    assert!(up.uses_fast_path());
    let output = up.upscale(&Image::from(input.clone()))?;
    assert_eq!(checkerboard_score(&output, 2), 0.0);
    let output = RgbImage::try_from(output)?;
    let nearest = RgbImage::from_fn(48, 32, |x, y| *input.get_pixel(x / 2, y / 2));
    assert_eq!(output, nearest, "ICNR(dirac) is nearest-neighbour upscaling");
    println!(
        "2. {}x{} -> {}x{} on the {} path (ICNR fast path), equal to nearest-neighbour, checkerboard score 0",
        input.width(),
        input.height(),
        output.width(),
        output.height(),
        up.path().name()
    );

    // PyTorch's default Conv2d init, untied, leaves a checkerboard: each r x r block gets r^2 different biases.
    let default = Model::from_kernel(&Kernel::generate(&KernelParams { init: Init::Default, ..Default::default() })?);
    let up_default = Upscaler::new(&default, Options::default())?;
    assert!(!up_default.uses_fast_path());
    let score = checkerboard_score(&up_default.upscale(&Image::from(input.clone()))?, 2);
    assert!(score > 0.0);
    println!("   PyTorch's default init instead: checkerboard score {score:.3}");

    // 3a. A conv's state_dict saved by PyTorch, `safetensors.torch.save_file(conv.state_dict(), path)`, is a kernel.
    let conv_file = std::fs::read(fixture("conv_f32.safetensors"))?;
    let kernel = Kernel::from_safetensors(&conv_file)?;
    assert_eq!(kernel.init(), Init::Custom);
    let from_torch = Model::from_kernel(&kernel);
    let out = Upscaler::new(&from_torch, Options::default())?.upscale(&Image::from(input.clone()))?;
    assert_eq!((out.width, out.height), (input.width() * kernel.scale(), input.height() * kernel.scale()));
    println!(
        "3. PyTorch conv state_dict: scale {}, kernel {}x{}",
        kernel.scale(),
        kernel.kernel_size(),
        kernel.kernel_size()
    );

    // 3b. A whole network saved by PyTorch (scripts/models.py): the state_dict, with the layer list in the metadata.
    //     It reads to the same model as its JSON, and runs on the multi-layer engine.
    let network = Model::load_file(fixture("model_io/every_op.safetensors"), &ModelLimits::default())?;
    let as_json = Model::from_json(&std::fs::read(fixture("model_io/every_op.json"))?, &ModelLimits::default())?;
    assert_eq!(network, as_json);
    let out = Upscaler::new(&network, Options::default())?.upscale(&Image::from(input.clone()))?;
    assert_eq!((out.width, out.height, out.channels), (input.width() * 3, input.height() * 3, 3));
    println!(
        "   PyTorch network {}: {} layers, residual {}, x{}",
        network.name(),
        network.layers().len(),
        network.residual(),
        network.scale()
    );

    // 3c. The same format written here: the ICNR model of step 1 as a state_dict (`body.N.weight`, `body.N.bias`)
    //     plus its layer list under `icnr_upscale_model`, read back unchanged.
    let bytes = to_safetensors(&icnr)?;
    let back = Model::from_safetensors(&bytes, &ModelLimits::default())?;
    assert_eq!(back, icnr);
    println!("   wrote and read back {} as {} bytes of safetensors", icnr.name(), bytes.len());
    Ok(())
}

/// A smooth, textured RGB test picture.
fn test_photo(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let h = x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77);
        Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, (h >> 24) as u8])
    })
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The model's tensors as little-endian f32 under PyTorch state_dict keys, and its layer list as metadata.
fn to_safetensors(model: &Model) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut layers = Vec::new();
    for (i, layer) in model.layers().iter().enumerate() {
        match layer {
            Layer::Conv2d(c) => {
                let le = |v: &mut dyn Iterator<Item = &f32>| v.flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
                tensors.push((format!("body.{i}.weight"), c.weight().shape().to_vec(), le(&mut c.weight().iter())));
                tensors.push((format!("body.{i}.bias"), c.bias().shape().to_vec(), le(&mut c.bias().iter())));
                layers.push(serde_json::json!({
                    "op": "conv2d", "weight": format!("body.{i}.weight"), "bias": format!("body.{i}.bias"),
                }));
            }
            Layer::PixelShuffle { upscale_factor } => {
                layers.push(serde_json::json!({"op": "pixel_shuffle", "upscale_factor": upscale_factor}));
            }
            other => {
                return Err(format!("this example writes conv2d and pixel_shuffle only, not {}", other.op()).into())
            }
        }
    }
    let description = serde_json::json!({
        "name": model.name(), "scale": model.scale(), "residual": model.residual(), "layers": layers,
    });
    let metadata = HashMap::from([("icnr_upscale_model".to_string(), description.to_string())]);
    let views = tensors
        .iter()
        .map(|(name, shape, data)| Ok((name.clone(), TensorView::new(Dtype::F32, shape.clone(), data)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(safetensors::serialize(views, Some(metadata))?)
}
