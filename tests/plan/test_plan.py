"""Plan: validation, JSON round trip, PTQ granularities and error messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import CalibrationError, FxpError, PlanError
from fxp.plan import LayerPlan, Plan, TensorSpec, load_plan, plan_from_dict, plan_to_dict, save_plan
from fxp.plan.ptq import int_bits_for, ptq_affine, ptq_pow2
from fxp.sim.compile import compile_plan
from fxp.sim.float_ref import run_float
from fxp.sim.integer import run_integer
from tests.sim.test_integer_engine import tiny_graph
from tests.strategies import DETERMINISTIC, OVERFLOW, formats


@st.composite
def layer_plans(draw):
    aff = draw(st.booleans())
    if aff:
        fmt = QFormat.integer(draw(st.integers(2, 16)), draw(st.booleans()))
        scales = tuple(draw(st.lists(st.floats(2.0**-20, 10, width=32), min_size=1, max_size=4)))
        spec = TensorSpec(fmt, scales, draw(st.integers(fmt.min_code, fmt.max_code)),
                          0 if len(scales) > 1 else None)
    else:
        spec = TensorSpec(draw(formats()))
    return LayerPlan(name=draw(st.text("abcdef_0123", min_size=1, max_size=8)), weight=spec,
                     output=TensorSpec(draw(formats())), acc_bits=draw(st.integers(1, 64)),
                     acc_overflow=draw(st.sampled_from(OVERFLOW)),
                     rounding=draw(st.sampled_from(DETERMINISTIC)),
                     output_overflow=draw(st.sampled_from(OVERFLOW)),
                     requant=draw(st.sampled_from(["pow2", "double", "single", "float32"])))


@given(st.lists(layer_plans(), max_size=4, unique_by=lambda lp: lp.name), formats())
def test_json_round_trip_is_exact(layers, fin):
    plan = Plan(input=TensorSpec(fin), layers=tuple(layers), name="p")
    text = json.dumps(plan_to_dict(plan))
    assert plan_from_dict(json.loads(text)) == plan


def test_save_and_load(tmp_path):
    plan = Plan(input=TensorSpec.pow2(8, 7), layers=(LayerPlan("c1", weight=TensorSpec.pow2(8, 6),
                                                               output=TensorSpec.pow2(8, 4)),))
    path = save_plan(plan, tmp_path / "p.json")
    assert load_plan(path) == plan
    assert json.loads(path.read_text())["schema_version"] == 1


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda d: d.update(schema_version=99), "schema_version 99 is not supported"),
    (lambda d: d["layers"][0].update(acc_bits=0), "layer 'c1'.*acc_bits=0 must be an int in 1..64"),
    (lambda d: d["layers"][0].update(rounding="HALF_UP"), "layer 'c1'.*ambiguous RoundingMode"),
    (lambda d: d["layers"][0].update(colour="red"), r"layer 'c1': unknown keys \['colour'\]"),
    (lambda d: d["layers"][0]["weight"].update(format="fixed<0,1>"), "layer 'c1' weight: bits=0"),
    (lambda d: d["layers"][0]["weight"].update(scales=[-1.0]), "scales must be finite and > 0"),
    (lambda d: d.pop("input"), "the plan has no 'input' coding"),
    (lambda d: d["layers"][0].update(requant="triple"), "unknown requant scheme 'triple'"),
])
def test_bad_plan_files_name_the_problem(tmp_path, mutate, match):
    plan = Plan(input=TensorSpec.pow2(8, 7), layers=(LayerPlan("c1", weight=TensorSpec.pow2(8, 6),
                                                               output=TensorSpec.pow2(8, 4)),))
    d = plan_to_dict(plan)
    mutate(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(PlanError, match=match):
        load_plan(p)


def test_unreadable_plan_files(tmp_path):
    with pytest.raises(PlanError, match="cannot read plan file"):
        load_plan(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(PlanError, match=r"x.json: not valid JSON"):
        load_plan(tmp_path / "x.json")


def test_compile_rejects_plans_that_do_not_fit_the_model():
    g = tiny_graph(0)
    x = np.random.default_rng(0).normal(size=(8, 2, 6, 6)).astype(np.float32)
    plan = ptq_pow2(g, x)
    with pytest.raises(PlanError, match=r"unknown layers \['nope'\].*'c1'"):
        compile_plan(g, Plan(input=plan.input, layers=(*plan.layers, LayerPlan("nope"))))
    missing = Plan(input=plan.input, layers=plan.layers[1:])
    with pytest.raises(PlanError, match="layer 'c1' .*has weights but no plan entry"):
        compile_plan(g, missing)
    bad = plan.replace_layer("c1", bias=TensorSpec.pow2(32, 3))
    with pytest.raises(PlanError, match="bias format .* must have frac_bits"):
        compile_plan(g, bad)
    with pytest.raises(PlanError, match="works on int32 accumulators"):
        compile_plan(g, ptq_affine(g, x).replace_layer("c1", acc_bits=40))


@pytest.mark.parametrize(("r", "signed", "want"), [(1.0, False, 1), (0.9, False, 0), (1.0, True, 2),
                                                   (3.99, True, 3), (4.0, True, 4), (0.25, False, -1)])
def test_int_bits_hold_the_range(r, signed, want):
    ib = int_bits_for(r, signed)
    assert ib == want
    fmt = QFormat(16, ib, signed)
    assert fmt.max_value + fmt.lsb > r  # r fits (up to one LSB below the top)


@pytest.mark.parametrize("granularity", ["whole", "conv", "dense"])
def test_granularity_marks_the_rest_float(granularity):
    g = tiny_graph(1)
    x = np.random.default_rng(1).normal(size=(16, 2, 6, 6)).astype(np.float32)
    plan = ptq_pow2(g, x, granularity=granularity)
    floats = {lp.name for lp in plan.layers if lp.float_layer}
    want = {"whole": set(), "conv": {"d1"}, "dense": {"c1", "c2"}}[granularity]
    assert floats == want
    out = run_integer(compile_plan(g, plan), x).output
    ref = run_float(g, x)
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_range_methods_give_runnable_plans(method):
    g = tiny_graph(2)
    x = np.random.default_rng(2).normal(size=(16, 2, 6, 6)).astype(np.float32)
    plan = ptq_pow2(g, x, method=method, act_bits=6)
    assert run_integer(compile_plan(g, plan), x).output.shape == (16, 5)


@pytest.mark.parametrize("scheme", ["double", "single", "float32"])
def test_affine_plans_track_float(scheme):
    g = tiny_graph(5)
    x = np.random.default_rng(5).normal(size=(32, 2, 6, 6)).astype(np.float32)
    plan = ptq_affine(g, x, scheme=scheme)
    out = run_integer(compile_plan(g, plan), x).output
    ref = run_float(g, x)
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.99


def test_calibration_errors():
    g = tiny_graph(0)
    with pytest.raises(CalibrationError, match="calibration set is empty"):
        ptq_pow2(g, np.zeros((0, 2, 6, 6), np.float32))
    bad = np.zeros((3, 2, 6, 6), np.float32)
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(CalibrationError, match="calibration sample 2 holds NaN"):
        ptq_pow2(g, bad)
    with pytest.raises(PlanError, match=r"unknown layer names \['zz'\]"):
        ptq_pow2(g, np.ones((2, 2, 6, 6), np.float32), layer_weight_bits={"zz": 4})
    with pytest.raises(FxpError, match="identically zero"):
        ptq_pow2(g, np.zeros((2, 2, 6, 6), np.float32))
