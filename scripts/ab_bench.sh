#!/bin/bash
# A/B run of two release binaries of icnr-upscale on the same machine, alternated, for "no loss of speed" checks:
#
#   scripts/ab_bench.sh OLD_BINARY NEW_BINARY
#
# Jobs (each alternates old/new within a round, so drift on a shared machine hits both alike):
# - untied core: `bench --size 1024 --scale 2 --kernel-size 3 --init default --threads 2 --iters 200`, CORE_ROUNDS
#   rounds; the figure is the median of the rounds' medians;
# - ICNR path: the same with `--init icnr --iters 300`, ICNR_ROUNDS rounds;
# - CLI: `upscale in1024.png out.png --scale 2 --kernel-size 3` (kernel) and `--scale 2` (the default model,
#   espcn-x2), with `hyperfine -N --warmup 2 --runs 15`;
# - service: scripts/bench_service.sh with SKIP_PEER=1, DURATION=10, in kernel mode and with MODEL=espcn-x2,
#   SVC_ROUNDS alternated rounds.
# Run it under scripts/quiet_run.sh on a shared machine. Environment: CORE_ROUNDS [5], ICNR_ROUNDS [12],
# SVC_ROUNDS [2], PYTHON [/work/venv/bin/python or python3], IMAGE [a generated 1024x1024 PNG in $TMPDIR].
set -euo pipefail
OLD=$(realpath "$1")
NEW=$(realpath "$2")
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x /work/venv/bin/python ] && echo /work/venv/bin/python || echo python3)}
CORE_ROUNDS=${CORE_ROUNDS:-5}
ICNR_ROUNDS=${ICNR_ROUNDS:-12}
SVC_ROUNDS=${SVC_ROUNDS:-2}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
IMAGE=${IMAGE:-$TMP/in1024.png}
[ -f "$IMAGE" ] || "$PYTHON" scripts/bench_pipeline.py --make-image 1024 "$IMAGE" >/dev/null

echo "A/B $(date -u '+%F %T') UTC; old $OLD; new $NEW; load average $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

core() { # core INIT ITERS ROUNDS
    local init=$1 iters=$2 rounds=$3 v b
    : >"$TMP/core-old" && : >"$TMP/core-new"
    for _ in $(seq 1 "$rounds"); do
        for v in old new; do
            b=$OLD; [ $v = new ] && b=$NEW
            "$b" bench --size 1024 --scale 2 --kernel-size 3 --init "$init" --threads 2 --iters "$iters" | tail -1 |
                "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["median_ms"])' >>"$TMP/core-$v"
        done
    done
    echo "core --init $init (median of $rounds round medians, ms): old $(median <"$TMP/core-old")," \
        "new $(median <"$TMP/core-new"); rounds old: $(tr '\n' ' ' <"$TMP/core-old")new: $(tr '\n' ' ' <"$TMP/core-new")"
}
core default 200 "$CORE_ROUNDS"
core icnr 300 "$ICNR_ROUNDS"

echo "--- CLI, 1024x1024 PNG -> 2048x2048 PNG (hyperfine, ms)"
hyperfine -N --warmup 2 --runs 15 --export-json "$TMP/cli.json" \
    "$OLD upscale $IMAGE $TMP/old-k.png --scale 2 --kernel-size 3" \
    "$NEW upscale $IMAGE $TMP/new-k.png --scale 2 --kernel-size 3" \
    "$OLD upscale $IMAGE $TMP/old-m.png --scale 2" \
    "$NEW upscale $IMAGE $TMP/new-m.png --scale 2" >/dev/null 2>&1
"$PYTHON" - "$TMP/cli.json" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    who = "old" if " upscale " in r["command"] and r["command"].split()[0].endswith("icnr-upscale") and "/old-" in r["command"] else "new"
    job = "kernel" if "--kernel-size" in r["command"] else "espcn-x2"
    print(f"cli {job} {who}: median {r['median'] * 1e3:.1f} ms, min {r['min'] * 1e3:.1f} ms")
EOF

echo "--- service (req/s, icnr-upscale only, 10 s per run)"
for _ in $(seq 1 "$SVC_ROUNDS"); do
    for v in old new; do
        b=$OLD; [ $v = new ] && b=$NEW
        for m in espcn-x2 ""; do
            r=$(BIN=$b MODEL=$m SKIP_PEER=1 SKIP_BUILD=1 DURATION=10 WARMUP=2 ROUNDS=1 PYTHON=$PYTHON \
                scripts/bench_service.sh 2>&1 | grep -E "^\| icnr-upscale serve \| 1" | cut -d'|' -f4,8,9 || true)
            echo "service ${m:-kernel} $v: $r"
        done
    done
done
echo "done $(date -u '+%F %T') UTC"
