//! Kernel weights for the sub-pixel convolution: `weight [3*r*r, 3, k, k]`, `bias [3*r*r]`, PyTorch layout.
//!
//! # Generation ([`Kernel::generate`])
//! - `icnr`: a sub-kernel `W0 [3, 3, k, k]` is drawn from the initializer with `fan_in = fan_out = 3*k*k`
//!   (`fan_out = (C_out/r^2)*k*k`), then `W[o] = W0[o / r^2]` (PyTorch `W0.repeat_interleave(r*r, dim=0)`, *not*
//!   `repeat`); the bias is zero, so it is tied too.
//! - `default`: PyTorch's `nn.Conv2d` init: weight and bias `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, `fan_in = 3*k*k`.
//!   The initializer is ignored.
//! - `plain`: the initializer over the whole `[3r^2, 3, k, k]` kernel (`fan_in = 3*k*k`, `fan_out = 3r^2*k*k`),
//!   bias zero: the ablation without ICNR tying.
//!
//! # Determinism
//! The RNG is `ChaCha8Rng::seed_from_u64(seed)` (rand_chacha 0.9), sampled with `rand_distr` 0.5 `Normal<f32>` and
//! rand 0.9 `Uniform<f32>` (half-open `[-b, b)`, like `torch.Tensor.uniform_`). Draw order: the drawn tensor
//! (`W0` for icnr, the whole weight otherwise) in row-major `[out][in][ky][kx]` order, then (for `default` only) the
//! bias. Dirac draws nothing. ChaCha8 and the uniform mapping are pure integer/IEEE arithmetic, and distribution
//! parameters are computed with `sqrt` (correctly rounded), so the weights are the same bits on every platform and
//! thread count. The one libm call is inside rand_distr's ziggurat normal sampler (`exp` to accept a wedge draw,
//! `ln` for the rare tail draws, in f64); a last-bit difference there would also have to survive the f64 -> f32
//! rounding, which it does with probability about 2^-29, so in practice the normal initializers are bit-identical
//! too. `tests/kernel.rs` pins the first weights of `KernelParams::default()`.
//!
//! # Kernel JSON ([`Kernel::to_json`], [`Kernel::from_json`])
//! `{"scale","kernel_size","in_channels","out_channels","init","initializer","seed","weight","bias"}`, with `weight`
//! nested `[out][in][k][k]` exactly like PyTorch's `conv.weight.tolist()`. f32 values are printed as the shortest
//! decimal that reads back to the same f32 (serde_json/ryu). On input only `weight` is required. Input is bounded:
//! at most [`MAX_KERNEL_BYTES`], and the arrays stream straight into flat `Vec<f32>`s (no value tree), stopping
//! after the 46656 weights / 192 biases of the largest valid kernel; nesting is bounded by the expected depth.
//!
//! # safetensors ([`Kernel::from_safetensors`])
//! As written by `safetensors.torch.save_file(conv.state_dict(), path)`: keys `weight`/`bias`, or exactly one
//! `<prefix>.weight` with an optional `<prefix>.bias`; dtypes F32, F16 and BF16.

use std::path::Path;

use ndarray::{Array1, Array4};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use serde::{Deserialize, Serialize};

use crate::names::{named_enum, UnknownName};

/// Input channels: the engine always convolves RGB.
pub const IN_CHANNELS: usize = 3;
/// Smallest and largest scale factor r.
pub const MIN_SCALE: u32 = 2;
pub const MAX_SCALE: u32 = 8;
/// Largest (odd) kernel size k.
pub const MAX_KERNEL_SIZE: u32 = 9;
/// Largest kernel file (JSON or safetensors) accepted. The biggest valid kernel (r = 8, k = 9) holds
/// 192*3*81 + 192 = 46848 floats: about 1 MB as JSON with 20 characters per value, 187 KB as f32 safetensors.
pub const MAX_KERNEL_BYTES: usize = 4 << 20;

named_enum! {
    /// How the kernel is made.
    pub enum Init ("init", default Icnr) {
        /// Sub-kernel from the initializer, tied in groups of r*r consecutive output channels; bias zero.
        Icnr = "icnr",
        /// PyTorch's own nn.Conv2d init (weight and bias U(+-1/sqrt(fan_in))); shows the checkerboard.
        Default = "default",
        /// The initializer over the whole kernel, untied (the ablation).
        Plain = "plain",
        /// Weights supplied by the caller (JSON or safetensors); never accepted as a parameter.
        Custom = "custom",
    }
}

