//! The README picture: PyTorch's default Conv2d init against ICNR on the same photo, side by side.
//!
//!     cargo run --release --example compare
//!
//! Reads `assets/chelsea.png` (a 192 x 192 crop of scikit-image's CC0 "chelsea" photo, see `assets/README.md`),
//! upscales it x2 with two untrained kernels made from the same seed, `--init default` (PyTorch's own nn.Conv2d
//! init) and `--init icnr` (the default), and writes `assets/default-vs-icnr.png`:
//!
//! - top row: the photo (nearest-neighbour x2, for reference), the default-init output, the ICNR output, each with
//!   its checkerboard score (src/score.rs: 0 when every r x r block is uniform);
//! - bottom row: the same 64 x 64 crop of each (around the left eye), magnified x6 with nearest neighbour so that
//!   single output pixels, and the 2 x 2 checkerboard of the default init, are visible.
//!
//! It prints both scores ([`compare`] computes them; `tests/imageio.rs` checks the README's figures with it). Neither kernel is trained: the colours are those of a random filter. What the picture
//! shows is the structure a network starts from: the default init starts from a checkerboard, ICNR from none.

use std::path::Path;

use icnr_upscale::engine::{Image, Options, Samples, Upscaler};
use icnr_upscale::imageio::{decode, DecodeLimits};
use icnr_upscale::kernel::{Init, Initializer, Kernel, KernelParams};
use icnr_upscale::score::checkerboard_score;

const INPUT: &str = "assets/chelsea.png";
const OUTPUT: &str = "assets/default-vs-icnr.png";
const SCALE: u32 = 2;
const SEED: u64 = 0;
/// The zoomed crop, in output pixels: top-left corner (even, so that it starts on a block boundary) and side.
const CROP: (u32, u32, u32) = (88, 118, 64);
const ZOOM: u32 = 6;
const MARGIN: u32 = 8;
/// Height of the two text lines above each panel.
const LABEL_H: u32 = 40;
const BACKGROUND: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [32, 32, 32];

/// The two untrained outputs of the README picture and their checkerboard scores (the figures the README quotes;
/// `tests/imageio.rs` checks them through this function).
pub struct Comparison {
    pub photo: Image,
    pub default: Image,
    pub icnr: Image,
    pub default_score: f64,
    pub icnr_score: f64,
}

/// Upscales `assets/chelsea.png` (under the crate root `root`) with the default-init and ICNR kernels of the same
/// seed and scores both outputs.
pub fn compare(root: &Path) -> anyhow::Result<Comparison> {
    let bytes = std::fs::read(root.join(INPUT))?;
    let limits = DecodeLimits { max_input_pixels: 1 << 24, max_output_pixels: 1 << 26, scale: SCALE };
    let photo = decode(&bytes, &limits)?.image;
    anyhow::ensure!(photo.channels == 3, "{INPUT}: expected an RGB photo");

    let upscale = |init: Init| -> anyhow::Result<Image> {
        let params =
            KernelParams { scale: SCALE, kernel_size: 3, init, initializer: Initializer::KaimingNormal, seed: SEED };
        let kernel = Kernel::generate(&params)?;
        Ok(Upscaler::from_kernel(&kernel, Options::default()).unwrap().upscale(&photo).unwrap())
    };
    let default = upscale(Init::Default)?;
    let icnr = upscale(Init::Icnr)?;
    let default_score = checkerboard_score(&default, SCALE);
    let icnr_score = checkerboard_score(&icnr, SCALE);
    Ok(Comparison { photo, default, icnr, default_score, icnr_score })
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Comparison { photo, default, icnr, default_score, icnr_score } = compare(root)?;
    let reference = nearest(&photo, SCALE);
    println!("input {INPUT} {}x{}, scale {SCALE}, kernel_size 3, seed {SEED}", photo.width, photo.height);
    println!("checkerboard score, init default: {default_score:.4}");
    println!("checkerboard score, init icnr:    {icnr_score:.4}");

    let panel = reference.width;
    let zoomed = CROP.2 * ZOOM;
    let width = MARGIN + 3 * (panel.max(zoomed) + MARGIN);
    let height = MARGIN + LABEL_H + panel + MARGIN + zoomed + MARGIN;
    let mut canvas = Canvas::new(width, height);
    let columns = [
        (&reference, "PHOTO (NEAREST X2)".to_string(), "REFERENCE".to_string()),
        (&default, "PYTORCH DEFAULT INIT".to_string(), format!("SCORE {default_score:.3}")),
        (&icnr, "ICNR INIT".to_string(), format!("SCORE {icnr_score:.3}")),
    ];
    for (i, (img, title, score)) in columns.iter().enumerate() {
        let x0 = MARGIN + i as u32 * (panel.max(zoomed) + MARGIN);
        canvas.text(x0, MARGIN, title);
        canvas.text(x0, MARGIN + LABEL_H / 2, score);
        let y0 = MARGIN + LABEL_H;
        canvas.blit(img, x0, y0, (0, 0, img.width), 1);
        canvas.blit(img, x0, y0 + panel + MARGIN, CROP, ZOOM);
    }
    let path = root.join(OUTPUT);
    image::save_buffer(&path, &canvas.rgb, width, height, image::ExtendedColorType::Rgb8)?;
    println!("wrote {} ({width}x{height})", path.display());
    Ok(())
}

