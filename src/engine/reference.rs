//! The scalar reference forward pass: a direct transcription of docs/MATHS.md (Conv2d with zero padding k/2, then
//! PixelShuffle, then `round(clamp(y, 0, 1) * max)`), one output value at a time, taps skipped outside the image.
//! Slow and obviously correct; the tests compare the fast core with it. [`upscale_model`] does the same for a
//! whole [`Model`].

use super::image::{output_dims, Image, Samples};
use crate::kernel::{Kernel, IN_CHANNELS};
use crate::model::{Layer, Model, Residual};

/// Upscale `img` with `kernel` the slow, obvious way. Output has 3 or 4 channels and the input's bit depth.
///
/// Panics if the output dimensions overflow u32.
pub fn upscale(kernel: &Kernel, img: &Image) -> Image {
    let r = kernel.scale() as usize;
    let k = kernel.kernel_size() as usize;
    let p = k / 2;
    let (w, h) = (img.width as usize, img.height as usize);
    let (ow, oh) = output_dims(img.width, img.height, kernel.scale()).expect("output dims overflow");
    let ic = img.channels as usize;
    let oc = img.out_channels() as usize;
    let max = if img.bit_depth() == 8 { 255.0f32 } else { 65535.0f32 };
    let get = |x: usize, y: usize, c: usize| -> f32 {
        let idx = (y * w + x) * ic + c;
        match &img.samples {
            Samples::U8(s) => s[idx] as f32 / 255.0,
            Samples::U16(s) => s[idx] as f32 / 65535.0,
        }
    };
    // Grayscale is expanded to RGB before the convolution.
    let color = |x: usize, y: usize, c: usize| -> f32 {
        if ic <= 2 {
            get(x, y, 0)
        } else {
            get(x, y, c)
        }
    };
    let cout = kernel.bias_flat().len();
    let mut out = vec![0f32; ow as usize * oh as usize * oc];
    let ow = ow as usize;
    for y in 0..h {
        for x in 0..w {
            for o in 0..cout {
                let mut acc = kernel.bias_flat()[o];
                for i in 0..IN_CHANNELS {
                    for dy in 0..k {
                        let yy = y as isize + dy as isize - p as isize;
                        if yy < 0 || yy >= h as isize {
                            continue;
                        }
                        for dx in 0..k {
                            let xx = x as isize + dx as isize - p as isize;
                            if xx < 0 || xx >= w as isize {
                                continue;
                            }
                            acc += kernel.weight_flat()[((o * IN_CHANNELS + i) * k + dy) * k + dx]
                                * color(xx as usize, yy as usize, i);
                        }
                    }
                }
                // PixelShuffle: out[c, h*r+i, w*r+j] = in[c*r*r + i*r + j, h, w].
                let c = o / (r * r);
                let (si, sj) = ((o % (r * r)) / r, o % r);
                out[((y * r + si) * ow + x * r + sj) * oc + c] = (acc.clamp(0.0, 1.0) * max).round_ties_even();
            }
            if oc == 4 {
                // Alpha is not convolved: nearest-neighbour, value kept.
                let a = (get(x, y, ic - 1) * max).round_ties_even();
                for si in 0..r {
                    for sj in 0..r {
                        out[((y * r + si) * ow + x * r + sj) * oc + 3] = a;
                    }
                }
            }
        }
    }
    let samples = match img.samples {
        Samples::U8(_) => Samples::U8(out.iter().map(|&f| f as u8).collect()),
        Samples::U16(_) => Samples::U16(out.iter().map(|&f| f as u16).collect()),
    };
    Image { width: ow as u32, height: oh, channels: oc as u8, samples }
}

