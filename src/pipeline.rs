//! The one upscale pipeline, used by the HTTP handler and the CLI alike:
//! 1. decode with limits ([`crate::imageio::decode`]);
//! 2. resolve and validate the model ([`Registry::resolve`]): every default, range and contradiction rule lives
//!    here, once;
//! 3. upscale, with a cancellation callback polled between bands;
//! 4. score (the checkerboard score, computed while streaming);
//! 5. encode (streaming PNG).
//!
//! # Which model runs ([`Registry::resolve`])
//! - Uploaded weights (a model file, or a kernel file) run as given. With a model file, `model`, `init`,
//!   `initializer`, `seed` and `kernel_size` are contradictions (400); with either, a `scale` other than the
//!   weights' is a contradiction.
//! - `model=NAME`: a trained model (built-in or registered with `serve --model NAME=FILE`), a baseline (`nearest`,
//!   `bicubic`, `lanczos3`) or `init` (the generated kernel of `init`, `initializer`, `seed`, `kernel_size`). The
//!   init parameters with a trained model or a baseline are a 400 naming `model=init`; a `scale` a trained model
//!   lacks is a 400 naming the models that have it. An unknown name is a 400 listing the models.
//! - No `model`: if any of `init`, `initializer`, `seed` or `kernel_size` is given, the model is `init`, as before
//!   trained models existed. Otherwise it is the default trained model for `scale` (2 when absent); scales without
//!   a trained model (5 to 8) use `init`.

use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::baseline::{Baseline, MAX_BASELINE_OUTPUT_PIXELS};
use crate::engine::{Image, Options, OutRows, Upscaler};
use crate::imageio::{self, Compression, DecodeLimits, EncodeStats, ImageError, RowUpscaler};
use crate::kernel::{Init, Initializer, Kernel, KernelError, KernelParams};
use crate::model::{Model, ModelError, ModelLimits};
use crate::names::named_enum;

/// The model name of the generated kernels.
pub const INIT_MODEL: &str = "init";
/// The name `X-Model` reports for an uploaded kernel file.
pub const CUSTOM_KERNEL_NAME: &str = "custom-kernel";

/// The built-in trained models, embedded from `models/` (made by `scripts/train.py`; MODELS.md has their shapes,
/// training and quality): `(file name, default for its scale, JSON)`.
const BUILTIN: &[(&str, bool, &str)] = &[
    ("espcn-x2.json", true, include_str!("../models/espcn-x2.json")),
    ("espcn-x3.json", true, include_str!("../models/espcn-x3.json")),
    ("espcn-x4.json", true, include_str!("../models/espcn-x4.json")),
    ("subpixel-x2.json", false, include_str!("../models/subpixel-x2.json")),
    ("subpixel-x3.json", false, include_str!("../models/subpixel-x3.json")),
    ("subpixel-x4.json", false, include_str!("../models/subpixel-x4.json")),
];

named_enum! {
    /// What kind of model a name is.
    pub enum ModelKind ("kind") {
        /// A network with learned weights (built in, registered or uploaded).
        Trained = "trained",
        /// The generated, untrained kernels (`init`).
        Generated = "generated",
        /// A classical resampler.
        Baseline = "baseline",
    }
}

/// What a caller asked for; `None` means "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelRequest {
    pub model: Option<String>,
    pub scale: Option<u32>,
    pub kernel_size: Option<u32>,
    pub init: Option<Init>,
    pub initializer: Option<Initializer>,
    pub seed: Option<u64>,
}

impl ModelRequest {
    /// Whether any parameter of the generated kernels was given.
    pub fn has_init_params(&self) -> bool {
        self.kernel_size.is_some() || self.init.is_some() || self.initializer.is_some() || self.seed.is_some()
    }

    /// The generated kernel's parameters, defaults filled in.
    pub fn kernel_params(&self) -> KernelParams {
        let d = KernelParams::default();
        KernelParams {
            scale: self.scale.unwrap_or(d.scale),
            kernel_size: self.kernel_size.unwrap_or(d.kernel_size),
            init: self.init.unwrap_or(d.init),
            initializer: self.initializer.unwrap_or(d.initializer),
            seed: self.seed.unwrap_or(d.seed),
        }
    }

    fn init_params_given(&self) -> String {
        let mut v = Vec::new();
        if self.init.is_some() {
            v.push("init");
        }
        if self.initializer.is_some() {
            v.push("initializer");
        }
        if self.seed.is_some() {
            v.push("seed");
        }
        if self.kernel_size.is_some() {
            v.push("kernel_size");
        }
        v.join(", ")
    }
}

