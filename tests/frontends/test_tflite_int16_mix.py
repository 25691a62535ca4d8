"""Mixed int8 / int16x8 plans of an int8 ``.tflite`` (``fxp plan m.tflite --target-sqnr``).

Oracles:

* TFLite Micro on the mixed models ``models/tflite/*_mixed.tflite`` and
  ``residual_mean_int8in.tflite`` (written by ``models/tflite/make_mixed.py``:
  INT16 tensors, INT64 biases, a QUANTIZE int8 -> int16 at each switch
  point): every activation tensor of fxp's engine, running the *int8* model
  with :func:`~fxp.plan.tflite_int16.widen_plan`, equals TFLM's, element for
  element, on 1,000 digits;
* a brute force over every subset of weighted layers for the feasible choices;
* the engine run again, independently, for the search's measurements.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tflite", reason="the .tflite reader needs the 'tflite' package")

from fxp.core.format import QFormat
from fxp.errors import InfeasibleTargetError, PlanError
from fxp.frontends.tflite import load_tflite, tflite_tensor_map, to_tflite_layout
from fxp.ir.nodes import Add, Conv2D, Dense
from fxp.plan.tensor_spec import TensorSpec
from fxp.plan.tflite_int16 import (
    MixedInputs,
    closed_choices,
    int16_spec,
    switch_points,
    tensor_types,
    widen_plan,
)

MODELS = Path(__file__).resolve().parents[2] / "models" / "tflite"
MIXED = {  # committed mixed model -> (int8 model, the layers chosen int16x8)
    "mnist_cnn_mixed": ("mnist_cnn", ["op2_conv_2d"]),
    "dw_avgpool_mixed": ("dw_avgpool", ["op1_depthwise_conv_2d"]),
    "residual_mean_mixed": ("residual_mean", ["op4_conv_2d"]),
    "residual_mean_int8in": ("residual_mean", ["op0_conv_2d"]),
}


def _load(name: str):
    return load_tflite(MODELS / f"{name}_int8.tflite")


def _digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    from fxp.data import load_dataset

    ds = load_dataset("mnist5k", limit=n)
    x = (ds.x.astype(np.float64) / 255.0 - 0.1307) / 0.3081
    return x.astype(np.float32), ds.y


# --------------------------------------------------------------------------- TFLM
@pytest.mark.parametrize("mixed", sorted(MIXED))
def test_widened_plan_matches_tflm_on_the_mixed_model(mixed: str) -> None:
    """0 differing elements, every activation tensor, 1,000 digits."""
    pytest.importorskip("tflite_micro", reason="the oracle needs tflite-micro")
    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer
    from tests.tflm_oracle import run_tflm

    base, wide = MIXED[mixed]
    graph, plan = _load(base)
    widened = widen_plan(graph, plan, wide)
    x, _ = _digits(1000)
    s, z = plan.input.scales[0], plan.input.zero_point
    codes = np.clip(np.rint(x.astype(np.float64) / s) + z, -128, 127).astype(np.int64)
    tflm = run_tflm((MODELS / f"{mixed}.tflite").read_bytes(),
                    np.transpose(codes, (0, 2, 3, 1)).astype(np.int8))
    run = run_integer(compile_plan(graph, widened), (codes - z) * np.float64(s), keep=True)
    diffs, sizes, wide16 = {}, 0, 0
    for t, (ir, layout) in tflite_tensor_map(graph).items():
        got = to_tflite_layout(run.values[ir].codes, layout)
        want = tflm[t]
        wide16 += want.dtype == np.int16
        assert got.shape == want.shape
        diffs[t] = int(np.count_nonzero(got != want.astype(np.int64)))
        sizes += got.size
    assert wide16 >= 3  # the int16 region is really there
    assert sum(diffs.values()) == 0, (diffs, sizes)


@pytest.mark.parametrize("mixed", sorted(MIXED))
def test_reader_on_the_mixed_model_gives_the_widened_plans_outputs(mixed: str) -> None:
    """fxp reading the mixed file (QUANTIZE -> Requantize) computes the same output codes as
    the int8 model under the widened plan: the two routes to one deployment agree."""
    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer

    base, wide = MIXED[mixed]
    graph, plan = _load(base)
    g2, p2 = load_tflite(MODELS / f"{mixed}.tflite")
    assert any(type(n).__name__ == "Requantize" for n in g2.nodes)
    x, _ = _digits(200)
    a = run_integer(compile_plan(graph, widen_plan(graph, plan, wide)), x, keep=True)
    b = run_integer(compile_plan(g2, p2), x, keep=True)
    np.testing.assert_array_equal(a.values[graph.outputs[0]].codes,
                                  b.values[g2.outputs[0]].codes)


# --------------------------------------------------------------------------- choices
def _downstream(graph, name: str) -> set[str]:
    """Weighted layers reachable from ``name`` (graph search, independent of the module)."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        node = next(n for n in graph.nodes if n.name == current)
        for t in node.outputs:
            for c in graph.consumers(t):
                if c.name not in seen:
                    seen.add(c.name)
                    todo.append(c.name)
    return {n for n in seen if isinstance(next(m for m in graph.nodes if m.name == n),
                                          (Conv2D, Dense))}


def _feasible(graph, wide: set[str]) -> bool:
    for node in graph.nodes:
        if isinstance(node, Add):
            kinds = set()
            for t in node.inputs:  # walk up to the nearest weighted producer
                p = graph.producer(t)
                while p is not None and not isinstance(p, (Conv2D, Dense)):
                    p = graph.producer(p.inputs[0])
                kinds.add(p is not None and p.name in wide)
            if len(kinds) > 1:
                return False
    return True


