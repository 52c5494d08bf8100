#!/usr/bin/env python3
"""Parity fixtures for the multi-layer engine (`Upscaler::from_model`), computed with PyTorch.

Run from the repository root:

    /work/venv/bin/python scripts/make_model_fixtures.py      # writes tests/fixtures/models/*.json

Each file holds one model (in the model JSON format, through `scripts/models.py`'s `to_json`) and a few cases:
an input image and PyTorch's output for it, `models.upscale_image`:

    x   = img.astype(float32) / maxv                 (maxv 255 or 65535), gray expanded to RGB
    y   = model(x)                                   (the layer list; + nearest(x) when residual == "nearest")
    out = round(clamp(y, 0, 1) * maxv)               float32 throughout; alpha upscaled nearest-neighbour, kept

Samples are hex strings of little-endian u8/u16, interleaved like the crate's `engine::Image`.

The random models are seeded (numpy default_rng) and cover every op: conv2d k 1/3/5/7/9, relu, tanh, leaky_relu,
prelu of length 1 and of length C (also after the last conv), residual none and nearest, r = 2, 3, 4, a model
that is a single conv (the single-layer engine) and one with wide layers (several column tiles). Images: odd
sizes, RGB/RGBA/gray/gray+alpha, 8 and 16 bits, wider than a column tile, many bands tall.

`--builtin` also writes one fixture per model found in `models/*.json` (the built-in models), on a photo-like
image, named `builtin_<name>.json`.
"""

import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402  (scripts/models.py)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "models")


def conv(g, cout, cin, k, bias_shift=0.0):
    bound = 1.5 / np.sqrt(cin * k * k)
    return {"op": "conv2d",
            "weight": g.uniform(-bound, bound, (cout, cin, k, k)).astype(np.float32),
            "bias": (g.uniform(-0.2, 0.2, cout) + bias_shift).astype(np.float32)}


def act(g, name, channels):
    if name == "relu":
        return {"op": "relu"}
    if name == "tanh":
        return {"op": "tanh"}
    if name == "leaky":
        return {"op": "leaky_relu", "negative_slope": 0.05}
    if name == "prelu1":
        return {"op": "prelu", "weight": np.array([0.25], dtype=np.float32)}
    return {"op": "prelu", "weight": g.uniform(-0.5, 0.5, channels).astype(np.float32)}


def random_model(name, seed, r, hidden, last_k, residual, last_act=None):
    """hidden: [(out channels, k, activation)]; the last conv has 3r^2 outputs."""
    g = np.random.default_rng(seed)
    layers, ch = [], 3
    for cout, k, a in hidden:
        layers.append(conv(g, cout, ch, k))
        layers.append(act(g, a, cout))
        ch = cout
    # Without the residual, centre the output in [0, 1] so that few samples clamp.
    layers.append(conv(g, 3 * r * r, ch, last_k, bias_shift=0.0 if residual == "nearest" else 0.5))
    if last_act:
        layers.append(act(g, last_act, 3 * r * r))
    layers.append({"op": "pixel_shuffle", "upscale_factor": r})
    return models.build(layers, r, residual, name=name, description="random test model",
                        training={"seed": seed, "note": "random weights for parity tests"})


def image(g, w, h, channels, depth, smooth=True):
    """Random image; `smooth` mixes a gradient in so that values are not all noise."""
    maxv = 255 if depth == 8 else 65535
    noise = g.uniform(0, 1, (h, w, channels))
    if smooth:
        yy, xx = np.mgrid[0:h, 0:w]
        grad = ((xx / max(w - 1, 1) + yy / max(h - 1, 1)) / 2)[:, :, None]
        noise = 0.6 * grad + 0.4 * noise
    img = np.round(noise * maxv).astype(np.uint8 if depth == 8 else np.uint16)
    return img[:, :, 0] if channels == 1 else img


def hexs(a):
    a = np.ascontiguousarray(a)
    return a.astype("<u2").tobytes().hex() if a.dtype == np.uint16 else a.tobytes().hex()


