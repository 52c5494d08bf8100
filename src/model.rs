//! Models: the one thing the engine runs. A [`Model`] is an ordered list of [`Layer`]s (conv2d, activations, one
//! final pixel_shuffle) plus an optional global [`Residual`]; conv weights are `ndarray` tensors in PyTorch's layout.
//!
//! # The model JSON (exchange, built-in and upload)
//! ```json
//! {"name": "espcn-x2", "scale": 2, "residual": "nearest",
//!  "layers": [{"op": "conv2d", "weight": [[[[0.1]]]], "bias": [0.0]},
//!             {"op": "tanh"},
//!             {"op": "pixel_shuffle", "upscale_factor": 2}],
//!  "description": "...", "training": {"free-form": "provenance"}}
//! ```
//! - `conv2d`: `weight` is PyTorch's `weight.tolist()`, `[out, in, k, k]`, k odd (1 to 9), zero padding k/2,
//!   stride 1; `bias` is optional (zeros).
//! - `relu`, `tanh`, `leaky_relu` (`negative_slope`), `prelu` (`weight` of length 1 or of length channels),
//!   `pixel_shuffle` (`upscale_factor`).
//! - The first conv takes 3 channels (RGB); `pixel_shuffle` is the last op and the channels reaching it are 3*r^2.
//! - `residual`: `none` or `nearest` (the nearest-neighbour upscale of the input is added before clamping).
//! - `scale`, when present, must equal the pixel shuffle's `upscale_factor`.
//!
//! The PyTorch module that reads and writes the same JSON is `scripts/models.py`.
//!
//! # safetensors
//! The state_dict of that module (`body.N.weight`, `body.N.bias`), with the layer list in the file's metadata
//! under `icnr_upscale_model`: the same JSON without tensors, where each conv2d (and prelu) names its tensors by
//! key, e.g. `{"op": "conv2d", "weight": "body.0.weight", "bias": "body.0.bias"}`.

use std::fmt;

use ndarray::{Array1, Array4};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::kernel::{self, Kernel, Nested, MAX_KERNEL_SIZE, MAX_SCALE, MIN_SCALE};
use crate::names::{named_enum, UnknownName};

/// Input channels of every model: RGB.
pub const MODEL_IN_CHANNELS: usize = 3;

/// Bounds on a model from outside (an upload or a file). Built-in and generated models are within them too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelLimits {
    /// Largest model file, JSON or safetensors.
    pub max_bytes: usize,
    /// Most layers (ops, counting activations and the pixel shuffle).
    pub max_layers: usize,
    /// Most channels of any conv's input or output.
    pub max_channels: usize,
    /// Most multiply-adds per input pixel, over all convs.
    pub max_macs_per_pixel: u64,
}

impl Default for ModelLimits {
    fn default() -> Self {
        ModelLimits { max_bytes: 4 << 20, max_layers: 32, max_channels: 256, max_macs_per_pixel: 200_000 }
    }
}

/// Which [`ModelLimits`] bound was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Bytes,
    Layers,
    Channels,
    MacsPerPixel,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Bytes => "bytes",
            Limit::Layers => "layers",
            Limit::Channels => "channels",
            Limit::MacsPerPixel => "MACs per input pixel",
        })
    }
}

/// Why a model was rejected. Messages are written for the caller and name the layer at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The file is not valid JSON / safetensors, or a field has the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// An op name that is not one of the supported ops.
    #[error("layers[{layer}]: unknown op `{op}` (supported: {})", Op::NAMES.join(", "))]
    UnknownOp { layer: usize, op: String },
    /// A field an op needs is missing, or an unknown field is present.
    #[error("layers[{layer}] ({op}): {msg}")]
    Field { layer: usize, op: &'static str, msg: String },
    /// A tensor has the wrong shape.
    #[error("{tensor}: expected {expected}, got {got}")]
    Shape { tensor: String, expected: String, got: String },
    /// A weight, bias or parameter is NaN or infinite.
    #[error("{tensor}: {value} is not a finite value")]
    NotFinite { tensor: String, value: f32 },
    /// The layer sequence is not a valid sub-pixel network.
    #[error("{0}")]
    Structure(String),
    /// A bound of [`ModelLimits`] was exceeded.
    #[error("model too large: {actual} {limit} (limit {max})")]
    TooLarge { limit: Limit, actual: u64, max: u64 },
}

