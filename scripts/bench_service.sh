#!/usr/bin/env bash
# Service benchmark: `icnr-upscale serve` against the FastAPI + PyTorch + Pillow peer (scripts/peer_service.py),
# same machine, same run, same load: POST a 512x512 PNG, get the 1024x1024 PNG back (scale 2, kernel 3, ICNR,
# fast PNG compression; the peer loads the same kernel JSON), 8 connections, closed loop, the same warm-up and duration for both.
#
# Usage (from anywhere; it works in the repository root):
#   scripts/bench_service.sh
# Environment knobs (defaults in brackets):
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
BIN=target/release/icnr-upscale
LOADGEN=target/release/examples/loadgen

IMG="$WORK/img512.png"
"$PYTHON" scripts/bench_pipeline.py --make-image 512 "$IMG"
# The peer serves the very same kernel as icnr-upscale's defaults, so both encode the same image.
KERNEL="$WORK/kernel.json"
"$BIN" kernel --scale 2 --kernel-size 3 >"$KERNEL"

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

# load NAME PORT: runs the load generator against 127.0.0.1:PORT, keeps its output in $WORK/NAME.out.
load() {
    local name=$1 port=$2
    echo "== $name: loadgen, $CONNECTIONS connections, ${WARMUP}s warm-up + ${DURATION}s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$LOADGEN" --url "http://127.0.0.1:$port/upscale?scale=2" --body "$IMG" --content-type image/png \
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
        PEER_TORCH_THREADS=$PEER_TORCH_THREADS PEER_KERNEL_JSON=$KERNEL "$PYTHON" -m uvicorn peer_service:app \
            --app-dir scripts --host 127.0.0.1 --port "$PEER_PORT" --workers "$PEER_WORKERS" --log-level warning \
            >"$WORK/peer.log" 2>&1 &
        PEER_PID=$!
        PIDS+=("$PEER_PID")
        wait_healthy "$PEER_PORT" 120 "$PEER_PID" || { cat "$WORK/peer.log" >&2; exit 1; }
        load "python.$round" "$PEER_PORT"
        stop "$PEER_PID"
    fi

    port_free "$OURS_PORT" || { echo "port $OURS_PORT is busy" >&2; exit 1; }
    echo "== round $round: icnr-upscale serve --bind 127.0.0.1:$OURS_PORT (defaults otherwise)"
    "$BIN" serve --bind "127.0.0.1:$OURS_PORT" >"$WORK/ours.log" 2>&1 &
    OURS_PID=$!
    PIDS+=("$OURS_PID")
    wait_healthy "$OURS_PORT" 30 "$OURS_PID" || { cat "$WORK/ours.log" >&2; exit 1; }
    load "icnr-upscale.$round" "$OURS_PORT"
    stop "$OURS_PID"
done

"$PYTHON" - "$WORK" "$SKIP_PEER" "$ROUNDS" <<'EOF'
import json, statistics, sys
work, skip_peer, rounds = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
def last_json(name):
    lines = [l for l in open(f"{work}/{name}.out").read().splitlines() if l.startswith("{")]
    return json.loads(lines[-1])
names = ([] if skip_peer else [("python", "Python peer (FastAPI + PyTorch + Pillow)")]) + [("icnr-upscale", "icnr-upscale serve")]
runs = {key: [last_json(f"{key}.{i}") for i in range(1, rounds + 1)] for key, _ in names}
print()
print("| service, 512x512 PNG -> 1024x1024 PNG, r=2 | round | requests/s | p50 ms | p90 ms | p99 ms | non-2xx | errors | healthz failures |")
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
print(f"median requests/s over {rounds} round(s): " + ", ".join(f"{label} {med[key]:.1f}" for key, label in names))
verdict = {}
if not skip_peer:
    ratio = med["icnr-upscale"] / med["python"] if med["python"] else float("inf")
    print(f"ratio icnr-upscale / Python: {ratio:.2f}x")
    verdict[">= 5x the Python peer's requests/s"] = ratio >= 5
    print(f"  {'PASS' if ratio >= 5 else 'MISS'}  >= 5x the Python peer's requests/s")
verdict["zero non-2xx and zero transport errors for icnr-upscale"] = clean
print(f"  {'PASS' if clean else 'MISS'}  zero non-2xx and zero transport errors for icnr-upscale")
print(json.dumps({"bench": "service", "median_rps": med, "targets": verdict, "runs": runs}))
EOF
