"""Remove inference no-ops: :class:`~fxp.ir.nodes.Dropout` and :class:`~fxp.ir.nodes.Identity`.

Pattern ``x -> Dropout|Identity -> y``: readers of ``y`` read ``x`` instead.
If ``y`` is a graph output, the producer of ``x`` writes ``y`` directly.

One call removes every removable node, whole chains included, in one sweep
over the graph (linear in its size), so a chain of any length disappears in
one round of :func:`~fxp.ir.passes.base.run_to_fixpoint`.

Refuses (leaves the node) when ``y`` is a graph output and ``x`` (after
earlier removals) is a graph input or also a graph output: removing the node
would merge two graph tensors.
"""

from __future__ import annotations

from fxp.ir.graph import Graph
from fxp.ir.nodes import Dropout, Identity, Node

__all__ = ["apply"]


def apply(graph: Graph) -> tuple[Graph, bool]:
    """Drop every removable Dropout/Identity node; see the module docstring."""
    outputs = set(graph.outputs)
    alias: dict[str, str] = {}  # removed tensor -> the tensor now holding its value

    def resolve(t: str) -> str:
        while t in alias:
            t = alias[t]
        return t

    kept: list[Node] = []
    changed = False
    for node in graph.nodes:
        inputs = tuple(resolve(t) for t in node.inputs)
        if not isinstance(node, (Dropout, Identity)):
            kept.append(node.with_io(inputs) if inputs != node.inputs else node)
            continue
        (x,), y = inputs, node.output
        if y not in outputs:
            alias[y] = x
            changed = True
        elif x in graph.inputs or x in outputs:
            kept.append(node.with_io(inputs) if inputs != node.inputs else node)
        else:
            # The producer of x and x's readers so far now use the name y.
            kept = [n.with_io(tuple(y if t == x else t for t in n.inputs),
                              tuple(y if t == x else t for t in n.outputs))
                    if x in n.inputs or x in n.outputs else n for n in kept]
            alias[x] = y
            changed = True
    if not changed:
        return graph, False
    return graph.with_nodes(kept), True