/// Caller-supplied weights.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    /// Kernel JSON or safetensors (one conv, as `GET /kernel` returns).
    Kernel(&'a [u8]),
    /// Model JSON or safetensors (the format of `GET /models/{name}`).
    Model(&'a [u8]),
}

/// Why a request could not be served. Each variant says who is at fault; messages are written for the caller.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Parameters that are out of range or contradict each other (HTTP 400, CLI exit 2).
    #[error("{0}")]
    BadRequest(String),
    /// An unknown model name (HTTP 400, CLI exit 2).
    #[error("{0}")]
    UnknownModel(String),
    /// Uploaded model weights that are invalid or over a limit (HTTP 400 or 413).
    #[error("the model is not valid: {0}")]
    BadModel(#[from] ModelError),
    /// Uploaded kernel weights that are invalid (HTTP 400, CLI exit 1).
    #[error("{0}")]
    BadKernel(String),
    /// A `scale` or `kernel_size` that contradicts uploaded kernel weights (HTTP 400, CLI exit 2).
    #[error("{0}")]
    KernelContradiction(String),
    /// The image could not be read, is over the limits, or could not be written.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The engine refused the model (not the caller's fault when the model was validated).
    #[error("engine: {0}")]
    Engine(String),
}

impl From<std::io::Error> for PipelineError {
    fn from(e: std::io::Error) -> Self {
        PipelineError::Image(ImageError::Io(e))
    }
}

impl From<KernelError> for PipelineError {
    fn from(e: KernelError) -> Self {
        PipelineError::BadRequest(e.to_string())
    }
}

/// One trained model of the registry.
#[derive(Debug)]
struct Trained {
    model: Arc<Model>,
    default: bool,
    /// Prepared on first use, then shared by every request.
    upscaler: OnceLock<Result<Arc<Upscaler>, String>>,
}

/// A listing row of `GET /models` and `icnr-upscale models --json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub kind: ModelKind,
    /// `None` (null) when the model takes any scale.
    pub scale: Option<u32>,
    pub default: bool,
    /// Learned parameters; `None` when they depend on the request (init) or there are none to learn (baselines).
    pub parameters: Option<u64>,
    /// Multiply-adds per input pixel; `None` when it depends on the request or does not apply.
    pub macs_per_pixel: Option<u64>,
    pub description: String,
}

/// The models a service or CLI run knows: the built-in trained models, any registered ones, `init` and the
/// baselines.
#[derive(Debug)]
pub struct Registry {
    trained: Vec<Trained>,
    opts: Options,
}

/// A resolved model, ready to run. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Resolved {
    name: String,
    kind: ModelKind,
    scale: u32,
    runner: Runner,
}

#[derive(Debug, Clone)]
enum Runner {
    Engine(Arc<Upscaler>),
    Baseline(Baseline),
}

impl Resolved {
    /// The name reported in `X-Model`.
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn kind(&self) -> ModelKind {
        self.kind
    }
    pub fn scale(&self) -> u32 {
        self.scale
    }
    /// The engine's upscaler, unless this is a baseline.
    pub fn upscaler(&self) -> Option<&Upscaler> {
        match &self.runner {
            Runner::Engine(u) => Some(u),
            Runner::Baseline(_) => None,
        }
    }
    /// The largest output this model may produce under `max_output_pixels`.
    pub fn output_pixel_cap(&self, max_output_pixels: u64) -> u64 {
        match self.runner {
            Runner::Engine(_) => max_output_pixels,
            Runner::Baseline(_) => max_output_pixels.min(MAX_BASELINE_OUTPUT_PIXELS),
        }
    }
}

