#!/usr/bin/env python3
"""The Python peer of `icnr-upscale serve` for the service benchmark: FastAPI + PyTorch + Pillow.

It does the job of `POST /upscale` with a raw image body: decode with Pillow, run the network in PyTorch on the
RGB image / 255, clamp/round to u8, encode a PNG with `compress_level=1` (the `fast` compression of icnr-upscale),
answer `image/png` with an `X-Model` header naming what ran (as icnr-upscale does). Query: `scale` (2-8, default 2),
`kernel_size` (odd 1-9), `model` (`init`, or the PEER_MODEL_JSON model's own name; no other name is served).
`GET /healthz` answers `{"status":"ok"}` so the load generator's health probe works against it too.

Which network runs, as in icnr-upscale (`model` absent: a trained model for `scale` unless `kernel_size` is given):
- Trained model: with `PEER_MODEL_JSON=path` (a model file of scripts/models.py's format, e.g. the output of
  `icnr-upscale models espcn-x2`; a `.safetensors` model file works too), loaded with scripts/models.py, that model
  serves requests whose `scale` is the model's scale and that give no `kernel_size` (or `model=` its name). Its forward
  is the whole network (convs, activations, pixel shuffle, nearest residual), so both services compute the same image.
- Kernel (`X-Model: init`; also what `model=init` asks for): Conv2d(3 -> 3*r*r, k) + PixelShuffle(r), k =
  `kernel_size` (default 3). With `PEER_KERNEL_JSON=path` (the output of `icnr-upscale kernel`, loaded as
  `torch.tensor(j["weight"])`) that kernel serves its own scale and kernel size, so both services compute the very
  same image (whose content decides how long PNG encoding takes); any other (scale, kernel_size) gets
  ICNR(kaiming_normal) weights from torch's RNG.
Both variables may be set together. `model=NAME` with no PEER_MODEL_JSON model of that name and scale is a 400.

It is written the way a competent team would: the CPU work runs in Starlette's thread pool, off the event loop;
models are built once (at start-up, or once per (scale, kernel_size)) and cached; torch runs under `inference_mode`.
The torch thread count comes from `PEER_TORCH_THREADS` (default 1: with several uvicorn workers or several requests in
flight, one intra-op thread per request avoids oversubscribing the cores). It is not a hardened service: no limits
beyond those of Pillow (its decompression-bomb check), which is fine for a benchmark on loopback.

Run (from the repository root, with the development venv that has fastapi and uvicorn):

    target/release/icnr-upscale models espcn-x2 >/tmp/espcn-x2.json
    PEER_MODEL_JSON=/tmp/espcn-x2.json /work/venv/bin/python -m uvicorn peer_service:app --app-dir scripts \
        --host 127.0.0.1 --port 8081 --workers 2 --log-level warning
"""

from __future__ import annotations

import io
import json
import os
import threading

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Request, Response
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

# The same loaders as the pipeline benchmark (uvicorn runs this with --app-dir scripts).
import models as sr_models  # scripts/models.py: the trained-model format's PyTorch reference
from bench_pipeline import model_from_kernel_json

torch.set_num_threads(int(os.environ.get("PEER_TORCH_THREADS", "1")))

app = FastAPI(title="icnr-upscale Python peer")

_models: dict[tuple[int, int], torch.nn.Module] = {}
_models_lock = threading.Lock()
# Trained models by scale (PEER_MODEL_JSON); read-only after start-up.
_trained: dict[int, sr_models.SRModel] = {}


def _load_kernel_json(path: str) -> None:
    with open(path) as f:
        text = f.read()
    j = json.loads(text)
    _models[(j["scale"], j["kernel_size"])] = model_from_kernel_json(torch, text)


def _load_model_json(path: str) -> None:
    m = sr_models.load(path).eval()
    _trained[m.scale] = m


if os.environ.get("PEER_KERNEL_JSON"):
    _load_kernel_json(os.environ["PEER_KERNEL_JSON"])
if os.environ.get("PEER_MODEL_JSON"):
    _load_model_json(os.environ["PEER_MODEL_JSON"])


def model_for(scale: int, k: int) -> torch.nn.Module:
    """The cached model: the PEER_KERNEL_JSON kernel, or ICNR: a kaiming_normal sub-kernel repeat_interleave'd."""
    key = (scale, k)
    with _models_lock:
        m = _models.get(key)
        if m is None:
            gen = torch.Generator().manual_seed(0)
            conv = torch.nn.Conv2d(3, 3 * scale * scale, k, padding=k // 2)
            w0 = torch.empty(3, 3, k, k)
            torch.nn.init.kaiming_normal_(w0, generator=gen)
            with torch.no_grad():
                conv.weight.copy_(w0.repeat_interleave(scale * scale, dim=0))
                conv.bias.zero_()
            m = torch.nn.Sequential(conv, torch.nn.PixelShuffle(scale)).eval()
            _models[key] = m
        return m


def upscale_png(body: bytes, model: torch.nn.Module) -> bytes:
    try:
        with Image.open(io.BytesIO(body)) as im:
            arr = np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise HTTPException(status_code=415, detail=f"not a supported image: {type(e).__name__}") from None
    with torch.inference_mode():
        x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        y = model(x)
        y = y.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)[0].permute(1, 2, 0).contiguous().numpy()
    out = io.BytesIO()
    Image.fromarray(y, "RGB").save(out, format="PNG", compress_level=1)
    return out.getvalue()


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@app.post("/upscale")
async def upscale(request: Request, scale: int = 2, kernel_size: int | None = None,
                  model: str | None = None) -> Response:
    if not 2 <= scale <= 8:
        raise HTTPException(status_code=400, detail="scale must be 2 to 8")
    if kernel_size is not None and (kernel_size % 2 == 0 or not 1 <= kernel_size <= 9):
        raise HTTPException(status_code=400, detail="kernel_size must be odd, 1 to 9")
    trained = None if model == "init" else _trained.get(scale)
    if model is not None and model != "init":
        if trained is None or model != trained.name or kernel_size is not None:
            served = ", ".join(f"{m.name} (scale {r})" for r, m in sorted(_trained.items())) or "none"
            raise HTTPException(status_code=400, detail=f"model={model} with scale={scale}"
                                f"{'' if kernel_size is None else ' and kernel_size'} is not served; "
                                f"trained models: {served}")
    if trained is not None and kernel_size is None:
        net, name = trained, trained.name
    else:
        net, name = model_for(scale, 3 if kernel_size is None else kernel_size), "init"
    body = await request.body()
    if len(body) > 32 * 1024 * 1024:
        raise HTTPException(status_code=413, detail="body over 32 MiB")
    png = await run_in_threadpool(upscale_png, body, net)
    return Response(content=png, media_type="image/png", headers={"X-Model": name})
