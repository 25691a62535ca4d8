"""Fold an inference BatchNorm into the Conv2D or Dense that feeds it.

Pattern ``x -> Conv2D|Dense -> t -> BatchNorm -> y`` becomes one layer writing
``y`` with, per output channel ``o`` and ``s = scale / sqrt(var + epsilon)``::

    weight'[o, ...] = weight[o, ...] * s[o]
    bias'[o]        = (bias[o] - mean[o]) * s[o] + beta[o]     (bias = 0 if absent)

computed in float64 and stored as float32.

Refuses (leaves the graph unchanged) when:

* the BatchNorm's input is not produced by a Conv2D or Dense;
* ``t`` has another reader or is a graph output (it must stay observable);
* the layer already has a ``fused_activation`` (BN after a nonlinearity does
  not fold).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fxp.ir.graph import Graph
from fxp.ir.nodes import BatchNorm, Conv2D, Dense

__all__ = ["apply"]


def apply(graph: Graph) -> tuple[Graph, bool]:
    """Fold every foldable BatchNorm; see the module docstring."""
    changed = False
    for bn in [n for n in graph.nodes if isinstance(n, BatchNorm)]:
        layer = graph.producer(bn.inputs[0])
        if not isinstance(layer, (Conv2D, Dense)) or layer.fused_activation is not None:
            continue
        if not graph.is_sole_use(layer.output):
            continue
        s = bn.scale.astype(np.float64) / np.sqrt(bn.var.astype(np.float64) + bn.epsilon)
        w = layer.weight.astype(np.float64)
        w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
        b = np.zeros(w.shape[0]) if layer.bias is None else layer.bias.astype(np.float64)
        b = (b - bn.mean) * s + bn.bias
        folded = replace(layer, weight=w.astype(np.float32), bias=b.astype(np.float32),
                         outputs=bn.outputs)
        graph = graph.replace_nodes({layer.name: folded, bn.name: None})
        changed = True
    return graph, changed