/// A 2-D convolution, PyTorch semantics: stride 1, zero padding k/2, cross-correlation.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    weight: Array4<f32>,
    bias: Array1<f32>,
}

impl Conv2d {
    /// `weight [out, in, k, k]` (k odd, 1 to 9), `bias [out]` (zeros when `None`), all values finite.
    pub fn new(weight: Array4<f32>, bias: Option<Array1<f32>>) -> Result<Conv2d, ModelError> {
        Conv2d::checked("weight", "bias", weight, bias)
    }

    fn checked(wname: &str, bname: &str, weight: Array4<f32>, bias: Option<Array1<f32>>) -> Result<Conv2d, ModelError> {
        let s = weight.shape().to_vec();
        let k_ok = u32::try_from(s[2]).is_ok_and(kernel::is_valid_kernel_size);
        if s[2] != s[3] || !k_ok || s[0] == 0 || s[1] == 0 {
            return Err(ModelError::Shape {
                tensor: wname.to_string(),
                expected: format!("[out, in, k, k] with out, in >= 1 and k odd, 1 to {MAX_KERNEL_SIZE}"),
                got: fmt_shape(&s),
            });
        }
        let bias = bias.unwrap_or_else(|| Array1::zeros(s[0]));
        if bias.len() != s[0] {
            return Err(ModelError::Shape {
                tensor: bname.to_string(),
                expected: format!("[{}]", s[0]),
                got: fmt_shape(bias.shape()),
            });
        }
        check_finite(wname, weight.iter())?;
        check_finite(bname, bias.iter())?;
        Ok(Conv2d { weight, bias })
    }

    /// `[out, in, k, k]`.
    pub fn weight(&self) -> &Array4<f32> {
        &self.weight
    }
    /// `[out]`.
    pub fn bias(&self) -> &Array1<f32> {
        &self.bias
    }
    pub fn in_channels(&self) -> usize {
        self.weight.shape()[1]
    }
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[0]
    }
    pub fn kernel_size(&self) -> usize {
        self.weight.shape()[2]
    }
    /// Multiply-adds per pixel of its input plane.
    pub fn macs_per_pixel(&self) -> u64 {
        self.weight.len() as u64
    }
}

/// One op of a model.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    Conv2d(Conv2d),
    Relu,
    Tanh,
    /// `max(0, x) + negative_slope * min(0, x)`.
    LeakyRelu {
        negative_slope: f32,
    },
    /// Like leaky_relu with a learned slope: one for every channel, or one shared (length 1).
    Prelu {
        weight: Array1<f32>,
    },
    /// PyTorch's PixelShuffle: `out[c, h*r+i, w*r+j] = in[c*r*r + i*r + j, h, w]`.
    PixelShuffle {
        upscale_factor: u32,
    },
}

named_enum! {
    /// The ops a model's `layers` can hold: the `op` field of the model JSON, spelled here only.
    pub enum Op ("op") {
        Conv2d = "conv2d",
        Relu = "relu",
        Tanh = "tanh",
        LeakyRelu = "leaky_relu",
        Prelu = "prelu",
        PixelShuffle = "pixel_shuffle",
    }
}

impl Layer {
    /// Which op this layer is.
    pub fn kind(&self) -> Op {
        match self {
            Layer::Conv2d(_) => Op::Conv2d,
            Layer::Relu => Op::Relu,
            Layer::Tanh => Op::Tanh,
            Layer::LeakyRelu { .. } => Op::LeakyRelu,
            Layer::Prelu { .. } => Op::Prelu,
            Layer::PixelShuffle { .. } => Op::PixelShuffle,
        }
    }
    /// The op name used in the model JSON ([`Op::name`]).
    pub fn op(&self) -> &'static str {
        self.kind().name()
    }
}

named_enum! {
    /// A global skip connection added to the network's output before clamping.
    pub enum Residual ("residual", default None) {
        /// The network's output alone.
        None = "none",
        /// Plus the nearest-neighbour upscale of the input.
        Nearest = "nearest",
    }
}

