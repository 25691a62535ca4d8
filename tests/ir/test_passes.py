"""Every pass preserves the float function and removes its pattern.

Float comparisons use ``rtol = atol = 1e-5`` (passes only re-associate
float32 arithmetic, e.g. BatchNorm folded into the weights).
"""

from __future__ import annotations

import numpy as np
import pytest

from fxp.errors import GraphError
from fxp.frontends.onnx_import import load_onnx
from fxp.ir import Graph
from fxp.ir import nodes as ir
from fxp.ir.passes import canonicalize, drop_identity, fold_batchnorm, fuse_activation
from fxp.ir.passes.base import run_to_fixpoint
from fxp.sim.float_ref import run_float
from tests.builders import random_model

RNG = np.random.default_rng(1)


def _w(*shape: int) -> np.ndarray:
    return RNG.normal(0, 0.5, shape).astype(np.float32)


def _bn(name: str, x: str, y: str, c: int) -> ir.BatchNorm:
    return ir.BatchNorm(name=name, inputs=(x,), outputs=(y,), scale=RNG.uniform(0.5, 2, c),
                        bias=RNG.normal(0, 1, c), mean=RNG.normal(0, 1, c),
                        var=RNG.uniform(0.1, 3, c), epsilon=1e-3)


def _conv(name: str, x: str, y: str, **kw: object) -> ir.Conv2D:
    return ir.Conv2D(name=name, inputs=(x,), outputs=(y,), weight=_w(3, 3, 3, 3),
                     pads=(1, 1, 1, 1), **kw)


def _graph(*nodes: ir.Node, shape: tuple = (None, 3, 5, 5), outputs: tuple = ("y",)) -> Graph:
    return Graph(nodes=nodes, inputs=("x",), input_shapes={"x": shape}, outputs=outputs)


