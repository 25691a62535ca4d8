"""The cheapest plan whose integer-engine SQNR on the calibration split meets a goal.

The second-order prediction (:mod:`fxp.opt.interactions`) is still a model: on the
plans an optimizer picks it errs where the optimizer profits from its errors
(``bench_fidelity.py``, exact second-order MILP: two of ``mnist_cnn``'s first plans
measured 2.20 and 0.92 dB below their targets).  So each plan the search returns is
**measured**: the integer engine runs it on the calibration samples (the ones the noise
was measured on; nothing of the selection or held-out split), and the internal target of
the search (:meth:`fxp.opt.optimize._Search.for_goal`) is moved by what the measurement
says, raised when the plan falls short, lowered when it clears the goal by more than
:data:`SPARE_DB`, and kept inside the bracket of the targets already tried.  That is a
refit of the model's offset on measured plans, one plan at a time, and the MILP behind each
step is still solved exactly.  The cheapest plan measured at or above the goal is kept
(:data:`MAX_MEASURED_SOLVES` searches at most); where none is, the best one measured.
From the kept plan, :func:`fxp.opt.neighbour_search.measured_neighbour_search` measures
cheaper neighbours that the MILP never proposed and moves to any that meets the goal;
then :func:`fxp.opt.prediction_jump.prediction_jump` measures the plans the exact
second-order MILP predicts best among those at least 2% cheaper (further than the
neighbours), and where one meets the goal its neighbours are searched in turn.

The held-out margin.  A measurement on ``N`` calibration samples is itself a sample:
the held-out split measures the same plan a few tenths of a dB higher or lower.  With
``confidence`` ``p`` the goal is raised by :func:`held_out_margin_db`, the one-sided
``p`` bound on the difference between the two measurements (both splits samples of
one shuffled data set, :mod:`fxp.opt.splits`), so a plan measured at the raised goal on
calibration measures at least the goal on the held-out split with probability about
``p``.

Each search's plan is marked ``chosen`` in :attr:`fxp.opt.result.BitAllocation.solves`
only if it is kept; the measurements are its ``calibration_sqnr_db``.
"""

from __future__ import annotations

import math
import statistics

from fxp.errors import InfeasibleTargetError, PlanError
from fxp.opt.neighbour_search import measured_neighbour_search
from fxp.opt.prediction_jump import MAX_JUMPS, prediction_jump

__all__ = ["DEFAULT_CONFIDENCE", "MAX_MEASURED_SOLVES", "SPARE_DB", "check_confidence",
           "for_measured_goal", "held_out_margin_db"]

DEFAULT_CONFIDENCE = 0.95
"""Default chance that a plan measured at the raised goal on calibration meets the goal
on the held-out split (:func:`held_out_margin_db`)."""

MAX_MEASURED_SOLVES = 8
"""Most searches per goal, each ending in an integer-engine measurement (or a plan
already measured)."""
SPARE_DB = 0.15
"""A plan measured this far above the goal (dB) is tried with a lower internal target."""
_STEP_DB = 0.02
"""Added to each raise, so that a plan short by a rounding error is not found again."""


