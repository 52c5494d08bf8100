#!/usr/bin/env python3
"""Generate the hostile-input corpus of tests/corpus/ and its manifest (issue 5).

Run from the repository root with Pillow, numpy and pypng installed:

    python3 scripts/make_corpus.py

The generated files are committed (tests/api/corpus.rs reads them; CI does not regenerate them). Everything is
deterministic: fixed seeds, no timestamps. Bodies over the size limit are made by the Rust test at run time,
so nothing big is committed (the 25-megapixel solid image compresses to a few KB).

Manifest (tests/corpus/manifest.json): a list of cases, each
  name          unique case name
  file          file under tests/corpus/ (the request body)
  content_type  Content-Type of the raw upload
  query         query string for POST /upscale (without '?')
  status        expected HTTP status, or
  status_any    list of acceptable statuses (used only where a decoder may legitimately go either way, e.g. a JPEG
                cut inside its entropy-coded data: decoders pad it)
  expect        for 200: output PNG width, height, channels (3 or 4; channels_any for a list), bit_depth (8/16),
                icc (true if the output must carry an iCCP chunk)
  pixels        for 200: checks in output coordinates, {x, y, value: [...] (one per output channel), tol}
Pixel checks use initializer=dirac: ICNR(dirac) is exact nearest-neighbour upscaling (docs/MATHS.md), so
out[x, y] == in[x / r, y / r] for lossless inputs, and within a tolerance for JPEG and lossy WebP.
"""

import io
import json
import os
import struct
import zlib

import numpy as np
import png  # pypng: Pillow cannot write Adam7-interlaced PNG
from PIL import Image, ImageCms, ImageOps

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "corpus")
FUZZ = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus")
DIRAC = "scale=2&initializer=dirac"

cases = []


def write(name, data):
    with open(os.path.join(ROOT, name), "wb") as f:
        f.write(data)
    return name


def case(name, file, status, query="", content_type="application/octet-stream", **kw):
    c = {"name": name, "file": file, "content_type": content_type, "query": query}
    if isinstance(status, list):
        c["status_any"] = status
    else:
        c["status"] = status
    c.update(kw)
    cases.append(c)


