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
    if not p.ties and not p.forbid:
        return p.best_noise()
    q = AllocationProblem(list(p.names), [list(w) for w in p.widths], [list(v) for v in p.noise],
                          [[0.0] * len(w) for w in p.widths], budget=0.0, ties=list(p.ties),
                          forbid=list(p.forbid))
    return solve_milp(q, solver=solver).noise


MAX_CUT_ROUNDS = 200
"""Most re-solves for the budgets' lazy exact checks (e.g. the greedy arena head)."""


def solve_milp(p: AllocationProblem, *, solver: str | None = None,
               time_limit_s: float | None = None, verbose: bool = False,
               explain: bool = True) -> MilpResult:
    """Exact one-hot MILP (HiGHS through cvxpy by default), re-verified.

    Budgets with an ``exact`` evaluator are checked on each optimum; a
    violation cuts off that combination of width classes and the MILP is
    solved again (at most :data:`MAX_CUT_ROUNDS` times).

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
    cuts = []
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
            with _quiet_stdout(not verbose):
                prob.solve(solver=name, verbose=verbose, **opts)
        except cp.error.SolverError as exc:
            last = f"solver error: {exc}"
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


def optimize_bits(graph, data, target_sqnr_db: float | None = None, cost="weight_memory", *,
                  budget: float | None = None, widths=range(2, 17), min_bits=None,
                  max_bits=None, allowed=None, ties=(), tie_layers: bool = False,
                  calib: int = 1000, eval_data=None, n_measure: int | None = 256,
                  method: str = "minmax", rounding: str = "half_up", correction_db: float = 0.0,
                  verify: bool = True, tolerance_db: float = 0.25, max_refine: int = 3,
                  noise_table=None, solver: str | None = None, n_eval: int | None = None,
                  weight_method: str = "sqnr", target: str | None = None, cost_file=None,
                  budgets: dict | None = None, reuse_factor: int | None = None,
                  acc_saturate: int | None = None) -> BitAllocation:
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
        a cost budget) or ``budgets`` (max SQNR under hardware budgets) instead.
    cost : str or dict tensor -> {width: cost}
        ``weight_memory``, ``activation_memory``, ``bitops`` (proxies), or a
        hardware figure (:mod:`fxp.opt.hardware`): ``lut``, ``dsp``, ``bram``,
        ``area`` (FPGA), ``flash`` (bytes), ``cycles`` (MCU).
    target : {"fpga", "mcu"}, optional
        ``"mcu"`` restricts the widths to the kernels of the cost file
        (weights 4/8, activations 8/16 by default; intersected with
        ``allowed``) and forbids weight x activation pairs without a kernel.
    cost_file : path, optional
        Hardware coefficients (default: the shipped ``fxp/opt/hw_costs.json``).
    budgets : dict, optional
        Limits on ``dsp``, ``lut``, ``bram`` (counts), ``flash``, ``ram``
        (bytes; peak activation RAM, TFLite Micro's arena head) or ``cycles``:
        constraints next to the SQNR target, or, without a target, the
        constraints under which the SQNR is maximised.
    reuse_factor : int, optional
        FPGA reuse factor (overrides the cost file's default).
    acc_saturate : int, optional
        Accumulators whose proven width exceeds this many bits are narrowed
        to it with saturation (else each gets the narrowest width that cannot
        overflow); the measured SQNR includes the effect.
    verify : bool
        Measure the plan with the integer engine; when the measurement falls
        more than ``tolerance_db`` below the target, the internal target is
        raised by the shortfall and the MILP re-solved (at most ``max_refine``
        times).  ``success`` is True when the measured SQNR >= target - 0.5 dB
        and every budget holds on the plan (flash and RAM measured on the
        plan itself).
    method : {"minmax", "percentile", "mse"}
        Activation range estimation (:func:`fxp.plan.ptq.ptq_pow2`).
    weight_method : {"sqnr", "minmax", "percentile", "mse"}
        Weight range estimation; ``"sqnr"`` keeps, per width, the clip with
        the best measured output SQNR (:mod:`fxp.opt.noise`).
    noise_table : NoiseTable, optional
        A table measured before (e.g. for another target) with the same
        calibration samples; skips the measurement.
    """
    from fxp.opt.hardware import load_costs
    from fxp.opt.hardware_model import BUDGETS, HardwareModel
    from fxp.opt.model import plan_for_widths, predict_sqnr_db
    from fxp.opt.noise import measure_noise
    from fxp.sim.evaluate import simulate

    t_start = time.perf_counter()
    budgets = {k: v for k, v in (budgets or {}).items() if v is not None}
    if target_sqnr_db is not None and budget is not None:
        raise PlanError("give target_sqnr_db or budget, not both")
    if target_sqnr_db is None and budget is None and not budgets:
        raise PlanError("give target_sqnr_db, a cost budget or hardware budgets")
    if target not in (None, "fpga", "mcu"):
        raise PlanError(f"target must be 'fpga' or 'mcu', got {str(target)[:40]!r}")
    for k in budgets:
        if k not in BUDGETS:
            raise PlanError(f"unknown budget {k!r}; use one of {sorted(BUDGETS)}")
    if acc_saturate is not None and (isinstance(acc_saturate, bool)
                                     or not isinstance(acc_saturate, int)
                                     or not 2 <= acc_saturate <= 64):
        raise PlanError(f"acc_saturate must be an integer in 2..64, got {acc_saturate!r}")
    hw_cost = isinstance(cost, str) and cost in HW_COSTS
    if isinstance(cost, str) and not hw_cost and cost not in COSTS:
        raise PlanError(f"unknown cost {cost!r}; use one of {COSTS + tuple(HW_COSTS)} or a table")
    costs = load_costs(cost_file)
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
    hw = HardwareModel(graph, noise_table, cx, costs, reuse_factor=reuse_factor,
                       acc_saturate=acc_saturate)
    if target == "mcu":
        mcu = hw.mcu_allowed()
        if allowed is not None:
            mine = allowed if isinstance(allowed, dict) else {n: allowed for n in mcu}
            mcu = {n: [b for b in w if b in mine.get(n, w)] for n, w in mcu.items()}
        allowed = mcu
    problem = allocation_problem(noise_table, target_db=target_sqnr_db, budget=budget,
                                 cost=cost, min_bits=min_bits, max_bits=max_bits,
                                 allowed=allowed, ties=ties, tie_layers=tie_layers,
                                 correction_db=correction_db, hardware=hw, budgets=budgets,
                                 target=target)
    cost_name = cost if isinstance(cost, str) else "table"
    internal = None if target_sqnr_db is None else float(target_sqnr_db)
    solve_time, iterations, res, plan, measured, rep = 0.0, 0, None, None, None, None
    proven = {}
    for iterations in range(1, max_refine + 2):
        if internal is not None:
            problem.target_db = internal - correction_db
        try:
            r = solve_milp(problem, solver=solver)
        except InfeasibleTargetError:
            if res is None:
                raise
            break  # a raised target is out of reach under the budgets: keep the last plan
        res = r
        solve_time += res.solve_time_s
        w = dict(zip(problem.names, res.widths, strict=True))
        plan = plan_for_widths(graph, cx, noise_table, w, name=f"opt-{cost_name}")
        proven = {lp.name: lp.acc_bits for lp in plan.layers if not lp.float_layer}
        if acc_saturate is not None:
            plan = saturate_accumulators(plan, acc_saturate)
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
    hardware = hw.report(w, plan)
    over = _budgets_exceeded(budgets, hardware, problem, res)
    ok = (measured is None or target_sqnr_db is None or measured >= target_sqnr_db - 0.5)
    where = "held-out data" if held_out else "the calibration data (no held-out samples)"
    if measured is None:
        msg = "solved (not measured: verify=False)"
    elif ok:
        msg = f"measured {measured:.2f} dB on {len(ex)} samples of {where}"
    else:
        msg = (f"the measured SQNR {measured:.2f} dB on {where} is more than 0.5 dB below the "
               f"target {target_sqnr_db:.2f} dB after {iterations} solves")
    if over:
        msg += f"; the plan exceeds {', '.join(over)}"
    acc = {lp.name: lp.acc_bits for lp in plan.layers if not lp.float_layer}
    status = "optimal" if ok and not over else "budget_exceeded" if over else \
        "target_not_verified"
    return BitAllocation(
        success=bool(ok and not over), status=status, message=msg,
        plan=plan, widths=w, predicted_sqnr_db=predicted, measured_sqnr_db=measured,
        cost=res.cost, cost_name=cost_name, solver=res.solver, target_sqnr_db=target_sqnr_db,
        solve_time_s=solve_time, total_time_s=time.perf_counter() - t_start,
        float_top1=rep.float_top1 if rep else None, fixed_top1=rep.fixed_top1 if rep else None,
        n_eval=len(ex) if rep else 0, weight_memory_bits=weight_memory_bits(noise_table, w),
        acc_bits=acc, iterations=iterations, correction_db=correction_db,
        noise_table=noise_table, target=target, budgets=dict(budgets), hardware=hardware,
        acc_proven_bits=proven, acc_saturate=acc_saturate)


def _budgets_exceeded(budgets: dict, hardware: dict, problem, res) -> list[str]:
    """Budgets the final plan exceeds: flash and RAM measured on the plan, the rest from the
    widths (exact).  Empty when all hold."""
    real = {"flash": hardware["mcu"]["flash_bytes"], "ram": hardware["mcu"]["ram_bytes"]}
    out = [f"{k} <= {v:,.10g} (the plan has {real[k]:,})" for k, v in budgets.items()
           if k in real and real[k] > v]
    out += [b.label for b in problem.violated(res.choice) if b.name not in real]
    return out
