""":func:`optimize_channel_widths`: per-channel weight widths for an output-SQNR target,
checked on the three disjoint splits of :mod:`fxp.opt.splits`, as
:func:`fxp.opt.optimize.optimize_bits` checks per-tensor widths.

1. **Calibration split**: activation ranges and noise table
   (:func:`~fxp.opt.noise.measure_noise`), the per-channel weight noise
   (:func:`~fxp.opt.channel_noise.measure_channel_noise`), the exact MILP
   (:func:`~fxp.opt.channel_widths.solve_channel_milp`) and the **calibration check**
   (:func:`~fxp.opt.measured_goal.for_measured_goal`): each plan the MILP returns is
   measured by the integer engine on the calibration samples and the internal target
   moved until the cheapest plan measured at or above the target plus the held-out margin
   (``confidence``, :func:`~fxp.opt.measured_goal.held_out_margin_db`) is found.
2. **Selection split**: :func:`~fxp.opt.selection_check.refine_on_selection` (may
   re-solve with a raised goal, so this split is not held out).
3. **Held-out split**: one integer-engine measurement of the final plan; "met" means it
   is at least the target minus ``tolerance_db`` (0 dB by default).

With a weight-memory budget (``max_weight_bits``) instead of a target the MILP
maximises the predicted SQNR under it, once, and the held-out split measures the plan.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from fxp.errors import InfeasibleTargetError, PlanError
from fxp.opt.channel_widths import (
    _pareto,
    build_channel_problem,
    channel_plan,
    solve_channel_milp,
    weight_memory_bits,
)
from fxp.opt.measured_goal import DEFAULT_CONFIDENCE, check_confidence, held_out_margin_db
from fxp.opt.optimize import _xy
from fxp.opt.result import held_out_verdict

__all__ = ["ChannelAllocation", "optimize_channel_widths"]


@dataclass
class ChannelAllocation:
    """Result of :func:`optimize_channel_widths` (scipy ``OptimizeResult`` shape).

    Attributes
    ----------
    success, status, message
        ``success``: the held-out SQNR is at least the target minus ``tolerance_db``
        (with a budget: the plan fits it and was measured held out).  ``status``:
        ``optimal``, ``target_not_met``, ``infeasible``, ``not_held_out`` (no held-out
        samples: measured on calibration, never a success) or ``not_verified``.
    plan : Plan or None
    target_sqnr_db, max_weight_bits : float or None
        The goal: an SQNR target (dB), or a weight-memory budget (bits).
    predicted_sqnr_db, measured_sqnr_db : float
        Model prediction (dB); integer-engine measurement on the held-out split (None
        unverified).
    float_top1, fixed_top1 : float or None
        Held-out top-1 of the float model and of the plan.
    weight_memory_bits : int
        ``sum_c size_c * b_c`` over every weighted layer.
    channel_bits : dict layer -> int array [C]
    act_bits : dict tensor -> int
    n_variables : int
        Binaries of the MILP after removing dominated widths.
    solve_time_s, total_time_s : float
        MILP time (every solve) and the whole call.
    splits : dict
        :meth:`fxp.opt.splits.DataSplits.to_dict`.
    solves : list of dict
        Every MILP solve: internal target, why, prediction, weight bits, ``width_indices``
        (per MILP item, the index of its width in the candidate widths), and the calibration
        / selection measurements of its plan; ``chosen`` on the plan each goal kept.
    calibration_sqnr_db, calibration_se_db, selection_sqnr_db : float or None
        The final plan on the calibration split (with its standard error) and on the
        selection split (dB).
    confidence, margin_db, tolerance_db : float
        The held-out margin's confidence (0: none), the margin it asked of the final plan
        (dB), and the allowed held-out shortfall (dB).
    n_eval : int
        Held-out samples measured.
    """

    success: bool
    message: str
    plan: object
    target_sqnr_db: float | None
    max_weight_bits: float | None
    predicted_sqnr_db: float
    measured_sqnr_db: float | None
    float_top1: float | None
    fixed_top1: float | None
    weight_memory_bits: int
    channel_bits: dict
    act_bits: dict
    n_variables: int
    solve_time_s: float
    total_time_s: float
    status: str = "optimal"
    splits: dict = field(default_factory=dict)
    solves: list = field(default_factory=list)
    calibration_sqnr_db: float | None = None
    calibration_se_db: float | None = None
    selection_sqnr_db: float | None = None
    confidence: float = 0.0
    margin_db: float = 0.0
    tolerance_db: float = 0.0
    n_eval: int = 0

    def to_dict(self) -> dict:
        def num(v):
            return (round(v, 4) if math.isfinite(v) else str(v)) if isinstance(v, float) else v

        d = {k: num(getattr(self, k)) for k in (
            "success", "status", "message", "target_sqnr_db", "max_weight_bits",
            "predicted_sqnr_db", "measured_sqnr_db", "calibration_sqnr_db", "calibration_se_db",
            "selection_sqnr_db", "confidence", "margin_db", "tolerance_db", "n_eval",
            "float_top1", "fixed_top1", "weight_memory_bits", "n_variables", "solve_time_s",
            "total_time_s", "splits")}
        d["held_out_sqnr_db"] = d["measured_sqnr_db"]
        d["channel_bits"] = {k: [int(b) for b in v] for k, v in self.channel_bits.items()}
        d["act_bits"] = dict(self.act_bits)
        d["n_solves"] = len(self.solves)
        d["solves"] = [{k: num(v) for k, v in s.items()} for s in self.solves]
        return d


class _Solved:
    """What :func:`~fxp.opt.measured_goal.for_measured_goal` reads of a solve."""

    def __init__(self, choice, cost):
        self.widths, self.cost = tuple(int(j) for j in choice), cost


class _ChannelSearch:
    """Exact MILP solves at internal targets (the ``search`` of
    :func:`~fxp.opt.measured_goal.for_measured_goal`; no interaction terms)."""

    inter = None

    def __init__(self, noises, act_noise, channel_groups, time_limit_s):
        self.noises, self.act_noise = noises, act_noise
        self.groups, self.time_limit_s = channel_groups, time_limit_s
        self.solves: list[dict] = []
        self.solve_time = 0.0
        self.problem = None

    def solve(self, *, target_db=None, max_cost=None, reason=""):
        p = build_channel_problem(self.noises, self.act_noise, target_db=target_db,
                                  max_cost=max_cost, channel_groups=self.groups)
        self.problem = p
        t0 = time.perf_counter()
        choice = solve_channel_milp(p, time_limit_s=self.time_limit_s)
        self.solve_time += time.perf_counter() - t0
        if choice is None:
            if target_db is not None:
                best = -10 * math.log10(max(math.fsum(min(n) for n in p.noise), 1e-300))
                raise InfeasibleTargetError(f"no widths meet {target_db:g} dB (best predicted "
                                            f"{best:.2f} dB)")
            raise InfeasibleTargetError(f"no widths fit {max_cost:g} weight bits (least "
                                        f"{math.fsum(min(c) for c in p.cost):g})")
        cost, noise = p.evaluate(choice)
        pred = math.inf if noise == 0 else -10 * math.log10(noise)
        self.solves.append({"internal_target_db": target_db, "reason": reason,
                            "predicted_sqnr_db": pred, "weight_bits": cost,
                            "width_indices": [int(j) for j in choice]})
        return _Solved(choice, cost), list(choice), pred, len(self.solves) - 1

    def for_goal(self, goal: float, reason: str):
        found = self.solve(target_db=goal, reason=reason)
        self.solves[found[3]]["chosen"] = True
        return found

    @property
    def n_variables(self) -> int:
        p = self.problem
        return sum(len(_pareto(w, n, c)) for w, n, c in zip(p.widths, p.noise, p.cost,
                                                            strict=True))


def optimize_channel_widths(graph, data, target_sqnr_db: float | None = None, *,
                            max_weight_bits: float | None = None, widths=range(2, 11),
                            act_widths=range(2, 17), channel_groups: int | None = None,
                            calib: int = 1000, selection: int | None = None, eval_data=None,
                            n_measure: int = 256, n_channel: int = 64,
                            noises: dict | None = None, act_table=None,
                            method: str = "minmax", rounding: str = "half_up",
                            verify: bool = True, tolerance_db: float = 0.0,
                            max_refine: int = 2, calibration_check: bool = True,
                            confidence: float = DEFAULT_CONFIDENCE,
                            split_seed: int | None = 0, time_limit_s: float = 60.0
                            ) -> ChannelAllocation:
    """Cheapest per-channel weight widths (and per-tensor activation widths) for a target
    (module docstring).

    Parameters
    ----------
    graph : Graph
        Canonical graph (:func:`fxp.workflow.load_model`).
    data : fxp.workflow.Data, ``(x, y)`` or array x
        Put in a random order (``split_seed``; None: the order given) and cut into
        calibration (``calib``), selection (``selection``, default ``min(1000, rest //
        2)``) and held-out (the rest, or ``eval_data``): :func:`fxp.opt.splits.split_data`.
    target_sqnr_db : float, optional
        Output (logits) SQNR target (dB); or ``max_weight_bits``: the best predicted SQNR
        whose weight memory is at most that many bits.
    widths, act_widths : iterables of int
        Candidate weight and activation widths (bits).
    channel_groups : int, optional
        ``G`` groups of channels per layer share one width (default: every channel its own).
    n_measure, n_channel : int
        Calibration samples of the activation noise table and of the per-channel measurement.
    noises, act_table : optional
        :func:`~fxp.opt.channel_noise.measure_channel_noise` output and an activation
        :class:`~fxp.opt.noise.NoiseTable`, measured before on the calibration samples
        ``data.x[split_data(...).indices("calibration")]`` (the table is checked,
        :func:`~fxp.opt.splits.check_table_samples`).
    verify : bool
        Measure with the integer engine (selection and held-out splits).
    tolerance_db : float
        ``success`` needs held-out SQNR >= target - ``tolerance_db`` (dB, default 0).
    max_refine : int
        Most re-solves driven by a shortfall on the selection split.
    calibration_check, confidence :
        As :func:`fxp.opt.optimize.optimize_bits`: each searched plan is measured on the
        calibration split and must clear the target by the one-sided ``confidence``
        bound on the held-out measurement (0: no margin).
    split_seed : int or None
        Seed of the random order the splits are cut from (default 0).

    Raises
    ------
    PlanError
        Neither or both of ``target_sqnr_db`` and ``max_weight_bits``; bad options; a
        noise table of other samples.
    """
    from fxp.opt.channel_noise import measure_channel_noise
    from fxp.opt.measured_goal import for_measured_goal
    from fxp.opt.noise import measure_noise, quantizable_tensors
    from fxp.opt.selection_check import refine_on_selection
    from fxp.opt.splits import check_table_samples, split_data
    from fxp.sim.evaluate import simulate

    t_start = time.perf_counter()
    if (target_sqnr_db is None) == (max_weight_bits is None):
        raise PlanError("give exactly one of target_sqnr_db and max_weight_bits")
    check_confidence(confidence)
    if not (isinstance(tolerance_db, (int, float)) and 0 <= tolerance_db < 100):
        raise PlanError(f"tolerance_db must be in [0, 100) dB, got {tolerance_db!r}")
    x, y = _xy(data)
    if x.ndim < 2 or x.shape[0] == 0:
        raise PlanError("optimize_channel_widths needs a non-empty batch of samples")
    has_y = y is not None
    y = np.zeros(len(x), np.int64) if y is None else np.asarray(y)
    ext = None if eval_data is None else _xy(eval_data)
    splits = split_data(len(x), calib, selection, None if ext is None else len(ext[0]),
                        seed=split_seed)
    ci, si = splits.indices("calibration"), splits.indices("selection")
    cx, cy, sx, sy = x[ci], y[ci], x[si], y[si]
    if ext is not None:
        hx = ext[0]
        hy = np.zeros(len(hx), np.int64) if ext[1] is None else np.asarray(ext[1])
    else:
        hi = splits.indices("held_out")
        hx, hy = x[hi], y[hi]
    if act_table is None:
        acts = [t.name for t in quantizable_tensors(graph) if t.kind == "act"]
        act_table = measure_noise(graph, cx, widths=act_widths, n_measure=n_measure,
                                  method=method, rounding=rounding, tensors=acts)
    else:
        check_table_samples(graph, act_table, cx)
    if noises is None:
        noises = measure_channel_noise(graph, cx, widths=widths, n_measure=n_channel,
                                       rounding=rounding)
    act_noise = {t.name: {b: act_table.noise(t.name, b) for b in act_table.widths}
                 for t in act_table.tensors if t.kind == "act"}
    search = _ChannelSearch(noises, act_noise, channel_groups, time_limit_s)
    plans: dict[tuple, tuple] = {}

    def build(choice):
        key = tuple(int(j) for j in choice)
        if key not in plans:
            plans[key] = channel_plan(graph, cx, act_table, noises, search.problem, choice,
                                      name=f"channel-widths-{target_sqnr_db or 'budget'}")
        return plans[key][0]

    cal_db: dict[tuple, float] = {}
    cal_se: dict[tuple, float] = {}

    def measure_calibration(choice):  # integer engine, calibration split
        key = tuple(int(j) for j in choice)
        if key not in cal_db:
            rep = simulate(graph, build(choice), cx, cy, batch_size=500)
            cal_db[key], cal_se[key] = rep.output_sqnr_db, rep.output_sqnr_se_db
        return cal_db[key]

    def held_margin(choice):  # after measure_calibration: the held-out bound (dB)
        return held_out_margin_db(cal_se[tuple(int(j) for j in choice)], len(cx),
                                  len(hx), confidence)

    def for_goal(goal, reason):
        if not calibration_check:
            return search.for_goal(goal, reason)
        return for_measured_goal(search, goal, reason, measure_calibration, held_margin)

    sel_rep = None
    try:
        if target_sqnr_db is None:
            found = search.solve(max_cost=max_weight_bits, reason="maximise the predicted "
                                 "SQNR under the weight-memory budget")
        else:
            tgt = float(target_sqnr_db)
            found = for_goal(tgt, "first solve (target as given)")
            if verify:
                found, sel_rep = refine_on_selection(
                    graph, found, tgt, for_goal, build, search.solves, (cx, cy), (sx, sy),
                    max_refine=max_refine,
                    reachable=lambda g: math.fsum(min(n) for n in search.problem.noise)
                    <= 10 ** (-g / 10))
    except InfeasibleTargetError as e:
        return ChannelAllocation(False, str(e), None, target_sqnr_db, max_weight_bits,
                                 math.nan, None, None, None, 0, {}, {},
                                 0 if search.problem is None else search.n_variables,
                                 search.solve_time, time.perf_counter() - t_start,
                                 status="infeasible", splits=splits.to_dict(),
                                 solves=search.solves, tolerance_db=float(tolerance_db))
    _, choice, pred, _ = found
    key = tuple(int(j) for j in choice)
    plan = build(choice)
    bits = plans[key][1]
    acts = {n: w[j] for (n, ch), w, j in zip(search.problem.items, search.problem.widths,
                                              choice, strict=True) if ch is None}
    for s in search.solves:  # each calibration measurement's standard error
        if "calibration_sqnr_db" in s:
            s["calibration_se_db"] = cal_se.get(tuple(s["width_indices"]))
    rep, where = None, "held-out"
    if verify:
        if len(hx) == 0:  # nothing held out: measure on calibration and say so
            hx, hy, where = cx, cy, "calibration (nothing held out)"
        rep = simulate(graph, plan, hx, hy, batch_size=500)
    measured = None if rep is None else float(rep.output_sqnr_db)
    status, msg = held_out_verdict(measured, target_sqnr_db, tolerance_db, len(hx), where,
                                   len(search.solves))
    labelled = rep is not None and where == "held-out" and (
        has_y if ext is None else ext[1] is not None)
    return ChannelAllocation(
        status == "optimal", msg, plan, target_sqnr_db, max_weight_bits, pred, measured,
        float(rep.float_top1) if labelled else None, float(rep.fixed_top1) if labelled else None,
        weight_memory_bits(graph, plan), bits, acts, search.n_variables, search.solve_time,
        time.perf_counter() - t_start, status=status, splits=splits.to_dict(),
        solves=search.solves, calibration_sqnr_db=cal_db.get(key),
        calibration_se_db=cal_se.get(key),
        selection_sqnr_db=None if sel_rep is None else float(sel_rep.output_sqnr_db),
        confidence=float(confidence) if calibration_check and target_sqnr_db is not None
        else 0.0,
        margin_db=held_margin(choice) if key in cal_se and calibration_check else 0.0,
        tolerance_db=float(tolerance_db), n_eval=0 if rep is None else len(hx))
