//! Black-box tests of `imageio`: decoding every supported format, limits read from the header before decoding,
//! hostile inputs (truncated files, header bombs), EXIF orientation, ICC round trips, streaming PNG output and
//! atomic writes.

mod support;
use support::images::encode;
use support::jpeg_with_orientation;
use support::png::png_header_bomb;

use std::io::Cursor;
use std::path::Path;

use icnr_upscale::engine::{Image, Options, Samples, Upscaler};
use icnr_upscale::imageio::{self, Compression, DecodeLimits, ImageError};
use icnr_upscale::kernel::Kernel;
use ndarray::{Array1, Array4};

const LIMITS: DecodeLimits = DecodeLimits { max_input_pixels: 1 << 24, max_output_pixels: 1 << 26, scale: 2 };

/// A deterministic RGB8 pattern with texture in every channel.
fn pattern_rgb8(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 37 + y * 11) as u8, ((x * 5) ^ (y * 23)) as u8, (x * y) as u8])
    })
}

/// ICNR(dirac) for scale r, kernel size k: every output block copies its input pixel (nearest neighbour).
fn dirac_icnr(r: u32, k: u32) -> Kernel {
    let (ru, ku) = (r as usize, k as usize);
    let mut weight = vec![0f32; 3 * ru * ru * 3 * ku * ku];
    for o in 0..3 * ru * ru {
        let c = o / (ru * ru);
        weight[((o * 3 + c) * ku + ku / 2) * ku + ku / 2] = 1.0;
    }
    let (ru, ku) = (r as usize, k as usize);
    let weight = Array4::from_shape_vec((3 * ru * ru, 3, ku, ku), weight).unwrap();
    Kernel::new(weight, Some(Array1::from_vec(vec![0.0; 3 * ru * ru]))).unwrap()
}

/// An untied kernel with small deterministic pseudo-random weights (an LCG), to exercise the general path.
fn lcg_kernel(r: u32, k: u32) -> Kernel {
    let (ru, ku) = (r as usize, k as usize);
    let mut s = 12345u32;
    let mut next = || {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
        ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.4
    };
    let weight: Vec<f32> = (0..3 * ru * ru * 3 * ku * ku).map(|_| next()).collect();
    let bias: Vec<f32> = (0..3 * ru * ru).map(|_| next() * 0.5 + 0.3).collect();
    let (ru, ku) = (r as usize, k as usize);
    let weight = Array4::from_shape_vec((3 * ru * ru, 3, ku, ku), weight).unwrap();
    Kernel::new(weight, Some(Array1::from_vec(bias))).unwrap()
}

fn to_png(up: &Upscaler, img: &Image, icc: Option<&[u8]>, compression: Compression) -> (Vec<u8>, imageio::EncodeStats) {
    let mut out = Vec::new();
    let stats = imageio::upscale_to_png(&mut out, up, img, icc, compression, &|| false).expect("upscale_to_png");
    (out, stats)
}

