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
import statistics

import numpy as np

__all__ = ["MAX_MEASUREMENTS", "MAX_TRIPLES", "MIN_CHANCE", "SIGMA_DB", "STEP",
           "chance", "cheaper_neighbours", "measured_neighbour_search", "neighbour_terms"]

MAX_MEASUREMENTS = 6
"""Most integer-engine measurements of neighbours per goal."""
SIGMA_DB = 0.4
"""Spread (dB) assumed for the prediction's error relative to the current plan's."""
MIN_CHANCE = 0.05
"""Neighbours whose chance of meeting the goal is below this are not measured."""
STEP = 3
"""Most widths a tensor moves in a one- or two-tensor change (three-tensor changes: 1)."""


MAX_TRIPLES = 400_000
"""Most three-tensor changes enumerated; beyond it (about 90 tensors) only one- and
two-tensor changes are tried."""


def neighbour_terms(problem, inter):
    """``(start, g, unary, caps)``: the lookups of ``inter``'s second-order noise for
    ``problem``'s tensors and widths (:meth:`~fxp.opt.interactions.Interactions.gram`,
    :meth:`~fxp.opt.interactions.Interactions.absorption`), computed once per search."""
    start, g = inter.gram(problem.names, problem.widths)
    caps = inter.absorption(problem.names, problem.widths)
    unary = [[float(g[a + k, a + k]) for k in range(len(ws))]
             for a, ws in zip(start, problem.widths, strict=True)]
    return np.asarray(start, dtype=np.int64), g, unary, caps


def _changes(choice, n_widths, saves=lambda i, k: True, triples: bool = True):
    """Every change of ``choice`` with at least one narrower width: one or two tensors
    moved by up to :data:`STEP` widths, three tensors by one width (at most
    :data:`MAX_TRIPLES`).  A tensor moves to a narrower width only where ``saves(i, k)``
    (that move alone lowers the cost); costs never fall as a width grows, so a change
    that only widens never saves.  ``triples=False``: one- and two-tensor changes only.
    Returns ``(tensor, index)``, two ``[M, 3]`` arrays:
    the tensors moved (-1 past the last) and their new width indices."""
    moves = [(i, k) for i, c in enumerate(choice)
             for k in range(max(0, c - STEP), min(n_widths[i], c + STEP + 1))
             if k > c or (k < c and saves(i, k))]
    ti = np.array([i for i, _ in moves] + [-1], dtype=np.int64)  # last: "no move"
    tk = np.array([k for _, k in moves] + [0], dtype=np.int64)
    narrow = np.append(tk[:-1] < np.asarray(choice, dtype=np.int64)[ti[:-1]], False)
    n = len(moves)
    none = np.full(n, n)
    x, y = np.triu_indices(n, 1)
    keep = ti[x] != ti[y]
    parts = [np.stack([np.arange(n), none, none], 1),
             np.stack([x[keep], y[keep], np.full(int(keep.sum()), n)], 1)]
    unit = np.flatnonzero(np.abs(tk[:-1] - np.asarray(choice)[ti[:-1]]) == 1)
    if triples and 3 <= len(unit) and math.comb(len(unit), 3) <= MAX_TRIPLES:
        tri = unit[np.array(list(itertools.combinations(range(len(unit)), 3)))]
        t = ti[tri]
        parts.append(tri[(t[:, 0] != t[:, 1]) & (t[:, 0] != t[:, 2]) & (t[:, 1] != t[:, 2])])
    idx = np.concatenate(parts)
    idx = idx[narrow[idx].any(axis=1)]
    return ti[idx], tk[idx]


