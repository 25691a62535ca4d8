"""Solvers for bit allocation and their independent re-verification (:func:`optimize_bits`
lives in :mod:`fxp.opt.optimize` and is re-exported here).

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
import warnings
from dataclasses import dataclass
from itertools import product

import numpy as np

from fxp.errors import InfeasibleTargetError, PlanError, SolverError
from fxp.opt.continuous import ContinuousResult, lin_closed_form, solve_continuous
from fxp.opt.problem import AllocationProblem, import_cvxpy, milp_problem, require_solver
from fxp.opt.result import BitAllocation, weight_memory_bits

__all__ = ["COSTS", "HW_COSTS", "BitAllocation", "ContinuousResult", "MilpResult",
           "allocation_problem", "brute_force", "lin_closed_form", "optimize_bits",
           "saturate_accumulators", "solve_continuous", "solve_milp", "weight_memory_bits"]

COSTS = ("weight_memory", "activation_memory", "bitops")
HW_COSTS = ("lut", "dsp", "bram", "area", "flash", "cycles")
"""Hardware costs (:data:`fxp.opt.hardware_model.HW_COSTS`, checked equal in the tests)."""


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
    """Least total noise subject to the ties and forbidden pairs (a noise-minimising MILP)."""
    if not p.ties and not p.forbid and not p.noise_pairs:
        return p.best_noise()
    q = AllocationProblem(list(p.names), [list(w) for w in p.widths], [list(v) for v in p.noise],
                          [[0.0] * len(w) for w in p.widths], budget=0.0, ties=list(p.ties),
                          forbid=list(p.forbid), noise_pairs=dict(p.noise_pairs),
                          absorption=list(p.absorption))
    return solve_milp(q, solver=solver).noise


MAX_CUT_ROUNDS = 200
"""Most re-solves for the budgets' lazy exact checks (e.g. the greedy arena head)."""


def solve_milp(p: AllocationProblem, *, solver: str | None = None,
               time_limit_s: float | None = None, verbose: bool = False,
               explain: bool = True, cuts=()) -> MilpResult:
    """Exact one-hot MILP (HiGHS through cvxpy by default), re-verified.

    Budgets with an ``exact`` evaluator are checked on each optimum; a
    violation cuts off that combination of width classes and the MILP is
    solved again (at most :data:`MAX_CUT_ROUNDS` times).  ``cuts`` are
    combinations excluded from the start, in the form of
    :meth:`~fxp.opt.hardware_budgets.Budget.cut` (``[(tensor, [widths])]`` each; one
    width per tensor excludes one plan).

    Raises
    ------
    InfeasibleTargetError
        The target cannot be met (``best_sqnr_db`` attribute: the best
        reachable SQNR), or the budgets cannot (the message names which,
        :func:`fxp.opt.hardware_infeasible.explain_infeasible`; ``explain=False``
        skips that analysis).
    SolverError
        The solver failed or its answer did not verify.
    MissingDependencyError
        No MILP solver is installed.
    """
    name = require_solver("milp", solver)
    if p.target_db is not None and p.best_noise() > p.noise_budget:
        raise _infeasible(p, p.best_noise())
    t0 = time.perf_counter()
    cuts = [list(c) for c in cuts]
    for _ in range(MAX_CUT_ROUNDS + 1):
        res = _solve_once(p, name, cuts, time_limit_s, verbose, explain)
        bad = [b for b in p.budgets if b.exact is not None and b.value(res.widths) > b.limit]
        if not bad:
            res.solve_time_s = time.perf_counter() - t0
            return res
        cuts += [b.cut(res.widths, p.widths) for b in bad]
    raise SolverError(f"{name}: the budgets' exact checks still failed after {MAX_CUT_ROUNDS} "
                      f"cuts ({', '.join(b.label for b in bad)})")


def _raise_infeasible(p: AllocationProblem, name: str, explain: bool):
    if p.budgets and explain:
        from fxp.opt.hardware_infeasible import explain_infeasible

        raise explain_infeasible(p, name)
    if p.budgets:
        raise InfeasibleTargetError("no plan meets the budgets")
    if p.target_db is not None:
        raise _infeasible(p, _best_with_ties(p, solver=name))
    raise InfeasibleTargetError(f"no allocation fits the cost budget {p.budget:g}")