/// Decodes a PNG with the png crate (independent of `imageio::decode`): info and samples, 16-bit as u16.
fn read_png(bytes: &[u8]) -> (png::ColorType, png::BitDepth, u32, u32, Samples, Option<Vec<u8>>) {
    let mut reader = png::Decoder::new(Cursor::new(bytes)).read_info().expect("valid PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).expect("PNG frame");
    buf.truncate(frame.buffer_size());
    let icc = reader.info().icc_profile.as_ref().map(|c| c.to_vec());
    let samples = match frame.bit_depth {
        png::BitDepth::Sixteen => Samples::U16(buf.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()),
        _ => Samples::U8(buf),
    };
    (frame.color_type, frame.bit_depth, frame.width, frame.height, samples, icc)
}

/// A 10-gigapixel IHDR in a tiny file is refused from the header (TooLarge), before any pixel is decoded.
#[test]
fn header_bomb_is_rejected_before_decoding() {
    let bomb = png_header_bomb(100_000, 100_000);
    assert!(bomb.len() < 100, "the bomb is tiny: {} bytes", bomb.len());
    match imageio::decode(&bomb, &LIMITS) {
        Err(ImageError::TooLarge(msg)) => {
            assert!(msg.contains("100000x100000"), "{msg}");
            assert!(msg.contains(&LIMITS.max_input_pixels.to_string()), "names the limit: {msg}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

/// A PNG whose compressed iCCP profile inflates to 80 MiB (from a file of about 80 KB) is refused while the header
/// is read with the allocation capped (64 MiB), instead of inflating the bomb: the profile is dropped (or the image
/// refused as TooLarge), never a panic or an abort.
#[test]
fn icc_bomb_is_refused() {
    use image::ImageEncoder;
    let mut bomb = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut bomb);
    enc.set_icc_profile(vec![0u8; 80 << 20]).unwrap();
    enc.write_image(&[1, 2, 3], 1, 1, image::ExtendedColorType::Rgb8).unwrap();
    assert!(bomb.len() < 1 << 20, "the bomb is small: {} bytes", bomb.len());
    match imageio::decode(&bomb, &LIMITS) {
        // png gives up on the profile at the cap and decodes the pixels without it.
        Ok(d) => assert_eq!((d.icc_profile, d.image.width), (None, 1)),
        Err(ImageError::TooLarge(msg)) => assert!(msg.contains("memory"), "{msg}"),
        Err(e) => panic!("expected the image without its profile, or TooLarge; got {e:?}"),
    }
}

/// The output limit is checked from the header too: 5000x5000 is a fine input, but 4x is 400 Mpx out.
#[test]
fn output_limit_is_checked_from_the_header() {
    let png = png_header_bomb(5000, 5000);
    let limits = DecodeLimits { max_input_pixels: 1 << 26, max_output_pixels: 1 << 26, scale: 4 };
    match imageio::decode(&png, &limits) {
        Err(ImageError::TooLarge(msg)) => assert!(msg.contains("20000x20000") && msg.contains("scale 4"), "{msg}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Within both limits, the same header is then decoded, and its missing pixel data is a decode error.
    let limits = DecodeLimits { max_input_pixels: 1 << 26, max_output_pixels: 1 << 30, scale: 4 };
    assert!(matches!(imageio::decode(&png, &limits), Err(ImageError::Unsupported(_))));
}

/// The limits are inclusive: exactly max_input_pixels and max_output_pixels pass.
#[test]
fn limits_are_inclusive() {
    let img = image::DynamicImage::ImageRgb8(pattern_rgb8(8, 4));
    let png = encode(&img, image::ImageFormat::Png);
    let exact = DecodeLimits { max_input_pixels: 32, max_output_pixels: 32 * 9, scale: 3 };
    assert!(imageio::decode(&png, &exact).is_ok());
    let tight_in = DecodeLimits { max_input_pixels: 31, ..exact };
    assert!(matches!(imageio::decode(&png, &tight_in), Err(ImageError::TooLarge(_))));
    let tight_out = DecodeLimits { max_output_pixels: 32 * 9 - 1, ..exact };
    assert!(matches!(imageio::decode(&png, &tight_out), Err(ImageError::TooLarge(_))));
}

/// Empty, random, SVG and unsupported-format bytes are Unsupported, with a message listing what is supported.
#[test]
fn unsupported_inputs_name_the_supported_formats() {
    let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>"#;
    let random: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let qoi = b"qoif\0\0\0\x04\0\0\0\x04\x03\0rest";
    for (name, bytes) in [("empty", &b""[..]), ("svg", &svg[..]), ("random", &random[..]), ("qoi", &qoi[..])] {
        match imageio::decode(bytes, &LIMITS) {
            Err(ImageError::Unsupported(msg)) => {
                assert!(msg.contains("PNG, JPEG, WebP, GIF"), "{name}: {msg}");
            }
            other => panic!("{name}: expected Unsupported, got {other:?}"),
        }
    }
}

/// Every supported format decodes to the right size, channels and bit depth; lossless ones sample-exact.
#[test]
fn every_format_decodes() {
    use image::DynamicImage as D;
    use image::ImageFormat as F;
    let rgb8 = pattern_rgb8(13, 7);
    let rgba8 = image::RgbaImage::from_fn(13, 7, |x, y| {
        let p = rgb8.get_pixel(x, y).0;
        image::Rgba([p[0], p[1], p[2], (x * 19 + y * 3) as u8])
    });
    let l8 = image::GrayImage::from_fn(13, 7, |x, y| image::Luma([rgb8.get_pixel(x, y).0[0]]));
    let la8 = image::GrayAlphaImage::from_fn(13, 7, |x, y| image::LumaA([rgb8.get_pixel(x, y).0[0], (x * 7) as u8]));
    let rgb16 = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(13, 7, |x, y| {
        image::Rgb([(x * 5003 + y * 77) as u16, (y * 9001) as u16, 65535 - (x * y * 300) as u16])
    });
    let rgba16 = image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(13, 7, |x, y| {
        let p = rgb16.get_pixel(x, y).0;
        image::Rgba([p[0], p[1], p[2], (x * 4000) as u16])
    });
    let l16 =
        image::ImageBuffer::<image::Luma<u16>, _>::from_fn(13, 7, |x, y| image::Luma([rgb16.get_pixel(x, y).0[0]]));
    let la16 = image::ImageBuffer::<image::LumaA<u16>, _>::from_fn(13, 7, |x, y| {
        image::LumaA([rgb16.get_pixel(x, y).0[0], (y * 8000) as u16])
    });
    let rgb32f = image::Rgb32FImage::from_fn(13, 7, |x, y| image::Rgb([x as f32 / 12.0, y as f32 / 6.0, 0.25]));

    // (label, image, format, expected channels, bit depth, sample-exact)
    let cases: Vec<(&str, D, F, u8, u8, bool)> = vec![
        ("png rgb8", D::ImageRgb8(rgb8.clone()), F::Png, 3, 8, true),
        ("png rgba8", D::ImageRgba8(rgba8.clone()), F::Png, 4, 8, true),
        ("png l8", D::ImageLuma8(l8.clone()), F::Png, 1, 8, true),
        ("png la8", D::ImageLumaA8(la8.clone()), F::Png, 2, 8, true),
        ("png rgb16", D::ImageRgb16(rgb16.clone()), F::Png, 3, 16, true),
        ("png rgba16", D::ImageRgba16(rgba16.clone()), F::Png, 4, 16, true),
        ("png l16", D::ImageLuma16(l16.clone()), F::Png, 1, 16, true),
        ("png la16", D::ImageLumaA16(la16.clone()), F::Png, 2, 16, true),
        ("jpeg rgb8", D::ImageRgb8(rgb8.clone()), F::Jpeg, 3, 8, false),
        ("jpeg l8", D::ImageLuma8(l8.clone()), F::Jpeg, 1, 8, false),
        ("webp rgba8", D::ImageRgba8(rgba8.clone()), F::WebP, 4, 8, true),
        ("webp rgb8", D::ImageRgb8(rgb8.clone()), F::WebP, 3, 8, true),
        ("gif rgba8", D::ImageRgba8(rgba8.clone()), F::Gif, 4, 8, false),
        ("bmp rgb8", D::ImageRgb8(rgb8.clone()), F::Bmp, 3, 8, true),
        ("bmp rgba8", D::ImageRgba8(rgba8.clone()), F::Bmp, 4, 8, true),
        ("tiff rgb8", D::ImageRgb8(rgb8.clone()), F::Tiff, 3, 8, true),
        ("tiff rgba16", D::ImageRgba16(rgba16.clone()), F::Tiff, 4, 16, true),
        ("tiff l16", D::ImageLuma16(l16.clone()), F::Tiff, 1, 16, true),
        ("tiff rgb32f", D::ImageRgb32F(rgb32f.clone()), F::Tiff, 3, 16, false),
    ];
    for (label, img, format, channels, depth, exact) in cases {
        let bytes = encode(&img, format);
        let d = imageio::decode(&bytes, &LIMITS).unwrap_or_else(|e| panic!("{label}: {e}"));
        let expected_name = match format {
            F::Png => "png",
            F::Jpeg => "jpeg",
            F::WebP => "webp",
            F::Gif => "gif",
            F::Bmp => "bmp",
            F::Tiff => "tiff",
            _ => unreachable!(),
        };
        assert_eq!(d.format, expected_name, "{label}");
        assert_eq!((d.image.width, d.image.height), (13, 7), "{label}");
        assert_eq!(d.image.channels, channels, "{label}");
        assert_eq!(d.image.bit_depth(), depth, "{label}");
        let n = 13 * 7 * channels as usize;
        match &d.image.samples {
            Samples::U8(s) => assert_eq!(s.len(), n, "{label}"),
            Samples::U16(s) => assert_eq!(s.len(), n, "{label}"),
        }
        if exact {
            let expected = match (&img, channels) {
                (D::ImageRgb16(_) | D::ImageRgba16(_) | D::ImageLuma16(_) | D::ImageLumaA16(_), _) => {
                    Samples::U16(match channels {
                        1 => img.to_luma16().into_raw(),
                        2 => img.to_luma_alpha16().into_raw(),
                        3 => img.to_rgb16().into_raw(),
                        _ => img.to_rgba16().into_raw(),
                    })
                }
                (_, 1) => Samples::U8(img.to_luma8().into_raw()),
                (_, 2) => Samples::U8(img.to_luma_alpha8().into_raw()),
                (_, 3) => Samples::U8(img.to_rgb8().into_raw()),
                _ => Samples::U8(img.to_rgba8().into_raw()),
            };
            assert!(d.image.samples == expected, "{label}: samples differ");
        }
    }
}

/// Palette PNGs come out as RGB8 (image expands them).
#[test]
fn palette_png_decodes_as_rgb8() {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, 3, 2);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![255, 0, 0, 0, 255, 0, 0, 0, 255]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0, 1, 2, 2, 1, 0]).unwrap();
    }
    let d = imageio::decode(&bytes, &LIMITS).unwrap();
    assert_eq!((d.image.channels, d.image.bit_depth()), (3, 8));
    assert_eq!(d.image.samples, Samples::U8(vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 255, 0, 255, 0, 255, 0, 0]));
}

/// Every prefix of a PNG, JPEG, WebP, GIF, BMP and TIFF file decodes or fails cleanly: never a panic, never a
/// TooLarge. A prefix of a lossless file either fails (Unsupported) or, when only trailing bytes after the pixel
/// data were cut, decodes to exactly the same pixels.
#[test]
fn truncated_files_are_unsupported_not_panics() {
    use image::ImageFormat as F;
    let rgb = image::DynamicImage::ImageRgb8(pattern_rgb8(24, 17));
    let rgba = image::DynamicImage::ImageRgba8(image::DynamicImage::ImageRgb8(pattern_rgb8(24, 17)).to_rgba8());
    for (format, img) in
        [(F::Png, &rgb), (F::Jpeg, &rgb), (F::WebP, &rgba), (F::Gif, &rgba), (F::Bmp, &rgb), (F::Tiff, &rgb)]
    {
        let full = encode(img, format);
        let whole = imageio::decode(&full, &LIMITS).unwrap_or_else(|e| panic!("{format:?}: the full file: {e}"));
        for len in 0..full.len() {
            match imageio::decode(&full[..len], &LIMITS) {
                Err(ImageError::Unsupported(msg)) => assert!(!msg.is_empty()),
                // zune-jpeg pads a truncated scan, as browsers do.
                Ok(d) if format == F::Jpeg => assert_eq!((d.image.width, d.image.height), (24, 17)),
                // Cutting only trailing bytes after the pixel data (e.g. PNG's IEND) loses nothing.
                Ok(d) if d.image == whole.image => {}
                Ok(_) => panic!("{format:?} truncated to {len}/{} bytes decoded to different pixels", full.len()),
                Err(e) => panic!("{format:?} truncated to {len}/{} bytes: {e:?}", full.len()),
            }
        }
    }
    // Corruption inside the data (not only truncation) is also a clean error.
    let mut png = encode(&rgb, F::Png);
    let mid = png.len() / 2;
    png[mid..mid + 16].fill(0xA5);
    assert!(matches!(imageio::decode(&png, &LIMITS), Err(ImageError::Unsupported(_))));
}

/// EXIF orientation 6 (rotate 90 degrees clockwise) swaps width and height and moves the top-left pixel to the
/// top-right; orientation 1 leaves the image alone.
#[test]
fn exif_orientation_is_applied() {
    // Left half black, right half white, so rotation is visible even through JPEG.
    let img = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(32, 16, |x, _| {
        image::Luma([if x < 16 { 0 } else { 255 }])
    }));
    let d1 = imageio::decode(&jpeg_with_orientation(&img, 1), &LIMITS).unwrap();
    assert_eq!((d1.image.width, d1.image.height), (32, 16));
    let d6 = imageio::decode(&jpeg_with_orientation(&img, 6), &LIMITS).unwrap();
    assert_eq!((d6.image.width, d6.image.height), (16, 32));
    let Samples::U8(s) = &d6.image.samples else { panic!("8-bit") };
    // Rotated 90 degrees clockwise: the old left (black) half is now the top.
    assert!(s[0] < 30 && s[(31 * 16) as usize] > 225, "top {} bottom {}", s[0], s[31 * 16]);

    // PNG eXIf works the same way.
    let mut png = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut png);
    use image::ImageEncoder;
    let exif = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x08\0\0\0\0\0\0".to_vec(); // orientation 8
    enc.set_exif_metadata(exif).unwrap();
    enc.write_image(img.as_bytes(), 32, 16, image::ExtendedColorType::L8).unwrap();
    let d8 = imageio::decode(&png, &LIMITS).unwrap();
    assert_eq!((d8.image.width, d8.image.height), (16, 32));
    let Samples::U8(s) = &d8.image.samples else { panic!("8-bit") };
    // Rotated 90 degrees counter-clockwise: the old left (black) half is now the bottom.
    assert_eq!((s[0], s[31 * 16]), (255, 0));
}

