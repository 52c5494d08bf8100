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
- The photographs in Debian's `lomiri-wallpapers-16.04` and `lomiri-wallpapers-20.04` packages (source package
  lomiri-wallpapers), fetched and unpacked the same way, each with its own licence from the package's
  debian/copyright (CC-BY-4.0, CC-BY-SA-4.0, CC0-1.0 or CC-BY-SA-3.0; see EXTRA_PHOTOS): training only. Left out:
  umang_by_Abhishek_Mudgal (a render), Fossa_by_Jasper_Roks, Infinite-Sea_by_Aury88 and
  Painting-Colors_by__herobrine7gamer (drawings/renders). Also looked at and left out entirely: Debian's
  `ukui-wallpapers` (all renders) and `gnome-backgrounds` 43.1-1 (renders; its debian/copyright does not name the
  files it ships).
Debian's `mate-backgrounds` is held out for an independent evaluation: this script never fetches or reads it.

Preparation: each wallpaper's 2560x1600 JPEG is downscaled once by 2 (Pillow LANCZOS) to 1280x800, so that its
detail density is closer to a photo's and JPEG blocking is reduced. scikit-image photos are used as they are. Each lomiri photo is downscaled once (Pillow LANCZOS) so that its longer
side is 1280 (the wallpapers' prepared width), for the same reason.
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

# Training-only photographs from other Debian packages: name -> (package, file in the package, licence as stated in
# the package's debian/copyright, /usr/share/doc/PACKAGE/copyright).
EXTRA_PHOTOS = {
    "aitzgorri": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg",
                  "CC-BY-4.0 (Aitzol Berasategi, 2018)"),
    "analogpattern": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/analogpattern_by_Peter_Nerlich.jpg",
                      "CC-BY-SA-4.0 (Peter Nerlich, 2018)"),
    "Bridge": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg",
               "CC-BY-SA-4.0 (Sander Klootwijk, 2018)"),
    "Dragonfly": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/Dragonfly_by_Bolly.jpg",
                  "CC-BY-SA-4.0 (\"Bolly\", 2018)"),
    "free": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/free_by_Peter_Nerlich.jpg",
             "CC-BY-SA-4.0 (Peter Nerlich, 2018)"),
    "friends": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg",
                "CC-BY-4.0 (Aitzol Berasategi, 2018)"),
    "greentock": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/greentock_by_Peter_Nerlich.jpg",
                  "CC-BY-SA-4.0 (Peter Nerlich, 2018)"),
    "life": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg",
             "CC-BY-4.0 (Aitzol Berasategi, 2018)"),
    "picosdeeuropa": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
                      "CC-BY-4.0 (Aitzol Berasategi, 2018)"),
    "Picture_0B": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/Picture_0B_by_freespace.jpg",
                   "CC-BY-4.0 (Trevor \"Freespace\", 2018)"),
    "Picture_1A": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/Picture_1A_by_freespace.jpg",
                   "CC-BY-4.0 (Trevor \"Freespace\", 2018)"),
    "seeding": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg",
                "CC0-1.0 (Clemens Engelhardt, 2018)"),
    "sunset": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg",
               "CC-BY-4.0 (Aitzol Berasategi, 2018)"),
    "Wine": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg",
             "CC-BY-4.0 (Jakub Mede, 2018)"),
    "Kleiber": ("lomiri-wallpapers-20.04", "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
                "CC-BY-SA-3.0 (Lukas Baubkus, 2021)"),
}
EXTRA_LONG_SIDE = 1280  # each extra photo is downscaled (LANCZOS) so that its longer side is this

VALIDATION = ["coffee", "EveningGlow", "Grey", "OneStandsOut"]
VAL_CROP = 504  # max HR side of a validation crop; multiple of 12


def ensure_package(package=PACKAGE):
    """Download and unpack a Debian package into CACHE if not there. Returns (extract dir, version).

    plasma-workspace-wallpapers unpacks into CACHE/extract (as before), any other package into CACHE/extract-NAME."""
    assert package != "mate-backgrounds", "mate-backgrounds is held out: never fetched or read here"
    debs = os.path.join(CACHE, "debs")
    os.makedirs(debs, exist_ok=True)
    found = glob.glob(os.path.join(debs, package + "_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True, stdout=sys.stderr)  # keep stdout the table
        found = glob.glob(os.path.join(debs, package + "_*.deb"))
    deb = sorted(found)[-1]
    version = subprocess.run(["dpkg-deb", "-f", deb, "Version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    ext = os.path.join(CACHE, "extract" if package == PACKAGE else "extract-" + package)
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
    for n, (pkg, rel, lic) in EXTRA_PHOTOS.items():
        pext, pver = ensure_package(pkg)
        recs.append({"name": n, "source": f"Debian {pkg} {pver}", "path": rel, "licence": lic, "split": "train",
                     "_file": os.path.join(pext, rel)})
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
    elif rec["name"] in EXTRA_PHOTOS:
        im = Image.open(rec["_file"]).convert("RGB")
        f = EXTRA_LONG_SIDE / max(im.width, im.height)
        im = im.resize((round(im.width * f), round(im.height * f)), Image.LANCZOS)
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
        if r["name"] in EXTRA_PHOTOS:
            w0, h0 = Image.open(r["_file"]).size
            used += f" ({w0}x{h0} downscaled to longer side {EXTRA_LONG_SIDE}, LANCZOS)"
        elif r["name"] not in SKIMAGE_PHOTOS:
            used += " (2560x1600 downscaled by 2, LANCZOS)"
        lines.append(f"| {r['name']} | {r['split']} | {r['source']} | `{r['path']}` | {r['licence']} | {used} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
    sys.exit(0)
