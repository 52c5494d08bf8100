#!/usr/bin/env python3
"""Browser test of the comparison page (`GET /`, src/server/page.html) in a real headless Chromium.

Run by tests/browser/run.sh, which starts the release binary and passes --base-url. Needs Debian's `chromium` and
`chromium-driver` and the `selenium` package (.ci/requirements.txt); nothing is downloaded: the driver and the
browser are given by path, so Selenium Manager never runs.

Checks, in order (each failure says what and where):
  1. the page loads with its controls (#image, #scale with 2/3/4 and 2 selected, #run, #error);
  2. Run without a file: state "error" and a message in #error;
  3. a photo at x2: a figure per result (the trained default espcn-x2, the other trained x2 models GET /models
     lists, e.g. subpixel-x2, nearest, bicubic, lanczos3, init:icnr, init:default), each image decoded at 2x the photo's size, each caption with its name,
     "<n> ms", "checkerboard <number>" and a PNG download link; init:icnr scores 0 and init:default above 0; no
     error in the browser console;
  4. the zoom: hovering over one result shows a magnifier in every result, pixelated, over the same spot;
  5. a screenshot of that run with the zoom on, ~1280 px wide (--screenshot);
  6. the phone width (390 px): no horizontal scrolling;
  7. x3 from the scale menu: the x3 models, images at 3x;
  8. errors: a text file and a non-image named .png show the server's problem `detail` in #error and in the
     figures; with --max-body-bytes, a file over the limit shows the 413 problem's detail (or, if the browser
     could not read the early answer, a network-error message naming the size limit).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import time
import urllib.parse
import urllib.request

# Selenium Manager must never look for (or download) a driver or a browser.
os.environ.setdefault("SE_OFFLINE", "true")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]
# The results the page must show at scale S, by `data-model`: the trained default, the baselines and both inits
# always; the service's other trained models of that scale (e.g. the one-layer `subpixel-xS`) when GET /models lists
# them.
def expected_models(base, scale):
    names = [f"espcn-x{scale}"]
    with urllib.request.urlopen(f"{base}/models", timeout=30) as r:
        models = json.loads(r.read())["models"]
    trained = [m for m in models if m.get("kind") == "trained" and m.get("scale") == scale]
    default = [m["name"] for m in trained if m.get("default")]
    check(default == [f"espcn-x{scale}"], f"GET /models: the default trained model for x{scale} is {default}")
    names += [m["name"] for m in trained if not m.get("default")]
    if f"subpixel-x{scale}" not in names:
        print(f"note: GET /models lists no subpixel-x{scale}; the page is not expected to show it")
    baselines = [m["name"] for m in models if m.get("kind") == "baseline"]
    check({"nearest", "bicubic", "lanczos3"} <= set(baselines), f"GET /models: baselines {baselines}")
    return names + baselines + ["init:icnr", "init:default"]


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    check(head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


def problem_detail(base, body, content_type, scale=2, headers_only=False):
    """The status and `detail` the service answers for these bytes (to compare with what the page shows). With
    headers_only, only the headers (with the body's Content-Length) are sent: the service answers a body over its
    limit from the header, and may close the connection before a whole body could be written."""
    host, port = urllib.parse.urlsplit(base).netloc.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", f"/upscale?scale={scale}&init=icnr")
        conn.putheader("Content-Type", content_type)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(None if headers_only else body)
        r = conn.getresponse()
        text = r.read()
    finally:
        conn.close()
    check(r.status >= 400, f"the service accepted a non-image ({content_type}): {r.status}")
    check((r.getheader("Content-Type") or "").startswith("application/problem+json"),
          f"error answer is {r.getheader('Content-Type')}, not problem+json")
    return r.status, json.loads(text)["detail"]


class Page:
    def __init__(self, driver, base, timeout):
        self.d = driver
        self.base = base
        self.timeout = timeout

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def state(self):
        return self.js("return document.body.dataset.state || ''")

    def mark(self):
        """Forget the last run's state, so that wait() sees the next one."""
        self.js("document.body.dataset.state = 'test-waiting'")

    def wait(self, states=("done",), what="the run"):
        try:
            WebDriverWait(self.d, self.timeout, poll_frequency=0.2).until(
                lambda _: self.state() in states + ("done", "error"))
        except Exception:
            raise Failure(f"{what}: body[data-state] is {self.state()!r} after {self.timeout} s; "
                          f"status: {self.text('#status')!r}; error: {self.text('#error')!r}")
        check(self.state() in states, f"{what}: state {self.state()!r}, expected {states}; "
                                       f"error: {self.text('#error')!r}")

    def text(self, sel):
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.innerText : null", sel)

    def upload(self, path):
        self.mark()
        self.d.find_element(By.ID, "image").send_keys(os.path.abspath(path))

    def figures(self):
        """Every figure as {model, caption, naturalWidth, naturalHeight, complete, download, href}."""
        return self.js("""
            return Array.from(document.querySelectorAll('figure[data-model]')).map(f => {
              const img = f.querySelector('img'), a = f.querySelector('a[download]');
              const cap = f.querySelector('figcaption');
              return {model: f.dataset.model, caption: cap ? cap.innerText : '',
                      complete: !!(img && img.complete), visible: !!(img && !img.hidden),
                      naturalWidth: img ? img.naturalWidth : 0, naturalHeight: img ? img.naturalHeight : 0,
                      download: a ? a.getAttribute('download') : null, href: a ? a.href : null};
            });""")

    def severe_logs(self, ignore_http_errors=False):
        out = []
        for e in self.d.get_log("browser"):
            if e.get("level") != "SEVERE":
                continue
            if ignore_http_errors and "Failed to load resource: the server responded with a status" in e["message"]:
                continue
            out.append(e["message"])
        return out


def step(name):
    print(f"--- {name}", flush=True)


def check_run(page, photo, scale):
    w, h = png_size(photo)
    figs = {f["model"]: f for f in page.figures()}
    expected = expected_models(page.base, scale)
    check(len(figs) == len(expected), f"x{scale}: figures {sorted(figs)}, expected {sorted(expected)}")
    for name in expected:
        check(name in figs, f"x{scale}: no figure[data-model={name!r}]; figures: {sorted(figs)}")
    for name, f in figs.items():
        where = f"x{scale} figure {name!r}"
        check(f["visible"] and f["complete"], f"{where}: image not shown; caption {f['caption']!r}")
        check((f["naturalWidth"], f["naturalHeight"]) == (scale * w, scale * h),
              f"{where}: image is {f['naturalWidth']}x{f['naturalHeight']}, expected {scale * w}x{scale * h}")
        cap = f["caption"]
        check(name in cap, f"{where}: caption {cap!r} lacks the model name")
        check(re.search(r"\b\d+ ms\b", cap), f"{where}: caption {cap!r} lacks the time in ms")
        check(re.search(r"checkerboard [0-9.eE+-]+", cap), f"{where}: caption {cap!r} lacks 'checkerboard <score>'")
        check(f["download"] and f["download"].endswith(".png") and (f["href"] or "").startswith("blob:"),
              f"{where}: no PNG download link (download={f['download']!r}, href={f['href']!r})")
    score = lambda name: float(re.search(r"checkerboard ([0-9.eE+-]+)", figs[name]["caption"]).group(1))  # noqa: E731
    check(score("init:icnr") == 0, f"x{scale}: init:icnr's checkerboard is {score('init:icnr')}, expected 0")
    check(score("init:default") > 0, f"x{scale}: init:default's checkerboard is {score('init:default')}, expected > 0")
    print(f"x{scale}: checkerboard " + ", ".join(f"{n} {score(n):.4g}" for n in expected))
    return figs


def hover(page, model, fx=0.42, fy=0.38):
    """Moves the mouse over a point of one result's picture (fractions of its frame)."""
    frame = page.d.find_element(By.CSS_SELECTOR, f'figure[data-model="{model}"] .frame')
    page.js("arguments[0].scrollIntoView({block: 'center'})", frame)
    r = page.js("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]", frame)
    ActionChains(page.d).move_to_element_with_offset(frame, int(r[0] * (fx - 0.5)), int(r[1] * (fy - 0.5))).perform()


def check_zoom(page, scale):
    hover(page, f"espcn-x{scale}")
    lenses = page.js("""
        return Array.from(document.querySelectorAll('figure[data-model]')).map(f => {
          const c = f.querySelector('canvas'), fr = f.querySelector('.frame');
          if (!c) return {model: f.dataset.model, missing: true};
          const cs = getComputedStyle(c), r = c.getBoundingClientRect(), q = fr.getBoundingClientRect();
          let alpha = 0;
          try { alpha = c.getContext('2d').getImageData(c.width >> 1, c.height >> 1, 1, 1).data[3]; } catch (e) {}
          return {model: f.dataset.model, display: cs.display, rendering: cs.imageRendering,
                  left: Math.round(r.left - q.left), top: Math.round(r.top - q.top), width: Math.round(r.width),
                  alpha};
        });""")
    check(lenses, "no figures to zoom")
    for l in lenses:
        check(not l.get("missing"), f"figure {l['model']!r} has no magnifier canvas")
        check(l["display"] != "none" and l["width"] > 0, f"zoom: the magnifier of {l['model']!r} is not shown")
        check(l["rendering"] == "pixelated", f"zoom: {l['model']!r} magnifier is {l['rendering']!r}, not pixelated")
        check(l["alpha"] == 255, f"zoom: the magnifier of {l['model']!r} is not drawn")
    spots = {(l["left"], l["top"], l["width"]) for l in lenses}
    check(len(spots) == 1, f"zoom: the magnifiers are not over the same spot: {lenses}")
    print(f"zoom: {len(lenses)} magnifiers at {spots.pop()} (left, top, width) in their frames")


def run(args):
    page_url = args.base_url.rstrip("/") + "/"
    photo = args.photo
    profile = tempfile.mkdtemp(prefix="icnr-browser-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f"--user-data-dir={profile}", "--window-size=1280,1000"]:
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        page = Page(driver, args.base_url.rstrip("/"), args.timeout)
        print(f"browser: {driver.capabilities.get('browserName')} {driver.capabilities.get('browserVersion')}")

        step("1. the page and its controls")
        driver.get(page_url)
        check("icnr-upscale" in driver.title, f"title {driver.title!r}")
        el = driver.find_element(By.ID, "image")
        check(el.get_attribute("type") == "file" and "image" in (el.get_attribute("accept") or ""),
              "#image is not a file input accepting images")
        sel = Select(driver.find_element(By.ID, "scale"))
        values = [o.get_attribute("value") for o in sel.options]
        check(values == ["2", "3", "4"], f"#scale offers {values}")
        check(sel.first_selected_option.get_attribute("value") == "2", "#scale does not default to 2")
        driver.find_element(By.ID, "run")
        driver.find_element(By.ID, "error")

        step("2. Run without a file")
        page.mark()
        driver.find_element(By.ID, "run").click()
        page.wait(("error",), "a run without a file")
        check(page.text("#error").strip(), "#error is empty after a run without a file")
        driver.get_log("browser")  # start the console check afresh

        step(f"3. {os.path.basename(photo)} at x2")
        t0 = time.monotonic()
        page.upload(photo)
        page.wait(("done",), "the x2 run")
        check(not page.text("#error").strip(), f"#error after a good run: {page.text('#error')!r}")
        check_run(page, photo, 2)
        print(f"x2 run: {time.monotonic() - t0:.1f} s")
        logs = page.severe_logs()
        check(not logs, "browser console errors during the x2 run:\n  " + "\n  ".join(logs))

        step("4. zoom")
        check_zoom(page, 2)

        step("5. screenshot")
        if args.screenshot:
            # The whole page in the viewport: grow the window by what the viewport lacks (the window has chrome).
            for _ in range(3):
                need, have = page.js("return [document.documentElement.scrollHeight, window.innerHeight]")
                if have >= need:
                    break
                driver.set_window_size(1280, min(driver.get_window_size()["height"] + need - have, 3000))
            page.js("window.scrollTo(0, 0)")
            time.sleep(0.3)
            # The cat's eye at 4x: fur, edges, and the checkerboard of init:default, in every result.
            Select(driver.find_element(By.ID, "zoom")).select_by_value("4")
            hover(page, "espcn-x2", 0.27, 0.38)
            time.sleep(0.3)
            os.makedirs(os.path.dirname(os.path.abspath(args.screenshot)), exist_ok=True)
            check(driver.save_screenshot(args.screenshot), "the screenshot failed")
            try:  # smaller file, same pixels
                from PIL import Image
                Image.open(args.screenshot).convert("RGB").save(args.screenshot, optimize=True)
            except ImportError:
                pass
            print(f"screenshot: {args.screenshot} ({os.path.getsize(args.screenshot)} bytes)")
            driver.set_window_size(1280, 1000)

        step("6. phone width")
        driver.set_window_size(390, 844)
        time.sleep(0.3)
        sw, iw = page.js("return [document.documentElement.scrollWidth, window.innerWidth]")
        check(sw <= iw, f"at 390 px the page scrolls sideways: scrollWidth {sw} > {iw}")
        driver.set_window_size(1280, 1000)

        step("7. x3 from the scale menu")
        page.mark()
        Select(driver.find_element(By.ID, "scale")).select_by_value("3")
        page.wait(("done",), "the x3 run")
        check_run(page, photo, 3)
        logs = page.severe_logs()
        check(not logs, "browser console errors during the x3 run:\n  " + "\n  ".join(logs))
        Select(driver.find_element(By.ID, "scale")).select_by_value("2")
        page.wait(("done",), "the x2 rerun")

        step("8. errors")
        tmp = tempfile.mkdtemp(prefix="icnr-browser-files-")
        cases = []
        text = os.path.join(tmp, "notes.txt")
        with open(text, "w") as f:
            f.write("this is not an image\n")
        cases.append((text, "text/plain"))
        fake = os.path.join(tmp, "fake.png")
        with open(fake, "wb") as f:
            f.write(b"not a PNG at all, only text\n" * 4)
        cases.append((fake, "image/png"))
        for path, ctype in cases:
            with open(path, "rb") as f:
                status, detail = problem_detail(page.base, f.read(), ctype)
            page.upload(path)
            page.wait(("done", "error"), f"the run with {os.path.basename(path)}")
            shown = page.text("#error") or ""
            check(detail in shown, f"{os.path.basename(path)}: #error {shown!r} lacks the problem detail {detail!r}")
            check(driver.find_element(By.ID, "error").is_displayed(), "#error is not visible")
            figs = page.figures()
            check(any(detail in f["caption"] for f in figs), f"{os.path.basename(path)}: no figure shows the detail")
            check(not any(f["visible"] for f in figs), f"{os.path.basename(path)}: a figure shows an image")
            print(f"{os.path.basename(path)} ({ctype}): {status} shown: {detail}")
        if args.max_body_bytes:
            big = os.path.join(tmp, "big.png")
            with open(big, "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n" + os.urandom(args.max_body_bytes + 1024))
            with open(big, "rb") as f:
                status, detail = problem_detail(page.base, f.read(), "image/png", headers_only=True)
            check(status == 413, f"a body over --max-body-bytes got {status}, not 413")
            page.upload(big)
            page.wait(("done", "error"), "the run with a file over the limit")
            shown = page.text("#error") or ""
            check(detail in shown or "size limit" in shown,
                  f"over the limit: #error {shown!r} shows neither the 413 detail {detail!r} nor a size-limit hint")
            print(f"big.png ({os.path.getsize(big)} bytes): shown: {shown.splitlines()[0] if shown else ''}")
        logs = page.severe_logs(ignore_http_errors=True)
        check(not logs, "browser console errors (other than the expected HTTP errors):\n  " + "\n  ".join(logs))
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-url", required=True, help="the running service, e.g. http://127.0.0.1:8080")
    ap.add_argument("--photo", required=True, help="a PNG photo (~128-192 px)")
    ap.add_argument("--screenshot", help="where to save the screenshot of the x2 run (PNG)")
    ap.add_argument("--max-body-bytes", type=int, default=0, help="the service's limit, to test a 413")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for a run")
    args = ap.parse_args()
    try:
        run(args)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print("browser test: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
