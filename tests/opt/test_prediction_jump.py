"""The prediction jump (:mod:`fxp.opt.prediction_jump`), against brute force over every
plan and the noise of summed error vectors (:mod:`tests.opt.search_fakes`)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.errors import InfeasibleTargetError
from fxp.opt.neighbour_search import MIN_CHANCE, SIGMA_DB
from fxp.opt.prediction_jump import MAX_JUMPS, SAVING, jump_problem, prediction_jump
from fxp.opt.problem import AllocationProblem
from fxp.opt.solve import MilpResult, solve_milp
from tests.opt.search_fakes import Search, VectorInteractions, problems

pytest.importorskip("highspy")


def _grid(p):
    return [list(c) for c in itertools.product(*[range(len(w)) for w in p.widths])]


def _db(noise):
    return math.inf if noise <= 0 else -10.0 * math.log10(noise)


@settings(max_examples=40, deadline=None)
@given(problems())
def test_the_jump_problem_is_the_second_order_noise_of_every_plan(case):
    """The budget-mode problem's exact noise of every plan is the noise of the plan's summed
    error vectors, and its cost the original problem's cost."""
    p, inter, _ = case
    q = jump_problem(p, Search(p, inter).terms, budget=1e30)
    assert q.target_db is None and q.budget == 1e30
    for c in _grid(p):
        cost, noise = q.evaluate(c)
        assert cost == p.evaluate(c)[0]
        assert math.isclose(noise, inter.noise_of(c), rel_tol=1e-9, abs_tol=1e-15)


@settings(max_examples=30, deadline=None)
@given(problems(), st.floats(0.3, 0.95), st.integers(0, 2**31 - 1))
def test_the_jump_solve_is_the_least_noise_plan_under_the_budget_and_cuts(case, frac, seed):
    """With some plans cut off, the MILP's plan has the least second-order noise of every
    plan at cost <= budget that is not cut (brute force), and is itself not cut."""
    p, inter, _ = case
    costs = sorted({p.evaluate(c)[0] for c in _grid(p)})
    budget = costs[int(frac * (len(costs) - 1))]
    q = jump_problem(p, Search(p, inter).terms, budget)
    rng = np.random.default_rng(seed)
    grid = _grid(p)
    under = [c for c in grid if p.evaluate(c)[0] <= budget]
    cut = {tuple(under[k]) for k in rng.choice(len(under), size=min(3, len(under) - 1),
                                                replace=False)} if len(under) > 1 else set()
    cuts = [[(i, [p.widths[i][k]]) for i, k in enumerate(c)] for c in cut]
    left = [c for c in under if tuple(c) not in cut]
    if not left:
        with pytest.raises(InfeasibleTargetError):
            solve_milp(q, cuts=cuts)
        return
    got = solve_milp(q, cuts=cuts)
    assert tuple(got.choice) not in cut and p.evaluate(got.choice)[0] <= budget
    best = min(inter.noise_of(c) for c in left)
    assert inter.noise_of(got.choice) <= best * (1 + 1e-5) + 1e-15


def _start(p, inter, choice):
    noise = inter.noise_of(choice)
    res = MilpResult(list(choice), p.widths_of(choice), p.evaluate(choice)[0], noise,
                     "optimal", "x")
    return res, dict(zip(p.names, p.widths_of(choice), strict=True)), _db(noise)


@settings(max_examples=30, deadline=None)
@given(problems(), st.floats(-1.0, 1.0), st.integers(0, 2**31 - 1))
def test_each_jump_measures_the_best_predicted_unmeasured_plan_a_saving_away(case, bias, seed):
    """Measurements = prediction + ``bias`` + a fixed random error per plan.  Replaying the
    solves: each measured jump plan is, among the plans not measured before it and costing
    at most the kept plan's cost / (1 + SAVING), one of least noise (brute force); at most
    MAX_JUMPS are measured, none twice; the kept plan moves only to a plan measured at or
    above the goal, each cheaper than the last; every plan measured after the kept one fell
    short."""
    p, inter, start = case
    res0, w0, pred0 = _start(p, inter, start)
    goal = pred0 - 0.5
    rng = np.random.default_rng(seed)
    jitter: dict = {}
    calls: list = []

    def measure(w):
        key = tuple(w[n] for n in p.names)
        calls.append(key)
        jitter.setdefault(key, float(rng.normal(0, 0.3)))
        return _db(inter.noise_of(p.choice_of(w))) + bias + jitter[key]

    search = Search(p, inter)
    search.solves.append({"widths": p.widths_of(start)})
    m0 = pred0 + bias
    measured = {tuple(p.widths_of(start)): m0}
    before = dict(measured)
    res, w, pred, idx = prediction_jump(search, (res0, w0, pred0, 0), m0, lambda _: goal,
                                        measure, measured)
    assert len(calls) == len(set(calls)) <= MAX_JUMPS
    assert not set(calls) & set(before)
    seen, kept_cost = set(before), res0.cost
    for s in search.solves[1:]:
        key = tuple(s["widths"])
        under = [c for c in _grid(p) if p.evaluate(c)[0] <= kept_cost / (1 + SAVING)
                 and tuple(p.widths_of(c)) not in seen]
        least = min(inter.noise_of(c) for c in under)
        assert inter.noise_of(p.choice_of(list(key))) <= least * (1 + 1e-5) + 1e-15
        assert s["calibration_sqnr_db"] == measured[key]
        seen.add(key)
        if s["calibration_sqnr_db"] >= goal:
            assert s["cost"] < kept_cost
            kept_cost = s["cost"]
    assert res.cost == kept_cost == p.evaluate(p.choice_of(w))[0]
    assert search.solves[idx]["widths"] == [w[n] for n in p.names]
    if idx:
        assert measured[tuple(res.widths)] >= goal
        assert math.isclose(pred, _db(inter.noise_of(p.choice_of(w))), rel_tol=1e-9)
    assert all(s["calibration_sqnr_db"] < goal for s in search.solves[idx + 1:])


