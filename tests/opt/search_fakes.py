"""Stand-ins for the measured searches' tests (:mod:`fxp.opt.neighbour_search`,
:mod:`fxp.opt.prediction_jump`): error vectors whose summed square is a plan's noise, the
fields of ``_Search`` the searches read, and a hypothesis strategy of small problems."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from fxp.opt.neighbour_search import neighbour_terms
from fxp.opt.problem import AllocationProblem


class VectorInteractions:
    """A stand-in for :class:`fxp.opt.interactions.Interactions`: tensor ``i`` at its
    ``k``-th width adds the error vector ``errors[i][k]``; the noise of a plan is
    ``|sum of its vectors|^2 / signal``."""

    def __init__(self, errors, signal):
        self.errors, self.signal = errors, signal

    def gram(self, names, widths):
        rows = [v for vs in self.errors for v in vs]
        start = np.cumsum([0] + [len(vs) for vs in self.errors[:-1]])
        m = np.array(rows)
        return start, (m @ m.T) / self.signal

    def absorption(self, names, widths):
        return []

    def noise_of(self, choice):
        e = sum(self.errors[i][k] for i, k in enumerate(choice))
        return float(e @ e) / self.signal


class Search:
    """The fields of :class:`fxp.opt.optimize._Search` the measured searches read."""

    def __init__(self, problem, inter):
        self.problem, self.inter, self.correction_db = problem, inter, 0.0
        self.solves: list[dict] = []
        self.solver, self.solve_time = None, 0.0
        self.terms = neighbour_terms(problem, inter)


@st.composite
def problems(draw):
    """3-5 tensors, 4-6 widths each, weights (cost = size x bits) or free tensors; error
    vectors that shrink with the width and partly correlate."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(3, 5))
    widths, cost, errors = [], [], []
    shared = rng.normal(size=8)
    for _ in range(n):
        ws = list(range(2, 2 + int(rng.integers(4, 7))))
        free = rng.random() < 0.3
        size = float(rng.integers(1, 500))
        widths.append(ws)
        cost.append([0.0 if free else size * b for b in ws])
        mix = rng.uniform(0, 1)
        errors.append([2.0 ** -b * (mix * shared + rng.normal(size=8)) for b in ws])
    inter = VectorInteractions(errors, signal=1.0)
    noise = [[inter.noise_of([0] * i + [k] + [0] * (n - i - 1)) for k in range(len(ws))]
             for i, ws in enumerate(widths)]  # (not read by the search)
    p = AllocationProblem([f"t{i}" for i in range(n)], widths, noise, cost, target_db=10.0)
    choice = [int(rng.integers(len(ws))) for ws in widths]
    return p, inter, choice