def check_confidence(confidence) -> None:
    """``confidence`` must be 0 (no margin) or a probability in [0.5, 1)."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
            or not (confidence == 0 or 0.5 <= confidence < 1):
        raise PlanError(f"confidence must be 0 (no margin) or in [0.5, 1), got {confidence!r}")


def held_out_margin_db(se_db: float, n_calibration: int, n_held_out: int,
                       confidence: float) -> float:
    """Margin (dB) over the goal for a plan measured on calibration with standard error
    ``se_db`` (:attr:`fxp.sim.evaluate.SimulationReport.output_sqnr_se_db`).

    The held-out measurement of ``n_held_out`` samples has standard error about
    ``se_db * sqrt(n_calibration / n_held_out)``, independent of the calibration one, so
    their difference has standard error ``se_db * sqrt(1 + n_calibration / n_held_out)``;
    the margin is ``z(confidence)`` of those (``z`` the standard normal quantile).
    0 for ``confidence`` 0 and for a nan ``se_db`` (one sample); with no held-out samples
    only the calibration term counts."""
    if confidence == 0 or not math.isfinite(se_db):
        return 0.0
    z = statistics.NormalDist().inv_cdf(confidence)
    ratio = n_calibration / n_held_out if n_held_out > 0 else 0.0
    return z * se_db * math.sqrt(1.0 + ratio)


def for_measured_goal(search, goal: float, reason: str, measure, margin_db=None,
                      jumps: int = MAX_JUMPS):
    """``(res, widths, predicted, solve index)`` of the cheapest plan whose ``measure``
    (integer-engine SQNR in dB on the calibration split) is at least ``goal`` plus
    ``margin_db(widths)`` (dB, default 0), by repeated :meth:`_Search.for_goal` calls
    (module docstring); the best measured plan where none meets it.

    Each step moves the internal target by the measured excess or shortfall, doubled each
    time the search returns a plan already measured (the prediction is a staircase in the
    target), and bisects once a short and a sufficient target bracket it; a target the
    search cannot reach bounds it from above.  ``jumps``: most measurements of the
    prediction jump (:func:`fxp.opt.prediction_jump.prediction_jump`; 0: none)."""
    first = len(search.solves)
    internal, lo, hi, cap = goal, -math.inf, math.inf, math.inf
    best = fallback = None
    why = reason
    measured: dict[tuple[int, ...], float] = {}
    scale = 1.0
    for _ in range(MAX_MEASURED_SOLVES):
        try:
            found = search.for_goal(internal, why)
        except InfeasibleTargetError:
            if best is None and fallback is None:
                raise
            cap = min(cap, internal)
            nxt, why = None, "internal target out of reach: lowered"
        else:
            res, w, _, i = found
            key = tuple(int(b) for b in res.widths)
            repeated = key in measured
            if not repeated:
                measured[key] = measure(w)
            m = measured[key]
            search.solves[i]["calibration_sqnr_db"] = m
            need = goal + (margin_db(w) if margin_db is not None else 0.0)
            scale = 2.0 * scale if repeated else 1.0
            if m >= need:
                if best is None or res.cost < best[0].cost:
                    best = found
                hi = min(hi, internal)
                if m - need <= SPARE_DB:
                    break
                nxt = internal - scale * (m - need)
                why = (f"calibration split (integer engine) {m - need:.2f} dB above the goal: "
                       "internal target lowered")
            else:
                if fallback is None or m > fallback[1]:
                    fallback = (found, m)
                lo = max(lo, internal)
                nxt = internal + scale * (need - m) + _STEP_DB
                why = (f"calibration split (integer engine) {need - m:.2f} dB short of the "
                       "goal: internal target raised")
        top = min(hi, cap)
        if nxt is None or not lo < nxt < top:
            if not (math.isfinite(lo) and math.isfinite(top)):
                break
            nxt = (lo + top) / 2
        if top - lo < _STEP_DB:
            break
        internal = nxt
    if best is not None and getattr(search, "inter", None) is not None:
        def need_of(w):
            return goal + (margin_db(w) if margin_db is not None else 0.0)

        def measured_db(found):
            return measured[tuple(int(b) for b in found[0].widths)]

        best = measured_neighbour_search(search, best, measured_db(best), need_of, measure,
                                         measured)
        jumped = prediction_jump(search, best, measured_db(best), need_of, measure, measured,
                                 jumps)
        if jumped[3] != best[3]:  # a jump moved: its neighbours too
            jumped = measured_neighbour_search(search, jumped, measured_db(jumped), need_of,
                                               measure, measured)
        best = jumped
    out = best if best is not None else fallback[0]
    for s in search.solves[first:]:
        s.pop("chosen", None)
    search.solves[out[3]]["chosen"] = True
    return out
