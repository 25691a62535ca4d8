"""Per-channel weight widths on the optimizer's three splits (fxp.opt.channel_optimize):
disjoint splits, a held-out split that never drives the search, the calibration check and
its held-out margin recomputed independently, honest status."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest

from fxp.errors import PlanError
from fxp.opt.channel_noise import measure_channel_noise
from fxp.opt.channel_optimize import optimize_channel_widths
from fxp.opt.noise import measure_noise, quantizable_tensors
from fxp.opt.splits import split_data
from fxp.sim.evaluate import simulate
from tests.opt.test_end_to_end import tiny_graph

N, CALIB = 600, 300
CI = split_data(N, CALIB).indices("calibration")  # the default order: seed 0


@pytest.fixture(scope="module")
def setup():
    g = tiny_graph()
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (N, 2, 6, 6)).astype(np.float32)
    y = rng.integers(0, 5, N)
    acts = [t.name for t in quantizable_tensors(g) if t.kind == "act"]
    table = measure_noise(g, x[CI], widths=range(4, 13), n_measure=200, tensors=acts)
    noises = measure_channel_noise(g, x[CI], widths=range(2, 9), n_measure=64)
    return g, x, y, noises, table


def _index_sets(splits):
    """The reported position ranges in the order drawn independently here."""
    order = np.random.default_rng(splits["seed"]).permutation(splits["n_data"])
    return {k: sorted(order[v["start"]:v["stop"]].tolist()) for k, v in splits.items()
            if isinstance(v, dict) and "start" in v}


def _plan_key(res):
    return ({k: v.tolist() for k, v in res.channel_bits.items()}, dict(res.act_bits))


def test_held_out_split_is_disjoint_and_never_drives_the_search(setup):
    """The reported index sets are disjoint and cover the data; replacing every held-out
    sample changes nothing the search did (solves, widths, calibration and selection
    measurements), only the final held-out measurement, which is the integer engine's SQNR
    on exactly those samples."""
    g, x, y, noises, table = setup
    kw = dict(calib=CALIB, noises=noises, act_table=table)
    res = optimize_channel_widths(g, (x, y), 24.0, **kw)
    r = _index_sets(res.splits)
    cal, sel, ho = (set(r[k]) for k in ("calibration", "selection", "held_out"))
    assert not (cal & sel) and not (cal & ho) and not (sel & ho)
    assert cal | sel | ho == set(range(N)) and len(ho) == res.n_eval == 150
    assert res.measured_sqnr_db == pytest.approx(
        simulate(g, res.plan, x[r["held_out"]], y[r["held_out"]]).output_sqnr_db, abs=1e-9)
    x2 = x.copy()
    x2[r["held_out"]] = np.random.default_rng(9).normal(0, 3, x2[r["held_out"]].shape)
    res2 = optimize_channel_widths(g, (x2, y), 24.0, **kw)
    assert _plan_key(res2) == _plan_key(res) and res2.solves == res.solves
    assert res2.selection_sqnr_db == res.selection_sqnr_db
    assert res2.calibration_sqnr_db == res.calibration_sqnr_db
    assert res2.measured_sqnr_db != res.measured_sqnr_db


def test_calibration_check_and_held_out_margin(setup):
    """The kept plan's calibration SQNR is the integer engine's on the calibration samples;
    its margin is z(0.95) * se * sqrt(1 + n_cal / n_held) recomputed here; it clears the
    target plus that margin, and no cheaper plan the search measured does."""
    g, x, y, noises, table = setup
    res = optimize_channel_widths(g, (x, y), 26.0, calib=CALIB, noises=noises, act_table=table)
    r = _index_sets(res.splits)
    rep = simulate(g, res.plan, x[r["calibration"]], y[r["calibration"]])
    assert res.calibration_sqnr_db == pytest.approx(rep.output_sqnr_db, abs=1e-9)
    assert res.calibration_se_db == pytest.approx(rep.output_sqnr_se_db, rel=1e-9)
    z = statistics.NormalDist().inv_cdf(0.95)
    want = z * rep.output_sqnr_se_db * math.sqrt(1 + CALIB / 150)
    assert res.confidence == 0.95 and res.margin_db == pytest.approx(want, rel=1e-9)
    measured = [s for s in res.solves if "calibration_sqnr_db" in s]
    assert measured and all(s["calibration_se_db"] > 0 for s in measured)
    chosen = [s for s in res.solves if s.get("chosen")]
    # one goal: the selection split asked for no re-solve
    assert len(chosen) == 1 and chosen[0]["calibration_sqnr_db"] == res.calibration_sqnr_db
    assert res.calibration_sqnr_db >= 26.0 + res.margin_db
    for s in measured:  # nothing cheaper met the goal with its own margin
        if s["weight_bits"] < chosen[0]["weight_bits"]:
            m = z * s["calibration_se_db"] * math.sqrt(1 + CALIB / 150)
            assert s["calibration_sqnr_db"] < 26.0 + m
    assert res.success == (res.measured_sqnr_db >= 26.0)
    off = optimize_channel_widths(g, (x, y), 26.0, calib=CALIB, noises=noises, act_table=table,
                                  calibration_check=False)
    assert off.calibration_sqnr_db is None and off.margin_db == 0 and off.confidence == 0
    assert off.solves[0]["internal_target_db"] == 26.0  # the prediction alone, no margin
    assert not any("calibration_sqnr_db" in s for s in off.solves)


def test_status_tolerance_and_nothing_held_out(setup):
    """Saturating held-out inputs fail the target: no success, 'target NOT met'; an explicit
    tolerance accepts the shortfall; with nothing held out the result is never a success."""
    g, x, y, noises, table = setup
    kw = dict(calib=CALIB, noises=noises, act_table=table, split_seed=None)
    rest = np.setdiff1d(np.arange(N), CI)
    own = np.concatenate([CI, rest[:150]])  # in the data's order: calibration CI first
    bad = (x[rest[150:]] * 20, y[rest[150:]])
    res = optimize_channel_widths(g, (x[own], y[own]), 24.0, eval_data=bad, **kw)
    assert res.measured_sqnr_db < 24.0 and not res.success
    assert res.status == "target_not_met" and "NOT met on the held-out split" in res.message
    assert res.splits["held_out"]["size"] == 150 and "start" not in res.splits["held_out"]
    ok = optimize_channel_widths(g, (x[own], y[own]), 24.0, eval_data=bad,
                                 tolerance_db=24.0 - res.measured_sqnr_db + 0.01, **kw)
    assert ok.success and ok.status == "optimal" and "tolerance" in ok.message
    none = optimize_channel_widths(g, (x[CI], y[CI]), 24.0, selection=0, **kw)
    assert none.status == "not_held_out" and not none.success
    with pytest.raises(PlanError, match="tolerance_db"):
        optimize_channel_widths(g, (x[own], y[own]), 24.0, tolerance_db=-1, **kw)
    with pytest.raises(PlanError, match="confidence"):
        optimize_channel_widths(g, (x[own], y[own]), 24.0, confidence=0.3, **kw)


def test_a_table_of_other_samples_is_refused(setup):
    g, x, y, noises, table = setup
    with pytest.raises(PlanError, match="measured on other samples"):
        optimize_channel_widths(g, (x, y), 24.0, calib=CALIB, noises=noises, act_table=table,
                                split_seed=None)


def test_infeasible_target_is_reported(setup):
    g, x, y, noises, table = setup
    res = optimize_channel_widths(g, (x, y), 200.0, calib=CALIB, noises=noises,
                                  act_table=table)
    assert not res.success and res.status == "infeasible" and res.plan is None
    assert "no widths meet 200 dB" in res.message


def test_cli_json_reports_splits_solves_and_margin(tmp_path, capsys):
    """`fxp plan --per-channel-weights --json` reports the three splits, every solve, the
    margin, and takes --confidence / --split-seed / --selection / --tolerance-db."""
    from fxp.cli import main

    rng = np.random.default_rng(0)
    p = tmp_path / "data.npz"
    np.savez(p, x=rng.integers(0, 256, (60, 1, 28, 28)).astype(np.float32),
             y=rng.integers(0, 10, 60))
    rc = main(["plan", "mnist_cnn", "--data", f"npz:{p}", "--target-sqnr", "15", "--calib",
               "24", "--selection", "12", "--per-channel-weights", "--channel-groups", "2",
               "--confidence", "0.9", "--split-seed", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == (0 if out["success"] else 1)
    assert out["splits"]["seed"] == 3 and out["splits"]["selection"]["size"] == 12
    assert out["splits"]["held_out"]["size"] == 24 and out["n_eval"] == 24
    assert out["confidence"] == 0.9 and out["n_solves"] == len(out["solves"]) >= 1
    assert out["held_out_sqnr_db"] == out["measured_sqnr_db"]
    assert out["success"] == (out["measured_sqnr_db"] >= 15)
