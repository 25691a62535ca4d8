"""The selection split's check of a searched plan (step 3 of :mod:`fxp.opt.optimize`).

Shared by :func:`fxp.opt.optimize.optimize_bits` (per-tensor widths) and
:func:`fxp.opt.channel_optimize.optimize_channel_widths` (per-channel weight widths):
the integer engine measures the searched plan on the selection split; below the target
it measures the plan on the calibration and selection samples together (one split alone
measures a plan to a few tenths of a dB); below the target there too, the search's goal
is raised by that shortfall (plus 0.02 dB) and the search runs again, ``max_refine``
times at most.  These measurements drive the search, so the selection split is not held
out; nothing here touches the held-out split.
"""

from __future__ import annotations

import numpy as np

from fxp.errors import InfeasibleTargetError

__all__ = ["RAISE_REASON", "refine_on_selection"]

RAISE_REASON = "calibration and selection splits together below the target: goal raised"
"""The ``reason`` of every search this check asks for (in the solve log)."""

RAISE_STEP_DB = 0.02
"""Added to each raise of the goal, so that a plan short by a rounding error is not found
again."""


def refine_on_selection(graph, found, target_db: float, search_for_goal, plan_of, solves,
                        calibration, selection, *, max_refine: int, reachable):
    """``(found, selection report)`` after the selection split's check (module docstring).

    Parameters
    ----------
    graph : Graph
    found : tuple ``(result, widths, predicted dB, solve index)``
        The search's plan for the target (what ``search_for_goal`` returns).
    target_db : float
        Output SQNR target (dB).
    search_for_goal : callable ``(goal dB, reason) -> found``
        The search (calibration split only); may raise
        :class:`~fxp.errors.InfeasibleTargetError`, which ends the refinement.
    plan_of : callable ``widths -> Plan``
    solves : list of dict
        The search's solve log; the solve of each measured plan gets
        ``selection_sqnr_db`` (and ``calibration_and_selection_sqnr_db`` where measured).
    calibration, selection : ``(x, y)``
        The two splits' samples and labels.
    max_refine : int
        Most searches after the first.
    reachable : callable ``goal dB -> bool``
        False when no widths can reach the raised goal (the last plan is kept).

    Returns
    -------
    found, SimulationReport or None
        The last plan searched and its selection-split measurement (None: empty split).
    """
    from fxp.sim.evaluate import simulate

    (cx, cy), (sx, sy) = calibration, selection
    rep = None
    goal = float(target_db)
    for k in range(max_refine + 1):
        if len(sx) == 0:
            break
        plan = plan_of(found[1])
        rep = simulate(graph, plan, sx, sy)
        solves[found[3]]["selection_sqnr_db"] = rep.output_sqnr_db
        if rep.output_sqnr_db >= target_db or k == max_refine:
            break
        pooled = simulate(graph, plan, np.concatenate([cx, sx]),
                          np.concatenate([cy, sy])).output_sqnr_db
        solves[found[3]]["calibration_and_selection_sqnr_db"] = pooled
        if pooled >= target_db:
            break
        goal += target_db - pooled + RAISE_STEP_DB
        if not reachable(goal):
            break  # the raised goal is out of reach: keep the last plan
        try:
            found = search_for_goal(goal, RAISE_REASON)
        except InfeasibleTargetError:
            break
    return found, rep
