"""Pairwise noise terms inside the MILP (issue 23): the one-hot MILP with the second-order
noise row ``|sum_i e_i(b_i)|^2 / |ref|^2`` is exact.

The error vectors are drawn at random (magnitude halving per extra bit, with correlated
components so that pairs add or cancel); the independent reference is the squared norm of
the summed vectors, and the MILP's optimum must equal an enumeration of every choice.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.errors import PlanError
from fxp.opt.problem import AllocationProblem
from fxp.opt.solve import brute_force, solve_milp


def _second_order(seed: int, n: int, widths: list[int], samples: int = 12):
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=samples)  # a common direction: errors of tensors correlate
    errs = []
    for _ in range(n):
        base, mix = rng.normal(size=samples), rng.uniform(-1, 1)
        errs.append([(base + mix * shared) * 2.0 ** -b for b in widths])
    signal = 1.0
    unary = [[float(e @ e) / signal for e in es] for es in errs]
    pairs = {(i, j): np.array([[2 * float(a @ b) / signal for b in errs[j]] for a in errs[i]])
             for i, j in itertools.combinations(range(n), 2)}
    return errs, unary, pairs, signal


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 4), target=st.floats(10, 40))
def test_milp_with_pairwise_noise_equals_enumeration(seed, n, target):
    widths = [2, 3, 4, 5, 6, 8]
    errs, unary, pairs, signal = _second_order(seed, n, widths)
    cost = [[float(b * (i + 1)) for b in widths] for i in range(n)]
    p = AllocationProblem([f"t{i}" for i in range(n)], [list(widths) for _ in range(n)], unary,
                          cost, target_db=target, noise_pairs=pairs)
    for choice in itertools.product(range(len(widths)), repeat=n):  # evaluate = |sum e|^2
        e = sum(errs[i][k] for i, k in enumerate(choice))
        assert math.isclose(p.evaluate(list(choice))[1], float(e @ e) / signal, rel_tol=1e-9,
                            abs_tol=1e-15)
    _milp_equals_enumeration(p)


def _milp_equals_enumeration(p: AllocationProblem, budget_mode: bool = False) -> None:
    """The MILP's optimum has the enumeration's cost (target mode) or noise (budget mode);
    where nothing is feasible, the MILP raises."""
    bf = brute_force(p)
    if bf is None:
        with pytest.raises(Exception):
            solve_milp(p)
        return
    res = solve_milp(p)
    assert p.feasible(res.choice)
    if budget_mode:
        assert math.isclose(res.noise, bf.noise, rel_tol=1e-6, abs_tol=1e-12)
    else:
        assert math.isclose(res.cost, bf.cost, rel_tol=1e-9)


def test_pairs_can_make_a_cheaper_plan_feasible_than_the_additive_row_allows():
    """Two tensors whose errors cancel: the additive row rejects the cheap plan, the exact
    second-order row accepts it (and it is right to: the summed error is small)."""
    e = np.array([1.0, 0.0])
    errs = [[e * 2.0 ** -b for b in (2, 8)], [-e * 2.0 ** -b for b in (2, 8)]]
    unary = [[float(v @ v) for v in es] for es in errs]
    pairs = {(0, 1): np.array([[2 * float(a @ b) for b in errs[1]] for a in errs[0]])}
    target = 20.0  # 1/100 of the signal: one 2-bit error alone is 1/16
    add = AllocationProblem(["a", "b"], [[2, 8], [2, 8]], unary, [[2, 8], [2, 8]],
                            target_db=target)
    exact = AllocationProblem(["a", "b"], [[2, 8], [2, 8]], unary, [[2, 8], [2, 8]],
                              target_db=target, noise_pairs=pairs)
    assert solve_milp(add).widths == [8, 8]
    assert solve_milp(exact).widths == [2, 2]  # e_a + e_b = 0 at equal widths


def test_bad_pairwise_noise_is_refused():
    with pytest.raises(PlanError, match="pairwise noise"):
        AllocationProblem(["a", "b"], [[2, 4], [2, 4]], [[1, 0.1], [1, 0.1]],
                          [[2, 4], [2, 4]], target_db=10, noise_pairs={(0, 1): np.zeros((3, 2))})
    with pytest.raises(PlanError, match="finite"):
        AllocationProblem(["a", "b"], [[2, 4], [2, 4]], [[1, 0.1], [1, 0.1]],
                          [[2, 4], [2, 4]], target_db=10,
                          noise_pairs={(0, 1): np.full((2, 2), np.nan)})


def _absorbing(seed: int, n: int, widths: list[int]):
    """Tensor 0 upstream of tensors 1..n-1 (a chain of quantizers after it): each pair
    ``(0, j)`` absorbs a random share (0..1) of tensor 0's noise, so together they can
    claim more than all of it; other pairs get small terms of either sign."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 2.0, n)
    unary = [[float(scale[i] * 4.0 ** -b) for b in widths] for i in range(n)]
    pairs, caps = {}, []
    for i, j in itertools.combinations(range(n), 2):
        if i == 0:
            m = -rng.uniform(0, 1, (len(widths), len(widths))) * np.array(unary[0])[:, None]
            caps.append((0, j, m))
        else:
            m = rng.normal(0, 0.1, (len(widths), len(widths))) * np.sqrt(
                np.outer(unary[i], unary[j]))
        pairs[(i, j)] = m
    return unary, pairs, [(0, caps)]


