"""Measured neighbour search: cheaper plans next to the calibration check's plan.

The calibration check (:mod:`fxp.opt.measured_goal`) moves the MILP's internal target
and keeps the cheapest plan the integer engine measures at or above the goal on the
calibration split.  The MILP proposes only the optimum of the second-order prediction
at each internal target, so a cheaper plan that the prediction ranks a little lower
but that measures above the goal is never proposed (``bench_fidelity.py``, ``lenet5``
at 16 dB: a plan 3.7% cheaper, three width changes away, measures 16.07 dB on the
calibration split and no search proposed it).

This search starts from the kept plan and measures its cheaper neighbours (one or two
tensors moved up to :data:`STEP` widths, or three tensors one width each), one at a
time, in order of expected saving: the cost saved times the chance that the plan meets
the goal, ``Phi((prediction + offset - need) / SIGMA_DB)``, where the offset is the
current plan's measured minus predicted SQNR (dB).  A neighbour measured at or above
the goal becomes the current plan and its neighbours are ranked afresh.  Every
measurement is the integer engine on the calibration split (:data:`MAX_MEASUREMENTS`
per goal at most); nothing of the selection or held-out split is used.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["MAX_MEASUREMENTS", "MIN_CHANCE", "SIGMA_DB", "STEP", "cheaper_neighbours",
           "measured_neighbour_search"]

MAX_MEASUREMENTS = 6
"""Most integer-engine measurements of neighbours per goal."""
SIGMA_DB = 0.4
"""Spread (dB) assumed for the prediction's error relative to the current plan's."""
MIN_CHANCE = 0.05
"""Neighbours whose chance of meeting the goal is below this are not measured."""
STEP = 3
"""Most widths a tensor moves in a one- or two-tensor change (three-tensor changes: 1)."""


def _changes(choice, n_widths, saves=lambda i, k: True):
    """Every change of ``choice``: one or two tensors moved by up to :data:`STEP` widths,
    three tensors by one width; as an ``[M, n]`` array of new choices.  A tensor moves to
    a narrower width only where ``saves(i, k)`` (that move alone lowers the cost): a free
    tensor made narrower only adds noise."""
    n = len(choice)
    moves = [[(i, k) for k in range(max(0, c - STEP), min(n_widths[i], c + STEP + 1))
              if k > c or (k < c and saves(i, k))] for i, c in enumerate(choice)]
    unit = [[(i, k) for i, k in m if abs(k - choice[i]) == 1] for m in moves]
    out = [[mv] for m in moves for mv in m]
    for a, b in itertools.combinations(range(n), 2):
        out += [[x, y] for x in moves[a] for y in moves[b]]
    for a, b, c in itertools.combinations(range(n), 3):
        out += [list(t) for t in itertools.product(unit[a], unit[b], unit[c])]
    arr = np.tile(np.asarray(choice, dtype=np.int64), (len(out), 1))
    for r, change in enumerate(out):
        for i, k in change:
            arr[r, i] = k
    return arr


def cheaper_neighbours(problem, inter, choice, cost):
    """``[(choice, cost, noise)]`` of the changes of ``choice`` (:func:`_changes`) that
    meet every constraint of ``problem`` but its noise row and cost less than ``cost``;
    ``noise`` is the second-order noise-to-signal ratio (the lookups of
    :meth:`~fxp.opt.interactions.Interactions.gram` plus the absorbed excess)."""
    from fxp.opt.problem import absorbed_excess

    start, g = inter.gram(problem.names, problem.widths)
    caps = inter.absorption(problem.names, problem.widths)
    unary = [[float(g[a + k, a + k]) for k in range(len(ws))]
             for a, ws in zip(start, problem.widths, strict=True)]
    def saves(i, k):
        alone = list(choice)
        alone[i] = k
        return problem.evaluate(alone)[0] < cost

    cands = _changes(choice, [len(w) for w in problem.widths], saves)
    rows = cands + np.asarray(start, dtype=np.int64)
    lower = g[rows[:, :, None], rows[:, None, :]].sum(axis=(1, 2))  # before the excess
    out = []
    saved, problem.target_db = problem.target_db, None  # every constraint but the noise row
    try:
        for cand, base in zip(cands.tolist(), lower, strict=True):
            c = problem.evaluate(cand)[0]
            if c < cost and problem.feasible(cand):
                noise = max(0.0, float(base) + absorbed_excess(cand, unary, caps))
                out.append((cand, c, noise))
    finally:
        problem.target_db = saved
    return out


def _chance(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def measured_neighbour_search(search, found, measured_db, need, measure, measured):
    """The cheapest plan reached from ``found`` by the module's search.

    Parameters
    ----------
    search : fxp.opt.optimize._Search
        Its ``problem``, ``inter`` (second-order prediction) and ``correction_db``; each
        measured neighbour is appended to its ``solves`` with ``calibration_sqnr_db``.
    found : tuple
        ``(MilpResult, widths dict, predicted dB, solve index)`` of a plan measured at
        ``measured_db`` (dB), at or above ``need(widths)``.
    need : callable
        ``widths -> dB`` the measurement must reach (the goal plus any margin).
    measure : callable
        ``widths -> dB``: integer-engine SQNR on the calibration split.
    measured : dict
        Width tuples already measured (dB); updated, and never measured twice.

    Returns
    -------
    tuple
        ``found`` or the cheaper plan the search moved to, in the same form.
    """
    from fxp.opt.solve import MilpResult

    p, inter = search.problem, search.inter
    res, w, pred, idx = found
    current_db, left = measured_db, MAX_MEASUREMENTS
    while left > 0:
        choice = p.choice_of(w)
        offset = current_db - pred
        goal = need(w)
        ranked = []
        for cand, c, noise in cheaper_neighbours(p, inter, choice, res.cost):
            key = tuple(p.widths_of(cand))
            if key in measured:
                continue
            sq = (math.inf if noise == 0 else -10.0 * math.log10(noise)) + search.correction_db
            chance = _chance((sq + offset - goal) / SIGMA_DB)
            if chance >= MIN_CHANCE:
                ranked.append(((res.cost - c) * chance, cand, c, noise, sq))
        ranked.sort(key=lambda r: -r[0])
        moved = False
        for _, cand, c, noise, sq in ranked:
            if left <= 0:
                break
            widths = p.widths_of(cand)
            wd = dict(zip(p.names, widths, strict=True))
            key = tuple(widths)
            measured[key] = m = measure(wd)
            left -= 1
            search.solves.append({
                "internal_target_db": None, "predicted_sqnr_db": sq, "cost": c,
                "widths": widths, "calibration_sqnr_db": m,
                "reason": f"measured neighbour of solve {idx + 1} (calibration split)"})
            if m >= need(wd):
                res = MilpResult(cand, widths, c, noise, "neighbour_search", res.solver)
                w, pred, idx, current_db = wd, sq, len(search.solves) - 1, m
                moved = True
                break
        if not moved:
            break
    return res, w, pred, idx