def pil_bytes(img, fmt, **params):
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def quadrants(w, h, colours, mode="RGB"):
    """An image whose four quadrants have the given colours (tl, tr, bl, br)."""
    img = Image.new(mode, (w, h))
    tl, tr, bl, br = colours
    img.paste(tl, (0, 0, w // 2, h // 2))
    img.paste(tr, (w // 2, 0, w, h // 2))
    img.paste(bl, (0, h // 2, w // 2, h))
    img.paste(br, (w // 2, h // 2, w, h))
    return img


def quadrant_checks(w, h, colours, r=2, tol=0):
    """Pixel checks at the centre of each output quadrant of a w x h input upscaled by r."""
    ow, oh = w * r, h * r
    pts = [(ow // 4, oh // 4), (3 * ow // 4, oh // 4), (ow // 4, 3 * oh // 4), (3 * ow // 4, 3 * oh // 4)]
    return [{"x": x, "y": y, "value": list(c), "tol": tol} for (x, y), c in zip(pts, colours)]


def out(w, h, channels, depth, r=2, **kw):
    e = {"width": w * r, "height": h * r, "channels": channels, "bit_depth": depth}
    e.update(kw)
    return e


def main():
    os.makedirs(ROOT, exist_ok=True)
    for f in os.listdir(ROOT):
        os.remove(os.path.join(ROOT, f))
    rng = np.random.default_rng(5)

    # A small photo-like RGB image (smooth gradients plus noise) used as the base of several cases.
    yy, xx = np.mgrid[0:48, 0:64]
    base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).astype(np.int32)
    base = np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)
    base_img = Image.fromarray(base, "RGB")
    base_png = pil_bytes(base_img, "PNG")
    base_jpg = pil_bytes(base_img, "JPEG", quality=90)

    # --- garbage -----------------------------------------------------------------------------------------------
    case("empty_body", write("empty.bin", b""), 415)
    case("random_bytes", write("random.bin", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()), 415)
    case("png_signature_only", write("png_signature_only.png", base_png[:8]), 415, content_type="image/png")
    case("text_plain_png", write("ok_rgb8.png", base_png), 415, content_type="text/plain")

    # --- truncated PNG and JPEG ----------------------------------------------------------------------------------
    # Cut points: inside IHDR, right after IHDR, inside the first IDAT (several places).
    idat_at = base_png.index(b"IDAT") - 4
    idat_len = struct.unpack(">I", base_png[idat_at : idat_at + 4])[0]
    for cut in [20, 33, idat_at + 8 + 10, idat_at + 8 + idat_len // 2, idat_at + 8 + idat_len - 4]:
        case(f"png_truncated_{cut}", write(f"png_truncated_{cut}.png", base_png[:cut]), 415, content_type="image/png")
    # JPEG: cut in the header segments -> 415; cut inside the entropy-coded scan -> decoders may pad the missing
    # data (libjpeg does, with a warning), so 200 or 415 are both acceptable, never 5xx.
    sos = base_jpg.index(b"\xff\xda")
    for cut in [2, 20, sos - 10, sos + 8]:
        case(f"jpeg_truncated_{cut}", write(f"jpeg_truncated_{cut}.jpg", base_jpg[:cut]), 415, content_type="image/jpeg")
    for cut in [sos + (len(base_jpg) - sos) // 2, len(base_jpg) - 2]:
        case(
            f"jpeg_truncated_{cut}",
            write(f"jpeg_truncated_{cut}.jpg", base_jpg[:cut]),
            [200, 415],
            content_type="image/jpeg",
        )

    # --- header bombs: dimensions are read from the header, rejected before any decoding --------------------------
    def png_claiming(w, h):
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        idat = zlib.compress(b"\x00" * 64)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")

    case("png_header_100000x100000", write("png_header_100000x100000.png", png_claiming(100000, 100000)), 422)
    case("png_header_1x100000000", write("png_header_1x100000000.png", png_claiming(1, 100000000)), 422)
    # A JPEG whose SOF0 claims 65000 x 65000 (the largest a JPEG can say).
    sof = base_jpg.index(b"\xff\xc0")
    big_jpg = base_jpg[: sof + 5] + struct.pack(">HH", 65000, 65000) + base_jpg[sof + 9 :]
    case("jpeg_header_65000x65000", write("jpeg_header_65000x65000.jpg", big_jpg), 422, content_type="image/jpeg")

    # The same for every other format: a huge size in a tiny file.
    bmp = bytearray(pil_bytes(Image.new("RGB", (4, 4), (1, 2, 3)), "BMP"))
    bmp[18:26] = struct.pack("<ii", 60000, 60000)
    case("bmp_header_60000x60000", write("bmp_header_60000x60000.bmp", bytes(bmp)), 422, content_type="image/bmp")
    # Over what a BMP decoder accepts at all (65535): "not a decodable image" or "too large", both fine.
    bmp[18:26] = struct.pack("<ii", 100000, 100000)
    case("bmp_header_100000x100000", write("bmp_header_100000x100000.bmp", bytes(bmp)), [415, 422],
         content_type="image/bmp")
    gif1 = bytearray(pil_bytes(Image.new("P", (4, 4)), "GIF"))
    gif1[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen; the one frame stays 4x4
    case("gif_screen_65535x65535", write("gif_screen_65535x65535.gif", bytes(gif1)), 422, content_type="image/gif")

    def tiff_claiming(w, h):
        entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
                   (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, 16)]
        ifd = struct.pack("<H", len(entries)) + b"".join(
            struct.pack("<HHI", tag, typ, n) + (struct.pack("<HH", v, 0) if typ == 3 else struct.pack("<I", v))
            for tag, typ, n, v in entries) + struct.pack("<I", 0)
        return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(16)

    case("tiff_header_100000x100000", write("tiff_header_100000x100000.tiff", tiff_claiming(100000, 100000)), 422,
         content_type="image/tiff")
    # WebP lossless (VP8L): 14-bit width-1 and height-1 after the 0x2f signature; 16383 x 16383 (the WebP maximum)
    # = 268 Mpx.
    webp = bytearray(pil_bytes(Image.new("RGB", (4, 4), (1, 2, 3)), "WEBP", lossless=True))
    assert webp[12:16] == b"VP8L" and webp[20] == 0x2F
    bits = struct.unpack("<I", bytes(webp[21:25]))[0]
    bits = (bits & ~((1 << 28) - 1)) | 16382 | (16382 << 14)
    webp[21:25] = struct.pack("<I", bits)
    case("webp_header_16383x16383", write("webp_header_16383x16383.webp", bytes(webp)), 422, content_type="image/webp")
    # Decompression bombs in PNG metadata: an iCCP profile and a zTXt comment that inflate to 200 MB each. The
    # pixels are fine; the service must not inflate 200 MB (a 200 without the profile, or a 4xx, both acceptable).
    bomb = zlib.compress(bytes(200 << 20), 9)
    small_png = pil_bytes(Image.new("RGB", (8, 8), (9, 8, 7)), "PNG")
    ihdr_end = 8 + 25
    iccp = small_png[:ihdr_end] + chunk(b"iCCP", b"bomb\x00\x00" + bomb) + small_png[ihdr_end:]
    case("png_iccp_bomb", write("png_iccp_bomb.png", iccp), [200, 415, 422], content_type="image/png",
         expect=out(8, 8, 3, 8))
    ztxt = small_png[:ihdr_end] + chunk(b"zTXt", b"Comment\x00\x00" + bomb) + small_png[ihdr_end:]
    case("png_ztxt_bomb", write("png_ztxt_bomb.png", ztxt), [200, 415, 422], content_type="image/png",
         expect=out(8, 8, 3, 8))
    # Many frames: only the first is decoded.
    frames = [Image.new("RGB", (16, 16), (i % 256, i * 7 % 256, i * 13 % 256)) for i in range(500)]
    many = pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10)
    case("gif_500_frames", write("gif_500_frames.gif", many), 200, content_type="image/gif",
         expect=out(16, 16, None, 8, channels_any=[3, 4]))

    # 25 megapixels (5000 x 5000), asked to grow 4x: over both limits, rejected before any work.
    solid25 = pil_bytes(Image.new("RGB", (5000, 5000), (40, 90, 200)), "PNG", optimize=True)
    case("solid_25mp_scale4", write("solid_25mp.png", solid25), 422, query="scale=4")
    # 4096 x 4096 is at the input limit; 4x it is 268 Mpx, over the output limit (67 Mpx) only.
    solid16 = pil_bytes(Image.new("RGB", (4096, 4096), (200, 90, 40)), "PNG", optimize=True)
    case("solid_4096_scale4", write("solid_4096.png", solid16), 422, query="scale=4")
    # 2900 x 2900 is 8.4 Mpx: under the input limit, but x3 is 75.7 Mpx, over the output limit.
    solid29 = pil_bytes(Image.new("L", (2900, 2900), 77), "PNG", optimize=True)
    case("solid_2900_scale3", write("solid_2900_gray.png", solid29), 422, query="scale=3")

    # --- odd but valid PNG -----------------------------------------------------------------------------------------
    case(
        "png_1x1",
        write("png_1x1.png", pil_bytes(Image.new("RGB", (1, 1), (12, 34, 56)), "PNG")),
        200,
        query=DIRAC,
        expect=out(1, 1, 3, 8),
        pixels=[{"x": 1, "y": 1, "value": [12, 34, 56], "tol": 0}],
    )
    case(
        "png_1x1_scale8",
        "png_1x1.png",
        200,
        query="scale=8&kernel_size=9&initializer=dirac",
        expect=out(1, 1, 3, 8, r=8),
        pixels=[{"x": 7, "y": 7, "value": [12, 34, 56], "tol": 0}],
    )
    case("png_rgb8", "ok_rgb8.png", 200, content_type="image/png", expect=out(64, 48, 3, 8))
    case(
        "png_rgb8_dirac",
        "ok_rgb8.png",
        200,
        query=DIRAC,
        expect=out(64, 48, 3, 8),
        pixels=[{"x": 2 * 10 + 1, "y": 2 * 7, "value": [int(v) for v in base[7, 10]], "tol": 0}],
    )
    q_rgb = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]

    gray = Image.fromarray((np.add.outer(np.arange(32) * 3, np.arange(40) * 4) % 256).astype(np.uint8), "L")
    g = np.asarray(gray)
    case(
        "png_gray8",
        write("gray8.png", pil_bytes(gray, "PNG")),
        200,
        query=DIRAC,
        expect=out(40, 32, 3, 8),
        pixels=[{"x": 2 * 5, "y": 2 * 9, "value": [int(g[9, 5])] * 3, "tol": 0}],
    )
    case(
        "png_gray1",
        write("gray1.png", pil_bytes(quadrants(16, 8, [0, 1, 1, 0], mode="1"), "PNG")),
        200,
        query=DIRAC,
        expect=out(16, 8, 3, 8),
        pixels=quadrant_checks(16, 8, [(0, 0, 0), (255, 255, 255), (255, 255, 255), (0, 0, 0)]),
    )
    la = Image.merge("LA", [gray, Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 6, (32, 1)), "L")])
    case(
        "png_gray_alpha8",
        write("gray_alpha8.png", pil_bytes(la, "PNG")),
        200,
        query=DIRAC,
        expect=out(40, 32, 4, 8),
        pixels=[{"x": 2 * 5, "y": 2 * 9, "value": [int(g[9, 5])] * 3 + [30], "tol": 0}],
    )
    pal = quadrants(20, 12, q_rgb).quantize(colors=4)
    case(
        "png_palette",
        write("palette.png", pil_bytes(pal, "PNG")),
        200,
        query=DIRAC,
        expect=out(20, 12, 3, 8),
        pixels=quadrant_checks(20, 12, q_rgb),
    )
    # Palette with a tRNS chunk: a transparent index gives an alpha channel.
    palt = pal.copy()
    palt.info["transparency"] = palt.getpixel((19, 11))
    case(
        "png_palette_trns",
        write("palette_trns.png", pil_bytes(palt, "PNG", transparency=palt.getpixel((19, 11)))),
        200,
        query=DIRAC,
        expect=out(20, 12, 4, 8),
        pixels=quadrant_checks(20, 12, [c + (255,) for c in q_rgb[:3]] + [(255, 255, 255, 0)]),
    )

    # Adam7-interlaced (pypng), RGB 8-bit and gray 16-bit.
    def adam7(arr, greyscale, bitdepth, alpha=False):
        h, w = arr.shape[:2]
        planes = 1 if arr.ndim == 2 else arr.shape[2]
        writer = png.Writer(w, h, greyscale=greyscale, alpha=alpha, bitdepth=bitdepth, interlace=True)
        buf = io.BytesIO()
        writer.write(buf, arr.reshape(h, w * planes).tolist())
        data = buf.getvalue()
        assert data[28] == 1, "interlace flag"
        return data

    case(
        "png_adam7_rgb8",
        write("adam7_rgb8.png", adam7(base, False, 8)),
        200,
        query=DIRAC,
        expect=out(64, 48, 3, 8),
        pixels=[{"x": 2 * 13, "y": 2 * 21 + 1, "value": [int(v) for v in base[21, 13]], "tol": 0}],
    )
    g16 = (np.add.outer(np.arange(24) * 2000, np.arange(30) * 300) % 65536).astype(np.uint16)
    case(
        "png_adam7_gray16",
        write("adam7_gray16.png", adam7(g16, True, 16)),
        200,
        query=DIRAC,
        expect=out(30, 24, 3, 16),
        pixels=[{"x": 2 * 7, "y": 2 * 11, "value": [int(g16[11, 7])] * 3, "tol": 0}],
    )

    # 16-bit: gray, RGB, RGBA (pypng writes them exactly; Pillow's 16-bit RGB writing is limited).
    def png16(arr, greyscale, alpha):
        h, w = arr.shape[:2]
        planes = 1 if arr.ndim == 2 else arr.shape[2]
        buf = io.BytesIO()
        png.Writer(w, h, greyscale=greyscale, alpha=alpha, bitdepth=16).write(buf, arr.reshape(h, w * planes).tolist())
        return buf.getvalue()

    case(
        "png_gray16",
        write("gray16.png", png16(g16, True, False)),
        200,
        query=DIRAC,
        expect=out(30, 24, 3, 16),
        pixels=[{"x": 2 * 29, "y": 2 * 23, "value": [int(g16[23, 29])] * 3, "tol": 0}],
    )
    rgb16 = rng.integers(0, 65536, (20, 28, 3), dtype=np.uint16)
    case(
        "png_rgb16",
        write("rgb16.png", png16(rgb16, False, False)),
        200,
        query=DIRAC,
        expect=out(28, 20, 3, 16),
        pixels=[{"x": 2 * 3 + 1, "y": 2 * 17 + 1, "value": [int(v) for v in rgb16[17, 3]], "tol": 0}],
    )
    rgba16 = rng.integers(0, 65536, (20, 28, 4), dtype=np.uint16)
    case(
        "png_rgba16",
        write("rgba16.png", png16(rgba16, False, True)),
        200,
        query=DIRAC,
        expect=out(28, 20, 4, 16),
        pixels=[{"x": 2 * 27, "y": 2 * 0, "value": [int(v) for v in rgba16[0, 27]], "tol": 0}],
    )
    case("png_rgba16_icnr", "rgba16.png", 200, query="scale=3", expect=out(28, 20, 4, 16, r=3))

    # RGBA 8-bit with alpha varying from 0 to 255 across the image (colour under alpha 0 is kept, not zeroed).
    rgba = np.dstack([base, (np.arange(64, dtype=np.uint32) * 4).astype(np.uint8)[None, :].repeat(48, 0)])
    case(
        "png_rgba8_alpha_ramp",
        write("rgba8_alpha_ramp.png", pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG")),
        200,
        query=DIRAC,
        expect=out(64, 48, 4, 8),
        pixels=[
            {"x": 2 * x, "y": 2 * y, "value": [int(v) for v in rgba[y, x]], "tol": 0}
            for (x, y) in [(0, 0), (1, 5), (32, 20), (63, 47)]
        ],
    )
    # ICC profile carried into the output.
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    srgb = srgb[:24] + bytes(12) + srgb[36:]  # creation date: zeroed, so the files are reproducible
    case(
        "png_icc",
        write("icc_srgb.png", pil_bytes(base_img, "PNG", icc_profile=srgb)),
        200,
        expect=out(64, 48, 3, 8, icc=True),
    )

    # --- JPEG ----------------------------------------------------------------------------------------------------
    case(
        "jpeg_rgb",
        write("ok.jpg", pil_bytes(quadrants(32, 16, q_rgb), "JPEG", quality=95)),
        200,
        query=DIRAC,
        content_type="image/jpeg",
        expect=out(32, 16, 3, 8),
        pixels=quadrant_checks(32, 16, q_rgb, tol=24),
    )
    case(
        "jpeg_gray",
        write("gray.jpg", pil_bytes(gray, "JPEG", quality=95)),
        200,
        query="scale=2",
        content_type="image/jpeg",
        expect=out(40, 32, 3, 8),
    )
    case(
        "jpeg_progressive",
        write("progressive.jpg", pil_bytes(quadrants(32, 16, q_rgb), "JPEG", quality=95, progressive=True)),
        200,
        query=DIRAC,
        content_type="image/jpeg",
        expect=out(32, 16, 3, 8),
        pixels=quadrant_checks(32, 16, q_rgb, tol=24),
    )
    # CMYK (Adobe APP14, as Photoshop writes it): must come out in the right colours, not inverted.
    cmyk = quadrants(32, 16, q_rgb).convert("CMYK")
    case(
        "jpeg_cmyk",
        write("cmyk.jpg", pil_bytes(cmyk, "JPEG", quality=95)),
        200,
        query=DIRAC,
        content_type="image/jpeg",
        expect=out(32, 16, 3, 8),
        pixels=quadrant_checks(32, 16, q_rgb, tol=48),
    )
    # EXIF orientation 1-8. The displayed (oriented) image is 48 x 32 with red, green, blue, white quadrants; the
    # stored pixels are that image under the inverse transform, so every file must come out identical.
    shown = quadrants(48, 32, q_rgb)
    inverse = {
        1: None,
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    for o in range(1, 9):
        stored = shown if inverse[o] is None else shown.transpose(inverse[o])
        exif = Image.Exif()
        exif[0x0112] = o
        data = pil_bytes(stored, "JPEG", quality=95, exif=exif.tobytes())
        check = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        assert check.size == (48, 32), (o, check.size)
        assert max(abs(a - b) for a, b in zip(check.getpixel((5, 5)), (255, 0, 0))) < 24, o
        case(
            f"jpeg_exif_orientation_{o}",
            write(f"exif_orientation_{o}.jpg", data),
            200,
            query=DIRAC,
            content_type="image/jpeg",
            expect=out(48, 32, 3, 8),
            pixels=quadrant_checks(48, 32, q_rgb, tol=24),
        )
    # Orientation in a PNG eXIf chunk is applied too (image 0.25 reads it).
    exif = Image.Exif()
    exif[0x0112] = 6
    case(
        "png_exif_orientation_6",
        write("exif_orientation_6.png", pil_bytes(shown.transpose(inverse[6]), "PNG", exif=exif.tobytes())),
        200,
        query=DIRAC,
        expect=out(48, 32, 3, 8),
        pixels=quadrant_checks(48, 32, q_rgb),
    )

    # --- other supported formats ---------------------------------------------------------------------------------
    q = quadrants(24, 16, q_rgb)
    case(
        "webp_lossless",
        write("lossless.webp", pil_bytes(q, "WEBP", lossless=True)),
        200,
        query=DIRAC,
        content_type="image/webp",
        expect=out(24, 16, 3, 8),
        pixels=quadrant_checks(24, 16, q_rgb),
    )
    case(
        "webp_lossy",
        write("lossy.webp", pil_bytes(q, "WEBP", quality=90)),
        200,
        query=DIRAC,
        content_type="image/webp",
        expect=out(24, 16, 3, 8),
        pixels=quadrant_checks(24, 16, q_rgb, tol=40),
    )
    qa = q.convert("RGBA")
    qa.putalpha(Image.fromarray(np.tile(np.arange(24, dtype=np.uint8) * 10, (16, 1)), "L"))
    case(
        "webp_rgba_lossless",
        write("rgba.webp", pil_bytes(qa, "WEBP", lossless=True, exact=True)),
        200,
        query=DIRAC,
        content_type="image/webp",
        expect=out(24, 16, 4, 8),
        pixels=[{"x": 2 * 3, "y": 2 * 2, "value": [255, 0, 0, 30], "tol": 0}],
    )
    # GIF: the first frame of an animation (red/green/blue/white), the second frame is all black.
    frames = [q.convert("P", palette=Image.Palette.ADAPTIVE, colors=4), Image.new("RGB", (24, 16)).convert("P")]
    gif = pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    case(
        "gif_animated_first_frame",
        write("animated.gif", gif),
        200,
        query=DIRAC,
        content_type="image/gif",
        expect=out(24, 16, None, 8, channels_any=[3, 4]),
        pixels=[
            {"x": x, "y": y, "value": v[:3], "tol": 0, "rgb_only": True}
            for x, y, v in [(c["x"], c["y"], c["value"]) for c in quadrant_checks(24, 16, q_rgb)]
        ],
    )
    case(
        "bmp_rgb24",
        write("rgb24.bmp", pil_bytes(q, "BMP")),
        200,
        query=DIRAC,
        content_type="image/bmp",
        expect=out(24, 16, 3, 8),
        pixels=quadrant_checks(24, 16, q_rgb),
    )
    case(
        "tiff_rgb8",
        write("rgb8.tiff", pil_bytes(q, "TIFF")),
        200,
        query=DIRAC,
        content_type="image/tiff",
        expect=out(24, 16, 3, 8),
        pixels=quadrant_checks(24, 16, q_rgb),
    )
    case(
        "tiff_rgba8_lzw",
        write("rgba8_lzw.tiff", pil_bytes(qa, "TIFF", compression="tiff_lzw")),
        200,
        query=DIRAC,
        content_type="image/tiff",
        expect=out(24, 16, 4, 8),
        pixels=[{"x": 2 * 3, "y": 2 * 2, "value": [255, 0, 0, 30], "tol": 0}],
    )
    case(
        "tiff_gray16",
        write("gray16.tiff", pil_bytes(Image.fromarray(g16), "TIFF")),
        200,
        query=DIRAC,
        content_type="image/tiff",
        expect=out(30, 24, 3, 16),
        pixels=[{"x": 2 * 7, "y": 2 * 11, "value": [int(g16[11, 7])] * 3, "tol": 0}],
    )

    # --- unsupported types ---------------------------------------------------------------------------------------
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">' \
        b'<rect width="64" height="64" fill="red"/></svg>\n'
    case("svg", write("image.svg", svg), 415, content_type="image/svg+xml")
    case("svg_as_octet_stream", "image.svg", 415)
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    case("pdf", write("document.pdf", pdf), 415, content_type="application/pdf")
    case("ico", write("icon.ico", pil_bytes(q, "ICO", sizes=[(16, 16)])), 415, content_type="image/x-icon")
    case("ppm", write("image.ppm", pil_bytes(q, "PPM")), 415, content_type="image/x-portable-pixmap")
    case("tga", write("image.tga", pil_bytes(q, "TGA")), 415, content_type="image/x-tga")
    avif = struct.pack(">I", 32) + b"ftypavif" + b"\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64
    case("avif_header", write("header.avif", avif), 415, content_type="image/avif")
    case("html", write("page.html", b"<!doctype html><html><body>hi</body></html>"), 415, content_type="image/png")

    with open(os.path.join(ROOT, "manifest.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")

    # --- fuzz seeds ------------------------------------------------------------------------------------------------
    seeds = os.path.join(FUZZ, "decode_upscale")
    os.makedirs(seeds, exist_ok=True)
    small = {
        "rgb8.png": pil_bytes(q, "PNG"),
        "palette_trns.png": pil_bytes(palt, "PNG", transparency=palt.getpixel((19, 11))),
        "gray_alpha8.png": pil_bytes(la.crop((0, 0, 8, 8)), "PNG"),
        "adam7_gray16.png": adam7(g16[:8, :8], True, 16),
        "rgba16.png": png16(rgba16[:6, :6], False, True),
        "q.jpg": pil_bytes(q, "JPEG", quality=80),
        "exif6.jpg": pil_bytes(q, "JPEG", quality=80, exif=exif.tobytes()),
        "progressive.jpg": pil_bytes(q, "JPEG", quality=80, progressive=True),
        "cmyk.jpg": pil_bytes(q.convert("CMYK"), "JPEG", quality=80),
        "lossless.webp": pil_bytes(q, "WEBP", lossless=True),
        "lossy.webp": pil_bytes(q, "WEBP", quality=50),
        "anim.gif": gif,
        "rgb24.bmp": pil_bytes(q, "BMP"),
        "rgba.tiff": pil_bytes(qa, "TIFF", compression="tiff_lzw"),
        "gray16.tiff": pil_bytes(Image.fromarray(np.ascontiguousarray(g16[:8, :8])), "TIFF"),
        "icc.png": pil_bytes(q, "PNG", icc_profile=srgb),
    }
    for name, data in small.items():
        with open(os.path.join(seeds, name), "wb") as f:
            f.write(data)

    kernel_seeds()

    total = sum(os.path.getsize(os.path.join(ROOT, f)) for f in os.listdir(ROOT))
    print(f"{len(cases)} cases, {len(os.listdir(ROOT))} files, {total} bytes in tests/corpus")
    assert total < 5 * 1024 * 1024


def kernel_seeds():
    """Seeds for the kernel_json and safetensors fuzz targets: small valid kernels and near misses."""
    from safetensors.numpy import save as st_save

    rng = np.random.default_rng(7)
    kj = os.path.join(FUZZ, "kernel_json")
    st = os.path.join(FUZZ, "safetensors")
    os.makedirs(kj, exist_ok=True)
    os.makedirs(st, exist_ok=True)

    def nested(r, k):
        return rng.normal(0, 0.3, (3 * r * r, 3, k, k)).astype(np.float32)

    w21 = nested(2, 1)
    seeds = {
        "minimal_r2_k1.json": {"weight": w21.tolist()},
        "full_r2_k1.json": {
            "scale": 2, "kernel_size": 1, "in_channels": 3, "out_channels": 12, "init": "custom",
            "initializer": None, "seed": None, "weight": w21.tolist(), "bias": [0.0] * 12,
        },
        "icnr_claim_r2_k1.json": {"scale": 2, "kernel_size": 1, "init": "icnr", "initializer": "dirac", "seed": 0,
                                  "weight": w21.tolist()},
        "r3_k3.json": {"weight": nested(3, 3).tolist(), "bias": rng.normal(0, 0.1, 27).tolist()},
        "wrong_shape.json": {"weight": w21[:, :2].tolist()},
        "scale_mismatch.json": {"scale": 3, "weight": w21.tolist()},
    }
    for name, obj in seeds.items():
        with open(os.path.join(kj, name), "w") as f:
            json.dump(obj, f)
    with open(os.path.join(kj, "nonfinite.json"), "w") as f:
        f.write('{"weight": [[[[1e39]]]], "bias": [NaN]}')

    st_seeds = {
        "weight_only_f32.safetensors": {"weight": w21},
        "weight_bias_f32.safetensors": {"weight": w21, "bias": np.zeros(12, np.float32)},
        "prefixed_f16.safetensors": {"conv.weight": w21.astype(np.float16), "conv.bias": np.ones(12, np.float16)},
        "r2_k3_f32.safetensors": {"weight": nested(2, 3)},
        "two_weights.safetensors": {"a.weight": w21, "b.weight": w21},
        "bad_bias.safetensors": {"weight": w21, "bias": np.zeros(5, np.float32)},
    }
    for name, tensors in st_seeds.items():
        with open(os.path.join(st, name), "wb") as f:
            f.write(st_save(tensors))


if __name__ == "__main__":
    main()