def _capped(unary, pairs, choice) -> float:
    """The reference: every term, then tensor 0's absorbed noise limited to its own."""
    total = sum(unary[i][k] for i, k in enumerate(choice))
    absorbed = 0.0
    for (i, j), m in pairs.items():
        total += m[choice[i], choice[j]]
        if i == 0:
            absorbed += m[choice[i], choice[j]]
    return total + max(0.0, -unary[0][choice[0]] - absorbed)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 4), target=st.floats(10, 40),
       budget_mode=st.booleans())
def test_milp_with_absorption_caps_equals_enumeration(seed, n, target, budget_mode):
    """The cap on absorbed noise (:attr:`AllocationProblem.absorption`, a maximum of linear
    terms held by one MILP variable): the MILP's optimum equals an enumeration of every
    choice scored by the reference formula, in target and in budget mode, with the widths
    given unsorted."""
    widths = [5, 2, 8, 3, 6]
    unary, pairs, caps = _absorbing(seed, n, widths)
    cost = [[float(b * (i + 1)) for b in widths] for i in range(n)]
    kw = dict(budget=float(sum(cost[i][2] for i in range(n))) * 0.6) if budget_mode \
        else dict(target_db=target)
    p = AllocationProblem([f"t{i}" for i in range(n)], [list(widths) for _ in range(n)],
                          [list(u) for u in unary], cost, noise_pairs=dict(pairs),
                          absorption=[(u, list(t)) for u, t in caps], **kw)
    order = np.argsort(widths)
    binds = False
    for choice in itertools.product(range(len(widths)), repeat=n):
        ref = _capped(unary, pairs, [int(order[k]) for k in choice])  # p's widths are sorted
        assert math.isclose(p.evaluate(list(choice))[1], ref, rel_tol=1e-9, abs_tol=1e-15)
        binds |= ref > sum(unary[i][order[k]] for i, k in enumerate(choice)) + sum(
            m[order[choice[i]], order[choice[j]]] for (i, j), m in pairs.items()) + 1e-15
    assert binds or n == 2  # with two or more downstream partners the cap comes into play
    _milp_equals_enumeration(p, budget_mode)


def test_bad_absorption_caps_are_refused():
    base = dict(names=["a", "b"], widths=[[2, 4], [2, 4]], noise=[[1, 0.1], [1, 0.1]],
                cost=[[2, 4], [2, 4]], target_db=10)
    with pytest.raises(PlanError, match="absorption cap of tensor 0: pair"):
        AllocationProblem(**base, absorption=[(0, [(1, 0, np.zeros((2, 2)))])])
    with pytest.raises(PlanError, match="<= 0"):
        AllocationProblem(**base, absorption=[(0, [(0, 1, np.full((2, 2), 0.5))])])