impl RowUpscaler for Resolved {
    fn scale(&self) -> u32 {
        self.scale
    }
    fn upscale_rows(
        &self,
        img: &Image,
        sink: &mut dyn FnMut(OutRows<'_>) -> Result<(), ImageError>,
    ) -> Result<(), ImageError> {
        match &self.runner {
            Runner::Engine(u) => u.upscale_rows(img, sink),
            Runner::Baseline(b) => b.upscale_rows(img, self.scale, sink),
        }
    }
}

/// Builds the engine for a validated model.
fn upscaler_for(model: &Model, opts: Options) -> Result<Upscaler, String> {
    Upscaler::new(model, opts).map_err(|e| e.to_string())
}

impl Registry {
    /// The built-in models, run on the CPU path of `opts`. Panics only if an embedded model is invalid, which
    /// the tests rule out.
    pub fn builtin(opts: Options) -> Registry {
        let trained = BUILTIN
            .iter()
            .map(|(file, default, json)| {
                let model = Model::from_json(json.as_bytes(), &ModelLimits::default())
                    .unwrap_or_else(|e| panic!("built-in model {file} is invalid: {e}"));
                Trained { model: Arc::new(model), default: *default, upscaler: OnceLock::new() }
            })
            .collect();
        Registry { trained, opts }
    }

    /// The CPU options models run with.
    pub fn options(&self) -> Options {
        self.opts
    }

    /// Registers (or replaces) a trained model under `name`; it is checked by building its engine now.
    pub fn register(&mut self, name: &str, model: Model) -> Result<(), PipelineError> {
        if name == INIT_MODEL || Baseline::from_str(name).is_ok() {
            return Err(PipelineError::BadRequest(format!("`{name}` is a reserved model name")));
        }
        let model = model.with_name(name);
        let up = upscaler_for(&model, self.opts).map_err(PipelineError::Engine)?;
        let entry = Trained { model: Arc::new(model), default: false, upscaler: OnceLock::from(Ok(Arc::new(up))) };
        match self.trained.iter_mut().find(|t| t.model.name() == name) {
            Some(t) => {
                let default = t.default;
                *t = entry;
                t.default = default;
            }
            None => self.trained.push(entry),
        }
        Ok(())
    }

    /// The trained model called `name`.
    pub fn trained(&self, name: &str) -> Option<&Model> {
        self.trained.iter().find(|t| t.model.name() == name).map(|t| &*t.model)
    }

    /// The default trained model for `scale`, if there is one.
    pub fn default_for(&self, scale: u32) -> Option<&Model> {
        self.trained.iter().find(|t| t.default && t.model.scale() == scale).map(|t| &*t.model)
    }

    /// Every model name, trained first, then `init` and the baselines.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.trained.iter().map(|t| t.model.name().to_string()).collect();
        v.push(INIT_MODEL.into());
        v.extend(Baseline::ALL.iter().map(|b| b.name().to_string()));
        v
    }

    /// The listing of `GET /models`.
    pub fn list(&self) -> Vec<ModelInfo> {
        let mut v: Vec<ModelInfo> = self
            .trained
            .iter()
            .map(|t| ModelInfo {
                name: t.model.name().to_string(),
                kind: ModelKind::Trained,
                scale: Some(t.model.scale()),
                default: t.default,
                parameters: Some(t.model.parameters()),
                macs_per_pixel: Some(t.model.macs_per_pixel()),
                description: t.model.description().to_string(),
            })
            .collect();
        v.push(ModelInfo {
            name: INIT_MODEL.into(),
            kind: ModelKind::Generated,
            scale: None,
            default: false,
            parameters: None,
            macs_per_pixel: None,
            description: "Untrained generated kernels: one Conv2d(3 -> 3r^2, k) + PixelShuffle(r), made from init, \
                          initializer, seed and kernel_size (ICNR by default); the default for scales 5 to 8."
                .into(),
        });
        v.extend(Baseline::ALL.iter().map(|b| ModelInfo {
            name: b.name().into(),
            kind: ModelKind::Baseline,
            scale: None,
            default: false,
            parameters: None,
            macs_per_pixel: None,
            description: b.description().into(),
        }));
        v
    }

    /// `{"models": [...]}` as `GET /models` returns it, one line ending with `\n`.
    pub fn list_json(&self) -> String {
        let mut s =
            serde_json::to_string(&serde_json::json!({ "models": self.list() })).expect("the model listing serializes");
        s.push('\n');
        s
    }

    fn trained_upscaler(&self, t: &Trained) -> Result<Arc<Upscaler>, PipelineError> {
        t.upscaler
            .get_or_init(|| upscaler_for(&t.model, self.opts).map(Arc::new))
            .clone()
            .map_err(PipelineError::Engine)
    }

    fn models_for_scale(&self, scale: u32) -> String {
        let mut v: Vec<&str> =
            self.trained.iter().filter(|t| t.model.scale() == scale).map(|t| t.model.name()).collect();
        v.extend(Baseline::ALL.iter().map(|b| b.name()));
        v.push(INIT_MODEL);
        v.join(", ")
    }

