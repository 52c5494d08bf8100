//! Decoding with limits checked from the header before any pixel is decoded, and streaming PNG encoding.
//!
//! # Decoding
//! [`decode`] guesses the format from the magic bytes (never from a name or a content type), opens the codec, reads
//! the dimensions from the header and checks them against [`DecodeLimits`] *before* a single pixel is decoded, so a
//! 10-gigapixel header in a 1 KB file costs nothing. `image::Limits` sized from those dimensions is then set on the
//! decoder as a second fence. EXIF orientation is applied and the ICC profile kept.
//!
//! # Encoding
//! [`upscale_to_png`] hands the engine's ordered output bands straight to a `png` stream writer (and to the
//! checkerboard [`ScoreAccumulator`]), so the upscaled image never exists in memory as a whole.
//!
//! # Files
//! [`write_atomic`] writes a temporary file next to the target and renames it into place, so a failure never
//! leaves half a file.

use std::borrow::Cow;
use std::io::{Cursor, Write};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::engine::{output_dims, Image, OutRows, RowSamples, Upscaler};
use crate::names::named_enum;
use crate::score::ScoreAccumulator;

/// The formats [`decode`] accepts, as shown to callers.
pub const SUPPORTED_FORMATS: &str = "PNG, JPEG, WebP, GIF (first frame), BMP or TIFF";

named_enum! {
    /// PNG compression level of the output.
    pub enum Compression ("compression", default Fast) {
        /// Fastest: png's ultra-fast deflate with the Paeth filter.
        Fast = "fast",
        /// Balanced deflate with the adaptive filter.
        Balanced = "balanced",
        /// Smallest: the strongest deflate with the adaptive filter.
        Best = "best",
    }
}

/// Limits applied to a decode, checked from the header before decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_input_pixels: u64,
    pub max_output_pixels: u64,
    /// The scale the image will be upscaled by (to check the output size).
    pub scale: u32,
}

/// A decoded image, already EXIF-oriented, with its ICC profile if it had one.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub image: Image,
    pub icc_profile: Option<Vec<u8>>,
    /// `png`, `jpeg`, `webp`, `gif`, `bmp` or `tiff`.
    pub format: &'static str,
}

/// Why an image could not be read or written. Messages are written for the caller.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not a supported image, or undecodable bytes (HTTP 415).
    #[error("{0}")]
    Unsupported(String),
    /// Input or output dimensions over the limits (HTTP 422).
    #[error("{0}")]
    TooLarge(String),
    /// The caller asked to stop (`should_stop` returned true).
    #[error("cancelled")]
    Cancelled,
    /// Writing the output failed (I/O); internal, not the caller's fault.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Facts about a written PNG.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncodeStats {
    pub width: u32,
    pub height: u32,
    /// 3 or 4.
    pub channels: u8,
    /// 8 or 16.
    pub bit_depth: u8,
    /// Checkerboard score of the output.
    pub score: f64,
}

/// Bytes a decoder may allocate beyond the decoded pixels themselves (codec tables, row buffers, metadata).
const DECODE_ALLOC_SLACK: u64 = 64 << 20;
/// Bytes a codec may allocate while reading the header, before the dimensions are checked.
const DECODE_OPEN_ALLOC: u64 = 64 << 20;
/// Largest decoded pixel we budget for: RGBA f32 (TIFF float), 16 bytes. Images convert to at most 8 bytes/pixel.
const MAX_BYTES_PER_DECODED_PIXEL: u64 = 16;
/// Longest decoder message passed on to the caller.
const MAX_DETAIL_CHARS: usize = 200;

/// The name of a supported format, or `None`.
fn format_name(format: ImageFormat) -> Option<&'static str> {
    Some(match format {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::WebP => "webp",
        ImageFormat::Gif => "gif",
        ImageFormat::Bmp => "bmp",
        ImageFormat::Tiff => "tiff",
        _ => return None,
    })
}

fn unsupported_format(bytes: &[u8], guessed: Option<ImageFormat>) -> ImageError {
    let what = if bytes.is_empty() {
        "the image is empty".to_string()
    } else if let Some(f) = guessed {
        format!("{f:?} images are not supported")
    } else if looks_like_svg(bytes) {
        "SVG (vector) images are not supported".to_string()
    } else {
        "the data is not a recognised image".to_string()
    };
    ImageError::Unsupported(format!("{what}; send a {SUPPORTED_FORMATS} image"))
}

fn looks_like_svg(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(512)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.contains("<svg") || head.trim_start().starts_with("<?xml")
}

