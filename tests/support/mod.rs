//! Helpers shared by the test binaries that include this module (`mod support;`).
#![allow(dead_code)] // each test binary uses its own subset

pub mod paths;

use std::io::Cursor;

/// Builds a JPEG with an EXIF APP1 segment carrying `orientation`, inserted right after SOI.
pub fn jpeg_with_orientation(img: &image::DynamicImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = Cursor::new(Vec::new());
    img.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let jpeg = jpeg.into_inner();
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
