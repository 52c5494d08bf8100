//! Strict query-string parsing for `POST /upscale` and `GET /kernel`.
//!
//! The raw `key=value` pairs are parsed here rather than by serde so that an unknown or repeated parameter is an
//! error naming the allowed ones (a typo such as `?scael=4` must not silently give the default scale), and every
//! bad value says what is valid.

use crate::imageio::Compression;
use crate::kernel::{self, Init, Initializer, KernelParams, MAX_KERNEL_SIZE, MAX_SCALE, MIN_SCALE};

use super::error::ApiError;

/// Query parameters of `POST /upscale`, in documentation order.
pub const ALLOWED_UPSCALE_PARAMS: &[&str] =
    &["model", "scale", "kernel_size", "init", "initializer", "seed", "compression"];
/// Query parameters of `GET /kernel`: the same without `compression`.
pub const ALLOWED_KERNEL_PARAMS: &[&str] = &["scale", "kernel_size", "init", "initializer", "seed"];

/// Accepted `init` values: [`Init::GENERATED_NAMES`] (`custom` is what a caller-supplied kernel is, never a
/// parameter).
pub const INIT_VALUES: &[&str] = &Init::GENERATED_NAMES;
/// Accepted `initializer` values: [`Initializer::NAMES`].
pub const INITIALIZER_VALUES: &[&str] = Initializer::NAMES;
/// Accepted `compression` values: [`Compression::NAMES`].
pub const COMPRESSION_VALUES: &[&str] = Compression::NAMES;

/// Longest parameter name or value quoted back in an error detail.
const QUOTE_MAX: usize = 40;

/// The kernel parameters a caller gave; `None` means "not given" (the default applies, and with a custom kernel
/// nothing is contradicted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelQuery {
    pub scale: Option<u32>,
    pub kernel_size: Option<u32>,
    pub init: Option<Init>,
    pub initializer: Option<Initializer>,
    pub seed: Option<u64>,
}

impl KernelQuery {
    /// The full parameters, defaults filled in (the pipeline's one set of defaults).
    pub fn params(&self) -> KernelParams {
        let q = self;
        crate::pipeline::ModelRequest {
            model: None,
            scale: q.scale,
            kernel_size: q.kernel_size,
            init: q.init,
            initializer: q.initializer,
            seed: q.seed,
        }
        .kernel_params()
    }
}

/// The parameters of `POST /upscale`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpscaleQuery {
    /// `model`: a model name (checked against the registry when the model is resolved).
    pub model: Option<String>,
    pub kernel: KernelQuery,
    pub compression: Compression,
}

impl UpscaleQuery {
    /// The model request the pipeline resolves.
    pub fn model_request(&self) -> crate::pipeline::ModelRequest {
        crate::pipeline::ModelRequest {
            model: self.model.clone(),
            scale: self.kernel.scale,
            kernel_size: self.kernel.kernel_size,
            init: self.kernel.init,
            initializer: self.kernel.initializer,
            seed: self.kernel.seed,
        }
    }
}

/// Parses the query of `POST /upscale`.
pub fn parse_upscale(raw: Option<&str>) -> Result<UpscaleQuery, ApiError> {
    let mut q = UpscaleQuery::default();
    for (name, value) in pairs(raw, ALLOWED_UPSCALE_PARAMS)? {
        if name == "model" {
            if value.is_empty() || value.len() > 64 {
                return Err(ApiError::BadQuery(format!(
                    "model must be a model name (GET /models lists them), got {}",
                    quote(&value)
                )));
            }
            q.model = Some(value);
        } else if name == "compression" {
            q.compression = value.parse().map_err(|_| one_of("compression", COMPRESSION_VALUES, &value))?;
        } else {
            set_kernel_param(&mut q.kernel, &name, &value)?;
        }
    }
    Ok(q)
}

/// Parses the query of `GET /kernel`.
pub fn parse_kernel(raw: Option<&str>) -> Result<KernelQuery, ApiError> {
    let mut q = KernelQuery::default();
    for (name, value) in pairs(raw, ALLOWED_KERNEL_PARAMS)? {
        set_kernel_param(&mut q, &name, &value)?;
    }
    Ok(q)
}

fn set_kernel_param(q: &mut KernelQuery, name: &str, value: &str) -> Result<(), ApiError> {
    match name {
        "scale" => {
            q.scale = Some(
                parse_digits(value)
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|v| kernel::is_valid_scale(*v))
                    .ok_or_else(|| {
                        ApiError::BadQuery(format!(
                            "scale must be an integer from {MIN_SCALE} to {MAX_SCALE}, got {}",
                            quote(value)
                        ))
                    })?,
            )
        }
        "kernel_size" => {
            q.kernel_size = Some(
                parse_digits(value)
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|v| kernel::is_valid_kernel_size(*v))
                    .ok_or_else(|| {
                        ApiError::BadQuery(format!(
                            "kernel_size must be an odd integer from 1 to {MAX_KERNEL_SIZE} ({}), got {}",
                            odd_sizes(),
                            quote(value)
                        ))
                    })?,
            )
        }
        "init" => q.init = Some(Init::parse_generated(value).map_err(|_| one_of("init", INIT_VALUES, value))?),
        "initializer" => {
            q.initializer = Some(value.parse().map_err(|_| one_of("initializer", INITIALIZER_VALUES, value))?)
        }
        "seed" => {
            q.seed = Some(parse_digits(value).ok_or_else(|| {
                ApiError::BadQuery(format!("seed must be an integer from 0 to {}, got {}", u64::MAX, quote(value)))
            })?)
        }
        // `pairs` only yields allowed names.
        other => return Err(ApiError::BadQuery(format!("unknown query parameter {}", quote(other)))),
    }
    Ok(())
}

