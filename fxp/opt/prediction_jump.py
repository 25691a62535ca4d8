"""Prediction jump: the best-predicted plan a real saving away, measured on calibration.

The measured neighbour search (:mod:`fxp.opt.neighbour_search`) looks one to three width
changes from the kept plan.  A cheaper plan that meets the goal can lie further away: on
``lenet5`` (weights 2..10 bits, every plan measured, ``benchmarks/bench_search_reach.py``)
the plans that meet the optimizer's own criterion at 16 and 22 dB and cost 2.3 and 2.7%
less than its plan are three and four width changes away, and among all plans at least
2% cheaper the second-order prediction ranks them 2nd of 3,933 and 1st of 12,113.

So, from the kept plan, this step solves the exact second-order MILP in budget mode: the
plan with the least second-order noise (the pairwise terms of
:meth:`~fxp.opt.interactions.Interactions.milp_terms` on linearised products of one-hot
vectors, each tensor's absorbed noise capped; every other constraint of the problem kept)
among those costing at most the kept plan's cost / (1 + :data:`SAVING`), every plan
already measured excluded by a no-good cut.  When even that plan's chance of meeting the
goal is below :data:`~fxp.opt.neighbour_search.MIN_CHANCE` (the prediction moved by the
kept plan's measured-minus-predicted offset, spread
:data:`~fxp.opt.neighbour_search.SIGMA_DB`), no cheaper plan has a better one and the
step stops.  Otherwise the integer engine measures it on the calibration split: at or
above the goal it becomes the kept plan and the next jump starts from it; below, it is
cut off and the next best is solved for.  :data:`MAX_JUMPS` measurements per goal at most;
nothing of the selection or held-out split is used.

The MILP has one ``W x W`` block of continuous variables per pair of tensors, so it runs
only on problems of at most :data:`MAX_TENSORS` tensors, with :data:`TIME_LIMIT_S` per solve;
a solve that fails or runs out of time ends the step (logged in the solves).  On ``lenet5``
(11 tensors of 15 widths) ``fxp plan`` runs 2-5.6x longer with the jump than without
(``benchmarks/bench_jump_time.py``); ``--jumps 0`` (``optimize_bits(jumps=0)``) skips it.
"""

from __future__ import annotations

import dataclasses
import math

from fxp.errors import InfeasibleTargetError, SolverError

__all__ = ["MAX_JUMPS", "MAX_TENSORS", "SAVING", "TIME_LIMIT_S", "jump_problem",
           "prediction_jump"]

MAX_JUMPS = 4
"""Most integer-engine measurements of jump plans per goal."""
SAVING = 0.02
"""A jump looks only at plans at least this fraction cheaper than the kept plan (smaller
savings are the neighbour search's)."""
MAX_TENSORS = 20
"""Largest problem (tensors) the pairwise MILP is built for: its size grows with the square
of the tensor count, and past about 20 tensors of 15 widths HiGHS may not finish a solve within
:data:`TIME_LIMIT_S` (a guard from one-off timings, not a benchmark)."""
TIME_LIMIT_S = 60.0
"""Time limit of one jump solve (s)."""


def jump_problem(problem, terms, budget: float):
    """``problem`` in budget mode: least second-order noise (``terms``:
    :func:`~fxp.opt.neighbour_search.neighbour_terms`) at cost <= ``budget``, every other
    constraint kept; its :meth:`~fxp.opt.problem.AllocationProblem.evaluate` noise of a
    choice is the second-order noise-to-signal ratio of that plan (no correction)."""
    from fxp.opt.interactions import gram_terms

    start, g, _, caps = terms
    unary, pairs = gram_terms(start, g, problem.widths)
    return dataclasses.replace(problem, target_db=None, budget=float(budget), noise=unary,
                               noise_pairs=pairs, absorption=list(caps))


def prediction_jump(search, found, measured_db, need, measure, measured,
                    max_jumps: int = MAX_JUMPS):
    """The kept plan after the module's jumps from ``found``.

    Parameters
    ----------
    search : fxp.opt.optimize._Search
        Its ``problem`` (target mode), ``inter``, ``terms``, ``correction_db`` and
        ``solver``; each jump's plan is appended to its ``solves`` with
        ``calibration_sqnr_db`` where measured.
    found : tuple
        ``(MilpResult, widths dict, predicted dB, solve index)`` of a plan measured at
        ``measured_db`` (dB), at or above ``need(widths)``.
    need, measure, measured
        As :func:`~fxp.opt.neighbour_search.measured_neighbour_search`: the dB a
        measurement must reach, the calibration-split measurement, and the width tuples
        already measured (dB; updated, each cut off from every jump).
    max_jumps : int
        Most jump measurements (default :data:`MAX_JUMPS`; 0: none).

    Returns
    -------
    tuple
        ``found`` or the cheaper plan a jump moved to, in the same form.
    """
    from fxp.opt.neighbour_search import MIN_CHANCE, SIGMA_DB, chance
    from fxp.opt.solve import MilpResult, solve_milp

    p = search.problem
    if max_jumps <= 0 or len(p.names) > MAX_TENSORS or p.target_db is None:
        return found
    terms = search.terms
    res, w, pred, idx = found
    current_db, left = measured_db, int(max_jumps)
    while left > 0 and res.cost > 0:  # (a free plan has nothing cheaper)
        budget = res.cost / (1.0 + SAVING)
        q = jump_problem(p, terms, budget)
        cuts = [[(i, [int(b)]) for i, b in enumerate(key)] for key in measured
                if len(key) == len(p.names)
                and all(int(b) in ws for b, ws in zip(key, p.widths, strict=True))]
        try:
            got = solve_milp(q, solver=search.solver, time_limit_s=TIME_LIMIT_S,
                             explain=False, cuts=cuts)
        except InfeasibleTargetError:
            break  # no unmeasured plan that cheap
        except SolverError as exc:
            search.solves.append({"internal_target_db": None, "predicted_sqnr_db": None,
                                  "cost": None, "widths": None,
                                  "reason": f"prediction jump from solve {idx + 1} stopped: "
                                            f"{str(exc)[:200]}"})
            break
        search.solve_time += got.solve_time_s
        noise = got.noise
        sq = (math.inf if noise <= 0 else -10.0 * math.log10(noise)) + search.correction_db
        widths = [int(b) for b in got.widths]
        wd = dict(zip(p.names, widths, strict=True))
        # the kept plan's need stands in for this one's (its margin needs its measurement)
        if chance((sq + current_db - pred - need(w)) / SIGMA_DB) < MIN_CHANCE:
            break  # the best prediction under the budget: no cheaper plan is likelier
        measured[tuple(widths)] = m = measure(wd)
        goal = need(wd)
        left -= 1
        cost = p.evaluate(got.choice)[0]
        search.solves.append({
            "internal_target_db": None, "predicted_sqnr_db": sq, "cost": cost,
            "widths": widths, "calibration_sqnr_db": m,
            "reason": f"prediction jump from solve {idx + 1}: best second-order prediction "
                      f"at cost <= {budget:.6g} (calibration split)"})
        if m >= goal:
            res = MilpResult(list(got.choice), widths, cost, noise, "prediction_jump",
                             got.solver)
            w, pred, idx, current_db = wd, sq, len(search.solves) - 1, m
    return res, w, pred, idx

