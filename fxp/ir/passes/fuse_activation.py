"""Fuse a ReLU or Clip into the Conv2D or Dense that feeds it.

Pattern ``x -> Conv2D|Dense -> t -> ReLU|Clip -> y`` becomes the layer writing
``y`` with ``fused_activation = "relu"`` (ReLU) or ``(min, max)`` (Clip).
One call fuses every match in one sweep over the graph.

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
    """Fuse every fusable activation in one sweep; see the module docstring."""
    current: dict[str, Conv2D | Dense] = {}  # layer name -> the layer with its activation
    writer: dict[str, str] = {}              # tensor -> fused layer now writing it
    removed: set[str] = set()
    for act in graph.nodes:
        if not isinstance(act, (ReLU, Clip)):
            continue
        t = act.inputs[0]
        layer = current[writer[t]] if t in writer else graph.producer(t)
        if not isinstance(layer, (Conv2D, Dense)) or layer.fused_activation is not None:
            continue
        if not graph.is_sole_use(t):
            continue
        fused: Activation = ("relu" if isinstance(act, ReLU)
                             else (act.min_value, act.max_value))
        current[layer.name] = replace(layer, fused_activation=fused, outputs=act.outputs)
        writer[act.output] = layer.name
        removed.add(act.name)
    if not removed:
        return graph, False
    return graph.with_nodes([current.get(n.name, n) for n in graph.nodes
                             if n.name not in removed]), True
