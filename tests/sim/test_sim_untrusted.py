"""Simulation against hostile plans and models (issue 24).

* input saturations are reported (an ``"(input)"`` row and the totals), checked
  against an independent count of the codes that leave the input format;
* per-layer statistics streamed layer by layer equal those computed from every
  kept tensor (the old way, recomputed here from ``run_float(taps=True)`` and
  ``run_integer(keep=True)``);
* 2,000 chained ReLUs run in bounded memory; an oversized batch is lowered or
  refused before allocating;
* NaN biases, weights or ranges are a CalibrationError naming the tensor.
"""

from __future__ import annotations

import math
import tracemalloc
from dataclasses import asdict, replace

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.errors import CalibrationError, DataError, FxpWarning
from fxp.ir.graph import Graph
from fxp.ir.nodes import Dense, Flatten, ReLU
from fxp.plan.plan import Plan, TensorSpec
from fxp.plan.ptq import ptq_affine, ptq_pow2
from fxp.sim import evaluate
from fxp.sim.compile import compile_plan
from fxp.sim.evaluate import simulate
from fxp.sim.float_ref import run_float
from fxp.sim.integer import run_integer
from fxp.sim.values import to_float
from tests.sim.test_integer_engine import tiny_graph


def _data(n=40, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, scale, (n, 2, 6, 6)).astype(np.float32), rng.integers(0, 5, n))


def test_input_saturations_are_reported():
    """Regression: a fixed<4,1> input saturated but the report said 0 saturations."""
    g = tiny_graph(0)
    x, y = _data()
    base = ptq_pow2(g, x)
    plan = Plan(TensorSpec(QFormat(4, 1)), base.layers, name="in4")
    rep = simulate(g, plan, x, y, batch_size=16)
    codes = np.rint(x.astype(np.float64) * 8)  # half-even, the input rounding
    want = int(np.count_nonzero((codes < -8) | (codes > 7)))
    assert want > 100
    row = rep.layers[0]
    assert (row.name, row.op, row.output) == ("(input)", "Input", "fixed<4,1>")
    assert row.output_saturations == want == rep.input_saturations
    q = np.clip(codes, -8, 7) / 8
    ref = x.astype(np.float64)
    want_db = 10 * math.log10(np.sum(ref**2) / np.sum((q - ref) ** 2))
    assert row.sqnr_db == pytest.approx(want_db, rel=1e-12)
    assert rep.total_output_saturations == sum(r.output_saturations for r in rep.layers) >= want
    assert rep.total_acc_overflows == sum(r.acc_overflows for r in rep.layers)
    assert rep.to_dict()["layers"][0]["output_saturations"] == want


def _kept_statistics(g, plan, x, batch_size):
    """Per-tensor signal/error powers from every kept tensor (the pre-streaming way)."""
    model = compile_plan(g, plan)
    sig, err, counters = {}, {}, {}
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size]
        ref = run_float(model.graph, xb, taps=True)
        run = run_integer(model, xb, counters, keep=True)
        for t, v in run.values.items():
            r = np.asarray(ref[t], np.float64)
            q = to_float(v, t).astype(np.float64)
            sig[t] = sig.get(t, 0.0) + float(np.sum(r * r))
            err[t] = err.get(t, 0.0) + float(np.sum((q - r) ** 2))
    return model, sig, err, counters


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_statistics_equal_kept_statistics(seed):
    g = tiny_graph(seed)
    x, y = _data(seed=seed)
    plan = ptq_pow2(g, x[:16], weight_bits=5, act_bits=5)
    rep = simulate(g, plan, x, y, batch_size=16, method="loop")
    model, sig, err, counters = _kept_statistics(g, plan, x, 16)
    rows = {r.name: r for r in rep.layers}
    for step in model.steps:
        t = step.node.output
        if step.out_spec is not None:
            assert rows[step.name].sqnr_db == evaluate.sqnr_db(sig[t], err[t])
        c = counters[step.name]
        assert rows[step.name].acc_overflows == c.acc_overflows
        assert rows[step.name].output_saturations == c.output_saturations
    gin = g.inputs[0]
    assert rows["(input)"].sqnr_db == evaluate.sqnr_db(sig[gin], err[gin])


def test_run_integer_keep_or_free_gives_the_same_result():
    g = tiny_graph(3)
    x, _ = _data(seed=3)
    model = compile_plan(g, ptq_pow2(g, x))
    c_keep, c_free, seen = {}, {}, []
    kept = run_integer(model, x, c_keep, keep=True, method="loop")
    freed = run_integer(model, x, c_free, method="loop", on_value=lambda t, v: seen.append(t))
    np.testing.assert_array_equal(kept.output, freed.output)
    assert c_keep.keys() == c_free.keys()
    for k in c_keep:
        a, b = asdict(c_keep[k]), asdict(c_free[k])
        pa, pb = a.pop("acc_overflow_per_channel"), b.pop("acc_overflow_per_channel")
        assert a == b and (pa is None) == (pb is None)
        if pa is not None:
            np.testing.assert_array_equal(pa, pb)
    assert freed.values == {} and set(kept.values) == set(seen)


