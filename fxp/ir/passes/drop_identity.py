"""Remove inference no-ops: :class:`~fxp.ir.nodes.Dropout` and :class:`~fxp.ir.nodes.Identity`.

Pattern ``x -> Dropout|Identity -> y``: readers of ``y`` read ``x`` instead.
If ``y`` is a graph output, the producer of ``x`` writes ``y`` directly.

Refuses (leaves the node) when ``y`` is a graph output and ``x`` is a graph
input or also a graph output: removing the node would merge two graph tensors.
"""

from __future__ import annotations

from fxp.ir.graph import Graph
from fxp.ir.nodes import Dropout, Identity

__all__ = ["apply"]


def apply(graph: Graph) -> tuple[Graph, bool]:
    """Drop the first removable Dropout/Identity node; see the module docstring."""
    for node in graph.nodes:
        if not isinstance(node, (Dropout, Identity)):
            continue
        (x,), y = node.inputs, node.output
        if y in graph.outputs and (x in graph.inputs or x in graph.outputs):
            continue
        rest = [n for n in graph.nodes if n is not node]
        if y in graph.outputs:
            # The producer of x and x's other readers now use the name y.
            nodes = [n.with_io(tuple(y if t == x else t for t in n.inputs),
                               tuple(y if t == x else t for t in n.outputs)) for n in rest]
        else:
            nodes = [n.with_io(tuple(x if t == y else t for t in n.inputs)) for n in rest]
        return graph.with_nodes(nodes), True
    return graph, False