    /// Picks the model for a request (see the module doc for the rules).
    pub fn resolve(
        &self,
        req: &ModelRequest,
        weights: Option<Weights<'_>>,
        limits: &ModelLimits,
    ) -> Result<Resolved, PipelineError> {
        match weights {
            Some(Weights::Model(bytes)) => return self.resolve_uploaded_model(req, bytes, limits),
            Some(Weights::Kernel(bytes)) => return self.resolve_uploaded_kernel(req, bytes),
            None => {}
        }
        let name = match &req.model {
            Some(n) => n.as_str(),
            None if req.has_init_params() => INIT_MODEL,
            None => {
                let scale = req.scale.unwrap_or(KernelParams::default().scale);
                match self.default_for(scale) {
                    Some(m) => m.name(),
                    None => INIT_MODEL,
                }
            }
        };
        if name == INIT_MODEL {
            let kernel = Kernel::generate(&req.kernel_params())?;
            return Ok(Resolved {
                name: INIT_MODEL.into(),
                kind: ModelKind::Generated,
                scale: kernel.scale(),
                runner: Runner::Engine(Arc::new(
                    Upscaler::from_kernel(&kernel, self.opts).map_err(|e| PipelineError::Engine(e.to_string()))?,
                )),
            });
        }
        if let Ok(b) = Baseline::from_str(name) {
            if req.has_init_params() {
                return Err(PipelineError::BadRequest(format!(
                    "{} apply only to model=init (the generated kernels); model={name} is a baseline and takes only \
                     scale",
                    req.init_params_given()
                )));
            }
            return Ok(Resolved {
                name: name.into(),
                kind: ModelKind::Baseline,
                scale: req.scale.unwrap_or(KernelParams::default().scale),
                runner: Runner::Baseline(b),
            });
        }
        let Some(t) = self.trained.iter().find(|t| t.model.name() == name) else {
            return Err(PipelineError::UnknownModel(format!(
                "unknown model {}; models: {} (GET /models lists them)",
                shorten(name),
                self.names().join(", ")
            )));
        };
        if req.has_init_params() {
            return Err(PipelineError::BadRequest(format!(
                "{} apply only to model=init (the generated kernels); model={name} is trained: drop them, or use \
                 model=init",
                req.init_params_given()
            )));
        }
        let scale = t.model.scale();
        if let Some(s) = req.scale.filter(|s| *s != scale) {
            return Err(PipelineError::BadRequest(format!(
                "model={name} upscales by {scale}, not {s}; for scale {s} use one of: {}",
                self.models_for_scale(s)
            )));
        }
        Ok(Resolved {
            name: name.into(),
            kind: ModelKind::Trained,
            scale,
            runner: Runner::Engine(self.trained_upscaler(t)?),
        })
    }

    fn resolve_uploaded_model(
        &self,
        req: &ModelRequest,
        bytes: &[u8],
        limits: &ModelLimits,
    ) -> Result<Resolved, PipelineError> {
        if let Some(m) = &req.model {
            return Err(PipelineError::BadRequest(format!(
                "model={} contradicts the uploaded model; give one or the other",
                shorten(m)
            )));
        }
        if req.has_init_params() {
            return Err(PipelineError::BadRequest(format!(
                "{} apply only to the generated kernels, not to an uploaded model; drop them",
                req.init_params_given()
            )));
        }
        let model = parse_model(bytes, limits)?;
        if let Some(s) = req.scale.filter(|s| *s != model.scale()) {
            return Err(PipelineError::BadRequest(format!(
                "scale={s} contradicts the uploaded model, which upscales by {}; drop `scale`",
                model.scale()
            )));
        }
        let up = upscaler_for(&model, self.opts).map_err(PipelineError::Engine)?;
        Ok(Resolved {
            name: model.name().to_string(),
            kind: ModelKind::Trained,
            scale: model.scale(),
            runner: Runner::Engine(Arc::new(up)),
        })
    }

