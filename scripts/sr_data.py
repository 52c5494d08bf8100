#!/usr/bin/env python3
"""Training and validation photographs for icnr-upscale's super-resolution models.

Sources (nothing else is used):
- scikit-image's bundled photographs that load offline (no pooch download): astronaut, coffee, chelsea, rocket,
  hubble_deep_field. Gray images, drawings, microscopy and medical images are left out.
- The photographs in Debian's `plasma-workspace-wallpapers` package, fetched with `apt-get download` into
  CACHE/debs and unpacked with `dpkg -x` (no installation): BytheWater, ColdRipple, ColorfulCups, DarkestHour,
  EveningGlow, FallenLeaf, Grey, Kite, OneStandsOut, Path, summer_1am. The package's drawings and renders (Altai,
  Autumn, Canopee, Cascade, Cluster, Elarun, Flow, FlyingKonqui, Honeywave, IceCold, Kay, Kokkini, MilkyWay, Opal,
  PastelHills, Patak, SafeLanding, Shell, Volna) are left out.
Debian's `mate-backgrounds` is held out for an independent evaluation: this script never fetches or reads it.

Preparation: each wallpaper's 2560x1600 JPEG is downscaled once by 2 (Pillow LANCZOS) to 1280x800, so that its
detail density is closer to a photo's and JPEG blocking is reduced. scikit-image photos are used as they are.
Validation images are centre crops of at most 504x504 (a multiple of 12, so x2, x3 and x4 all divide).
Training images are cropped to a multiple of 12 (top-left anchored).
Degradation: LR = Pillow `Image.resize((w // r, h // r), Image.BICUBIC)` of the HR image (HR a multiple of r).

Split by image (fixed): VALIDATION below; everything else is training. Training never sees validation images.

`python scripts/sr_data.py` re-creates the cache (CACHE, default /work/sr-data, or $SR_DATA) from scratch if needed
and prints the Markdown source table that MODELS.md shows.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import numpy as np
from PIL import Image

CACHE = os.environ.get("SR_DATA", "/work/sr-data")
PACKAGE = "plasma-workspace-wallpapers"

SKIMAGE_PHOTOS = {
    # name: licence as stated in scikit-image's skimage.data docstrings
    "astronaut": "public domain (NASA, 'no known copyright restrictions')",
    "coffee": "CC0 (photographer Rachel Michetti, courtesy of Pikolo Espresso Bar)",
    "chelsea": "CC0 (photographer Stefan van der Walt)",
    "rocket": "public domain (SpaceX launch photo of DSCOVR on Falcon 9)",
    "hubble_deep_field": "public domain (NASA/HubbleSite)",
}
WALLPAPERS = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
              "Kite", "OneStandsOut", "Path", "summer_1am"]
WALLPAPER_LICENCE = "GPL-2+ (Copyright 2014 KDE Visual Design Group; debian/copyright, Files: *)"

VALIDATION = ["coffee", "EveningGlow", "Grey", "OneStandsOut"]
VAL_CROP = 504  # max HR side of a validation crop; multiple of 12


def ensure_package():
    """Download and unpack plasma-workspace-wallpapers into CACHE if not there. Returns (extract dir, version)."""
    debs = os.path.join(CACHE, "debs")
    os.makedirs(debs, exist_ok=True)
    found = glob.glob(os.path.join(debs, PACKAGE + "_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", PACKAGE], cwd=debs, check=True)
        found = glob.glob(os.path.join(debs, PACKAGE + "_*.deb"))
    deb = sorted(found)[-1]
    version = subprocess.run(["dpkg-deb", "-f", deb, "Version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    ext = os.path.join(CACHE, "extract")
    marker = os.path.join(ext, ".done-" + version)
    if not os.path.exists(marker):
        os.makedirs(ext, exist_ok=True)
        subprocess.run(["dpkg", "-x", deb, ext], check=True)
        open(marker, "w").close()
    return ext, version


def sources():
    """One record per image: name, source, original path, licence, split."""
    ext, version = ensure_package()
    import skimage
    recs = []
    for n, lic in SKIMAGE_PHOTOS.items():
        path = os.path.join(os.path.dirname(skimage.__file__), "data")
        f = [p for p in os.listdir(path) if p.split(".")[0] == n]
        recs.append({"name": n, "source": f"scikit-image {skimage.__version__} skimage.data.{n}()",
                     "path": f"skimage/data/{f[0]}" if f else f"skimage.data.{n}",
                     "licence": lic, "split": "validation" if n in VALIDATION else "train"})
    for w in WALLPAPERS:
        d = os.path.join(ext, "usr/share/wallpapers", w, "contents/images")
        big = glob.glob(os.path.join(d, "2560x1600.*"))[0]
        recs.append({"name": w, "source": f"Debian {PACKAGE} {version}",
                     "path": os.path.relpath(big, ext), "licence": WALLPAPER_LICENCE,
                     "split": "validation" if w in VALIDATION else "train", "_file": big})
    return recs


def _crop12(a):
    h, w = a.shape[:2]
    return a[: h - h % 12, : w - w % 12]


def load_hr(rec) -> np.ndarray:
    """The prepared full HR image (uint8 HxWx3), cached as PNG under CACHE/images."""
    out = os.path.join(CACHE, "images", rec["name"] + ".png")
    if os.path.exists(out):
        return np.asarray(Image.open(out).convert("RGB"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if rec["name"] in SKIMAGE_PHOTOS:
        import skimage.data
        a = getattr(skimage.data, rec["name"])()
        im = Image.fromarray(a).convert("RGB")
    else:
        im = Image.open(rec["_file"]).convert("RGB")
        im = im.resize((im.width // 2, im.height // 2), Image.LANCZOS)
    im.save(out)
    return np.asarray(im)


def centre_crop(a, size=VAL_CROP):
    h, w = a.shape[:2]
    ch = min(size, h - h % 12)
    cw = min(size, w - w % 12)
    y, x = (h - ch) // 2, (w - cw) // 2
    return a[y: y + ch, x: x + cw]


def make_lr(hr: np.ndarray, r: int) -> np.ndarray:
    h, w = hr.shape[:2]
    assert h % r == 0 and w % r == 0, "HR must be a multiple of r"
    return np.asarray(Image.fromarray(hr).resize((w // r, h // r), Image.BICUBIC))


def train_set():
    """[(name, HR uint8 array cropped to a multiple of 12)] for the training images."""
    return [(r["name"], _crop12(load_hr(r))) for r in sources() if r["split"] == "train"]


def validation_set():
    """[(name, HR centre crop)] for the validation images."""
    return [(r["name"], centre_crop(load_hr(r))) for r in sources() if r["split"] == "validation"]


def markdown_table():
    lines = ["| image | split | source | file | licence | HR used |", "| --- | --- | --- | --- | --- | --- |"]
    for r in sources():
        a = load_hr(r)
        if r["split"] == "validation":
            c = centre_crop(a)
            used = f"centre crop {c.shape[1]}x{c.shape[0]} of {a.shape[1]}x{a.shape[0]}"
        else:
            c = _crop12(a)
            used = f"{c.shape[1]}x{c.shape[0]}"
        if r["name"] not in SKIMAGE_PHOTOS:
            used += " (2560x1600 downscaled by 2, LANCZOS)"
        lines.append(f"| {r['name']} | {r['split']} | {r['source']} | `{r['path']}` | {r['licence']} | {used} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
    sys.exit(0)
