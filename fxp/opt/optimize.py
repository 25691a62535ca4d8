""":func:`optimize_bits`: the cheapest per-tensor widths for an output-SQNR target, checked
on three disjoint splits of the data (:mod:`fxp.opt.splits`).

1. **Calibration split**: formats, the per-tensor noise table
   (:func:`~fxp.opt.noise.measure_noise`, every calibration sample by
   default) and its error vectors.
2. **Solve** (exact one-hot MILP on the additive noise row,
   :func:`~fxp.opt.solve.solve_milp`), then check the optimum with the
   second-order prediction (additive terms plus the measured pairwise
   interactions, :mod:`fxp.opt.interactions`, calibration samples only).  When
   it falls short the internal target is raised by the shortfall, when it has
   room to spare it is lowered, and the MILP solved again
   (:data:`MAX_MODEL_SOLVES` solves at most); the cheapest plan meeting the
   target under the second-order prediction is kept, then improved by a local
   search under that prediction (single- and two-tensor width changes that
   lower the exact cost and keep every constraint, :meth:`_Search.polish`).
   With ``interactions="milp"`` the second-order prediction itself is the
   MILP's noise row instead (each pair's terms multiply the linearised outer
   product of two tensors' one-hot vectors,
   :class:`~fxp.opt.problem.AllocationProblem` ``noise_pairs``), so the plan
   is the proven cheapest under that prediction (each tensor's absorbed noise
   capped, :meth:`~fxp.opt.interactions.Interactions.absorption`: one more
   variable per tensor).  Measured before the calibration check
   (``benchmarks/bench_fidelity.py``, 48 targets on three nets): its first plan
   was within 2% of the exhaustive optimum at 47 and met 43 on held-out data,
   the check-and-search's at 43 and 46, so the check-and-search is the default.
   **Calibration check** (``calibration_check=True``, the default): each plan this
   search returns is measured by the integer engine on the calibration samples and the
   internal target moved by what it measures until the cheapest plan measured at or
   above the goal is found (:mod:`fxp.opt.measured_goal`; ``calibration_sqnr_db`` on
   each measured solve).  From that plan a measured neighbour search
   (:mod:`fxp.opt.neighbour_search`, six measurements at most) tries the cheaper plans
   one to three width changes away, most promising first, and moves to any measured at
   or above the goal; then a prediction jump (:mod:`fxp.opt.prediction_jump`, four
   measurements at most) measures the plans the exact second-order MILP predicts best
   among those at least 2% cheaper, however many widths they change, and moves to any
   measured at or above the goal.  Still nothing of the selection or held-out split.
   The goal is the target plus a **held-out margin** (``confidence``, 0.95 by default):
   the one-sided bound on how far the held-out split may measure below the calibration
   split, from the calibration measurement's own standard error
   (:func:`~fxp.opt.measured_goal.held_out_margin_db`); the splits are cut from a shuffled
   order (:mod:`fxp.opt.splits`), so that bound holds for them.
3. **Selection split**: the integer engine measures that plan.  Below the
   target, it measures the plan on the calibration and selection samples together
   (``calibration_and_selection_sqnr_db`` on the solve); below the target there too,
   the goal of step 2 is raised by that shortfall and step 2 repeats
   (``max_refine`` times at most).  One split alone measures a plan to a few tenths
   of a dB (``bench_fidelity.py``: the MNIST selection digits measure worse than
   both others), so a plan is re-solved only where the estimate from both splits
   falls short.  These measurements drive the search, so the split is not held out.
4. **Held-out split**: one integer-engine measurement of the final plan;
   ``met`` means it is >= target - ``tolerance_db`` (0 dB by default).

Every solve is listed in :attr:`BitAllocation.solves` with its internal
target and why it was made.
"""

from __future__ import annotations

import math
import time

import numpy as np

from fxp.errors import InfeasibleTargetError, PlanError
from fxp.opt.measured_goal import DEFAULT_CONFIDENCE, check_confidence, held_out_margin_db
from fxp.opt.prediction_jump import MAX_JUMPS
from fxp.opt.result import BitAllocation, held_out_verdict, weight_memory_bits

__all__ = ["MAX_MODEL_SOLVES", "optimize_bits"]