impl Init {
    /// The inits a kernel can be generated with: all but [`Init::Custom`]. The command line and the query
    /// parser accept these.
    pub const GENERATED: [Init; 3] = [Init::Icnr, Init::Default, Init::Plain];
    /// The names of [`Init::GENERATED`].
    pub const GENERATED_NAMES: [&'static str; 3] =
        [Init::GENERATED[0].name(), Init::GENERATED[1].name(), Init::GENERATED[2].name()];

    /// Parses an init a kernel can be generated with (`custom` is refused, naming the accepted ones).
    pub fn parse_generated(s: &str) -> Result<Init, UnknownName> {
        s.parse().ok().filter(|i| *i != Init::Custom).ok_or_else(|| UnknownName {
            what: "init",
            got: s.to_owned(),
            expected: &Init::GENERATED_NAMES,
        })
    }
}

named_enum! {
    /// The initializer of the (sub-)kernel (torch.nn.init).
    pub enum Initializer ("initializer", default KaimingNormal) {
        /// N(0, 2 / fan_in).
        KaimingNormal = "kaiming_normal",
        /// U(-b, b), b = sqrt(6 / fan_in).
        KaimingUniform = "kaiming_uniform",
        /// N(0, 2 / (fan_in + fan_out)).
        XavierNormal = "xavier_normal",
        /// U(-b, b), b = sqrt(6 / (fan_in + fan_out)).
        XavierUniform = "xavier_uniform",
        /// 1 at the centre tap of channel c -> c, else 0: ICNR(dirac) is nearest-neighbour upscaling.
        Dirac = "dirac",
    }
}

/// Parameters that fully determine a generated kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelParams {
    pub scale: u32,
    pub kernel_size: u32,
    pub init: Init,
    pub initializer: Initializer,
    pub seed: u64,
}

impl Default for KernelParams {
    fn default() -> Self {
        KernelParams { scale: 2, kernel_size: 3, init: Init::Icnr, initializer: Initializer::KaimingNormal, seed: 0 }
    }
}

impl KernelParams {
    /// Checks the scale (2 to 8), the kernel size (odd, 1 to 9) and that `init` is not `custom`.
    pub fn validate(&self) -> Result<(), KernelError> {
        check_scale(self.scale)?;
        check_kernel_size(self.kernel_size, None)?;
        if self.init == Init::Custom {
            return Err(params(
                "init: custom means uploaded weights (kernel JSON or safetensors); it cannot be generated",
            ));
        }
        Ok(())
    }
}

/// A validated kernel: `weight [3r^2, 3, k, k]` and `bias [3r^2]` (PyTorch's layout), r from 2 to 8, k odd from 1
/// to 9, all values finite. The fields are private and every constructor ([`Kernel::generate`], [`Kernel::new`],
/// [`Kernel::from_json`], [`Kernel::from_safetensors`], [`Kernel::load_file`]) checks them, so a `Kernel` is always
/// valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    scale: u32,
    kernel_size: u32,
    init: Init,
    initializer: Initializer,
    seed: u64,
    /// `[out, in, k, k]`, always in standard (row-major) layout.
    weight: Array4<f32>,
    bias: Array1<f32>,
}

/// Why a kernel (parameters, JSON or safetensors) was rejected. Messages are written for the caller.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KernelError {
    /// A parameter is out of range: the scale, the kernel size, or `init: custom` given as a parameter.
    #[error("{0}")]
    Params(String),
    /// The weight or bias shape is not `[3r^2, 3, k, k]` / `[3r^2]`, or disagrees with the file's own fields.
    #[error("{0}")]
    Shape(String),
    /// A weight or bias value is NaN or infinite; `tensor` names the element, e.g. `weight[0][1][2][2]`.
    #[error("{tensor}: {value} is not a finite value")]
    NotFinite { tensor: String, value: f32 },
    /// The input is over [`MAX_KERNEL_BYTES`].
    #[error("{what} too large: {bytes} bytes (limit {MAX_KERNEL_BYTES})")]
    TooLarge { what: &'static str, bytes: u64 },
    /// Not kernel JSON: bad syntax, a wrong type, an unknown field or a missing `weight`.
    #[error("{0}")]
    Json(String),
    /// Not a usable safetensors file: bad header, missing or ambiguous tensors, an unsupported dtype.
    #[error("{0}")]
    Safetensors(String),
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    /// An error in the file at `path` ([`Kernel::load_file`]).
    #[error("{path}: {source}")]
    File { path: String, source: Box<KernelError> },
}

impl KernelError {
    /// The same error with `weight` in its message replaced by `name` (once), for prefixed safetensors keys.
    fn renamed_weight(self, name: &str) -> KernelError {
        let r = |m: String| m.replacen("weight", name, 1);
        match self {
            KernelError::Params(m) => KernelError::Params(r(m)),
            KernelError::Shape(m) => KernelError::Shape(r(m)),
            other => other,
        }
    }
}

fn params(msg: impl Into<String>) -> KernelError {
    KernelError::Params(msg.into())
}

fn shape_err(msg: impl Into<String>) -> KernelError {
    KernelError::Shape(msg.into())
}

fn st_err(msg: impl Into<String>) -> KernelError {
    KernelError::Safetensors(msg.into())
}

/// Whether `r` is a scale factor the crate supports: 2 to 8. The command line, the query parser and the model
/// checks all ask this.
pub fn is_valid_scale(r: u32) -> bool {
    (MIN_SCALE..=MAX_SCALE).contains(&r)
}

/// Whether `k` is a kernel size the crate supports: odd, 1 to 9.
pub fn is_valid_kernel_size(k: u32) -> bool {
    k % 2 == 1 && k <= MAX_KERNEL_SIZE
}

