#!/usr/bin/env bash
# Service benchmark: `icnr-upscale serve` against the FastAPI + PyTorch + Pillow peer (scripts/peer_service.py),
# same machine, same run, same load: POST a 512x512 PNG, get the upscaled PNG back (fast PNG compression),
# 8 connections, closed loop, the same warm-up and duration for both. Two modes:
# - Model mode (MODEL=NAME, default espcn-x2; the mode of the speed target): the trained model. The peer loads
#   `icnr-upscale models $MODEL`'s JSON (PEER_MODEL_JSON); both are asked for `/upscale?scale=R` (R = the model's
#   scale) when MODEL is the default model for R, else `/upscale?scale=R&model=$MODEL`. Target: icnr-upscale >= 3x
#   the peer's requests/s, with zero non-2xx and zero transport errors.
# - Kernel mode (MODEL= empty): one Conv2d(3 -> 12, k=3) + PixelShuffle(2), ICNR, as `icnr-upscale kernel --scale 2
#   --kernel-size 3` prints it (the peer loads that JSON, PEER_KERNEL_JSON); both are asked for
#   `/upscale?scale=2&kernel_size=3` (kernel_size makes icnr-upscale run the generated kernel `init`, not the default
#   trained model). Target: >= 5x the peer's requests/s, zero non-2xx and transport errors.
# Before the first load, one request to each service (curl -D) checks its X-Model header (the model's name, or `init`
# in kernel mode; anything else aborts the run), and the two outputs are compared (within 1 LSB is a verdict).
#
# Usage (from anywhere; it works in the repository root):
#   scripts/bench_service.sh                 # model mode, espcn-x2
#   MODEL= scripts/bench_service.sh          # kernel mode
# Environment knobs (defaults in brackets):
#   MODEL [espcn-x2] a trained model's name (`icnr-upscale models` lists them), empty for kernel mode,
#   DURATION [20] seconds measured per service, WARMUP [3] seconds discarded, CONNECTIONS [8],
#   OURS_PORT [18080], PEER_PORT [18081], PYTHON [python3; needs torch, pillow, fastapi, uvicorn],
#   PEER_WORKERS [2] uvicorn worker processes, PEER_TORCH_THREADS [1] torch threads per worker,
#   ROUNDS [1] alternating peer/icnr-upscale rounds (the figures are the medians over rounds),
#   SKIP_BUILD [0] set to 1 to use the existing release build, SKIP_PEER [0] set to 1 to bench only icnr-upscale.
# Both servers listen on 127.0.0.1 only, and the load generator (examples/loadgen.rs) refuses non-loopback targets.
# Every process this script starts is stopped by its PID on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-8}
OURS_PORT=${OURS_PORT:-18080}
PEER_PORT=${PEER_PORT:-18081}
PYTHON=${PYTHON:-python3}
PEER_WORKERS=${PEER_WORKERS:-2}
PEER_TORCH_THREADS=${PEER_TORCH_THREADS:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
SKIP_PEER=${SKIP_PEER:-0}
ROUNDS=${ROUNDS:-1}
MODEL=${MODEL-espcn-x2}  # no colon: MODEL= (empty) selects kernel mode

WORK=$(mktemp -d -t icnr-bench-service-XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ "$SKIP_BUILD" != 1 ]]; then
    cargo build --release --bin icnr-upscale --example loadgen
fi
BIN=${BIN:-target/release/icnr-upscale}
LOADGEN=target/release/examples/loadgen

