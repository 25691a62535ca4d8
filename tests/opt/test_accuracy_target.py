"""Accuracy-drop targets: the cheapest optimized plan within N points of float top-1."""

from __future__ import annotations


import numpy as np
import pytest

from fxp import workflow as fw
from fxp.errors import InfeasibleTargetError, PlanError
from fxp.sim.float_ref import run_float
from tests.opt.fakes import FakeOptimizeResult
from tests.sim.test_integer_engine import tiny_graph


@pytest.fixture(scope="module")
def case():
    g = tiny_graph(4)
    x = np.random.default_rng(4).normal(0, 1, (600, 2, 6, 6)).astype(np.float32)
    y = run_float(g, x).argmax(axis=1)  # labels = float predictions: float top-1 is 100%
    return g, fw.Data(x, y, "tiny")


def test_lowest_target_within_the_drop_is_returned(case):
    g, data = case
    targets = (6.0, 9.0, 12.0, 16.0, 20.0, 26.0)
    res = fw.optimize_for_accuracy(g, data, 6.0, targets_db=targets, calib=300)
    # the selection split (samples 300..449) chooses; the held-out split (450..599) checks
    drop = 100 * (res.selection_top1[0] - res.selection_top1[1])
    assert drop <= 6.0 + fw.DROP_TOLERANCE
    i = targets.index(res.target_sqnr_db)
    if i > 0:  # bisection invariant: the next cheaper target on the grid violates the drop
        r = fw.optimize_plan(g, data, targets[i - 1], calib=300)
        assert 100 * (r.selection_top1[0] - r.selection_top1[1]) > 6.0
        assert r.weight_memory_bits <= res.weight_memory_bits
    assert "by bisection" in res.message
    held = 100 * (res.float_top1 - res.fixed_top1)
    assert res.success == (held <= 6.0 + fw.DROP_TOLERANCE
                           and res.measured_sqnr_db >= res.target_sqnr_db)
    assert (res.status == "drop_not_met") == (held > 6.0 + fw.DROP_TOLERANCE)


@pytest.mark.parametrize("limit", [0.0, 0.55, 1.05, 2.6, 4.2, 9.5])
def test_bisection_finds_the_first_target_within_the_drop(monkeypatch, limit):
    """With drops falling as the target rises, the first fit on the grid, in ~log2 tries,
    and the noise table measured by the first try is handed to every later one."""
    grid = [float(t) for t in range(2, 41)]
    drop_at = {t: 10.0 / (t - 1) for t in grid}  # monotone decreasing drop, points
    calls = []

    def fake(graph, data, target, **kw):
        calls.append((target, kw.get("noise_table")))
        if target > 35:
            raise InfeasibleTargetError("out of reach")
        return FakeOptimizeResult(target, 1.0, 1.0 - drop_at[target] / 100)

    monkeypatch.setattr(fw, "optimize_plan", fake)
    feasible = [t for t in grid if t <= 35]
    want = next((t for t in feasible if drop_at[t] <= limit), None)
    if want is None:
        with pytest.raises(InfeasibleTargetError, match="keeps the top-1 drop"):
            fw.optimize_for_accuracy(None, None, limit)
        return
    res = fw.optimize_for_accuracy(None, None, limit)
    assert res.target_sqnr_db == want
    assert "by bisection" in res.message
    assert len({t for t, _ in calls}) <= 5 + 8  # top-down search for reachability + log2(34)
    first_ok = next(i for i, (t, _) in enumerate(calls) if t <= 35)
    assert all(nt is None for _, nt in calls[:first_ok + 1])
    assert all(nt == "table" for _, nt in calls[first_ok + 1:])


def test_impossible_drop_and_bad_input(case):
    g, data = case
    with pytest.raises(PlanError, match="max accuracy drop"):
        fw.optimize_for_accuracy(g, data, -1.0)
    with pytest.raises(InfeasibleTargetError, match="keeps the top-1 drop within 0 points"):
        fw.optimize_for_accuracy(g, data, 0.0, targets_db=(3.0,), calib=300)


def test_cli_refuses_both_targets(capsys):
    from fxp.cli import main

    assert main(["plan", "mnist_cnn", "--data", "mnist5k", "--target-sqnr", "30",
                 "--max-accuracy-drop", "1"]) == 2
    assert "either --target-sqnr or --max-accuracy-drop" in capsys.readouterr().err
