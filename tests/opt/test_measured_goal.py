"""The calibration check (:mod:`fxp.opt.measured_goal`): a search over internal targets
driven by integer-engine measurements on the calibration split."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.errors import InfeasibleTargetError, PlanError
from fxp.opt.measured_goal import MAX_MEASURED_SOLVES, for_measured_goal, held_out_margin_db
from fxp.opt.solve import MilpResult
from fxp.opt.splits import split_data


class StaircaseSearch:
    """A stand-in for :class:`fxp.opt.optimize._Search`: internal target ``t`` gives plan
    ``k = ceil((t - t0) / step)`` (clipped to the plans), cost ``k``; every call listed in
    ``solves`` as the real search lists its solves."""

    def __init__(self, n_plans, t0, step):
        self.n, self.t0, self.step = n_plans, t0, step
        self.solves: list[dict] = []
        self.asked: list[float] = []

    def for_goal(self, internal, reason):
        self.asked.append(internal)
        k = int(np.ceil((internal - self.t0) / self.step))
        if k >= self.n:
            raise InfeasibleTargetError(f"target {internal} out of reach")
        k = max(k, 0)
        res = MilpResult([k], [k], float(k), 0.0, "optimal", "fake")
        self.solves.append({"internal_target_db": internal, "reason": reason, "cost": float(k),
                            "widths": [k], "chosen": True})
        return res, {"t": k}, 0.0, len(self.solves) - 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 40, allow_nan=False), min_size=2, max_size=12),
       st.floats(0, 40), st.floats(0.1, 3), st.floats(-5, 5))
def test_the_kept_plan_is_the_cheapest_measured_one_that_meets_the_goal(db, goal, step, t0):
    """Whatever the measurements (not monotone in cost): the kept plan is the cheapest of the
    measured plans that meet the goal, or the best measured where none does; exactly one
    solve is ``chosen``, each plan is measured once, and the searches stay within
    :data:`MAX_MEASURED_SOLVES`."""
    search = StaircaseSearch(len(db), t0, step)
    calls = []

    def measure(w):
        calls.append(w["t"])
        return db[w["t"]]

    try:
        res, w, _, i = for_measured_goal(search, goal, "first", measure)
    except InfeasibleTargetError:
        assert not calls  # only where the very first search finds nothing
        return
    assert len(search.asked) <= MAX_MEASURED_SOLVES
    assert len(calls) == len(set(calls))
    meeting = [k for k in calls if db[k] >= goal]
    if meeting:
        assert w["t"] == min(meeting)
    else:
        assert db[w["t"]] == max(db[k] for k in calls)
    assert [s.get("chosen", False) for s in search.solves].count(True) == 1
    assert search.solves[i]["chosen"] and search.solves[i]["widths"] == [w["t"]]
    for s in search.solves:
        if s["widths"][0] in calls and "calibration_sqnr_db" in s:
            assert s["calibration_sqnr_db"] == db[s["widths"][0]]


def test_monotone_measurements_find_the_cheapest_plan_that_meets_the_goal():
    """Plans measuring 10, 11, ..., 29 dB at costs 0..19, a model that predicts each 1.3 dB
    too high or 1.4 dB too low (the last plans then out of its reach): the internal target
    moves up from a plan that is short and down from one with room to spare until the
    cheapest plan meeting the goal is kept."""
    for offset in (1.3, -1.4):
        for goal in (10.0, 13.5, 17.0, 24.2, 27.5 if offset < 0 else 29.0):
            search = StaircaseSearch(20, 10.0 + offset, 1.0)

            def measure(w):
                return 10.0 + w["t"]

            _, w, _, _ = for_measured_goal(search, goal, "first", measure)
            assert w["t"] == int(np.ceil(goal - 10.0)), (offset, goal, search.asked)
            assert 10.0 + w["t"] >= goal


def test_optimize_bits_reports_the_calibration_measurement(monkeypatch):
    """On ``mnist_cnn`` and real digits the final plan's ``calibration_sqnr_db`` is the
    integer engine's SQNR of that plan on the calibration split, recomputed here, and it
    meets the target (the search keeps only a plan measured at or above it when one is
    found); without the check nothing is measured there."""
    pytest.importorskip("cvxpy")
    from fxp import workflow as fw
    from fxp.opt import measure_noise, optimize_bits
    from fxp.sim.evaluate import simulate

    g = fw.load_model("mnist_cnn")
    d = fw.load_data("mnist5k", g)
    x, y = d.x[:600], d.y[:600]
    ci = split_data(600, 200).indices("calibration")
    table = measure_noise(g, x[ci], widths=range(2, 13))
    res = optimize_bits(g, (x, y), 24.0, calib=200, noise_table=table, interactions=False)
    again = simulate(g, res.plan, x[ci], y[ci])
    assert res.calibration_sqnr_db == pytest.approx(again.output_sqnr_db, abs=1e-9)
    assert res.calibration_se_db == pytest.approx(again.output_sqnr_se_db, abs=1e-12)
    # the held-out margin: 1.645 standard errors of a 200-vs-200-sample difference
    margin = held_out_margin_db(res.calibration_se_db, 200, 200, 0.95)
    assert margin == pytest.approx(1.6448536 * math.sqrt(2) * res.calibration_se_db, rel=1e-6)
    assert res.confidence == 0.95 and res.calibration_sqnr_db >= 24.0 + margin
    assert res.margin_db == pytest.approx(margin, rel=1e-12)
    chosen = [s for s in res.solves if s.get("chosen")]
    assert chosen and all("calibration_sqnr_db" in s for s in chosen)
    off = optimize_bits(g, (x, y), 24.0, calib=200, noise_table=table, interactions=False,
                        calibration_check=False)
    assert off.calibration_sqnr_db is None
    assert all("calibration_sqnr_db" not in s for s in off.solves)
    import fxp.opt.noise
    import fxp.opt.pair_noise

    def measured(*args, **kwargs):
        raise AssertionError("a bad argument must be rejected before anything is measured")

    monkeypatch.setattr(fxp.opt.pair_noise, "measure_pair_noise", measured)
    monkeypatch.setattr(fxp.opt.noise, "measure_noise", measured)
    for bad, match in (({"calibration_check": "no"}, "calibration_check"),
                       ({"margin_se": -1.0}, "margin_se"),
                       ({"confidence": 1.0}, "confidence"),
                       ({"confidence": 0.3}, "confidence"),
                       ({"split_seed": -1}, "split seed"),
                       ({"interactions": "yes"}, "interactions")):
        for tab in (table, None):
            with pytest.raises(PlanError, match=match):
                optimize_bits(g, (x, y), 24.0, calib=200, noise_table=tab, **bad)


@pytest.mark.parametrize("n_cal, n_held, confidence", [(1000, 3000, 0.95), (1000, 1000, 0.9)])
def test_held_out_margin_bounds_the_held_out_measurement(n_cal, n_held, confidence):
    """The margin's meaning, by simulation: a calibration split and a held-out split drawn
    independently from one population (per-sample signal and noise powers, the noise ratio
    lognormal with the log spread of ``lenet5``'s on ``mnist5k``, 0.70, rounded up), the
    held-out SQNR falls more than the margin below the calibration SQNR in about
    ``1 - confidence`` of 4,000 draws.  The normal bound is a little optimistic for this
    skewed ratio (6.2% against 5% at 1,000 / 3,000 samples, 12.1% against 10% at 1,000 /
    1,000; 300 / 300 samples: 11.6% against 10%), so up to 2.5 points over are allowed; no
    margin, or one without the held-out term, is far outside."""
    from fxp.sim.sqnr_error import sqnr_standard_error_db

    rng = np.random.default_rng(11)

    def draw(n):
        s = rng.gamma(2.0, 1.0, n) + 0.1
        return s, s * rng.lognormal(-7.0, 0.8, n)

    below = no_held_term = 0
    for _ in range(4000):
        s, n = draw(n_cal)
        cal = 10 * math.log10(s.sum() / n.sum())
        se = sqnr_standard_error_db(s, n)
        margin = held_out_margin_db(se, n_cal, n_held, confidence)
        hs, hn = draw(n_held)
        held = 10 * math.log10(hs.sum() / hn.sum())
        below += held < cal - margin
        no_held_term += held < cal - held_out_margin_db(se, n_cal, 0, confidence)
    tail = 1 - confidence
    assert tail - 0.015 <= below / 4000 <= tail + 0.025
    assert no_held_term / 4000 > tail + 0.03  # the held-out split's own error matters
