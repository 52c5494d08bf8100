#!/usr/bin/env bash
# Soak, overload, SIGTERM-under-load and memory-at-the-limits measurements of `icnr-upscale serve`.
#
#   scripts/soak.sh                 # full run: 10,000 requests, then overload, SIGTERM, the 4096x4096 request
#   SOAK_REQUESTS=2000 SOAK_ROUNDS=1 scripts/soak.sh
#   SOAK_NO_BUILD=1 scripts/soak.sh   # use target/release as it is
#
# Everything is loopback only (the server binds 127.0.0.1:0; loadgen refuses non-loopback hosts) and bounded:
# every load has a request count and a time cap, every wait a deadline. Needs: cargo, curl, and a Python with
# numpy + Pillow to make the input images (PYTHON, default python3).
# Results: printed, and written to $SOAK_OUT (default target/soak/): summary.txt plus each loadgen JSON report.
#
# RSS figures come from /proc/PID/status: VmRSS (resident now) and VmHWM (peak resident since start).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${SOAK_REQUESTS:-10000}
ROUNDS=${SOAK_ROUNDS:-2}
OVERLOAD_SECS=${SOAK_OVERLOAD_SECS:-20}
OUT=${SOAK_OUT:-target/soak}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

# SOAK_NO_BUILD=1 uses the release binaries already built (e.g. while another cargo holds the build lock).
[ "${SOAK_NO_BUILD:-0}" = 1 ] || cargo build --release --bin icnr-upscale --example loadgen
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

# 1. Normal load: the benchmark load, $ROUNDS rounds of $REQUESTS requests; RSS after each and after idling. A leak
#    grows RSS round after round; allocator caches settle after the first.
say ""
say "== 1. normal load: POST /upscale?scale=2, 512x512 -> 1024x1024, 8 connections, $ROUNDS x $REQUESTS requests"
start_server normal
say "  started:              $(rss)"
load warmup --url "http://$ADDR/upscale?scale=2" --body "$OUT/in_512.png" --connections 8 --requests 200 --duration 120
say "  after 200 warm-up:    $(rss)"
for round in $(seq 1 "$ROUNDS"); do
    load "normal_$round" --url "http://$ADDR/upscale?scale=2" --body "$OUT/in_512.png" --connections 8 \
        --requests "$REQUESTS" --duration 1800 --healthz-probe
    say "  after round $round:        $(rss)"
    j="$OUT/normal_$round.json"
    say "    responses $(field "$j" responses), 2xx $(field "$j" ok_2xx), non-2xx $(field "$j" non_2xx), errors $(field "$j" errors), not PNG $(field "$j" not_png); $(field "$j" requests_per_s) requests/s; latency ms $(field "$j" latency_ms)"
    say "    healthz probe: $(field "$j" healthz)"
done
sleep 5
say "  after 5 s idle:       $(rss)"
stop_server

# 2. Overload: 1 job, 2 queue places, 64 connections for $OVERLOAD_SECS s.
say ""
say "== 2. overload: --max-concurrent-jobs 1 --max-queue 2, 64 connections, ${OVERLOAD_SECS} s"
start_server overload --max-concurrent-jobs 1 --max-queue 2
say "  started:              $(rss)"
load overload --url "http://$ADDR/upscale?scale=2" --body "$OUT/in_512.png" --connections 64 \
    --duration "$OVERLOAD_SECS" --requests 1000000 --healthz-probe
say "  after:                $(rss)"
j="$OUT/overload.json"
say "  responses $(field "$j" responses), 200 $(field "$j" ok_2xx), 503 $(field "$j" status_503) (with Retry-After $(field "$j" status_503_with_retry_after)), other non-2xx $(($(field "$j" non_2xx) - $(field "$j" status_503))), errors $(field "$j" errors), not PNG $(field "$j" not_png)"
say "  latency ms (200 and 503 together) $(field "$j" latency_ms)"
say "  healthz probe: $(field "$j" healthz)"
stop_server

# 3. SIGTERM under load: default limits, 8 connections, SIGTERM after 3 s; in-flight requests must complete, exit 0.
#    Requests sent after the listener closed fail to connect, as they must.
say ""
say "== 3. SIGTERM under load (default limits, 8 connections, SIGTERM after 3 s)"
start_server sigterm
"$LOADGEN" --url "http://$ADDR/upscale?scale=2" --body "$OUT/in_512.png" --connections 8 --duration 8 \
    --check-png >"$OUT/sigterm.txt" 2>&1 &
LG=$!
sleep 3
stop_server
wait "$LG" || true
tail -1 "$OUT/sigterm.txt" >"$OUT/sigterm.json"
j="$OUT/sigterm.json"
say "  loadgen: 2xx $(field "$j" ok_2xx), non-2xx $(field "$j" non_2xx), not PNG $(field "$j" not_png), connect errors (after close) $(field "$j" errors_connect), other errors $(field "$j" errors_other), timeouts $(field "$j" errors_timeout)"
say "  error samples: $(field "$j" error_samples)"

# 4. A request at the limits: 4096x4096 in, 8192x8192 out (67,108,864 output pixels, the default limit), on a fresh
#    server each, so VmHWM is that request's peak. Once with the default kernel (its output clamps a lot and
#    compresses well) and once with initializer=dirac (nearest neighbour: the output PNG is as busy as the input, the
#    largest answer the server holds in memory).
for q in "scale=2" "scale=2&initializer=dirac"; do
    say ""
    say "== 4. at the limits: 4096x4096 ($(stat -c %s "$OUT/in_4096.png") bytes PNG) -> 8192x8192, $q"
    start_server limits --max-concurrent-jobs 1
    say "  started:              $(rss)"
    curl -fsS "http://$ADDR/upscale?scale=2" -H 'content-type: image/png' --data-binary @"$OUT/in_512.png" -o /dev/null
    say "  after one 512 job:    $(rss)"
    # Sample VmRSS every 20 ms during the job (at most 10 minutes).
    (
        for _ in $(seq 1 30000); do
            awk '/^VmRSS/ {print $2}' "/proc/$PID/status" 2>/dev/null || break
            sleep 0.02
        done
    ) >"$OUT/limits_rss_kb.txt" &
    SAMPLER=$!
    RESULT=$(curl -sS --max-time 600 "http://$ADDR/upscale?$q" -H 'content-type: image/png' \
        --data-binary @"$OUT/in_4096.png" -o "$OUT/out_8192.png" -w '%{http_code} %{size_download} %{time_total}')
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    say "  answer: status, bytes, seconds = $RESULT"
    say "  after:                $(rss)"
    say "  peak of VmRSS samples: $(sort -n "$OUT/limits_rss_kb.txt" | tail -1 | awk '{printf "%.1f MiB", $1/1024}')"
    say "  for scale: body $(($(stat -c %s "$OUT/in_4096.png") / 1048576)) MiB; decoded input 4096*4096*3 B = 48 MiB; output PNG $(($(stat -c %s "$OUT/out_8192.png") / 1048576)) MiB; the output as f32 would be 8192*8192*3*4 B = 768 MiB"
    rm -f "$OUT/out_8192.png"
    stop_server
done
PID=
say ""
say "reports: $OUT/*.json, logs: $OUT/server_*.log"
