"""Lin et al.'s convex relaxation of bit allocation (continuous widths), solved and re-verified.

:func:`solve_continuous` solves :class:`~fxp.opt.problem.ContinuousProblem`
(an exponential cone: Clarabel, ECOS or SCS) and re-checks the answer;
:func:`lin_closed_form` is the KKT solution without active bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fxp.errors import InfeasibleTargetError, SolverError
from fxp.opt.problem import ContinuousProblem, continuous_problem, import_cvxpy, require_solver

__all__ = ["ContinuousResult", "lin_closed_form", "solve_continuous"]


@dataclass
class ContinuousResult:
    bits: np.ndarray
    cost: float
    noise: float
    status: str
    solver: str


def solve_continuous(p: ContinuousProblem, *, solver: str | None = None) -> ContinuousResult:
    """Lin's convex relaxation (exponential cone), re-verified against the constraint."""
    cp = import_cvxpy()
    name = require_solver("continuous", solver)
    budget = 10.0 ** (-p.target_db / 10.0)
    if p.noise(p.hi) > budget:
        err = InfeasibleTargetError(
            f"target {p.target_db:.2f} dB is out of reach: the maximum widths give "
            f"{-10 * math.log10(p.noise(p.hi)):.2f} dB")
        err.best_sqnr_db = -10 * math.log10(p.noise(p.hi))
        raise err
    prob, b = continuous_problem(p)
    try:
        prob.solve(solver=name)
    except cp.error.SolverError as exc:
        raise SolverError(f"{name} failed on the continuous relaxation: {exc}") from exc
    if prob.status != cp.OPTIMAL:
        raise SolverError(f"{name} returned status {prob.status!r} on the continuous relaxation")
    bits = np.asarray(b.value, float)
    tol = 1e-5
    if (not np.all(np.isfinite(bits)) or np.any(bits < p.lo - tol) or np.any(bits > p.hi + tol)
            or p.noise(bits) > budget * (1 + 1e-4)):
        raise SolverError(f"{name}'s continuous solution does not satisfy the constraints")
    return ContinuousResult(bits, float(p.rho @ bits), p.noise(bits), prob.status, name)


def lin_closed_form(rho, kappa, offset, target_db: float) -> np.ndarray:
    """KKT solution of Lin's relaxation without active bounds.

    Each tensor gets a noise share proportional to ``rho_i / kappa_i``::

        b_i = (target + 10 log10(sum_k rho_k/kappa_k / (rho_i/kappa_i)) - c_i) / kappa_i

    so with equal ``kappa`` and ``c``: ``b_i - b_j = (10/kappa) log10(rho_j/rho_i)``.
    """
    rho, kappa, offset = (np.asarray(v, float) for v in (rho, kappa, offset))
    share = rho / kappa
    return (target_db + 10 * np.log10(share.sum() / share) - offset) / kappa
