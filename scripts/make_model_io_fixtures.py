#!/usr/bin/env python3
"""Model-file fixtures for tests/model.rs, written by scripts/models.py (the PyTorch reference of the format).

    /work/venv/bin/python scripts/make_model_io_fixtures.py     # writes tests/fixtures/model_io/

For a seeded random model using every op (conv2d with and without bias, prelu of length 1 and of length
channels, leaky_relu, relu, tanh, pixel_shuffle, residual nearest) it writes:
- every_op.json: the model JSON (models.to_json);
- every_op.safetensors: the same model as safetensors (models.save_safetensors: state_dict + metadata);
- every_op.f32.json: {"tensors": {state_dict key: flat list of the float32 values torch holds, as hex bits}},
  so the Rust test can compare both loaders with PyTorch's own tensors bit for bit.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "model_io")


def main():
    os.makedirs(OUT, exist_ok=True)
    m = models._random_model(7, 3, "nearest", with_extras=True)
    # One more tanh so that every op appears (the random model has relu, prelu and leaky_relu).
    d = json.loads(models.to_json(m))
    layers = d["layers"]
    layers.insert(len(layers) - 2, {"op": "tanh"})
    d["layers"] = layers
    d["name"] = "every-op-x3"
    m = models.from_dict(d)
    with open(os.path.join(OUT, "every_op.json"), "w") as f:
        f.write(models.to_json(m))
    models.save_safetensors(m, os.path.join(OUT, "every_op.safetensors"))
    tensors = {k: [format(int(b), "08x") for b in v.detach().numpy().astype(np.float32).ravel().view(np.uint32)]
               for k, v in m.state_dict().items()}
    with open(os.path.join(OUT, "every_op.f32.json"), "w") as f:
        json.dump({"tensors": tensors}, f)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
