//! Test images: deterministic patterns, encoders, and the committed corpus of `tests/corpus/`.

use std::io::Cursor;
use std::path::PathBuf;

use image::{DynamicImage, ImageFormat};

/// A w x h RGB8 test pattern (smooth gradients plus a little texture, deterministic).
pub fn rgb8(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, ((x * 7 + y * 13) % 256) as u8])
    }))
}

/// A w x h RGBA8 pattern with varying alpha.
pub fn rgba8(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgba8(image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([(x * 30) as u8, (y * 40) as u8, 128, ((x + y) * 20) as u8])
    }))
}

/// A w x h RGBA16 pattern using the low byte too (so 16 bits really matter).
pub fn rgba16(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgba16(image::ImageBuffer::from_fn(w, h, |x, y| {
        image::Rgba([(x * 4099 + 1) as u16, (y * 3001 + 7) as u16, 40_000, (x * 1000 + y * 77) as u16])
    }))
}

/// A w x h Luma16 ramp.
pub fn gray16(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(w, h, |x, y| image::Luma([(x * 2003 + y * 511) as u16])))
}

/// A deterministic noise RGB PNG of `w` x `h` (incompressible, so its output is large).
pub fn noise_png(w: u32, h: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let px: Vec<u8> = (0..w * h * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    png(&DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, px).expect("buffer size")))
}

/// Encodes `img` in `format` with the image crate.
pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap_or_else(|e| panic!("encoding {format:?}: {e}"));
    buf.into_inner()
}

pub fn png(img: &DynamicImage) -> Vec<u8> {
    encode(img, ImageFormat::Png)
}

/// A PNG with an embedded ICC profile (`iCCP`).
pub fn png_with_icc(img: &DynamicImage, icc: &[u8]) -> Vec<u8> {
    use image::ImageEncoder as _;
    let mut buf = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut buf);
    enc.set_icc_profile(icc.to_vec()).expect("PNG takes ICC profiles");
    enc.write_image(img.as_bytes(), img.width(), img.height(), img.color().into()).expect("encode PNG");
    buf
}

/// Decodes a PNG answer, checking it is a PNG.
pub fn decode_png(bytes: &[u8]) -> DynamicImage {
    assert_eq!(image::guess_format(bytes).expect("a known format"), ImageFormat::Png);
    image::load_from_memory_with_format(bytes, ImageFormat::Png).expect("decodable PNG")
}

/// Builds a JPEG with an EXIF APP1 segment carrying `orientation`, inserted right after SOI.
pub fn jpeg_with_orientation(img: &DynamicImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode(img, ImageFormat::Jpeg);
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    // "Exif\0\0", big-endian TIFF header, IFD0 with one entry: tag 0x0112 (Orientation), SHORT, count 1.
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding, next IFD offset 0
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// `tests/corpus/`: the committed hostile-input corpus (`scripts/make_corpus.py`).
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("corpus")
}

pub fn corpus_file(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A 64x48 RGB PNG from the corpus: a request with it and default parameters must succeed.
pub fn small_png() -> Vec<u8> {
    corpus_file("ok_rgb8.png")
}
