#!/usr/bin/env python3
"""The largest job the default limits allow: a 4096 x 4096 input (ICNR_UPSCALE_MAX_INPUT_PIXELS) upscaled x2 to
8192 x 8192 (ICNR_UPSCALE_MAX_OUTPUT_PIXELS). Used by .ci/run's live step, with Pillow only:

    python .ci/limits.py --make in.png          # a 4096 x 4096 RGB PNG
    python .ci/limits.py --check in.png out.png # out is 8192 x 8192 RGB and, with initializer=dirac (ICNR dirac is
                                                # exact nearest neighbour), out[x, y] == in[x // 2, y // 2]
"""

import sys

from PIL import Image, ImageChops

Image.MAX_IMAGE_PIXELS = None  # 67 Mpx is over Pillow's decompression-bomb warning; these are our own files
N = 4096


def make(path):
    # Gradients in three directions plus a fine pattern, so neighbouring pixels differ and the PNG stays small.
    r = Image.linear_gradient("L").resize((N, N))
    g = r.transpose(Image.Transpose.ROTATE_90)
    b = Image.radial_gradient("L").resize((N, N))
    pattern = Image.effect_noise((256, 256), 40).resize((N, N), Image.Resampling.NEAREST)
    b = ImageChops.add(b, pattern, scale=2.0)
    Image.merge("RGB", (r, g, b)).save(path, compress_level=1)


def check(inp, outp):
    src = Image.open(inp)
    src.load()
    out = Image.open(outp)
    print(f"{outp}: {out.format} {out.mode} {out.size[0]}x{out.size[1]}")
    if out.format != "PNG" or out.mode != "RGB" or out.size != (2 * N, 2 * N):
        sys.exit(f"expected an RGB PNG of {2 * N}x{2 * N}")
    want = src.resize(out.size, Image.Resampling.NEAREST)  # factor 2: source pixel (x // 2, y // 2) exactly
    box = ImageChops.difference(out.convert("RGB"), want).getbbox()
    if box is not None:
        sys.exit(f"output differs from the nearest-neighbour upscale of the input within {box}")
    print("every output pixel is its input pixel (dirac ICNR = nearest neighbour)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--make":
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "--check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