/// The streamed PNG holds exactly the engine's in-memory result (`Upscaler::upscale`), for 8/16 bit, with and
/// without alpha, grayscale expanded, for every compression level.
#[test]
fn streamed_png_equals_in_memory_upscale() {
    let rgb8 = image::DynamicImage::ImageRgb8(pattern_rgb8(11, 9));
    let inputs: Vec<(&str, image::DynamicImage)> = vec![
        ("rgb8", rgb8.clone()),
        ("rgba8", image::DynamicImage::ImageRgba8(rgb8.to_rgba8())),
        ("l8", image::DynamicImage::ImageLuma8(rgb8.to_luma8())),
        ("rgb16", image::DynamicImage::ImageRgb16(rgb8.to_rgb16())),
        ("rgba16", image::DynamicImage::ImageRgba16(rgb8.to_rgba16())),
    ];
    for (label, dynimg) in inputs {
        let d = imageio::decode(&encode(&dynimg, image::ImageFormat::Png), &LIMITS).unwrap();
        for (kernel, compression) in [
            (lcg_kernel(2, 3), Compression::Fast),
            (lcg_kernel(3, 1), Compression::Balanced),
            (dirac_icnr(2, 3), Compression::Best),
        ] {
            let up = Upscaler::from_kernel(&kernel, Options::default()).unwrap();
            let (png_bytes, stats) = to_png(&up, &d.image, None, compression);
            let expected = up.upscale(&d.image).unwrap();
            let (color, depth, w, h, samples, icc) = read_png(&png_bytes);
            assert_eq!((w, h), (11 * kernel.scale(), 9 * kernel.scale()), "{label}");
            assert_eq!((stats.width, stats.height), (w, h), "{label}");
            assert_eq!(stats.channels, expected.channels, "{label}");
            assert_eq!(color, if expected.channels == 4 { png::ColorType::Rgba } else { png::ColorType::Rgb });
            assert_eq!(depth, if d.image.bit_depth() == 16 { png::BitDepth::Sixteen } else { png::BitDepth::Eight });
            assert_eq!(stats.bit_depth, d.image.bit_depth(), "{label}");
            assert!(icc.is_none());
            assert!(samples == expected.samples, "{label}: PNG samples differ from Upscaler::upscale");
            assert!(stats.score.is_finite() && stats.score >= 0.0);
        }
    }
}

