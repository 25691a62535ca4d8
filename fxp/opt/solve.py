"""Solvers for bit allocation, their independent re-verification, and :func:`optimize_bits`.

Nothing a solver returns is trusted: the status must be exactly ``optimal``
(``optimal_inaccurate``, ``user_limit``, ``infeasible_inaccurate`` ... are
failures), the one-hot variables are rounded to integers, and every
constraint is re-checked with exact Python arithmetic
(:meth:`~fxp.opt.problem.AllocationProblem.feasible`).  A failed check is
retried once with HiGHS presolve off, then raises :class:`SolverError`.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from fxp.errors import InfeasibleTargetError, PlanError, SolverError
from fxp.opt.problem import (
    AllocationProblem,
    ContinuousProblem,
    continuous_problem,
    import_cvxpy,
    milp_problem,
    require_solver,
)

__all__ = ["BitAllocation", "MilpResult", "allocation_problem", "brute_force", "lin_closed_form",
           "optimize_bits", "solve_continuous", "solve_milp"]

COSTS = ("weight_memory", "activation_memory", "bitops")


@contextlib.contextmanager
def _quiet_stdout(enabled: bool):
    """Silence file descriptor 1 (HiGHS prints a banner from C on every ``Highs()``)."""
    if not enabled:
        yield
        return
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no real fd 1 (embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@dataclass
class MilpResult:
    """A verified choice: indices into each tensor's widths, widths, exact cost and noise."""

    choice: list[int]
    widths: list[int]
    cost: float
    noise: float
    status: str
    solver: str
    solve_time_s: float = 0.0

    @property
    def sqnr_db(self) -> float:
        return AllocationProblem.sqnr_db(self.noise)


def _infeasible(p: AllocationProblem, best_noise: float) -> InfeasibleTargetError:
    best = AllocationProblem.sqnr_db(best_noise)
    err = InfeasibleTargetError(
        f"target {p.target_db:.2f} dB is out of reach: the best output SQNR the allowed widths "
        f"give is {best:.2f} dB (every tensor at its least noisy allowed width)")
    err.best_sqnr_db = best
    err.target_db = p.target_db
    return err


def _best_with_ties(p: AllocationProblem, solver: str) -> float:
    """Least total noise subject to the ties (a noise-minimising MILP)."""
    if not p.ties:
        return p.best_noise()
    q = AllocationProblem(list(p.names), [list(w) for w in p.widths], [list(v) for v in p.noise],
                          [[0.0] * len(w) for w in p.widths], budget=0.0, ties=list(p.ties))
    return solve_milp(q, solver=solver).noise


def solve_milp(p: AllocationProblem, *, solver: str | None = None,
               time_limit_s: float | None = None, verbose: bool = False) -> MilpResult:
    """Exact one-hot MILP (HiGHS through cvxpy by default), re-verified.

    Raises
    ------
    InfeasibleTargetError
        The target cannot be met (``best_sqnr_db`` attribute: the best reachable SQNR).
    SolverError
        The solver failed or its answer did not verify.
    MissingDependencyError
        No MILP solver is installed.
    """
    cp = import_cvxpy()
    name = require_solver("milp", solver)
    if p.target_db is not None and p.best_noise() > p.noise_budget:
        raise _infeasible(p, p.best_noise())
    t0 = time.perf_counter()
    prob, xs, keep, info = milp_problem(p)
    if prob is None:
        raise _infeasible(p, p.best_noise())
    attempts = [{}, {"presolve": "off"}] if name == "HIGHS" else [{}]
    last = "no attempt"
    for extra in attempts:
        opts = dict(extra)
        if name == "HIGHS":
            opts.update(mip_rel_gap=0.0, mip_abs_gap=0.0)
            if time_limit_s is not None:
                opts["time_limit"] = float(time_limit_s)
        try:
            with _quiet_stdout(not verbose):
                prob.solve(solver=name, verbose=verbose, **opts)
        except cp.error.SolverError as exc:
            last = f"solver error: {exc}"
            continue
        status = prob.status
        if status == cp.INFEASIBLE:
            if p.target_db is not None:
                raise _infeasible(p, _best_with_ties(p, solver=name))
            raise InfeasibleTargetError(f"no allocation fits the cost budget {p.budget:g}")
        if status != cp.OPTIMAL:
            last = f"status {status!r}"
            continue
        choice = []
        for x, k in zip(xs, keep, strict=True):
            if x.value is None:
                choice = None
                break
            v = np.asarray(x.value, float)
            if not np.all(np.isfinite(v)) or np.max(np.abs(v - np.round(v))) > 1e-4:
                choice = None
                break
            j = int(np.argmax(v))
            if int(round(v.sum())) != 1:
                choice = None
                break
            choice.append(int(k[j]))
        if choice is None or not p.feasible(choice):
            last = "the returned point did not verify (integrality or constraints)"
            continue
        cost, noise = p.evaluate(choice)
        return MilpResult(choice, [p.widths[i][k] for i, k in enumerate(choice)], cost, noise,
                          status, name, time.perf_counter() - t0)
    raise SolverError(f"{name} did not return a verified optimum ({last})")