/// Turns a codec error into a message for the caller. Decoding from memory, so no paths can appear; the text is
/// still shortened, and resource limits map to [`ImageError::TooLarge`].
fn decode_error(name: &str, err: image::ImageError) -> ImageError {
    tracing::debug!(format = name, error = %err, "image decode failed");
    match err {
        image::ImageError::Limits(_) => ImageError::TooLarge(format!(
            "the {} image needs more memory to decode than its dimensions allow; send a smaller or simpler image",
            name.to_uppercase()
        )),
        image::ImageError::Unsupported(e) => ImageError::Unsupported(format!(
            "this {} image uses a feature that is not supported ({}); send a {SUPPORTED_FORMATS} image",
            name.to_uppercase(),
            shorten(&e.to_string())
        )),
        e => ImageError::Unsupported(format!(
            "the {} image could not be decoded, it is corrupt or truncated ({})",
            name.to_uppercase(),
            shorten(&e.to_string())
        )),
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_DETAIL_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_DETAIL_CHARS).collect();
        t.push('…');
        t
    }
}

/// Checks header dimensions against the limits. Orientation only swaps width and height, so the pixel counts it
/// checks hold for the oriented image too.
pub fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Unsupported(format!(
            "the image header says {width}x{height}; an image needs at least one pixel"
        )));
    }
    let input = width as u64 * height as u64;
    if input > limits.max_input_pixels {
        return Err(ImageError::TooLarge(format!(
            "the input is {width}x{height} = {input} pixels, over the limit of {} input pixels; \
             send a smaller image or raise the max-input-pixels limit",
            limits.max_input_pixels
        )));
    }
    let r = limits.scale as u64;
    let (ow, oh) = (width as u64 * r, height as u64 * r);
    let output = ow.saturating_mul(oh);
    if output > limits.max_output_pixels || ow > u32::MAX as u64 || oh > u32::MAX as u64 {
        return Err(ImageError::TooLarge(format!(
            "at scale {r} the output would be {ow}x{oh} = {output} pixels, over the limit of {} output pixels; \
             use a smaller scale or a smaller image, or raise the max-output-pixels limit",
            limits.max_output_pixels
        )));
    }
    Ok(())
}

/// Decode `bytes` (PNG, JPEG, WebP, GIF first frame, BMP, TIFF), rejecting over-limit dimensions from the header.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, ImageError> {
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|_| unsupported_format(bytes, None))?;
    let guessed = reader.format();
    let name = guessed.and_then(format_name).ok_or_else(|| unsupported_format(bytes, guessed))?;

    // Opening the codec reads the header (and, for PNG, the metadata chunks before the pixel data). No width or
    // height limit here, so over-size headers reach our own check and its message; the allocation cap bounds what
    // compressed metadata (a PNG iCCP or zTXt bomb) may inflate to, and leaves room for one row of the widest image.
    let mut open_limits = image::Limits::default();
    open_limits.max_alloc = Some(DECODE_OPEN_ALLOC);
    reader.limits(open_limits);
    let mut decoder = reader.into_decoder().map_err(|e| decode_error(name, e))?;

    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;

    // Second fence: the codec itself now refuses anything larger than what the header promised (a GIF frame
    // larger than its logical screen, a TIFF strip larger than its image, ...).
    let mut fence = image::Limits::default();
    fence.max_image_width = Some(width);
    fence.max_image_height = Some(height);
    fence.max_alloc = Some(
        (width as u64 * height as u64).saturating_mul(MAX_BYTES_PER_DECODED_PIXEL).saturating_add(DECODE_ALLOC_SLACK),
    );
    decoder.set_limits(fence).map_err(|e| decode_error(name, e))?;

    // Metadata is best effort: a broken EXIF or ICC block must not make a decodable picture fail. Note: image
    // bounds TIFF tag values by the image's buffer size (~32 bytes of image per profile byte), so a tiny TIFF
    // with a large profile loses the profile, which is the safe side for hostile input.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let icc_profile = decoder.icc_profile().ok().flatten().filter(|p| !p.is_empty());

    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(name, e))?;
    img.apply_orientation(orientation);
    // Moves the decoded pixels into an engine image without a copy where the layout already matches.
    Ok(Decoded { image: Image::from(img), icc_profile, format: name })
}

fn png_error(err: png::EncodingError) -> ImageError {
    match err {
        png::EncodingError::IoError(e) => ImageError::Io(e),
        e => ImageError::Io(std::io::Error::other(e)),
    }
}

/// Size of the IDAT chunks the stream writer emits; larger chunks mean fewer chunk headers and CRC passes.
const IDAT_CHUNK_BYTES: usize = 1 << 20;

