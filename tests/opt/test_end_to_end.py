"""Noise measurement, the additive model and optimize_bits on a tiny graph (integer engine)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fxp.errors import InfeasibleTargetError, PlanError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten, MaxPool2D
from fxp.opt import (
    allocation_problem,
    measure_noise,
    optimize_bits,
    plan_for_widths,
    predict_sqnr_db,
    quantizable_tensors,
    validate_model,
)
from fxp.opt.noise import fit_lin_law
from fxp.opt.splits import split_data
from fxp.plan.ptq import ptq_pow2
from fxp.sim.evaluate import simulate

cp = pytest.importorskip("cvxpy")
pytestmark = pytest.mark.skipif("HIGHS" not in cp.installed_solvers(), reason="no HiGHS")


CAL = split_data(600, 300).indices("calibration")  # optimize_bits' default split


def tiny_graph(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    f = np.float32
    nodes = (
        Conv2D(name="c1", inputs=("x",), outputs=("h1",),
               weight=rng.normal(0, .5, (6, 2, 3, 3)).astype(f),
               bias=rng.normal(0, .1, 6).astype(f), pads=(1, 1, 1, 1), fused_activation="relu"),
        MaxPool2D(name="p1", inputs=("h1",), outputs=("h2",), kernel=(2, 2), strides=(2, 2)),
        Conv2D(name="c2", inputs=("h2",), outputs=("h3",),
               weight=rng.normal(0, .5, (8, 6, 2, 2)).astype(f), bias=None,
               fused_activation="relu"),
        Flatten(name="fl", inputs=("h3",), outputs=("h4",)),
        Dense(name="d1", inputs=("h4",), outputs=("y",),
              weight=rng.normal(0, .3, (5, 32)).astype(f),
              bias=rng.normal(0, .1, 5).astype(f)),
    )
    return Graph(nodes=nodes, inputs=("x",), input_shapes={"x": (None, 2, 6, 6)}, outputs=("y",))


@pytest.fixture(scope="module")
def setup():
    g = tiny_graph()
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (600, 2, 6, 6)).astype(np.float32)
    y = rng.integers(0, 5, 600)
    table = measure_noise(g, x[CAL], n_measure=300)
    return g, x, y, table


def test_quantizable_tensors_of_tiny_graph():
    names = [t.name for t in quantizable_tensors(tiny_graph())]
    assert names == ["x", "c1.weight", "h1", "c2.weight", "h3", "d1.weight", "y"]


def test_fit_lin_law_recovers_a_line():
    b = np.arange(2, 17)
    k, c, span, rms = fit_lin_law(b, 6.02 * b - 3.0)
    assert k == pytest.approx(6.02) and c == pytest.approx(-3.0) and rms < 1e-9
    assert span == (3, 16)  # 6.02*2-3 = 9.04 dB is below the 10 dB fit floor


def test_single_tensor_noise_matches_integer_engine(setup):
    """Only one tensor narrow (others 16 bits): the fake-quant table agrees with the engine."""
    g, x, y, table = setup
    for name in ("c1.weight", "h1", "x"):
        w = {t: 16 for t in table.names}
        w[name] = 6
        plan = plan_for_widths(g, x[CAL], table, w)
        rep = simulate(g, plan, x[CAL], y[CAL])
        assert rep.output_sqnr_db == pytest.approx(predict_sqnr_db(table, w), abs=0.3), name


def test_kappa_is_near_six_db_per_bit(setup):
    _, _, _, table = setup
    assert np.all(table.kappa > 4.5) and np.all(table.kappa < 7.0), table.kappa
    # the measured table is monotone in width, up to noise, for every tensor
    assert np.all(np.diff(table.sqnr_db, axis=1) > -3.0)


def test_additive_model_on_random_plans(setup):
    g, x, y, table = setup
    v = validate_model(g, table, x[CAL], x[300:], y[300:], n_plans=6, seed=3)
    assert len(v.widths) == 6
    assert v.mean_abs_error_db < 1.0, v.to_dict()
    assert v.corrected_mae_db <= v.mean_abs_error_db + 1e-12


@pytest.mark.parametrize("target", [20.0, 35.0])
@pytest.mark.parametrize("cost", ["weight_memory", "bitops"])
def test_optimize_bits_meets_target_on_held_out_data(setup, target, cost):
    g, x, y, table = setup
    res = optimize_bits(g, (x, y), target, cost=cost, calib=300, noise_table=table)
    assert res.success, res.message
    assert res.measured_sqnr_db >= target - 0.5
    # 300 calibrate, the next 150 select, the last 150 are held out for the final check only
    assert res.n_eval == 150
    assert res.splits["held_out"]["start"] == 450 and res.splits["held_out"]["stop"] == 600
    # the plan is a ptq_pow2 plan with those widths
    lp = {p.name: p for p in res.plan.layers}
    assert lp["c1"].weight.fmt.bits == res.widths["c1.weight"]
    assert lp["c2"].output.fmt.bits == res.widths["h3"]
    assert res.plan.input.fmt.bits == res.widths["x"]
    # accumulators sized to the proven worst case: no overflow possible
    assert all(b <= 64 for b in res.acc_bits.values())


def test_optimized_is_not_costlier_than_uniform(setup):
    g, x, y, table = setup
    res = optimize_bits(g, (x, y), 30.0, calib=300, noise_table=table, verify=False)
    for b in table.widths:
        w = {t: b for t in table.names}
        if predict_sqnr_db(table, w) >= 30.0:
            uniform = sum(t.size * b for t in table.tensors if t.kind == "weight")
            assert res.weight_memory_bits <= uniform
            break


def test_constraints_are_honoured(setup):
    g, x, y, table = setup
    res = optimize_bits(g, (x, y), 25.0, calib=300, noise_table=table, verify=False,
                        min_bits=4, max_bits=10, tie_layers=True)
    assert all(4 <= b <= 10 for b in res.widths.values())
    assert res.widths["c1.weight"] == res.widths["x"]
    assert res.widths["c2.weight"] == res.widths["h1"]
    res = optimize_bits(g, (x, y), 25.0, calib=300, noise_table=table, verify=False,
                        allowed=[8, 16])
    assert set(res.widths.values()) <= {8, 16}


def test_infeasible_target_end_to_end(setup):
    g, x, y, table = setup
    with pytest.raises(InfeasibleTargetError) as info:
        optimize_bits(g, (x, y), 60.0, calib=300, noise_table=table, max_bits=6)
    assert math.isfinite(info.value.best_sqnr_db) and info.value.best_sqnr_db < 60


@pytest.mark.parametrize("kw", [dict(min_bits=9, max_bits=8), dict(max_bits=1),
                                dict(allowed=[]), dict(allowed=[3, 40]),
                                dict(cost="flops"), dict(ties=[("x", "zz")])])
def test_bad_optimizer_inputs(setup, kw):
    g, x, y, table = setup
    with pytest.raises(PlanError):
        optimize_bits(g, (x, y), 30.0, calib=300, noise_table=table, verify=False, **kw)


@pytest.mark.parametrize("target", [float("nan"), None, "abc"])
def test_bad_target_rejected_before_measuring(target):
    g = tiny_graph()
    x = np.zeros((4, 2, 6, 6), np.float32)
    with pytest.raises(PlanError):
        optimize_bits(g, x, target)


def test_user_cost_table(setup):
    g, x, y, table = setup
    # make d1.weight very expensive per bit: it gets the narrowest width the target allows
    costs = {"d1.weight": {b: 1000.0 * b for b in table.widths},
             "c1.weight": {b: float(b) for b in table.widths}}
    p = allocation_problem(table, target_db=25.0, cost=costs)
    assert p.cost[p.names.index("x")] == [0.0] * len(table.widths)
    res = optimize_bits(g, (x, y), 25.0, cost=costs, calib=300, noise_table=table, verify=False)
    assert res.widths["d1.weight"] <= res.widths["c1.weight"]


def test_ptq_pow2_new_options_keep_old_behaviour(setup):
    g, x, _, table = setup
    a = ptq_pow2(g, x[CAL], weight_bits=7, act_bits=9)
    b = ptq_pow2(g, x[CAL], weight_bits=7, act_bits=9, calib_ranges=table.ranges)
    assert a == b
    c = ptq_pow2(g, x[CAL], weight_bits=7, act_bits=9, layer_acc_bits={"c2": 20})
    assert c.layer("c2").acc_bits == 20 and c.layer("c1").acc_bits == 32


def test_noise_ranges_equal_ptq_calibration(setup):
    """The fast float32 min/max ranges give the formats ptq_pow2 chooses from its own pass."""
    g, x, _, table = setup
    for b in (4, 8, 12):
        a = ptq_pow2(g, x[CAL], weight_bits=b, act_bits=b)
        c = ptq_pow2(g, x[CAL], weight_bits=b, act_bits=b, calib_ranges=table.ranges)
        assert a == c


def test_measure_noise_rejects_bad_data():
    from fxp.errors import CalibrationError

    g = tiny_graph()
    with pytest.raises(CalibrationError):
        measure_noise(g, np.zeros((0, 2, 6, 6), np.float32))
    bad = np.ones((3, 2, 6, 6), np.float32)
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(CalibrationError, match="sample 1"):
        measure_noise(g, bad)
    with pytest.raises(PlanError):
        measure_noise(g, np.ones((3, 2, 6, 6), np.float32), widths=[1, 2])


def test_sqnr_weight_formats_are_measured_and_used(setup):
    """weight_method="sqnr": each weight format is one of the clipped candidates, its output
    SQNR is no worse than the unclipped (min/max) one, and plans use exactly those formats,
    which the integer engine then measures at the tabulated SQNR."""
    from fxp.core.format import QFormat
    from fxp.opt.noise import SQNR_CLIP_STEPS

    g, x, y, minmax = setup
    table = measure_noise(g, x[CAL], n_measure=300, widths=range(2, 9), weight_method="sqnr")
    assert table.weight_method == "sqnr"
    clipped = 0
    for i, t in enumerate(table.tensors):
        if t.kind != "weight":
            np.testing.assert_array_equal(table.sqnr_db[i], minmax.sqnr_db[i, :7])
            continue
        for j, b in enumerate(table.widths):
            top = QFormat.parse(minmax.formats[t.name][b])
            got = QFormat.parse(table.formats[t.name][b])
            assert got.bits == b and top.int_bits - SQNR_CLIP_STEPS <= got.int_bits <= top.int_bits
            assert table.sqnr_db[i, j] >= minmax.sqnr_db[i, minmax.widths.index(b)] - 1e-9
            clipped += got.int_bits < top.int_bits
    assert clipped > 0  # at 2..3 bits some weight is better clipped
    for name in ("c1.weight", "d1.weight"):
        w = {n: 8 for n in table.names}
        w[name] = 2
        plan = plan_for_widths(g, x[CAL], table, w)
        layer = name.split(".")[0]
        assert str(plan.layer(layer).weight.fmt) == table.formats[name][2]
        rep = simulate(g, plan, x[CAL], y[CAL])
        assert rep.output_sqnr_db == pytest.approx(predict_sqnr_db(table, w), abs=1.0), name


def test_sqnr_weight_method_refused_outside_the_optimizer(setup):
    from fxp import workflow as fw

    g, x, y, _ = setup
    with pytest.raises(PlanError, match="weight range 'sqnr' needs"):
        fw.make_plan(g, fw.Data(x, y, "t"), weight_method="sqnr")
    with pytest.raises(PlanError, match="weight range method must be one of"):
        measure_noise(g, x[:50], weight_method="bogus")