def _solve_once(p: AllocationProblem, name: str, cuts, time_limit_s, verbose,
                explain) -> MilpResult:
    """One MILP solve with ``cuts``; verified against everything but the lazy checks."""
    cp = import_cvxpy()
    prob, xs, keep, _ = milp_problem(p, cuts) if cuts else milp_problem(p)
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
            with _quiet_stdout(not verbose), warnings.catch_warnings():
                # cvxpy warns "Solution may be inaccurate" on a time limit; the status
                # check below refuses such a point, and every answer is verified exactly
                warnings.simplefilter("ignore", UserWarning)
                prob.solve(solver=name, verbose=verbose, **opts)
        except (cp.error.SolverError, ValueError) as exc:  # ValueError: cvxpy's "invalid
            last = f"solver error: {exc}"                   # solution" (HiGHS status unknown)
            continue
        status = prob.status
        if status == cp.INFEASIBLE:
            _raise_infeasible(p, name, explain)
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
            if round(v.sum()) != 1:
                choice = None
                break
            choice.append(int(k[j]))
        if choice is None or not p.feasible(choice, lazy=False):
            last = "the returned point did not verify (integrality or constraints)"
            continue
        cost, noise = p.evaluate(choice)
        return MilpResult(choice, [p.widths[i][k] for i, k in enumerate(choice)], cost, noise,
                          status, name)
    if p.noise_pairs and p.target_db is not None and not p.budgets:
        best = _best_with_ties(p, solver=name)  # the least second-order noise (its own MILP)
        if best > p.noise_budget:
            raise _infeasible(p, best)
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
                       correction_db: float = 0.0, hardware=None, budgets: dict | None = None,
                       target: str | None = None) -> AllocationProblem:
    """The MILP data for a measured :class:`~fxp.opt.noise.NoiseTable`.

    Parameters
    ----------
    cost : str or dict
        ``weight_memory`` = sum weights_i * b_i (bits); ``activation_memory`` =
        sum elements_i * b_i over activations (bits per sample); ``bitops`` =
        sum over layers MACs * b_w * b_a (b_a: the width of the layer's input);
        a dict ``{tensor: {width: cost}}`` is a user table (tensors not listed
        cost 0); ``lut``, ``dsp``, ``bram``, ``area``, ``flash``, ``cycles``:
        a hardware figure of ``hardware``.
    hardware : fxp.opt.hardware_model.HardwareModel, optional
        Hardware costs, ``budgets`` (figure -> limit) and the ``target``
        profile's kernel restrictions (:meth:`~fxp.opt.hardware_model.HardwareModel.extras`).
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
    elif hardware is not None and cost in HW_COSTS:
        costs = [[0.0] * len(w) for w in ws]
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
        raise PlanError(f"unknown cost {cost!r}; use one of {COSTS + tuple(HW_COSTS)} or a table")
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
    extra = {}
    if hardware is not None:
        hw_cost = cost if isinstance(cost, str) and cost in HW_COSTS else None
        obj, buds, forbid = hardware.extras(ws, cost=hw_cost, budgets=budgets, target=target)
        extra = {"objective": obj, "budgets": buds, "forbid": forbid}
    elif budgets or (isinstance(cost, str) and cost in HW_COSTS):
        raise PlanError("hardware costs and budgets need a hardware model (hardware=...)")
    return AllocationProblem(list(names), ws, noise, costs, target_db=tgt, budget=budget,
                             pairs=pairs, ties=tie_idx, **extra)


def saturate_accumulators(plan, bits: int):
    """``plan`` with every accumulator wider than ``bits`` narrowed to ``bits``, saturating."""
    from fxp.core.modes import OverflowMode

    for lp in plan.layers:
        if not lp.float_layer and lp.acc_bits > bits:
            plan = plan.replace_layer(lp.name, acc_bits=int(bits),
                                      acc_overflow=OverflowMode.SATURATE)
    return plan


def _budgets_exceeded(budgets: dict, hardware: dict, problem, res) -> list[str]:
    """Budgets the final plan exceeds: flash and RAM measured on the plan, the rest from the
    widths (exact).  Empty when all hold."""
    real = {"flash": hardware["mcu"]["flash_bytes"], "ram": hardware["mcu"]["ram_bytes"]}
    out = [f"{k} <= {v:,.10g} (the plan has {real[k]:,})" for k, v in budgets.items()
           if k in real and real[k] > v]
    out += [b.label for b in problem.violated(res.choice) if b.name not in real]
    return out


from fxp.opt.optimize import optimize_bits  # re-exported (it imports this module lazily)
