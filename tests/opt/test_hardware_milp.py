"""The MILP with hardware costs and budgets (pair tables, peak rows, lazy exact budgets,
forbidden kernel pairs) against brute-force enumeration, and its infeasibility messages."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.errors import InfeasibleTargetError, PlanError
from fxp.opt.hardware_budgets import Budget, Terms
from fxp.opt.problem import AllocationProblem
from fxp.opt.solve import brute_force, solve_milp

cp = pytest.importorskip("cvxpy")
pytestmark = pytest.mark.skipif("HIGHS" not in cp.installed_solvers(), reason="no HiGHS")


def _terms(rng, widths, n_pairs: int, integral: bool, hi: float = 100.0) -> Terms:
    """Random unary tables on some tensors and pair tables on ``n_pairs`` random pairs."""
    n = len(widths)

    def val():
        return float(rng.integers(0, int(hi))) if integral else float(rng.uniform(0, hi))

    unary = {int(i): {b: val() for b in widths[i]}
             for i in rng.choice(n, int(rng.integers(1, n + 1)), replace=False)}
    pair = {}
    for _ in range(n_pairs):
        i, j = (int(v) for v in rng.choice(n, 2, replace=False))
        pair[(i, j)] = {(a, b): val() for a in widths[i] for b in widths[j]}
    return Terms(unary, pair, float(rng.integers(0, 10)))


def _lazy_exact(limit: float, classes, salt: int):
    """An exact figure that depends on the widths through ``classes`` only (over the limit
    for about 1 in 4 class combinations)."""
    def exact(w):
        key = tuple(classes[i][w[i]] for i in sorted(classes))
        return limit - 50.0 + (hash((salt, key)) % 8) * 10.0
    return exact


def random_problem(rng: np.random.Generator) -> AllocationProblem:
    """2..4 tensors of <= 5 widths in 2..10; a hardware objective, 0..3 budgets (one to three
    rows, integer-valued), sometimes lazy; forbidden pairs and ties; both modes."""
    n = int(rng.integers(2, 5))
    widths, noise = [], []
    for _ in range(n):
        ws = sorted(int(b) for b in rng.choice(np.arange(2, 11), int(rng.integers(1, 6)),
                                               replace=False))
        kappa, c = rng.uniform(4.0, 6.5), rng.uniform(-10, 15)
        widths.append(ws)
        noise.append(list(10.0 ** (-(kappa * np.asarray(ws) + c + rng.normal(0, 1.5, len(ws)))
                                   / 10)))
    cost = [[float(rng.integers(0, 5)) * b for b in w] for w in widths]
    objective = _terms(rng, widths, int(rng.integers(0, 3)), integral=rng.random() < 0.5)
    budgets = []
    for k in range(int(rng.integers(0, 4))):
        rows = [_terms(rng, widths, int(rng.integers(0, 3)), integral=True)
                for _ in range(int(rng.integers(1, 4)))]
        # a limit between the rows' least and largest values: some bind, some cannot be met
        lo = max(r.constant + sum(min(t.values()) for t in r.unary.values())
                 + sum(min(t.values()) for t in r.pair.values()) for r in rows)
        hi = max(r.constant + sum(max(t.values()) for t in r.unary.values())
                 + sum(max(t.values()) for t in r.pair.values()) for r in rows)
        limit = float(rng.integers(int(lo + 0.2 * (hi - lo)), int(hi) + 2))
        exact = classes = None
        if rng.random() < 0.4:
            classes = {int(i): {b: b // 4 for b in widths[i]} for i in rng.choice(n, 2,
                                                                                   replace=False)}
            exact = _lazy_exact(limit, classes, k)
        budgets.append(Budget(f"b{k}", limit, rows, exact=exact, classes=classes))
    forbid = []
    for _ in range(int(rng.integers(0, 3))):
        i, j = (int(v) for v in rng.choice(n, 2, replace=False))
        forbid.append((i, j, int(rng.choice(widths[i])), int(rng.choice(widths[j]))))
    ties = []
    if rng.random() < 0.15:
        i, j = (int(v) for v in rng.choice(n, 2, replace=False))
        ties.append((i, j))
    best = -10 * math.log10(sum(min(v) for v in noise))
    target = None if (budgets and rng.random() < 0.35) else float(rng.uniform(best - 35, best + 2))
    return AllocationProblem([f"t{i}" for i in range(n)], widths, noise, cost, target_db=target,
                             ties=ties, objective=objective, budgets=budgets, forbid=forbid)


def _check_against_brute_force(p: AllocationProblem, case) -> str:
    want = brute_force(p)
    if want is None:
        with pytest.raises(InfeasibleTargetError):
            solve_milp(p)
        return "infeasible"
    got = solve_milp(p)
    assert p.feasible(got.choice), case
    for b in p.budgets:  # every budget, exactly
        assert b.value(got.widths) <= b.limit, (case, b.name)
    assert not any((i, j, got.widths[i], got.widths[j]) in p.forbidden
                   for i in range(len(got.widths)) for j in range(len(got.widths)) if i != j)
    if p.target_db is not None:
        assert got.cost == pytest.approx(want.cost, rel=1e-9, abs=1e-9), (case, got, want)
    else:
        assert got.noise == pytest.approx(want.noise, rel=1e-6, abs=1e-15), (case, got, want)
    return "feasible"


def test_milp_equals_brute_force_with_hardware_costs_and_budgets():
    """>= 50 feasible random instances (and infeasible ones): same optimum as enumeration."""
    rng = np.random.default_rng(18)
    outcomes = {"feasible": 0, "infeasible": 0}
    lazy_mattered = 0
    for case in range(90):
        p = random_problem(rng)
        outcomes[_check_against_brute_force(p, case)] += 1
        if any(b.exact is not None for b in p.budgets):  # did the lazy check change the answer?
            plain = dataclasses.replace(p, budgets=[dataclasses.replace(b, exact=None,
                                                                        classes=None)
                                                    for b in p.budgets])
            a, b = brute_force(p), brute_force(plain)
            lazy_mattered += (a is None) != (b is None) or (a is not None and a.choice
                                                            != b.choice)
    assert outcomes["feasible"] >= 50 and outcomes["infeasible"] >= 5, outcomes
    assert lazy_mattered >= 3  # the cuts are exercised, not just the linear rows


@st.composite
def small_problems(draw):
    n = draw(st.integers(2, 3))
    widths = [sorted(draw(st.sets(st.integers(2, 8), min_size=1, max_size=4))) for _ in range(n)]
    noise = [[10.0 ** (-(6.0 * b + draw(st.floats(-5, 5))) / 10) for b in w] for w in widths]
    ints = st.integers(0, 50).map(float)

    def terms():
        unary = {i: {b: draw(ints) for b in widths[i]} for i in range(n) if draw(st.booleans())}
        pair = {}
        if draw(st.booleans()):
            i, j = draw(st.permutations(range(n)))[:2]
            pair[(i, j)] = {(a, b): draw(ints) for a in widths[i] for b in widths[j]}
        return Terms(unary, pair, draw(ints))

    budgets = [Budget(f"b{k}", draw(st.integers(0, 150)), [terms() for _ in range(draw(
        st.integers(1, 2)))]) for k in range(draw(st.integers(1, 3)))]
    target = draw(st.one_of(st.none(), st.floats(-10, 60)))
    return AllocationProblem([f"t{i}" for i in range(n)], widths, noise,
                             [[0.0] * len(w) for w in widths], target_db=target,
                             objective=terms(), budgets=budgets)


@settings(max_examples=40)
@given(small_problems())
def test_every_returned_plan_respects_every_budget(p):
    """Whatever the budgets: a returned plan meets each one exactly; an infeasible answer means
    no width combination meets them all (enumeration)."""
    try:
        r = solve_milp(p)
    except InfeasibleTargetError:
        assert brute_force(p) is None
        return
    for b in p.budgets:
        assert b.value(r.widths) <= b.limit
    if p.target_db is not None:
        assert r.noise <= p.noise_budget


# ------------------------------------------------------------------ infeasibility messages
def _two(target=30.0, budgets=()):
    # both tensors at 8 bits are needed for 30 dB (noise 1e-4 + 1e-4 vs 1e-2 at 4 bits)
    return AllocationProblem(["a", "b"], [[4, 8], [4, 8]], [[1e-2, 1e-4], [1e-2, 1e-4]],
                             [[4.0, 8.0], [4.0, 8.0]], target_db=target, budgets=list(budgets))


def _dsp(limit):
    return Budget("dsp", limit, [Terms({0: {4: 1, 8: 10}, 1: {4: 1, 8: 10}})], "DSP slices",
                  "--max-dsp")


def test_budget_no_plan_can_meet_is_named_with_its_least_value():
    with pytest.raises(InfeasibleTargetError,
                       match=r"dsp <= 1 DSP slices \(--max-dsp\) cannot be met by any allowed "
                             r"widths \(the least any plan reaches is 2\)") as e:
        solve_milp(_two(budgets=[_dsp(1)]))
    assert e.value.conflicts == ["dsp <= 1 DSP slices (--max-dsp)"]


def test_budget_conflicting_with_the_target_is_named():
    with pytest.raises(InfeasibleTargetError,
                       match=r"dsp <= 5 .* conflicts with the SQNR target 30\.00 dB \(the least "
                             r"under the target is 20; the best SQNR within the budget is "
                             r"16\.99 dB\)"):
        solve_milp(_two(budgets=[_dsp(5)]))
    assert solve_milp(_two(budgets=[_dsp(20)])).widths == [8, 8]


def test_budgets_conflicting_only_together_are_listed():
    only4 = Budget("x", 0, [Terms({0: {4: 0, 8: 1}})], option="--max-x")
    only8 = Budget("y", 0, [Terms({0: {4: 1, 8: 0}})], option="--max-y")
    with pytest.raises(InfeasibleTargetError,
                       match=r"x <= 0 \(--max-x\), y <= 0 \(--max-y\) cannot all be met "
                             r"together; dropping any one of x <= 0 \(--max-x\), y <= 0 "
                             r"\(--max-y\) makes a plan possible"):
        solve_milp(_two(target=None, budgets=[only4, only8]))


def test_budget_mode_without_target_maximises_sqnr_under_budgets():
    r = solve_milp(_two(target=None, budgets=[_dsp(11)]))
    assert sorted(r.widths) == [4, 8] and r.sqnr_db == pytest.approx(-10 * math.log10(1.01e-2))


def test_forbidden_pair_is_never_chosen_and_bad_terms_are_refused():
    p = AllocationProblem(["w", "a"], [[4, 8], [8, 16]], [[1e-3, 1e-6], [1e-4, 1e-8]],
                          [[0, 0], [0, 0]], target_db=39.0, forbid=[(0, 1, 8, 16)],
                          objective=Terms({}, {(0, 1): {(4, 8): 1, (4, 16): 2, (8, 8): 3}}))
    assert solve_milp(p).widths == [8, 8]
    with pytest.raises(PlanError, match=r"objective: no finite value for 'w' at 8 bits with "
                                        r"'a' at 16 bits"):
        dataclasses.replace(p, forbid=[])
    with pytest.raises(PlanError, match="give an SQNR target, a cost budget or hardware budgets"):
        AllocationProblem(["a"], [[4]], [[0.1]], [[0.0]])
    with pytest.raises(PlanError, match=r"budget 'm': limit must be finite and >= 0, got -1"):
        Budget("m", -1, [Terms()])
    with pytest.raises(PlanError, match="give both exact and classes"):
        Budget("m", 1, [Terms()], exact=lambda w: 0.0)
