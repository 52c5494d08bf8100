#!/usr/bin/env python3
"""PyTorch reference for icnr-upscale's model files: the JSON model format and its safetensors twin.

A model is a plain list of layers run in order on an RGB float32 image `x` of shape [N, 3, H, W]:

    y = body(x)                                         # the layer list, ending in pixel_shuffle(r)
    y = y + F.interpolate(x, scale_factor=r, mode="nearest")   # only when residual == "nearest"
    out = round_ties_even(clamp(y, 0, 1) * 255)         # or * 65535 for 16-bit images

JSON model file
---------------
    {"name": "espcn-x2", "scale": 2, "residual": "nearest",
     "layers": [{"op": "conv2d", "weight": [[[[0.1, ...]]]], "bias": [0.0, ...]},
                {"op": "tanh"},
                {"op": "conv2d", "weight": ..., "bias": ...},
                {"op": "pixel_shuffle", "upscale_factor": 2}],
     "description": "...", "training": {...free-form provenance...}}

Layer ops:
- "conv2d": "weight" is PyTorch's `weight.tolist()`, shape [out, in, k, k], k odd, stride 1, zero padding k//2,
  cross-correlation (no flip). "bias" (length out) is optional: absent means zeros.
- "relu", "tanh": no parameters.
- "leaky_relu": "negative_slope" (number; PyTorch default 0.01 when absent).
- "prelu": "weight" is a list of length 1 (one slope shared by all channels) or of length C (the channel count of
  the preceding conv); y = x if x >= 0 else weight[c] * x.
- "pixel_shuffle": "upscale_factor" r: out[c, h*r+i, w*r+j] = in[c*r*r + i*r + j, h, w] (ONNX DepthToSpace CRD).
Structure rules (checked by `SRModel`): the first conv takes 3 channels; each conv's input channel count equals the
previous conv's output count; "pixel_shuffle" is the last op and appears once; the conv before it has 3*r^2
outputs; "scale" == r. "residual" is "none" or "nearest" (absent means "none").
Numbers: weights are float32; `to_json` prints each as the shortest decimal that reads back (decimal -> float64 ->
float32) to the same float32, with no spaces inside the weight arrays, one layer per line.

Image values: 8-bit input v -> v/255 (16-bit: v/65535) in float32; gray is expanded to RGB (all three channels get
the gray value) and the output is RGB; alpha is not convolved: it is upscaled nearest-neighbour with its value kept.

safetensors model file
----------------------
Tensors: the model's `state_dict()`, all float32, named by the position of the layer in the list:
`body.N.weight` ([out, in, k, k]) and `body.N.bias` ([out], only when the conv has a bias) for a conv2d at index N,
`body.N.weight` ([1] or [C]) for a prelu at index N. Layers without parameters have no tensors.
Metadata (the safetensors header's "__metadata__", string -> string) has one key, "icnr_upscale_model", whose value is
a JSON string of the model without its weights:

    {"name": "espcn-x2", "scale": 2, "residual": "nearest",
     "layers": [{"op": "conv2d", "in_channels": 3, "out_channels": 32, "kernel_size": 5,
                 "weight": "body.0.weight", "bias": "body.0.bias"},
                {"op": "tanh"},
                ...,
                {"op": "leaky_relu", "negative_slope": 0.01},
                {"op": "prelu", "num_parameters": 1, "weight": "body.3.weight"},
                {"op": "pixel_shuffle", "upscale_factor": 2}],
     "description": "...", "training": {...}}

i.e. exactly the JSON model with every tensor replaced by the name of its state_dict entry (a conv without bias has
`"bias": null`), and conv2d/prelu entries also giving their shapes (in_channels, out_channels, kernel_size;
num_parameters). Key order is as shown; a reader must not depend on it.

CLI: `python scripts/models.py --self-test` checks the round trips JSON -> torch -> JSON and
safetensors -> torch -> safetensors (byte-exact), and the forward pass against PixelShuffle/ICNR identities;
`python scripts/models.py --to-safetensors in.json out.safetensors`; `--to-json in.safetensors out.json`.
"""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