/// A validated sub-pixel network. Fields are private; every constructor checks the structure (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    name: String,
    scale: u32,
    residual: Residual,
    layers: Vec<Layer>,
    description: String,
    training: Value,
}

impl Model {
    /// Checks the layer sequence against the default [`ModelLimits`]: first conv takes 3 channels, channels chain,
    /// prelu lengths, one final pixel_shuffle with 3*r^2 channels and r from 2 to 8.
    ///
    /// ```
    /// use icnr_upscale::{Conv2d, Layer, Model, ModelError, Residual};
    /// use ndarray::{Array1, Array4};
    ///
    /// // conv 3 -> 8 (3x3), tanh, conv 8 -> 3*2*2 (3x3), pixel shuffle 2, plus the nearest residual.
    /// let layers = vec![
    ///     Layer::Conv2d(Conv2d::new(Array4::zeros((8, 3, 3, 3)), Some(Array1::zeros(8)))?),
    ///     Layer::Tanh,
    ///     Layer::Conv2d(Conv2d::new(Array4::zeros((12, 8, 3, 3)), None)?),
    ///     Layer::PixelShuffle { upscale_factor: 2 },
    /// ];
    /// let model = Model::new("tiny-x2", layers, Residual::Nearest)?;
    /// assert_eq!(model.scale(), 2);
    /// assert_eq!(model.parameters(), (8 * 27 + 8) + (12 * 72 + 12));
    /// assert_eq!(model.halo(), 2);
    ///
    /// // An invalid model is an error, never a panic: pixel_shuffle(3) needs 3*3*3 = 27 channels, not 12.
    /// let layers = vec![
    ///     Layer::Conv2d(Conv2d::new(Array4::zeros((12, 3, 3, 3)), None)?),
    ///     Layer::PixelShuffle { upscale_factor: 3 },
    /// ];
    /// assert!(matches!(Model::new("bad", layers, Residual::None), Err(ModelError::Structure(_))));
    /// # Ok::<(), ModelError>(())
    /// ```
    pub fn new(name: impl Into<String>, layers: Vec<Layer>, residual: Residual) -> Result<Model, ModelError> {
        Model::with_limits(name, layers, residual, &ModelLimits::default())
    }

    /// [`Model::new`] with explicit limits.
    pub fn with_limits(
        name: impl Into<String>,
        layers: Vec<Layer>,
        residual: Residual,
        limits: &ModelLimits,
    ) -> Result<Model, ModelError> {
        let scale = validate(&layers, limits)?;
        Ok(Model { name: name.into(), scale, residual, layers, description: String::new(), training: Value::Null })
    }

    /// Sets the one-sentence description.
    pub fn with_description(mut self, description: impl Into<String>) -> Model {
        self.description = description.into();
        self
    }

    /// Sets the free-form training provenance.
    pub fn with_training(mut self, training: Value) -> Model {
        self.training = training;
        self
    }

    /// Renames the model.
    pub fn with_name(mut self, name: impl Into<String>) -> Model {
        self.name = name.into();
        self
    }

    /// A generated kernel as a model: one conv (3 -> 3r^2) and one pixel shuffle, no residual, named `init`.
    ///
    /// ```
    /// use icnr_upscale::{Kernel, KernelParams, Layer, Model};
    ///
    /// let kernel = Kernel::generate(&KernelParams::default())?; // ICNR, scale 2, 3x3
    /// let model = Model::from_kernel(&kernel);
    /// assert_eq!((model.name(), model.scale(), model.macs_per_pixel()), ("init", 2, 12 * 3 * 3 * 3));
    /// let [Layer::Conv2d(conv), Layer::PixelShuffle { upscale_factor: 2 }] = model.layers() else {
    ///     panic!("one conv and one pixel shuffle")
    /// };
    /// assert_eq!(conv.weight().shape(), [12, 3, 3, 3]);
    /// # Ok::<(), icnr_upscale::KernelError>(())
    /// ```
    pub fn from_kernel(kernel: &Kernel) -> Model {
        let conv = Conv2d { weight: kernel.weight().clone(), bias: kernel.bias().clone() };
        Model {
            name: "init".into(),
            scale: kernel.scale(),
            residual: Residual::None,
            layers: vec![Layer::Conv2d(conv), Layer::PixelShuffle { upscale_factor: kernel.scale() }],
            description: String::new(),
            training: Value::Null,
        }
    }

