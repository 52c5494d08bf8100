#!/usr/bin/env python3
"""Quality of icnr-upscale's models against nearest, bicubic and Lanczos on the validation photographs.

Metrics follow docs/MATHS.md and the SR literature:
- Y-PSNR: BT.601 luma `Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255` on 0..255 values (float64), shave r pixels
  from each border, `10 log10(255^2 / MSE)`.
- SSIM on the same shaved Y: 11x11 Gaussian window, sigma 1.5, C1 = (0.01*255)^2, C2 = (0.03*255)^2, mean of the
  map over the "valid" window positions (no padding).
LR = Pillow BICUBIC downscale of the HR crop (scripts/sr_data.py). Baselines upscale that LR with Pillow NEAREST,
BICUBIC and LANCZOS. Models run through scripts/models.py `upscale_image` (uint8 out, round ties even).

`python scripts/eval_quality.py` writes the table into MODELS.md between `<!-- quality:begin -->` and
`<!-- quality:end -->`; `--fixture` (re)writes tests/fixtures/quality/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

SCALES = (2, 3, 4)
MODEL_NAMES = ["espcn-x2", "espcn-x3", "espcn-x4", "subpixel-x2", "subpixel-x3", "subpixel-x4"]


def y_channel(rgb) -> np.ndarray:
    a = np.asarray(rgb, dtype=np.float64)
    return 16.0 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255.0


def _shave(a, r):
    return a[r:-r, r:-r] if r > 0 else a


def y_psnr(sr_uint8, hr_uint8, r) -> float:
    ys, yh = _shave(y_channel(sr_uint8), r), _shave(y_channel(hr_uint8), r)
    mse = np.mean((ys - yh) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _gauss_filter_valid(a, win):
    from scipy.signal import fftconvolve
    return fftconvolve(a, win, mode="valid")


def ssim_y(sr_uint8, hr_uint8, r) -> float:
    x, y = _shave(y_channel(sr_uint8), r), _shave(y_channel(hr_uint8), r)
    ax = np.arange(11) - 5
    g = np.exp(-(ax ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()
    win = np.outer(g, g)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _gauss_filter_valid(x, win), _gauss_filter_valid(y, win)
    sxx = _gauss_filter_valid(x * x, win) - mx * mx
    syy = _gauss_filter_valid(y * y, win) - my * my
    sxy = _gauss_filter_valid(x * y, win) - mx * my
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(m.mean())


def checkerboard_score(y01: np.ndarray, r: int) -> float:
    """docs/MATHS.md's score for an output Y (HxWx3 float in [0,1]): r-periodic phase-mean spread / mean channel std."""
    y = np.asarray(y01, dtype=np.float64)
    h, w = y.shape[0] - y.shape[0] % r, y.shape[1] - y.shape[1] % r
    y = y[:h, :w, :3]
    m = np.stack([[y[i::r, j::r].mean(axis=(0, 1)) for j in range(r)] for i in range(r)])  # r x r x C
    mbar = m.mean(axis=(0, 1))
    num = np.sqrt(np.mean((m - mbar) ** 2))
    den = np.mean([y[..., c].std() for c in range(y.shape[2])])
    return float(num / (den + 1e-12))


def pil_upscale(lr_uint8, r, method):
    im = Image.fromarray(lr_uint8)
    return np.asarray(im.resize((im.width * r, im.height * r), method))


