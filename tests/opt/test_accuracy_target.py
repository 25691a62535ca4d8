"""Accuracy-drop targets: the cheapest optimized plan within N points of float top-1."""

from __future__ import annotations

import numpy as np
import pytest

from fxp import workflow as fw
from fxp.errors import InfeasibleTargetError, PlanError
from fxp.sim.float_ref import run_float
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
    drop = 100 * (res.float_top1 - res.fixed_top1)
    assert drop <= 6.0
    lower = [t for t in targets if t < res.target_sqnr_db]
    for t in lower:  # every cheaper target violates the drop (that is why it was skipped)
        r = fw.optimize_plan(g, data, t, calib=300)
        assert 100 * (r.float_top1 - r.fixed_top1) > 6.0


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