/// Upscale `img` and stream the result as PNG into `out`, row band by row band (never the whole output in memory
/// at once), embedding `icc` if given. `should_stop` is polled between bands; when it returns true the work stops
/// with `ImageError::Cancelled`.
pub fn upscale_to_png<W: Write>(
    out: W,
    up: &dyn RowUpscaler,
    img: &Image,
    icc: Option<&[u8]>,
    compression: Compression,
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<EncodeStats, ImageError> {
    if should_stop() {
        return Err(ImageError::Cancelled);
    }
    let scale = up.scale();
    let (width, height) = output_dims(img.width, img.height, scale).ok_or_else(|| {
        ImageError::TooLarge(format!(
            "the output of a {}x{} image at scale {scale} is too large",
            img.width, img.height
        ))
    })?;
    let channels = img.out_channels();
    let bit_depth = img.bit_depth();

    let mut info = png::Info::with_size(width, height);
    info.color_type = if channels == 4 { png::ColorType::Rgba } else { png::ColorType::Rgb };
    info.bit_depth = if bit_depth == 16 { png::BitDepth::Sixteen } else { png::BitDepth::Eight };
    info.icc_profile = icc.filter(|p| is_rgb_profile(p)).map(Cow::Borrowed);
    let mut encoder = png::Encoder::with_info(out, info).map_err(png_error)?;
    let (level, filter) = png_settings(compression);
    encoder.set_compression(level);
    encoder.set_filter(filter);
    let mut writer = encoder.write_header().map_err(png_error)?;
    let mut stream = writer.stream_writer_with_size(IDAT_CHUNK_BYTES).map_err(png_error)?;

    let mut score = ScoreAccumulator::new(scale);
    // PNG stores 16-bit samples big-endian; one band's worth of bytes, reused.
    let mut be_bytes: Vec<u8> = Vec::new();
    up.upscale_rows(img, &mut |rows: OutRows<'_>| -> Result<(), ImageError> {
        if should_stop() {
            return Err(ImageError::Cancelled);
        }
        // The engine's workers are idle while its sink runs: score the band on one of them while this thread
        // filters and compresses it. (Scoped, so the writer itself need not be `Send`.)
        let score = &mut score;
        rayon::in_place_scope(|scope| -> std::io::Result<()> {
            scope.spawn(move |_| score.push(&rows));
            match rows.samples {
                RowSamples::U8(s) => stream.write_all(s),
                RowSamples::U16(s) => {
                    be_bytes.clear();
                    be_bytes.reserve(s.len() * 2);
                    be_bytes.extend(s.iter().flat_map(|v| v.to_be_bytes()));
                    stream.write_all(&be_bytes)
                }
            }
        })?;
        Ok(())
    })?;
    stream.finish().map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(EncodeStats { width, height, channels, bit_depth, score: score.finish() })
}

/// Something that upscales an image and hands the output rows to a sink in order: the engine's [`Upscaler`], or
/// a resolved model of [`crate::pipeline`] (which may be a baseline).
pub trait RowUpscaler: Sync {
    /// The scale factor r.
    fn scale(&self) -> u32;
    /// Upscales `img`, handing rows to `sink` top to bottom; stops at the first error from `sink`.
    fn upscale_rows(
        &self,
        img: &Image,
        sink: &mut dyn FnMut(OutRows<'_>) -> Result<(), ImageError>,
    ) -> Result<(), ImageError>;
}

impl RowUpscaler for Upscaler {
    fn scale(&self) -> u32 {
        Upscaler::scale(self)
    }
    fn upscale_rows(
        &self,
        img: &Image,
        sink: &mut dyn FnMut(OutRows<'_>) -> Result<(), ImageError>,
    ) -> Result<(), ImageError> {
        self.upscale_streaming(img, sink)
    }
}

/// Whether an ICC profile describes RGB data (header bytes 16..20, the data colour space, are `RGB `). The output
/// is always RGB(A): a GRAY or CMYK profile would mislabel its pixels, so such a profile is dropped.
pub fn is_rgb_profile(icc: &[u8]) -> bool {
    icc.get(16..20) == Some(b"RGB ")
}

/// Deflate level and row filter for each [`Compression`].
///
/// `Fast` pairs png's fdeflate ultra-fast mode with the Paeth filter: the adaptive filter tries all five filters on
/// every row, which costs more than the deflate pass itself, while Paeth alone compresses photos about as well and
/// turns the repeated rows of an r x r block into near-zero runs.
fn png_settings(compression: Compression) -> (png::Compression, png::Filter) {
    match compression {
        Compression::Fast => (png::Compression::Fast, png::Filter::Paeth),
        Compression::Balanced => (png::Compression::Balanced, png::Filter::Adaptive),
        Compression::Best => (png::Compression::High, png::Filter::Adaptive),
    }
}

/// Writes `path` atomically: `write` fills a temporary file in the same directory, which is flushed, synced and
/// renamed over `path`. On any error the temporary file is removed and `path` is left untouched.
pub fn write_atomic<T, E>(path: &Path, write: impl FnOnce(&mut std::fs::File) -> Result<T, E>) -> Result<T, E>
where
    E: From<std::io::Error>,
{
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".icnr-upscale-").suffix(".tmp");
    // A plain file's mode (0666 minus the umask), not tempfile's private 0600: the result is the user's output.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    let value = write(tmp.as_file_mut())?;
    tmp.as_file_mut().flush()?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(value)
}
