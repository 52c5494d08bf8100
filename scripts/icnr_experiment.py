#!/usr/bin/env python3
"""ICNR vs PyTorch's default init for the sub-pixel conv of espcn-x2, everything else identical.

Each pair trains the espcn-x2 network (conv 3->32 k5, tanh, 32->16 k3, tanh, 16->12 k3, PixelShuffle(2)) with the
same seed (so the first two convs start identical: the ICNR draw happens after every conv is built), the same
batches (numpy default_rng(seed)), steps, optimiser and cosine schedule as scripts/train.py; only the init of the
last conv differs: ICNR (kaiming_normal W0 [3, 16, 3, 3], repeat_interleave(4), zero bias) or PyTorch's default
(kaiming_uniform(a=sqrt(5)) weight and U(+-1/sqrt(fan_in)) bias, per output channel).
Pairs: with the nearest residual (as the built-in), and optionally without it (--no-residual-pair).
At fixed steps it logs the mean validation Y-PSNR and the mean checkerboard score (docs/MATHS.md) of the clamped
float outputs on the validation photos, writes assets/icnr-experiment.json and the figure
assets/icnr-vs-default-training.png.

    python scripts/icnr_experiment.py --steps 3000 [--no-residual-pair]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import sr_data  # noqa: E402
import train as T  # noqa: E402


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"icnr": "-", "default": "--"}
    colors = {"nearest": "tab:blue", "none": "tab:orange"}
    for run in res["runs"]:
        st = [h["step"] for h in run["history"]]
        x = [max(s, 1) for s in st]
        lab = f"{run['init']} init, residual {run['residual']}"
        ax[0].plot(x, [h["val_y_psnr"] for h in run["history"]], styles[run["init"]], marker="o", ms=3,
                   color=colors[run["residual"]], label=lab)
        ax[1].plot(x, [h["checkerboard"] for h in run["history"]], styles[run["init"]], marker="o", ms=3,
                   color=colors[run["residual"]], label=lab)
    for k in ("bicubic", "lanczos"):
        ax[0].axhline(res["baselines_val_y_psnr"][k], color="gray", lw=0.8, ls=":" if k == "bicubic" else "-.")
        ax[0].text(1, res["baselines_val_y_psnr"][k] + 0.1, k, color="gray", fontsize=8)
    ax[0].set_xscale("log")
    ax[1].set_xscale("log")
    ax[1].set_yscale("symlog", linthresh=1e-3)
    ax[0].set_xlabel("training step (step 0 plotted at 1)")
    ax[1].set_xlabel("training step (step 0 plotted at 1)")
    ax[0].set_ylabel("validation Y-PSNR (dB), x2")
    ax[1].set_ylabel("checkerboard score (0 = every 2x2 block uniform)")
    lo = min(h["val_y_psnr"] for run in res["runs"] for h in run["history"])
    ax[0].set_ylim(max(lo - 0.5, res["baselines_val_y_psnr"]["bicubic"] - 8), None)
    ax[1].set_ylim(bottom=0)
    ax[0].legend(fontsize=8)
    ax[1].legend(fontsize=8)
    ax[0].set_title("espcn-x2: validation Y-PSNR (axis clipped below)")
    ax[1].set_title("espcn-x2: checkerboard score of validation outputs")
    fig.suptitle(f"ICNR vs default init of the sub-pixel conv (same seed {res['seed']}, batches, "
                 f"{res['steps']} steps)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def md_table(res):
    runs = res["runs"]
    steps = [h["step"] for h in runs[0]["history"]]
    head = "| step | " + " | ".join(f"{r['init']}, res. {r['residual']}: Y-PSNR / checker" for r in runs) + " |"
    L = [f"From `{res['command']}` ({res['date']}; seed {res['seed']}, batch {res['batch']}, LR patch "
         f"{res['lr_patch']}, {res['steps']} steps, cosine lr; validation mean; bicubic "
         f"{res['baselines_val_y_psnr']['bicubic']:.2f} dB, Lanczos {res['baselines_val_y_psnr']['lanczos']:.2f} dB):",
         "", head, "| --- |" + " --- |" * len(runs)]
    for i, st in enumerate(steps):
        cells = []
        for r in runs:
            h = r["history"][i]
            cells.append(f"{h['val_y_psnr']:.2f} / {h['checkerboard']:.4f}")
        L.append(f"| {st} | " + " | ".join(cells) + " |")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--no-residual-pair", action="store_true", help="also run both inits without the residual")
    ap.add_argument("--json", default=os.path.join(ROOT, "assets/icnr-experiment.json"))
    ap.add_argument("--png", default=os.path.join(ROOT, "assets/icnr-vs-default-training.png"))
    ap.add_argument("--configs", default=None,
                    help="comma list of INIT:RESIDUAL runs (default icnr:nearest,default:nearest[,icnr:none,default:none])")
    ap.add_argument("--merge", nargs="+", default=None,
                    help="only merge these result JSON files (runs concatenated) into --json/--png/--md")
    ap.add_argument("--md", default=os.path.join(ROOT, "MODELS.md"), help="MODELS.md to write the table into ('' for none)")
    a = ap.parse_args()
    if a.merge:
        parts = [json.load(open(p)) for p in a.merge]
        res = parts[0]
        res["runs"] = [run for p in parts for run in p["runs"]]
        res["command"] = (f"python scripts/icnr_experiment.py --steps {res['steps']} --configs "
                          + ",".join(f"{r['init']}:{r['residual']}" for r in res["runs"])
                          + " (run as one process per config, then joined with --merge)")
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        plot(res, a.png)
        if a.md:
            from eval_quality import write_into
            write_into(a.md, md_table(res), "<!-- icnr:begin -->", "<!-- icnr:end -->")
        print(md_table(res))
        return
    torch.set_num_threads(1)
    np.random.seed(a.seed)
    r = 2
    train_set = sr_data.train_set()
    val = sr_data.validation_set()
    eval_at = sorted({s for s in [0, 25, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800] if s < a.steps}
                     | {a.steps})
    from eval_quality import BASELINES, pil_upscale, y_psnr
    base = {k: float(np.mean([y_psnr(pil_upscale(sr_data.make_lr(hr, r), r, BASELINES[k]), hr, r)
                              for _, hr in val])) for k in ("bicubic", "lanczos")}
    configs = [("icnr", "nearest"), ("default", "nearest")]
    if a.no_residual_pair:
        configs += [("icnr", "none"), ("default", "none")]
    if a.configs:
        configs = [tuple(c.split(":")) for c in a.configs.split(",")]
    res = {"experiment": "espcn-x2, sub-pixel conv init: ICNR vs PyTorch default",
           "script": "scripts/icnr_experiment.py", "script_commit": T.git_commit_of("scripts/icnr_experiment.py"),
           "command": "python scripts/icnr_experiment.py " + " ".join(sys.argv[1:]),
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "seed": a.seed, "steps": a.steps, "batch": a.batch, "lr_patch": a.patch, "scale": r,
           "optimizer": "Adam(lr=1e-3)", "lr_schedule": "cosine to 1e-5 over the steps", "loss": "L1",
           "data": [n for n, _ in train_set], "validation": [n for n, _ in val],
           "checkerboard": "docs/MATHS.md score of clamp(float output, 0, 1), colour channels, mean over validation",
           "baselines_val_y_psnr": base, "runs": []}
    for init, resid in configs:
        model = T.build("espcn", r, a.seed, init, residual=resid)
        print(f"== {init} init, residual {resid}", flush=True)
        hist, wall = T.train(model, r, a.steps, a.batch, a.patch, 1e-3, a.seed, val, eval_at, checker=True,
                             train_set=train_set, log=lambda s: print(s, flush=True))
        res["runs"].append({"init": init, "residual": resid, "wall_time_s": round(wall, 1),
                            "history": [{"step": s, "val_y_psnr": round(p, 4), "checkerboard": round(c, 6)}
                                        for s, p, c, _ in hist]})
        os.makedirs(os.path.dirname(a.json), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        plot(res, a.png)
    if a.md:
        from eval_quality import write_into
        write_into(a.md, md_table(res), "<!-- icnr:begin -->", "<!-- icnr:end -->")
    print(md_table(res))
    print(f"wrote {a.json} and {a.png}")


if __name__ == "__main__":
    main()
