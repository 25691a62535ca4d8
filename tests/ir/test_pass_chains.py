"""The canonical passes rewrite whole chains in one call (issue 24: chains of >100 no-ops).

drop_identity's oracle is the previous single-match pass (:func:`_drop_one`,
one removal per call) run to a fixpoint; the new pass must give the same nodes
and tensor names in a single call, on random graphs with Identity/Dropout
chains at the input, in the middle and at (one or two) graph outputs.
fold_batchnorm folds a BatchNorm chain in one call and preserves the function.
"""

from __future__ import annotations

import numpy as np
import pytest

from fxp.ir import Graph
from fxp.ir import nodes as ir
from fxp.ir.passes import canonicalize, drop_identity, fold_batchnorm, fuse_activation
from fxp.ir.passes.base import run_to_fixpoint
from fxp.sim.float_ref import run_float


def _drop_one(graph: Graph) -> tuple[Graph, bool]:
    """Reference: remove the first removable Dropout/Identity (the pre-issue-24 pass)."""
    for node in graph.nodes:
        if not isinstance(node, (ir.Dropout, ir.Identity)):
            continue
        (x,), y = node.inputs, node.output
        if y in graph.outputs and (x in graph.inputs or x in graph.outputs):
            continue
        rest = [n for n in graph.nodes if n is not node]
        if y in graph.outputs:
            nodes = [n.with_io(tuple(y if t == x else t for t in n.inputs),
                               tuple(y if t == x else t for t in n.outputs)) for n in rest]
        else:
            nodes = [n.with_io(tuple(x if t == y else t for t in n.inputs)) for n in rest]
        return graph.with_nodes(nodes), True
    return graph, False


def _random_graph(seed: int) -> Graph:
    """A chain of ReLU / Identity / Dropout nodes (plus residual Adds) with 1-2 outputs."""
    r = np.random.default_rng(seed)
    nodes, t = [], "x"
    tensors = ["x"]
    for i in range(int(r.integers(1, 14))):
        kind = r.choice(["relu", "id", "id", "drop", "add"])
        y = f"t{i}"
        if kind == "relu":
            nodes.append(ir.ReLU(name=f"n{i}", inputs=(t,), outputs=(y,)))
        elif kind == "add":
            nodes.append(ir.Add(name=f"n{i}", inputs=(t, str(r.choice(tensors))), outputs=(y,)))
        else:
            cls = ir.Identity if kind == "id" else ir.Dropout
            nodes.append(cls(name=f"n{i}", inputs=(t,), outputs=(y,)))
        tensors.append(y)
        t = y
    outputs = [t]
    if r.random() < 0.4 and len(tensors) > 2:
        outputs.insert(int(r.integers(2)), str(r.choice(tensors[1:-1])))
    return Graph(nodes=tuple(nodes), inputs=("x",), input_shapes={"x": (None, 3)},
                 outputs=tuple(outputs))


def _signature(g: Graph) -> list[tuple]:
    return [(n.name, n.op_type, n.inputs, n.outputs) for n in g.nodes] + [g.outputs]


@pytest.mark.parametrize("seed", range(60))
def test_one_call_equals_one_at_a_time_removal(seed: int) -> None:
    g = _random_graph(seed)
    want = run_to_fixpoint(g, [_drop_one], max_rounds=len(g.nodes) + 1)
    got, changed = drop_identity.apply(g)
    assert _signature(got) == _signature(want)
    assert changed == (len(want.nodes) != len(g.nodes))
    assert drop_identity.apply(got) == (got, False)  # a fixpoint after one call
    x = np.random.default_rng(seed).normal(size=(4, 3)).astype(np.float32)
    ya, yb = run_float(g, x), run_float(got, x)
    for t in g.outputs:
        np.testing.assert_array_equal((ya[t] if isinstance(ya, dict) else ya),
                                      (yb[t] if isinstance(yb, dict) else yb))


def test_chain_of_thousands_is_removed_in_one_round() -> None:
    """2,000 no-ops between two layers: one call, where the old pass needed 2,000 rounds
    and run_to_fixpoint gave up after 100."""
    w = np.ones((3, 3), np.float32)
    nodes: list[ir.Node] = [ir.Dense(name="a", inputs=("x",), outputs=("t0",), weight=w)]
    for i in range(2000):
        cls = ir.Identity if i % 2 else ir.Dropout
        nodes.append(cls(name=f"i{i}", inputs=(f"t{i}",), outputs=(f"t{i + 1}",)))
    nodes.append(ir.Dense(name="b", inputs=("t2000",), outputs=("y",), weight=w))
    g = Graph(nodes=tuple(nodes), inputs=("x",), input_shapes={"x": (None, 3)}, outputs=("y",))
    out, changed = drop_identity.apply(g)
    assert changed and [n.name for n in out.nodes] == ["a", "b"]
    assert out.layer("b").inputs == ("t0",)
    assert [n.name for n in canonicalize(g).nodes] == ["a", "b"]


def test_run_to_fixpoint_bound_grows_with_the_graph() -> None:
    """A one-removal-per-call pass still reaches its fixpoint on 300 nodes (default bound)."""
    nodes = [ir.Identity(name=f"i{i}", inputs=(f"t{i}",), outputs=(f"t{i + 1}",))
             for i in range(300)]
    nodes.append(ir.ReLU(name="r", inputs=("t300",), outputs=("y",)))
    g = Graph(nodes=tuple(nodes), inputs=("t0",), input_shapes={"t0": (None, 2)},
              outputs=("y",))
    assert [n.name for n in run_to_fixpoint(g, [_drop_one]).nodes] == ["r"]


def test_batchnorm_chain_folds_in_one_call() -> None:
    """Conv -> BN x 3 -> ReLU -> ReLU: one fold call, one fuse call, same float function."""
    r = np.random.default_rng(5)
    nodes: list[ir.Node] = [ir.Conv2D(name="c", inputs=("x",), outputs=("t0",),
                                      weight=r.normal(size=(3, 2, 3, 3)).astype(np.float32))]
    for i in range(3):
        nodes.append(ir.BatchNorm(name=f"bn{i}", inputs=(f"t{i}",), outputs=(f"t{i + 1}",),
                                  scale=r.uniform(0.5, 2, 3), bias=r.normal(size=3),
                                  mean=r.normal(size=3), var=r.uniform(0.5, 2, 3)))
    nodes += [ir.ReLU(name="r0", inputs=("t3",), outputs=("u",)),
              ir.ReLU(name="r1", inputs=("u",), outputs=("y",))]
    g = Graph(nodes=tuple(nodes), inputs=("x",), input_shapes={"x": (None, 2, 5, 5)},
              outputs=("y",))
    folded, changed = fold_batchnorm.apply(g)
    assert changed and [n.name for n in folded.nodes] == ["c", "r0", "r1"]
    fused, changed = fuse_activation.apply(folded)
    assert changed and [n.name for n in fused.nodes] == ["c", "r1"]
    assert fused.layer("c").fused_activation == "relu"
    x = r.normal(size=(4, 2, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(run_float(fused, x), run_float(g, x), rtol=1e-5, atol=1e-5)