BASELINES = {"nearest": Image.NEAREST, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def evaluate_model_on(model, val, r):
    """[(name, psnr, ssim)] of a SRModel on [(name, HR)]."""
    import models as M
    from sr_data import make_lr
    out = []
    for name, hr in val:
        sr = M.upscale_image(model, make_lr(hr, r))
        out.append((name, y_psnr(sr, hr, r), ssim_y(sr, hr, r)))
    return out


def fixture_numbers(hr_uint8, model, r=2):
    """Bicubic-baseline and model Y-PSNR on one HR image (LR = Pillow bicubic of it). Used for tests/fixtures."""
    import models as M
    from sr_data import make_lr
    lr = make_lr(hr_uint8, r)
    bic = pil_upscale(lr, r, Image.BICUBIC)
    sr = M.upscale_image(model, lr)
    return {"bicubic_y_psnr": y_psnr(bic, hr_uint8, r), "model_y_psnr": y_psnr(sr, hr_uint8, r)}


def run_all(model_dir):
    import models as M
    from sr_data import make_lr, validation_set
    val = validation_set()
    rows = {}  # (method, r) -> [(img, psnr, ssim)]
    for r in SCALES:
        for meth, pm in BASELINES.items():
            res = []
            for name, hr in val:
                sr = pil_upscale(make_lr(hr, r), r, pm)
                res.append((name, y_psnr(sr, hr, r), ssim_y(sr, hr, r)))
            rows[(meth, r)] = res
    for mn in MODEL_NAMES:
        p = os.path.join(model_dir, mn + ".json")
        if not os.path.exists(p):
            continue
        m = M.load_json(p)
        rows[(mn, m.scale)] = evaluate_model_on(m, val, m.scale)
    return val, rows


def markdown(val, rows, command):
    names = [n for n, _ in val]
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L = [f"Produced by `{command}` on {today} (validation photos: {', '.join(names)}; LR = Pillow BICUBIC downscale"
         " of the HR crop; Y-PSNR/SSIM on BT.601 Y, r pixels shaved).", ""]
    L.append("Mean over the validation photos (Y-PSNR dB / SSIM); best per scale in bold:")
    L.append("")
    L.append("| method | x2 | x3 | x4 |")
    L.append("| --- | --- | --- | --- |")
    methods = ["nearest", "bicubic", "lanczos", "espcn", "subpixel"]
    means = {}
    for (meth, r), res in rows.items():
        means[(meth.split("-x")[0], r)] = (np.mean([p for _, p, _ in res]), np.mean([s for _, _, s in res]))
    best = {r: max(v[0] for (m, rr), v in means.items() if rr == r) for r in SCALES}
    for meth in methods:
        cells = []
        for r in SCALES:
            if (meth, r) in means:
                p, s = means[(meth, r)]
                c = f"{p:.2f} / {s:.4f}"
                cells.append(f"**{c}**" if p == best[r] else c)
            else:
                cells.append("-")
        label = meth if meth in BASELINES else f"{meth}-xN"
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("Targets (each espcn-xN vs bicubic >= +0.8 dB and > Lanczos, mean Y-PSNR at its scale):")
    L.append("")
    for r in SCALES:
        if ("espcn", r) not in means:
            L.append(f"- x{r}: espcn-x{r} missing")
            continue
        d = means[("espcn", r)][0] - means[("bicubic", r)][0]
        dl = means[("espcn", r)][0] - means[("lanczos", r)][0]
        ok = d >= 0.8 and dl > 0
        L.append(f"- x{r}: espcn-x{r} {d:+.2f} dB vs bicubic, {dl:+.2f} dB vs Lanczos: "
                 + ("target met" if ok else "**target missed**"))
    L.append("")
    L.append("Per image, Y-PSNR dB (SSIM), and each model's gain over bicubic:")
    L.append("")
    for r in SCALES:
        L.append(f"x{r}:")
        L.append("")
        L.append("| method | " + " | ".join(names) + " |")
        L.append("| --- |" + " --- |" * len(names))
        bic = {n: p for n, p, _ in rows[("bicubic", r)]}
        for (meth, rr), res in rows.items():
            if rr != r:
                continue
            cells = []
            for n, p, s in res:
                c = f"{p:.2f} ({s:.4f})"
                if meth not in BASELINES:
                    c += f" {p - bic[n]:+.2f}"
                cells.append(c)
            L.append(f"| {meth} | " + " | ".join(cells) + " |")
        losses = []
        for (meth, rr), res in rows.items():
            if rr != r or meth in BASELINES:
                continue
            lan = {n: p for n, p, _ in rows[("lanczos", r)]}
            bic_s = {n: s for n, _, s in rows[("bicubic", r)]}
            lan_s = {n: s for n, _, s in rows[("lanczos", r)]}
            for n, p, s in res:
                if p < bic[n]:
                    losses.append(f"{meth} loses to bicubic on {n} in Y-PSNR ({p - bic[n]:+.2f} dB)")
                elif p < lan[n]:
                    losses.append(f"{meth} loses to Lanczos on {n} in Y-PSNR ({p - lan[n]:+.2f} dB)")
                if s < bic_s[n]:
                    losses.append(f"{meth} loses to bicubic on {n} in SSIM ({s - bic_s[n]:+.4f})")
                elif s < lan_s[n]:
                    losses.append(f"{meth} loses to Lanczos on {n} in SSIM ({s - lan_s[n]:+.4f})")
        L.append("")
        L.append("Where a model loses: " + ("; ".join(losses) if losses else "nowhere (every model beats bicubic and "
                                                                           "Lanczos on every validation photo, in "
                                                                           "Y-PSNR and SSIM)") + ".")
        L.append("")
    return "\n".join(L)


def describe_models(model_dir):
    """Markdown table of the model files: shape, parameters, MACs per LR input pixel, default flag, size."""
    import models as M
    L = ["| model | scale | default | shape | residual | parameters | MACs / LR pixel | file | size (bytes) |"
         " final val Y-PSNR (training log) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    total = 0
    for mn in MODEL_NAMES:
        p = os.path.join(model_dir, mn + ".json")
        if not os.path.exists(p):
            L.append(f"| {mn} | | | (not trained) | | | | | | |")
            continue
        m = M.load_json(p)
        parts, macs = [], 0
        for mod, s in zip(m.body, m.spec):
            if s["op"] == "conv2d":
                k = mod.kernel_size[0]
                parts.append(f"conv {mod.in_channels}->{mod.out_channels} k{k}")
                macs += mod.in_channels * mod.out_channels * k * k
            elif s["op"] == "pixel_shuffle":
                parts.append(f"PixelShuffle({s['upscale_factor']})")
            else:
                parts.append(s["op"])
        nparams = sum(t.numel() for t in m.parameters())
        size = os.path.getsize(p)
        total += size
        final = m.training_info.get("final_val_y_psnr", "")
        L.append(f"| {mn} | x{m.scale} | {'yes' if mn.startswith('espcn') else 'no'} | {', '.join(parts)} | "
                 f"{m.residual} | {nparams} | {macs} | `models/{mn}.json` | {size} | {final} |")
    L.append("")
    L.append(f"All model files together: {total} bytes.")
    return "\n".join(L)


def write_into(path, text, begin="<!-- quality:begin -->", end="<!-- quality:end -->"):
    s = open(path).read() if os.path.exists(path) else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in s and end in s:
        a, rest = s.split(begin, 1)
        _, b = rest.split(end, 1)
        s = a + block + b
    else:
        s = s + ("\n" if s and not s.endswith("\n") else "") + block + "\n"
    open(path, "w").write(s)


def make_fixture(model_dir, out_dir, crop_xy=None):
    import models as M
    from sr_data import make_lr, validation_set, sources
    m = M.load_json(os.path.join(model_dir, "espcn-x2.json"))
    val = validation_set()
    best = None
    if crop_xy is None:
        for name, hr in val:
            for y in range(0, hr.shape[0] - 96 + 1, 48):
                for x in range(0, hr.shape[1] - 96 + 1, 48):
                    c = np.ascontiguousarray(hr[y:y + 96, x:x + 96])
                    if y_channel(c).std() < 20:
                        continue
                    n = fixture_numbers(c, m)
                    gain = n["model_y_psnr"] - n["bicubic_y_psnr"]
                    if best is None or gain > best[0]:
                        best = (gain, name, y, x)
        _, name, y, x = best
    else:
        name, y, x = crop_xy
    hr_full = dict(val)[name]
    c = np.ascontiguousarray(hr_full[y:y + 96, x:x + 96])
    os.makedirs(out_dir, exist_ok=True)
    Image.fromarray(c).save(os.path.join(out_dir, "hr.png"))
    Image.fromarray(make_lr(c, 2)).save(os.path.join(out_dir, "lr_x2.png"))
    n = fixture_numbers(c, m)
    rec = [r for r in sources() if r["name"] == name][0]
    exp = {"scale": 2, "hr": "hr.png", "lr": "lr_x2.png",
           "lr_is": "Pillow Image.resize((48, 48), Image.BICUBIC) of hr.png",
           "bicubic_y_psnr": round(n["bicubic_y_psnr"], 4),
           "bicubic_is": "Pillow Image.resize((96, 96), Image.BICUBIC) of lr_x2.png",
           "espcn_x2_y_psnr": round(n["model_y_psnr"], 4),
           "espcn_x2_is": "models/espcn-x2.json through scripts/models.py upscale_image (uint8, round ties even)",
           "metric": "Y-PSNR, BT.601 Y on 0..255, 2 pixels shaved each border, 10 log10(255^2/MSE)",
           "computed_by": "scripts/eval_quality.py fixture_numbers"}
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(exp, f, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(f"""# Quality fixture

`hr.png`: a 96x96 RGB crop (rows {y}..{y + 95}, columns {x}..{x + 95}) of the validation crop of **{name}**
(a validation photo, never seen in training), prepared as in `scripts/sr_data.py`.

- Source: {rec['source']}, `{rec['path']}`{' (downscaled by 2 with Pillow LANCZOS, then centre-cropped to at most 504x504)' if rec['name'] not in ('coffee',) else ' (centre-cropped to at most 504x504)'}
- Licence: {rec['licence']}

`lr_x2.png`: Pillow `Image.resize((48, 48), Image.BICUBIC)` of `hr.png`.
`expected.json`: Y-PSNR at x2 of Pillow bicubic upscaling of `lr_x2.png` and of `models/espcn-x2.json`, from
`scripts/eval_quality.py` (`fixture_numbers`). Regenerate with `python scripts/eval_quality.py --fixture`.
""")
    return name, y, x, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.path.join(ROOT, "models"))
    ap.add_argument("--md", default=os.path.join(ROOT, "MODELS.md"))
    ap.add_argument("--fixture", action="store_true", help="(re)write tests/fixtures/quality/")
    ap.add_argument("--fixture-crop", default=None, help="NAME,Y,X of the fixture crop (default: search)")
    ap.add_argument("--print", action="store_true", help="print the table instead of writing MODELS.md")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    if a.fixture:
        crop = None
        if a.fixture_crop:
            n, y, x = a.fixture_crop.split(",")
            crop = (n, int(y), int(x))
        print(make_fixture(a.models, os.path.join(ROOT, "tests/fixtures/quality"), crop))
        return 0
    val, rows = run_all(a.models)
    text = markdown(val, rows, "python scripts/eval_quality.py")
    desc = describe_models(a.models)
    if a.print:
        print(desc + "\n\n" + text)
    else:
        write_into(a.md, desc, "<!-- models:begin -->", "<!-- models:end -->")
        write_into(a.md, text)
        print(desc + "\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
