"""Fold an inference BatchNorm into the Conv2D or Dense that feeds it.

Pattern ``x -> Conv2D|Dense -> t -> BatchNorm -> y`` becomes one layer writing
``y`` with, per output channel ``o`` and ``s = scale / sqrt(var + epsilon)``::

    weight'[o, ...] = weight[o, ...] * s[o]
    bias'[o]        = (bias[o] - mean[o]) * s[o] + beta[o]     (bias = 0 if absent)

computed in float64 and stored as float32.  One call folds every match in one
sweep, chains included (``Conv -> BN -> BN`` becomes one layer).

Refuses (leaves the graph unchanged) when:

* the BatchNorm's input is not produced by a Conv2D or Dense;
* ``t`` has another reader or is a graph output (it must stay observable);
* the layer already has a ``fused_activation`` (BN after a nonlinearity does
  not fold).

Raises :class:`~fxp.errors.GraphError` (naming both nodes, the first bad
index and value) when a folded weight or bias is not finite in float32, e.g.
huge-but-finite weights times a large ``scale / sqrt(var + epsilon)``: the
folded layer would compute NaN/Inf where the two nodes did not.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fxp.errors import GraphError
from fxp.ir.graph import Graph
from fxp.ir.nodes import BatchNorm, Conv2D, Dense

__all__ = ["apply", "fold"]


def fold(layer: Conv2D | Dense, bn: BatchNorm) -> Conv2D | Dense:
    """``layer`` with ``bn`` folded in, writing ``bn``'s output (see the module docstring).

    Raises
    ------
    GraphError
        A folded weight or bias is NaN or overflows float32.
    """
    s = bn.scale.astype(np.float64) / np.sqrt(bn.var.astype(np.float64) + bn.epsilon)
    w = layer.weight.astype(np.float64)
    w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
    b = np.zeros(w.shape[0]) if layer.bias is None else layer.bias.astype(np.float64)
    b = (b - bn.mean) * s + bn.bias
    out = {}
    for what, arr in (("weight", w), ("bias", b)):
        with np.errstate(over="ignore", invalid="ignore"):
            out[what] = arr.astype(np.float32)
        bad = ~np.isfinite(out[what])
        if np.any(bad):
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise GraphError(f"node {bn.name!r} (BatchNorm): folding into {layer.name!r} "
                             f"({layer.op_type}) gives {what} {arr[idx].item()!r} at index {idx}, "
                             f"not finite in float32")
    return replace(layer, weight=out["weight"], bias=out["bias"], outputs=bn.outputs)


def apply(graph: Graph) -> tuple[Graph, bool]:
    """Fold every foldable BatchNorm, chains included, in one sweep; see the module docstring."""
    current: dict[str, Conv2D | Dense] = {}  # layer name -> the layer with its BNs folded
    writer: dict[str, str] = {}              # tensor -> folded layer now writing it
    removed: set[str] = set()
    for bn in graph.nodes:
        if not isinstance(bn, BatchNorm):
            continue
        t = bn.inputs[0]
        layer = current[writer[t]] if t in writer else graph.producer(t)
        if not isinstance(layer, (Conv2D, Dense)) or layer.fused_activation is not None:
            continue
        if not graph.is_sole_use(t):
            continue
        current[layer.name] = fold(layer, bn)
        writer[bn.output] = layer.name
        removed.add(bn.name)
    if not removed:
        return graph, False
    return graph.with_nodes([current.get(n.name, n) for n in graph.nodes
                             if n.name not in removed]), True
