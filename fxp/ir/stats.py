"""Per-layer size statistics: parameter counts and multiply-accumulates.

Counts are per sample (batch 1).  A MAC is one multiply plus one add of the
layer's inner product; pools, activations and elementwise ops count 0 MACs.

>>> import numpy as np
>>> from fxp.ir.nodes import Conv2D
>>> c = Conv2D(name="c", inputs=("x",), outputs=("y",),
...            weight=np.zeros((8, 3, 3, 3), np.float32), bias=np.zeros(8, np.float32))
>>> param_count(c), node_macs(c, (None, 8, 30, 30))
(224, 194400)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fxp.ir.graph import Graph
from fxp.ir.nodes import BatchNorm, Conv2D, Dense, Node, Shape

__all__ = ["LayerStats", "layer_stats", "node_macs", "param_count"]


@dataclass(frozen=True)
class LayerStats:
    """Size of one layer.

    Attributes
    ----------
    name, op_type : str
    output_shape : shape with batch ``None``
    params : int
        Number of stored parameters (weights + bias; BN's 4 vectors).
    macs : int
        Multiply-accumulates per sample.
    """

    name: str
    op_type: str
    output_shape: Shape
    params: int
    macs: int


def param_count(node: Node) -> int:
    """Number of parameters stored on ``node`` (0 for parameter-free ops)."""
    if isinstance(node, (Conv2D, Dense)):
        return int(node.weight.size + (0 if node.bias is None else node.bias.size))
    if isinstance(node, BatchNorm):
        return int(4 * node.scale.size)
    return 0


def node_macs(node: Node, output_shape: Shape) -> int:
    """Multiply-accumulates per sample for ``node`` producing ``output_shape``."""
    if isinstance(node, Conv2D):
        per_output = int(np.prod(node.weight.shape[1:]))
        return per_output * int(np.prod(output_shape[1:], dtype=np.int64))
    if isinstance(node, Dense):
        return int(node.weight.size)
    return 0


def layer_stats(graph: Graph) -> list[LayerStats]:
    """One :class:`LayerStats` per node, in graph order."""
    return [LayerStats(n.name, n.op_type, graph.shapes[n.output], param_count(n),
                       node_macs(n, graph.shapes[n.output])) for n in graph.nodes]