fn check_scale(scale: u32) -> Result<(), KernelError> {
    if !is_valid_scale(scale) {
        return Err(params(format!("scale: must be {MIN_SCALE} to {MAX_SCALE}, got {scale}")));
    }
    Ok(())
}

/// `shape`, when given, is the weight shape the kernel size came from (named in the message).
fn check_kernel_size(k: u32, shape: Option<&[usize]>) -> Result<(), KernelError> {
    if !is_valid_kernel_size(k) {
        let from = shape.map(|s| format!(" (weight {})", fmt_shape(s))).unwrap_or_default();
        return Err(params(format!("kernel_size: must be odd, 1 to {MAX_KERNEL_SIZE}, got {k}{from}")));
    }
    Ok(())
}

/// The scale r with `3*r*r == out_channels`, if r is in range.
fn scale_for_out_channels(out_channels: usize) -> Option<u32> {
    (MIN_SCALE..=MAX_SCALE).find(|&r| (IN_CHANNELS as u32 * r * r) as usize == out_channels)
}

fn out_channels_for(scale: u32) -> usize {
    IN_CHANNELS * (scale * scale) as usize
}

fn fmt_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

fn all_out_channels() -> String {
    let v: Vec<String> = (MIN_SCALE..=MAX_SCALE).map(|r| out_channels_for(r).to_string()).collect();
    v.join(", ")
}

/// What a kernel file says about itself besides the weights (each optional).
#[derive(Debug, Default, Clone, Copy)]
struct ShapeHints {
    scale: Option<u32>,
    kernel_size: Option<u32>,
    in_channels: Option<u32>,
    out_channels: Option<u32>,
}

/// Validates a weight shape against `[3r^2, 3, k, k]` and the hints; returns `(scale, kernel_size)`.
fn check_weight_shape(shape: &[usize], hints: ShapeHints) -> Result<(u32, u32), KernelError> {
    if let Some(c) = hints.in_channels {
        if c as usize != IN_CHANNELS {
            return Err(shape_err(format!("in_channels: must be {IN_CHANNELS}, got {c}")));
        }
    }
    if let Some(s) = hints.scale {
        check_scale(s)?;
    }
    if let Some(k) = hints.kernel_size {
        check_kernel_size(k, None)?;
    }
    // The expected output channels, and what they come from, for the messages.
    let mut expected_out: Option<(usize, String)> = None;
    if let Some(o) = hints.out_channels {
        if scale_for_out_channels(o as usize).is_none() {
            return Err(shape_err(format!(
                "out_channels: must be 3*r*r for a scale r from {MIN_SCALE} to {MAX_SCALE} ({}), got {o}",
                all_out_channels()
            )));
        }
        expected_out = Some((o as usize, format!(" for out_channels {o}")));
    }
    if let Some(s) = hints.scale {
        let o = out_channels_for(s);
        if let Some((eo, _)) = &expected_out {
            if *eo != o {
                return Err(shape_err(format!("out_channels: {eo} does not match scale {s} (3*{s}*{s} = {o})")));
            }
        }
        expected_out = Some((o, format!(" for scale {s}")));
    }
    let out_txt = expected_out.as_ref().map(|(o, _)| o.to_string()).unwrap_or_else(|| "3*r*r".into());
    let why = expected_out.as_ref().map(|(_, w)| w.as_str()).unwrap_or("");
    let k_txt = hints.kernel_size.map(|k| k.to_string()).unwrap_or_else(|| "k".into());
    let k_why = hints.kernel_size.map(|k| format!(" for kernel_size {k}")).unwrap_or_default();
    let mismatch = |out: &str, why: &str| {
        shape_err(format!("weight: expected [{out}, {IN_CHANNELS}, {k_txt}, {k_txt}]{why}, got {}", fmt_shape(shape)))
    };
    if shape.len() != 4 {
        return Err(mismatch(&out_txt, why));
    }
    let out = shape[0];
    let scale = match &expected_out {
        Some((eo, _)) if *eo != out => return Err(mismatch(&out_txt, why)),
        Some(_) => scale_for_out_channels(out).expect("checked above"),
        None => scale_for_out_channels(out).ok_or_else(|| {
            shape_err(format!(
                "out_channels: must be 3*r*r for a scale r from {MIN_SCALE} to {MAX_SCALE} ({}), got {out} \
                 (weight {})",
                all_out_channels(),
                fmt_shape(shape)
            ))
        })?,
    };
    let out_txt = out.to_string();
    if shape[1] != IN_CHANNELS || shape[2] != shape[3] {
        return Err(mismatch(&out_txt, why));
    }
    if let Some(k) = hints.kernel_size {
        if k as usize != shape[2] {
            return Err(mismatch(&out_txt, &k_why));
        }
    }
    let k = u32::try_from(shape[2]).unwrap_or(u32::MAX);
    check_kernel_size(k, Some(shape))?;
    Ok((scale, k))
}