    /// When the model is exactly one conv (3 -> 3r^2) and a pixel shuffle without residual, that conv as a
    /// [`Kernel`] (custom init): the single-layer engine runs it.
    pub fn as_kernel(&self) -> Option<Kernel> {
        match (self.residual, self.layers.as_slice()) {
            (Residual::None, [Layer::Conv2d(c), Layer::PixelShuffle { .. }]) => {
                Kernel::new(c.weight.clone(), Some(c.bias.clone())).ok()
            }
            _ => None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn scale(&self) -> u32 {
        self.scale
    }
    pub fn residual(&self) -> Residual {
        self.residual
    }
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    pub fn description(&self) -> &str {
        &self.description
    }
    pub fn training(&self) -> &Value {
        &self.training
    }

    /// The convs, in order.
    pub fn convs(&self) -> impl Iterator<Item = &Conv2d> {
        self.layers.iter().filter_map(|l| match l {
            Layer::Conv2d(c) => Some(c),
            _ => None,
        })
    }

    /// Learned parameters (weights, biases, prelu slopes).
    pub fn parameters(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| match l {
                Layer::Conv2d(c) => (c.weight.len() + c.bias.len()) as u64,
                Layer::Prelu { weight } => weight.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Multiply-adds per input (low-resolution) pixel, over all convs.
    pub fn macs_per_pixel(&self) -> u64 {
        self.convs().map(Conv2d::macs_per_pixel).sum()
    }

    /// Rows (and columns) of input context each output pixel depends on, on each side: the sum of k/2.
    pub fn halo(&self) -> usize {
        self.convs().map(|c| c.kernel_size() / 2).sum()
    }

    /// The model JSON, one line ending with `\n`; every f32 is the shortest decimal that reads back to it.
    pub fn to_json(&self) -> String {
        let standard: Vec<Option<Array4<f32>>> = self
            .layers
            .iter()
            .map(|l| match l {
                Layer::Conv2d(c) => Some(c.weight.as_standard_layout().into_owned()),
                _ => None,
            })
            .collect();
        let layers: Vec<LayerOut<'_>> = self
            .layers
            .iter()
            .zip(&standard)
            .map(|(l, w)| {
                let mut out = LayerOut { op: l.kind(), ..LayerOut::default() };
                match l {
                    Layer::Conv2d(c) => {
                        let w = w.as_ref().expect("a conv has its weight");
                        out.weight = Some(Nested { values: w.as_slice().expect("standard layout"), shape: w.shape() });
                        out.bias = Some(c.bias.to_vec());
                    }
                    Layer::Relu | Layer::Tanh => {}
                    Layer::LeakyRelu { negative_slope } => out.negative_slope = Some(*negative_slope),
                    Layer::Prelu { weight } => out.prelu_weight = Some(weight.to_vec()),
                    Layer::PixelShuffle { upscale_factor } => out.upscale_factor = Some(*upscale_factor),
                }
                out
            })
            .collect();
        let out = ModelOut {
            name: &self.name,
            scale: self.scale,
            residual: self.residual,
            layers,
            description: &self.description,
            training: &self.training,
        };
        let mut s = serde_json::to_string(&out).expect("model JSON serialization cannot fail");
        s.push('\n');
        s
    }

    /// Reads model JSON within `limits` (the byte limit is checked before parsing).
    pub fn from_json(bytes: &[u8], limits: &ModelLimits) -> Result<Model, ModelError> {
        check_bytes(bytes.len(), limits)?;
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            let msg = e.to_string();
            if msg.starts_with("number out of range") {
                ModelError::Syntax(format!("model JSON: {msg}: not a finite value"))
            } else {
                ModelError::Syntax(format!("model JSON: {msg}"))
            }
        })?;
        let Value::Object(mut top) = v else {
            return Err(ModelError::Syntax("model JSON: expected an object with `layers`".into()));
        };
        let (name, claimed_scale, residual, description, training) = header(&mut top)?;
        let Some(Value::Array(raw)) = top.remove("layers") else {
            return Err(ModelError::Syntax("model JSON: `layers` must be an array of {\"op\": ...} objects".into()));
        };
        if let Some(k) = top.keys().next() {
            return Err(ModelError::Syntax(format!(
                "model JSON: unknown field `{k}` (expected name, scale, residual, layers, description, training)"
            )));
        }
        if raw.len() > limits.max_layers {
            return Err(too_large(Limit::Layers, raw.len() as u64, limits.max_layers as u64));
        }
        let mut layers = Vec::with_capacity(raw.len());
        for (i, l) in raw.into_iter().enumerate() {
            layers.push(layer_from_json(i, l, &mut JsonTensors)?);
        }
        finish(name, claimed_scale, residual, description, training, layers, limits)
    }

    /// Reads a safetensors file (see the module doc) within `limits`. Tensors may be F32, F16 or BF16.
    pub fn from_safetensors(bytes: &[u8], limits: &ModelLimits) -> Result<Model, ModelError> {
        check_bytes(bytes.len(), limits)?;
        let syntax = |e: safetensors::SafeTensorError| ModelError::Syntax(format!("safetensors: {e}"));
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(syntax)?;
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(syntax)?;
        let Some(desc) = meta.metadata().as_ref().and_then(|m| m.get("icnr_upscale_model")) else {
            return Err(ModelError::Syntax(
                "safetensors: no `icnr_upscale_model` entry in the metadata (the layer list; see scripts/models.py)"
                    .into(),
            ));
        };
        let v: Value = serde_json::from_str(desc)
            .map_err(|e| ModelError::Syntax(format!("safetensors metadata icnr_upscale_model: {e}")))?;
        let Value::Object(mut top) = v else {
            return Err(ModelError::Syntax("safetensors metadata icnr_upscale_model: expected an object".into()));
        };
        let (name, claimed_scale, residual, description, training) = header(&mut top)?;
        let Some(Value::Array(raw)) = top.remove("layers") else {
            return Err(ModelError::Syntax(
                "safetensors metadata icnr_upscale_model: `layers` must be an array".into(),
            ));
        };
        if raw.len() > limits.max_layers {
            return Err(too_large(Limit::Layers, raw.len() as u64, limits.max_layers as u64));
        }
        let mut src = StTensors { st: &st };
        let mut layers = Vec::with_capacity(raw.len());
        for (i, l) in raw.into_iter().enumerate() {
            layers.push(layer_from_json(i, l, &mut src)?);
        }
        finish(name, claimed_scale, residual, description, training, layers, limits)
    }

    /// Reads a model file: `.safetensors` (any case) as safetensors, anything else as model JSON. Files over the
    /// byte limit are rejected before they are read.
    pub fn load_file(path: impl AsRef<std::path::Path>, limits: &ModelLimits) -> Result<Model, ModelError> {
        let path = path.as_ref();
        let io = |e: std::io::Error| ModelError::Syntax(format!("cannot read {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len > limits.max_bytes as u64 {
            return Err(too_large(Limit::Bytes, len, limits.max_bytes as u64));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        std::io::Read::read_to_end(&mut std::io::Read::take(file, limits.max_bytes as u64 + 1), &mut bytes)
            .map_err(io)?;
        let is_st = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        if is_st {
            Model::from_safetensors(&bytes, limits)
        } else {
            Model::from_json(&bytes, limits)
        }
    }
}

fn too_large(limit: Limit, actual: u64, max: u64) -> ModelError {
    ModelError::TooLarge { limit, actual, max }
}

fn check_bytes(n: usize, limits: &ModelLimits) -> Result<(), ModelError> {
    if n > limits.max_bytes {
        return Err(too_large(Limit::Bytes, n as u64, limits.max_bytes as u64));
    }
    Ok(())
}

type Header = (String, Option<u32>, Residual, String, Value);

fn header(top: &mut Map<String, Value>) -> Result<Header, ModelError> {
    let syntax = |m: String| ModelError::Syntax(m);
    let name = match top.remove("name") {
        None => "custom".to_string(),
        Some(Value::String(s)) => s,
        Some(_) => return Err(syntax("name: must be a string".into())),
    };
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(syntax(format!("name: must be 1 to 64 characters of [A-Za-z0-9._-], got {name:?}")));
    }
    let scale = match top.remove("scale") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|s| u32::try_from(s).ok())
                .ok_or_else(|| syntax(format!("scale: must be an integer from {MIN_SCALE} to {MAX_SCALE}")))?,
        ),
    };
    let residual = match top.remove("residual") {
        None => Residual::None,
        Some(Value::String(s)) => s.parse().map_err(|e: UnknownName| syntax(e.to_string()))?,
        Some(_) => return Err(syntax("residual: must be \"none\" or \"nearest\"".into())),
    };
    let description = match top.remove("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(_) => return Err(syntax("description: must be a string".into())),
    };
    let training = top.remove("training").unwrap_or(Value::Null);
    Ok((name, scale, residual, description, training))
}

