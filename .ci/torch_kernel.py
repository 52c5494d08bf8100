#!/usr/bin/env python3
"""Kernel JSON loaded into PyTorch and run, as the README's "PyTorch interop" section does it (a CI step).

For an ICNR kernel (r=2, k=3) and a default-init one (r=3, k=5) made by `icnr-upscale kernel`:
  1. load the JSON into nn.Conv2d exactly as the README shows (weight.copy_(torch.tensor(j["weight"]))) and run
     nn.Sequential(conv, nn.PixelShuffle(r)) on a test image;
  2. run `icnr-upscale upscale --weights kernel.json` on the same image: every sample within 1 LSB of PyTorch's,
     at least 99.9% exact;
  3. save conv.state_dict() with safetensors.torch.save_file, as the README shows, and run `--weights
     k.safetensors`: the same pixels as with the JSON;
  4. for ICNR, `icnr-upscale upscale` with the same scale, kernel size and seed (its own kernel, no --weights)
     gives the same pixels too ("untrained, the round trip gives byte-identical output").

    python .ci/torch_kernel.py --binary target/release/icnr-upscale --work target/ci/torch
"""

import argparse
import json
import os
import random
import subprocess
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file


def run(cmd, **kw):
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def test_image(path, w=67, h=45):
    rnd = random.Random(20261201)
    px = []
    for y in range(h):
        for x in range(w):
            base = (x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2))
            px.append(tuple(max(0, min(255, c + rnd.randint(-40, 40))) for c in base))
    img = Image.new("RGB", (w, h))
    img.putdata(px)
    img.save(path)
    return np.asarray(img)


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int32)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    torch.set_num_threads(2)
    src = os.path.join(a.work, "in.png")
    img = test_image(src)
    failures = []
    for init, r, k in [("icnr", 2, 3), ("default", 3, 5)]:
        tag = f"{init}_r{r}_k{k}"
        kpath = os.path.join(a.work, f"{tag}.json")
        with open(kpath, "wb") as f:
            run([a.binary, "kernel", "--scale", str(r), "--kernel-size", str(k), "--init", init, "--seed", "7"],
                stdout=f)

        # The README's snippet, verbatim in substance.
        j = json.load(open(kpath))
        conv = torch.nn.Conv2d(3, j["out_channels"], j["kernel_size"], padding=j["kernel_size"] // 2)
        conv.weight.data.copy_(torch.tensor(j["weight"]))
        conv.bias.data.copy_(torch.tensor(j["bias"]))
        model = torch.nn.Sequential(conv, torch.nn.PixelShuffle(j["scale"]))
        stpath = os.path.join(a.work, f"{tag}.safetensors")
        save_file(conv.state_dict(), stpath)

        x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1).unsqueeze(0) / 255
        with torch.no_grad():
            y = torch.round(torch.clamp(model(x), 0, 1) * 255)
        want = y[0].permute(1, 2, 0).numpy().astype(np.int32)

        out_json = os.path.join(a.work, f"{tag}-json.png")
        run([a.binary, "upscale", src, out_json, "--weights", kpath])
        got = pixels(out_json)
        if got.shape != want.shape:
            failures.append(f"{tag}: shape {got.shape}, PyTorch {want.shape}")
            continue
        diff = np.abs(got - want)
        exact = float((diff == 0).mean())
        print(f"{tag}: {got.shape[1]}x{got.shape[0]}, max |ours - PyTorch| = {diff.max()} LSB, {exact:.4%} exact")
        if diff.max() > 1 or exact < 0.999:
            failures.append(f"{tag}: max diff {diff.max()}, {exact:.4%} exact (want <= 1 LSB, >= 99.9%)")

        out_st = os.path.join(a.work, f"{tag}-safetensors.png")
        run([a.binary, "upscale", src, out_st, "--weights", stpath])
        if not np.array_equal(pixels(out_st), got):
            failures.append(f"{tag}: --weights k.safetensors (torch's save_file) differs from --weights kernel.json")

        if init == "icnr":
            own = os.path.join(a.work, f"{tag}-own.png")
            run([a.binary, "upscale", src, own, "--scale", str(r), "--kernel-size", str(k), "--seed", "7"])
            if not np.array_equal(pixels(own), got):
                failures.append(f"{tag}: the round trip through PyTorch changed the output")

    if failures:
        print("\n".join(["FAILED:"] + failures))
        sys.exit(1)
    print("kernel JSON -> PyTorch: same output as icnr-upscale (within 1 LSB); safetensors round trip exact")


if __name__ == "__main__":
    main()