/// 16-bit RGBA through ICNR(dirac) is nearest-neighbour: every r x r block repeats its input pixel, alpha
/// included, with all 16 bits intact, and a uniform-block image scores exactly 0 (the definition in src/score.rs).
#[test]
fn sixteen_bit_alpha_nearest_neighbour_round_trip() {
    let px = |x: u32, y: u32| {
        [(x * 6007 + 1) as u16, (y * 9011 + 3) as u16, 65535 - (x * y * 13) as u16, (x * 4099 + y) as u16]
    };
    let src = image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(5, 3, |x, y| image::Rgba(px(x, y)));
    let d = imageio::decode(&encode(&image::DynamicImage::ImageRgba16(src), image::ImageFormat::Png), &LIMITS).unwrap();
    let up = Upscaler::from_kernel(&dirac_icnr(3, 3), Options::default()).unwrap();
    let (bytes, stats) = to_png(&up, &d.image, None, Compression::Fast);
    assert_eq!(stats.score, 0.0);
    let (color, depth, w, h, samples, _) = read_png(&bytes);
    assert_eq!((color, depth, w, h), (png::ColorType::Rgba, png::BitDepth::Sixteen, 15, 9));
    let Samples::U16(s) = samples else { panic!("16-bit") };
    for y in 0..9 {
        for x in 0..15 {
            let i = ((y * 15 + x) * 4) as usize;
            assert_eq!(&s[i..i + 4], &px(x / 3, y / 3), "output pixel ({x}, {y})");
        }
    }
}

