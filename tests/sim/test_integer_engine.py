"""The integer executor against a whole-network oracle in Python ints and Fractions.

A small CNN (conv+relu, max-pool, strided conv, flatten, dense) runs through
``compile_plan`` + ``run_integer``; the oracle recomputes every layer from the
plan with ``tests/oracles.py`` (exact rounding of rationals, overflow by
definition) and ``tests/oracles_layers.py`` (accumulation in the documented
order), one element at a time.  Codes of every tensor must be identical, and
so must the accumulator overflow counts -- including narrow saturating
accumulators where the order of additions matters.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten, MaxPool2D
from fxp.plan.ptq import ptq_pow2
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer
from tests import oracles
from tests import oracles_layers as OL
from tests.strategies import DETERMINISTIC, OVERFLOW


def tiny_graph(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    f = np.float32
    nodes = (
        Conv2D(name="c1", inputs=("x",), outputs=("h1",), weight=rng.normal(0, .5, (3, 2, 3, 3)).astype(f),
               bias=rng.normal(0, .1, 3).astype(f), pads=(1, 1, 1, 1), fused_activation="relu"),
        MaxPool2D(name="p1", inputs=("h1",), outputs=("h2",), kernel=(2, 2), strides=(2, 2)),
        Conv2D(name="c2", inputs=("h2",), outputs=("h3",), weight=rng.normal(0, .5, (4, 3, 2, 2)).astype(f),
               bias=None, strides=(1, 1)),
        Flatten(name="fl", inputs=("h3",), outputs=("h4",)),
        Dense(name="d1", inputs=("h4",), outputs=("y",), weight=rng.normal(0, .3, (5, 16)).astype(f),
              bias=rng.normal(0, .1, 5).astype(f)),
    )
    return Graph(nodes=nodes, inputs=("x",), input_shapes={"x": (None, 2, 6, 6)}, outputs=("y",))


def _q(values, fmt):
    return [oracles.quantize(float(v), fmt, "half_even", "saturate")[0] for v in values]


def _requant(acc, acc_frac, lp, act_relu):
    out = lp.output.fmt
    lo, hi = oracles.bounds(out, lp.output_overflow.value)
    v = oracles.round_fraction(Fraction(acc) * Fraction(2) ** (out.frac_bits - acc_frac),
                               lp.rounding.value)
    if act_relu:
        v = max(v, max(out.min_code, 0))
    return oracles.fit(v, out.bits, out.signed, lo, hi, lp.output_overflow.value)


def oracle_network(graph, plan, x):
    """Every tensor's codes (nested lists) and per-layer accumulator overflow counts."""
    fin = plan.input.fmt
    xs = np.asarray(x, np.float64)
    codes = np.array(_q(xs.ravel(), fin), dtype=object).reshape(xs.shape).tolist()
    spec = {"x": plan.input}
    vals, events = {"x": codes}, {}
    for node in graph.nodes:
        lp = plan.layer(node.name)
        if isinstance(node, (Conv2D, Dense)):
            sin = spec[node.inputs[0]]
            wf = lp.weight.fmt
            acc_frac = sin.fmt.frac_bits + wf.frac_bits
            accf = QFormat.from_frac(lp.acc_bits, acc_frac)
            w = np.array(_q(node.weight.ravel(), wf), dtype=object).reshape(node.weight.shape)
            b = _q(node.bias if node.bias is not None else np.zeros(w.shape[0]), accf)
            lo, hi = oracles.bounds(accf, lp.acc_overflow.value)
            if isinstance(node, Conv2D):
                acc, ev, _ = OL.conv2d(vals[node.inputs[0]], w.tolist(), b, 0, [0] * w.shape[0],
                                       node.strides, node.pads, node.dilations, node.groups,
                                       lp.acc_bits, True, lo, hi, lp.acc_overflow.value)
            else:
                acc, ev, _ = OL.dense(vals[node.inputs[0]], w.tolist(), b, 0, [0] * w.shape[0],
                                      lp.acc_bits, True, lo, hi, lp.acc_overflow.value)
            events[node.name] = sum(ev)
            arr = np.array(acc, dtype=object)
            relu = node.fused_activation == "relu"
            out = [_requant(a, acc_frac, lp, relu)[0] for a in arr.ravel()]
            vals[node.output] = np.array(out, dtype=object).reshape(arr.shape).tolist()
            spec[node.output] = lp.output
        elif isinstance(node, MaxPool2D):
            s = spec[node.inputs[0]]
            vals[node.output] = OL.maxpool2d(vals[node.inputs[0]], s.fmt.min_code, node.kernel,
                                             node.strides, node.pads, (1, 1))
            spec[node.output] = s
        elif isinstance(node, Flatten):
            vals[node.output] = [np.array(v, dtype=object).ravel().tolist() for v in vals[node.inputs[0]]]
            spec[node.output] = spec[node.inputs[0]]
    return vals, events