def _four_tensors():
    """Four weights of equal size; tensor ``i`` at ``b`` bits adds ``scale_i 2^-b`` along
    its own axis (the last two far noisier: the best plans give them more bits)."""
    ws = list(range(2, 11))
    scale = [1.0, 1.5, 40.0, 60.0]
    errors = [[2.0 ** -b * s * np.eye(4)[i] for b in ws] for i, s in enumerate(scale)]
    inter = VectorInteractions(errors, 1.0)
    p = AllocationProblem([f"t{i}" for i in range(4)], [ws] * 4, [[0.0] * len(ws)] * 4,
                          [[100.0 * b for b in ws]] * 4, target_db=20.0)
    return p, inter


def test_a_plan_four_width_changes_away_is_found_in_one_measurement():
    """From (9, 9, 7, 8) bits, where the prediction is exact: the best-predicted plan at
    least 2% cheaper changes all four widths, so it is no neighbour of the start (the
    neighbour search cannot measure it); the first jump measures it and keeps it."""
    from fxp.opt.neighbour_search import cheaper_neighbours

    p, inter = _four_tensors()
    start = p.choice_of([9, 9, 7, 8])
    res0, w0, pred0 = _start(p, inter, start)
    calls = []

    def measure(w):
        calls.append(p.choice_of(w))
        return _db(inter.noise_of(p.choice_of(w)))

    goal = pred0 - 0.1
    search = Search(p, inter)
    search.solves.append({"widths": [9, 9, 7, 8]})
    res, w, pred, idx = prediction_jump(search, (res0, w0, pred0, 0), pred0,
                                        lambda _: goal, measure, {(9, 9, 7, 8): pred0})
    under = [c for c in _grid(p) if p.evaluate(c)[0] <= res0.cost / (1 + SAVING)]
    want = min(under, key=inter.noise_of)
    assert calls[0] == want and _db(inter.noise_of(want)) > goal + 10
    assert sum(a != b for a, b in zip(want, start, strict=True)) == 4
    near = {tuple(c) for c, _, _ in cheaper_neighbours(p, inter, start, res0.cost)}
    assert tuple(want) not in near
    assert search.solves[1]["widths"] == p.widths_of(want)
    assert res.cost <= p.evaluate(want)[0] < res0.cost and pred >= goal and idx >= 1


def test_no_jump_is_measured_when_the_best_prediction_has_no_chance():
    """From (5, 5, 10, 10) bits with the goal at its own exact prediction: the best plan 2%
    cheaper predicts 1.3 dB less (more than SIGMA_DB times the MIN_CHANCE quantile), so
    nothing is measured and the start is returned."""
    p, inter = _four_tensors()
    start = p.choice_of([5, 5, 10, 10])
    res0, w0, pred0 = _start(p, inter, start)
    under = [c for c in _grid(p) if p.evaluate(c)[0] <= res0.cost / (1 + SAVING)]
    z = (_db(min(inter.noise_of(c) for c in under)) - pred0) / SIGMA_DB
    assert 0.5 * math.erfc(-z / math.sqrt(2)) < MIN_CHANCE
    search = Search(p, inter)
    search.solves.append({"widths": [5, 5, 10, 10]})
    out = prediction_jump(search, (res0, w0, pred0, 0), pred0, lambda _: pred0,
                          lambda w: pytest.fail("measured"), {(5, 5, 10, 10): pred0})
    assert out[0] is res0 and out[3] == 0 and len(search.solves) == 1


def test_no_jump_is_made_with_max_jumps_zero():
    """``max_jumps=0`` (``fxp plan --jumps 0``) returns the start untouched, nothing solved
    or measured, where the default would jump (the four-tensor case above)."""
    p, inter = _four_tensors()
    start = p.choice_of([9, 9, 7, 8])
    res0, w0, pred0 = _start(p, inter, start)
    search = Search(p, inter)
    search.solves.append({"widths": [9, 9, 7, 8]})
    out = prediction_jump(search, (res0, w0, pred0, 0), pred0, lambda _: pred0 - 0.1,
                          lambda w: pytest.fail("measured"), {(9, 9, 7, 8): pred0},
                          max_jumps=0)
    assert out[0] is res0 and len(search.solves) == 1


def test_optimize_bits_refuses_a_bad_jumps_count():
    """``jumps`` must be an integer in 0..100; the error names it (before any measurement)."""
    from fxp.errors import PlanError
    from fxp.opt import optimize_bits

    for bad in (-1, 101, 2.5, True, "4"):
        with pytest.raises(PlanError, match="jumps must be an integer in 0..100"):
            optimize_bits(None, np.zeros((4, 1, 2, 2), np.float32), 20.0, jumps=bad)


def test_a_free_plan_makes_no_jump():
    """Every plan costs nothing (activations only, weight-memory cost): no plan is cheaper,
    so nothing is measured (hypothesis found the jump re-measuring equal-cost plans)."""
    p, inter = _four_tensors()
    p.cost = [[0.0] * len(ws) for ws in p.widths]
    start = p.choice_of([5, 5, 10, 10])
    res0, w0, pred0 = _start(p, inter, start)
    assert res0.cost == 0
    search = Search(p, inter)
    search.solves.append({"widths": [5, 5, 10, 10]})
    out = prediction_jump(search, (res0, w0, pred0, 0), pred0, lambda _: -100.0,
                          lambda w: pytest.fail("measured"), {(5, 5, 10, 10): pred0})
    assert out[0] is res0 and len(search.solves) == 1