/// An ICC profile of `len` bytes whose header declares the colour space `space` (`b"RGB "`, `b"GRAY"`, `b"CMYK"`):
/// the header fields a reader looks at (size, class, colour space, PCS, `acsp` signature), then filler bytes. Enough
/// to prove the plumbing, which must carry the bytes unchanged.
fn icc_profile(space: &[u8; 4], len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len as u32).map(|i| (i * 7 + 3) as u8).collect();
    p[0..4].copy_from_slice(&(len as u32).to_be_bytes());
    p[8..12].copy_from_slice(&[4, 0x30, 0, 0]);
    p[12..16].copy_from_slice(if space == b"CMYK" { b"prtr" } else { b"mntr" });
    p[16..20].copy_from_slice(space);
    p[20..24].copy_from_slice(b"XYZ ");
    p[36..40].copy_from_slice(b"acsp");
    p
}

/// The ICC profile of the input is kept by decode and written into the output PNG's iCCP chunk, byte for byte.
#[test]
fn icc_profile_survives_into_output_png() {
    let icc = icc_profile(b"RGB ", 600);
    let mut input = Vec::new();
    {
        use image::ImageEncoder;
        let mut enc = image::codecs::png::PngEncoder::new(&mut input);
        enc.set_icc_profile(icc.clone()).unwrap();
        let img = pattern_rgb8(6, 4);
        enc.write_image(img.as_raw(), 6, 4, image::ExtendedColorType::Rgb8).unwrap();
    }
    let d = imageio::decode(&input, &LIMITS).unwrap();
    assert_eq!(d.icc_profile.as_deref(), Some(&icc[..]));
    let up = Upscaler::from_kernel(&dirac_icnr(2, 3), Options::default()).unwrap();
    let (out, _) = to_png(&up, &d.image, d.icc_profile.as_deref(), Compression::Fast);
    let (_, _, _, _, _, out_icc) = read_png(&out);
    assert_eq!(out_icc.as_deref(), Some(&icc[..]));
    // And a TIFF's profile is carried too. (image bounds TIFF tag values by the image's own buffer size, about
    // 32 bytes of image per profile byte, so the picture must not be tiny: 128x128 RGB8 holds a 1.5 KB profile.)
    let mut tiff = Cursor::new(Vec::new());
    {
        use image::ImageEncoder;
        let mut enc = image::codecs::tiff::TiffEncoder::new(&mut tiff);
        enc.set_icc_profile(icc.clone()).unwrap();
        enc.write_image(pattern_rgb8(128, 128).as_raw(), 128, 128, image::ExtendedColorType::Rgb8).unwrap();
    }
    let d = imageio::decode(tiff.get_ref(), &LIMITS).unwrap();
    assert_eq!(d.icc_profile.as_deref(), Some(&icc[..]));
}