/// `name[i][j]...` for flat index `idx` into a tensor of `shape`.
fn index_path(name: &str, shape: &[usize], mut idx: usize) -> String {
    let mut parts = vec![0usize; shape.len()];
    for (p, &d) in parts.iter_mut().zip(shape).rev() {
        *p = idx % d.max(1);
        idx /= d.max(1);
    }
    let mut s = name.to_string();
    for p in parts {
        s.push_str(&format!("[{p}]"));
    }
    s
}

fn check_finite(name: &str, shape: &[usize], values: &[f32]) -> Result<(), KernelError> {
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(KernelError::NotFinite { tensor: index_path(name, shape, i), value: values[i] });
    }
    Ok(())
}

/// Fills a row-major tensor of `shape` from an initializer. Draws happen in row-major order.
fn draw(initializer: Initializer, shape: [usize; 4], fan_in: usize, fan_out: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = shape.iter().product();
    // Parameters in f64 with a correctly rounded sqrt, then rounded once to f32: the same bits everywhere.
    let normal = |var: f64, rng: &mut ChaCha8Rng| -> Vec<f32> {
        let std = var.sqrt() as f32;
        let d = Normal::new(0.0f32, std).expect("std is finite and positive");
        (0..n).map(|_| d.sample(rng)).collect()
    };
    let uniform = |bound2: f64, rng: &mut ChaCha8Rng| -> Vec<f32> {
        let b = bound2.sqrt() as f32;
        let d = Uniform::new(-b, b).expect("bound is finite and positive");
        (0..n).map(|_| d.sample(rng)).collect()
    };
    let (fi, fo) = (fan_in as f64, fan_out as f64);
    match initializer {
        // torch.nn.init.kaiming_normal_(w, a=0, mode="fan_in", nonlinearity="leaky_relu"): gain sqrt(2).
        Initializer::KaimingNormal => normal(2.0 / fi, rng),
        // torch.nn.init.kaiming_uniform_(w, a=0): bound = gain * sqrt(3 / fan_in) = sqrt(6 / fan_in).
        Initializer::KaimingUniform => uniform(6.0 / fi, rng),
        Initializer::XavierNormal => normal(2.0 / (fi + fo), rng),
        Initializer::XavierUniform => uniform(6.0 / (fi + fo), rng),
        // torch.nn.init.dirac_: W[d, d, k/2, k/2] = 1 for d < min(out, in).
        Initializer::Dirac => {
            let [o, i, kh, kw] = shape;
            let mut w = vec![0.0f32; n];
            for d in 0..o.min(i) {
                w[((d * i + d) * kh + kh / 2) * kw + kw / 2] = 1.0;
            }
            w
        }
    }
}

/// Serializes a flat row-major tensor as nested JSON arrays.
pub(crate) struct Nested<'a> {
    pub(crate) values: &'a [f32],
    pub(crate) shape: &'a [usize],
}

impl Serialize for Nested<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.shape.len() <= 1 {
            return s.collect_seq(self.values);
        }
        let stride: usize = self.shape[1..].iter().product();
        s.collect_seq(self.values.chunks(stride.max(1)).map(|c| Nested { values: c, shape: &self.shape[1..] }))
    }
}

#[derive(Serialize)]
struct KernelJsonOut<'a> {
    scale: u32,
    kernel_size: u32,
    in_channels: usize,
    out_channels: usize,
    init: Init,
    initializer: Option<Initializer>,
    seed: Option<u64>,
    weight: Nested<'a>,
    bias: &'a [f32],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a kernel JSON object")]
struct KernelJsonIn {
    scale: Option<u32>,
    kernel_size: Option<u32>,
    in_channels: Option<u32>,
    out_channels: Option<u32>,
    init: Option<Init>,
    initializer: Option<Initializer>,
    seed: Option<u64>,
    weight: Option<WeightTensor>,
    bias: Option<BiasTensor>,
}

/// Values in the largest valid weight, `[192, 3, 9, 9]`: reading stops beyond this, whatever the file size.
const MAX_WEIGHT_VALUES: usize =
    3 * (MAX_SCALE * MAX_SCALE) as usize * IN_CHANNELS * (MAX_KERNEL_SIZE * MAX_KERNEL_SIZE) as usize;
const MAX_BIAS_VALUES: usize = 3 * (MAX_SCALE * MAX_SCALE) as usize;

/// A nested JSON array of numbers read straight into a flat row-major `Vec<f32>` and its shape. Numbers are
/// streamed from the parser (no `serde_json::Value` per number), and reading stops after `max` values, so memory
/// stays bounded by the largest valid kernel.
struct FlatTensor {
    shape: Vec<usize>,
    values: Vec<f32>,
}

struct WeightTensor(FlatTensor);
struct BiasTensor(FlatTensor);

impl<'de> Deserialize<'de> for WeightTensor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read_tensor(d, "weight", 4, MAX_WEIGHT_VALUES).map(WeightTensor)
    }
}

impl<'de> Deserialize<'de> for BiasTensor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read_tensor(d, "bias", 1, MAX_BIAS_VALUES).map(BiasTensor)
    }
}