@st.composite
def engine_cases(draw):
    seed = draw(st.integers(0, 2**16))
    return (seed, draw(st.integers(3, 8)), draw(st.integers(2, 8)), draw(st.integers(6, 24)),
            draw(st.sampled_from(DETERMINISTIC)), draw(st.sampled_from(["wrap", "saturate"])),
            draw(st.sampled_from(OVERFLOW)))


@settings(max_examples=40)
@given(engine_cases())
def test_engine_equals_network_oracle(case):
    seed, wbits, abits, acc_bits, rounding, acc_ovf, out_ovf = case
    g = tiny_graph(seed)
    rng = np.random.default_rng(seed + 1)
    calib = rng.normal(0, 1, (16, 2, 6, 6)).astype(np.float32)
    plan = ptq_pow2(g, calib, weight_bits=wbits, act_bits=abits, acc_bits=acc_bits,
                    rounding=rounding, acc_overflow=acc_ovf, output_overflow=out_ovf)
    x = rng.normal(0, 1.2, (2, 2, 6, 6)).astype(np.float32)
    model = compile_plan(g, plan)
    counters = {}
    run = run_integer(model, x, counters, keep=True)
    want, events = oracle_network(g, plan, x)
    for t in ("h1", "h2", "h3", "y"):
        assert run.values[t].codes.tolist() == want[t], t
    for name in ("c1", "c2", "d1"):
        assert counters[name].acc_overflows == events[name], name


def test_narrow_saturating_accumulator_really_overflows():
    """Anti-degeneracy: the narrow-accumulator cases above do exercise overflow."""
    g = tiny_graph(3)
    rng = np.random.default_rng(4)
    calib = rng.normal(0, 1, (16, 2, 6, 6)).astype(np.float32)
    plan = ptq_pow2(g, calib, weight_bits=8, act_bits=8, acc_bits=10, acc_overflow="saturate")
    counters = {}
    run_integer(compile_plan(g, plan), calib, counters)
    assert counters["c1"].acc_overflows > 0
    assert counters["c1"].max_abs_acc >= 2**9


def test_wide_plan_tracks_float_reference():
    """With 16-bit everything, the integer output is within a few LSB of float."""
    from fxp.sim.float_ref import run_float

    g = tiny_graph(7)
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1, (32, 2, 6, 6)).astype(np.float32)
    plan = ptq_pow2(g, x, weight_bits=16, act_bits=16, acc_bits=48)
    got = run_integer(compile_plan(g, plan), x).output
    ref = run_float(g, x)
    lsb = 2.0 ** -plan.layer("d1").output.fmt.frac_bits
    assert np.max(np.abs(got - ref)) < 64 * lsb


def test_simulate_report_counts_match_the_oracle():
    """simulate()'s per-layer overflow counts and per-channel split equal the oracle's."""
    from fxp.sim.evaluate import simulate

    g = tiny_graph(21)
    rng = np.random.default_rng(22)
    x = rng.normal(0, 1.5, (6, 2, 6, 6)).astype(np.float32)
    plan = ptq_pow2(g, x, weight_bits=8, act_bits=8, acc_bits=11, acc_overflow="saturate")
    rep = simulate(g, plan, x, np.zeros(6, np.int64), batch_size=4, method="loop",
                   per_channel=True)
    _, events = oracle_network(g, plan, x)
    rows = {r.name: r for r in rep.layers}
    for name in ("c1", "c2", "d1"):
        assert rows[name].acc_overflows == events[name]
        assert sum(rows[name].acc_overflow_per_channel) == events[name]
    assert any(events.values())
    assert rows["c1"].acc_bits_observed is not None and rows["c1"].acc_bits_worst_case >= 11
