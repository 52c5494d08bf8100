"""schemathesis hooks for the contract test of icnr-upscale (run by .ci/run):

    SCHEMATHESIS_HOOKS=scripts/contract/hooks.py schemathesis run openapi.yaml --url http://127.0.0.1:PORT

Left alone, schemathesis fills an `image/png` body with random bytes, so every POST /upscale would be a 415 and the
upscaling path would never run. These hooks make the bodies of positive cases real, small images:
- every image media type of the spec (and application/octet-stream) generates a real image of that type, up to
  16 x 16 pixels (grayscale, gray+alpha, RGB, RGBA; 8 or 16 bits for PNG), so even scale 8 stays fast;
- for multipart bodies, the `image` field becomes such a PNG, and a `kernel` field becomes valid kernel JSON whose
  shape agrees with the case's `scale` and `kernel_size` query parameters (as `GET /kernel` would return it).
Negative cases (schemathesis' deliberately invalid inputs) keep their generated bodies: the server must answer
them with a 4xx problem+json, never a 5xx.
"""

import io
import json
import random
import re
import struct
import zlib

import schemathesis
from hypothesis import strategies as st

try:  # Pillow writes the non-PNG formats; PNG is written here directly, at any bit depth.
    from PIL import Image
except ImportError:  # pragma: no cover - .ci/run installs Pillow
    Image = None

# PNG colour types: grayscale, RGB, gray+alpha, RGBA, with their channel counts.
COLOR_TYPES = {0: 1, 2: 3, 4: 2, 6: 4}
MAX_SIDE = 16