fn read_tensor<'de, D: serde::Deserializer<'de>>(
    d: D,
    name: &'static str,
    depth: usize,
    max: usize,
) -> Result<FlatTensor, D::Error> {
    let mut w = TensorWalk { name, depth, max, shape: vec![None; depth], values: Vec::new(), path: Vec::new() };
    serde::de::DeserializeSeed::deserialize(Level(&mut w), d)?;
    // Dimensions under an empty array are unknown: report the known prefix, e.g. `[]` has shape [0].
    let shape = w.shape.iter().map_while(|d| *d).collect();
    Ok(FlatTensor { shape, values: w.values })
}

struct TensorWalk {
    name: &'static str,
    depth: usize,
    max: usize,
    shape: Vec<Option<usize>>,
    values: Vec<f32>,
    /// Index of the element being read at each level.
    path: Vec<usize>,
}

impl TensorWalk {
    fn here(&self) -> String {
        let mut s = self.name.to_string();
        for p in &self.path {
            s.push_str(&format!("[{p}]"));
        }
        s
    }
    /// The error for a non-array where an array belongs, or a non-number where a number belongs.
    fn wrong(&self, kind: &str) -> String {
        if self.path.len() < self.depth {
            format!("{}: expected a {}-d array of numbers, got {kind} at {}", self.name, self.depth, self.here())
        } else {
            format!("{}: expected a number, got {kind}", self.here())
        }
    }
    fn number<E: serde::de::Error>(&mut self, x: f64) -> Result<(), E> {
        if self.path.len() < self.depth {
            return Err(E::custom(self.wrong("a number")));
        }
        if self.values.len() >= self.max {
            return Err(E::custom(format!("{}: more than {} values, more than any valid kernel", self.name, self.max)));
        }
        // f64 -> f32 rounds to nearest and overflows to infinity (e.g. 1e39), which is rejected.
        let v = x as f32;
        if !v.is_finite() {
            return Err(E::custom(format!("{}: {x:e} is not a finite f32", self.here())));
        }
        self.values.push(v);
        Ok(())
    }
}

/// Reads one level of a nested array (or, at the last level, one number).
struct Level<'w>(&'w mut TensorWalk);

impl<'de> serde::de::DeserializeSeed<'de> for Level<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Level<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a {}-d array of numbers", self.0.depth)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let w = self.0;
        let d = w.path.len();
        if d == w.depth {
            return Err(A::Error::custom(format!(
                "{}: expected a {}-d array of numbers, got more levels at {}",
                w.name,
                w.depth,
                w.here()
            )));
        }
        let mut n = 0usize;
        w.path.push(0);
        while seq.next_element_seed(Level(&mut *w))?.is_some() {
            n += 1;
            w.path[d] = n;
        }
        w.path.pop();
        match w.shape[d] {
            None => w.shape[d] = Some(n),
            Some(first) if first != n => {
                return Err(A::Error::custom(format!(
                    "{}: ragged array: {} has {n} elements but {}{} has {first}",
                    w.name,
                    w.here(),
                    w.name,
                    "[0]".repeat(d)
                )));
            }
            Some(_) => {}
        }
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.0.number(v)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.0.number(v as f64)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.0.number(v as f64)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(self.0.wrong("a string")))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(self.0.wrong("a boolean")))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Err(E::custom(self.0.wrong("null")))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(serde::de::Error::custom(self.0.wrong("an object")))
    }
}

/// A tensor from a safetensors file as f32.
pub(crate) fn tensor_f32(name: &str, t: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>, KernelError> {
    use safetensors::Dtype;
    let data = t.data();
    let v: Vec<f32> = match t.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => {
            return Err(st_err(format!("{name}: dtype {other:?} is not supported (expected F32, F16 or BF16)")));
        }
    };
    // The safetensors crate checks that the data length matches shape and dtype; keep a guard anyway.
    let n: usize = t.shape().iter().product();
    if v.len() != n {
        return Err(st_err(format!("{name}: {} values for shape {}", v.len(), fmt_shape(t.shape()))));
    }
    Ok(v)
}

impl Kernel {
    /// Custom weights: `weight [3r^2, 3, k, k]` with r from 2 to 8 and k odd from 1 to 9, `bias [3r^2]` (zeros
    /// when `None`), all values finite. The kernel is [`Init::Custom`].
    ///
    /// ```
    /// use icnr_upscale::{Init, Kernel};
    /// use ndarray::Array4;
    ///
    /// let k = Kernel::new(Array4::zeros((12, 3, 3, 3)), None)?;
    /// assert_eq!((k.scale(), k.kernel_size(), k.init()), (2, 3, Init::Custom));
    /// // 13 output channels is no 3*r*r: an error, not a panic.
    /// assert!(Kernel::new(Array4::zeros((13, 3, 3, 3)), None).is_err());
    /// # Ok::<(), icnr_upscale::KernelError>(())
    /// ```
    pub fn new(weight: Array4<f32>, bias: Option<Array1<f32>>) -> Result<Kernel, KernelError> {
        let shape = weight.shape().to_vec();
        let (scale, kernel_size) = check_weight_shape(&shape, ShapeHints::default())?;
        let weight = weight.as_standard_layout().into_owned();
        let wflat = weight.as_slice().expect("standard layout");
        check_finite("weight", &shape, wflat)?;
        let bias = match bias {
            None => Array1::zeros(shape[0]),
            Some(b) => {
                if b.len() != shape[0] {
                    return Err(KernelError::Shape(format!("bias: expected [{}], got [{}]", shape[0], b.len())));
                }
                let b = b.as_standard_layout().into_owned();
                check_finite("bias", &shape[..1], b.as_slice().expect("standard layout"))?;
                b
            }
        };
        Ok(Kernel {
            scale,
            kernel_size,
            init: Init::Custom,
            initializer: Initializer::default(),
            seed: 0,
            weight,
            bias,
        })
    }

