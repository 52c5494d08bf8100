#!/usr/bin/env python3
"""Whole-pipeline benchmark: `icnr-upscale upscale in.png out.png` against the in-process Python pipeline.

The job: a 1024x1024 RGB PNG in, the upscaled PNG out, written with fast compression. Two modes:

- Model mode (`--model NAME_OR_FILE`, e.g. `--model espcn-x2`, the default trained model for scale 2; this is the
  mode of the speed targets): the whole trained network (convs, activations, pixel shuffle, residual; see
  scripts/models.py). The Python side loads the model with scripts/models.py: from the file when the argument is an
  existing file (JSON or .safetensors), else from `icnr-upscale models NAME`'s JSON. Ours is
  `icnr-upscale upscale in.png out.png --model NAME_OR_FILE` (the model decides the scale). Target: >= 3x faster than
  Python, outputs within 1 LSB; ours' peak RSS is reported.
- Kernel mode (no `--model`): one 2x sub-pixel conv (Conv2d(3 -> 12, k=3) + PixelShuffle(2)); the Python side loads
  `icnr-upscale kernel`'s JSON into torch and ours runs `--scale 2 --kernel-size 3 --init icnr`. ICNR is the target
  row (>= 4x faster than Python, peak RSS <= 120 MB); `--also-untied` adds `--init default`, where the engine cannot
  use its ICNR fast path.

Both modes use the very same weights on both sides, and the script checks that the two output images agree within
1 LSB and reports the % of exactly equal samples. (Same weights matter: the output's content decides how long PNG
encoding takes.)

- Python (in-process, so it pays no interpreter or torch import start-up: generous to it): Pillow decode ->
  torch tensor /255 -> the model's forward (`torch.set_num_threads(2)`, `inference_mode`) -> clamp/round to u8 ->
  Pillow PNG save with `compress_level=1`. Median of --runs runs after warm-up, with the per-stage split. Its peak
  RSS is measured on a separate process (`--once`, interpreter and torch import included).
- icnr-upscale: the wall time of the whole process, start-up included, timed by hyperfine when it is installed
  (`apt-get install -y hyperfine`), else by subprocess timing; median of --runs. Its peak RSS is read from
  `/usr/bin/time -v` (Debian package `time`), the maximum over 3 runs.

The test image is photo-like and deterministic (fixed seed): smooth illumination gradients, soft blobs, hard-edged
shapes, fine texture and sensor-like noise, so that both PNG codecs see realistic entropy (a flat or purely random
image would flatter or penalise compression).

Run from the repository root:

    cargo build --release --bin icnr-upscale
    # a Python with torch, numpy and Pillow:
    python3 scripts/bench_pipeline.py --model espcn-x2     # model mode (the speed targets)
    python3 scripts/bench_pipeline.py --model models/espcn-x2.json   # the same, the model from a file
    python3 scripts/bench_pipeline.py --also-untied        # kernel mode
    python3 scripts/bench_pipeline.py --make-image 512 /tmp/img512.png   # only write a test image

The last stdout line is a JSON summary (`--json-out FILE` also writes it to FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_SPEEDUP = 4.0  # kernel mode
TARGET_SPEEDUP_MODEL = 3.0  # model mode
TARGET_RSS_MB = 120.0


def make_test_image(size: int, seed: int = 7):
    """A deterministic photo-like RGB8 image as a numpy array [size, size, 3]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.zeros((size, size, 3), np.float32)
    # Sky-to-ground illumination gradient, different per channel.
    img[..., 0] = 0.55 + 0.30 * yy - 0.10 * xx
    img[..., 1] = 0.60 + 0.15 * np.sin(2.1 * xx + 0.5) - 0.20 * yy
    img[..., 2] = 0.85 - 0.45 * yy
    # Soft coloured blobs (out-of-focus objects).
    for _ in range(24):
        cx, cy = rng.random(2)
        r = 0.03 + 0.15 * rng.random()
        col = rng.random(3) - 0.5
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += 0.5 * g[..., None] * col
    # Hard-edged shapes (buildings, objects in focus).
    for _ in range(14):
        x0, y0 = rng.random(2) * 0.9
        w, h = 0.03 + 0.25 * rng.random(2)
        col = rng.random(3)
        mask = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
        img[mask] = 0.35 * img[mask] + 0.65 * col
    # Fine texture (foliage, fabric) and sensor noise.
    tex = np.sin(xx * size / 3.1 + 2 * np.sin(yy * 17)) * np.sin(yy * size / 4.3)
    img += 0.04 * tex[..., None]
    img += rng.normal(0.0, 0.02, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_test_image(size: int, path: str, seed: int = 7) -> None:
    from PIL import Image

    Image.fromarray(make_test_image(size, seed), "RGB").save(path, format="PNG")


def icnr_model(torch, scale: int, k: int, seed: int = 0):
    """Conv2d + PixelShuffle with ICNR(kaiming_normal) weights (repeat_interleave) and a zero bias, from torch's RNG."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(3, 3 * scale * scale, k, padding=k // 2)
    w0 = torch.empty(3, 3, k, k)
    torch.nn.init.kaiming_normal_(w0)
    with torch.no_grad():
        conv.weight.copy_(w0.repeat_interleave(scale * scale, dim=0))
        conv.bias.zero_()
    return torch.nn.Sequential(conv, torch.nn.PixelShuffle(scale)).eval()


def model_from_kernel_json(torch, text: str):
    """Conv2d + PixelShuffle loaded from icnr-upscale's kernel JSON (`torch.tensor(j["weight"])` loads it)."""
    j = json.loads(text)
    k, r = j["kernel_size"], j["scale"]
    conv = torch.nn.Conv2d(j["in_channels"], j["out_channels"], k, padding=k // 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(j["weight"], dtype=torch.float32))
        conv.bias.copy_(torch.tensor(j.get("bias") or [0.0] * j["out_channels"], dtype=torch.float32))
    return torch.nn.Sequential(conv, torch.nn.PixelShuffle(r)).eval()


def trained_model_json(name_or_file: str, bin_path: str | None) -> tuple[str, str]:
    """The JSON text (or, for a .safetensors file, the path) of a trained model, and where it came from.

    An existing file is read as it is; otherwise the argument is a model name and its JSON is
    `icnr-upscale models NAME`'s output (or, with no usable binary, the repository's models/NAME.json).
    """
    if os.path.isfile(name_or_file):
        if name_or_file.endswith(".safetensors"):
            return os.path.abspath(name_or_file), f"file {name_or_file}"
        with open(name_or_file, encoding="utf-8") as f:
            return f.read(), f"file {name_or_file}"
    if bin_path and os.access(bin_path, os.X_OK):
        cmd = [os.path.abspath(bin_path), "models", name_or_file]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout, f"`{' '.join(cmd)}`"
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", f"{name_or_file}.json")
    if not os.path.isfile(path):
        raise SystemExit(f"--model {name_or_file}: not a file, and no usable {bin_path} to ask for it by name")
    with open(path, encoding="utf-8") as f:
        return f.read(), f"file {os.path.normpath(path)}"


def load_trained_model(text_or_path: str):
    """scripts/models.py's nn.Module for a model JSON text or a .safetensors path, in eval mode."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import models  # scripts/models.py (imports torch)

    if text_or_path.lstrip().startswith("{"):
        return models.load_json(text_or_path).eval()
    return models.load(text_or_path).eval()


def python_pipeline(torch, model, inp: str, out: str) -> tuple[float, float, float]:
    """One run; returns (decode, conv or model forward, encode) milliseconds."""
    import numpy as np
    from PIL import Image

    t0 = time.perf_counter()
    with Image.open(inp) as im:
        arr = np.array(im.convert("RGB"))  # a writable copy, as torch.from_numpy wants
    t1 = time.perf_counter()
    with torch.inference_mode():
        x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        y = model(x)
        y = y.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)[0].permute(1, 2, 0).contiguous().numpy()
    t2 = time.perf_counter()
    Image.fromarray(y, "RGB").save(out, format="PNG", compress_level=1)
    t3 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3


def time_cli_hyperfine(cmd: list[str], runs: int, warmup: int, workdir: str) -> tuple[float, list[float]]:
    export = os.path.join(workdir, "hyperfine.json")
    subprocess.run(
        ["hyperfine", "--style", "none", "--warmup", str(warmup), "--runs", str(runs), "-N",
         "--export-json", export, " ".join(cmd)],
        check=True, capture_output=True, text=True,
    )
    with open(export) as f:
        res = json.load(f)["results"][0]
    times = [t * 1e3 for t in res["times"]]
    return statistics.median(times), times


def time_cli_subprocess(cmd: list[str], runs: int, warmup: int) -> tuple[float, list[float]]:
    for _ in range(warmup):
        subprocess.run(cmd, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), times


def peak_rss_mb(cmd: list[str], runs: int = 3) -> float | None:
    if not os.access("/usr/bin/time", os.X_OK):
        return None
    best = 0.0
    for _ in range(runs):
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-500:]}")
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        if m:
            best = max(best, int(m.group(1)) / 1024.0)
    return best


def input_image(args, workdir: str) -> tuple[str, int, int]:
    """The input PNG (--input, or the generated test image), its size; prints the header line."""
    from PIL import Image

    inp = args.input or os.path.join(workdir, f"in{args.size}.png")
    if not args.input:
        write_test_image(args.size, inp)
    with Image.open(inp) as im:
        w, h = im.size
    in_kb = os.path.getsize(inp) / 1024
    print(f"# input {inp}: {w}x{h}, {in_kb:.0f} KiB; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC", flush=True)
    return inp, w, h


def compare_outputs(ours: str, py: str, size: tuple[int, int]) -> tuple[int, float, int, int]:
    """(max |diff| in LSB, fraction of exactly equal samples, samples that differ, samples) of two RGB PNGs."""
    import numpy as np
    from PIL import Image

    with Image.open(ours) as a, Image.open(py) as b:
        assert a.size == b.size == size, (a.size, b.size, size)
        diff = np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16))
    return int(diff.max()), float((diff == 0).mean()), int((diff != 0).sum()), int(diff.size)


def time_cli(cmd: list[str], runs: int, warmup: int, workdir: str) -> tuple[float, list[float], str]:
    if shutil.which("hyperfine"):
        med, times = time_cli_hyperfine(cmd, runs, warmup, workdir)
        return med, times, "hyperfine"
    med, times = time_cli_subprocess(cmd, runs, warmup)
    return med, times, "subprocess"


def run_model_mode(args, ap) -> int:
    """Model mode: the trained network on both sides (see the module docstring)."""
    if not args.skip_ours and not os.access(args.bin, os.X_OK):
        ap.error(f"{args.bin} is not an executable: run `cargo build --release --bin icnr-upscale` first, "
                 "or pass --skip-ours")
    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    workdir = tempfile.mkdtemp(prefix="icnr-bench-pipeline-")
    try:
        text_or_path, source = trained_model_json(args.model, None if args.skip_ours else args.bin)
        model = load_trained_model(text_or_path)
        scale = model.scale
        if args.scale is not None and args.scale != scale:
            ap.error(f"--scale {args.scale} disagrees with model {model.name}'s scale {scale}")
        if text_or_path.lstrip().startswith("{"):
            model_file = os.path.join(workdir, "model.json")  # for the --once process
            with open(model_file, "w", encoding="utf-8") as f:
                f.write(text_or_path)
        else:
            model_file = text_or_path
        n_params = sum(p.numel() for p in model.parameters())
        inp, w, h = input_image(args, workdir)
        print(f"# model {model.name}: x{scale}, {n_params} parameters, residual {model.residual}; from {source}; "
              f"torch {torch.__version__}, {args.threads} threads", flush=True)
        out_size = (w * scale, h * scale)

        py_out = os.path.join(workdir, "py_model.png")
        for _ in range(args.warmup):
            python_pipeline(torch, model, inp, py_out)
        stages = [python_pipeline(torch, model, inp, py_out) for _ in range(args.runs)]
        py_total = statistics.median(sum(st) for st in stages)
        py_dec, py_fwd, py_enc = (statistics.median(st[i] for st in stages) for i in range(3))
        with Image.open(py_out) as im:
            assert im.size == out_size, im.size
        print(f"# python, model {model.name}: {py_total:.1f} ms (decode {py_dec:.1f}, forward {py_fwd:.1f}, encode "
              f"{py_enc:.1f}); output {os.path.getsize(py_out) / 1024:.0f} KiB", flush=True)
        # The same pipeline as its own process, for its peak RSS (interpreter and torch import included).
        py_rss = peak_rss_mb([sys.executable, os.path.abspath(__file__), "--once", inp,
                              os.path.join(workdir, "py_once.png"), "--model", model_file,
                              "--threads", str(args.threads)], runs=1)
        rows = [{"name": f"Python, in-process (Pillow + PyTorch + Pillow level 1), model {model.name}",
                 "model": model.name, "median_ms": py_total, "decode_ms": py_dec, "forward_ms": py_fwd,
                 "encode_ms": py_enc, "peak_rss_mb": py_rss,
                 "peak_rss_note": "separate process, interpreter and torch import included",
                 "output_kib": os.path.getsize(py_out) / 1024, "py_total": py_total}]

        if not args.skip_ours:
            model_arg = os.path.abspath(args.model) if os.path.isfile(args.model) else args.model
            out = os.path.join(workdir, "ours_model.png")
            cmd = [os.path.abspath(args.bin), "upscale", inp, out, "--model", model_arg]
            first = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if first.returncode != 0:
                print(f"{' '.join(cmd)} exited {first.returncode}: {first.stderr.strip()}", file=sys.stderr)
                return 1
            print(f"# {' '.join(cmd)}\n#   -> {first.stdout.strip()}", flush=True)
            if f"model {model.name}," not in first.stdout:
                print(f"#   WARNING: its report does not name model {model.name}", flush=True)
            # Same job: the two outputs must agree within 1 LSB (PyTorch parity of the engine).
            max_diff, frac_exact, n_diff, n_samples = compare_outputs(out, py_out, out_size)
            print(f"#   output vs Python: max |diff| {max_diff} LSB, {100 * frac_exact:.4f}% exact "
                  f"({n_diff} of {n_samples} samples differ)"
                  + ("" if max_diff <= 1 else "  WARNING: not the same image, the comparison is not like for like"),
                  flush=True)
            med, times, timer = time_cli(cmd, args.runs, args.warmup, workdir)
            rss = peak_rss_mb(cmd)
            rows.append({"name": f"icnr-upscale upscale --model {args.model} (whole process)", "model": model.name,
                         "median_ms": med, "min_ms": min(times), "peak_rss_mb": rss, "timer": timer,
                         "output_kib": os.path.getsize(out) / 1024, "command": " ".join(cmd),
                         "max_diff_vs_python": max_diff, "exact_fraction_vs_python": frac_exact,
                         "differing_samples_vs_python": n_diff, "samples": n_samples, "py_total": py_total})
            print(f"# ours, model {model.name}: {med:.1f} ms ({timer}, min {min(times):.1f}), peak RSS "
                  f"{'-' if rss is None else f'{rss:.1f} MB'}", flush=True)

        print()
        print(f"| {w}x{h} PNG -> {out_size[0]}x{out_size[1]} PNG, model {model.name} | median ms | "
              f"speed-up vs Python (same model) | peak RSS MB | output KiB | vs Python: max diff, % exact |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in rows:
            sp = r["py_total"] / r["median_ms"]
            rss = "-" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:.1f}"
            agree = ("-" if "max_diff_vs_python" not in r else
                     f"{r['max_diff_vs_python']} LSB, {100 * r['exact_fraction_vs_python']:.4f}%")
            print(f"| {r['name']} | {r['median_ms']:.1f} | {sp:.2f}x | {rss} | {r['output_kib']:.0f} | {agree} |")
        verdicts = {}
        if len(rows) > 1:
            ours = rows[1]
            verdicts[f">= {TARGET_SPEEDUP_MODEL:g}x faster than Python"] = \
                ours["py_total"] / ours["median_ms"] >= TARGET_SPEEDUP_MODEL
            verdicts["same job: outputs agree with Python within 1 LSB"] = ours["max_diff_vs_python"] <= 1
            print()
            print(f"Targets, model {model.name}:")
            for name, ok in verdicts.items():
                print(f"  {'PASS' if ok else 'MISS'}  {name}")
            rss = ours["peak_rss_mb"]
            print(f"  info  icnr-upscale peak RSS: {'-' if rss is None else f'{rss:.1f} MB'} "
                  f"(max of 3 runs of /usr/bin/time -v)")
        print()
        print("Note: Python runs in-process (no interpreter/torch start-up); icnr-upscale is timed as a whole process.")
        summary = {"bench": "pipeline", "mode": "model", "model": args.model, "model_name": model.name,
                   "scale": scale, "parameters": n_params, "input": [w, h], "threads_python": args.threads,
                   "rows": rows, "targets": verdicts,
                   "ours_peak_rss_mb": rows[1]["peak_rss_mb"] if len(rows) > 1 else None}
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(summary, f, indent=2)
        print(json.dumps(summary))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-image", nargs=2, metavar=("SIZE", "PATH"), help="write a test PNG and exit")
    ap.add_argument("--once", nargs=2, metavar=("IN", "OUT"), help="run the Python pipeline once (for its RSS)")
    ap.add_argument("--model", metavar="NAME_OR_FILE",
                    help="model mode: a trained model's name (e.g. espcn-x2) or a model file (JSON or .safetensors)")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--scale", type=int, default=None,
                    help="kernel mode: scale (default 2); model mode: the model's scale (given, it must agree)")
    ap.add_argument("--kernel-size", type=int, default=3, help="kernel mode only")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads (the CLI uses all cores)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bin", default="target/release/icnr-upscale")
    ap.add_argument("--input", help="use this PNG instead of the generated test image")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--also-untied", action="store_true", help="kernel mode: also time the CLI with --init default")
    ap.add_argument("--json-out")
    args = ap.parse_args()

    if args.make_image:
        write_test_image(int(args.make_image[0]), args.make_image[1])
        return 0
    if args.model and args.also_untied:
        ap.error("--also-untied is a kernel-mode option; it does not go with --model")
    if args.once:
        import torch

        torch.set_num_threads(args.threads)
        if args.model:
            model = load_trained_model(trained_model_json(args.model, args.bin)[0])
        else:
            model = icnr_model(torch, args.scale or 2, args.kernel_size)
        python_pipeline(torch, model, *args.once)
        return 0
    if args.model:
        return run_model_mode(args, ap)
    args.scale = args.scale or 2
    if not args.skip_ours and not os.access(args.bin, os.X_OK):
        ap.error(f"{args.bin} is not an executable: run `cargo build --release` first, or pass --skip-ours")

    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    workdir = tempfile.mkdtemp(prefix="icnr-bench-pipeline-")
    try:
        inp = args.input or os.path.join(workdir, f"in{args.size}.png")
        if not args.input:
            write_test_image(args.size, inp)
        with Image.open(inp) as im:
            w, h = im.size
        in_kb = os.path.getsize(inp) / 1024
        print(f"# input {inp}: {w}x{h}, {in_kb:.0f} KiB; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC", flush=True)

        inits = ["icnr"] + (["default"] if args.also_untied else [])
        rows = []
        for init in inits:
            # The same kernel on both sides: icnr-upscale's own kernel JSON, loaded into torch. Without --bin (only
            # with --skip-ours) torch's own ICNR weights stand in.
            cmd_kernel = [os.path.abspath(args.bin), "kernel", "--scale", str(args.scale),
                          "--kernel-size", str(args.kernel_size), "--init", init]
            if args.skip_ours:
                if init != "icnr":
                    continue
                model = icnr_model(torch, args.scale, args.kernel_size)
            else:
                model = model_from_kernel_json(torch, subprocess.run(cmd_kernel, check=True, capture_output=True,
                                                                     text=True).stdout)
            py_out = os.path.join(workdir, f"py_{init}.png")
            for _ in range(args.warmup):
                python_pipeline(torch, model, inp, py_out)
            stages = [python_pipeline(torch, model, inp, py_out) for _ in range(args.runs)]
            py_total = statistics.median(sum(st) for st in stages)
            py_dec, py_conv, py_enc = (statistics.median(st[i] for st in stages) for i in range(3))
            with Image.open(py_out) as im:
                assert im.size == (w * args.scale, h * args.scale), im.size
            print(f"# python --init {init}: {py_total:.1f} ms (decode {py_dec:.1f}, conv {py_conv:.1f}, encode "
                  f"{py_enc:.1f}); output {os.path.getsize(py_out) / 1024:.0f} KiB", flush=True)
            # The same pipeline as its own process, for its peak RSS (interpreter and torch import included).
            py_rss = None
            if init == "icnr":
                py_rss = peak_rss_mb([sys.executable, os.path.abspath(__file__), "--once", inp,
                                      os.path.join(workdir, "py_once.png"),
                                      "--scale", str(args.scale), "--kernel-size", str(args.kernel_size),
                                      "--threads", str(args.threads)], runs=1)
            rows.append({"name": f"Python, in-process (Pillow + PyTorch + Pillow level 1), --init {init} weights",
                         "init": init, "median_ms": py_total, "decode_ms": py_dec, "conv_ms": py_conv,
                         "encode_ms": py_enc, "peak_rss_mb": py_rss,
                         "peak_rss_note": "separate process, interpreter and torch import included",
                         "output_kib": os.path.getsize(py_out) / 1024, "py_total": py_total})
            if args.skip_ours:
                continue
            out = os.path.join(workdir, f"ours_{init}.png")
            cmd = [os.path.abspath(args.bin), "upscale", inp, out, "--scale", str(args.scale),
                   "--kernel-size", str(args.kernel_size), "--init", init]
            first = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if first.returncode != 0:
                print(f"{' '.join(cmd)} exited {first.returncode}: {first.stderr.strip()}", file=sys.stderr)
                return 1
            print(f"# {' '.join(cmd)}\n#   -> {first.stdout.strip()}", flush=True)
            # Same job: the two outputs must agree within 1 LSB (PyTorch parity of the engine).
            with Image.open(out) as a, Image.open(py_out) as b:
                assert a.size == b.size == (w * args.scale, h * args.scale), (a.size, b.size)
                diff = np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16))
            max_diff, frac_exact = int(diff.max()), float((diff == 0).mean())
            print(f"#   output vs Python: max |diff| {max_diff} LSB, {100 * frac_exact:.3f}% exact"
                  + ("" if max_diff <= 1 else "  WARNING: not the same image, the comparison is not like for like"),
                  flush=True)
            if shutil.which("hyperfine"):
                med, times = time_cli_hyperfine(cmd, args.runs, args.warmup, workdir)
                timer = "hyperfine"
            else:
                med, times = time_cli_subprocess(cmd, args.runs, args.warmup)
                timer = "subprocess"
            rss = peak_rss_mb(cmd)
            rows.append({"name": f"icnr-upscale upscale --init {init} (whole process)", "init": init,
                         "median_ms": med, "min_ms": min(times), "peak_rss_mb": rss, "timer": timer,
                         "output_kib": os.path.getsize(out) / 1024, "command": " ".join(cmd),
                         "max_diff_vs_python": max_diff, "exact_fraction_vs_python": frac_exact,
                         "py_total": py_total})
            print(f"# ours --init {init}: {med:.1f} ms ({timer}, min {min(times):.1f}), peak RSS "
                  f"{'-' if rss is None else f'{rss:.1f} MB'}", flush=True)

        print()
        print(f"| {w}x{h} PNG -> {w * args.scale}x{h * args.scale} PNG | median ms | speed-up vs Python (same weights) | "
              f"peak RSS MB | output KiB |")
        print("| --- | --- | --- | --- | --- |")
        for r in rows:
            sp = r["py_total"] / r["median_ms"]
            rss = "-" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:.1f}"
            print(f"| {r['name']} | {r['median_ms']:.1f} | {sp:.2f}x | {rss} | {r['output_kib']:.0f} |")
        verdicts = {}
        if len(rows) > 1:
            ours = rows[1]
            verdicts[f">= {TARGET_SPEEDUP:g}x faster than Python"] = ours["py_total"] / ours["median_ms"] >= TARGET_SPEEDUP
            agree = all(r.get("max_diff_vs_python", 0) <= 1 for r in rows)
            verdicts["same job: outputs agree with Python within 1 LSB"] = agree
            if ours["peak_rss_mb"] is not None:
                verdicts[f"peak RSS <= {TARGET_RSS_MB:g} MB"] = ours["peak_rss_mb"] <= TARGET_RSS_MB
            print()
            print("Targets, ICNR (the CLI default):")
            for name, ok in verdicts.items():
                print(f"  {'PASS' if ok else 'MISS'}  {name}")
        print()
        print("Note: Python runs in-process (no interpreter/torch start-up); icnr-upscale is timed as a whole process.")
        summary = {"bench": "pipeline", "mode": "kernel", "rows": rows, "targets": verdicts}
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(summary, f, indent=2)
        print(json.dumps(summary))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
