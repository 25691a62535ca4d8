"""Small sequential architectures as fxp graphs (no torch needed), e.g. a CNN for 8x8 digits.

>>> g = sequential_graph(DIGITS_CNN, (1, 8, 8), name="digits_cnn")
>>> [n.op_type for n in g.nodes]
['Conv2D', 'ReLU', 'MaxPool2D', 'Conv2D', 'ReLU', 'MaxPool2D', 'Flatten', 'Dense', 'Softmax']
>>> g.shapes["logits"]
(None, 10)
"""

from __future__ import annotations

import math

import numpy as np

from fxp.errors import GraphError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Softmax

__all__ = ["DIGITS_CNN", "DIGITS_METADATA", "sequential_graph"]

Layer = tuple[str, dict]

DIGITS_CNN: list[Layer] = [
    ("conv", {"out": 8, "k": 3, "pad": 1}), ("relu", {}), ("maxpool", {"k": 2}),
    ("conv", {"out": 16, "k": 3, "pad": 1}), ("relu", {}), ("maxpool", {"k": 2}),
    ("flatten", {}), ("dense", {"out": 10}), ("softmax", {}),
]
"""conv8@3x3 same-relu-pool2-conv16@3x3 same-relu-pool2-fc10-softmax, for ``digits`` (1x8x8)."""

DIGITS_METADATA = {"fxp.preprocess.scale": "0.0625", "fxp.preprocess.mean": "0.5",
                   "fxp.preprocess.std": "0.5", "fxp.preprocess.layout": "NCHW"}
"""Preprocessing of ``digits`` (grey levels 0..16 -> [-1, 1])."""


def sequential_graph(layers: list[Layer], input_shape: tuple[int, ...], *, name: str = "model",
                     metadata: dict[str, str] | None = None, seed: int = 0) -> Graph:
    """A chain graph with torch-default random weights (``U(+-1/sqrt(fan_in))``).

    Layer kinds (``models/archs.py`` style): ``conv`` (out, k, pad, stride),
    ``relu``, ``maxpool`` (k), ``flatten``, ``dense`` (out), ``softmax`` (last).
    The last weighted layer's output is named ``logits``.
    """
    rng = np.random.default_rng(seed)
    shape = (None, *input_shape)
    cur = "input"
    nodes = []
    count: dict[str, int] = {}
    last_weighted = max((i for i, (k, _) in enumerate(layers) if k in ("conv", "dense")),
                        default=-1)
    for i, (kind, p) in enumerate(layers):
        count[kind] = count.get(kind, 0) + 1
        nm = f"{ {'conv': 'conv', 'dense': 'fc', 'maxpool': 'pool'}.get(kind, kind)}{count[kind]}"
        out = "logits" if i == last_weighted else nm
        if kind == "softmax":
            out = "probs"
        if kind in ("conv", "dense"):
            fan_in = shape[1] * p.get("k", 1) ** 2 if kind == "conv" else int(np.prod(shape[1:]))
            bound = 1.0 / math.sqrt(fan_in)
            wshape = ((p["out"], shape[1], p["k"], p["k"]) if kind == "conv"
                      else (p["out"], fan_in))
            w = rng.uniform(-bound, bound, wshape).astype(np.float32)
            b = rng.uniform(-bound, bound, p["out"]).astype(np.float32)
            if kind == "conv":
                pad, st = int(p.get("pad", 0)), int(p.get("stride", 1))
                node = Conv2D(name=nm, inputs=(cur,), outputs=(out,), weight=w, bias=b,
                              pads=(pad,) * 4, strides=(st, st))
            else:
                node = Dense(name=nm, inputs=(cur,), outputs=(out,), weight=w, bias=b)
        elif kind == "relu":
            node = ReLU(name=nm, inputs=(cur,), outputs=(out,))
        elif kind == "maxpool":
            node = MaxPool2D(name=nm, inputs=(cur,), outputs=(out,), kernel=(p["k"], p["k"]),
                             strides=(p["k"], p["k"]))
        elif kind == "flatten":
            node = Flatten(name=nm, inputs=(cur,), outputs=(out,))
        elif kind == "softmax":
            node = Softmax(name=nm, inputs=(cur,), outputs=(out,))
        else:
            raise GraphError(f"unknown layer kind {kind!r}")
        nodes.append(node)
        shape = node.infer_shape(shape)
        cur = out
    return Graph(nodes=tuple(nodes), inputs=("input",), input_shapes={"input": (None,
                                                                                *input_shape)},
                 outputs=(cur,), metadata=dict(metadata or {}), name=name)