    /// The scale factor r.
    pub fn scale(&self) -> u32 {
        self.scale
    }
    /// The kernel size k (odd).
    pub fn kernel_size(&self) -> u32 {
        self.kernel_size
    }
    /// How the kernel was made ([`Init::Custom`] for supplied weights).
    pub fn init(&self) -> Init {
        self.init
    }
    /// The initializer it was generated with (meaningless for [`Init::Custom`]).
    pub fn initializer(&self) -> Initializer {
        self.initializer
    }
    /// The seed it was generated with (0 for [`Init::Custom`]).
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// The weight, `[3r^2, 3, k, k]`.
    pub fn weight(&self) -> &Array4<f32> {
        &self.weight
    }
    /// The bias, `[3r^2]`.
    pub fn bias(&self) -> &Array1<f32> {
        &self.bias
    }
    /// The weight as a flat row-major slice `[out][in][k][k]`, for the engine's packing.
    pub(crate) fn weight_flat(&self) -> &[f32] {
        self.weight.as_slice().expect("constructors keep the weight in standard layout")
    }
    /// The bias as a slice.
    pub(crate) fn bias_flat(&self) -> &[f32] {
        self.bias.as_slice().expect("constructors keep the bias in standard layout")
    }

    /// Output channels of the convolution, `3 * scale * scale`.
    pub fn out_channels(&self) -> usize {
        out_channels_for(self.scale)
    }

