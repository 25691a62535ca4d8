"""Fuse a ReLU or Clip into the Conv2D or Dense that feeds it.

Pattern ``x -> Conv2D|Dense -> t -> ReLU|Clip -> y`` becomes the layer writing
``y`` with ``fused_activation = "relu"`` (ReLU) or ``(min, max)`` (Clip).

Refuses (leaves the graph unchanged) when:

* the activation's input is not produced by a Conv2D or Dense;
* ``t`` has another reader or is a graph output;
* the layer already has a fused activation (activations are not composed).
"""

from __future__ import annotations

from dataclasses import replace

from fxp.ir.graph import Graph
from fxp.ir.nodes import Activation, Clip, Conv2D, Dense, ReLU

__all__ = ["apply"]


def apply(graph: Graph) -> tuple[Graph, bool]:
    """Fuse every fusable activation; see the module docstring."""
    changed = False
    for act in [n for n in graph.nodes if isinstance(n, (ReLU, Clip))]:
        layer = graph.producer(act.inputs[0])
        if not isinstance(layer, (Conv2D, Dense)) or layer.fused_activation is not None:
            continue
        if not graph.is_sole_use(layer.output):
            continue
        fused: Activation = ("relu" if isinstance(act, ReLU)
                             else (act.min_value, act.max_value))
        graph = graph.replace_nodes({layer.name: replace(layer, fused_activation=fused,
                                                         outputs=act.outputs),
                                     act.name: None})
        changed = True
    return graph, changed
