"""Bit-exact fxp simulation of ``bnn_mnist`` from its JSON (packed weights, thresholds).

Usage::

    python models/bnn/bnn_sim.py [--data mnist5k] [--limit N]

Every binary layer runs on fxp's XNOR-popcount path
(:func:`fxp.ops.binary.binary_conv2d_int` / :func:`~fxp.ops.binary.binary_dense_int`
on the packed words read from the JSON, then
:func:`~fxp.ops.binary.binary_threshold`); the int8 first and last layers run
on :func:`fxp.ops.layers.conv2d_int` / :func:`~fxp.ops.layers.dense_int` with
the raw pixels 0..255 as integer codes; max pooling of +-1 codes is
:func:`fxp.ops.layers.maxpool2d_int`.  The logits are integers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from fxp.core.format import QFormat  # noqa: E402
from fxp.ops import binary as ob  # noqa: E402
from fxp.ops import layers  # noqa: E402

JSON_PATH = HERE / "bnn_mnist.json"
PM1 = QFormat.integer(2)  # codes -1 and +1


def load(path: str | Path = JSON_PATH) -> dict:
    """The JSON with packed weights as :class:`fxp.ops.binary.PackedBits` and int64 arrays."""
    net = json.loads(Path(path).read_text())
    for layer in net["layers"]:
        if "words_hex" in layer:
            words = np.array([int(h, 16) for h in layer.pop("words_hex")], np.uint64)
            words = words.reshape(layer["words_shape"])
            layout = "ohwi" if layer["kind"] == "binary_conv" else "rows"
            layer["packed"] = ob.PackedBits(words, layer["shape"][1], layout)
        for key in ("weight_codes", "bias_codes", "thresholds", "directions", "alpha_codes"):
            if key in layer:
                layer[key] = np.array(layer[key], np.int64)
    return net


def simulate(net: dict, x_raw) -> np.ndarray:
    """Integer logits ``[N, 10]`` for raw pixel codes ``[N, 1, 28, 28]`` (0..255)."""
    h = np.asarray(x_raw).astype(np.int64)
    for layer in net["layers"]:
        kind = layer["kind"]
        if kind == "conv":
            acc, _ = layers.conv2d_int(h, layer["weight_codes"], pads=layer["pads"],
                                       strides=layer["strides"])
            h = ob.binary_threshold(acc, layer["thresholds"], layer["directions"])
        elif kind == "maxpool":
            k = layer["k"]
            h = layers.maxpool2d_int(h, PM1, (k, k), strides=(k, k))
        elif kind == "binary_conv":
            dot, _ = ob.binary_conv2d_int(h, layer["packed"], pad_value=layer["pad_value"],
                                          pads=layer["pads"], strides=layer["strides"])
            h = ob.binary_threshold(dot, layer["thresholds"], layer["directions"])
        elif kind == "flatten":
            h = h.reshape(h.shape[0], -1)
        elif kind == "binary_dense":
            dot, _ = ob.binary_dense_int(h, layer["packed"])
            h = ob.binary_threshold(dot, layer["thresholds"], layer["directions"])
        elif kind == "dense":
            h, _ = layers.dense_int(h, layer["weight_codes"], layer["bias_codes"])
        else:
            raise ValueError(f"unknown layer kind {kind!r} in {layer['name']}")
    return h


def main(argv: list[str] | None = None) -> int:
    from fxp.data import load_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--model", type=Path, default=JSON_PATH)
    args = ap.parse_args(argv)
    ds = load_dataset(args.data, limit=args.limit)
    pred = simulate(load(args.model), ds.x).argmax(1)
    acc = float((pred == ds.y).mean())
    print(f"fxp popcount simulation: accuracy {acc:.4f} ({int((pred == ds.y).sum())}/"
          f"{len(ds.y)}) on {args.data}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
