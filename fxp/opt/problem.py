"""Bit-allocation problems: data, validation and cvxpy formulations.

An :class:`AllocationProblem` chooses one width per tensor from its allowed
set.  Tensor ``i`` at its ``k``-th allowed width costs ``cost[i][k]`` and adds
``noise[i][k]`` (a noise-to-signal ratio ``1/gamma``, linear) to the output;
by Lin's additivity the output SQNR is ``-10*log10(sum_i noise_i)``.  Bilinear
cost terms ``pairs`` (``MACs * b_w * b_a`` for bit-operations) are products of
the widths of two tensors.

Two modes:

* target: minimise cost subject to ``sum noise <= 10**(-target_db/10)``;
* budget: maximise SQNR (minimise ``sum noise``) subject to ``cost <= budget``
  and/or the hardware budgets.

Hardware budgets (:class:`~fxp.opt.hardware_budgets.Budget`: DSP slices,
LUTs, flash bytes, peak RAM per schedule step, ...) are further linear rows in
either mode; ``objective`` adds a :class:`~fxp.opt.hardware_budgets.Terms`
function of the widths (e.g. a layer's DSP count as a table over its
``(b_w, b_a)`` pairs) to the cost, and ``forbid`` lists width combinations
of two tensors that cannot be chosen together (kernels an MCU lacks).
A budget row whose values are all integers is written ``row <= floor(limit)
+ 0.5`` (exact at every integer point whatever the solver's tolerance);
other rows are tightened by ``RHS_MARGIN`` relative.  Every answer is
re-checked with exact arithmetic (:meth:`AllocationProblem.feasible`).

:func:`milp_problem` builds the exact one-hot MILP (binary ``x[i,k]``, one per
tensor; bilinear terms linearised exactly with continuous ``y[k,m] >= 0``
whose row and column sums equal the two one-hot vectors, which forces
``y[k,m] = x_w[k] * x_a[m]`` at any integer point).  The noise row is
scaled by the noise budget so that it reads ``sum a_ik x_ik <= 1``; widths
whose noise alone exceeds the budget are removed before the solve (so every
coefficient is <= 1) and coefficients below ``1e-9`` are dropped, the
right-hand side being tightened by their largest possible sum (``n * 1e-9``)
and by ``RHS_MARGIN`` (2e-6, above HiGHS's 1e-6 feasibility tolerance):
the coefficient range stays within about 1e9 (HiGHS misbehaves beyond, see
HiGHS #1578) and every MILP-feasible point is feasible for the exact
constraint.  Costs are scaled to a maximum of 1 the same way.

:func:`continuous_problem` builds the convex relaxation of Lin et al. with
Lin's fitted law: minimise ``sum_i rho_i b_i`` subject to
``sum_i exp(-ln(10)/10 * (kappa_i b_i + c_i - target)) <= 1`` (an exponential
cone: Clarabel, SCS or ECOS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fxp.errors import MissingDependencyError, PlanError
from fxp.opt.hardware_budgets import Budget, Terms

__all__ = ["AllocationProblem", "ContinuousProblem", "absorbed_excess", "continuous_problem",
           "import_cvxpy", "milp_problem", "require_solver"]

RHS_MARGIN = 2e-6
"""Relative tightening of the MILP noise row: covers HiGHS's feasibility tolerance (1e-6)."""
DROP_BELOW = 1e-9
"""Scaled noise coefficients below this are dropped from the MILP (RHS tightened)."""

CONTINUOUS_SOLVERS = ("CLARABEL", "ECOS", "SCS")
MILP_SOLVERS = ("HIGHS", "SCIP", "GUROBI", "CPLEX")
_PIP = {"HIGHS": "highspy", "CLARABEL": "clarabel", "ECOS": "ecos", "SCS": "scs",
        "SCIP": "pyscipopt"}


def import_cvxpy():
    """Import cvxpy lazily; a missing package names what to install."""
    try:
        import cvxpy as cp
    except ImportError as exc:  # pragma: no cover - cvxpy is installed in the dev venv
        raise MissingDependencyError("the bit-width optimizer needs cvxpy: pip install cvxpy "
                                     "highspy clarabel") from exc
    return cp