fn finish(
    name: String,
    claimed_scale: Option<u32>,
    residual: Residual,
    description: String,
    training: Value,
    layers: Vec<Layer>,
    limits: &ModelLimits,
) -> Result<Model, ModelError> {
    let model = Model::with_limits(name, layers, residual, limits)?;
    if let Some(s) = claimed_scale {
        if s != model.scale {
            return Err(ModelError::Structure(format!(
                "scale: {s} does not match the pixel shuffle's upscale_factor {}",
                model.scale
            )));
        }
    }
    Ok(model.with_description(description).with_training(training))
}

/// Where a layer's tensors come from: inline JSON arrays, or safetensors keys.
trait TensorSource {
    fn tensor(
        &mut self,
        layer: usize,
        what: &str,
        v: Value,
        depth: usize,
    ) -> Result<(Vec<usize>, Vec<f32>), ModelError>;
}

struct JsonTensors;

impl TensorSource for JsonTensors {
    fn tensor(
        &mut self,
        layer: usize,
        what: &str,
        v: Value,
        depth: usize,
    ) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
        let name = format!("layers[{layer}].{what}");
        let mut shape: Vec<Option<usize>> = vec![None; depth];
        let mut values = Vec::new();
        walk(&name, &v, 0, &mut shape, &mut values)?;
        Ok((shape.into_iter().map(|d| d.unwrap_or(0)).collect(), values))
    }
}

