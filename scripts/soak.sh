#!/usr/bin/env bash
# Soak, overload, SIGTERM-under-load and memory-at-the-limits measurements of `icnr-upscale serve` (issue 5).
#
#   scripts/soak.sh                 # full run: 10,000 requests, then overload, SIGTERM, the 4096x4096 request
#   SOAK_REQUESTS=2000 scripts/soak.sh
#
# Everything is loopback only (the server binds 127.0.0.1:0; loadgen refuses non-loopback hosts) and bounded:
# every load has a request count and a time cap, every wait a deadline. Needs: cargo, curl, and a Python with
# numpy + Pillow to make the input images (PYTHON, default /work/venv/bin/python if present, else python3).
# Results: printed, and written to $SOAK_OUT (default target/soak/): summary.txt plus each loadgen JSON report.
#
# RSS figures come from /proc/PID/status: VmRSS (resident now) and VmHWM (peak resident since start).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${SOAK_REQUESTS:-10000}
OVERLOAD_REQUESTS=${SOAK_OVERLOAD_REQUESTS:-2000}
OUT=${SOAK_OUT:-target/soak}
PYTHON=${PYTHON:-$([ -x /work/venv/bin/python ] && echo /work/venv/bin/python || echo python3)}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

cargo build --release --bin icnr-upscale --example loadgen
BIN=target/release/icnr-upscale
LOADGEN=target/release/examples/loadgen

# Inputs: the benchmark load (512x512 photo-like PNG) and a request at the limits (4096x4096 -> 8192x8192 at r=2).
make_png() { # width height path
    "$PYTHON" - "$@" <<'EOF'
import sys
import numpy as np
from PIL import Image
w, h, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
rgb = np.stack([
    128 + 100 * np.sin(xx / 97.0) * np.cos(yy / 53.0),
    128 + 90 * np.cos((xx + yy) / 151.0),
    128 + 80 * np.sin(xx / 211.0 + yy / 71.0),
], axis=-1)
rgb += np.random.default_rng(1).integers(-2, 3, rgb.shape)  # sensor-like noise, so the PNG is not trivial
Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(path, compress_level=6)
EOF
}
[ -s "$OUT/in_512.png" ] || make_png 512 512 "$OUT/in_512.png"
[ -s "$OUT/in_4096.png" ] || make_png 4096 4096 "$OUT/in_4096.png"

PID=
ADDR=
start_server() { # extra serve flags...
    local log="$OUT/server_$1.log"
    shift
    "$BIN" serve --bind 127.0.0.1:0 --log-format json "$@" >"$log" 2>&1 &
    PID=$!
    ADDR=
    for _ in $(seq 1 200); do # at most 20 s
        ADDR=$(grep -o '"addr":"127\.0\.0\.1:[0-9]*"' "$log" | head -1 | cut -d'"' -f4 || true)
        [ -n "$ADDR" ] && curl -fsS "http://$ADDR/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server did not start; log:" >&2
    cat "$log" >&2
    exit 1
}
rss() { # "VmRSS VmHWM" in MiB
    awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {printf "VmRSS %.1f MiB, VmHWM %.1f MiB", r/1024, h/1024}' "/proc/$PID/status"
}
stop_server() { # SIGTERM, wait (bounded), report the exit code
    kill -TERM "$PID"
    local code=0
    for _ in $(seq 1 600); do # at most 60 s
        if ! kill -0 "$PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    if kill -0 "$PID" 2>/dev/null; then
        kill -KILL "$PID"
        say "  server did not exit within 60 s of SIGTERM (killed)"
    fi
    wait "$PID" || code=$?
    say "  exit code after SIGTERM: $code"
}
trap '[ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null || true' EXIT
field() { # json-file key... -> value (the last line of a loadgen run is its JSON report)
    "$PYTHON" -c 'import json,sys; v=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
for k in sys.argv[2:]: v=v[k]
print(v)' "$@"
}
load() { # name loadgen-args...
    local name=$1
    shift
    "$LOADGEN" "$@" --check-png >"$OUT/$name.txt" 2>&1 || true
    tail -1 "$OUT/$name.txt" >"$OUT/$name.json"
}

say "icnr-upscale soak, $(date -u +%FT%TZ), $(nproc) CPUs, $(uname -m)"
say "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

# 1. Normal load: the benchmark load, 10,000 requests, RSS before/after/after idle.
say ""
say "== 1. normal load: POST /upscale?scale=2, 512x512 -> 1024x1024, 8 connections, $REQUESTS requests"
start_server normal
say "  started:            $(rss)"
load warmup --url "http://$ADDR/upscale?scale=2" --body "$OUT/in_512.png" --connections 8 --requests 200 --duration 120
say "  after 200 warm-up:  $(rss)"
load normal --url "http://$ADDR/upscale?scale=2" --body "$OUT/in_512.png" --connections 8 --requests "$REQUESTS" \
    --duration 1800 --healthz-probe