IMG="$WORK/img512.png"
"$PYTHON" scripts/bench_pipeline.py --make-image 512 "$IMG"
# The peer serves the very same weights as icnr-upscale, so both compute (and encode) the same image.
if [[ -n "$MODEL" ]]; then
    MODE=model
    MODEL_JSON="$WORK/model.json"
    "$BIN" models "$MODEL" >"$MODEL_JSON" || { echo "icnr-upscale has no trained model called '$MODEL'" >&2; exit 1; }
    "$BIN" models --json >"$WORK/models.json"
    # The model's scale, and 1 when it is the default trained model for that scale (then ?scale=R selects it).
    read -r SCALE IS_DEFAULT < <("$PYTHON" -c '
import json, sys
scale = json.load(open(sys.argv[1]))["scale"]
listing = {m["name"]: m for m in json.load(open(sys.argv[2]))["models"]}
print(scale, int(bool(listing.get(sys.argv[3], {}).get("default"))))' "$MODEL_JSON" "$WORK/models.json" "$MODEL")
    if [[ "$IS_DEFAULT" == 1 ]]; then QUERY="scale=$SCALE"; else QUERY="scale=$SCALE&model=$MODEL"; fi
    EXPECT_MODEL=$MODEL
    TARGET_RATIO=3
    PEER_ENV=(PEER_MODEL_JSON="$MODEL_JSON")
else
    MODE=kernel
    SCALE=2
    KERNEL="$WORK/kernel.json"
    "$BIN" kernel --scale 2 --kernel-size 3 >"$KERNEL"
    QUERY="scale=2&kernel_size=3"
    EXPECT_MODEL=init
    TARGET_RATIO=5
    PEER_ENV=(PEER_KERNEL_JSON="$KERNEL")
fi
echo "== mode $MODE${MODEL:+ ($MODEL)}: POST /upscale?$QUERY, expecting X-Model: $EXPECT_MODEL;" \
    "target >= ${TARGET_RATIO}x the peer's requests/s"

# wait_healthy PORT SECONDS PID: polls /healthz until it answers 200, the process dies, or time runs out.
wait_healthy() {
    local port=$1 secs=$2 pid=$3 i
    for ((i = 0; i < secs * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "server on port $port exited early" >&2
            return 1
        fi
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "server on port $port not healthy after ${secs}s" >&2
    return 1
}

port_free() {
    ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" 2>/dev/null
}

# check_model NAME PORT: one request, whose response must be a 200 with X-Model: $EXPECT_MODEL (else it returns 1).
# Keeps the body in $WORK/NAME.check.png and the headers in $WORK/NAME.check.headers.
check_model() {
    local name=$1 port=$2 got status
    curl -sS --max-time 120 -D "$WORK/$name.check.headers" -o "$WORK/$name.check.png" --data-binary @"$IMG" \
        -H 'Content-Type: image/png' "http://127.0.0.1:$port/upscale?$QUERY" ||
        { echo "$name: POST /upscale?$QUERY failed" >&2; return 1; }
    status=$(head -n1 "$WORK/$name.check.headers" | tr -d '\r')
    got=$(tr -d '\r' <"$WORK/$name.check.headers" | awk 'tolower($1) == "x-model:" { print $2 }')
    if [[ "$status" != *" 200"* || "$got" != "$EXPECT_MODEL" ]]; then
        echo "$name: POST /upscale?$QUERY answered '$status' with X-Model '${got:-<none>}';" \
            "expected a 200 with X-Model '$EXPECT_MODEL'; headers:" >&2
        cat "$WORK/$name.check.headers" >&2
        return 1
    fi
    echo "== $name: POST /upscale?$QUERY -> $status, X-Model: $got"
}

# load NAME PORT: runs the load generator against 127.0.0.1:PORT, keeps its output in $WORK/NAME.out.
load() {
    local name=$1 port=$2
    echo "== $name: loadgen, $CONNECTIONS connections, ${WARMUP}s warm-up + ${DURATION}s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$LOADGEN" --url "http://127.0.0.1:$port/upscale?$QUERY" --body "$IMG" --content-type image/png \
        --connections "$CONNECTIONS" --warmup "$WARMUP" --duration "$DURATION" --healthz-probe --check-png \
        | tee "$WORK/$name.out"
}

stop() {
    local pid=$1
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

for ((round = 1; round <= ROUNDS; round++)); do
    if [[ "$SKIP_PEER" != 1 ]]; then
        port_free "$PEER_PORT" || { echo "port $PEER_PORT is busy" >&2; exit 1; }
        echo "== round $round: python peer: uvicorn, $PEER_WORKERS workers, torch threads $PEER_TORCH_THREADS, port $PEER_PORT"
        env "${PEER_ENV[@]}" PEER_TORCH_THREADS="$PEER_TORCH_THREADS" "$PYTHON" -m uvicorn peer_service:app \
            --app-dir scripts --host 127.0.0.1 --port "$PEER_PORT" --workers "$PEER_WORKERS" --log-level warning \
            >"$WORK/peer.log" 2>&1 &
        PEER_PID=$!
        PIDS+=("$PEER_PID")
        wait_healthy "$PEER_PORT" 120 "$PEER_PID" || { cat "$WORK/peer.log" >&2; exit 1; }
        if ((round == 1)); then check_model python "$PEER_PORT" || exit 1; fi
        load "python.$round" "$PEER_PORT"
        stop "$PEER_PID"
    fi

    port_free "$OURS_PORT" || { echo "port $OURS_PORT is busy" >&2; exit 1; }
    echo "== round $round: icnr-upscale serve --bind 127.0.0.1:$OURS_PORT (defaults otherwise)"
    "$BIN" serve --bind "127.0.0.1:$OURS_PORT" >"$WORK/ours.log" 2>&1 &
    OURS_PID=$!
    PIDS+=("$OURS_PID")
    wait_healthy "$OURS_PORT" 30 "$OURS_PID" || { cat "$WORK/ours.log" >&2; exit 1; }
    if ((round == 1)); then check_model icnr-upscale "$OURS_PORT" || exit 1; fi
    load "icnr-upscale.$round" "$OURS_PORT"
    stop "$OURS_PID"
done

"$PYTHON" - "$WORK" "$SKIP_PEER" "$ROUNDS" "$MODE" "$MODEL" "$QUERY" "$SCALE" "$TARGET_RATIO" <<'EOF'
import json, statistics, sys
import numpy as np
from PIL import Image
work, skip_peer, rounds = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
mode, model, query, scale, target = sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7]), float(sys.argv[8])
def last_json(name):
    lines = [l for l in open(f"{work}/{name}.out").read().splitlines() if l.startswith("{")]
    return json.loads(lines[-1])
names = ([] if skip_peer else [("python", "Python peer (FastAPI + PyTorch + Pillow)")]) + [("icnr-upscale", "icnr-upscale serve")]
runs = {key: [last_json(f"{key}.{i}") for i in range(1, rounds + 1)] for key, _ in names}
what = f"model {model}" if mode == "model" else "kernel init (ICNR, k=3)"
# Same job: the one checked response of each service, compared sample by sample.
agree = None
if not skip_peer:
    with Image.open(f"{work}/icnr-upscale.check.png") as a, Image.open(f"{work}/python.check.png") as b:
        if a.size != b.size:
            agree = {"sizes": [a.size, b.size], "max_diff": None, "exact_fraction": 0.0}
        else:
            d = np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16))
            agree = {"max_diff": int(d.max()), "exact_fraction": float((d == 0).mean()),
                     "differing_samples": int((d != 0).sum()), "samples": int(d.size)}