/// Splits and percent-decodes the query, rejecting names outside `allowed` and names given twice.
fn pairs(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let (name, value) = (decode(name), decode(value));
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::BadQuery(format!(
                "unknown query parameter {}; allowed parameters: {}",
                quote(&name),
                allowed.join(", ")
            )));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ApiError::BadQuery(format!(
                "query parameter {} is given more than once; give each of {} at most once",
                quote(&name),
                allowed.join(", ")
            )));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; malformed escapes stay literal and
/// invalid UTF-8 becomes U+FFFD (such a value then fails validation with a clear message).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Plain ASCII digits only (no sign, no spaces), as a u64.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn one_of(name: &str, values: &[&str], got: &str) -> ApiError {
    ApiError::BadQuery(format!("{name} must be one of {}; got {}", values.join(", "), quote(got)))
}

fn odd_sizes() -> String {
    (1..=MAX_KERNEL_SIZE).step_by(2).map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
}

/// Quotes caller text for an error detail, shortened so a huge parameter cannot bloat the answer.
pub(crate) fn quote(s: &str) -> String {
    if s.chars().count() > QUOTE_MAX {
        let short: String = s.chars().take(QUOTE_MAX).collect();
        format!("{:?}...", short)
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_query_gives_defaults() {
        assert_eq!(parse_upscale(None).unwrap(), UpscaleQuery::default());
        assert_eq!(parse_upscale(Some("")).unwrap(), UpscaleQuery::default());
        assert_eq!(parse_kernel(Some("&&")).unwrap().params(), KernelParams::default());
    }

    #[test]
    fn every_parameter_parses() {
        let q = parse_upscale(Some(
            "scale=4&kernel_size=5&init=plain&initializer=xavier_uniform&seed=18446744073709551615&compression=best",
        ))
        .unwrap();
        assert_eq!(q.kernel.scale, Some(4));
        assert_eq!(q.kernel.kernel_size, Some(5));
        assert_eq!(q.kernel.init, Some(Init::Plain));
        assert_eq!(q.kernel.initializer, Some(Initializer::XavierUniform));
        assert_eq!(q.kernel.seed, Some(u64::MAX));
        assert_eq!(q.compression, Compression::Best);
    }

    #[test]
    fn percent_encoding_is_decoded() {
        assert_eq!(parse_kernel(Some("sc%61le=3&init=%69cnr")).unwrap().scale, Some(3));
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("%zz+%41"), "%zz A");
        assert_eq!(decode("%"), "%");
    }

    #[test]
    fn unknown_and_repeated_parameters_name_the_allowed_ones() {
        for q in ["scael=2", "scale=2&scale=2", "seed=1&Seed=2"] {
            let err = parse_upscale(Some(q)).unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{q}");
            assert!(err.detail().contains(&ALLOWED_UPSCALE_PARAMS.join(", ")), "{q}: {}", err.detail());
        }
        // GET /kernel takes no `compression`.
        let err = parse_kernel(Some("compression=fast")).unwrap_err();
        assert!(err.detail().contains(&ALLOWED_KERNEL_PARAMS.join(", ")), "{}", err.detail());
    }

    #[test]
    fn bad_values_are_rejected() {
        for q in [
            "scale=0",
            "scale=1",
            "scale=9",
            "scale=99",
            "scale=abc",
            "scale=",
            "scale=+2",
            "scale=2.0",
            "scale=99999999999999999999",
            "kernel_size=0",
            "kernel_size=4",
            "kernel_size=11",
            "kernel_size=-1",
            "seed=-1",
            "seed=18446744073709551616",
            "seed=1e3",
            "init=custom",
            "init=ICNR",
            "initializer=he",
            "compression=fastest",
            "seed",
        ] {
            let err = parse_upscale(Some(q)).unwrap_err();
            assert!(matches!(err, ApiError::BadQuery(_)), "{q}");
        }
    }

    /// The accepted values are the enums' one spelling table, and each of them parses.
    #[test]
    fn accepted_values_are_the_enum_names() {
        assert_eq!(INIT_VALUES, ["icnr", "default", "plain"]);
        assert_eq!(INITIALIZER_VALUES, Initializer::NAMES);
        assert_eq!(COMPRESSION_VALUES, Compression::NAMES);
        for (i, name) in INIT_VALUES.iter().enumerate() {
            assert_eq!(parse_kernel(Some(&format!("init={name}"))).unwrap().init, Some(Init::GENERATED[i]));
        }
        for (i, name) in INITIALIZER_VALUES.iter().enumerate() {
            assert_eq!(
                parse_kernel(Some(&format!("initializer={name}"))).unwrap().initializer,
                Some(Initializer::ALL[i])
            );
        }
        for (i, name) in COMPRESSION_VALUES.iter().enumerate() {
            assert_eq!(parse_upscale(Some(&format!("compression={name}"))).unwrap().compression, Compression::ALL[i]);
        }
    }

    #[test]
    fn long_values_are_shortened_in_details() {
        let long = "x".repeat(10_000);
        let detail = parse_upscale(Some(&format!("init={long}"))).unwrap_err().detail();
        assert!(detail.len() < 200, "{}", detail.len());
    }
}
