//! Fuzz target: `imageio::decode` under small limits, then `imageio::upscale_to_png` of whatever it returns into
//! `io::sink`. Any input must give `Ok` or a typed error, never a panic, an abort or an allocation beyond the limits
//! (libFuzzer's `-rss_limit_mb` and `-malloc_limit_mb` catch those).
//!
//! The scale (2, 3 or 4) is taken from the input length, so the image bytes themselves stay untouched and the
//! seed corpus (real files of every supported format) is used as is.
#![no_main]

use std::sync::OnceLock;

use icnr_upscale::engine::{Options, Upscaler};
use icnr_upscale::imageio::{decode, upscale_to_png, Compression, DecodeLimits, ImageError};
use icnr_upscale::kernel::{Kernel, KernelParams};
use libfuzzer_sys::fuzz_target;

/// Small limits keep each execution fast, as the service's limits keep each request bounded.
const MAX_INPUT_PIXELS: u64 = 128 * 128;
const MAX_OUTPUT_PIXELS: u64 = 4 * MAX_INPUT_PIXELS;

fn upscalers() -> &'static [Upscaler; 3] {
    static UP: OnceLock<[Upscaler; 3]> = OnceLock::new();
    UP.get_or_init(|| {
        [2, 3, 4].map(|scale| {
            let kernel = Kernel::generate(&KernelParams { scale, ..KernelParams::default() }).expect("valid params");
            Upscaler::from_kernel(&kernel, Options::default()).unwrap()
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let up = &upscalers()[data.len() % 3];
    let limits =
        DecodeLimits { max_input_pixels: MAX_INPUT_PIXELS, max_output_pixels: MAX_OUTPUT_PIXELS, scale: up.scale() };
    let decoded = match decode(data, &limits) {
        Ok(d) => d,
        Err(ImageError::Unsupported(msg) | ImageError::TooLarge(msg)) => {
            assert!(!msg.is_empty(), "error messages are shown to callers");
            return;
        }
        Err(e) => panic!("decode returned an error that is not the caller's: {e:?}"),
    };
    let img = &decoded.image;
    assert!(
        img.width as u64 * img.height as u64 <= MAX_INPUT_PIXELS,
        "decode let {}x{} through",
        img.width,
        img.height
    );
    let stats = upscale_to_png(std::io::sink(), up, img, decoded.icc_profile.as_deref(), Compression::Fast, &|| false)
        .expect("upscaling a decoded image into a sink cannot fail");
    assert_eq!((stats.width, stats.height), (img.width * up.scale(), img.height * up.scale()));
    assert_eq!(stats.channels, img.out_channels());
    assert_eq!(stats.bit_depth, img.bit_depth());
});