def cheaper_neighbours(problem, inter, choice, cost, *, terms=None, max_noise=math.inf,
                       triples: bool = True):
    """``[(choice, cost, noise)]`` of the changes of ``choice`` (:func:`_changes`) that
    meet every constraint of ``problem`` but its noise row, cost less than ``cost`` and
    have a noise of at most ``max_noise``; ``noise`` is the second-order noise-to-signal
    ratio, the lookups of :meth:`~fxp.opt.interactions.Interactions.gram` plus the
    absorbed excess (``terms``: :func:`neighbour_terms`, computed here when None;
    ``triples=False``: no three-tensor changes).

    The lookups are running deltas: moving tensor ``i`` from row ``a`` to row ``r`` adds
    ``g[r, r] - g[a, a] + 2 (x[r] - g[r, a] - x[a] + g[a, a])`` (``x``: each row's sum
    over the plan's rows), and each two moves ``(a -> r), (b -> s)`` of one change add
    ``2 (g[r, s] - g[r, b] - g[a, s] + g[a, b])``; the excess (never negative) is added
    only to changes whose sum is within ``max_noise``."""
    from fxp.opt.problem import absorbed_excess

    start, g, unary, caps = neighbour_terms(problem, inter) if terms is None else terms
    choice = [int(k) for k in choice]

    def saves(i, k):
        alone = list(choice)
        alone[i] = k
        return problem.evaluate(alone)[0] < cost

    ti, tk = _changes(choice, [len(w) for w in problem.widths], saves, triples)
    if not len(ti):
        return []
    rows = start + np.asarray(choice, dtype=np.int64)
    x = g[:, rows].sum(axis=1)
    moved = ti >= 0
    a = np.where(moved, rows[np.maximum(ti, 0)], 0)
    r = np.where(moved, start[np.maximum(ti, 0)] + tk, 0)
    delta = g[r, r] - g[a, a] + 2 * ((x[r] - g[r, a]) - (x[a] - g[a, a]))
    lower = float(g[np.ix_(rows, rows)].sum()) + np.where(moved, delta, 0.0).sum(axis=1)
    for u, v in ((0, 1), (0, 2), (1, 2)):
        both = moved[:, u] & moved[:, v]
        ru, rv, au, av = r[:, u], r[:, v], a[:, u], a[:, v]
        lower += np.where(both, 2 * (g[ru, rv] - g[ru, av] - g[au, rv] + g[au, av]), 0.0)
    out = []
    saved, problem.target_db = problem.target_db, None  # every constraint but the noise row
    try:
        for m in np.flatnonzero(lower <= max_noise):
            cand = list(choice)
            for i, k in zip(ti[m], tk[m], strict=True):
                if i >= 0:
                    cand[i] = int(k)
            c = problem.evaluate(cand)[0]
            if c < cost and problem.feasible(cand):
                noise = max(0.0, float(lower[m]) + absorbed_excess(cand, unary, caps))
                if noise <= max_noise:
                    out.append((cand, c, noise))
    finally:
        problem.target_db = saved
    return out


def chance(z: float) -> float:
    """Standard normal probability of exceeding ``-z`` (``Phi(z)``)."""
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
    terms = search.terms if hasattr(search, "terms") else neighbour_terms(p, inter)
    res, w, pred, idx = found
    current_db, left = measured_db, MAX_MEASUREMENTS
    z_min = statistics.NormalDist().inv_cdf(MIN_CHANCE)
    while left > 0:
        choice = p.choice_of(w)
        offset = current_db - pred
        goal = need(w)
        # the least SQNR (dB) with a chance of at least MIN_CHANCE, as a noise bound
        least = goal - offset + SIGMA_DB * z_min - search.correction_db
        ranked = []
        for cand, c, noise in cheaper_neighbours(p, inter, choice, res.cost, terms=terms,
                                                 max_noise=10 ** (-least / 10) * (1 + 1e-9)):
            key = tuple(p.widths_of(cand))
            if key in measured:
                continue
            sq = (math.inf if noise == 0 else -10.0 * math.log10(noise)) + search.correction_db
            p_meet = chance((sq + offset - goal) / SIGMA_DB)
            if p_meet >= MIN_CHANCE:
                ranked.append(((res.cost - c) * p_meet, cand, c, noise, sq))
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
