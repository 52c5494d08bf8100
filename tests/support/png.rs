//! PNG bytes at the chunk level, read and written independently of the service's own encoder: CRC-32, chunks,
//! the header facts of an answer, its pixels, and hand-made PNGs.

use std::io::Cursor;

pub const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// CRC-32 (ISO 3309, as PNG uses).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Appends one chunk: length, type, data, CRC over type and data.
pub fn write_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A chunk's type and data.
pub type Chunk<'a> = ([u8; 4], &'a [u8]);

/// The chunks after the signature, in order, checking each CRC; an error on a truncated chunk, a bad CRC, or bytes
/// after IEND.
pub fn chunks(bytes: &[u8]) -> Result<Vec<Chunk<'_>>, String> {
    if bytes.len() < 8 || &bytes[..8] != SIGNATURE {
        return Err(format!("not a PNG: {:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(16)])));
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < bytes.len() {
        if pos + 12 > bytes.len() {
            return Err(format!("truncated chunk at byte {pos}"));
        }
        let len = be(&bytes[pos..]) as usize;
        let end = pos + 12 + len;
        if end > bytes.len() {
            return Err(format!("chunk at byte {pos} runs past the end"));
        }
        let kind: [u8; 4] = bytes[pos + 4..pos + 8].try_into().expect("4 bytes");
        if crc32(&bytes[pos + 4..pos + 8 + len]) != be(&bytes[pos + 8 + len..]) {
            return Err(format!("bad CRC in chunk {}", String::from_utf8_lossy(&kind)));
        }
        out.push((kind, &bytes[pos + 8..pos + 8 + len]));
        pos = end;
        if &kind == b"IEND" {
            break;
        }
    }
    if out.last().map(|(k, _)| k) != Some(b"IEND") || pos != bytes.len() {
        return Err("PNG is truncated or has trailing bytes (no complete IEND)".into());
    }
    Ok(out)
}

/// Header facts of a PNG, read from the bytes themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PngInfo {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub bit_depth: u8,
    pub has_iccp: bool,
}

/// Parses the signature, IHDR and the chunk list (every chunk's CRC checked).
pub fn png_info(bytes: &[u8]) -> Result<PngInfo, String> {
    let chunks = chunks(bytes)?;
    let ihdr = match chunks.first() {
        Some((kind, data)) if kind == b"IHDR" && data.len() == 13 => *data,
        _ => return Err("the first chunk is not a 13-byte IHDR".into()),
    };
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let channels = match ihdr[9] {
        0 => 1,
        2 | 3 => 3,
        4 => 2,
        6 => 4,
        t => return Err(format!("bad PNG colour type {t}")),
    };
    Ok(PngInfo {
        width: be(&ihdr[0..]),
        height: be(&ihdr[4..]),
        channels,
        bit_depth: ihdr[8],
        has_iccp: chunks.iter().any(|(k, _)| k == b"iCCP"),
    })
}

/// Decodes a PNG fully and returns a pixel getter: `(x, y) -> samples` in the PNG's own depth (8-bit values
/// 0..=255 or 16-bit 0..=65535), `channels` values per pixel (at least 3: gray is given as RGB).
pub fn png_pixels(bytes: &[u8]) -> Result<impl Fn(u32, u32) -> Vec<u32>, String> {
    let info = png_info(bytes)?;
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .map_err(|e| format!("output PNG does not decode: {e}"))?;
    let n = info.channels as usize;
    let (w, px): (u32, Vec<u32>) = if info.bit_depth == 16 {
        (img.width(), img.to_rgba16().into_raw().into_iter().map(u32::from).collect())
    } else {
        (img.width(), img.to_rgba8().into_raw().into_iter().map(u32::from).collect())
    };
    Ok(move |x: u32, y: u32| {
        let i = (y as usize * w as usize + x as usize) * 4;
        let mut v = px[i..i + 4].to_vec();
        v.truncate(n.max(3));
        v
    })
}

/// The ICC profile of a PNG, if any (as the `png` crate reads it).
pub fn png_icc(bytes: &[u8]) -> Option<Vec<u8>> {
    let reader = png::Decoder::new(Cursor::new(bytes)).read_info().expect("PNG header");
    reader.info().icc_profile.as_ref().map(|p| p.to_vec())
}

/// A well-formed PNG signature + IHDR claiming `w` x `h` RGB8, then a tiny IDAT and IEND: the "header bomb".
pub fn png_header_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    write_chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream of a few zero bytes: nowhere near the promised size.
    write_chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]);
    write_chunk(&mut out, b"IEND", &[]);
    out
}