def brute_force(p: AllocationProblem) -> MilpResult | None:
    """Enumerate every choice (small problems only); None when nothing is feasible.

    Ties between equal-cost optima are broken by the smaller noise.
    """
    best = None
    for choice in product(*[range(len(w)) for w in p.widths]):
        choice = list(choice)
        if not p.feasible(choice):
            continue
        cost, noise = p.evaluate(choice)
        obj = (cost, noise) if p.target_db is not None else (noise, cost)
        if best is None or obj < best[0]:
            best = (obj, choice, cost, noise)
    if best is None:
        return None
    _, choice, cost, noise = best
    return MilpResult(choice, [p.widths[i][k] for i, k in enumerate(choice)], cost, noise,
                      "optimal", "enumeration")


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


# ------------------------------------------------------------------ from a network
def _allowed(table, min_bits, max_bits, allowed) -> list[list[int]]:
    def per(v, name, default):
        if isinstance(v, dict):
            return v.get(name, default)
        return default if v is None else v

    out = []
    for t in table.tensors:
        lo = per(min_bits, t.name, min(table.widths))
        hi = per(max_bits, t.name, max(table.widths))
        wlo, whi = min(table.widths), max(table.widths)
        for what, v in (("min_bits", lo), ("max_bits", hi)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise PlanError(f"{what} for {t.name!r} must be an integer, got {v!r}")
            if not wlo <= v <= whi:  # never narrowed silently into the measured range
                raise PlanError(f"{what}={v} for {t.name!r} is outside the measured widths "
                                f"{wlo}..{whi}")
        if lo > hi:
            raise PlanError(f"min_bits {lo} > max_bits {hi} for tensor {t.name!r}")
        cand = [int(b) for b in per(allowed, t.name, table.widths)]
        ws = sorted({b for b in cand if lo <= b <= hi})
        missing = sorted({b for b in cand if b not in table.widths})
        if missing:
            raise PlanError(f"widths {missing} for {t.name!r} were not measured "
                            f"(measured: {list(table.widths)})")
        if not ws:
            raise PlanError(f"tensor {t.name!r} has no allowed width in [{lo}, {hi}]")
        out.append(ws)
    return out


def allocation_problem(table, *, target_db: float | None = None, budget: float | None = None,
                       cost: str | dict = "weight_memory", min_bits=None, max_bits=None,
                       allowed=None, ties=(), tie_layers: bool = False,
                       correction_db: float = 0.0) -> AllocationProblem:
    """The MILP data for a measured :class:`~fxp.opt.noise.NoiseTable`.

    Parameters
    ----------
    cost : {"weight_memory", "activation_memory", "bitops"} or dict
        ``weight_memory`` = sum weights_i * b_i (bits); ``activation_memory`` =
        sum elements_i * b_i over activations (bits per sample); ``bitops`` =
        sum over layers MACs * b_w * b_a (b_a: the width of the layer's input);
        a dict ``{tensor: {width: cost}}`` is a user table (tensors not listed cost 0).
    min_bits, max_bits : int or dict tensor -> int
    allowed : list of int or dict tensor -> list of int
        Allowed widths (e.g. ``[8, 16]`` for an MCU).
    ties : iterable of (tensor, tensor)
        Tensors forced to equal widths.
    tie_layers : bool
        Tie each layer's weights to its input activation.
    correction_db : float
        Added to the additive prediction (the model's calibrated bias): the
        constraint becomes ``predicted + correction >= target``.
    """
    names = table.names
    if target_db is not None:
        try:
            if not math.isfinite(float(target_db)):
                raise PlanError(f"target SQNR must be finite, got {target_db!r}")
        except (TypeError, ValueError):
            raise PlanError(f"target SQNR must be a number, got {target_db!r}") from None
    ws = _allowed(table, min_bits, max_bits, allowed)
    nm = table.noise_matrix()
    noise = [[float(nm[i, table.widths.index(b)]) for b in w] for i, w in enumerate(ws)]
    pairs = []
    if isinstance(cost, dict):
        unknown = sorted(set(cost) - set(names))
        if unknown:
            raise PlanError(f"cost table names unknown tensors {unknown}; tensors: {names}")
        costs = []
        for t, w in zip(table.tensors, ws, strict=True):
            row = cost.get(t.name, {})
            try:
                costs.append([float(row[b]) if b in row else float(row[str(b)]) if row else 0.0
                              for b in w])
            except KeyError as exc:
                raise PlanError(f"cost table for {t.name!r} has no entry for width {exc}") from None
    elif cost == "weight_memory":
        costs = [[float(t.size * b) if t.kind == "weight" else 0.0 for b in w]
                 for t, w in zip(table.tensors, ws, strict=True)]
    elif cost == "activation_memory":
        costs = [[float(t.size * b) if t.kind == "act" else 0.0 for b in w]
                 for t, w in zip(table.tensors, ws, strict=True)]
    elif cost == "bitops":
        costs = [[0.0] * len(w) for w in ws]
        act_of = {}
        for i, t in enumerate(table.tensors):
            for c in t.consumers:
                act_of[c] = i
        for i, t in enumerate(table.tensors):
            if t.kind == "weight" and t.layer in act_of:
                pairs.append((i, act_of[t.layer], float(t.macs)))
    else:
        raise PlanError(f"unknown cost {cost!r}; use one of {COSTS} or a table")
    tie_idx = []
    for a, b in ties:
        if a not in names or b not in names:
            raise PlanError(f"tie ({a!r}, {b!r}) names an unknown tensor; tensors: {names}")
        tie_idx.append((names.index(a), names.index(b)))
    if tie_layers:
        for i, t in enumerate(table.tensors):
            for c in t.consumers:
                tie_idx.append((i, names.index(f"{c}.weight")))
    tgt = None if target_db is None else float(target_db) - correction_db
    return AllocationProblem(list(names), ws, noise, costs, target_db=tgt, budget=budget,
                             pairs=pairs, ties=tie_idx)


@dataclass
class BitAllocation:
    """Result of :func:`optimize_bits` (fields in the style of scipy's OptimizeResult)."""

    success: bool
    status: str
    message: str
    plan: object
    widths: dict[str, int]
    predicted_sqnr_db: float
    measured_sqnr_db: float | None
    cost: float
    cost_name: str
    solver: str
    target_sqnr_db: float | None
    solve_time_s: float = 0.0
    total_time_s: float = 0.0
    float_top1: float | None = None
    fixed_top1: float | None = None
    n_eval: int = 0
    weight_memory_bits: int = 0
    acc_bits: dict[str, int] = field(default_factory=dict)
    iterations: int = 1
    correction_db: float = 0.0
    noise_table: object = field(default=None, repr=False)

    def __getitem__(self, key):
        return getattr(self, key)

    def table_rows(self) -> list[dict]:
        """Per tensor: kind, layer, width, kappa, predicted SQNR contribution."""
        rows = []
        nt = self.noise_table
        for i, t in enumerate(nt.tensors):
            b = self.widths[t.name]
            s = nt.sqnr_db[i, nt.widths.index(b)]
            rows.append({"tensor": t.name, "kind": t.kind, "layer": t.layer or "(input)",
                         "bits": b, "kappa": round(float(nt.kappa[i]), 2),
                         "sqnr_db": round(float(s), 2) if math.isfinite(s) else str(s),
                         "acc_bits": self.acc_bits.get(t.layer) if t.kind == "weight" else None})
        return rows

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in (
            "success", "status", "message", "widths", "predicted_sqnr_db", "measured_sqnr_db",
            "cost", "cost_name", "solver", "target_sqnr_db", "solve_time_s", "total_time_s",
            "float_top1", "fixed_top1", "n_eval", "weight_memory_bits", "acc_bits", "iterations",
            "correction_db")}
        d["tensors"] = self.table_rows()
        for k, v in list(d.items()):
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = str(v)
        return d


