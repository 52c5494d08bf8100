#!/usr/bin/env bash
# The browser test of the comparison page (GET /): starts the service, runs tests/browser/test_page.py in a real
# headless Chromium against it, stops the service, and exits non-zero on any failure.
#
#   bash tests/browser/run.sh [BINARY]      # BINARY defaults to target/release/icnr-upscale
#
# Needs (installed by CI, never by this script; nothing is downloaded):
#   apt:  chromium chromium-driver          (/usr/bin/chromium, /usr/bin/chromedriver)
#   pip:  selenium (the pin in .ci/requirements.txt), for the `python3` on PATH (or $PYTHON)
# Environment:
#   BROWSER_SCREENSHOT  where to save the screenshot of the x2 run; default target/browser/page.png. To refresh
#                       the committed one: BROWSER_SCREENSHOT=assets/page.png bash tests/browser/run.sh
#   BROWSER_TIMEOUT     seconds to wait for one run of the page (default 120)
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${1:-target/release/icnr-upscale}
PY=${PYTHON:-python3}
SHOT=${BROWSER_SCREENSHOT:-target/browser/page.png}
PHOTO=assets/chelsea.png
# Small enough to test the 413 path cheaply, far above the photo.
MAX_BODY=2097152

[ -x "$BIN" ] || { echo "run.sh: no executable $BIN (cargo build --release first)"; exit 1; }
for tool in /usr/bin/chromium /usr/bin/chromedriver; do
    [ -x "$tool" ] || { echo "run.sh: $tool missing (apt-get install chromium chromium-driver)"; exit 1; }
done
"$PY" -c 'import selenium' 2>/dev/null ||
    { echo "run.sh: $PY has no selenium (pip install -r .ci/requirements.txt)"; exit 1; }
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
echo "chromedriver: $(/usr/bin/chromedriver --version | head -n 1)"
echo "selenium: $("$PY" -c 'import selenium; print(selenium.__version__)')"

LOGDIR=$(mktemp -d)
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT

ICNR_UPSCALE_BIND=127.0.0.1:$PORT ICNR_UPSCALE_MAX_BODY_BYTES=$MAX_BODY "$BIN" serve >"$LOGDIR/server.log" 2>&1 &
SERVER_PID=$!
stop_server() {
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap 'stop_server; rm -rf "$LOGDIR"' EXIT

ready=0
for _ in $(seq 1 150); do
    if "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$BASE/healthz" 2>/dev/null
    then
        ready=1
        break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "run.sh: the server exited early:"; cat "$LOGDIR/server.log"; exit 1; }
    sleep 0.2
done
[ "$ready" = 1 ] || { echo "run.sh: the server is not ready after 30 s:"; cat "$LOGDIR/server.log"; exit 1; }
echo "server pid $SERVER_PID on $BASE"

rc=0
"$PY" tests/browser/test_page.py --base-url "$BASE" --photo "$PHOTO" --screenshot "$SHOT" \
    --max-body-bytes "$MAX_BODY" --timeout "${BROWSER_TIMEOUT:-120}" || rc=$?

stop_server
if [ "$rc" -ne 0 ]; then
    echo "--- server log (last 40 lines)"
    tail -n 40 "$LOGDIR/server.log"
fi
echo "browser test: exit $rc"
exit "$rc"