METADATA_KEY = "icnr_upscale_model"
ACTIVATIONS = ("relu", "tanh", "leaky_relu", "prelu")


class SRModel(nn.Module):
    """A sub-pixel upscaler built from the JSON layer list (see the module docstring)."""

    def __init__(self, layers, scale, residual="none", name="model", description="", training=None):
        super().__init__()
        if residual not in ("none", "nearest"):
            raise ValueError(f"residual must be 'none' or 'nearest', got {residual!r}")
        self.name = name
        self.scale = int(scale)
        self.residual = residual
        self.description = description
        self.training_info = training if training is not None else {}
        mods = []
        self.spec = []  # per layer: dict of the non-tensor parameters
        ch = 3
        last_conv_out = None
        for idx, L in enumerate(layers):
            op = L["op"]
            if op == "conv2d":
                w = torch.as_tensor(np.asarray(L["weight"], dtype=np.float32))
                if w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[2] % 2 != 1:
                    raise ValueError(f"layer {idx}: conv2d weight must be [out, in, k, k] with k odd, got {tuple(w.shape)}")
                out_c, in_c, k = int(w.shape[0]), int(w.shape[1]), int(w.shape[2])
                if in_c != ch:
                    raise ValueError(f"layer {idx}: conv2d takes {in_c} channels but gets {ch}")
                has_bias = L.get("bias") is not None
                conv = nn.Conv2d(in_c, out_c, k, padding=k // 2, bias=has_bias)
                with torch.no_grad():
                    conv.weight.copy_(w)
                    if has_bias:
                        b = torch.as_tensor(np.asarray(L["bias"], dtype=np.float32))
                        if tuple(b.shape) != (out_c,):
                            raise ValueError(f"layer {idx}: bias has shape {tuple(b.shape)}, expected ({out_c},)")
                        conv.bias.copy_(b)
                mods.append(conv)
                self.spec.append({"op": "conv2d"})
                ch = out_c
                last_conv_out = out_c
            elif op == "relu":
                mods.append(nn.ReLU())
                self.spec.append({"op": "relu"})
            elif op == "tanh":
                mods.append(nn.Tanh())
                self.spec.append({"op": "tanh"})
            elif op == "leaky_relu":
                s = float(L.get("negative_slope", 0.01))
                mods.append(nn.LeakyReLU(s))
                self.spec.append({"op": "leaky_relu", "negative_slope": s})
            elif op == "prelu":
                w = torch.as_tensor(np.asarray(L["weight"], dtype=np.float32)).reshape(-1)
                if w.numel() not in (1, ch):
                    raise ValueError(f"layer {idx}: prelu has {w.numel()} slopes, expected 1 or {ch}")
                p = nn.PReLU(num_parameters=w.numel())
                with torch.no_grad():
                    p.weight.copy_(w)
                mods.append(p)
                self.spec.append({"op": "prelu"})
            elif op == "pixel_shuffle":
                r = int(L["upscale_factor"])
                if idx != len(layers) - 1:
                    raise ValueError(f"layer {idx}: pixel_shuffle must be the last op")
                if r != self.scale:
                    raise ValueError(f"pixel_shuffle upscale_factor {r} != scale {self.scale}")
                if last_conv_out != 3 * r * r or ch != 3 * r * r:
                    raise ValueError(f"the conv before pixel_shuffle must have {3 * r * r} outputs, has {ch}")
                mods.append(nn.PixelShuffle(r))
                self.spec.append({"op": "pixel_shuffle", "upscale_factor": r})
                ch = 3
            else:
                raise ValueError(f"layer {idx}: unknown op {op!r}")
        if not layers or layers[-1]["op"] != "pixel_shuffle":
            raise ValueError("the last op must be pixel_shuffle")
        self.body = nn.Sequential(*mods)

    def forward(self, x):
        y = self.body(x)
        if self.residual == "nearest":
            y = y + F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return y

    # ---- descriptions -------------------------------------------------------------------------------------------
    def layer_dicts(self, tensors_as="values"):
        """The layer list. tensors_as: "values" (numpy float32 arrays) or "names" (state_dict keys, for metadata)."""
        out = []
        for i, (m, s) in enumerate(zip(self.body, self.spec)):
            op = s["op"]
            if op == "conv2d":
                if tensors_as == "names":
                    d = {"op": "conv2d", "in_channels": m.in_channels, "out_channels": m.out_channels,
                         "kernel_size": m.kernel_size[0], "weight": f"body.{i}.weight",
                         "bias": f"body.{i}.bias" if m.bias is not None else None}
                else:
                    d = {"op": "conv2d", "weight": m.weight.detach().cpu().numpy().astype(np.float32)}
                    if m.bias is not None:
                        d["bias"] = m.bias.detach().cpu().numpy().astype(np.float32)
            elif op == "prelu":
                if tensors_as == "names":
                    d = {"op": "prelu", "num_parameters": m.num_parameters, "weight": f"body.{i}.weight"}
                else:
                    d = {"op": "prelu", "weight": m.weight.detach().cpu().numpy().astype(np.float32)}
            else:
                d = dict(s)
            out.append(d)
        return out

    def header(self):
        """Everything but the weights (the safetensors metadata object)."""
        return {"name": self.name, "scale": self.scale, "residual": self.residual,
                "layers": self.layer_dicts("names"), "description": self.description,
                "training": self.training_info}

    def sub_pixel_conv(self):
        """The conv feeding pixel_shuffle."""
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        return convs[-1]


def build(layers, scale, residual="none", name="model", description="", training=None):
    return SRModel(layers, scale, residual, name, description, training)


# ---- JSON ------------------------------------------------------------------------------------------------------
def _fmt_float(v) -> str:
    s = str(np.float32(v))  # numpy: shortest repr that round-trips the float32
    if s in ("nan", "inf", "-inf"):
        raise ValueError("non-finite weight")
    return s


def _fmt_array(a) -> str:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 1:
        return "[" + ",".join(_fmt_float(v) for v in a) + "]"
    return "[" + ",".join(_fmt_array(sub) for sub in a) + "]"


def to_json(model: SRModel) -> str:
    """The compact JSON text of `model` (one layer per line, no spaces inside weight arrays)."""
    layer_lines = []
    for d in model.layer_dicts("values"):
        parts = []
        for k, v in d.items():
            if isinstance(v, np.ndarray):
                parts.append(json.dumps(k) + ":" + _fmt_array(v))
            else:
                parts.append(json.dumps(k) + ":" + json.dumps(v))
        layer_lines.append("  {" + ",".join(parts) + "}")
    head = [
        '{"name": ' + json.dumps(model.name) + ",",
        ' "scale": ' + json.dumps(model.scale) + ",",
        ' "residual": ' + json.dumps(model.residual) + ",",
        ' "layers": [',
        ",\n".join(layer_lines),
        " ],",
        ' "description": ' + json.dumps(model.description) + ",",
        ' "training": ' + json.dumps(model.training_info, sort_keys=False),
        "}",
    ]
    return "\n".join(head) + "\n"


def from_dict(d) -> SRModel:
    return SRModel(d["layers"], d["scale"], d.get("residual", "none"), d.get("name", "model"),
                   d.get("description", ""), d.get("training", {}))


def load_json(path_or_bytes) -> SRModel:
    """Load a JSON model from a path, bytes or str."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        text = bytes(path_or_bytes).decode("utf-8")
    elif isinstance(path_or_bytes, str) and path_or_bytes.lstrip().startswith("{"):
        text = path_or_bytes
    else:
        with open(path_or_bytes, "r", encoding="utf-8") as f:
            text = f.read()
    return from_dict(json.loads(text))


def save_json(model: SRModel, path):
    with open(path, "w", encoding="utf-8") as f:
        f.write(to_json(model))


# ---- safetensors -----------------------------------------------------------------------------------------------
def _state_dict_f32(model):
    return {k: v.detach().cpu().to(torch.float32).contiguous() for k, v in model.state_dict().items()}


def metadata_json(model: SRModel) -> str:
    return json.dumps(model.header(), separators=(",", ":"))


def save_safetensors(model: SRModel, path):
    from safetensors.torch import save_file
    save_file(_state_dict_f32(model), str(path), metadata={METADATA_KEY: metadata_json(model)})


def load_safetensors(path) -> SRModel:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if METADATA_KEY not in meta:
            raise ValueError(f"{path}: no {METADATA_KEY!r} metadata")
        head = json.loads(meta[METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    layers = []
    for L in head["layers"]:
        L = dict(L)
        if L["op"] == "conv2d":
            layers.append({"op": "conv2d", "weight": tensors[L["weight"]].numpy(),
                           "bias": tensors[L["bias"]].numpy() if L.get("bias") else None})
        elif L["op"] == "prelu":
            layers.append({"op": "prelu", "weight": tensors[L["weight"]].numpy()})
        else:
            layers.append(L)
    return SRModel(layers, head["scale"], head.get("residual", "none"), head.get("name", "model"),
                   head.get("description", ""), head.get("training", {}))


def load(path) -> SRModel:
    """Load a .json or .safetensors model by extension."""
    return load_safetensors(path) if str(path).endswith(".safetensors") else load_json(path)


# ---- images ----------------------------------------------------------------------------------------------------
def forward_float(model: SRModel, rgb01: np.ndarray) -> np.ndarray:
    """HxWx3 float32 in [0,1] -> (H*r)x(W*r)x3 float32 network output before clamping."""
    x = torch.from_numpy(np.ascontiguousarray(rgb01.transpose(2, 0, 1)[None].astype(np.float32)))
    with torch.no_grad():
        y = model(x)
    return y[0].numpy().transpose(1, 2, 0)


def upscale_image(model: SRModel, img: np.ndarray) -> np.ndarray:
    """Upscale a uint8/uint16 image (HxW gray, HxWx2 gray+alpha, HxWx3 RGB, HxWx4 RGBA) by the value rules.

    Gray is expanded to RGB and the output is RGB (RGBA for gray+alpha); alpha is upscaled nearest-neighbour.
    """
    img = np.asarray(img)
    if img.dtype == np.uint8:
        maxv = 255.0
    elif img.dtype == np.uint16:
        maxv = 65535.0
    else:
        raise TypeError(f"image must be uint8 or uint16, got {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    c = img.shape[2]
    if c not in (1, 2, 3, 4):
        raise ValueError(f"unsupported channel count {c}")
    r = model.scale
    t = torch.from_numpy(img.astype(np.float32))  # exact: integers < 2^24
    t = t / torch.tensor(maxv, dtype=torch.float32)  # correctly rounded float32 division
    rgb = t[:, :, :3] if c >= 3 else t[:, :, :1].expand(-1, -1, 3)
    x = rgb.permute(2, 0, 1).unsqueeze(0).contiguous()
    with torch.no_grad():
        y = model(x)[0]
        y = torch.round(torch.clamp(y, 0.0, 1.0) * torch.tensor(maxv, dtype=torch.float32))  # ties to even
    out = y.permute(1, 2, 0).numpy()
    if c in (2, 4):
        a = img[:, :, -1].astype(np.float32)
        a = np.repeat(np.repeat(a, r, axis=0), r, axis=1)
        out = np.concatenate([out, a[:, :, None]], axis=2)
    return out.astype(img.dtype)


# ---- self-test -------------------------------------------------------------------------------------------------
def _random_model(seed, scale, residual, with_extras=True):
    g = np.random.default_rng(seed)
    r = scale
    layers = [{"op": "conv2d", "weight": g.normal(0, 0.3, (8, 3, 5, 5)).astype(np.float32).tolist(),
               "bias": g.normal(0, 0.1, 8).astype(np.float32).tolist()}]
    if with_extras:
        layers += [{"op": "prelu", "weight": [0.25]},
                   {"op": "conv2d", "weight": g.normal(0, 0.3, (6, 8, 3, 3)).astype(np.float32).tolist()},
                   {"op": "leaky_relu", "negative_slope": 0.1},
                   {"op": "conv2d", "weight": g.normal(0, 0.3, (5, 6, 1, 1)).astype(np.float32).tolist(),
                    "bias": g.normal(0, 0.1, 5).astype(np.float32).tolist()},
                   {"op": "prelu", "weight": g.uniform(0, 0.5, 5).astype(np.float32).tolist()},
                   {"op": "conv2d", "weight": g.normal(0, 0.3, (4, 5, 3, 3)).astype(np.float32).tolist(),
                    "bias": g.normal(0, 0.1, 4).astype(np.float32).tolist()},
                   {"op": "relu"},
                   {"op": "conv2d", "weight": g.normal(0, 0.3, (3 * r * r, 4, 3, 3)).astype(np.float32).tolist(),
                    "bias": g.normal(0, 0.1, 3 * r * r).astype(np.float32).tolist()}]
    else:
        layers += [{"op": "tanh"},
                   {"op": "conv2d", "weight": g.normal(0, 0.3, (3 * r * r, 8, 3, 3)).astype(np.float32).tolist(),
                    "bias": g.normal(0, 0.1, 3 * r * r).astype(np.float32).tolist()}]
    layers.append({"op": "pixel_shuffle", "upscale_factor": r})
    return SRModel(layers, r, residual, name=f"selftest-x{r}", description="self-test model.",
                   training={"seed": seed, "note": "random weights"})


def _self_test(extra_paths=()):
    import tempfile
    failures = []

    def check(cond, msg):
        print(("ok   " if cond else "FAIL ") + msg)
        if not cond:
            failures.append(msg)

    with tempfile.TemporaryDirectory() as td:
        models = [(_random_model(s, r, res, ex), f"random x{r} {res} extras={ex}")
                  for s, (r, res, ex) in enumerate([(2, "nearest", True), (3, "none", True), (4, "nearest", False)])]
        # adversarial floats: subnormals, tiny/huge exponents, values needing 9 digits
        m = models[0][0]
        with torch.no_grad():
            w = m.body[0].weight.view(-1)
            special = torch.tensor([1e-45, -1.4e-45, 1.17549435e-38, 3.4028235e38 / 1e30, 0.1, 1 / 3, -0.0, 0.0,
                                    16777217.0, 1.0000001, 2.0 ** -130, np.nextafter(np.float32(1), np.float32(2))],
                                   dtype=torch.float32)
            w[: special.numel()] = special
            g = torch.Generator().manual_seed(0)
            w[special.numel():] = torch.randn(w.numel() - special.numel(), generator=g) * torch.exp(
                torch.randn(w.numel() - special.numel(), generator=g) * 10)
        for path in extra_paths:
            models.append((load(path), path))
        for model, label in models:
            j1 = to_json(model)
            m2 = load_json(j1)
            j2 = to_json(m2)
            check(j1 == j2, f"{label}: JSON -> torch -> JSON text identical")
            sd1, sd2 = model.state_dict(), m2.state_dict()
            same = sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) and
                                                    torch.equal(torch.signbit(sd1[k]), torch.signbit(sd2[k]))
                                                    for k in sd1)
            check(same, f"{label}: JSON round trip keeps every float32 bit")
            p1, p2 = os.path.join(td, "a.safetensors"), os.path.join(td, "b.safetensors")
            save_safetensors(model, p1)
            m3 = load_safetensors(p1)
            save_safetensors(m3, p2)
            check(open(p1, "rb").read() == open(p2, "rb").read(),
                  f"{label}: safetensors -> torch -> safetensors byte-identical")
            check(to_json(m3) == j1, f"{label}: safetensors -> torch -> JSON equals the JSON")
            from safetensors import safe_open
            with safe_open(p1, framework="pt") as f:
                head = json.loads(f.metadata()[METADATA_KEY])
                keys = set(f.keys())
            named = {L[k] for L in head["layers"] for k in ("weight", "bias") if isinstance(L.get(k), str)}
            check(named == keys == set(sd1.keys()), f"{label}: metadata names exactly the state_dict tensors")
        # forward-pass identities
        for r in (2, 3, 4):
            g = torch.Generator().manual_seed(r)
            w0 = torch.randn(3, 8, 3, 3, generator=g)
            b0 = torch.randn(3, generator=g)
            layers = [{"op": "conv2d", "weight": torch.randn(8, 3, 5, 5, generator=g).numpy(), "bias": None},
                      {"op": "tanh"},
                      {"op": "conv2d", "weight": w0.repeat_interleave(r * r, 0).numpy(),
                       "bias": b0.repeat_interleave(r * r, 0).numpy()},
                      {"op": "pixel_shuffle", "upscale_factor": r}]
            mod = SRModel(layers, r, "none")
            x = torch.rand(1, 3, 9, 7, generator=g)
            with torch.no_grad():
                y = mod(x)
                h = torch.tanh(mod.body[0](x))
                y0 = F.conv2d(h, w0, b0, padding=1)
                check(torch.allclose(y, F.interpolate(y0, scale_factor=r, mode="nearest"), atol=1e-5),
                      f"x{r}: ICNR-tied sub-pixel conv == nearest upsample of the sub-kernel conv")
                z = mod.body[2](h)
                ps = torch.empty(1, 3, 9 * r, 7 * r)
                for c in range(3):
                    for i in range(r):
                        for j in range(r):
                            ps[0, c, i::r, j::r] = z[0, c * r * r + i * r + j]
                check(torch.equal(y, ps), f"x{r}: pixel_shuffle is out[c,h*r+i,w*r+j] = in[c*r*r+i*r+j,h,w]")
        # image value rules
        mod = _random_model(7, 2, "nearest", False)
        rng = np.random.default_rng(1)
        for dtype, maxv in ((np.uint8, 255), (np.uint16, 65535)):
            rgba = rng.integers(0, maxv + 1, (6, 5, 4)).astype(dtype)
            out = upscale_image(mod, rgba)
            check(out.shape == (12, 10, 4) and out.dtype == dtype, f"{dtype.__name__}: RGBA -> RGBA shape/dtype")
            check(np.array_equal(out[:, :, 3], np.repeat(np.repeat(rgba[:, :, 3], 2, 0), 2, 1)),
                  f"{dtype.__name__}: alpha upscaled nearest-neighbour")
            check(np.array_equal(out[:, :, :3], upscale_image(mod, np.ascontiguousarray(rgba[:, :, :3]))),
                  f"{dtype.__name__}: RGB channels ignore alpha")
            gray = rgba[:, :, 0]
            check(np.array_equal(upscale_image(mod, gray), upscale_image(mod, np.stack([gray] * 3, 2))),
                  f"{dtype.__name__}: gray is expanded to RGB")
        # bad structures are rejected
        bad = [
            [{"op": "conv2d", "weight": np.zeros((12, 4, 3, 3), np.float32)}, {"op": "pixel_shuffle", "upscale_factor": 2}],
            [{"op": "conv2d", "weight": np.zeros((12, 3, 2, 2), np.float32)}, {"op": "pixel_shuffle", "upscale_factor": 2}],
            [{"op": "conv2d", "weight": np.zeros((11, 3, 3, 3), np.float32)}, {"op": "pixel_shuffle", "upscale_factor": 2}],
            [{"op": "conv2d", "weight": np.zeros((12, 3, 3, 3), np.float32)}, {"op": "pixel_shuffle", "upscale_factor": 2},
             {"op": "relu"}],
        ]
        for i, layers in enumerate(bad):
            try:
                SRModel(layers, 2, "none")
                check(False, f"bad structure {i} rejected")
            except ValueError:
                check(True, f"bad structure {i} rejected")
    print(f"{len(failures)} failed")
    return 0 if not failures else 1


def main(argv):
    if len(argv) >= 1 and argv[0] == "--self-test":
        return _self_test(argv[1:])
    if len(argv) == 3 and argv[0] == "--to-safetensors":
        save_safetensors(load_json(argv[1]), argv[2])
        return 0
    if len(argv) == 3 and argv[0] == "--to-json":
        save_json(load_safetensors(argv[1]), argv[2])
        return 0
    print(__doc__.split("CLI:")[1].strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