def weight_memory_bits(table, widths: dict[str, int]) -> int:
    return int(sum(t.size * widths[t.name] for t in table.tensors if t.kind == "weight"))


def optimize_bits(graph, data, target_sqnr_db: float | None = None, cost="weight_memory", *,
                  budget: float | None = None, widths=range(2, 17), min_bits=None,
                  max_bits=None, allowed=None, ties=(), tie_layers: bool = False,
                  calib: int = 1000, eval_data=None, n_measure: int | None = 256,
                  method: str = "minmax", rounding: str = "half_up", correction_db: float = 0.0,
                  verify: bool = True, tolerance_db: float = 0.25, max_refine: int = 3,
                  noise_table=None, solver: str | None = None, n_eval: int | None = None,
                  weight_method: str = "sqnr") -> BitAllocation:
    """Cheapest per-tensor widths whose output SQNR meets ``target_sqnr_db``.

    Parameters
    ----------
    graph : Graph
        Canonical graph (:func:`fxp.workflow.load_model`).
    data : fxp.workflow.Data, ``(x, y)`` or array x [N, ...]
        The first ``calib`` samples calibrate the formats and measure the noise;
        the rest (or ``eval_data``, a Data or ``(x, y)``) is held out for the
        integer-engine measurement.  Without held-out samples the calibration
        set is used (the message says so).
    target_sqnr_db : float
        Output (logits) SQNR target in dB; or give ``budget`` (max SQNR under
        a cost budget) instead.
    cost : {"weight_memory", "activation_memory", "bitops"} or dict tensor -> {width: cost}
    verify : bool
        Measure the plan with the integer engine; when the measurement falls
        more than ``tolerance_db`` below the target, the internal target is
        raised by the shortfall and the MILP re-solved (at most ``max_refine``
        times).  ``success`` is True when the measured SQNR >= target - 0.5 dB.
    method : {"minmax", "percentile", "mse"}
        Activation range estimation (:func:`fxp.plan.ptq.ptq_pow2`).
    weight_method : {"sqnr", "minmax", "percentile", "mse"}
        Weight range estimation; ``"sqnr"`` keeps, per width, the clip with
        the best measured output SQNR (:mod:`fxp.opt.noise`).
    noise_table : NoiseTable, optional
        A table measured before (e.g. for another target) with the same
        calibration samples; skips the measurement.
    """
    from fxp.opt.model import plan_for_widths, predict_sqnr_db
    from fxp.opt.noise import measure_noise
    from fxp.sim.evaluate import simulate

    t_start = time.perf_counter()
    if (target_sqnr_db is None) == (budget is None):
        raise PlanError("give exactly one of target_sqnr_db and budget")
    if target_sqnr_db is not None:
        try:
            tval = float(target_sqnr_db)
        except (TypeError, ValueError):
            raise PlanError(f"target SQNR must be a number, got {target_sqnr_db!r}") from None
        if not math.isfinite(tval):
            raise PlanError(f"target SQNR must be finite, got {target_sqnr_db!r}")
    if isinstance(data, tuple):
        x, y = np.asarray(data[0], np.float32), data[1]
    else:
        x, y = np.asarray(getattr(data, "x", data), np.float32), getattr(data, "y", None)
    if x.ndim < 2 or x.shape[0] == 0:
        raise PlanError("optimize_bits needs a non-empty batch of samples")
    cx = x[:calib]
    if eval_data is not None:
        ex, ey = (eval_data.x, eval_data.y) if hasattr(eval_data, "x") else eval_data
    elif x.shape[0] > calib and y is not None:
        ex, ey = x[calib:], np.asarray(y)[calib:]
    else:
        ex, ey = cx, (np.asarray(y)[:calib] if y is not None else np.zeros(len(cx), np.int64))
    if n_eval is not None:
        ex, ey = ex[:n_eval], ey[:n_eval]
    held_out = not (ex is cx)
    # validate what can be validated before the (slow) measurement
    if noise_table is None:
        noise_table = measure_noise(graph, cx, widths=widths, n_measure=n_measure, method=method,
                                    rounding=rounding, weight_method=weight_method)
    problem = allocation_problem(noise_table, target_db=target_sqnr_db, budget=budget, cost=cost,
                                 min_bits=min_bits, max_bits=max_bits, allowed=allowed, ties=ties,
                                 tie_layers=tie_layers, correction_db=correction_db)
    cost_name = cost if isinstance(cost, str) else "table"
    internal = None if target_sqnr_db is None else float(target_sqnr_db)
    solve_time, iterations, res, plan, measured, rep = 0.0, 0, None, None, None, None
    for iterations in range(1, max_refine + 2):
        if internal is not None:
            problem.target_db = internal - correction_db
        res = solve_milp(problem, solver=solver)
        solve_time += res.solve_time_s
        w = dict(zip(problem.names, res.widths, strict=True))
        plan = plan_for_widths(graph, cx, noise_table, w, name=f"opt-{cost_name}")
        if not verify:
            break
        rep = simulate(graph, plan, ex, ey)
        measured = rep.output_sqnr_db
        if internal is None or measured >= target_sqnr_db - tolerance_db:
            break
        shortfall = target_sqnr_db - measured
        if iterations > max_refine:
            break
        internal += shortfall + tolerance_db
        if problem.best_noise() > 10 ** (-(internal - correction_db) / 10):
            break  # the raised target is out of reach: keep the last plan
    w = dict(zip(problem.names, res.widths, strict=True))
    predicted = predict_sqnr_db(noise_table, w, correction_db=correction_db)
    ok = (measured is None or target_sqnr_db is None or measured >= target_sqnr_db - 0.5)
    where = "held-out data" if held_out else "the calibration data (no held-out samples)"
    if measured is None:
        msg = "solved (not measured: verify=False)"
    elif ok:
        msg = f"measured {measured:.2f} dB on {len(ex)} samples of {where}"
    else:
        msg = (f"the measured SQNR {measured:.2f} dB on {where} is more than 0.5 dB below the "
               f"target {target_sqnr_db:.2f} dB after {iterations} solves")
    acc = {lp.name: lp.acc_bits for lp in plan.layers if not lp.float_layer}
    return BitAllocation(
        success=bool(ok), status="optimal" if ok else "target_not_verified", message=msg,
        plan=plan, widths=w, predicted_sqnr_db=predicted, measured_sqnr_db=measured,
        cost=res.cost, cost_name=cost_name, solver=res.solver, target_sqnr_db=target_sqnr_db,
        solve_time_s=solve_time, total_time_s=time.perf_counter() - t_start,
        float_top1=rep.float_top1 if rep else None, fixed_top1=rep.fixed_top1 if rep else None,
        n_eval=len(ex) if rep else 0, weight_memory_bits=weight_memory_bits(noise_table, w),
        acc_bits=acc, iterations=iterations, correction_db=correction_db,
        noise_table=noise_table)