/// `should_stop` returning true stops the work with Cancelled, whether it says so before the first band or
/// between bands.
#[test]
fn should_stop_cancels() {
    // Large enough that the engine likely hands over several bands (their height is the engine's choice).
    let tall = image::DynamicImage::ImageRgb8(pattern_rgb8(512, 1024));
    let img = imageio::decode(&encode(&tall, image::ImageFormat::Png), &LIMITS).unwrap().image;
    let up = Upscaler::from_kernel(&dirac_icnr(2, 3), Options::default()).unwrap();
    let r = imageio::upscale_to_png(Vec::new(), &up, &img, None, Compression::Fast, &|| true);
    assert!(matches!(r, Err(ImageError::Cancelled)), "{r:?}");

    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let polls = AtomicUsize::new(0);
    let r = imageio::upscale_to_png(Vec::new(), &up, &img, None, Compression::Fast, &|| {
        polls.fetch_add(1, SeqCst);
        false
    });
    assert!(r.is_ok());
    let n = polls.load(SeqCst);
    assert!(n >= 2, "polled {n} times: once before the work and once per band");
    // Stop at the last poll: everything before it has run, and the result is still Cancelled, not a PNG.
    let calls = AtomicUsize::new(0);
    let r = imageio::upscale_to_png(Vec::new(), &up, &img, None, Compression::Fast, &|| {
        calls.fetch_add(1, SeqCst) + 1 >= n
    });
    assert!(matches!(r, Err(ImageError::Cancelled)), "{r:?}");
    assert_eq!(calls.load(SeqCst), n);
}

/// A failed write leaves the target byte-identical and no temporary file behind; a successful one replaces it.
#[test]
fn write_atomic_all_or_nothing() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.png");
    std::fs::write(&target, b"previous contents").unwrap();
    let r: Result<(), std::io::Error> = imageio::write_atomic(&target, |f| {
        f.write_all(b"half a fi")?;
        Err(std::io::Error::other("disk on fire"))
    });
    assert!(r.is_err());
    assert_eq!(std::fs::read(&target).unwrap(), b"previous contents");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out.png")], "no temp file left");

    let n = imageio::write_atomic(&target, |f| -> Result<usize, std::io::Error> {
        f.write_all(b"new")?;
        Ok(3)
    })
    .unwrap();
    assert_eq!(n, 3);
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// A 16-bit image whose values need all 16 bits: the decoder must not scale it to 8 bits anywhere.
#[test]
fn sixteen_bit_values_survive_decode() {
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(4, 1, |x, _| {
        image::Luma([[1u16, 257, 65534, 12345][x as usize]])
    });
    let d = imageio::decode(&encode(&image::DynamicImage::ImageLuma16(img), image::ImageFormat::Png), &LIMITS).unwrap();
    assert_eq!(d.image.samples, Samples::U16(vec![1, 257, 65534, 12345]));
}

