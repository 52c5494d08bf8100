#!/usr/bin/env python3
"""Train icnr-upscale's built-in super-resolution models (PyTorch, CPU, one thread, seeded).

Built-in models (names fixed):
- espcn-x2, espcn-x3, espcn-x4 (each scale's default): conv2d 3->32 k5, tanh, conv2d 32->16 k3, tanh,
  conv2d 16->3r^2 k3, pixel_shuffle(r), residual "nearest". The sub-pixel (last) conv is ICNR-initialised: a
  kaiming_normal sub-kernel W0 [3, 16, 3, 3], W = W0.repeat_interleave(r*r, dim=0), zero bias. The first two convs
  keep PyTorch's default init.
  The shipped espcn-x4 was grown from that shape by --grow (a conv 32->32 k3 + prelu inserted after the first tanh,
  identity-initialised); see MODELS.md "Run 3".
- subpixel-x2, subpixel-x3, subpixel-x4: one ICNR-initialised conv2d 3->3r^2 k5 (W0 [3, 3, 5, 5]), pixel_shuffle(r),
  residual "none".

Training: RGB, L1 loss on the HR patch, LR patches PATCHxPATCH cut from the Pillow-bicubic LR of each whole training
image (HR patch = the aligned r*PATCH square), images drawn in proportion to their area, random rot90/flips,
Adam(lr 1e-3), cosine decay to 1e-5 over the steps. Seeds: torch.manual_seed(seed) before the layers are built,
numpy default_rng(seed) for the batches. Validation Y-PSNR (scripts/eval_quality.py) is logged as it goes.

    python scripts/train.py espcn-x2 --steps 9000      # writes models/espcn-x2.json
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import models as M  # noqa: E402
import sr_data  # noqa: E402
from eval_quality import checkerboard_score, y_psnr  # noqa: E402

BUILTIN = {
    "espcn-x2": ("espcn", 2), "espcn-x3": ("espcn", 3), "espcn-x4": ("espcn", 4),
    "subpixel-x2": ("subpixel", 2), "subpixel-x3": ("subpixel", 3), "subpixel-x4": ("subpixel", 4),
}


def icnr_(conv: nn.Conv2d, r: int, sub_init: str = "kaiming_normal"):
    """ICNR: sub-kernel W0 [C_out/r^2, C_in, k, k], W = W0.repeat_interleave(r^2), bias tied (zero).

    sub_init: "kaiming_normal" (N(0, sqrt(2/fan_in))) or "dirac" (W0[c, c, k/2, k/2] = 1: exact nearest-neighbour).
    """
    out_c, in_c, k, _ = conv.weight.shape
    w0 = torch.empty(out_c // (r * r), in_c, k, k)
    if sub_init == "kaiming_normal":
        nn.init.kaiming_normal_(w0)
    elif sub_init == "dirac":
        nn.init.dirac_(w0)
    else:
        raise ValueError(sub_init)
    with torch.no_grad():
        conv.weight.copy_(w0.repeat_interleave(r * r, dim=0))
        if conv.bias is not None:
            conv.bias.zero_()


def build(arch: str, r: int, seed: int, init: str = "icnr", residual: str | None = None, width=(32, 16),
          sub_init: str = "kaiming_normal"):
    """A fresh SRModel. init: "icnr" or "default" (PyTorch's Conv2d init) for the sub-pixel conv only."""
    torch.manual_seed(seed)
    if arch == "espcn":
        a, b = width
        convs = [nn.Conv2d(3, a, 5, padding=2), nn.Conv2d(a, b, 3, padding=1), nn.Conv2d(b, 3 * r * r, 3, padding=1)]
        acts = ["tanh", "tanh"]
        residual = "nearest" if residual is None else residual
    elif arch == "subpixel":
        convs = [nn.Conv2d(3, 3 * r * r, 5, padding=2)]
        acts = []
        residual = "none" if residual is None else residual
    else:
        raise ValueError(arch)
    if init == "icnr":
        icnr_(convs[-1], r, sub_init)  # RNG drawn after every conv exists: the other convs are identical for both inits
    elif init != "default":
        raise ValueError(init)
    layers = []
    for i, c in enumerate(convs):
        layers.append({"op": "conv2d", "weight": c.weight.detach().numpy(), "bias": c.bias.detach().numpy()})
        if i < len(acts):
            layers.append({"op": acts[i]})
    layers.append({"op": "pixel_shuffle", "upscale_factor": r})
    return M.SRModel(layers, r, residual)


class Patches:
    """Aligned LR/HR patch sampler over the training images at scale r."""

    def __init__(self, train, r, patch, seed):
        self.r, self.p = r, patch
        self.lr, self.hr = [], []
        for _, hr in train:
            lr = sr_data.make_lr(hr, r)
            self.lr.append(torch.from_numpy(lr.astype(np.float32)).div_(255.0).permute(2, 0, 1).contiguous())
            self.hr.append(torch.from_numpy(hr.astype(np.float32)).div_(255.0).permute(2, 0, 1).contiguous())
        area = np.array([t.shape[1] * t.shape[2] for t in self.lr], dtype=np.float64)
        self.w = area / area.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, n):
        r, p = self.r, self.p
        xs, ys = [], []
        idx = self.rng.choice(len(self.lr), size=n, p=self.w)
        for i in idx:
            lr, hr = self.lr[i], self.hr[i]
            y = int(self.rng.integers(0, lr.shape[1] - p + 1))
            x = int(self.rng.integers(0, lr.shape[2] - p + 1))
            a = lr[:, y:y + p, x:x + p]
            b = hr[:, y * r:(y + p) * r, x * r:(x + p) * r]
            k = int(self.rng.integers(0, 4))
            if k:
                a, b = torch.rot90(a, k, (1, 2)), torch.rot90(b, k, (1, 2))
            if self.rng.integers(0, 2):
                a, b = torch.flip(a, (2,)), torch.flip(b, (2,))
            xs.append(a)
            ys.append(b)
        return torch.stack(xs), torch.stack(ys)