/// Flattens a nested array of numbers of exactly `shape.len()` levels, checking it is rectangular.
fn walk(
    name: &str,
    v: &Value,
    level: usize,
    shape: &mut [Option<usize>],
    out: &mut Vec<f32>,
) -> Result<(), ModelError> {
    let depth = shape.len();
    let bad = |m: String| ModelError::Syntax(format!("{name}: {m}"));
    if level == depth {
        let x = v.as_f64().ok_or_else(|| bad(format!("expected a number at depth {depth}, got {}", kind(v))))?;
        let f = x as f32;
        if !f.is_finite() {
            return Err(ModelError::NotFinite { tensor: name.to_string(), value: f });
        }
        out.push(f);
        return Ok(());
    }
    let Value::Array(items) = v else {
        return Err(bad(format!("expected a nested array of depth {depth}, got {} at depth {level}", kind(v))));
    };
    match shape[level] {
        None => shape[level] = Some(items.len()),
        Some(n) if n != items.len() => {
            return Err(bad(format!("ragged array: {} elements at depth {level} where others have {n}", items.len())))
        }
        Some(_) => {}
    }
    for it in items {
        walk(name, it, level + 1, shape, out)?;
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

struct StTensors<'a, 'b> {
    st: &'a safetensors::SafeTensors<'b>,
}

impl TensorSource for StTensors<'_, '_> {
    fn tensor(
        &mut self,
        layer: usize,
        what: &str,
        v: Value,
        depth: usize,
    ) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
        let Value::String(key) = v else {
            return Err(ModelError::Syntax(format!("layers[{layer}].{what}: must name a tensor of the file")));
        };
        let t = self
            .st
            .tensor(&key)
            .map_err(|_| ModelError::Syntax(format!("layers[{layer}].{what}: no tensor `{key}` in the file")))?;
        if t.shape().len() != depth {
            return Err(ModelError::Shape {
                tensor: key.clone(),
                expected: format!("{depth} dimensions"),
                got: fmt_shape(t.shape()),
            });
        }
        let values = crate::kernel::tensor_f32(&key, &t).map_err(|e| ModelError::Syntax(e.to_string()))?;
        if let Some(f) = values.iter().find(|v| !v.is_finite()) {
            return Err(ModelError::NotFinite { tensor: key, value: *f });
        }
        Ok((t.shape().to_vec(), values))
    }
}

fn layer_from_json(i: usize, v: Value, src: &mut dyn TensorSource) -> Result<Layer, ModelError> {
    let Value::Object(mut m) = v else {
        return Err(ModelError::Syntax(format!("layers[{i}]: expected an object with `op`")));
    };
    let op = match m.remove("op") {
        Some(Value::String(s)) => s,
        _ => return Err(ModelError::Syntax(format!("layers[{i}]: missing `op` (a string)"))),
    };
    let field = |op: &'static str, msg: String| ModelError::Field { layer: i, op, msg };
    let no_more = |m: &Map<String, Value>, op: &'static str| match m.keys().next() {
        Some(k) => Err(field(op, format!("unknown field `{k}`"))),
        None => Ok(()),
    };
    let Ok(kind) = op.parse::<Op>() else {
        return Err(ModelError::UnknownOp { layer: i, op });
    };
    let name = kind.name();
    let layer = match kind {
        Op::Conv2d => {
            let w = m.remove("weight").ok_or_else(|| field(name, "missing `weight` [out, in, k, k]".into()))?;
            let (ws, wv) = src.tensor(i, "weight", w, 4)?;
            let wname = format!("layers[{i}].weight");
            let weight = Array4::from_shape_vec((ws[0], ws[1], ws[2], ws[3]), wv).map_err(|_| ModelError::Shape {
                tensor: wname.clone(),
                expected: "[out, in, k, k]".into(),
                got: fmt_shape(&ws),
            })?;
            let bias = match m.remove("bias") {
                None | Some(Value::Null) => None,
                Some(b) => Some(Array1::from_vec(src.tensor(i, "bias", b, 1)?.1)),
            };
            // Shape hints (the safetensors metadata carries them); when present they must agree with the tensor.
            for (key, actual) in [("out_channels", ws[0]), ("in_channels", ws[1]), ("kernel_size", ws[2])] {
                check_hint(&mut m, i, name, key, actual)?;
            }
            no_more(&m, name)?;
            Layer::Conv2d(Conv2d::checked(&wname, &format!("layers[{i}].bias"), weight, bias)?)
        }
        Op::Relu => {
            no_more(&m, name)?;
            Layer::Relu
        }
        Op::Tanh => {
            no_more(&m, name)?;
            Layer::Tanh
        }
        Op::LeakyRelu => {
            let s = match m.remove("negative_slope") {
                None => 0.01,
                Some(v) => v.as_f64().ok_or_else(|| field(name, "negative_slope: must be a number".into()))? as f32,
            };
            if !s.is_finite() {
                return Err(ModelError::NotFinite { tensor: format!("layers[{i}].negative_slope"), value: s });
            }
            no_more(&m, name)?;
            Layer::LeakyRelu { negative_slope: s }
        }
        Op::Prelu => {
            let w = m.remove("weight").ok_or_else(|| field(name, "missing `weight` (length 1 or channels)".into()))?;
            let (_, wv) = src.tensor(i, "weight", w, 1)?;
            check_hint(&mut m, i, name, "num_parameters", wv.len())?;
            no_more(&m, name)?;
            Layer::Prelu { weight: Array1::from_vec(wv) }
        }
        Op::PixelShuffle => {
            let r = m
                .remove("upscale_factor")
                .and_then(|v| v.as_u64())
                .ok_or_else(|| field(name, "missing `upscale_factor` (an integer)".into()))?;
            no_more(&m, name)?;
            Layer::PixelShuffle { upscale_factor: u32::try_from(r).unwrap_or(u32::MAX) }
        }
    };
    Ok(layer)
}