/// ICC profiles from a JPEG (APP2 `ICC_PROFILE` segments) and from a WebP (VP8X + `ICCP` chunk) are kept by decode
/// and written into the output PNG's iCCP chunk, byte for byte. The JPEG profile is larger than one APP2 segment
/// (65519 bytes), so it is split over several and must be reassembled.
#[test]
fn icc_profile_from_jpeg_and_webp_is_carried_into_the_png() {
    use image::ImageEncoder;
    let up = Upscaler::from_kernel(&dirac_icnr(2, 3), Options::default()).unwrap();
    let img = pattern_rgb8(16, 12);
    for (what, icc) in [("small", icc_profile(b"RGB ", 3000)), ("over one APP2 segment", icc_profile(b"RGB ", 150_000))]
    {
        let mut jpeg = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
        enc.set_icc_profile(icc.clone()).unwrap();
        enc.write_image(img.as_raw(), 16, 12, image::ExtendedColorType::Rgb8).unwrap();
        let app2 = jpeg.windows(14).filter(|w| w[..2] == [0xff, 0xe2] && &w[4..] == b"ICC_PROFIL").count();
        assert!(app2 >= 1, "{what}: the JPEG has no APP2 ICC_PROFILE segment");
        let d = imageio::decode(&jpeg, &LIMITS).unwrap();
        assert_eq!(d.format, "jpeg");
        assert_eq!(d.icc_profile.as_deref(), Some(&icc[..]), "JPEG, {what} ({app2} APP2 segments): decode");
        let (out, _) = to_png(&up, &d.image, d.icc_profile.as_deref(), Compression::Fast);
        assert_eq!(read_png(&out).5.as_deref(), Some(&icc[..]), "JPEG, {what}: output iCCP");
    }

    let icc = icc_profile(b"RGB ", 3000);
    let mut webp = Vec::new();
    let mut enc = image::codecs::webp::WebPEncoder::new_lossless(&mut webp);
    enc.set_icc_profile(icc.clone()).unwrap();
    enc.write_image(img.as_raw(), 16, 12, image::ExtendedColorType::Rgb8).unwrap();
    assert!(webp.windows(4).any(|w| w == b"VP8X") && webp.windows(4).any(|w| w == b"ICCP"), "WebP with VP8X + ICCP");
    let d = imageio::decode(&webp, &LIMITS).unwrap();
    assert_eq!(d.format, "webp");
    assert_eq!(d.icc_profile.as_deref(), Some(&icc[..]), "WebP: decode");
    let (out, _) = to_png(&up, &d.image, d.icc_profile.as_deref(), Compression::Fast);
    let (color, _, w, h, samples, out_icc) = read_png(&out);
    assert_eq!((color, w, h), (png::ColorType::Rgb, 32, 24));
    assert_eq!(out_icc.as_deref(), Some(&icc[..]), "WebP: output iCCP");
    // Lossless and dirac ICNR: the pixels are the input's, nearest-neighbour.
    let Samples::U8(s) = samples else { panic!("8-bit output") };
    for (x, y) in [(0, 0), (31, 23), (5, 17)] {
        let i = ((y * 32 + x) * 3) as usize;
        assert_eq!(&s[i..i + 3], &img.get_pixel(x / 2, y / 2).0[..], "WebP pixel ({x}, {y})");
    }
}

