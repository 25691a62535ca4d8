"""The measured neighbour search (:mod:`fxp.opt.neighbour_search`), against brute force
over every plan and the noise of summed error vectors computed here."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.opt.neighbour_search import (
    MAX_MEASUREMENTS,
    STEP,
    cheaper_neighbours,
    measured_neighbour_search,
)
from fxp.opt.problem import AllocationProblem
from fxp.opt.solve import MilpResult
from tests.opt.search_fakes import Search, VectorInteractions, problems


def _is_neighbour(p, start, cand):
    """The module's neighbourhood, written out: one or two tensors moved by at most STEP
    widths, or three by one width; a narrower width only where that move alone saves."""
    moved = [i for i in range(len(start)) if cand[i] != start[i]]
    if not moved:
        return False
    for i in moved:
        if cand[i] < start[i]:
            alone = list(start)
            alone[i] = cand[i]
            if not p.evaluate(alone)[0] < p.evaluate(start)[0]:
                return False
    steps = [abs(cand[i] - start[i]) for i in moved]
    return (len(moved) <= 2 and max(steps) <= STEP) or (len(moved) == 3 and max(steps) == 1)


@settings(max_examples=60, deadline=None)
@given(problems())
def test_cheaper_neighbours_are_every_cheaper_neighbour_with_its_noise(case):
    """The neighbours returned are exactly the plans of the whole grid that are neighbours
    and cost less, each with the noise of its summed error vectors."""
    p, inter, choice = case
    cost = p.evaluate(choice)[0]
    got = {tuple(c): (cc, noise) for c, cc, noise in cheaper_neighbours(p, inter, choice, cost)}
    want = {cand for cand in itertools.product(*[range(len(w)) for w in p.widths])
            if _is_neighbour(p, choice, cand) and p.evaluate(list(cand))[0] < cost}
    assert set(got) == want
    for cand, (cc, noise) in got.items():
        assert cc == p.evaluate(list(cand))[0]
        assert math.isclose(noise, inter.noise_of(cand), rel_tol=1e-9, abs_tol=1e-15)
    if got:  # a noise bound keeps exactly the neighbours within it
        bound = float(np.median([nz for _, nz in got.values()]))
        kept = {tuple(c) for c, _, _ in cheaper_neighbours(p, inter, choice, cost,
                                                           max_noise=bound)}
        assert kept == {c for c, (_, nz) in got.items() if nz <= bound}


def test_past_max_triples_only_one_and_two_tensor_changes_are_tried(monkeypatch):
    """With more unit moves than MAX_TRIPLES allows, the three-tensor changes are left out
    and the one- and two-tensor ones are all still there."""
    import fxp.opt.neighbour_search as ns

    rng = np.random.default_rng(5)
    n, ws = 6, list(range(2, 9))
    errors = [[2.0 ** -b * rng.normal(size=4) for b in ws] for _ in range(n)]
    inter = VectorInteractions(errors, 1.0)
    p = AllocationProblem([f"t{i}" for i in range(n)], [ws] * n, [[0.0] * len(ws)] * n,
                          [[10.0 * b for b in ws]] * n, target_db=10.0)
    choice = [3] * n
    cost = p.evaluate(choice)[0]
    full = {tuple(c) for c, _, _ in cheaper_neighbours(p, inter, choice, cost)}
    monkeypatch.setattr(ns, "MAX_TRIPLES", 10)
    capped = {tuple(c) for c, _, _ in cheaper_neighbours(p, inter, choice, cost)}
    moved = {c: sum(a != b for a, b in zip(c, choice, strict=True)) for c in full}
    assert capped == {c for c in full if moved[c] <= 2}
    assert any(m == 3 for m in moved.values())


@settings(max_examples=60, deadline=None)
@given(problems(), st.floats(-2.0, 2.0), st.integers(0, 2**31 - 1))
def test_the_search_keeps_a_measured_plan_that_meets_the_goal(case, bias, seed):
    """Measurements = prediction + ``bias`` + a fixed random error per plan: the search
    measures each plan once, at most MAX_MEASUREMENTS times; what it returns is the start
    or the last plan it measured at or above the goal, never dearer, and its solve entry
    says so; every plan measured after the kept one fell short."""
    p, inter, start = case
    noise0 = inter.noise_of(start)
    pred0 = -10 * math.log10(noise0)
    goal = pred0 - 0.3
    rng = np.random.default_rng(seed)
    jitter: dict = {}

    def measure(w):
        key = tuple(w[n] for n in p.names)
        calls.append(key)
        cand = p.choice_of(w)
        jitter.setdefault(key, float(rng.normal(0, 0.3)))
        return -10 * math.log10(inter.noise_of(cand)) + bias + jitter[key]

    calls: list = []
    search = Search(p, inter)
    w0 = dict(zip(p.names, p.widths_of(start), strict=True))
    res0 = MilpResult(start, p.widths_of(start), p.evaluate(start)[0], noise0, "optimal", "x")
    search.solves.append({"widths": p.widths_of(start)})
    m0 = pred0 + bias
    measured = {tuple(p.widths_of(start)): m0}
    res, w, pred, idx = measured_neighbour_search(search, (res0, w0, pred0, 0), m0,
                                                  lambda _: goal, measure, measured)
    assert len(calls) == len(set(calls)) <= MAX_MEASUREMENTS
    assert tuple(p.widths_of(start)) not in calls
    assert res.cost <= res0.cost
    assert res.cost == p.evaluate(p.choice_of(w))[0]
    assert search.solves[idx]["widths"] == [w[n] for n in p.names]
    if idx:
        assert measured[tuple(res.widths)] >= goal
        assert search.solves[idx]["calibration_sqnr_db"] == measured[tuple(res.widths)]
        assert math.isclose(pred, -10 * math.log10(inter.noise_of(p.choice_of(w))),
                            rel_tol=1e-9)
    for s in search.solves[1:]:
        assert s["calibration_sqnr_db"] == measured[tuple(s["widths"])]
    # every plan measured after the kept one fell short (else the search moved to it)
    assert all(s["calibration_sqnr_db"] < goal for s in search.solves[idx + 1:])


def test_the_search_moves_to_the_cheaper_plan_that_meets_the_goal():
    """Two weights, the MILP's plan at (4, 4) bits; the measurement says (3, 5) meets the
    goal (the prediction, from the error vectors, says it falls 0.13 dB short): the search
    measures it and keeps it."""
    ws = [2, 3, 4, 5, 6]
    errors = [[2.0 ** -b * np.array([1.0, 0.0]) for b in ws],
              [2.0 ** -b * np.array([0.0, math.sqrt(3.8)]) for b in ws]]
    inter = VectorInteractions(errors, 1.0)
    p = AllocationProblem(["a", "b"], [ws, ws], [[0.0] * 5] * 2,
                          [[100.0 * b for b in ws], [60.0 * b for b in ws]], target_db=10.0)
    start = [2, 2]
    noise0 = inter.noise_of(start)
    pred0 = -10 * math.log10(noise0)
    target = [1, 3]  # (3, 5) bits: 300 + 300 < 400 + 240
    assert pred0 - 0.2 < -10 * math.log10(inter.noise_of(target)) < pred0

    def measure(w):
        return pred0 if p.choice_of(w) == target else pred0 - 5.0

    search = Search(p, inter)
    search.solves.append({"widths": [4, 4]})
    res0 = MilpResult(start, [4, 4], p.evaluate(start)[0], noise0, "optimal", "x")
    res, w, _, idx = measured_neighbour_search(
        search, (res0, {"a": 4, "b": 4}, pred0, 0), pred0, lambda _: pred0, measure,
        {(4, 4): pred0})
    assert w == {"a": 3, "b": 5} and res.cost == 600.0
    assert search.solves[idx]["calibration_sqnr_db"] == pred0