MAX_MODEL_SOLVES = 6
"""Most MILP solves per goal while checking optima against the second-order prediction."""
POLISH_ROUNDS = 20
"""Most improving moves of the local search."""
SPARE_DB = 0.1
"""A plan that beats the goal (second-order) by more than this is tried with a lower target."""


def _xy(data):
    if isinstance(data, tuple):
        return np.asarray(data[0], np.float32), data[1]
    return np.asarray(getattr(data, "x", data), np.float32), getattr(data, "y", None)


def _check(target_sqnr_db, budget, budgets, target, acc_saturate, cost, tolerance_db,
           interactions, margin_se, calibration_check):
    """Every argument check that needs no data, before anything is measured."""
    from fxp.opt.hardware_model import BUDGETS
    from fxp.opt.solve import COSTS, HW_COSTS

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
    if isinstance(cost, str) and cost not in HW_COSTS and cost not in COSTS:
        raise PlanError(f"unknown cost {cost!r}; use one of {COSTS + tuple(HW_COSTS)} or a table")
    if target_sqnr_db is not None:
        try:
            tval = float(target_sqnr_db)
        except (TypeError, ValueError):
            raise PlanError(f"target SQNR must be a number, got {target_sqnr_db!r}") from None
        if not math.isfinite(tval):
            raise PlanError(f"target SQNR must be finite, got {target_sqnr_db!r}")
    if isinstance(tolerance_db, bool) or not isinstance(tolerance_db, (int, float)) \
            or not math.isfinite(tolerance_db) or tolerance_db < 0:
        raise PlanError(f"tolerance_db must be a finite number of dB >= 0, got {tolerance_db!r}")
    if interactions not in (True, False, "milp"):
        raise PlanError(f"interactions must be True, False or 'milp', got {interactions!r}")
    if isinstance(margin_se, bool) or not isinstance(margin_se, (int, float)) \
            or not math.isfinite(margin_se) or margin_se < 0:
        raise PlanError(f"margin_se must be a finite number >= 0, got {margin_se!r}")
    if not isinstance(calibration_check, (bool, np.bool_)):
        raise PlanError(f"calibration_check must be True or False, got {calibration_check!r}")