say "  after $REQUESTS:     $(rss)"
sleep 5
say "  after 5 s idle:     $(rss)"
say "  responses $(field "$OUT/normal.json" responses), 2xx $(field "$OUT/normal.json" ok_2xx), non-2xx $(field "$OUT/normal.json" non_2xx), errors $(field "$OUT/normal.json" errors), not PNG $(field "$OUT/normal.json" not_png)"
say "  $(field "$OUT/normal.json" requests_per_s) requests/s, latency ms $(field "$OUT/normal.json" latency_ms)"
say "  healthz probe: $(field "$OUT/normal.json" healthz)"
stop_server

# 2. Overload: 1 job, 2 queue places, 64 connections.
say ""
say "== 2. overload: --max-concurrent-jobs 1 --max-queue 2, 64 connections, $OVERLOAD_REQUESTS requests"
start_server overload --max-concurrent-jobs 1 --max-queue 2
say "  started:            $(rss)"
load overload --url "http://$ADDR/upscale?scale=2" --body "$OUT/in_512.png" --connections 64 \
    --requests "$OVERLOAD_REQUESTS" --duration 600 --healthz-probe
say "  after:              $(rss)"
say "  responses $(field "$OUT/overload.json" responses), 200 $(field "$OUT/overload.json" ok_2xx), 503 $(field "$OUT/overload.json" status_503) (with Retry-After $(field "$OUT/overload.json" status_503_with_retry_after)), other non-2xx $(($(field "$OUT/overload.json" non_2xx) - $(field "$OUT/overload.json" status_503))), errors $(field "$OUT/overload.json" errors)"
say "  latency ms (200 and 503 together) $(field "$OUT/overload.json" latency_ms)"
say "  healthz probe: $(field "$OUT/overload.json" healthz)"

# 3. SIGTERM under load: load on the same server, SIGTERM after 2 s; in-flight requests must complete, exit 0.
say ""
say "== 3. SIGTERM under load (8 connections, SIGTERM after 2 s)"
"$LOADGEN" --url "http://$ADDR/upscale?scale=2" --body "$OUT/in_512.png" --connections 8 --duration 6 \
    --check-png >"$OUT/sigterm.txt" 2>&1 &
LG=$!
sleep 2
stop_server
wait "$LG" || true
tail -1 "$OUT/sigterm.txt" >"$OUT/sigterm.json"
say "  loadgen: 2xx $(field "$OUT/sigterm.json" ok_2xx), non-2xx $(field "$OUT/sigterm.json" non_2xx), connect errors (after close) $(field "$OUT/sigterm.json" errors_connect), other errors $(field "$OUT/sigterm.json" errors_other), timeouts $(field "$OUT/sigterm.json" errors_timeout)"

# 4. A request at the limits: 4096x4096 in, 8192x8192 out (67,108,864 output pixels, the default limit).
say ""
say "== 4. at the limits: 4096x4096 ($(stat -c %s "$OUT/in_4096.png") bytes PNG) -> 8192x8192, scale=2"
start_server limits --max-concurrent-jobs 1
say "  started:            $(rss)"
curl -fsS "http://$ADDR/upscale?scale=2" -H 'content-type: image/png' --data-binary @"$OUT/in_512.png" -o /dev/null
say "  after one 512 job:  $(rss)"
# Sample VmRSS every 20 ms during the job (bounded by the job itself, at most 10 minutes).
(
    for _ in $(seq 1 30000); do
        awk '/^VmRSS/ {print $2}' "/proc/$PID/status" 2>/dev/null || break
        sleep 0.02
    done
) >"$OUT/limits_rss_kb.txt" &
SAMPLER=$!
RESULT=$(curl -sS --max-time 600 "http://$ADDR/upscale?scale=2" -H 'content-type: image/png' \
    --data-binary @"$OUT/in_4096.png" -o "$OUT/out_8192.png" -w '%{http_code} %{size_download} %{time_total}')
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
say "  answer: status, bytes, seconds = $RESULT"
say "  after:              $(rss)"
say "  peak of VmRSS samples: $(sort -n "$OUT/limits_rss_kb.txt" | tail -1 | awk '{printf "%.1f MiB", $1/1024}')"
say "  for scale: decoded input 4096*4096*3 B = 48 MiB; output as f32 8192*8192*3*4 B = 768 MiB; output PNG $(stat -c %s "$OUT/out_8192.png" 2>/dev/null || echo 0) bytes"
rm -f "$OUT/out_8192.png"
stop_server
PID=
say ""
say "reports: $OUT/*.json, logs: $OUT/server_*.log"
