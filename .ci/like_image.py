#!/usr/bin/env python3
"""Run the release binary exactly as the Docker image would, without a Docker engine.

Reads the runtime (last) stage of the Dockerfile: its ENV lines become the environment, ENTRYPOINT + CMD (or the
HEALTHCHECK's CMD with --healthcheck) become the argv, with /usr/local/bin/icnr-upscale replaced by BINARY. Only
the port of ICNR_UPSCALE_BIND may be changed (--port), so CI can pick a free one; the host part stays as the image
has it (0.0.0.0). Then it exec()s, so the caller's $! is the server's pid.

    python3 .ci/like_image.py --binary target/release/icnr-upscale --port 18080 &
    python3 .ci/like_image.py --binary target/release/icnr-upscale --port 18080 --healthcheck
"""

import argparse
import json
import os
import shlex
import sys

IMAGE_BINARY = "/usr/local/bin/icnr-upscale"


def runtime_stage(path):
    """The instructions after the last FROM, continuation lines joined, comments dropped."""
    with open(path, encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    instructions = []
    for line in lines:
        ins, _, rest = line.partition(" ")
        instructions.append((ins.upper(), rest.strip()))
    last_from = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    return instructions[last_from:]


def exec_form(args):
    value = json.loads(args)
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        sys.exit(f"like_image: `{args}` is not an exec-form list")
    return value


def image_env(stage):
    env = {}
    for ins, rest in stage:
        if ins != "ENV":
            continue
        words = shlex.split(rest)
        if words and "=" not in words[0]:  # legacy form: ENV KEY value with spaces
            env[words[0]] = rest.split(None, 1)[1]
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dockerfile", default="Dockerfile")
    p.add_argument("--binary", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--healthcheck", action="store_true", help="run the HEALTHCHECK command instead of the CMD")
    a = p.parse_args()

    stage = runtime_stage(a.dockerfile)
    env = image_env(stage)
    bind = env.get("ICNR_UPSCALE_BIND")
    if not bind:
        sys.exit("like_image: the runtime stage sets no ENV ICNR_UPSCALE_BIND")
    host, _, _ = bind.rpartition(":")
    env["ICNR_UPSCALE_BIND"] = f"{host}:{a.port}"

    if a.healthcheck:
        hc = [rest for ins, rest in stage if ins == "HEALTHCHECK"]
        if len(hc) != 1 or " CMD " not in f" {hc[0]}":
            sys.exit("like_image: expected one HEALTHCHECK ... CMD [...] in the runtime stage")
        argv = exec_form(hc[0].split("CMD", 1)[1].strip())
    else:
        entry = [rest for ins, rest in stage if ins == "ENTRYPOINT"]
        cmd = [rest for ins, rest in stage if ins == "CMD"]
        argv = (exec_form(entry[-1]) if entry else []) + (exec_form(cmd[-1]) if cmd else [])
    if not argv or argv[0] not in (IMAGE_BINARY, os.path.basename(IMAGE_BINARY)):
        sys.exit(f"like_image: the image would run {argv!r}, not {IMAGE_BINARY}")
    argv[0] = os.path.abspath(a.binary)

    shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    print(f"like_image: {shown} {shlex.join(argv)}", file=sys.stderr, flush=True)
    os.execve(argv[0], argv, {**os.environ, **env})


if __name__ == "__main__":
    main()
