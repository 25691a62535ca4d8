"""Which constraints make a budgeted bit-allocation problem infeasible (one line for the user).

When the MILP with an SQNR target and hardware budgets has no solution,
:func:`explain_infeasible` solves smaller exact MILPs to say why:

1. each budget alone (no SQNR target): a budget no allowed widths can meet
   is named with the least value any plan reaches (single-row budgets);
2. the SQNR target alone (the least noisy widths, ties respected);
3. the target with each budget: a budget that conflicts with the target is
   named with the least value under the target and the best SQNR under the
   budget;
4. otherwise the budgets conflict only together: the constraints whose
   removal makes the problem feasible are listed.
"""

from __future__ import annotations

from fxp.errors import InfeasibleTargetError
from fxp.opt.hardware_budgets import Budget
from fxp.opt.problem import AllocationProblem

__all__ = ["explain_infeasible"]

LOW_TARGET_DB = -1000.0
"""A target every width meets (used to minimise one figure with no SQNR constraint)."""


def _sub(p: AllocationProblem, *, target_db=None, budgets=(), objective=None, zero_cost=False):
    cost = [[0.0] * len(w) for w in p.widths] if zero_cost else [list(c) for c in p.cost]
    budget = None if target_db is not None else p.budget
    if target_db is None and budget is None and not budgets:
        target_db = LOW_TARGET_DB
    return AllocationProblem(list(p.names), [list(w) for w in p.widths],
                             [list(v) for v in p.noise], cost, target_db=target_db,
                             budget=budget, pairs=[] if zero_cost else list(p.pairs),
                             ties=list(p.ties), objective=objective, budgets=list(budgets),
                             forbid=list(p.forbid))


def _solve(q: AllocationProblem, solver: str):
    from fxp.opt.solve import solve_milp

    try:
        return solve_milp(q, solver=solver, explain=False)
    except InfeasibleTargetError:
        return None


def _least(p: AllocationProblem, b: Budget, solver: str, target_db=None) -> float | None:
    """Least value of a single-row budget (under ``target_db`` if given), else None."""
    if len(b.rows) != 1 or b.exact is not None:
        return None
    q = _sub(p, target_db=LOW_TARGET_DB if target_db is None else target_db,
             objective=b.rows[0], zero_cost=True)
    r = _solve(q, solver)
    return None if r is None else b.value(r.widths)


def explain_infeasible(p: AllocationProblem, solver: str) -> InfeasibleTargetError:
    """An :class:`InfeasibleTargetError` naming the constraint(s) that cannot be met.

    Attributes set on the error: ``conflicts`` (labels of the named
    constraints) and, with a target, ``target_db``.
    """
    tgt = f"the SQNR target {p.target_db:.2f} dB" if p.target_db is not None else None
    parts, conflicts = [], []
    for b in p.budgets:
        if _solve(_sub(p, budgets=[b], zero_cost=True), solver) is None:
            least = _least(p, b, solver)
            how = f" (the least any plan reaches is {least:,.10g})" if least is not None else \
                f" (at the narrowest allowed widths: {b.value([w[0] for w in p.widths]):,.10g})"
            parts.append(f"{b.label} cannot be met by any allowed widths{how}")
            conflicts.append(b.label)
    if p.budget is not None and not parts:
        q = _sub(p, target_db=LOW_TARGET_DB)
        r = _solve(q, solver)
        if r is not None and r.cost > p.budget:
            parts.append(f"the cost budget {p.budget:g} is below the least cost {r.cost:g}")
            conflicts.append("cost budget")
    if tgt is not None and not parts:
        if _solve(_sub(p, target_db=p.target_db, zero_cost=True), solver) is None:
            parts.append(f"{tgt} is out of reach even without budgets")
            conflicts.append(tgt)
        for b in p.budgets if not parts else ():
            if _solve(_sub(p, target_db=p.target_db, budgets=[b], zero_cost=True),
                      solver) is not None:
                continue
            least = _least(p, b, solver, p.target_db)
            best = _solve(_sub(p, budgets=[b], zero_cost=True), solver)
            how = [f"the least under the target is {least:,.10g}"] if least is not None else []
            if best is not None:
                how.append(f"the best SQNR within the budget is {best.sqnr_db:.2f} dB")
            parts.append(f"{b.label} conflicts with {tgt}" + (f" ({'; '.join(how)})"
                                                                if how else ""))
            conflicts.append(b.label)
    if not parts:
        labels = ([tgt] if tgt else []) + [b.label for b in p.budgets]
        freeing = []
        for k, b in enumerate(p.budgets):
            rest = p.budgets[:k] + p.budgets[k + 1:]
            if _solve(_sub(p, target_db=p.target_db, budgets=rest), solver) is not None:
                freeing.append(b.label)
        if tgt is not None and _solve(_sub(p, budgets=p.budgets), solver) is not None:
            freeing.append(tgt)
        conflicts = freeing or labels
        parts.append(f"{', '.join(labels)} cannot all be met together"
                     + (f"; dropping any one of {', '.join(freeing)} makes a plan possible"
                        if freeing else ""))
    err = InfeasibleTargetError("no plan meets the constraints: " + "; ".join(parts))
    err.conflicts = conflicts
    err.target_db = p.target_db
    return err
