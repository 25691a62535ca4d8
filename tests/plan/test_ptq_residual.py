"""fxp's own PTQ plans on residual / mobile networks, under every scheme, end to end.

``ptq_pow2`` and ``ptq_affine`` (double, single, float32) must give every Add,
Concat, pool, ReLU/Clip, Sigmoid and LeakyRelu a plan entry, the plan must
compile and run in the integer engine, and the engine's logits must track the
float reference (SQNR > 15 dB, measured by :func:`fxp.sim.evaluate.simulate`
against the float model on the same images).
"""

from __future__ import annotations

import numpy as np
import pytest

from fxp.ir.graph import Graph
from fxp.ir.nodes import (
    Add, AvgPool2D, Concat, Conv2D, Dense, Flatten, GlobalAvgPool, LeakyRelu, Sigmoid,
)
from fxp.plan.plan import RequantScheme
from fxp.plan.ptq import ptq_affine, ptq_pow2
from fxp.sim.evaluate import simulate

SCHEMES = ["pow2", "double", "single", "float32"]


def _plan(graph, x, scheme):
    if scheme == "pow2":
        return ptq_pow2(graph, x)
    return ptq_affine(graph, x, scheme=scheme)


@pytest.fixture(scope="module")
def zoo_data():
    from fxp.workflow import load_data, load_model

    out = {}
    for name in ("resnet_small", "mobilenet_small"):
        g = load_model(name)
        out[name] = (g, load_data("mnist5k", g, limit=300))
    return out


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("model", ["resnet_small", "mobilenet_small"])
def test_zoo_residual_nets_run_under_every_scheme(zoo_data, model, scheme):
    """Every Add and pool gets an entry with the scheme; the integer run tracks float."""
    from fxp.ir.passes import canonicalize

    g, data = zoo_data[model]
    plan = _plan(g, data.x[:128], scheme)
    nodes = canonicalize(g).nodes
    for node in nodes:
        if isinstance(node, (Add, AvgPool2D, GlobalAvgPool)):
            lp = plan.layer(node.name)
            assert lp is not None and lp.requant is RequantScheme.from_string(scheme), node.name
            assert (lp.output is not None) == isinstance(node, Add), node.name
    rep = simulate(g, plan, data.x[128:], data.y[128:])
    assert rep.output_sqnr_db > 15, rep.output_sqnr_db
    assert rep.agreement > 0.95


def _branchy(seed: int = 0) -> Graph:
    """conv -> [sigmoid | leaky relu] -> concat -> avgpool -> (+ conv) -> gap -> dense."""
    rng = np.random.default_rng(seed)
    f = np.float32
    nodes = (
        Conv2D(name="c1", inputs=("x",), outputs=("h",), weight=rng.normal(0, .5, (4, 1, 3, 3)).astype(f),
               bias=rng.normal(0, .1, 4).astype(f), pads=(1, 1, 1, 1)),
        Sigmoid(name="sg", inputs=("h",), outputs=("s",)),
        LeakyRelu(name="lr", inputs=("h",), outputs=("l",), alpha=0.1),
        Concat(name="cat", inputs=("s", "l"), outputs=("c",), axis=1),
        AvgPool2D(name="ap", inputs=("c",), outputs=("p",), kernel=(3, 3), strides=(2, 2),
                  pads=(1, 1, 1, 1), count_include_pad=True),
        Conv2D(name="c2", inputs=("p",), outputs=("q",), weight=rng.normal(0, .3, (8, 8, 1, 1)).astype(f),
               bias=None, fused_activation="relu"),
        Add(name="add", inputs=("p", "q"), outputs=("r",)),
        GlobalAvgPool(name="gap", inputs=("r",), outputs=("g",)),
        Flatten(name="fl", inputs=("g",), outputs=("v",)),
        Dense(name="fc", inputs=("v",), outputs=("y",), weight=rng.normal(0, .5, (3, 8)).astype(f),
              bias=rng.normal(0, .1, 3).astype(f)),
    )
    return Graph(nodes=nodes, inputs=("x",), input_shapes={"x": (None, 1, 8, 8)}, outputs=("y",))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_concat_sigmoid_leaky_relu_plans(scheme):
    """A net with Concat, Sigmoid, LeakyRelu, padded count_include_pad pool and a residual
    Add: calibrated entries (TFLite Sigmoid/LeakyRelu as float islands), SQNR > 15 dB."""
    g = _branchy()
    x = np.random.default_rng(1).normal(0, 1, (160, 1, 8, 8)).astype(np.float32)
    plan = _plan(g, x[:64], scheme)
    tflite = scheme in ("double", "single")
    for name in ("sg", "lr", "cat", "add"):
        lp = plan.layer(name)
        assert lp.output is not None
        assert lp.float_layer == (tflite and name in ("sg", "lr"))
    assert plan.layer("ap").output is None
    y = np.zeros(x.shape[0] - 64, np.int64)
    rep = simulate(g, plan, x[64:], y)
    assert rep.output_sqnr_db > 15, rep.output_sqnr_db


@pytest.mark.parametrize("scheme", ["pow2", "double"])
def test_ptq_accepts_a_graph_that_is_not_canonical(scheme):
    """ReLUs after convs in the raw import: the plan names the canonical (fused) layers."""
    from fxp.frontends.onnx_import import load_onnx
    from fxp.ir.nodes import ReLU
    from fxp.plan.ptq import ptq_affine, ptq_pow2
    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer

    from tests.conftest import ROOT

    g = load_onnx(ROOT / "models" / "misc_small" / "misc_small.onnx")
    assert any(isinstance(n, ReLU) for n in g.nodes)
    x = np.random.default_rng(0).standard_normal(
        (16, *g.input_shapes[g.inputs[0]][1:])).astype(np.float32)
    plan = ptq_pow2(g, x) if scheme == "pow2" else ptq_affine(g, x, scheme=scheme)
    names = {n.name for n in compile_plan(g, plan).graph.nodes}
    assert {lp.name for lp in plan.layers} <= names
    assert np.all(np.isfinite(run_integer(compile_plan(g, plan), x).output))