/// Nearest-neighbour upscaling of an 8-bit RGB image (the reference panel).
fn nearest(img: &Image, r: u32) -> Image {
    let Samples::U8(src) = &img.samples else { panic!("8-bit photo expected") };
    let (w, h) = (img.width * r, img.height * r);
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let i = (((y / r) * img.width + x / r) * 3) as usize;
            out.extend_from_slice(&src[i..i + 3]);
        }
    }
    Image { width: w, height: h, channels: 3, samples: Samples::U8(out) }
}

/// An RGB8 picture to draw on.
struct Canvas {
    width: u32,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Canvas {
        Canvas { width, rgb: BACKGROUND.repeat((width * height) as usize) }
    }

    fn set(&mut self, x: u32, y: u32, px: [u8; 3]) {
        let i = ((y * self.width + x) * 3) as usize;
        self.rgb[i..i + 3].copy_from_slice(&px);
    }

    /// Copies the square `crop` (x, y, side) of `img` (8-bit RGB) to (x0, y0), each pixel as a `zoom` x `zoom` block.
    fn blit(&mut self, img: &Image, x0: u32, y0: u32, crop: (u32, u32, u32), zoom: u32) {
        let Samples::U8(src) = &img.samples else { panic!("8-bit output expected") };
        let (cx, cy, side) = crop;
        for y in 0..side * zoom {
            for x in 0..side * zoom {
                let i = (((cy + y / zoom) * img.width + cx + x / zoom) * 3) as usize;
                self.set(x0 + x, y0 + y, [src[i], src[i + 1], src[i + 2]]);
            }
        }
    }

    /// Draws upper-case text with the 5 x 7 font below, doubled (10 x 14 pixels a glyph).
    fn text(&mut self, x0: u32, y0: u32, s: &str) {
        for (n, c) in s.chars().enumerate() {
            let rows = glyph(c);
            for (gy, bits) in rows.iter().enumerate() {
                for gx in 0..5u32 {
                    if bits & (0b10000 >> gx) != 0 {
                        let (x, y) = (x0 + n as u32 * 12 + gx * 2, y0 + gy as u32 * 2);
                        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(x + dx, y + dy, INK);
                        }
                    }
                }
            }
        }
    }
}

/// A 5 x 7 bitmap font: the characters the labels use. Each row's 5 low bits, leftmost pixel first.
fn glyph(c: char) -> [u8; 7] {
    match c {
        'A' => [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'C' => [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110],
        'D' => [0b11110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11110],
        'E' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111],
        'F' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000],
        'G' => [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111],
        'H' => [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'I' => [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        'L' => [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111],
        'N' => [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001],
        'O' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'P' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000],
        'R' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001],
        'S' => [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110],
        'T' => [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
        'U' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'X' => [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001],
        'Y' => [0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100],
        '0' => [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110],
        '1' => [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        '2' => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111],
        '3' => [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110],
        '4' => [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010],
        '5' => [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110],
        '6' => [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110],
        '7' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000],
        '8' => [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110],
        '9' => [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100],
        '.' => [0, 0, 0, 0, 0, 0b01100, 0b01100],
        '(' => [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010],
        ')' => [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000],
        _ => [0; 7],
    }
}