@pytest.mark.parametrize("base", ["mnist_cnn", "dw_avgpool", "residual_mean"])
def test_closed_choices_equal_a_brute_force(base: str) -> None:
    graph, _ = _load(base)
    names = [n.name for n in graph.nodes if isinstance(n, (Conv2D, Dense))]
    want = set()
    for k in range(len(names) + 1):
        for sub in itertools.combinations(names, k):
            s = set(sub)
            if all(_downstream(graph, n) <= s for n in s) and _feasible(graph, s):
                want.add(frozenset(s))
    got = closed_choices(graph)
    assert len(got) == len(set(got))
    assert set(got) == want
    assert got[0] == frozenset()


def test_mixed_add_inputs_are_refused() -> None:
    graph, plan = _load("residual_mean")
    with pytest.raises(MixedInputs, match=r"'op3_add'.*int8 and int16"):
        tensor_types(graph, {"op2_conv_2d"})
    with pytest.raises(PlanError, match=r"not weighted layers.*'op3_add'"):
        widen_plan(graph, plan, {"op3_add"})


def test_int16x8_model_is_refused() -> None:
    graph, plan = load_tflite(MODELS / "mnist_cnn_int16x8.tflite")
    with pytest.raises(PlanError, match=r"not int8.*full-integer int8"):
        widen_plan(graph, plan, set())


def test_switch_points_and_types() -> None:
    graph, plan = _load("residual_mean")
    bits = tensor_types(graph, {"op4_conv_2d"})
    assert bits["op3_add_act"] == 8 and bits["op4_conv_2d"] == 16 and bits["op7_softmax"] == 16
    (p,) = switch_points(graph, plan, {"op4_conv_2d"})
    assert p.layer == "op4_conv_2d" and p.tensor == "op3_add_act"
    add = plan.layer("op3_add").output
    assert p.scale == add.scales[0] / 128.0


@settings(max_examples=300, deadline=None)
@given(st.floats(1e-6, 10.0), st.integers(-128, 127))
def test_int16_spec_covers_the_int8_range(scale: float, zp: int) -> None:
    """Both ends of the int8 coding's float range fit the int16 coding (within half an LSB
    of float32 rounding of the scale), and the scale is not wider than it needs to be."""
    spec = TensorSpec(QFormat.integer(8, True), (float(np.float32(scale)),), zp)
    wide = int16_spec(spec, "t")
    s = spec.scales[0]
    lo, hi = s * (-128 - zp), s * (127 - zp)
    reach = max(-lo, hi)
    assert wide.zero_point == 0 and wide.fmt.bits == 16
    assert math.isclose(wide.scales[0] * 32767, reach, rel_tol=1e-7)
    for v in (lo, hi):
        assert abs(round(v / wide.scales[0])) <= 32768


# --------------------------------------------------------------------------- the search
def test_search_picks_the_cheapest_choice_meeting_the_target() -> None:
    from fxp.opt.tflite_int16 import explore_int16x8
    from fxp.sim.evaluate import simulate

    graph, plan = _load("residual_mean")
    x, y = _digits(400)
    res = explore_int16x8(graph, plan, x, y, 40.0, selection=200)
    assert res.selection == (0, 200) and res.held_out == (200, 400)
    assert set(res.chosen.wide) in [set(c) for c in closed_choices(graph)]
    # every choice re-measured independently on the selection split
    for c in res.choices:
        rep = simulate(graph, widen_plan(graph, plan, c.wide), x[:200], y[:200])
        assert rep.output_sqnr_db == pytest.approx(c.selection_sqnr_db, abs=1e-9)
        if c.selection_sqnr_db >= 40.0:
            assert res.chosen.key() <= c.key()
    assert res.chosen.selection_sqnr_db >= 40.0
    held = simulate(graph, res.plan, x[200:], y[200:])
    assert held.output_sqnr_db == pytest.approx(res.held_out_sqnr_db, abs=1e-9)
    assert res.met == (held.output_sqnr_db >= 40.0)
    # an int16x8 choice costs RAM: the all-int8 model is the cheapest
    base = next(c for c in res.choices if not c.wide)
    assert all(base.ram_bytes <= c.ram_bytes for c in res.choices)
    with pytest.raises(InfeasibleTargetError, match=r"no int8/int16x8 mix reaches 90 dB"):
        explore_int16x8(graph, plan, x, y, 90.0, selection=200)


def test_cli_plan_then_simulate_the_tflite(tmp_path: Path, capsys) -> None:
    from fxp.cli import main

    model = str(MODELS / "residual_mean_int8.tflite")
    out = tmp_path / "p.json"
    rc = main(["plan", model, "--target-sqnr", "38", "--data", "mnist5k", "--limit", "500",
               "--out", str(out), "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == (0 if res["met"] else 1)
    assert res["splits"] == {"selection": [0, 256], "held_out": [256, 500]}
    assert res["chosen"]["selection_sqnr_db"] >= 38
    assert main(["simulate", model, "--plan", str(out), "--data", "mnist5k", "--limit", "500",
                 "--json"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert any("16" in str(r.get("output")) for r in sim["layers"])
    assert main(["plan", model, "--max-accuracy-drop", "1", "--data", "mnist5k"]) != 0
    assert "quantized model" in capsys.readouterr().err
