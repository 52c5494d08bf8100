#!/usr/bin/env python3
"""Parity fixtures for icnr-upscale, computed with PyTorch.

Run from the repository root with a Python that has torch, numpy and safetensors:

    python scripts/make_fixtures.py            # writes tests/fixtures/

For every case it records the kernel (in the crate's kernel JSON format, weight nested exactly like
`conv.weight.tolist()`), the input image, and the expected output

    x   = img.float() / 255            (16-bit: / 65535), gray expanded to RGB
    y   = F.pixel_shuffle(F.conv2d(x, W, b, padding=k // 2), r)
    out = torch.round(torch.clamp(y, 0, 1) * 255)      (16-bit: * 65535), float32 throughout

with alpha (RGBA / gray+alpha inputs) upscaled nearest-neighbour and kept, plus the checkerboard score of that
output (the definition in src/score.rs, numpy float64, population std), the exact (float64) value before rounding, PyTorch's own
float32 error against it, and how often PyTorch agrees with itself when the sum is formed in another order. Samples are hex strings of little-endian u8/u16,
interleaved like the crate's `engine::Image`. It also writes safetensors files from `conv.state_dict()`
(plain keys, a `up.0.` prefix, f16 and bf16) and the f32 values torch holds for them (safetensors.json).

Everything is seeded (numpy default_rng and torch.manual_seed), so re-running gives the same files.

It also writes `tests/fixtures/range/` (read by `tests/parity_range.rs`): cases across the documented range (r up to
8, k up to 9, conv rows wider than one block of kernel work, images many bands tall, RGBA and gray+alpha with alpha
compared exactly, 16-bit), kept small:
- the weights are not stored: they are dyadic numbers from a xorshift64* stream that the test regenerates bit for
  bit (`range_kernel`), uniform in +-2^e with 2^e near PyTorch's default bound 1/sqrt(fan_in), bias 0.5 + the same;
  ICNR cases tie one sub-kernel and bias per colour with repeat_interleave;
- the expected output is not stored either: for each output row, the FNV-1a 64 hash of its little-endian samples
  after zeroing the "ambiguous" samples, those whose exact (float64) value lies within `delta` of a rounding boundary
  `lower + 0.5` (delta = 4 x PyTorch's own float32 error on the case, at least 0.001 LSB); they are listed as
  [index, lower] and may be lower or lower + 1 (PyTorch's is one of them). A correct float32 implementation rounds
  every other sample exactly as PyTorch does. For tied (ICNR) cases, whose r x r blocks are uniform, an entry is a
  conv value and stands for its whole block.
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
RANGE_OUT = os.path.join(OUT, "range")

# name, scale r, kernel size k, weights ("default" = nn.Conv2d init, "icnr" = kaiming_normal sub-kernel tied with
# repeat_interleave and zero bias), channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), bit depth, width, height
CASES = [
    ("r2_k3_default_rgb8_17x13", 2, 3, "default", 3, 8, 17, 13),
    ("r2_k3_icnr_rgba8_17x13", 2, 3, "icnr", 4, 8, 17, 13),
    ("r2_k1_default_gray8_9x11", 2, 1, "default", 1, 8, 9, 11),
    ("r3_k5_default_rgb16_9x11", 3, 5, "default", 3, 16, 9, 11),
    ("r3_k1_icnr_rgba16_9x11", 3, 1, "icnr", 4, 16, 9, 11),
    ("r3_k3_default_graya16_11x9", 3, 3, "default", 2, 16, 11, 9),
    ("r4_k3_default_rgba8_9x11", 4, 3, "default", 4, 8, 9, 11),
    ("r4_k5_icnr_rgb16_17x13", 4, 5, "icnr", 3, 16, 17, 13),
    ("r4_k1_default_rgb8_13x7", 4, 1, "default", 3, 8, 13, 7),
    ("r2_k5_default_rgb16_17x13", 2, 5, "default", 3, 16, 17, 13),
]


def make_conv(r, k, weights, seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 3 * r * r, k, padding=k // 2)  # PyTorch default init
    if weights == "icnr":
        w0 = torch.empty(3, 3, k, k)
        nn.init.kaiming_normal_(w0)
        with torch.no_grad():
            conv.weight.copy_(w0.repeat_interleave(r * r, dim=0))
            conv.bias.zero_()
    return conv


def make_image(rng, w, h, channels, bits):
    """A smooth gradient plus noise, so outputs are neither all clamped nor all noise."""
    maxv = (1 << bits) - 1
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.empty((h, w, channels))
    for c in range(channels):
        fx, fy, ph = rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.6), rng.uniform(0, 6.3)
        base = 0.5 + 0.35 * np.sin(fx * xx + fy * yy + ph)
        img[:, :, c] = np.clip(base + rng.normal(0, 0.15, (h, w)), 0, 1)
    img = np.round(img * maxv)
    # A few exact extremes.
    img[0, 0, :] = 0
    img[-1, -1, :] = maxv
    return img.astype(np.uint8 if bits == 8 else np.uint16)


def checkerboard_score(out, r, maxv):
    """The checkerboard score of src/score.rs: out is [H, W, C] with C 3 or 4; alpha excluded."""
    y = out[:, :, :3].astype(np.float64).transpose(2, 0, 1) / maxv
    m = np.array([[[y[c, i::r, j::r].mean() for j in range(r)] for i in range(r)] for c in range(3)])
    mbar = m.mean(axis=(1, 2), keepdims=True)
    num = np.sqrt(np.mean((m - mbar) ** 2))
    den = np.mean([y[c].std() for c in range(3)]) + 1e-12
    return float(num / den)


def forward(img, conv, r, k, bits):
    """Returns (expected output [H, W, C] as uint, the exact pre-rounding value of the colour channels in float64
    [H, W, 3], PyTorch's float32 error against it in LSB, and how often two float32 PyTorch formulations agree)."""
    maxv = float((1 << bits) - 1)
    h, w, ch = img.shape
    color = img[:, :, :1].repeat(3, axis=2) if ch <= 2 else img[:, :, :3]
    x = torch.from_numpy(color.astype(np.float32)).permute(2, 0, 1).unsqueeze(0) / maxv
    with torch.no_grad():
        y = F.pixel_shuffle(F.conv2d(x, conv.weight, conv.bias, padding=k // 2), r)
        pre = torch.clamp(y, 0, 1) * maxv
        out = torch.round(pre)
        # The same conv in float64 (x is the float32 x, widened): the value float32 arithmetic approximates.
        y64 = F.pixel_shuffle(F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=k // 2), r)
        pre64 = torch.clamp(y64, 0, 1) * maxv
        # Another float32 formulation (unfold + matmul): how far PyTorch agrees with itself after rounding.
        cols = F.unfold(x, k, padding=k // 2)[0]
        y2 = (conv.weight.reshape(conv.weight.shape[0], -1) @ cols + conv.bias[:, None]).reshape(1, -1, h, w)
        out2 = torch.round(torch.clamp(F.pixel_shuffle(y2, r), 0, 1) * maxv)
    f32_err = float((pre.double() - pre64).abs().max())
    self_agreement = float((out == out2).double().mean())
    pre64 = pre64[0].permute(1, 2, 0).numpy()
    out = out[0].permute(1, 2, 0).numpy()
    if ch in (2, 4):
        alpha = img[:, :, ch - 1].repeat(r, axis=0).repeat(r, axis=1).astype(np.float32)
        out = np.concatenate([out, alpha[:, :, None]], axis=2)
    return out.astype(np.uint8 if bits == 8 else np.uint16), pre64, f32_err, self_agreement


def kernel_json(conv, r, k):
    return {
        "scale": r,
        "kernel_size": k,
        "in_channels": 3,
        "out_channels": 3 * r * r,
        "weight": conv.weight.detach().tolist(),
        "bias": conv.bias.detach().tolist(),
    }


def hexle(a):
    return a.astype(a.dtype.newbyteorder("<")).tobytes().hex()


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261128)
    index = []
    for n, (name, r, k, weights, ch, bits, w, h) in enumerate(CASES):
        conv = make_conv(r, k, weights, 1000 + n)
        img = make_image(rng, w, h, ch, bits)
        out, pre64, f32_err, self_agreement = forward(img, conv, r, k, bits)
        assert out.shape == (h * r, w * r, 4 if ch in (2, 4) else 3)
        case = {
            "name": name,
            "scale": r,
            "kernel_size": k,
            "weights": weights,
            "width": w,
            "height": h,
            "channels": ch,
            "bit_depth": bits,
            "out_width": w * r,
            "out_height": h * r,
            "out_channels": out.shape[2],
            "score": checkerboard_score(out, r, (1 << bits) - 1),
            "kernel": kernel_json(conv, r, k),
            "input": hexle(img),
            "expected": hexle(out),
            # clamp(y, 0, 1) * max in float64 for the colour channels ([H, W, 3] little-endian f64): a correct
            # float32 implementation rounds a value within a few float32 errors of it.
            "exact_prerounding_f64": hexle(pre64.astype(np.float64)),
            "torch_f32_error_lsb": f32_err,
            "torch_self_agreement": self_agreement,
        }
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(case, f, separators=(",", ":"))
            f.write("\n")
        index.append(name)
        print(
            f"{name}: score {case['score']:.6f}, torch f32 error {f32_err:.4f} LSB, "
            f"torch conv2d vs unfold+matmul exact {self_agreement:.4%}",
            file=sys.stderr,
        )

    # safetensors as written by safetensors.torch.save_file(conv.state_dict(), path).
    st = {}
    conv = make_conv(2, 3, "default", 77)
    variants = [
        ("conv_f32.safetensors", conv.state_dict()),
        ("conv_prefix_f32.safetensors", {"up.0." + key: v for key, v in conv.state_dict().items()}),
        ("conv_f16.safetensors", {key: v.half() for key, v in conv.state_dict().items()}),
        ("conv_bf16.safetensors", {key: v.bfloat16() for key, v in conv.state_dict().items()}),
    ]
    # The prefixed variant really comes from a module tree, like a model's state_dict.
    tree = nn.Module()
    tree.up = nn.Sequential(conv)
    assert sorted(tree.state_dict().keys()) == sorted(variants[1][1].keys())
    conv3 = make_conv(3, 5, "icnr", 78)
    variants.append(("conv_icnr_r3_k5_f32.safetensors", conv3.state_dict()))
    for fname, sd in variants:
        sd = {key: v.detach().contiguous() for key, v in sd.items()}
        save_file(sd, os.path.join(OUT, fname))
        wkey = [key for key in sd if key.endswith("weight")][0]
        bkey = [key for key in sd if key.endswith("bias")][0]
        st[fname] = {
            "dtype": str(sd[wkey].dtype).replace("torch.", ""),
            "shape": list(sd[wkey].shape),
            "weight": sd[wkey].float().flatten().tolist(),
            "bias": sd[bkey].float().tolist(),
        }
    with open(os.path.join(OUT, "safetensors.json"), "w") as f:
        json.dump(st, f, separators=(",", ":"))
        f.write("\n")
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump({"torch": torch.__version__, "numpy": np.__version__, "cases": index}, f, indent=1)
        f.write("\n")


# ---- the range set (tests/fixtures/range/) ----------------------------------------------------------------------

# name, r, k, weights, channels, bit depth, width, height. Output bands are BAND_OUT_BYTES = 192 KiB of output rows
# (src/engine/band.rs), so with r = 8 and RGBA the bands are a few input rows tall; kernels work on blocks of up to
# 128 conv pixels a row (8 vectors of 16 lanes), so rows wider than that cross blocks and end ragged.
RANGE_CASES = [
    ("r8_k9_default_rgba8_72x40", 8, 9, "default", 4, 8, 72, 40),  # general path, 576-pixel rows, 4 bands
    ("r8_k9_icnr_rgba8_150x20", 8, 9, "icnr", 4, 8, 150, 20),  # fast path over 150 > 128 pixels, 4 bands
    ("r8_k3_icnr_gray8_96x300", 8, 3, "icnr", 1, 8, 96, 300),  # 30 bands (more than 16 a thread)
    ("r8_k3_icnr_gray16_96x170", 8, 3, "icnr", 1, 16, 96, 170),  # 34 bands: more than one group of 2 x 16
    ("r8_k5_default_rgba16_12x9", 8, 5, "default", 4, 16, 12, 9),
    ("r5_k7_default_rgb8_61x37", 5, 7, "default", 3, 8, 61, 37),
    ("r6_k9_icnr_rgb16_45x30", 6, 9, "icnr", 3, 16, 45, 30),
    ("r7_k9_default_graya8_33x29", 7, 9, "default", 2, 8, 33, 29),
    ("r3_k9_default_rgb16_140x3", 3, 9, "default", 3, 16, 140, 3),
    ("r2_k9_default_rgb8_131x9", 2, 9, "default", 3, 8, 131, 9),
    ("r4_k9_default_rgb8_3x2", 4, 9, "default", 3, 8, 3, 2),  # smaller than the kernel
    ("r8_k1_icnr_rgba16_17x5", 8, 1, "icnr", 4, 16, 17, 5),
    ("r6_k7_icnr_rgba8_135x11", 6, 7, "icnr", 4, 8, 135, 11),
]

MASK64 = (1 << 64) - 1


def xorshift64star(seed):
    """The generator `tests/parity_range.rs` reimplements: xorshift64* (Vigna), 24-bit outputs."""
    x = seed & MASK64 or 1
    while True:
        x ^= x >> 12
        x ^= (x << 25) & MASK64
        x ^= x >> 27
        yield ((x * 0x2545F4914F6CDD1D) & MASK64) >> 40


def range_kernel(r, k, tied, seed):
    """Weight [3r^2, 3, k, k] and bias [3r^2], float64 arrays of values exact in float32: (v - 2^23) * 2^(e - 23)
    with v the generator's 24-bit outputs and 2^e the power of two nearest 1/sqrt(3 k^2); bias
    0.5 + ((v >> s) - 2^(23 - s)) * 2^-24 with s = -1 - e (also within +-2^e of 0.5).
    Tied: one sub-kernel and bias per colour, drawn first, repeated r^2 times (repeat_interleave)."""
    e = round(np.log2(1.0 / np.sqrt(3 * k * k)))
    g = xorshift64star(seed)
    step = 2.0 ** (e - 23)
    groups = 3 if tied else 3 * r * r
    w = np.array([(next(g) - (1 << 23)) * step for _ in range(groups * 3 * k * k)]).reshape(groups, 3, k, k)
    # The bias near 0.5 (where float32's step is 2^-24 or 2^-25) in steps of 2^-24 over the same +-2^e.
    s = -1 - e
    assert s >= 0
    b = np.array([0.5 + ((next(g) >> s) - (1 << (23 - s))) * 2.0**-24 for _ in range(groups)])
    if tied:
        w = np.repeat(w, r * r, axis=0)
        b = np.repeat(b, r * r, axis=0)
    return w, b, e


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return h


def range_main():
    os.makedirs(RANGE_OUT, exist_ok=True)
    rng = np.random.default_rng(20261201)
    index = []
    for n, (name, r, k, weights, ch, bits, w, h) in enumerate(RANGE_CASES):
        seed = 0x1C4E_0000 + n
        wt, bs, e = range_kernel(r, k, weights == "icnr", seed)
        conv = nn.Conv2d(3, 3 * r * r, k, padding=k // 2)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(wt.astype(np.float32)))
            conv.bias.copy_(torch.from_numpy(bs.astype(np.float32)))
        assert np.array_equal(conv.weight.detach().double().numpy(), wt)
        assert np.array_equal(conv.bias.detach().double().numpy(), bs)
        img = make_image(rng, w, h, ch, bits)
        out, pre64, f32_err, _ = forward(img, conv, r, k, bits)
        oh, ow, oc = out.shape
        assert (oh, ow) == (h * r, w * r)
        delta = max(4.0 * f32_err, 1e-3)
        tied = weights == "icnr"
        # Tied kernels give r x r blocks of one value: ambiguity is decided once per block (conv value).
        vals = pre64.reshape(h, r, w, r, 3)[:, 0, :, 0, :] if tied else pre64
        if tied:
            assert np.array_equal(np.broadcast_to(vals[:, None, :, None, :], (h, r, w, r, 3)).reshape(pre64.shape), pre64)
        amb = np.abs(vals - (np.floor(vals) + 0.5)) <= delta  # within delta of an x.5 rounding boundary
        flat = out.reshape(-1).copy()
        vw = vals.shape[1]
        ambiguous = []
        for y, x, c in zip(*np.nonzero(amb)):
            lower = int(np.rint(vals[y, x, c] - 0.5))  # the allowed values are lower and lower + 1
            ys, xs = ([y * r + i for i in range(r)], [x * r + j for j in range(r)]) if tied else ([y], [x])
            for oy in ys:
                for ox in xs:
                    i = (int(oy) * ow + int(ox)) * oc + int(c)
                    assert flat[i] in (lower, lower + 1), (name, oy, ox, c, flat[i], vals[y, x, c])
                    flat[i] = 0
            # Tied: the conv value's index ((y * width + x) * 3 + c); else the output sample's own index.
            ambiguous.append([(int(y) * vw + int(x)) * 3 + int(c) if tied else i, lower])
        le = flat.astype(np.dtype(flat.dtype).newbyteorder("<")).reshape(oh, -1)
        row_hashes = [f"{fnv1a64(row.tobytes()):016x}" for row in le]
        case = {
            "name": name,
            "scale": r,
            "kernel_size": k,
            "weights": weights,
            "width": w,
            "height": h,
            "channels": ch,
            "bit_depth": bits,
            "out_width": ow,
            "out_height": oh,
            "out_channels": oc,
            "kernel_seed": seed,
            "kernel_exponent": e,
            "torch_f32_error_lsb": f32_err,
            "delta_lsb": delta,
            "input": hexle(img),
            # [index, lower]: the output sample `index` (interleaved, out_channels a pixel) or, tied, the r x r block
            # of conv value `index` = (y * width + x) * 3 + c,
            # whose exact value is within delta of lower + 0.5: it may be lower or lower + 1.
            "ambiguous_per_block": tied,
            "ambiguous": ambiguous,
            "row_hashes": row_hashes,
        }
        with open(os.path.join(RANGE_OUT, name + ".json"), "w") as f:
            json.dump(case, f, separators=(",", ":"))
            f.write("\n")
        index.append(name)
        print(
            f"range/{name}: torch f32 error {f32_err:.4f} LSB, {len(ambiguous)} ambiguous {'blocks' if tied else 'samples'}"
            f" of {amb.size} ({len(ambiguous) / amb.size:.3%})",
            file=sys.stderr,
        )
    with open(os.path.join(RANGE_OUT, "index.json"), "w") as f:
        json.dump({"torch": torch.__version__, "numpy": np.__version__, "cases": index}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--range-only"]:
        range_main()
    else:
        main()
        range_main()