def require_solver(kind: str, preferred: str | None = None) -> str:
    """A solver installed for ``kind`` ("milp" or "continuous"), else MissingDependencyError."""
    cp = import_cvxpy()
    installed = list(cp.installed_solvers())
    wanted = MILP_SOLVERS if kind == "milp" else CONTINUOUS_SOLVERS
    if preferred is not None:
        name = preferred.upper()
        if name not in wanted:
            raise PlanError(f"solver {preferred!r} cannot solve the {kind} problem; use one of "
                            f"{list(wanted)}")
        if name in installed:
            return name
        raise MissingDependencyError(
            f"solver {name} is not installed (pip install {_PIP.get(name, name.lower())}); "
            f"cvxpy.installed_solvers() = {installed}")
    for name in wanted:
        if name in installed:
            return name
    what = ("a mixed-integer solver: pip install highspy" if kind == "milp"
            else "an exponential-cone solver: pip install clarabel")
    raise MissingDependencyError(f"the {kind} bit-allocation problem needs {what} "
                                 f"(cvxpy.installed_solvers() = {installed})")


def _finite(name: str, v: float) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise PlanError(f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(f):
        raise PlanError(f"{name} must be finite, got {v!r}")
    return f


@dataclass
class AllocationProblem:
    """One width per tensor (see the module docstring).

    Attributes
    ----------
    names : list of str
    widths : list of list of int
        Allowed widths per tensor (strictly increasing after validation).
    noise : list of list of float
        ``1/gamma`` per allowed width (>= 0, finite).
    cost : list of list of float
        Linear cost per allowed width (finite).
    target_db : float or None
        Output SQNR target (dB), or None in budget mode.
    budget : float or None
        Cost budget (budget mode).
    pairs : list of (i, j, weight)
        Bilinear cost ``weight * b_i * b_j`` (bit-operations).
    ties : list of (i, j)
        Tensors that must get equal widths.
    objective : Terms, optional
        Added to the cost (hardware cost tables).
    budgets : list of Budget
        Hardware budgets, in both modes; with neither a target nor ``budget``
        the problem maximises SQNR under these.
    forbid : list of (i, j, width_i, width_j)
        Combinations that cannot be chosen together.
    noise_pairs : dict of (i, j) -> array [len(widths[i]), len(widths[j])]
        Pairwise noise terms (``1/gamma`` units, may be negative) added to the total
        noise of a choice: the second-order model ``|sum_i e_i|^2 / |ref|^2`` of
        :mod:`fxp.opt.interactions`.  The MILP keeps them exact through the
        linearised outer products of the one-hot vectors.
    absorption : list of (u, [(i, j, neg), ...])
        Caps on absorbed noise (:meth:`fxp.opt.interactions.Interactions.absorption`):
        tensor ``u``'s negative pair terms ``neg [len(widths[i]), len(widths[j])]``
        (<= 0, ``i < j``, already counted in ``noise_pairs``) are absorbed down to
        ``-noise[u]`` and no further: a choice's noise adds
        ``max(0, -noise[u][k_u] - sum neg[k_i, k_j])`` per entry.  The MILP holds it
        with one continuous variable per entry.
    """

    names: list[str]
    widths: list[list[int]]
    noise: list[list[float]]
    cost: list[list[float]]
    target_db: float | None = None
    budget: float | None = None
    pairs: list[tuple[int, int, float]] = field(default_factory=list)
    ties: list[tuple[int, int]] = field(default_factory=list)
    objective: Terms | None = None
    budgets: list[Budget] = field(default_factory=list)
    forbid: list[tuple[int, int, int, int]] = field(default_factory=list)
    noise_pairs: dict = field(default_factory=dict)
    absorption: list = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise PlanError("the allocation problem has no tensors")
        if len(set(self.names)) != n:
            raise PlanError(f"duplicate tensor names in {self.names}")
        if not (len(self.widths) == len(self.noise) == len(self.cost) == n):
            raise PlanError("names, widths, noise and cost must have one entry per tensor")
        for (i, j), m in self.noise_pairs.items():
            m = np.asarray(m, float)
            if not (0 <= i < n and 0 <= j < n) or i == j or \
                    m.shape != (len(self.widths[i]), len(self.widths[j])):
                raise PlanError(f"pairwise noise ({i}, {j}) is invalid (shape {m.shape})")
            if not np.all(np.isfinite(m)):
                raise PlanError(f"pairwise noise ({i}, {j}) must be finite")
        self.absorption = [(int(u), [(int(i), int(j), np.asarray(m, float)) for i, j, m in t])
                           for u, t in self.absorption]
        for u, terms in self.absorption:
            for i, j, m in terms:
                if not (0 <= u < n and 0 <= i < j < n) or \
                        m.shape != (len(self.widths[i]), len(self.widths[j])):
                    raise PlanError(f"absorption cap of tensor {u}: pair ({i}, {j}) is invalid "
                                    f"(shape {m.shape})")
                if not np.all(np.isfinite(m)) or np.any(m > 0):
                    raise PlanError(f"absorption cap of tensor {u}: the terms of pair ({i}, {j})"
                                    " must be finite and <= 0")
        for i, name in enumerate(self.names):
            w = [int(b) for b in self.widths[i]]
            if not w:
                raise PlanError(f"tensor {name!r} has no allowed width")
            if any(b < 1 for b in w) or len(set(w)) != len(w):
                raise PlanError(f"tensor {name!r}: widths must be distinct integers >= 1, got {w}")
            if not (len(self.noise[i]) == len(self.cost[i]) == len(w)):
                raise PlanError(f"tensor {name!r}: one noise and one cost value per width")
            order = np.argsort(w, kind="stable")
            for (a, b), m in list(self.noise_pairs.items()):  # follow the sorted widths
                if a == i:
                    self.noise_pairs[(a, b)] = np.asarray(m, float)[order, :]
                if b == i:
                    self.noise_pairs[(a, b)] = np.asarray(self.noise_pairs[(a, b)], float)[:, order]
            for _, terms in self.absorption:
                for k, (a, b, m) in enumerate(terms):
                    terms[k] = (a, b, m[order, :] if a == i else m[:, order] if b == i else m)
            nz = [_finite(f"noise of {name!r}", self.noise[i][k]) for k in order]
            if any(v < 0 for v in nz):
                raise PlanError(f"tensor {name!r}: noise values must be >= 0")
            self.widths[i] = [w[k] for k in order]
            self.noise[i] = nz
            self.cost[i] = [_finite(f"cost of {name!r}", self.cost[i][k]) for k in order]
        if self.target_db is not None and self.budget is not None:
            raise PlanError("give an SQNR target or a cost budget, not both")
        if self.target_db is None and self.budget is None and not self.budgets:
            raise PlanError("give an SQNR target, a cost budget or hardware budgets")
        if self.target_db is not None:
            self.target_db = _finite("target SQNR (dB)", self.target_db)
        if self.budget is not None:
            self.budget = _finite("cost budget", self.budget)
            if self.budget < 0:
                raise PlanError(f"the cost budget must be >= 0, got {self.budget}")
        for i, j, wgt in self.pairs:
            if not (0 <= i < n and 0 <= j < n) or i == j:
                raise PlanError(f"bilinear cost pair ({i}, {j}) is invalid")
            _finite("bilinear cost weight", wgt)
        for i, j in self.ties:
            if not (0 <= i < n and 0 <= j < n):
                raise PlanError(f"tie ({i}, {j}) names an unknown tensor")
        for f in self.forbid:
            if len(f) != 4 or not (0 <= f[0] < n and 0 <= f[1] < n) or f[0] == f[1]:
                raise PlanError(f"forbidden combination {f!r} is invalid")
        fset = self.forbidden
        if self.objective is not None:
            self.objective.check(self.widths, self.names, fset, "objective")
        for bud in self.budgets:
            if not isinstance(bud, Budget):
                raise PlanError(f"budgets must be Budget objects, got {type(bud).__name__}")
            for r in bud.rows:
                r.check(self.widths, self.names, fset, f"budget {bud.name!r}")

    @property
    def forbidden(self) -> set:
        """``forbid`` as a set, both orders: ``(i, j, b_i, b_j)``."""
        return {(int(i), int(j), int(a), int(b)) for i, j, a, b in self.forbid} | \
            {(int(j), int(i), int(b), int(a)) for i, j, a, b in self.forbid}

    # --------------------------------------------------------------- exact model
    @property
    def noise_budget(self) -> float:
        """``10**(-target/10)``."""
        return 10.0 ** (-self.target_db / 10.0)

    def choice_of(self, widths: dict[str, int] | list[int]) -> list[int]:
        """Indices into each tensor's width list for a width assignment."""
        ws = [widths[nm] for nm in self.names] if isinstance(widths, dict) else list(widths)
        out = []
        for i, b in enumerate(ws):
            if int(b) not in self.widths[i]:
                raise PlanError(f"width {b} is not allowed for {self.names[i]!r}: "
                                f"{self.widths[i]}")
            out.append(self.widths[i].index(int(b)))
        return out

    def evaluate(self, choice: list[int]) -> tuple[float, float]:
        """Exact ``(cost, total noise)`` of a choice (Python floats, fsum)."""
        c = [self.cost[i][k] for i, k in enumerate(choice)]
        for i, j, wgt in self.pairs:
            c.append(wgt * self.widths[i][choice[i]] * self.widths[j][choice[j]])
        if self.objective is not None:
            c.append(self.objective.value(self.widths_of(choice)))
        noise = [self.noise[i][k] for i, k in enumerate(choice)]
        noise += [float(m[choice[i], choice[j]]) for (i, j), m in self.noise_pairs.items()]
        noise.append(absorbed_excess(choice, self.noise, self.absorption))
        return math.fsum(c), math.fsum(noise)

    def widths_of(self, choice: list[int]) -> list[int]:
        """Widths (bits) of a choice."""
        return [self.widths[i][k] for i, k in enumerate(choice)]

    def violated(self, choice: list[int], *, lazy: bool = True) -> list[Budget]:
        """Budgets the choice exceeds (exact arithmetic; ``lazy=False``: linear rows only)."""
        w = self.widths_of(choice)
        return [b for b in self.budgets
                if (b.value(w) if lazy else b.linear_value(w)) > b.limit]

    def feasible(self, choice: list[int], rel_tol: float = 0.0, *, lazy: bool = True) -> bool:
        """Every constraint, checked with exact Python arithmetic.

        ``lazy=False`` skips the budgets' ``exact`` evaluators (the solver
        checks those separately, adding cuts).
        """
        if len(choice) != len(self.names):
            return False
        for i, k in enumerate(choice):
            if not (isinstance(k, int) and 0 <= k < len(self.widths[i])):
                return False
        for i, j in self.ties:
            if self.widths[i][choice[i]] != self.widths[j][choice[j]]:
                return False
        fset = self.forbidden
        w = self.widths_of(choice)
        if fset and any((i, j, w[i], w[j]) in fset for i in range(len(w))
                        for j in range(len(w)) if i != j):
            return False
        if self.violated(choice, lazy=lazy):
            return False
        cost, noise = self.evaluate(choice)
        if self.target_db is not None:
            return noise <= self.noise_budget * (1 + rel_tol)
        if self.budget is None:
            return True
        return cost <= self.budget * (1 + rel_tol) + rel_tol

    def best_noise(self) -> float:
        """Smallest total noise ignoring ties (a bound on the best reachable SQNR; with
        pairwise terms, each pair's least term is added: still a lower bound)."""
        return max(0.0, math.fsum([min(v) for v in self.noise]
                                  + [float(np.min(m)) for m in self.noise_pairs.values()]))

    @staticmethod
    def sqnr_db(noise: float) -> float:
        return math.inf if noise == 0 else -10.0 * math.log10(noise)


def milp_problem(p: AllocationProblem, cuts=()):
    """cvxpy one-hot MILP for ``p``; returns ``(problem, x_list, allowed_index_lists, info)``.

    ``allowed_index_lists[i]`` maps the columns of ``x_list[i]`` to indices of
    ``p.widths[i]`` (widths infeasible on their own are removed in target mode).
    ``cuts`` are :meth:`~fxp.opt.hardware_budgets.Budget.cut` results: each
    excludes one combination of width classes.
    """
    cp = import_cvxpy()
    n = len(p.names)
    keep = []
    for i in range(n):
        if p.target_db is not None and not p.noise_pairs:  # pairs may cancel a unary term
            idx = [k for k, v in enumerate(p.noise[i]) if v <= p.noise_budget]
        else:
            idx = list(range(len(p.widths[i])))
        keep.append(idx)
    if any(not k for k in keep):
        return None, None, keep, {"trivially_infeasible": True}
    kw = [[p.widths[i][k] for k in kk] for i, kk in enumerate(keep)]  # kept widths
    xs = [cp.Variable(len(k), boolean=True, name=f"x{i}") for i, k in enumerate(keep)]
    cons = [cp.sum(x) == 1 for x in xs]
    ys = {}

    def y_of(i: int, j: int):
        """Linearised outer product of the one-hot vectors of tensors i and j."""
        if (i, j) not in ys:
            y = cp.Variable((len(keep[i]), len(keep[j])), nonneg=True)
            cons.extend([cp.sum(y, axis=1) == xs[i], cp.sum(y, axis=0) == xs[j]])
            ys[(i, j)] = y
        return ys[(i, j)]

    fset = p.forbidden

    def expr(t: Terms, scale: float = 1.0):
        parts = []
        for i, tab in t.unary.items():
            c = np.array([tab[b] for b in kw[i]], float) / scale
            if np.any(c != 0):
                parts.append(c @ xs[i])
        for (i, j), tab in t.pair.items():
            m = np.array([[0.0 if (i, j, a, b) in fset else tab[(a, b)] for b in kw[j]]
                          for a in kw[i]]) / scale
            if np.any(m != 0):
                parts.append(cp.sum(cp.multiply(m, y_of(i, j))))
        return cp.sum(cp.hstack(parts)) if parts else None

    # linear cost, scaled to max |c| = 1
    scale_parts = []
    for i, k in enumerate(keep):
        scale_parts += [abs(p.cost[i][j]) for j in k]
    for i, j, wgt in p.pairs:
        scale_parts += [abs(wgt) * a * b for a in kw[i] for b in kw[j]]
    if p.objective is not None:
        scale_parts += [abs(v) for v in p.objective.coefficients()]
    cscale = max(scale_parts + [0.0]) or 1.0
    lin_terms = []
    for i, k in enumerate(keep):
        c = np.array([p.cost[i][j] for j in k]) / cscale
        if np.any(c != 0):
            lin_terms.append(c @ xs[i])
    for i, j, wgt in p.pairs:
        wi, wj = np.array(kw[i], float), np.array(kw[j], float)
        lin_terms.append(cp.sum(cp.multiply(wgt * np.outer(wi, wj) / cscale, y_of(i, j))))
    if p.objective is not None:
        e = expr(p.objective, cscale)
        if e is not None:
            lin_terms.append(e)
    cost_expr = cp.sum(cp.hstack(lin_terms)) if lin_terms else cp.Constant(0.0)
    for i, j in p.ties:
        wi, wj = np.array(kw[i], float), np.array(kw[j], float)
        cons.append(wi @ xs[i] == wj @ xs[j])
    for i, j, a, b in p.forbid:
        if a in kw[i] and b in kw[j]:
            cons.append(xs[i][kw[i].index(a)] + xs[j][kw[j].index(b)] <= 1)
    for bud in p.budgets:
        for row in bud.rows:
            rhs = bud.limit - row.constant
            rhs = math.floor(rhs + 1e-9) + 0.5 if row.integral else \
                rhs - RHS_MARGIN * max(1.0, abs(rhs))
            _fix_over_budget(row, rhs, kw, fset, xs, y_of, cons)
            e = expr(row)
            if e is not None:
                cons.append(e <= rhs)
            elif rhs < 0:  # a constant row above its limit
                cons.append(cp.sum(xs[0]) <= 0)
    for groups in cuts:
        parts = [cp.sum(cp.hstack([xs[i][kw[i].index(b)] for b in ws if b in kw[i]]))
                 for i, ws in groups if any(b in kw[i] for b in ws)]
        if len(parts) == len(groups):  # else the combination is impossible anyway
            cons.append(cp.sum(cp.hstack(parts)) <= len(groups) - 1)
    info = {"cost_scale": cscale, "dropped": 0}
    if p.target_db is not None:
        nb = p.noise_budget
        rows, dropped = [], 0
        for i, k in enumerate(keep):
            a = np.array([p.noise[i][j] for j in k]) / nb
            small = a < DROP_BELOW
            dropped += int(small.any())
            a = np.where(small, 0.0, a)
            if np.any(a != 0):
                rows.append(a @ xs[i])
        for (i, j), m in p.noise_pairs.items():  # exact: y_of(i, j) is x_i x_j^T
            sub = np.asarray(m, float)[np.ix_(keep[i], keep[j])] / nb
            if np.any(sub != 0):
                rows.append(cp.sum(cp.multiply(sub, y_of(i, j))))
        rows += _absorption_excess(p, keep, xs, y_of, cons, nb)
        rhs = 1.0 - DROP_BELOW * dropped - RHS_MARGIN
        info["dropped"] = dropped
        if rows:
            cons.append(cp.sum(cp.hstack(rows)) <= rhs)
        prob = cp.Problem(cp.Minimize(cost_expr), cons)
    else:
        if p.budget is not None:
            cons.append(cost_expr <= p.budget / cscale)
        # scale by the least reachable noise: the optimum is O(1) and HiGHS's absolute
        # tolerances (1e-6 .. 1e-9) do not swallow differences between choices
        nscale = p.best_noise() or math.fsum(min(v) for v in p.noise) or 1.0
        noise_parts = [np.array([p.noise[i][j] for j in k]) / nscale @ xs[i]
                       for i, k in enumerate(keep)]
        noise_parts += [cp.sum(cp.multiply(np.asarray(m, float)[np.ix_(keep[i], keep[j])]
                                           / nscale, y_of(i, j)))
                        for (i, j), m in p.noise_pairs.items()]
        noise_parts += _absorption_excess(p, keep, xs, y_of, cons, nscale)
        noise_expr = cp.sum(cp.hstack(noise_parts))
        info["noise_scale"] = nscale
        prob = cp.Problem(cp.Minimize(noise_expr), cons)
    return prob, xs, keep, info


def absorbed_excess(choice: list[int], unary: list[list[float]], caps: list) -> float:
    """``sum_u max(0, -unary[u][choice[u]] - sum of u's negative terms at choice)`` (fsum):
    what the caps on absorbed noise (:attr:`AllocationProblem.absorption`,
    :meth:`fxp.opt.interactions.Interactions.absorption`) add to the sum of a choice's
    noise terms."""
    out = []
    for u, terms in caps:
        absorbed = math.fsum(float(m[choice[i], choice[j]]) for i, j, m in terms)
        out.append(max(0.0, -unary[u][choice[u]] - absorbed))
    return math.fsum(out)


def _absorption_excess(p: AllocationProblem, keep, xs, y_of, cons, scale: float) -> list:
    """One variable ``z_u >= 0`` per :attr:`AllocationProblem.absorption` entry with
    ``z_u >= -noise_u(x_u) - sum neg (.) y``, all divided by ``scale``: the noise row (or
    objective) minimises it, so at an optimum ``z_u = max(0, ...)``, the exact excess of
    :meth:`AllocationProblem.evaluate` (any larger ``z_u`` only over-counts noise)."""
    cp = import_cvxpy()
    out = []
    for u, terms in p.absorption:
        z = cp.Variable(nonneg=True)
        parts = [np.array([p.noise[u][k] for k in keep[u]]) / scale @ xs[u]]
        parts += [cp.sum(cp.multiply(m[np.ix_(keep[i], keep[j])] / scale, y_of(i, j)))
                  for i, j, m in terms]
        cons.append(z >= -cp.sum(cp.hstack(parts)))
        out.append(z)
    return out


def _fix_over_budget(row: Terms, rhs: float, kw, fset, xs, y_of, cons) -> None:
    """Fix to 0 the widths (pairs of widths) that exceed ``rhs`` whatever the other terms.

    With every other term at its least value, an entry ``v`` with ``v - min
    > rhs - sum of the minima`` cannot be part of a feasible point; fixing it
    removes nothing feasible and tightens the LP relaxation (a DSP budget
    rules out LUT-heavy widths at once).
    """
    mins = {}
    for i, tab in row.unary.items():
        mins[("u", i)] = min(tab[b] for b in kw[i])
    for (i, j), tab in row.pair.items():
        vals = [tab[(a, b)] for a in kw[i] for b in kw[j] if (i, j, a, b) not in fset]
        mins[("p", i, j)] = min(vals) if vals else 0.0
    slack = rhs - math.fsum(mins.values())
    for i, tab in row.unary.items():
        for k, b in enumerate(kw[i]):
            if tab[b] - mins[("u", i)] > slack:
                cons.append(xs[i][k] == 0)
    for (i, j), tab in row.pair.items():
        m = mins[("p", i, j)]
        mask = np.array([[1.0 if (i, j, a, b) not in fset and tab[(a, b)] - m > slack else 0.0
                          for b in kw[j]] for a in kw[i]])
        if mask.any():
            cp = import_cvxpy()
            cons.append(cp.sum(cp.multiply(mask, y_of(i, j))) == 0)


@dataclass
class ContinuousProblem:
    """Lin's relaxation: minimise ``sum rho_i b_i`` s.t. ``sum 10**(-(kappa_i b_i + c_i)/10) <=
    10**(-target/10)``, ``lo_i <= b_i <= hi_i``."""

    names: list[str]
    rho: np.ndarray
    kappa: np.ndarray
    offset: np.ndarray
    target_db: float
    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise PlanError("the allocation problem has no tensors")
        self.target_db = _finite("target SQNR (dB)", self.target_db)
        for attr in ("rho", "kappa", "offset", "lo", "hi"):
            v = np.asarray(getattr(self, attr), np.float64).reshape(-1)
            if v.shape != (n,):
                raise PlanError(f"{attr} must have one value per tensor ({n}), got {v.shape}")
            if not np.all(np.isfinite(v)):
                raise PlanError(f"{attr} must be finite, got {v}")
            setattr(self, attr, v)
        if np.any(self.kappa <= 0):
            raise PlanError(f"kappa must be > 0 dB/bit, got {self.kappa}")
        if np.any(self.rho < 0):
            raise PlanError("costs rho must be >= 0")
        if np.any(self.lo > self.hi):
            bad = [self.names[i] for i in np.flatnonzero(self.lo > self.hi)]
            raise PlanError(f"min bits > max bits for {bad}")

    def noise(self, b: np.ndarray) -> float:
        """``sum 10**(-(kappa b + c)/10)`` (linear)."""
        return math.fsum(10.0 ** (-(self.kappa * np.asarray(b, float) + self.offset) / 10.0))


def continuous_problem(p: ContinuousProblem):
    """cvxpy model of ``p`` (noise row scaled by the budget); returns ``(problem, b)``."""
    cp = import_cvxpy()
    a = math.log(10.0) / 10.0
    b = cp.Variable(len(p.names), name="bits")
    rs = p.rho / (p.rho.max() or 1.0)
    cons = [cp.sum(cp.exp(-a * (cp.multiply(p.kappa, b) + p.offset - p.target_db))) <= 1,
            b >= p.lo, b <= p.hi]
    return cp.Problem(cp.Minimize(rs @ b), cons), b