/// Runs `model` on `img` the slow, obvious way, in f32: each conv as `bias + sum over (input channel, dy, dx)`
/// with taps outside the image skipped (zero padding), the activations with `f32` library functions, then the pixel
/// shuffle, the nearest residual (`y + x`), `round_ties_even(clamp(y, 0, 1) * max)`, alpha nearest-neighbour.
///
/// Panics if the output dimensions overflow u32.
pub fn upscale_model(model: &Model, img: &Image) -> Image {
    let r = model.scale() as usize;
    let (w, h) = (img.width as usize, img.height as usize);
    let (ow, oh) = output_dims(img.width, img.height, model.scale()).expect("output dims overflow");
    let ic = img.channels as usize;
    let oc = img.out_channels() as usize;
    let max = if img.bit_depth() == 8 { 255.0f32 } else { 65535.0f32 };
    let get = |i: usize| -> f32 {
        match &img.samples {
            Samples::U8(s) => s[i] as f32 / 255.0,
            Samples::U16(s) => s[i] as f32 / 65535.0,
        }
    };
    // Planar [c][y][x].
    let mut x: Vec<f32> = vec![0.0; 3 * w * h];
    for c in 0..3 {
        for p in 0..w * h {
            x[c * w * h + p] = get(p * ic + if ic <= 2 { 0 } else { c });
        }
    }
    let input = x.clone();
    let mut ch = 3;
    for layer in model.layers() {
        match layer {
            Layer::Conv2d(conv) => {
                let (k, cout) = (conv.kernel_size(), conv.out_channels());
                let p = (k / 2) as isize;
                let wt = conv.weight();
                let mut y = vec![0f32; cout * w * h];
                for o in 0..cout {
                    for yy in 0..h {
                        for xx in 0..w {
                            let mut acc = conv.bias()[o];
                            for i in 0..ch {
                                for dy in 0..k {
                                    let sy = yy as isize + dy as isize - p;
                                    if sy < 0 || sy >= h as isize {
                                        continue;
                                    }
                                    for dx in 0..k {
                                        let sx = xx as isize + dx as isize - p;
                                        if sx < 0 || sx >= w as isize {
                                            continue;
                                        }
                                        acc += wt[[o, i, dy, dx]] * x[(i * h + sy as usize) * w + sx as usize];
                                    }
                                }
                            }
                            y[(o * h + yy) * w + xx] = acc;
                        }
                    }
                }
                x = y;
                ch = cout;
            }
            Layer::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
            Layer::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
            Layer::LeakyRelu { negative_slope } => {
                x.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { *v * negative_slope })
            }
            Layer::Prelu { weight } => {
                for (i, v) in x.iter_mut().enumerate() {
                    let s = if weight.len() == 1 { weight[0] } else { weight[i / (w * h)] };
                    *v = if *v > 0.0 { *v } else { *v * s };
                }
            }
            Layer::PixelShuffle { .. } => {}
        }
    }
    let ow = ow as usize;
    let mut out = vec![0f32; ow * oh as usize * oc];
    for c in 0..3 {
        for yy in 0..h {
            for xx in 0..w {
                for si in 0..r {
                    for sj in 0..r {
                        let o = c * r * r + si * r + sj;
                        let mut v = x[(o * h + yy) * w + xx];
                        if model.residual() == Residual::Nearest {
                            v += input[(c * h + yy) * w + xx];
                        }
                        out[((yy * r + si) * ow + xx * r + sj) * oc + c] = (v.clamp(0.0, 1.0) * max).round_ties_even();
                    }
                }
            }
        }
    }
    if oc == 4 {
        for yy in 0..h {
            for xx in 0..w {
                let a = (get((yy * w + xx) * ic + ic - 1) * max).round_ties_even();
                for si in 0..r {
                    for sj in 0..r {
                        out[((yy * r + si) * ow + xx * r + sj) * oc + 3] = a;
                    }
                }
            }
        }
    }
    let samples = match img.samples {
        Samples::U8(_) => Samples::U8(out.iter().map(|&f| f as u8).collect()),
        Samples::U16(_) => Samples::U16(out.iter().map(|&f| f as u16).collect()),
    };
    Image { width: ow as u32, height: oh, channels: oc as u8, samples }
}