    /// The weight shape `[3r^2, 3, k, k]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        let k = self.kernel_size as usize;
        [self.out_channels(), IN_CHANNELS, k, k]
    }

    /// The parameters this kernel was generated from, or `None` for custom weights.
    pub fn params(&self) -> Option<KernelParams> {
        (self.init != Init::Custom).then_some(KernelParams {
            scale: self.scale,
            kernel_size: self.kernel_size,
            init: self.init,
            initializer: self.initializer,
            seed: self.seed,
        })
    }

    /// Makes a kernel from parameters, deterministically (see the module docs for the draw order).
    /// Rejects a scale outside 2..=8, an even kernel size or one outside 1..=9, and `Init::Custom`.
    ///
    /// ```
    /// use icnr_upscale::{Init, Kernel, KernelParams};
    ///
    /// let k = Kernel::generate(&KernelParams { scale: 2, kernel_size: 3, init: Init::Icnr, ..Default::default() })?;
    /// // 3*2*2 = 12 output channels, tied in runs of r*r = 4: W[o] = W0[o / 4]. The bias is zero, so tied too.
    /// let w = k.weight(); // ndarray, [out, in, k, k]
    /// assert_eq!(w.shape(), [12, 3, 3, 3]);
    /// assert_eq!(w.index_axis(ndarray::Axis(0), 0), w.index_axis(ndarray::Axis(0), 3));
    /// assert_ne!(w.index_axis(ndarray::Axis(0), 0), w.index_axis(ndarray::Axis(0), 4));
    /// assert!(k.bias().iter().all(|b| *b == 0.0));
    /// assert!(Kernel::generate(&KernelParams { kernel_size: 4, ..Default::default() }).is_err());
    /// # Ok::<(), icnr_upscale::KernelError>(())
    /// ```
    pub fn generate(p: &KernelParams) -> Result<Kernel, KernelError> {
        p.validate()?;
        let r2 = (p.scale * p.scale) as usize;
        let k = p.kernel_size as usize;
        let out = IN_CHANNELS * r2;
        let per_out = IN_CHANNELS * k * k;
        let fan_in = per_out;
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let (weight, bias) = match p.init {
            Init::Icnr => {
                // W0 [C_out / r^2, C_in, k, k]: fan_out = (C_out / r^2) * k * k.
                let sub_out = out / r2;
                let w0 = draw(p.initializer, [sub_out, IN_CHANNELS, k, k], fan_in, sub_out * k * k, &mut rng);
                // repeat_interleave(r*r, dim=0): W[o] = W0[o / r^2].
                let mut w = Vec::with_capacity(out * per_out);
                for o in 0..out {
                    let g = o / r2;
                    w.extend_from_slice(&w0[g * per_out..(g + 1) * per_out]);
                }
                (w, vec![0.0; out])
            }
            Init::Plain => {
                let w = draw(p.initializer, [out, IN_CHANNELS, k, k], fan_in, out * k * k, &mut rng);
                (w, vec![0.0; out])
            }
            Init::Default => {
                // nn.Conv2d.reset_parameters: kaiming_uniform_(a=sqrt(5)) gives bound
                // sqrt(6 / ((1 + 5) * fan_in)) = 1/sqrt(fan_in); the bias bound is 1/sqrt(fan_in) too.
                let b = (1.0 / fan_in as f64).sqrt() as f32;
                let d = Uniform::new(-b, b).expect("bound is finite and positive");
                let w: Vec<f32> = (0..out * per_out).map(|_| d.sample(&mut rng)).collect();
                let bias: Vec<f32> = (0..out).map(|_| d.sample(&mut rng)).collect();
                (w, bias)
            }
            Init::Custom => unreachable!("rejected by KernelParams::validate"),
        };
        let kernel = Kernel {
            scale: p.scale,
            kernel_size: p.kernel_size,
            init: p.init,
            initializer: p.initializer,
            seed: p.seed,
            weight: Array4::from_shape_vec([out, IN_CHANNELS, k, k], weight).expect("out * per_out values"),
            bias: Array1::from_vec(bias),
        };
        debug_assert!(kernel.validate().is_ok());
        Ok(kernel)
    }

    /// Checks the invariants (every constructor guarantees them): scale 2..=8, odd kernel size 1..=9, the weight
    /// and bias shapes, all values finite.
    fn validate(&self) -> Result<(), KernelError> {
        check_scale(self.scale)?;
        check_kernel_size(self.kernel_size, None)?;
        let shape = self.weight_shape();
        if self.weight.shape() != shape {
            return Err(shape_err(format!(
                "weight: expected {}, got {}",
                fmt_shape(&shape),
                fmt_shape(self.weight.shape())
            )));
        }
        if self.bias.len() != shape[0] {
            return Err(shape_err(format!("bias: expected [{}], got [{}]", shape[0], self.bias.len())));
        }
        check_finite("weight", &shape, self.weight_flat())?;
        check_finite("bias", &shape[..1], self.bias_flat())?;
        Ok(())
    }

    /// The kernel JSON, one line ending with `\n`. The same kernel always gives the same bytes; every f32 is
    /// written as the shortest decimal that reads back to the same bits. For custom kernels `initializer` and
    /// `seed` are `null`. The CLI `kernel` command and `GET /kernel` print exactly this.
    pub fn to_json(&self) -> String {
        let shape = self.weight_shape();
        let custom = self.init == Init::Custom;
        let out = KernelJsonOut {
            scale: self.scale,
            kernel_size: self.kernel_size,
            in_channels: IN_CHANNELS,
            out_channels: shape[0],
            init: self.init,
            initializer: (!custom).then_some(self.initializer),
            seed: (!custom).then_some(self.seed),
            weight: Nested { values: self.weight_flat(), shape: &shape },
            bias: self.bias_flat(),
        };
        let mut s = serde_json::to_string(&out).expect("kernel JSON serialization cannot fail");
        s.push('\n');
        s
    }

    /// Reads kernel JSON (at most [`MAX_KERNEL_BYTES`]). Only `weight` is required; `bias` defaults to zeros, the
    /// scale and kernel size come from the weight shape, and `scale`, `kernel_size`, `in_channels` and
    /// `out_channels`, when present, must agree with it. Unknown fields are rejected.
    ///
    /// `init`, `initializer` and `seed` are provenance: they are kept only when the weights and bias are exactly
    /// (bit for bit) what [`Kernel::generate`] makes from them, so a `to_json` output reads back unchanged;
    /// any other weights, including edited or trained ones, become [`Init::Custom`].
    pub fn from_json(bytes: &[u8]) -> Result<Kernel, KernelError> {
        if bytes.len() > MAX_KERNEL_BYTES {
            return Err(KernelError::TooLarge { what: "kernel JSON", bytes: bytes.len() as u64 });
        }
        let j: KernelJsonIn = serde_json::from_slice(bytes).map_err(|e| {
            let msg = e.to_string();
            if msg.starts_with("number out of range") {
                KernelError::Json(format!("kernel JSON: {msg}: not a finite f32"))
            } else if msg.starts_with("weight") || msg.starts_with("bias") {
                // Our own messages from reading the tensors, with serde_json's position appended.
                if msg.starts_with("weight: expected") || msg.starts_with("bias: expected") {
                    shape_err(msg)
                } else {
                    KernelError::Json(msg)
                }
            } else {
                KernelError::Json(format!("kernel JSON: {msg}"))
            }
        })?;
        let Some(WeightTensor(FlatTensor { shape, values: weight })) = j.weight else {
            return Err(KernelError::Json(
                "weight: missing (kernel JSON needs at least `weight`, nested [out][in][k][k])".into(),
            ));
        };
        let hints = ShapeHints {
            scale: j.scale,
            kernel_size: j.kernel_size,
            in_channels: j.in_channels,
            out_channels: j.out_channels,
        };
        let (scale, kernel_size) = check_weight_shape(&shape, hints)?;
        let out = shape[0];
        let bias = match j.bias {
            None => vec![0.0; out],
            Some(BiasTensor(b)) => {
                if b.shape != [out] {
                    return Err(shape_err(format!("bias: expected [{out}], got {}", fmt_shape(&b.shape))));
                }
                b.values
            }
        };
        Ok(Kernel::with_provenance(scale, kernel_size, weight, bias, j.init, j.initializer, j.seed))
    }

    /// Builds a checked kernel; keeps the claimed provenance only if it regenerates these exact bits.
    fn with_provenance(
        scale: u32,
        kernel_size: u32,
        weight: Vec<f32>,
        bias: Vec<f32>,
        init: Option<Init>,
        initializer: Option<Initializer>,
        seed: Option<u64>,
    ) -> Kernel {
        let k = kernel_size as usize;
        let shape = [weight.len() / (IN_CHANNELS * k * k), IN_CHANNELS, k, k];
        let mut kernel = Kernel {
            scale,
            kernel_size,
            init: Init::Custom,
            initializer: Initializer::default(),
            seed: 0,
            weight: Array4::from_shape_vec(shape, weight).expect("the caller checked the weight shape"),
            bias: Array1::from_vec(bias),
        };
        if let Some(init) = init.filter(|i| *i != Init::Custom) {
            let p = KernelParams {
                scale,
                kernel_size,
                init,
                initializer: initializer.unwrap_or_default(),
                seed: seed.unwrap_or(0),
            };
            if let Ok(g) = Kernel::generate(&p) {
                let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                if same(g.weight_flat(), kernel.weight_flat()) && same(g.bias_flat(), kernel.bias_flat()) {
                    kernel = g;
                }
            }
        }
        kernel
    }

    /// Reads a safetensors file as written by `safetensors.torch.save_file(conv.state_dict(), path)` (at most
    /// [`MAX_KERNEL_BYTES`]): tensors `weight` and optional `bias`, or exactly one `<prefix>.weight` with an
    /// optional `<prefix>.bias`; F32, F16 or BF16. Other tensors are ignored. The kernel is [`Init::Custom`].
    pub fn from_safetensors(bytes: &[u8]) -> Result<Kernel, KernelError> {
        if bytes.len() > MAX_KERNEL_BYTES {
            return Err(KernelError::TooLarge { what: "safetensors file", bytes: bytes.len() as u64 });
        }
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| st_err(format!("safetensors: {e}")))?;
        let mut names = st.names();
        names.sort_unstable();
        let weights: Vec<&str> = names.iter().copied().filter(|n| *n == "weight" || n.ends_with(".weight")).collect();
        let wname = match weights.as_slice() {
            [one] => *one,
            [] => {
                return Err(st_err(format!(
                    "safetensors: no `weight` or `<prefix>.weight` tensor (found: {})",
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                )));
            }
            many => {
                return Err(st_err(format!(
                    "safetensors: expected exactly one `weight` or `<prefix>.weight` tensor, found {}",
                    many.join(", ")
                )));
            }
        };
        let bname = format!("{}bias", &wname[..wname.len() - "weight".len()]);
        let wt = st.tensor(wname).map_err(|e| st_err(format!("safetensors: {e}")))?;
        let shape = wt.shape().to_vec();
        let (scale, kernel_size) = check_weight_shape(&shape, ShapeHints::default()).map_err(|e| {
            if wname == "weight" {
                e
            } else {
                e.renamed_weight(wname)
            }
        })?;
        let weight = tensor_f32(wname, &wt)?;
        check_finite(wname, &shape, &weight)?;
        let out = shape[0];
        let bias = match st.tensor(&bname) {
            Err(_) => vec![0.0; out],
            Ok(bt) => {
                if bt.shape() != [out] {
                    return Err(shape_err(format!("{bname}: expected [{out}], got {}", fmt_shape(bt.shape()))));
                }
                let b = tensor_f32(&bname, &bt)?;
                check_finite(&bname, &[out], &b)?;
                b
            }
        };
        Ok(Kernel::with_provenance(scale, kernel_size, weight, bias, None, None, None))
    }

    /// Loads a kernel file: `.safetensors` (any case) as safetensors, anything else as kernel JSON. Files over
    /// [`MAX_KERNEL_BYTES`] are rejected before they are read.
    pub fn load_file(path: impl AsRef<Path>) -> Result<Kernel, KernelError> {
        let path = path.as_ref();
        let io = |e: std::io::Error| KernelError::Io { path: path.display().to_string(), message: e.to_string() };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len > MAX_KERNEL_BYTES as u64 {
            return Err(KernelError::File {
                path: path.display().to_string(),
                source: Box::new(KernelError::TooLarge { what: "kernel file", bytes: len }),
            });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_KERNEL_BYTES as u64 + 1), &mut bytes)
            .map_err(io)?;
        let is_st = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        let kernel = if is_st { Kernel::from_safetensors(&bytes) } else { Kernel::from_json(&bytes) };
        kernel.map_err(|e| KernelError::File { path: path.display().to_string(), source: Box::new(e) })
    }
}