/// Inserts an APP2 `ICC_PROFILE` segment carrying `icc` (one segment) right after a JPEG's SOI marker.
fn jpeg_with_icc(jpeg: &[u8], icc: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
    let len = 2 + 12 + 2 + icc.len();
    assert!(len <= 0xffff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe2]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(b"ICC_PROFILE\0");
    out.extend_from_slice(&[1, 1]);
    out.extend_from_slice(icc);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The output PNG is always RGB or RGBA, so a profile for another colour space (the GRAY profile of a grayscale
/// input, the CMYK profile of a CMYK JPEG) would mislabel its pixels: it must not be written into the PNG. (A PNG
/// decoder must ignore an iCCP whose colour space does not match the image's colour type, and some reject the file.)
#[test]
fn gray_or_cmyk_icc_profile_is_not_written_into_the_rgb_png() {
    use image::ImageEncoder;
    let up = Upscaler::from_kernel(&dirac_icnr(2, 3), Options::default()).unwrap();
    let gray_icc = icc_profile(b"GRAY", 500);
    let mut gray_png = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut gray_png);
    enc.set_icc_profile(gray_icc.clone()).unwrap();
    enc.write_image(&[0, 64, 128, 255, 32, 96], 3, 2, image::ExtendedColorType::L8).unwrap();

    let cmyk_icc = icc_profile(b"CMYK", 700);
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/cmyk.jpg");
    let cmyk_jpeg = jpeg_with_icc(&std::fs::read(&corpus).unwrap(), &cmyk_icc);

    for (what, bytes, icc) in [("gray PNG", gray_png, gray_icc), ("CMYK JPEG", cmyk_jpeg, cmyk_icc)] {
        let d = imageio::decode(&bytes, &LIMITS).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(d.icc_profile.as_deref(), Some(&icc[..]), "{what}: decode keeps the profile it found");
        let (out, _) = to_png(&up, &d.image, d.icc_profile.as_deref(), Compression::Fast);
        let (color, _, _, _, _, out_icc) = read_png(&out);
        assert_eq!(color, png::ColorType::Rgb, "{what}: the output is RGB");
        assert_eq!(
            out_icc,
            None,
            "{what}: its {} profile was written into an RGB PNG",
            String::from_utf8_lossy(&icc[16..20])
        );
    }
}

/// Bytes allocated and not yet freed by this thread, and the most there were since the last [`reset_peak`]: a
/// counting allocator for [`metadata_bombs_cost_no_memory`]. Per thread, so that tests running in parallel do not
/// count each other's allocations.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static LIVE: Cell<i64> = const { Cell::new(0) };
        static PEAK: Cell<i64> = const { Cell::new(0) };
    }

    fn add(n: i64) {
        let _ = LIVE.try_with(|l| {
            let v = l.get() + n;
            l.set(v);
            let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
        });
    }

    // SAFETY: every call is forwarded to the system allocator unchanged; the bookkeeping does not allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as i64);
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as i64);
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as i64));
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size as i64 - layout.size() as i64);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Starts a new measurement; returns nothing.
    pub fn reset_peak() {
        let live = LIVE.with(|l| l.get());
        PEAK.with(|p| p.set(live));
    }

    /// The peak since [`reset_peak`], above what was live then, in bytes.
    pub fn peak_since(start_live: i64) -> i64 {
        PEAK.with(|p| p.get()) - start_live
    }

    pub fn live() -> i64 {
        LIVE.with(|l| l.get())
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// The corpus's metadata bombs (`tests/corpus/png_iccp_bomb.png` and `png_ztxt_bomb.png`, 204 KB files whose iCCP
/// profile and zTXt comment each inflate to 200 MB) cannot make the service allocate 200 MB: decoding one, as the
/// service does, allocates under 72 MiB at any time on the decoding thread (the decoder's metadata allocation cap is
/// 64 MiB), gives the picture without the profile, and upscaling it allocates under 8 MiB (the engine's band buffers).
#[test]
fn metadata_bombs_cost_no_memory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    for name in ["png_iccp_bomb.png", "png_ztxt_bomb.png"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let start = counting::live();
        counting::reset_peak();
        let decoded = imageio::decode(&bytes, &LIMITS);
        let peak = counting::peak_since(start);
        eprintln!("{name}: {} bytes, decode allocated at most {peak} bytes at once", bytes.len());
        let d = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(d.icc_profile, None, "{name}: a 200 MB profile was kept");
        assert!(peak < 72 << 20, "{name}: decoding allocated {peak} bytes at once");
        // The same holds for the whole request path: decode, upscale and PNG encoding.
        counting::reset_peak();
        let start = counting::live();
        let up = Upscaler::from_kernel(&dirac_icnr(2, 3), Options::default()).unwrap();
        let (out, _) = to_png(&up, &d.image, d.icc_profile.as_deref(), Compression::Fast);
        assert!(read_png(&out).5.is_none());
        let peak = counting::peak_since(start);
        assert!(peak < 8 << 20, "{name}: upscaling the decoded image allocated {peak} bytes at once");
    }
}

// The README's picture and its two checkerboard scores come from this example; the test runs its computation.
#[allow(dead_code)]
#[path = "../examples/compare.rs"]
mod compare;

/// The checkerboard scores the README quotes for its picture ("1.095 for the default init and 0.000 for ICNR") are
/// what `examples/compare.rs` computes (`cargo run --release --example compare`).
#[test]
fn readme_scores_are_what_the_compare_example_computes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let c = compare::compare(root).expect("examples/compare.rs on assets/chelsea.png");
    let (default, icnr) = (format!("{:.3}", c.default_score), format!("{:.3}", c.icnr_score));
    eprintln!("compare example: default init {:.6}, ICNR {:.6}", c.default_score, c.icnr_score);
    assert_eq!(c.icnr_score, 0.0, "an untrained ICNR kernel scores exactly 0");
    assert_eq!(default, "1.095", "the default-init score the README quotes");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("{default} for the default init and {icnr} for ICNR")),
        "README.md does not quote the example's scores ({default} and {icnr})"
    );
}
