//! Kernel weights for the sub-pixel convolution: `weight [3*r*r, 3, k, k]`, `bias [3*r*r]`, PyTorch layout.
//!
//! INTERFACE STUB: the public items below are the contract other modules build on.

use serde::{Deserialize, Serialize};

/// Input channels: the engine always convolves RGB.
pub const IN_CHANNELS: usize = 3;
/// Smallest and largest scale factor r.
pub const MIN_SCALE: u32 = 2;
pub const MAX_SCALE: u32 = 8;
/// Largest (odd) kernel size k.
pub const MAX_KERNEL_SIZE: u32 = 9;

/// How the kernel is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Sub-kernel from `initializer`, tied in groups of r*r consecutive output channels; bias zero.
    #[default]
    Icnr,
    /// PyTorch's own nn.Conv2d init (weight and bias U(+-1/sqrt(fan_in))).
    Default,
    /// `initializer` over the whole kernel, untied (the ablation).
    Plain,
    /// Weights supplied by the caller (JSON or safetensors); never accepted as a parameter.
    Custom,
}

/// The initializer for the (sub-)kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initializer {
    #[default]
    KaimingNormal,
    KaimingUniform,
    XavierNormal,
    XavierUniform,
    Dirac,
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

/// A validated kernel. `weight.len() == out_channels * 3 * k * k`, `bias.len() == out_channels`,
/// `out_channels == 3 * scale * scale`, all values finite.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub scale: u32,
    pub kernel_size: u32,
    pub init: Init,
    pub initializer: Initializer,
    pub seed: u64,
    /// Flat, row-major `[out][in][k][k]`.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Why a kernel (parameters, JSON or safetensors) was rejected. Messages are written for the caller.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KernelError {
    #[error("{0}")]
    Invalid(String),
}