def png_bytes(width, height, color_type, bit_depth, rng):
    """A valid PNG of random pixels (filter 0 on every row)."""
    channels = COLOR_TYPES[color_type]
    row_len = width * channels * (bit_depth // 8)
    raw = b"".join(b"\x00" + rng.randbytes(row_len) for _ in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@st.composite
def png_images(draw):
    width = draw(st.integers(1, MAX_SIDE))
    height = draw(st.integers(1, MAX_SIDE))
    color_type = draw(st.sampled_from(sorted(COLOR_TYPES)))
    bit_depth = draw(st.sampled_from([8, 16]))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    return png_bytes(width, height, color_type, bit_depth, rng)


def pillow_images(fmt):
    """Real images in a Pillow format (JPEG, WEBP, GIF, BMP, TIFF), 8-bit RGB or RGBA where the format allows."""

    @st.composite
    def images(draw):
        width = draw(st.integers(1, MAX_SIDE))
        height = draw(st.integers(1, MAX_SIDE))
        mode = draw(st.sampled_from(["RGB", "L"] + (["RGBA"] if fmt in ("WEBP", "TIFF", "PNG") else [])))
        rng = random.Random(draw(st.integers(0, 2**32 - 1)))
        img = Image.frombytes(mode, (width, height), rng.randbytes(width * height * len(mode)))
        out = io.BytesIO()
        img.save(out, format=fmt)
        return out.getvalue()

    return images()


# Media types the spec may list for a raw POST /upscale body. A type the spec does not use is simply never asked for.
schemathesis.openapi.media_type("image/png", png_images(), aliases=["image/*", "application/octet-stream"])
if Image is not None:
    for media, fmt in [
        ("image/jpeg", "JPEG"),
        ("image/webp", "WEBP"),
        ("image/gif", "GIF"),
        ("image/bmp", "BMP"),
        ("image/tiff", "TIFF"),
    ]:
        schemathesis.openapi.media_type(media, pillow_images(fmt))


def kernel_json(scale, kernel_size, rng):
    """Kernel JSON as GET /kernel returns it (only `weight` is required): weight [3*r*r][3][k][k], bias [3*r*r]."""
    out = 3 * scale * scale
    weight = [
        [[[round(rng.uniform(-0.3, 0.3), 6) for _ in range(kernel_size)] for _ in range(kernel_size)] for _ in range(3)]
        for _ in range(out)
    ]
    bias = [round(rng.uniform(-0.1, 0.1), 6) for _ in range(out)]
    return json.dumps({"weight": weight, "bias": bias})


def query_int(query, name, default, allowed):
    """The integer value of a query parameter if the case has a valid one, else the server's default."""
    try:
        value = int(str((query or {}).get(name, default)))
    except ValueError:
        return default
    return value if value in allowed else default


def is_negative(case):
    """Whether schemathesis made any part of this case invalid on purpose (then the body must stay as generated)."""
    meta = case.meta
    if meta is None:
        return False
    return meta.generation.mode.is_negative or any(c.mode.is_negative for c in meta.components.values())


IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


# The default trained model of each scale (GET /models); other scales take a baseline, which runs at any scale.
TRAINED_DEFAULTS = {2: "espcn-x2", 3: "espcn-x3", 4: "espcn-x4"}
INIT_PARAMS = ("kernel_size", "init", "initializer", "seed")


def fix_model_query(case, uploads):
    """Rules the schema cannot state: `model` names a served model, the init parameters go with model=init only, and
    an uploaded kernel takes no `model`. A positive case is made to follow them (a negative one is left alone)."""
    query = dict(case.query or {})
    if not isinstance(query.get("model"), str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", query["model"]):
        return  # absent, or made invalid on purpose
    if uploads:
        del query["model"]
    elif any(p in query for p in INIT_PARAMS):
        query["model"] = "init"
    else:
        query["model"] = TRAINED_DEFAULTS.get(query_int(query, "scale", 2, range(2, 9)), "bicubic")
    case.query = query


@schemathesis.hook
def map_case(context, case):
    if case.operation.method.upper() != "POST" or case.operation.path != "/upscale":
        return case
    body = case.body
    # Every phase: a schema-valid `model` value is made to follow the cross-parameter rules, whatever else the case
    # does (an invalid part elsewhere keeps the case negative).
    fix_model_query(case, isinstance(body, dict) and ("kernel" in body or "model" in body))
    if is_negative(case):
        return case
    if not isinstance(body, dict):
        return case  # a raw body: the media type strategies above already made a real image
    # multipart/form-data. The `image` part is usually a real image already (the spec's encoding names the image
    # media types registered above); the `kernel` part is JSON text whose shape must agree with the query. Parts
    # are replaced only when needed, with values of the schema's own types (text stays text), so that schemathesis
    # still sees a valid, positive case.
    rng = random.Random(repr(sorted(body)) + repr(case.query))
    changed = dict(body)
    # An uploaded model is tested by tests/api/models.rs; random bytes would only be a 400 here.
    changed.pop("model", None)
    image = changed.get("image")
    if not isinstance(image, bytes) or not image.startswith(IMAGE_SIGNATURES):
        changed["image"] = png_bytes(rng.randint(1, MAX_SIDE), rng.randint(1, MAX_SIDE), 2, 8, rng)
    if "kernel" in changed:
        scale = query_int(case.query, "scale", 2, range(2, 9))
        kernel_size = query_int(case.query, "kernel_size", 3, range(1, 10, 2))
        changed["kernel"] = kernel_json(scale, kernel_size, rng)
    if changed != body:
        case.body = changed
    return case


# schemathesis' built-in YAML deserializers are registered under every YAML media type, and the first one whose
# family matches wins, so this one takes all of them over, and only changes GET /openapi.yaml.
YAML_MEDIA_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


@schemathesis.deserializer(*YAML_MEDIA_TYPES)
def yaml_document_as_text(ctx, response):
    """GET /openapi.yaml is documented as `type: string`: the document's text. schemathesis would parse the YAML
    into an object and then report that it is not a string, so the schema check gets the text instead, once it is
    known to be valid YAML (.ci/run also compares it byte for byte with the committed openapi.yaml)."""
    import yaml

    text = response.content.decode(response.encoding or "utf-8")
    document = yaml.safe_load(text)
    return text if ctx.operation.path == "/openapi.yaml" else document