def validate(model, val, r, checker=False):
    """Mean validation Y-PSNR (and mean checkerboard score of the clamped float output, colour channels)."""
    ps, cs = [], []
    model.eval()
    for _, hr in val:
        lr = sr_data.make_lr(hr, r)
        sr = M.upscale_image(model, lr)
        ps.append(y_psnr(sr, hr, r))
        if checker:
            yf = np.clip(M.forward_float(model, lr.astype(np.float32) / np.float32(255)), 0, 1)
            cs.append(checkerboard_score(yf, r))
    model.train()
    return float(np.mean(ps)), (float(np.mean(cs)) if checker else None)


def git_commit_of(path):
    try:
        h = subprocess.run(["git", "log", "-1", "--format=%H", "--", path], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", path], cwd=ROOT).returncode != 0
        return h + ("+uncommitted-changes" if dirty else "")
    except Exception:
        return "unknown"


def train(model, r, steps, batch, patch, lr, seed, val, eval_at=(), checker=False, log=print, train_set=None,
          on_eval=None, loss_shave=0, lr_min=None, max_seconds=None, loss_name="l1"):
    """Train in place. Returns the history [(step, val_psnr, checker, seconds)] at the steps in eval_at.

    lr_min: the cosine schedule's end (default lr * 1e-2). max_seconds: stop (after a validation) at the first
    evaluation step past this wall time, whether or not the schedule has finished."""
    torch.set_num_threads(1)
    train_set = train_set if train_set is not None else sr_data.train_set()
    data = Patches(train_set, r, patch, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    floor = 1e-2 if lr_min is None else lr_min / lr
    if lr_min is None:
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: max(1e-2, 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    else:  # cosine from lr to exactly lr_min
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    hist = []
    t0 = time.time()
    eval_at = sorted(set(eval_at))
    for step in range(steps + 1):
        if step in eval_at:
            p, c = validate(model, val, r, checker)
            hist.append((step, p, c, time.time() - t0))
            log(f"step {step:6d}  val Y-PSNR {p:.3f}" + (f"  checker {c:.4f}" if c is not None else "")
                + f"  lr {opt.param_groups[0]['lr']:.2e}  {time.time() - t0:.0f}s")
            if on_eval is not None and step < steps:
                on_eval(step, hist, time.time() - t0)
            if max_seconds is not None and step < steps and time.time() - t0 > max_seconds:
                log(f"stopping at step {step}: wall time {time.time() - t0:.0f}s > --max-seconds {max_seconds:g}")
                break
        if step == steps:
            break
        x, y = data.batch(batch)
        out = model(x)
        if loss_shave:
            b = loss_shave * r  # ignore the HR border whose LR receptive field reaches the zero padding
            out, y = out[:, :, b:-b, b:-b], y[:, :, b:-b, b:-b]
        loss = F.l1_loss(out, y) if loss_name == "l1" else F.mse_loss(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return hist, time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(BUILTIN))
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--patch", type=int, default=32, help="LR patch side")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--width", default="32,16", help="espcn conv widths (default 32,16)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--loss-shave", type=int, default=0, help="LR pixels of each patch border left out of the loss")
    ap.add_argument("--icnr-sub-init", default="kaiming_normal", choices=["kaiming_normal", "dirac"],
                    help="initializer of the ICNR sub-kernel W0")
    ap.add_argument("--checkpoint", action="store_true", help="also write the model file at every evaluation")
    ap.add_argument("--init-from", default=None, metavar="PATH",
                    help="continue from this model file's weights (same shape) instead of a fresh ICNR init; its "
                         "training record is kept under training.previous_runs")
    ap.add_argument("--grow", default=None, metavar="PATH",
                    help="continue from this model file's weights with one layer pair inserted after its first "
                         "activation: conv C->C k3 initialised as the identity (dirac weights, zero bias), then prelu "
                         "with per-channel slopes 1 (also the identity), so the grown network starts as exactly the "
                         "loaded one; its training record is kept under training.previous_runs")
    ap.add_argument("--keep-arch", action="store_true",
                    help="with --init-from: take that file's layer list as it is (e.g. a --grow result), whatever its "
                         "shape, and keep its description")
    ap.add_argument("--loss", default="l1", choices=["l1", "l2"],
                    help="l1 (default) or l2 (mean squared error, the quantity PSNR measures)")
    ap.add_argument("--lr-min", type=float, default=None, help="end of the cosine schedule (default lr * 1e-2)")
    ap.add_argument("--keep-best", action="store_true",
                    help="write the model file at each evaluation that improves the best validation Y-PSNR so far "
                         "(including step 0), and keep that best model at the end")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="stop at the first evaluation past this wall time (schedule possibly unfinished)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    np.random.seed(a.seed)
    arch, r = BUILTIN[a.name]
    width = tuple(int(v) for v in a.width.split(","))
    model = build(arch, r, a.seed, "icnr", width=width, sub_init=a.icnr_sub_init)
    prev = None
    if a.init_from:
        import hashlib
        src = M.load_json(a.init_from)
        fresh = [tuple(p.shape) for p in model.parameters()]
        same = [tuple(p.shape) for p in src.parameters()] == fresh or a.keep_arch
        if not same or src.scale != r or src.residual != model.residual:
            sys.exit(f"--init-from {a.init_from}: shape/scale/residual differ from {a.name}")
        with open(a.init_from, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        prev = {"path": os.path.relpath(os.path.abspath(a.init_from), ROOT), "sha256": sha,
                "training": src.training_info}
        model = src
    if a.grow:
        import hashlib
        if a.init_from:
            sys.exit("--grow and --init-from exclude each other")
        src = M.load_json(a.grow)
        if src.scale != r or src.residual != model.residual:
            sys.exit(f"--grow {a.grow}: scale/residual differ from {a.name}")
        layers = src.layer_dicts()
        i = next(k for k, L in enumerate(layers) if L["op"] in ("tanh", "relu", "leaky_relu", "prelu"))
        c = layers[i - 1]["weight"].shape[0]
        w = np.zeros((c, c, 3, 3), np.float32)
        w[np.arange(c), np.arange(c), 1, 1] = 1.0
        layers[i + 1:i + 1] = [{"op": "conv2d", "weight": w, "bias": np.zeros(c, np.float32)},
                               {"op": "prelu", "weight": np.ones(c, np.float32)}]
        grown = M.SRModel(layers, r, src.residual)
        x = torch.rand(1, 3, 20, 20)
        with torch.no_grad():
            assert torch.allclose(grown(x), src(x), atol=1e-6), "the grown network must start as the loaded one"
        with open(a.grow, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        prev = {"path": os.path.relpath(os.path.abspath(a.grow), ROOT), "sha256": sha,
                "training": src.training_info}
        model = grown
    train_set = sr_data.train_set()
    val = sr_data.validation_set()
    ev = list(range(0, a.steps, a.eval_every)) + [a.steps]
    script_commit = git_commit_of("scripts/train.py")  # at start: the code that runs
    out = a.out or os.path.join(ROOT, "models", a.name + ".json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    nparams = sum(p.numel() for p in model.parameters())
    model.name = a.name
    if a.keep_arch and a.init_from:
        pass  # the description of the --init-from file is kept
    elif a.grow:
        parts = []
        for L in model.layer_dicts():
            if L["op"] == "conv2d":
                o, i_, k, _ = L["weight"].shape
                parts.append(f"conv {i_}->{o} k{k}")
            elif L["op"] == "pixel_shuffle":
                parts.append(f"PixelShuffle({r})")
            else:
                parts.append(L["op"])
        model.description = (f"ESPCN-shaped x{r} upscaler grown by one layer ({', '.join(parts)}, nearest residual, "
                             f"ICNR sub-pixel layer; {nparams} parameters) trained on photographs.")
    elif arch == "espcn":
        model.description = (f"ESPCN-shaped x{r} upscaler (conv 3->{width[0]} k5, tanh, {width[0]}->{width[1]} k3, "
                             f"tanh, {width[1]}->{3 * r * r} k3, PixelShuffle({r}), nearest residual, ICNR sub-pixel "
                             f"layer; {nparams} parameters) trained on photographs.")
    else:
        model.description = (f"Single sub-pixel layer x{r} upscaler (one ICNR-initialised conv 3->{3 * r * r} k5, "
                             f"PixelShuffle({r}); {nparams} parameters) trained on photographs.")

    best = {"p": -1e9, "step": None, "state": None}

    def write(hist, wall, done, step_of_weights=None):
        info = {
            "script": "scripts/train.py", "script_commit": script_commit,
            "command": "python scripts/train.py " + " ".join(sys.argv[1:]),
            "seed": a.seed, "steps": a.steps if done else hist[-1][0], "batch": a.batch, "lr_patch": a.patch,
            "hr_patch": a.patch * r,
            "optimizer": f"Adam(lr={a.lr})",
            "lr_schedule": f"cosine from {a.lr:g} to {a.lr * 1e-2:g} over {a.steps} steps (per step)"
                           + ("" if done else f"; CHECKPOINT at step {hist[-1][0]}, schedule not finished"),
            "loss": ("L1" if a.loss == "l1" else "L2 (mean squared error)") + " on RGB HR patches in [0,1]" + (f", the outer {a.loss_shave * r} HR pixels ({a.loss_shave} LR) "
                                                       "of each patch excluded" if a.loss_shave else ""),
            "init": ("PyTorch default for all convs except the sub-pixel conv: ICNR (" + a.icnr_sub_init
                     + " sub-kernel W0, repeat_interleave(r*r), zero bias)") if prev is None else
                    (f"continued from the weights of {prev['path']} (sha256 {prev['sha256']}), the run in previous_runs"
                     + ("" if not a.grow else f", grown by --grow: after its first activation a conv {c}->{c} k3 "
                        "initialised as the identity (dirac, zero bias) and a prelu with per-channel slopes 1 were "
                        "inserted, so the grown network started as exactly that model")),
            "augmentation": "random rot90 (k in 0..3) and horizontal flip per patch",
            "degradation": "LR = Pillow BICUBIC downscale by r of each whole training image",
            "data": [n for n, _ in train_set], "validation": [n for n, _ in val],
            "torch": torch.__version__, "threads": 1,
            "wall_time_s": round(wall, 1), "val_y_psnr_history": [[s, round(p, 3)] for s, p, _, _ in hist],
            "final_val_y_psnr": round(hist[-1][1], 3),
        }
        if a.lr_min is not None:
            info["lr_schedule"] = info["lr_schedule"].replace(f"to {a.lr * 1e-2:g}", f"to {a.lr_min:g}")
        if step_of_weights is not None:
            info["weights_from_step"] = step_of_weights
            info["final_val_y_psnr"] = round(dict((s, p) for s, p, _, _ in hist)[step_of_weights], 3)
            info["weights_note"] = ("--keep-best: the weights are those of the best validation evaluation "
                                    f"(step {step_of_weights}), not necessarily the last step")
        if prev is not None:
            info["previous_runs"] = ([prev["training"]] if "previous_runs" not in prev["training"] else
                                     prev["training"]["previous_runs"] + [
                                         {k: v for k, v in prev["training"].items() if k != "previous_runs"}])
            info["total_steps_all_runs"] = info["steps"] + sum(int(t.get("steps", 0)) for t in info["previous_runs"])
        model.training_info = info
        M.save_json(model, out + ".tmp")
        os.replace(out + ".tmp", out)
        # the written file must read back to the same network
        assert M.to_json(M.load_json(out)) == M.to_json(model)

    def on_eval(step, hist, wall):
        if a.keep_best:
            if hist[-1][1] > best["p"]:
                best.update(p=hist[-1][1], step=step,
                            state={k: v.detach().clone() for k, v in model.state_dict().items()})
                write(hist, wall, False, step)
                print(f"  best so far: step {step}, written to {out}", flush=True)
        elif a.checkpoint:
            write(hist, wall, False)

    hist, wall = train(model, r, a.steps, a.batch, a.patch, a.lr, a.seed, val, ev, train_set=train_set,
                       log=lambda s: print(s, flush=True), on_eval=on_eval if (a.checkpoint or a.keep_best) else None,
                       loss_shave=a.loss_shave, lr_min=a.lr_min, max_seconds=a.max_seconds, loss_name=a.loss)
    done = hist[-1][0] == a.steps
    if a.keep_best:
        if hist[-1][1] > best["p"]:
            best.update(p=hist[-1][1], step=hist[-1][0], state=None)
        else:
            model.load_state_dict(best["state"])
        write(hist, wall, done, best["step"])
        if not done:
            model.training_info["lr_schedule"] += f"; stopped by --max-seconds at step {hist[-1][0]}"
            M.save_json(model, out)
    else:
        write(hist, wall, done)
    print(f"wrote {out} ({os.path.getsize(out)} bytes), final val Y-PSNR {hist[-1][1]:.3f}, wall {wall:.0f}s",
          flush=True)


if __name__ == "__main__":
    main()