def _same_function(a: Graph, b: Graph, shape: tuple = (3, 3, 5, 5)) -> None:
    x = RNG.normal(0, 1, shape).astype(np.float32)
    ya, yb = run_float(a, x), run_float(b, x)
    if isinstance(ya, dict):
        for k in ya:
            np.testing.assert_allclose(yb[k], ya[k], rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(yb, ya, rtol=1e-5, atol=1e-5)


def _ops(g: Graph) -> list[str]:
    return [n.op_type for n in g.nodes]


# ---------------------------------------------------------- fold_batchnorm
@pytest.mark.parametrize("bias", [True, False])
def test_fold_batchnorm_into_conv(bias: bool) -> None:
    g = _graph(_conv("c", "x", "t", bias=_w(3) if bias else None), _bn("bn", "t", "u", 3),
               ir.ReLU(name="r", inputs=("u",), outputs=("y",)))
    g2, changed = fold_batchnorm.apply(g)
    assert changed and _ops(g2) == ["Conv2D", "ReLU"]
    assert g2.layer("c").output == "u"
    _same_function(g, g2)


def test_fold_batchnorm_into_dense() -> None:
    g = _graph(ir.Dense(name="d", inputs=("x",), outputs=("t",), weight=_w(4, 6)),
               _bn("bn", "t", "y", 4), shape=(None, 6))
    g2, changed = fold_batchnorm.apply(g)
    assert changed and _ops(g2) == ["Dense"]
    _same_function(g, g2, (5, 6))


@pytest.mark.parametrize("case", ["shared", "graph_output", "fused", "after_relu"])
def test_fold_batchnorm_refusals(case: str) -> None:
    """BN stays when the layer output is shared/observable, or after a nonlinearity."""
    if case == "shared":
        g = _graph(_conv("c", "x", "t"), _bn("bn", "t", "u", 3),
                   ir.Add(name="a", inputs=("t", "u"), outputs=("y",)))
    elif case == "graph_output":
        g = _graph(_conv("c", "x", "t"), _bn("bn", "t", "y", 3), outputs=("t", "y"))
    elif case == "fused":
        g = _graph(_conv("c", "x", "t", fused_activation="relu"), _bn("bn", "t", "y", 3))
    else:
        g = _graph(_conv("c", "x", "t"), ir.ReLU(name="r", inputs=("t",), outputs=("u",)),
                   _bn("bn", "u", "y", 3))
    g2, changed = fold_batchnorm.apply(g)
    assert not changed and g2 is g


# ----------------------------------------------------------- drop_identity
def test_drop_identity_in_the_middle_and_at_the_output() -> None:
    g = _graph(_conv("c", "x", "t"), ir.Dropout(name="d", inputs=("t",), outputs=("u",)),
               ir.ReLU(name="r", inputs=("u",), outputs=("v",)),
               ir.Identity(name="i", inputs=("v",), outputs=("y",)))
    g2 = run_to_fixpoint(g, [drop_identity.apply])
    assert _ops(g2) == ["Conv2D", "ReLU"]
    assert g2.outputs == ("y",) and g2.producer("y").name == "r"
    _same_function(g, g2)


def test_drop_identity_refuses_to_merge_graph_tensors() -> None:
    g = _graph(ir.Identity(name="i", inputs=("x",), outputs=("y",)))
    assert drop_identity.apply(g) == (g, False)
    g = _graph(_conv("c", "x", "t"), ir.Identity(name="i", inputs=("t",), outputs=("y",)),
               outputs=("t", "y"))
    assert drop_identity.apply(g) == (g, False)


# --------------------------------------------------------- fuse_activation
@pytest.mark.parametrize("act", [ir.ReLU(name="a", inputs=("t",), outputs=("y",)),
                                 ir.Clip(name="a", inputs=("t",), outputs=("y",),
                                         min_value=0, max_value=0.5)])
def test_fuse_activation_into_conv(act: ir.Node) -> None:
    g = _graph(_conv("c", "x", "t"), act)
    g2, changed = fuse_activation.apply(g)
    assert changed and _ops(g2) == ["Conv2D"]
    assert g2.layer("c").fused_activation == ("relu" if act.op_type == "ReLU" else (0.0, 0.5))
    _same_function(g, g2)


def test_fuse_activation_into_dense_and_refusals() -> None:
    d = ir.Dense(name="d", inputs=("x",), outputs=("t",), weight=_w(4, 6))
    g = _graph(d, ir.Clip(name="r6", inputs=("t",), outputs=("y",), min_value=0, max_value=6),
               shape=(None, 6))
    g2, changed = fuse_activation.apply(g)
    assert changed and g2.layer("d").fused_activation == (0.0, 6.0)
    _same_function(g, g2, (4, 6))
    shared = _graph(_conv("c", "x", "t"), ir.ReLU(name="r", inputs=("t",), outputs=("u",)),
                    ir.Add(name="a", inputs=("t", "u"), outputs=("y",)))
    assert fuse_activation.apply(shared) == (shared, False)
    twice = _graph(_conv("c", "x", "t", fused_activation="relu"),
                   ir.ReLU(name="r", inputs=("t",), outputs=("y",)))
    assert fuse_activation.apply(twice) == (twice, False)


# --------------------------------------------------------------- pipeline
def _pattern_left(g: Graph) -> list[str]:
    """Names of nodes a canonical graph should no longer contain."""
    left = []
    for n in g.nodes:
        p = g.producer(n.inputs[0])
        foldable = (isinstance(p, (ir.Conv2D, ir.Dense)) and p.fused_activation is None
                    and g.is_sole_use(p.output))
        if isinstance(n, (ir.BatchNorm, ir.ReLU, ir.Clip)) and foldable:
            left.append(n.name)
        if isinstance(n, (ir.Dropout, ir.Identity)) and n.inputs[0] not in g.inputs:
            left.append(n.name)
    return left


@pytest.mark.parametrize("seed", range(40))
def test_canonicalize_random_models(seed: int) -> None:
    model, x = random_model(seed)
    g = load_onnx(model)
    c = canonicalize(g)
    assert _pattern_left(c) == []
    assert len(c.nodes) <= len(g.nodes)
    np.testing.assert_allclose(run_float(c, x), run_float(g, x), rtol=1e-5,
                               atol=1e-5 * max(1.0, float(np.abs(run_float(g, x)).max())))


def test_conv_bn_relu_becomes_one_layer() -> None:
    g = _graph(_conv("c", "x", "t"), _bn("bn", "t", "u", 3),
               ir.Dropout(name="d", inputs=("u",), outputs=("v",)),
               ir.ReLU(name="r", inputs=("v",), outputs=("y",)))
    c = canonicalize(g)
    assert _ops(c) == ["Conv2D"] and c.nodes[0].fused_activation == "relu"
    _same_function(g, c)


def test_run_to_fixpoint_detects_oscillation() -> None:
    g = _graph(_conv("c", "x", "y"))

    def flip(graph: Graph) -> tuple[Graph, bool]:
        return graph.rename_tensor("y", "y2") if "y" in graph.outputs else \
            graph.rename_tensor("y2", "y"), True

    with pytest.raises(GraphError, match="did not reach a fixpoint in 5 rounds"):
        run_to_fixpoint(g, [flip], max_rounds=5)