    fn resolve_uploaded_kernel(&self, req: &ModelRequest, bytes: &[u8]) -> Result<Resolved, PipelineError> {
        if let Some(m) = &req.model {
            return Err(PipelineError::BadRequest(format!(
                "model={} contradicts the uploaded kernel; give one or the other",
                shorten(m)
            )));
        }
        let kernel = if is_safetensors(bytes) { Kernel::from_safetensors(bytes) } else { Kernel::from_json(bytes) }
            .map_err(|e| PipelineError::BadKernel(format!("the `kernel` field is not valid kernel JSON: {e}")))?;
        if let Some(scale) = req.scale.filter(|s| *s != kernel.scale()) {
            return Err(PipelineError::KernelContradiction(format!(
                "scale={scale} contradicts the kernel, which is for scale {} (out_channels {}); drop `scale` or send \
                 a kernel for scale {scale}",
                kernel.scale(),
                kernel.bias_flat().len()
            )));
        }
        if let Some(k) = req.kernel_size.filter(|k| *k != kernel.kernel_size()) {
            return Err(PipelineError::KernelContradiction(format!(
                "kernel_size={k} contradicts the kernel, whose kernel_size is {}; drop `kernel_size` or send a \
                 {k}x{k} kernel",
                kernel.kernel_size()
            )));
        }
        Ok(Resolved {
            name: CUSTOM_KERNEL_NAME.into(),
            kind: ModelKind::Trained,
            scale: kernel.scale(),
            runner: Runner::Engine(Arc::new(
                Upscaler::from_kernel(&kernel, self.opts).map_err(|e| PipelineError::Engine(e.to_string()))?,
            )),
        })
    }
}

/// Whether `bytes` look like a safetensors file (an 8-byte little-endian header length, then a JSON object).
pub fn is_safetensors(bytes: &[u8]) -> bool {
    bytes.len() >= 9 && bytes[8] == b'{'
}

/// Reads model JSON or safetensors, told apart by their first bytes.
pub fn parse_model(bytes: &[u8], limits: &ModelLimits) -> Result<Model, ModelError> {
    if is_safetensors(bytes) {
        Model::from_safetensors(bytes, limits)
    } else {
        Model::from_json(bytes, limits)
    }
}

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    pub max_input_pixels: u64,
    pub max_output_pixels: u64,
}

/// What a finished run reports.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Input width and height.
    pub input: (u32, u32),
    pub stats: EncodeStats,
}

/// Decodes `bytes`, upscales them with `model` and streams the PNG into `out`. `should_stop` is polled between
/// bands; when it returns true the run ends with `ImageError::Cancelled`.
///
/// ```
/// use icnr_upscale::{pipeline, Compression, ModelLimits, ModelRequest, Options, Registry, RunLimits};
///
/// let mut png = std::io::Cursor::new(Vec::new());
/// image::RgbImage::from_pixel(8, 6, image::Rgb([10, 20, 30])).write_to(&mut png, image::ImageFormat::Png)?;
///
/// // The model: here the default trained model for scale 3.
/// let registry = Registry::builtin(Options::default());
/// let request = ModelRequest { scale: Some(3), ..ModelRequest::default() };
/// let model = registry.resolve(&request, None, &ModelLimits::default())?;
/// assert_eq!(model.name(), "espcn-x3");
///
/// let limits = RunLimits { max_input_pixels: 1 << 20, max_output_pixels: 1 << 22 };
/// let mut out = Vec::new();
/// let outcome = pipeline::run(png.into_inner(), &model, &limits, Compression::Fast, &mut out, &|| false)?;
/// assert_eq!(outcome.input, (8, 6));
/// assert_eq!((outcome.stats.width, outcome.stats.height), (24, 18));
/// assert!(out.starts_with(b"\x89PNG"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run<W: Write, B: AsRef<[u8]>>(
    bytes: B,
    model: &Resolved,
    limits: &RunLimits,
    compression: Compression,
    out: W,
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<Outcome, PipelineError> {
    let decode_limits = DecodeLimits {
        max_input_pixels: limits.max_input_pixels,
        max_output_pixels: model.output_pixel_cap(limits.max_output_pixels),
        scale: model.scale(),
    };
    let decoded = imageio::decode(bytes.as_ref(), &decode_limits)?;
    // The encoded input is no longer needed; free it before the output grows.
    drop(bytes);
    let input = (decoded.image.width, decoded.image.height);
    let stats =
        imageio::upscale_to_png(out, model, &decoded.image, decoded.icc_profile.as_deref(), compression, should_stop)?;
    Ok(Outcome { input, stats })
}

/// Caller text quoted back in a message, shortened so a huge value cannot bloat it.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() > MAX {
        format!("{:?}...", s.chars().take(MAX).collect::<String>())
    } else {
        format!("{s:?}")
    }
}
