#!/usr/bin/env python3
"""The Python peer of `icnr-upscale serve` for the service benchmark: FastAPI + PyTorch + Pillow.

It does the job of `POST /upscale` with a raw image body: decode with Pillow, Conv2d(3 -> 3*r*r, k) + PixelShuffle(r)
with ICNR(kaiming_normal) weights in PyTorch, clamp/round to u8, encode a PNG with `compress_level=1` (the `fast`
compression of icnr-upscale), answer `image/png`. Query: `scale` (2-8, default 2), `kernel_size` (odd 1-9, default 3).
`GET /healthz` answers `{"status":"ok"}` so the load generator's health probe works against it too.

Weights: with `PEER_KERNEL_JSON=path` (the output of `icnr-upscale kernel`, loaded as `torch.tensor(j["weight"])`)
that kernel serves its own scale and kernel size, so both services compute the very same image (whose content decides
how long PNG encoding takes); any other (scale, kernel_size) gets ICNR(kaiming_normal) weights from torch's RNG.

It is written the way a competent team would: the CPU work runs in Starlette's thread pool, off the event loop;
models are built once per (scale, kernel_size) and cached; torch runs under `inference_mode`. The torch thread count
comes from `PEER_TORCH_THREADS` (default 1: with several uvicorn workers or several requests in flight, one intra-op
thread per request avoids oversubscribing the cores). It is not a hardened service: no limits beyond those of
Pillow (its decompression-bomb check), which is fine for a benchmark on loopback.

Run (from the repository root, with the development venv that has fastapi and uvicorn):

    /work/venv/bin/python -m uvicorn peer_service:app --app-dir scripts --host 127.0.0.1 --port 8081 \
        --workers 2 --log-level warning
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

# The same loader as the pipeline benchmark (uvicorn runs this with --app-dir scripts).
from bench_pipeline import model_from_kernel_json

torch.set_num_threads(int(os.environ.get("PEER_TORCH_THREADS", "1")))

app = FastAPI(title="icnr-upscale Python peer")

_models: dict[tuple[int, int], torch.nn.Module] = {}
_models_lock = threading.Lock()


def _load_kernel_json(path: str) -> None:
    with open(path) as f:
        text = f.read()
    j = json.loads(text)
    _models[(j["scale"], j["kernel_size"])] = model_from_kernel_json(torch, text)


if os.environ.get("PEER_KERNEL_JSON"):
    _load_kernel_json(os.environ["PEER_KERNEL_JSON"])


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


def upscale_png(body: bytes, scale: int, k: int) -> bytes:
    try:
        with Image.open(io.BytesIO(body)) as im:
            arr = np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise HTTPException(status_code=415, detail=f"not a supported image: {type(e).__name__}") from None
    model = model_for(scale, k)
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
async def upscale(request: Request, scale: int = 2, kernel_size: int = 3) -> Response:
    if not 2 <= scale <= 8:
        raise HTTPException(status_code=400, detail="scale must be 2 to 8")
    if kernel_size % 2 == 0 or not 1 <= kernel_size <= 9:
        raise HTTPException(status_code=400, detail="kernel_size must be odd, 1 to 9")
    body = await request.body()
    if len(body) > 32 * 1024 * 1024:
        raise HTTPException(status_code=413, detail="body over 32 MiB")
    png = await run_in_threadpool(upscale_png, body, scale, kernel_size)
    return Response(content=png, media_type="image/png")