print()
print(f"| service, 512x512 PNG -> {512 * scale}x{512 * scale} PNG, r={scale}, {what} | round | requests/s | p50 ms | "
      "p90 ms | p99 ms | non-2xx | errors | healthz failures |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for key, label in names:
    for i, r in enumerate(runs[key], 1):
        lat = r["latency_ms"]
        hz = r["healthz"]["failures"] if r.get("healthz") else "-"
        print(f"| {label} | {i} | {r['requests_per_s']:.1f} | {lat['p50']:.0f} | {lat['p90']:.0f} | {lat['p99']:.0f} | "
              f"{r['non_2xx']} | {r['errors']} | {hz} |")
med = {key: statistics.median(r["requests_per_s"] for r in runs[key]) for key, _ in names}
ours_runs = runs["icnr-upscale"]
clean = all(r["non_2xx"] == 0 and r["errors"] == 0 and (r.get("not_png") or 0) == 0 for r in ours_runs)
print()
print(f"mode {mode}, POST /upscale?{query}")
if agree is not None:
    if agree["max_diff"] is None:
        print(f"outputs: icnr-upscale {agree['sizes'][0]} vs Python {agree['sizes'][1]}: different sizes")
    else:
        print(f"outputs, icnr-upscale vs Python: max |diff| {agree['max_diff']} LSB, "
              f"{100 * agree['exact_fraction']:.4f}% exact ({agree['differing_samples']} of {agree['samples']} "
              "samples differ)")
print(f"median requests/s over {rounds} round(s): " + ", ".join(f"{label} {med[key]:.1f}" for key, label in names))
verdict = {}
ratio = None
if not skip_peer:
    ratio = med["icnr-upscale"] / med["python"] if med["python"] else float("inf")
    print(f"ratio icnr-upscale / Python: {ratio:.2f}x")
    verdict[f">= {target:g}x the Python peer's requests/s"] = ratio >= target
    verdict["same job: outputs agree with the Python peer's within 1 LSB"] = (
        agree["max_diff"] is not None and agree["max_diff"] <= 1)
verdict["zero non-2xx and zero transport errors for icnr-upscale"] = clean
print(f"Targets, {what}:")
for name, ok in verdict.items():
    print(f"  {'PASS' if ok else 'MISS'}  {name}")
print(json.dumps({"bench": "service", "mode": mode, "model": model or None, "query": query, "scale": scale,
                  "median_rps": med, "ratio": ratio, "outputs_vs_python": agree, "targets": verdict, "runs": runs}))
EOF