def case(model, img, label):
    out = models.upscale_image(model, img)
    h, w = img.shape[:2]
    c = 1 if img.ndim == 2 else img.shape[2]
    return {"label": label, "width": w, "height": h, "channels": c, "bit_depth": 8 if img.dtype == np.uint8 else 16,
            "out_width": out.shape[1], "out_height": out.shape[0], "out_channels": out.shape[2],
            "input": hexs(img), "expected": hexs(out)}


def write(name, model, cases):
    doc = {"model": json.loads(models.to_json(model)), "cases": cases}
    path = os.path.join(OUT, f"{name}.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"{path}: {len(cases)} cases, {os.path.getsize(path) / 1e3:.0f} kB")


def random_fixtures():
    g = np.random.default_rng(2026)
    specs = [
        # name, seed, r, hidden, last k, residual, last activation, images (w, h, channels, depth)
        ("espcn_x2_tanh_nearest", 1, 2, [(32, 5, "tanh"), (16, 3, "tanh")], 3, "nearest", None,
         [(67, 45, 3, 8), (23, 301, 3, 8), (33, 29, 4, 8), (19, 23, 1, 16)]),
        ("k7_relu_k1_prelu1_x3", 2, 3, [(8, 7, "relu"), (6, 1, "prelu1")], 3, "none", None,
         [(31, 27, 3, 8), (17, 15, 2, 8), (13, 11, 4, 16)]),
        ("k9_leaky_preluC_last_x4", 3, 4, [(10, 9, "leaky")], 3, "nearest", "preluC",
         [(21, 19, 3, 8), (11, 13, 4, 16)]),
        ("wide_tiles_x2", 4, 2, [(96, 3, "relu"), (64, 3, "tanh")], 3, "nearest", None,
         [(701, 9, 3, 8)]),
        ("k5_tanh_k1_x2_none", 5, 2, [(16, 5, "tanh")], 1, "none", None,
         [(37, 41, 3, 16), (29, 31, 4, 16), (41, 37, 3, 8)]),
        ("deep_mixed_x3", 6, 3, [(12, 3, "preluC"), (12, 3, "leaky"), (12, 5, "relu"), (12, 3, "tanh")], 3,
         "nearest", None, [(25, 23, 1, 8), (27, 21, 2, 8)]),
        ("one_conv_nearest_x2", 7, 2, [], 3, "nearest", None, [(45, 33, 3, 8), (15, 17, 4, 16)]),
        ("one_conv_none_k5_x3", 8, 3, [], 5, "none", None, [(29, 25, 3, 8), (19, 17, 4, 8)]),
        ("relu_last_x4_none", 9, 4, [(20, 3, "relu")], 3, "none", "relu", [(19, 21, 3, 8)]),
    ]
    for name, seed, r, hidden, last_k, residual, last_act, imgs in specs:
        model = random_model(name, seed, r, hidden, last_k, residual, last_act)
        cases = [case(model, image(g, w, h, c, d), f"{w}x{h}x{c}_{d}bit") for w, h, c, d in imgs]
        write(name, model, cases)


def builtin_fixtures():
    g = np.random.default_rng(7)
    paths = sorted(glob.glob(os.path.join(ROOT, "models", "*.json")))
    if not paths:
        print("no models/*.json yet: no built-in fixtures written")
    for p in paths:
        model = models.load_json(p)
        imgs = [image(g, 61, 47, 3, 8), image(g, 23, 29, 4, 8)]
        cases = [case(model, im, f"{im.shape[1]}x{im.shape[0]}") for im in imgs]
        write(f"builtin_{os.path.splitext(os.path.basename(p))[0]}", model, cases)


def main(argv):
    os.makedirs(OUT, exist_ok=True)
    if "--builtin" in argv:
        builtin_fixtures()
        return 0
    random_fixtures()
    builtin_fixtures()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
