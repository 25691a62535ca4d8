"""Hwang & Sung's output-error step search (fxp.quant.step_search).

The references are independent of the module: the ternary weights are rebuilt here with their
own formula (``sign(w) * min(L, ceil(|w|/Delta - 1/2))``: nearest level, ties toward zero), the
networks run on the float reference (or, for one Dense layer, exactly in Fractions), and the
output error is recomputed from those outputs.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest

from fxp.errors import FxpError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten, Softmax
from fxp.quant.step_search import DEFAULT_MULTIPLES, output_error, search_steps
from fxp.quant.ternary import HwangSung
from fxp.sim.float_ref import run_float


def _tern(w: np.ndarray, step: float, lmax: int = 1) -> np.ndarray:
    """Independent M-level rule: nearest ``k * step``, ties toward zero, ``|k| <= lmax``."""
    k = np.minimum(np.ceil(np.abs(w.astype(np.float64)) / step - 0.5), lmax)
    return (np.sign(w) * np.maximum(k, 0) * step).astype(np.float32)


def _error_ref(graph: Graph, steps: dict, x: np.ndarray, lmax: int = 1) -> float:
    """Mean over images of the squared L2 distance of the outputs, from run_float."""
    q = graph.replace_nodes({n: dataclasses.replace(graph.layer(n),
                                                    weight=_tern(graph.layer(n).weight, s, lmax))
                             for n, s in steps.items()})
    d = run_float(q, x).astype(np.float64) - run_float(graph, x).astype(np.float64)
    return float(np.sum(d * d) / x.shape[0])


@pytest.fixture(scope="module")
def cnn():
    """A small CNN (conv 1->6 3x3 relu, dense 150->10, softmax), layers of unequal scale."""
    rng = np.random.default_rng(7)
    nodes = (
        Conv2D(name="conv", inputs=("x",), outputs=("c",), fused_activation="relu",
               weight=rng.normal(0, 0.6, (6, 1, 3, 3)), bias=rng.normal(0, 0.1, 6)),
        Flatten(name="flat", inputs=("c",), outputs=("f",)),
        Dense(name="fc", inputs=("f",), outputs=("z",), weight=rng.normal(0, 0.08, (10, 216)),
              bias=rng.normal(0, 0.1, 10)),
        Softmax(name="sm", inputs=("z",), outputs=("p",)),
    )
    g = Graph(nodes=nodes, inputs=("x",), input_shapes={"x": (None, 1, 8, 8)}, outputs=("p",))
    x = rng.uniform(0, 1, (96, 1, 8, 8)).astype(np.float32)
    return g, x


@pytest.mark.parametrize("init", ["network", "layer"])
def test_search_error_is_the_float_reference_error_and_not_above_the_start(cnn, init):
    g, x = cnn
    r = search_steps(g, x, init=init)
    hs = HwangSung()
    l2 = {n: hs.fit(g.layer(n).weight.astype(np.float64), 2)["step"] for n in ("conv", "fc")}
    assert r.l2 == pytest.approx(l2, rel=1e-15)
    e_search, e_l2 = _error_ref(g, r.steps, x), _error_ref(g, l2, x)
    e_init = _error_ref(g, r.initial, x)
    assert r.error == pytest.approx(e_search, rel=1e-9)
    assert r.l2_error == pytest.approx(e_l2, rel=1e-9)
    assert r.initial_error == pytest.approx(e_init, rel=1e-9)
    assert e_search <= e_init  # 1x is in the grid: coordinate descent never goes up
    assert e_search <= e_l2  # the property that matters: better than the weight-space steps
    if init == "network":
        w = np.concatenate([g.layer(n).weight.ravel() for n in ("conv", "fc")])
        assert r.init_step == pytest.approx(hs.fit(w.astype(np.float64), 2)["step"], rel=1e-15)
        assert set(r.initial.values()) == {r.init_step}
    else:
        assert r.initial == r.l2 and r.init_step is None
    # each chosen step is a grid multiple of the step the layer had when its turn came
    for n, s in r.steps.items():
        assert any(s == m * r.initial[n] for m in DEFAULT_MULTIPLES)
    assert r.errors["fc"].min() == pytest.approx(r.error, rel=1e-12)  # fc is searched last


def test_search_is_deterministic(cnn):
    g, x = cnn
    a, b = search_steps(g, x), search_steps(g, x)
    assert a.steps == b.steps and a.error == b.error
    for n in a.errors:
        np.testing.assert_array_equal(a.errors[n], b.errors[n])


def test_output_error_matches_reference_and_other_bits(cnn):
    g, x = cnn
    steps = {"conv": 0.21, "fc": 0.035}
    assert output_error(g, steps, x) == pytest.approx(_error_ref(g, steps, x), rel=1e-9)
    assert output_error(g, steps, x, bits=3) == pytest.approx(_error_ref(g, steps, x, 3),
                                                              rel=1e-9)
    assert output_error(g, {"fc": 0.035}, x) == pytest.approx(_error_ref(g, {"fc": 0.035}, x),
                                                              rel=1e-9)


def test_single_linear_layer_matches_exact_brute_force():
    """One Dense layer: the search picks the grid point whose exact output error is least."""
    w = np.array([[0.9, -0.4, 0.1, 0.55], [-0.2, 0.7, -1.1, 0.3], [0.05, 0.35, 0.6, -0.8]])
    b = np.array([0.25, -0.5, 0.125])
    # inputs dominated by feature 0, whose weights (0.9, -0.2, 0.05) the L2 step 0.675 fits badly
    x = np.array([[3, 0, 0, 1], [2, 0, 1, 0], [4, 1, 0, 0], [3, 0, 0, -1], [2, 1, 0, 1]],
                 np.float32)
    node = Dense(name="fc", inputs=("x",), outputs=("y",), weight=w, bias=b)
    g = Graph(nodes=(node,), inputs=("x",), input_shapes={"x": (None, 4)}, outputs=("y",))
    grid = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
    r = search_steps(g, x, multiples=grid, init="layer")
    w32 = [[Fraction(float(v)) for v in row] for row in node.weight]
    b32 = [Fraction(float(v)) for v in node.bias]
    xs = [[Fraction(int(v)) for v in row] for row in x]
    d0 = Fraction(HwangSung().fit(node.weight.astype(np.float64), 2)["step"])

    def q(v: Fraction, d: Fraction) -> Fraction:  # nearest level, ties toward zero, |k| <= 1
        k = 1 if abs(v) > d / 2 else 0
        return d * k * (1 if v > 0 else -1)

    exact = []
    for m in grid:
        d = Fraction(m) * d0
        err = Fraction(0)
        for row in xs:
            for o in range(3):
                y = sum(a * v for a, v in zip(row, w32[o])) + b32[o]
                yq = sum(a * q(v, d) for a, v in zip(row, w32[o])) + b32[o]
                err += (yq - y) ** 2
        exact.append(err / len(xs))
    best = min(range(len(grid)), key=lambda i: exact[i])
    others = sorted(set(exact))
    assert len(others) > 1 and others[1] - others[0] > Fraction(1, 1000) * others[1]
    assert r.steps["fc"] == grid[best] * float(d0)
    np.testing.assert_allclose(r.errors["fc"], [float(e) for e in exact], rtol=1e-5)
    assert grid[best] != 1.0  # the search moved off the L2 step here


@pytest.mark.parametrize("kw, match", [
    ({"bits": 1}, "bits"),
    ({"init": "global"}, "init must be"),
    ({"multiples": ()}, "multiples"),
    ({"multiples": (1.0, -2.0)}, "multiples"),
    ({"layers": ["nope"]}, "unknown layers"),
    ({"passes": 0}, "passes"),
])
def test_bad_arguments_raise_fxp_errors(cnn, kw, match):
    g, x = cnn
    with pytest.raises(FxpError, match=match):
        search_steps(g, x[:4], **kw)


def test_snap_and_layers(cnn):
    g, x = cnn
    def snap(s: float) -> float:
        return float(np.ldexp(np.rint(np.ldexp(s, 8)), -8))

    r = search_steps(g, x, layers=["fc"], snap=snap)
    assert set(r.steps) == {"fc"}
    assert r.steps["fc"] == snap(r.steps["fc"])
    assert r.init_step == pytest.approx(
        HwangSung().fit(g.layer("fc").weight.astype(np.float64), 2)["step"], rel=1e-15)
    assert r.error == pytest.approx(_error_ref(g, r.steps, x), rel=1e-9)
