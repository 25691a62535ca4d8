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
    bf = brute_force(p)
    if bf is None:
        with pytest.raises(Exception):
            solve_milp(p)
        return
    res = solve_milp(p)
    assert p.feasible(res.choice)
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