class _Search:
    """MILP solves at shifted internal targets, each optimum checked on the calibration split."""

    def __init__(self, problem, names, inter, correction_db, solver, table, margin_se=0.0):
        self.problem, self.names, self.inter, self.table = problem, names, inter, table
        self.correction_db, self.solver, self.margin_se = correction_db, solver, margin_se
        self.solves: list[dict] = []
        self.solve_time = 0.0
        self._terms = None

    def predicted(self, widths: dict) -> float:
        from fxp.opt.model import predict_sqnr_db

        if self.inter is not None:
            return self.inter.sqnr_db(widths, self.correction_db)
        return predict_sqnr_db(self.table, widths, correction_db=self.correction_db)

    def solve(self, internal: float | None, reason: str):
        from fxp.opt.solve import solve_milp

        if internal is not None:
            self.problem.target_db = internal - self.correction_db
        res = solve_milp(self.problem, solver=self.solver)
        self.solve_time += res.solve_time_s
        w = dict(zip(self.names, res.widths, strict=True))
        pred = self.predicted(w)
        self.solves.append({"internal_target_db": internal, "reason": reason,
                            "predicted_sqnr_db": pred, "cost": res.cost,
                            "widths": [int(b) for b in res.widths]})
        return res, w, pred, len(self.solves) - 1

    def need(self, goal: float, widths: dict) -> float:
        """What the second-order prediction of ``widths`` must reach: ``goal`` plus
        ``margin_se`` standard errors of that prediction (its calibration-sample spread)."""
        if not self.margin_se or self.inter is None:
            return goal
        se = self.inter.total_standard_error_db(widths)
        return goal + self.margin_se * se if math.isfinite(se) else goal

    def for_goal(self, goal: float, first_reason: str):
        """Cheapest optimum whose prediction meets ``goal`` (plus the margin, :meth:`need`),
        or the best one tried."""
        internal, best, fallback = goal, None, None
        reason = first_reason
        top = goal
        for _ in range(MAX_MODEL_SOLVES):
            try:
                res, w, pred, i = self.solve(internal, reason)
            except InfeasibleTargetError:
                if best is None and fallback is None:
                    raise
                break
            need = self.need(goal, w)
            top = max(top, need)
            if pred >= need:
                if best is None or res.cost < best[0].cost:
                    best = (res, w, pred, i)
                if pred - need <= SPARE_DB or self.inter is None or self.problem.noise_pairs:
                    break  # (with the pairwise row the MILP optimum is already exact)
                internal -= (pred - need) / 2
                reason = "second-order check on calibration: room to spare, target lowered"
            else:
                if fallback is None or pred > fallback[2]:
                    fallback = (res, w, pred, i)
                if self.inter is None or best is not None:
                    break
                internal = max(internal + need - pred, top) + 0.02
                reason = "second-order check on calibration: short" + (
                    f" of the target + {self.margin_se:g} standard errors" if self.margin_se
                    else "") + ", target raised"
                if self.problem.best_noise() > 10 ** (-(internal - self.correction_db) / 10):
                    break
        out = best if best is not None else fallback
        if best is not None and self.inter is not None and not self.problem.noise_pairs:
            out = self.polish(out, self.need(goal, out[1]))
        self.solves[out[3]]["chosen"] = True
        return out

    @property
    def terms(self):
        """The second-order noise's lookups for the problem
        (:func:`~fxp.opt.neighbour_search.neighbour_terms`), computed on first use."""
        from fxp.opt.neighbour_search import neighbour_terms

        if self._terms is None:
            self._terms = neighbour_terms(self.problem, self.inter)
        return self._terms

    def polish(self, found, goal: float):
        """Cheaper plans next to ``found`` that still meet ``goal`` under the second-order
        prediction: the cheapest of the one- and two-tensor width changes of
        :func:`~fxp.opt.neighbour_search.cheaper_neighbours` (each tensor up to
        :data:`~fxp.opt.neighbour_search.STEP` widths away) that lowers the exact cost,
        every constraint checked by :meth:`~fxp.opt.problem.AllocationProblem.feasible`,
        repeated while one helps (:data:`POLISH_ROUNDS` at most)."""
        from fxp.opt.neighbour_search import cheaper_neighbours
        from fxp.opt.solve import MilpResult

        res, w, pred, i0 = found
        p = self.problem
        choice, cost = list(res.choice), p.evaluate(list(res.choice))[0]
        limit = 10 ** (-(goal - self.correction_db) / 10)
        moved = False
        for _ in range(POLISH_ROUNDS):
            better = cheaper_neighbours(p, self.inter, choice, cost, terms=self.terms,
                                        max_noise=limit, triples=False)
            if not better:
                break
            choice, cost, _ = min(better, key=lambda t: t[1])
            moved = True
        if not moved:
            return found
        widths = p.widths_of(choice)
        w = dict(zip(p.names, widths, strict=True))
        pred = self.predicted(w)
        new = MilpResult(choice, widths, cost, p.evaluate(choice)[1], "local_search", res.solver)
        self.solves.append({"internal_target_db": goal, "reason": "local search from solve "
                            f"{i0 + 1} under the second-order prediction (calibration)",
                            "predicted_sqnr_db": pred, "cost": cost, "widths": widths})
        return new, w, pred, len(self.solves) - 1


def _pair_summary(table) -> dict:
    """What :func:`~fxp.opt.pair_noise.measure_pair_noise` measured for ``table``."""
    pn = getattr(table, "pair_noise", None)
    if pn is None:
        return {}
    names = table.names
    return {"measured": len(pn), "passes": getattr(pn, "passes", None),
            "skipped": [[names[i], names[j]] for i, j in getattr(pn, "skipped", [])]}