def _relu_chain(n: int, side: int = 32) -> Graph:
    nodes = [ReLU(name=f"r{i}", inputs=(f"t{i}",), outputs=(f"t{i + 1}",)) for i in range(n)]
    w = np.random.default_rng(0).normal(0, 0.05, (10, side * side)).astype(np.float32)
    nodes += [Flatten(name="fl", inputs=(f"t{n}",), outputs=("f",)),
              Dense(name="fc", inputs=("f",), outputs=("y",), weight=w, bias=None)]
    return Graph(nodes=tuple(nodes), inputs=("t0",), input_shapes={"t0": (None, 1, side, side)},
                 outputs=("y",))


def test_two_thousand_relus_run_in_bounded_memory():
    """Regression: simulate kept every intermediate tensor (2,000 x 768 KiB here = 1.5 GB)."""
    g = _relu_chain(2000)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 1, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    plan = ptq_pow2(g, x)
    tracemalloc.start()
    try:
        rep = simulate(g, plan, x, y, batch_size=64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 300e6, peak
    assert len(rep.layers) == 2003
    relu_rows = [r for r in rep.layers if r.op == "ReLU"]
    assert len({r.sqnr_db for r in relu_rows}) == 1  # relu(relu(x)) = relu(x), exactly


def test_oversized_batches_are_lowered_or_refused(monkeypatch):
    g = tiny_graph(1)
    x, y = _data(seed=1)
    plan = ptq_pow2(g, x)
    full = simulate(g, plan, x, y, batch_size=256)
    per_sample = 3 * 6 * 6 * 8 * evaluate.LIVE_COPIES  # the largest tensor is h1: 3x6x6
    monkeypatch.setattr(evaluate, "MEMORY_BUDGET_BYTES", 7 * per_sample)
    with pytest.warns(FxpWarning, match="batch of 256 lowered to 7: tensor 'h1' has 108"):
        small = simulate(g, plan, x, y, batch_size=256)
    assert (small.fixed_top1, small.float_top1, small.agreement) == \
        (full.fixed_top1, full.float_top1, full.agreement)
    for a, b in zip(small.layers, full.layers, strict=True):
        assert (a.acc_overflows, a.output_saturations) == (b.acc_overflows, b.output_saturations)
        assert a.sqnr_db == pytest.approx(b.sqnr_db, rel=1e-9)
    monkeypatch.setattr(evaluate, "MEMORY_BUDGET_BYTES", per_sample - 1)
    with pytest.raises(DataError, match="tensor 'h1' has 108 elements per sample: one sample"):
        simulate(g, plan, x, y)


def _with_bias(g: Graph, name: str, value: float) -> Graph:
    nodes = []
    for n in g.nodes:
        if n.name == name:
            b = np.array(n.bias if n.bias is not None else np.zeros(n.weight.shape[0]),
                         np.float32)
            b[0] = value
            n = replace(n, bias=b)
        nodes.append(n)
    return g.with_nodes(nodes)


@pytest.mark.parametrize("ptq", [ptq_affine, ptq_pow2])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_bias_is_a_calibration_error_naming_the_tensor(ptq, value):
    """Regression: a NaN bias gave 'ValueError: cannot convert float NaN to integer'."""
    g = _with_bias(tiny_graph(0), "c1", value)
    x, _ = _data()
    with pytest.raises(CalibrationError, match=r"tensor 'c1.bias' holds 1 NaN/Inf value\(s\)"):
        ptq(g, x)


def test_nan_activation_ranges_name_the_tensor():
    """Non-finite calibration statistics (here from a huge bias overflowing float32)."""
    g = _with_bias(tiny_graph(0), "c1", 3e38)
    nodes = [replace(n, weight=n.weight * np.float32(1e30)) if n.name == "c2" else n
             for n in g.nodes]
    x, _ = _data()
    with np.errstate(over="ignore", invalid="ignore"), \
            pytest.raises(CalibrationError, match=r"tensor 'h3' holds .* NaN/Inf value\(s\) on "
                                               r"the calibration data \(first on calibration "
                                               r"sample 0\)"):
        ptq_affine(g.with_nodes(nodes), x)


def test_nan_weights_and_ranges_name_the_tensor():
    g = tiny_graph(0)
    x, _ = _data()
    nodes = [replace(n, weight=np.full_like(n.weight, np.nan)) if n.name == "d1" else n
             for n in g.nodes]
    with pytest.raises(CalibrationError, match="tensor 'd1.weight' holds"):
        ptq_affine(g.with_nodes(nodes), x)
    with pytest.raises(CalibrationError, match="tensor 'h1' holds 1 NaN/Inf"):
        ptq_pow2(g, x, calib_ranges={"h1": np.array([np.nan, 1.0], np.float32)})
    with pytest.raises(CalibrationError, match="tensor 'h1' is identically zero"):
        ptq_pow2(g, x, calib_ranges={"h1": np.zeros(4, np.float32)})