/// Removes an optional shape hint `key` from a layer object and checks it equals `actual`.
fn check_hint(
    m: &mut Map<String, Value>,
    layer: usize,
    op: &'static str,
    key: &str,
    actual: usize,
) -> Result<(), ModelError> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_u64() == Some(actual as u64) => Ok(()),
        Some(v) => Err(ModelError::Field { layer, op, msg: format!("{key} is {v} but the weight has {actual}") }),
    }
}

/// Checks the structure; returns the scale.
fn validate(layers: &[Layer], limits: &ModelLimits) -> Result<u32, ModelError> {
    let st = |m: String| ModelError::Structure(m);
    if layers.len() > limits.max_layers {
        return Err(too_large(Limit::Layers, layers.len() as u64, limits.max_layers as u64));
    }
    if !matches!(layers.first(), Some(Layer::Conv2d(_))) {
        return Err(st("layers: the first op must be conv2d".into()));
    }
    let mut channels = MODEL_IN_CHANNELS;
    let mut macs: u64 = 0;
    let mut scale = None;
    for (i, l) in layers.iter().enumerate() {
        if scale.is_some() {
            return Err(st(format!("layers[{i}]: pixel_shuffle must be the last op")));
        }
        match l {
            Layer::Conv2d(c) => {
                if c.in_channels() != channels {
                    return Err(ModelError::Shape {
                        tensor: format!("layers[{i}].weight"),
                        expected: format!("[out, {channels}, k, k] ({channels} channels reach this conv)"),
                        got: fmt_shape(c.weight.shape()),
                    });
                }
                let widest = c.in_channels().max(c.out_channels());
                if widest > limits.max_channels {
                    return Err(too_large(Limit::Channels, widest as u64, limits.max_channels as u64));
                }
                channels = c.out_channels();
                macs = macs.saturating_add(c.macs_per_pixel());
            }
            Layer::Prelu { weight } => {
                if weight.len() != 1 && weight.len() != channels {
                    return Err(ModelError::Shape {
                        tensor: format!("layers[{i}].weight"),
                        expected: format!("[1] or [{channels}]"),
                        got: fmt_shape(weight.shape()),
                    });
                }
                check_finite(&format!("layers[{i}].weight"), weight.iter())?;
            }
            Layer::LeakyRelu { negative_slope } => {
                if !negative_slope.is_finite() {
                    return Err(ModelError::NotFinite {
                        tensor: format!("layers[{i}].negative_slope"),
                        value: *negative_slope,
                    });
                }
            }
            Layer::Relu | Layer::Tanh => {}
            Layer::PixelShuffle { upscale_factor: r } => {
                let r = *r;
                if !kernel::is_valid_scale(r) {
                    return Err(st(format!("layers[{i}]: upscale_factor must be {MIN_SCALE} to {MAX_SCALE}, got {r}")));
                }
                let want = MODEL_IN_CHANNELS * (r * r) as usize;
                if channels != want {
                    return Err(st(format!(
                        "layers[{i}]: pixel_shuffle({r}) needs 3*{r}*{r} = {want} channels, the conv before it has \
                         {channels}"
                    )));
                }
                scale = Some(r);
            }
        }
    }
    if macs > limits.max_macs_per_pixel {
        return Err(too_large(Limit::MacsPerPixel, macs, limits.max_macs_per_pixel));
    }
    scale.ok_or_else(|| st("layers: the last op must be pixel_shuffle".into()))
}

fn check_finite<'a>(name: &str, values: impl Iterator<Item = &'a f32>) -> Result<(), ModelError> {
    for v in values {
        if !v.is_finite() {
            return Err(ModelError::NotFinite { tensor: name.to_string(), value: *v });
        }
    }
    Ok(())
}

fn fmt_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

#[derive(Serialize)]
struct ModelOut<'a> {
    name: &'a str,
    scale: u32,
    residual: Residual,
    layers: Vec<LayerOut<'a>>,
    description: &'a str,
    training: &'a Value,
}

/// One layer of the model JSON: `op` ([`Op`]'s spelling) and the fields that op has, in this order.
#[derive(Serialize)]
struct LayerOut<'a> {
    op: Op,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<Nested<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bias: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_slope: Option<f32>,
    #[serde(rename = "weight", skip_serializing_if = "Option::is_none")]
    prelu_weight: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upscale_factor: Option<u32>,
}

impl Default for LayerOut<'_> {
    fn default() -> Self {
        LayerOut {
            op: Op::Relu,
            weight: None,
            bias: None,
            negative_slope: None,
            prelu_weight: None,
            upscale_factor: None,
        }
    }
}
