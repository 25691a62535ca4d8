"""The 2% test of ``benchmarks/bench_fidelity.py`` looks only at the maximal plans under a
budget; checked here against brute-force enumeration of small grids."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

from hypothesis import given, settings

from tests.benchmarks.strategies import grids

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fidelity.py"
_SPEC = importlib.util.spec_from_file_location("bench_fidelity", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def _dominates(hi, lo):
    return all(h >= low for h, low in zip(hi, lo, strict=True))


@settings(max_examples=200, deadline=None)
@given(grids())
def test_every_plan_under_the_budget_is_dominated_by_a_maximal_one(grid):
    cost, below = grid
    maximal = bench.maximal_under(cost, below)
    points = list(itertools.product(*(range(k) for k in cost.shape)))
    under = [p for p in points if cost[p] < below]
    tops = [p for p in points if maximal[p]]
    assert all(cost[p] < below for p in tops)
    for p in under:  # some maximal plan has every width >= p's
        assert any(_dominates(m, p) for m in tops), p
    for m in tops:  # and none can take a single step up and stay under the budget
        for a in range(cost.ndim):
            if m[a] + 1 < cost.shape[a]:
                up = tuple(i + (k == a) for k, i in enumerate(m))
                assert cost[up] >= below


def test_steps_down_lowers_one_width_at_a_time():
    assert sorted(bench.steps_down((2, 0, 1))) == [(1, 0, 1), (2, 0, 0)]


def test_model_splits_are_the_optimizers_splits():
    """The benchmarks' calibration and held-out samples are those ``optimize_bits`` cuts
    (the same seed, 1,000 calibration samples); ``n_eval`` keeps the first held-out
    positions of the shuffled order."""
    import numpy as np

    from fxp.opt.splits import split_data

    g, d, sp, ci, hi = bench.model_splits("mnist_cnn", 0, n_eval=100)
    ref = split_data(len(d.x), 1000, seed=0)
    assert np.array_equal(ci, ref.indices("calibration"))
    order = np.random.default_rng(0).permutation(len(d.x))
    assert sorted(hi.tolist()) == sorted(order[ref.held_out[0]:ref.held_out[0] + 100].tolist())
    assert not set(hi.tolist()) & set(ci.tolist())
    assert np.array_equal(bench.model_splits("mnist_cnn", 0)[4], ref.indices("held_out"))


def test_restrict_grid_keeps_exactly_the_plans_inside_the_widths():
    """Every grid point with a weight width outside LO..HI gets infinite cost and noise, every
    other keeps its values; ``allowed_widths`` lists LO..HI for weights only."""
    from types import SimpleNamespace

    import numpy as np

    table = SimpleNamespace(widths=(2, 3, 4, 5, 6),
                            tensors=[SimpleNamespace(name="w0", kind="weight"),
                                     SimpleNamespace(name="a", kind="act"),
                                     SimpleNamespace(name="w1", kind="weight")])
    rng = np.random.default_rng(0)
    cost, noise = rng.uniform(1, 9, (5, 5)), rng.uniform(0, 1, (5, 5))
    c2, n2 = bench.restrict_grid(table, [0, 2], cost, noise, (3, 5))
    for i, j in itertools.product(range(5), range(5)):
        inside = 3 <= table.widths[i] <= 5 and 3 <= table.widths[j] <= 5
        assert (c2[i, j], n2[i, j]) == ((cost[i, j], noise[i, j]) if inside
                                        else (np.inf, np.inf))
    assert bench.restrict_grid(table, [0, 2], cost, noise, None)[0] is cost
    assert bench.allowed_widths(table, (3, 5)) == {"w0": [3, 4, 5], "w1": [3, 4, 5]}
    assert bench.allowed_widths(table, None) is None
