"""The graph-pass contract.

A *pass* is a callable ``apply(graph) -> (graph, changed)``:

* it is pure: the input :class:`~fxp.ir.graph.Graph` is never modified (graphs
  are frozen); a rewritten graph is returned as a new object;
* ``changed`` is ``True`` iff the returned graph differs from the input;
  when ``False`` the input graph itself is returned;
* it preserves the float function computed by the graph (up to float32
  rounding), so any pass may run at any time;
* it may rewrite one match per call or all matches; :func:`run_to_fixpoint`
  calls the passes repeatedly until none changes anything;
* its module docstring says which pattern it rewrites and when it refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fxp.errors import GraphError
from fxp.ir.graph import Graph

__all__ = ["Pass", "run_to_fixpoint"]

Pass = Callable[[Graph], "tuple[Graph, bool]"]
"""Signature of a pass: ``apply(graph) -> (graph, changed)``."""


def run_to_fixpoint(graph: Graph, passes: Sequence[Pass], *,
                    max_rounds: int | None = None) -> Graph:
    """Apply ``passes`` in order, round after round, until a round changes nothing.

    Parameters
    ----------
    graph : Graph
    passes : sequence of pass callables
    max_rounds : int, optional
        Safety bound on the number of rounds; by default ``max(100, len(graph.nodes) + 1)``,
        enough for passes that remove at least one node whenever they change the graph
        (the canonical passes do, and remove whole chains in one round).

    Returns
    -------
    Graph
        The rewritten graph (``graph`` itself when nothing applied).

    Raises
    ------
    GraphError
        If the passes still change the graph after ``max_rounds`` rounds
        (two passes undoing each other).
    """
    if max_rounds is None:
        max_rounds = max(100, len(graph.nodes) + 1)
    for _ in range(max_rounds):
        any_changed = False
        for p in passes:
            graph, changed = p(graph)
            any_changed |= changed
        if not any_changed:
            return graph
    names = [getattr(p, "__module__", repr(p)) for p in passes]
    raise GraphError(f"passes {names} did not reach a fixpoint in {max_rounds} rounds")
