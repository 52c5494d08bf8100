#!/usr/bin/env bash
# Coverage-guided fuzzing of icnr-upscale with cargo fuzz (libFuzzer + AddressSanitizer). Manual, not part of CI:
# building the instrumented crate takes about 12 minutes on a 2-core machine.
#
#   fuzz/run.sh                      # every target, 600 s each, one after the other
#   FUZZ_SECS=30 fuzz/run.sh kernel_json
#
# Targets: decode_upscale (imageio::decode under small limits, then upscale_to_png into a sink), kernel_json
# (Kernel::from_json + round trip), safetensors (Kernel::from_safetensors + round trip).
# Seeds: fuzz/corpus/<target>/ (committed, made by scripts/make_corpus.py). New inputs go to a scratch corpus
# ($FUZZ_WORK/<target>, default target/fuzz-work) so the committed seeds stay as they are. Crashes land in
# fuzz/artifacts/<target>/; reproduce one with `cargo fuzz run <target> <file>`.
#
# cargo fuzz needs nightly compiler flags. With a nightly toolchain installed it is used; otherwise the stable
# compiler is asked to accept them with RUSTC_BOOTSTRAP=1 (works with the stable 1.95 here).
set -euo pipefail
cd "$(dirname "$0")"

SECS=${FUZZ_SECS:-600}
WORK=${FUZZ_WORK:-../target/fuzz-work}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(decode_upscale kernel_json safetensors)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if rustup run nightly rustc --version >/dev/null 2>&1; then
    FUZZ=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    FUZZ=(cargo fuzz)
fi

FAILED=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$WORK/$t"
    echo "== $t: ${SECS}s"
    # -rss_limit_mb: the decode limits (128x128 in) keep a run far below it; going over is a finding.
    rc=0
    "${FUZZ[@]}" run "$t" "$WORK/$t" "corpus/$t" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        >"$WORK/$t.log" 2>&1 || rc=$?
    grep -E '^(Done|stat::|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)' "$WORK/$t.log" || true
    echo "== $t: exit $rc (log: $WORK/$t.log)"
    [ "$rc" -eq 0 ] || FAILED=1
done
exit "$FAILED"