def optimize_bits(graph, data, target_sqnr_db: float | None = None, cost="weight_memory", *,
                  budget: float | None = None, widths=range(2, 17), min_bits=None,
                  max_bits=None, allowed=None, ties=(), tie_layers: bool = False,
                  calib: int = 1000, selection: int | None = None, eval_data=None,
                  n_measure: int | None = None, method: str = "minmax",
                  rounding: str = "half_up", correction_db: float = 0.0, verify: bool = True,
                  tolerance_db: float = 0.0, max_refine: int = 2,
                  interactions: bool | str = True,
                  noise_table=None, solver: str | None = None, n_eval: int | None = None,
                  weight_method: str = "sqnr", target: str | None = None, cost_file=None,
                  budgets: dict | None = None, reuse_factor: int | None = None,
                  acc_saturate: int | None = None, client=None,
                  margin_se: float = 0.0, bias_guard: int | str | None = "auto",
                  calibration_check: bool = True, confidence: float = DEFAULT_CONFIDENCE,
                  split_seed: int | None = 0, jumps: int = MAX_JUMPS) -> BitAllocation:
    """Cheapest per-tensor widths whose output SQNR meets ``target_sqnr_db`` (module docstring).

    Parameters
    ----------
    graph : Graph
        Canonical graph (:func:`fxp.workflow.load_model`).
    data : fxp.workflow.Data, ``(x, y)`` or array x [N, ...]
        Put in a random order (``split_seed``; None: the order given) and cut into
        calibration (``calib`` samples), selection (``selection`` samples, default
        ``min(1000, rest // 2)``) and held-out (the rest, or ``eval_data``, a Data or
        ``(x, y)``): :mod:`fxp.opt.splits`.
    target_sqnr_db : float
        Output (logits) SQNR target in dB; or give ``budget`` (max SQNR under
        a cost budget) or ``budgets`` (max SQNR under hardware budgets) instead.
    cost, target, cost_file, budgets, reuse_factor, acc_saturate
        What is minimised and the hardware profile (:mod:`fxp.opt.hardware`,
        :func:`fxp.opt.solve.allocation_problem`); flash and RAM budgets are
        checked on the plan itself.
    n_measure : int, optional
        Calibration samples the noise is measured on (default: all).
    verify : bool
        Measure with the integer engine (selection and held-out splits).
    tolerance_db : float
        ``success`` needs held-out SQNR >= target - ``tolerance_db`` (default 0).
    max_refine : int
        Most re-solves driven by a shortfall on the selection split.
    interactions : bool or "milp"
        Check each optimum with the pairwise interaction terms (:mod:`fxp.opt.interactions`);
        ``"milp"``: put them in the MILP's noise row (the exact optimum of the second-order
        prediction; see the module docstring).
    bias_guard : int, None or "auto"
        Bias fraction bits below each layer's output LSB
        (:func:`fxp.opt.model.plan_for_widths`); ``"auto"`` (default):
        :data:`~fxp.opt.model.BIAS_GUARD_BITS`, or None (biases at the products' LSB)
        with a hardware ``target``, ``budgets`` or a hardware cost, whose models count the
        accumulators at that LSB.
    margin_se : float
        The second-order prediction (and with ``calibration_check`` the plan's measured
        SQNR on the calibration split) must reach the target plus this many of the
        prediction's standard errors (the spread of the calibration-sample estimate,
        :meth:`fxp.opt.interactions.Interactions.total_standard_error_db`); 0 (the
        default): the target itself.
    calibration_check : bool
        Measure each searched plan with the integer engine on the calibration split and
        move the internal target until the cheapest plan measured there meets the goal
        (:mod:`fxp.opt.measured_goal`; default True).
    confidence : float
        With ``calibration_check``: the plan's SQNR measured on the calibration split must
        clear the goal by the one-sided ``confidence`` bound on what the held-out split
        will measure (:func:`fxp.opt.measured_goal.held_out_margin_db`, from the
        measurement's own standard error); 0: no margin.  Default 0.95.
    split_seed : int or None
        Seed of the random order the splits are cut from (default 0); None: the data's
        own order (:mod:`fxp.opt.splits`).
    jumps : int
        With ``calibration_check``: most calibration measurements of the prediction jump
        per goal (:mod:`fxp.opt.prediction_jump`; default
        :data:`~fxp.opt.prediction_jump.MAX_JUMPS`); 0 skips it (a faster search, on
        ``lenet5`` 2-5.6x faster and 2.1-2.4% dearer at 3 of 4 targets:
        ``benchmarks/bench_jump_time.py``).
    method, weight_method, rounding, noise_table
        Range estimation, rounding, and a table measured before on the same
        calibration samples (``split_data(...).indices("calibration")``; skips the
        measurement).
    client : distributed.Client, optional
        Measure the noise table on this Dask cluster
        (:func:`fxp.dist.noise.measure_noise_dist`, the same table bit for bit);
        ``None``: in this process.
    """
    from fxp.opt.hardware import load_costs
    from fxp.opt.hardware_model import HardwareModel
    from fxp.opt.interactions import Interactions
    from fxp.opt.measured_goal import for_measured_goal
    from fxp.opt.model import BIAS_GUARD_BITS, plan_for_widths, predict_sqnr_db
    from fxp.opt.noise import measure_noise
    from fxp.opt.selection_check import refine_on_selection
    from fxp.opt.solve import (
        HW_COSTS,
        _budgets_exceeded,
        allocation_problem,
        saturate_accumulators,
    )
    from fxp.opt.splits import check_table_samples, split_data
    from fxp.sim.evaluate import simulate

    t_start = time.perf_counter()
    budgets = {k: v for k, v in (budgets or {}).items() if v is not None}
    _check(target_sqnr_db, budget, budgets, target, acc_saturate, cost, tolerance_db,
           interactions, margin_se, calibration_check)
    check_confidence(confidence)
    if isinstance(jumps, bool) or not isinstance(jumps, (int, np.integer)) \
            or not 0 <= jumps <= 100:
        raise PlanError(f"jumps must be an integer in 0..100, got {jumps!r}")
    costs = load_costs(cost_file)
    x, y = _xy(data)
    if x.ndim < 2 or x.shape[0] == 0:
        raise PlanError("optimize_bits needs a non-empty batch of samples")
    y = np.zeros(len(x), np.int64) if y is None else np.asarray(y)
    ext = None
    if eval_data is not None:
        ext = (eval_data.x, eval_data.y) if hasattr(eval_data, "x") else eval_data
        ext = (np.asarray(ext[0], np.float32), np.asarray(ext[1]))
    splits = split_data(len(x), calib, selection, None if ext is None else len(ext[0]),
                        seed=split_seed)
    ci, si = splits.indices("calibration"), splits.indices("selection")
    cx, cy = x[ci], y[ci]
    sx, sy = x[si], y[si]
    if n_eval is not None:  # the first n_eval held-out positions
        splits.held_out_size = min(splits.held_out_size, int(n_eval))
        if splits.held_out is not None:
            splits.held_out = (splits.held_out[0], splits.held_out[0] + splits.held_out_size)
    if ext is not None:
        hx, hy = ext[0][:splits.held_out_size], ext[1][:splits.held_out_size]
    else:
        hi = splits.indices("held_out")
        hx, hy = x[hi], y[hi]
    if noise_table is not None:
        check_table_samples(graph, noise_table, cx)
    else:
        if client is None:
            noise_table = measure_noise(graph, cx, widths=widths, n_measure=n_measure,
                                        method=method, rounding=rounding,
                                        weight_method=weight_method)
        else:
            from fxp.dist.noise import measure_noise_dist

            noise_table = measure_noise_dist(graph, cx, client=client, widths=widths,
                                             n_measure=n_measure, method=method,
                                             rounding=rounding, weight_method=weight_method,
                                             progress=True)
    if interactions and getattr(noise_table, "errors", None) is not None \
            and getattr(noise_table, "pair_noise", 0) is None:
        from fxp.opt.pair_noise import measure_pair_noise

        noise_table.pair_noise = measure_pair_noise(graph, cx, noise_table)
    inter = Interactions.of(noise_table) if interactions else None
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
    if inter is not None and problem.target_db is not None and interactions == "milp":
        problem.noise, problem.noise_pairs, problem.absorption = inter.milp_terms(
            problem.names, problem.widths)
    cost_name = cost if isinstance(cost, str) else "table"
    search = _Search(problem, problem.names, inter, correction_db, solver, noise_table,
                     float(margin_se))

    if bias_guard == "auto":  # the hardware models count accumulators at F_x + F_w
        hw_costs = target is not None or budgets or (isinstance(cost, str) and cost in HW_COSTS)
        bias_guard = None if hw_costs else BIAS_GUARD_BITS

    def build(w):
        plan = plan_for_widths(graph, cx, noise_table, w, name=f"opt-{cost_name}",
                               bias_guard=bias_guard)
        proven = {lp.name: lp.acc_bits for lp in plan.layers if not lp.float_layer}
        if acc_saturate is not None:
            plan = saturate_accumulators(plan, acc_saturate)
        return plan, proven

    cal_db: dict[tuple, float] = {}
    cal_se: dict[tuple, float] = {}

    def key_of(w):
        return tuple(int(w[n]) for n in problem.names)

    def measure_calibration(w):  # integer engine, calibration split
        key = key_of(w)
        if key not in cal_db:
            rep = simulate(graph, build(w)[0], cx, cy)
            cal_db[key], cal_se[key] = rep.output_sqnr_db, rep.output_sqnr_se_db
        return cal_db[key]

    def held_margin(w):  # after measure_calibration(w): the held-out bound (dB)
        return held_out_margin_db(cal_se[key_of(w)], len(cx), splits.held_out_size, confidence)

    def margin(w):  # the model's margin and the held-out bound
        return search.need(0.0, w) + held_margin(w)

    def for_goal(goal, reason):
        if not calibration_check:
            return search.for_goal(goal, reason)
        return for_measured_goal(search, goal, reason, measure_calibration, margin,
                                 jumps=int(jumps))

    sel_rep = None
    if target_sqnr_db is None:
        res, w, _, _ = search.solve(None, "maximise SQNR under the budgets")
    else:
        found = for_goal(float(target_sqnr_db), "first solve (additive model, target as given)")
        if verify:  # step 3 (fxp/opt/selection_check.py)
            found, sel_rep = refine_on_selection(
                graph, found, float(target_sqnr_db), for_goal, lambda w_: build(w_)[0],
                search.solves, (cx, cy), (sx, sy), max_refine=max_refine,
                reachable=lambda g: problem.best_noise() <= 10 ** (-(g - correction_db) / 10))
        res, w = found[0], found[1]
    sel_db = None if sel_rep is None else sel_rep.output_sqnr_db
    plan, proven = build(w)
    rep, measured, where = None, None, "held-out"
    if verify:
        if len(hx) == 0:  # nothing held out: measure on calibration and say so
            hx, hy, where = cx, cy, "calibration (nothing held out)"
        rep = simulate(graph, plan, hx, hy)
        measured = rep.output_sqnr_db
    for sv in search.solves:  # each calibration measurement's standard error
        if "calibration_sqnr_db" in sv:
            sv["calibration_se_db"] = cal_se.get(tuple(sv["widths"]))
    predicted = search.predicted(w)
    additive = predict_sqnr_db(noise_table, w, correction_db=correction_db)
    hardware = hw.report(w, plan)
    over = _budgets_exceeded(budgets, hardware, problem, res)
    n_solves = len(search.solves)
    met = (measured is None or target_sqnr_db is None
           or measured >= float(target_sqnr_db) - tolerance_db)
    status, msg = held_out_verdict(measured, target_sqnr_db, tolerance_db, len(hx), where,
                                   n_solves)
    if over:
        msg += f"; the plan exceeds {', '.join(over)}"
        status = "budget_exceeded"
    acc = {lp.name: lp.acc_bits for lp in plan.layers if not lp.float_layer}
    return BitAllocation(
        success=bool(met and not over and where == "held-out"), status=status, message=msg,
        plan=plan, widths=w, predicted_sqnr_db=predicted, measured_sqnr_db=measured,
        cost=res.cost, cost_name=cost_name, solver=res.solver, target_sqnr_db=target_sqnr_db,
        solve_time_s=search.solve_time, total_time_s=time.perf_counter() - t_start,
        float_top1=rep.float_top1 if rep else None, fixed_top1=rep.fixed_top1 if rep else None,
        n_eval=len(hx) if rep else 0, weight_memory_bits=weight_memory_bits(noise_table, w),
        acc_bits=acc, iterations=n_solves, correction_db=correction_db,
        noise_table=noise_table, target=target, budgets=dict(budgets), hardware=hardware,
        acc_proven_bits=proven, acc_saturate=acc_saturate, splits=splits.to_dict(),
        solves=search.solves, selection_sqnr_db=sel_db, tolerance_db=float(tolerance_db),
        selection_top1=None if sel_rep is None else (sel_rep.float_top1, sel_rep.fixed_top1),
        predicted_additive_db=additive,
        tensor_se_db=inter.standard_errors(w) if inter is not None else {},
        predicted_se_db=inter.total_standard_error_db(w) if inter is not None else None,
        interactions="off" if inter is None else ("milp" if interactions == "milp" else "check"),
        margin_se=float(margin_se), bias_guard_bits=bias_guard,
        calibration_sqnr_db=cal_db.get(key_of(w)), calibration_se_db=cal_se.get(key_of(w)),
        confidence=float(confidence) if calibration_check else 0.0,
        margin_db=held_margin(w) if calibration_check and key_of(w) in cal_se else 0.0,
        dithered_pairs=_pair_summary(noise_table) if inter is not None else {})
