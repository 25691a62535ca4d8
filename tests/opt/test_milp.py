"""The allocation MILP against brute force, the relaxation against Lin's closed form, errors."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest

from fxp.errors import InfeasibleTargetError, MissingDependencyError, PlanError
from fxp.opt.problem import AllocationProblem, ContinuousProblem
from fxp.opt.solve import brute_force, lin_closed_form, solve_continuous, solve_milp

cp = pytest.importorskip("cvxpy")
needs_highs = pytest.mark.skipif("HIGHS" not in cp.installed_solvers(), reason="no HiGHS")
needs_exp = pytest.mark.skipif(not {"CLARABEL", "SCS", "ECOS"} & set(cp.installed_solvers()),
                               reason="no exponential-cone solver")


def random_instance(rng: np.random.Generator) -> AllocationProblem:
    """<= 4 tensors, widths a random subset of 2..12, Lin-law noise with jitter, mixed costs."""
    n = int(rng.integers(1, 5))
    widths, noise, cost = [], [], []
    for _ in range(n):
        ws = sorted(rng.choice(np.arange(2, 13), size=int(rng.integers(1, 12)), replace=False))
        kappa, c = rng.uniform(4.0, 6.5), rng.uniform(-10, 15)
        sq = kappa * np.asarray(ws) + c + rng.normal(0, 1.5, len(ws))
        widths.append([int(b) for b in ws])
        noise.append(list(10.0 ** (-sq / 10)))
        kind = rng.integers(3)
        if kind == 0:  # memory-like
            size = float(rng.integers(1, 10_000))
            cost.append([size * b for b in ws])
        elif kind == 1:  # free tensor
            cost.append([0.0] * len(ws))
        else:  # arbitrary user table
            cost.append(list(rng.uniform(0, 100, len(ws))))
    pairs, ties = [], []
    if n >= 2 and rng.random() < 0.3:
        i, j = rng.choice(n, 2, replace=False)
        pairs.append((int(i), int(j), float(rng.integers(1, 1000))))
    if n >= 2 and rng.random() < 0.2:
        i, j = rng.choice(n, 2, replace=False)
        ties.append((int(i), int(j)))
    best = -10 * math.log10(sum(min(v) for v in noise))
    if rng.random() < 0.1:
        return AllocationProblem([f"t{i}" for i in range(n)], widths, noise, cost,
                                 budget=float(rng.uniform(0, 2e4)), pairs=pairs, ties=ties)
    target = float(rng.uniform(best - 40, best + 3))  # some infeasible
    return AllocationProblem([f"t{i}" for i in range(n)], widths, noise, cost, target_db=target,
                             pairs=pairs, ties=ties)


def vector_brute_force(p: AllocationProblem):
    """Enumerate all choices with numpy broadcasting; (cost, noise, choice) or None."""
    n = len(p.names)
    grids = np.meshgrid(*[np.arange(len(w)) for w in p.widths], indexing="ij")
    idx = [g.ravel() for g in grids]
    cost = sum(np.asarray(p.cost[i])[idx[i]] for i in range(n))
    for i, j, wgt in p.pairs:
        cost = cost + wgt * np.asarray(p.widths[i])[idx[i]] * np.asarray(p.widths[j])[idx[j]]
    noise = sum(np.asarray(p.noise[i])[idx[i]] for i in range(n))
    ok = np.ones(cost.shape, bool)
    for i, j in p.ties:
        ok &= np.asarray(p.widths[i])[idx[i]] == np.asarray(p.widths[j])[idx[j]]
    if p.target_db is not None:
        ok &= noise <= p.noise_budget
        key = np.lexsort((noise, cost))
    else:
        ok &= cost <= p.budget
        key = np.lexsort((cost, noise))
    key = key[ok[key]]
    if key.size == 0:
        return None
    k = key[0]
    return float(cost[k]), float(noise[k]), [int(v[k]) for v in idx]


@needs_highs
def test_milp_equals_brute_force_on_200_random_instances():
    rng = np.random.default_rng(20240601)
    n_feasible = n_infeasible = 0
    for case in range(200):
        p = random_instance(rng)
        want = vector_brute_force(p)
        if want is None:
            with pytest.raises(InfeasibleTargetError):
                solve_milp(p)
            n_infeasible += 1
            continue
        got = solve_milp(p)
        assert p.feasible(got.choice), case
        cost, noise = p.evaluate(got.choice)
        if p.target_db is not None:
            slack = 1 - want[1] / p.noise_budget
            if slack >= 3e-6:  # the MILP's noise row is tightened by 2e-6 (documented)
                assert cost == pytest.approx(want[0], rel=1e-9, abs=1e-9), (case, got, want)
            else:
                assert cost >= want[0] - 1e-9
        else:
            assert noise == pytest.approx(want[1], rel=1e-6, abs=1e-15), (case, got, want)
        n_feasible += 1
    assert n_feasible >= 120 and n_infeasible >= 10  # both outcomes are exercised


def test_python_brute_force_agrees_with_vectorised_one():
    rng = np.random.default_rng(7)
    for _ in range(20):
        p = random_instance(rng)
        if math.prod(len(w) for w in p.widths) > 3000:
            continue
        a, b = brute_force(p), vector_brute_force(p)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.cost == pytest.approx(b[0]) and a.noise == pytest.approx(b[1])


@needs_exp
def test_continuous_relaxation_matches_lin_closed_form():
    rho = np.array([288.0, 18432.0, 16000.0, 3.0e5])
    kappa = np.full(4, 6.02)
    c = np.zeros(4)
    p = ContinuousProblem(["a", "b", "c", "d"], rho, kappa, c, 30.0, np.full(4, -50.0),
                          np.full(4, 80.0))
    res = solve_continuous(p)
    closed = lin_closed_form(rho, kappa, c, 30.0)
    assert np.allclose(res.bits, closed, atol=2e-3)
    # Lin's result: b_i - b_j = (10/kappa) log10(rho_j/rho_i)
    for i, j in product(range(4), repeat=2):
        assert res.bits[i] - res.bits[j] == pytest.approx(
            10 / 6.02 * math.log10(rho[j] / rho[i]), abs=3e-3)
    assert p.noise(res.bits) == pytest.approx(1e-3, rel=1e-4)


@needs_exp
def test_continuous_relaxation_with_unequal_kappa():
    rho = np.array([100.0, 1000.0, 5000.0])
    kappa = np.array([5.0, 6.0, 4.5])
    c = np.array([2.0, -3.0, 1.0])
    p = ContinuousProblem(["a", "b", "c"], rho, kappa, c, 40.0, np.zeros(3), np.full(3, 60.0))
    assert np.allclose(solve_continuous(p).bits, lin_closed_form(rho, kappa, c, 40.0), atol=2e-3)


def _simple(target=30.0, **kw):
    return AllocationProblem(["a", "b"], [[4, 8], [4, 8]], [[1e-2, 1e-4], [1e-2, 1e-4]],
                             [[4.0, 8.0], [40.0, 80.0]], target_db=target, **kw)


@needs_highs
def test_infeasible_target_reports_best_sqnr():
    p = _simple(target=40.0)  # best: 2e-4 -> 36.99 dB
    with pytest.raises(InfeasibleTargetError) as info:
        solve_milp(p)
    assert info.value.best_sqnr_db == pytest.approx(-10 * math.log10(2e-4))
    assert "36.99" in str(info.value)


@needs_highs
def test_infeasible_because_of_ties_reports_best_tied_sqnr():
    p = AllocationProblem(["a", "b"], [[4, 8], [4, 6]], [[1e-2, 1e-6], [1e-2, 1e-6]],
                          [[1.0, 2.0], [1.0, 2.0]], target_db=50.0, ties=[(0, 1)])
    with pytest.raises(InfeasibleTargetError) as info:
        solve_milp(p)
    assert info.value.best_sqnr_db == pytest.approx(-10 * math.log10(2e-2))


@needs_highs
def test_feasible_simple_choice():
    r = solve_milp(_simple(target=19.0))
    assert r.widths == [8, 4]  # the expensive tensor gets the narrow width
    assert solve_milp(_simple(target=25.0)).widths == [8, 8]


@pytest.mark.parametrize("kw", [
    dict(target_db=float("nan")),
    dict(target_db=float("inf")),
    dict(target_db="x"),
    dict(target_db=None),
    dict(target_db=20.0, budget=3.0),
    dict(budget=-1.0),
])
def test_bad_problem_inputs_rejected(kw):
    with pytest.raises(PlanError):
        AllocationProblem(["a"], [[4, 8]], [[1e-2, 1e-4]], [[1.0, 2.0]], **kw)


@pytest.mark.parametrize("args", [
    ([], [], [], []),
    (["a"], [[]], [[]], [[]]),
    (["a"], [[4, 4]], [[1, 1]], [[1, 1]]),
    (["a"], [[4, 8]], [[1e-2, float("nan")]], [[1, 2]]),
    (["a"], [[4, 8]], [[1e-2, -1.0]], [[1, 2]]),
    (["a"], [[4, 8]], [[1e-2]], [[1, 2]]),
    (["a", "a"], [[4], [4]], [[1e-2], [1e-2]], [[1], [1]]),
])
def test_bad_problem_data_rejected(args):
    with pytest.raises(PlanError):
        AllocationProblem(*args, target_db=20.0)


def test_bad_continuous_inputs_rejected():
    with pytest.raises(PlanError, match="min bits > max bits"):
        ContinuousProblem(["a"], [1.0], [6.0], [0.0], 20.0, [9.0], [8.0])
    with pytest.raises(PlanError):
        ContinuousProblem(["a"], [1.0], [6.0], [0.0], float("nan"), [2.0], [8.0])
    with pytest.raises(PlanError):
        ContinuousProblem([], [], [], [], 20.0, [], [])


def test_missing_solver_names_the_package(monkeypatch):
    monkeypatch.setattr(cp, "installed_solvers", lambda: ["OSQP"])
    with pytest.raises(MissingDependencyError, match="pip install highspy") as info:
        solve_milp(_simple())
    assert "OSQP" in str(info.value)
    p = ContinuousProblem(["a"], [1.0], [6.0], [0.0], 20.0, [2.0], [16.0])
    with pytest.raises(MissingDependencyError, match="pip install clarabel"):
        solve_continuous(p)
    with pytest.raises(MissingDependencyError, match="pip install highspy"):
        solve_milp(_simple(), solver="highs")


@needs_highs
def test_solver_answer_is_reverified(monkeypatch):
    """A solver claiming 'optimal' with a point violating the constraint is rejected."""
    from fxp.errors import SolverError
    import fxp.opt.solve as S

    real = S.milp_problem

    def broken(p):
        prob, xs, keep, info = real(p)
        # drop the noise constraint: the solver then returns the cheapest, infeasible point
        return cp.Problem(prob.objective, prob.constraints[:len(xs)]), xs, keep, info

    monkeypatch.setattr(S, "milp_problem", broken)
    with pytest.raises(SolverError, match="did not verify"):
        solve_milp(_simple(target=19.5))


@needs_highs
def test_budget_mode_maximises_sqnr():
    p = AllocationProblem(["a", "b"], [[4, 8], [4, 8]], [[1e-2, 1e-4], [1e-3, 1e-5]],
                          [[4.0, 8.0], [40.0, 80.0]], budget=50.0)
    r = solve_milp(p)
    assert r.widths == [8, 4]
    with pytest.raises(InfeasibleTargetError):
        solve_milp(AllocationProblem(["a"], [[4, 8]], [[1e-2, 1e-4]], [[4.0, 8.0]], budget=1.0))
