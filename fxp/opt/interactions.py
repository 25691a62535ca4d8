"""Pairwise interaction terms of the noise model, and the confidence of the noise estimates.

Lin's additive model (:mod:`fxp.opt.model`) predicts the output noise of a
mixed plan as ``sum_i n_i(b_i)``, each ``n_i`` measured with only tensor
``i`` quantized.  Its error is not a constant offset: on ``mnist_cnn`` a
weight-only plan is off by -0.8 dB and another by +1.4 dB, because the output
errors of two tensors are correlated (a layer's weight error and the next
layer's add coherently for some widths and cancel for others).

The measurement already holds what is missing.  :func:`~fxp.opt.noise.measure_noise`
keeps the logits' error vector ``e_i(b)`` of every single-tensor measurement
(:attr:`~fxp.opt.noise.NoiseTable.errors`, over the calibration samples).
When errors propagate linearly (small noise), the error of a mixed plan is
their sum, so its noise-to-signal ratio is::

    |sum_i e_i(b_i)|^2 / |ref|^2
        = sum_i n_i(b_i)  +  sum_{i<j} 2 <e_i(b_i), e_j(b_j)> / |ref|^2

the additive terms plus one measured interaction term per pair of tensors
and pair of widths (:meth:`Interactions.noise`; on ``mnist_cnn`` it matches
the fake-quant pass of the whole plan within 0.03 dB above 25 dB, 0.5 dB at
15 dB).  These need no extra forward pass.

Dithered pairs.  The inner product of two error vectors holds for the plan
only where both errors stay what they were measured as.  Where one tensor is an
activation that the other's error reaches before it is quantized
(:func:`dithered_pairs`), its quantizer rounds a perturbed signal in the mixed
plan, and the clean inner product can be far off in either direction; for
those pairs the term is measured with both tensors quantized
(:mod:`fxp.opt.pair_noise`, :attr:`~fxp.opt.noise.NoiseTable.pair_noise`) and
replaces the inner product wherever it was measured (one extra pass per dithered
pair and width pair).

Absorbed noise is capped.  A negative measured term is the downstream quantizer
absorbing part of the upstream tensor's error.  Each term is measured with only
its two tensors quantized, so where several downstream quantizers each absorb
the same upstream error the plain sum subtracts it once per quantizer and can
reach zero noise for a plan that measures 6 dB (``fashion_cnn`` at 2-3 bits).
No more than the upstream tensor's own noise can be absorbed: per upstream
tensor ``u`` the negative terms of its measured pairs count down to ``-n_u(b_u)``
and no further (:meth:`Interactions.absorption`, :func:`fxp.opt.problem.absorbed_excess`).  A
maximum of linear terms, so the MILP holds it exactly with one continuous
variable per upstream tensor (:func:`fxp.opt.problem.milp_problem`).

The interaction terms are products of two tensors' one-hot choices, so the
MILP keeps the additive, linear noise row (solved exactly, as before);
:func:`fxp.opt.optimize.optimize_bits` checks each optimum against this
second-order prediction **on the calibration samples**, re-solves with a
shifted internal target until the cheapest plan it finds meets the target
under it, and then improves that plan by a local search under the same
prediction (single- and two-tensor width changes).  Nothing of the selection
or held-out split is used for that.

:meth:`Interactions.standard_errors` gives each tensor's standard error
(dB) at a width from :data:`N_BATCHES` per-batch estimates of its noise (a
ratio estimator: the batches' error power over their signal power).
"""

from __future__ import annotations

import math

import numpy as np

from fxp.opt.problem import absorbed_excess

__all__ = ["N_BATCHES", "Interactions", "dithered_pairs", "gram_terms"]

N_BATCHES = 8
"""Per-batch estimates behind a standard error."""
_DB = 10.0 / math.log(10.0)


def dithered_pairs(graph, tensors) -> np.ndarray:
    """``d [T, T]`` bool for the quantizable ``tensors`` of ``graph``
    (:func:`fxp.opt.noise.quantizable_tensors`): ``d[i, j]`` where tensor ``j`` is an
    activation whose value tensor ``i``'s error reaches before it is quantized (``i`` is a
    weight of the layer producing it or of any layer before it on a path from the input, or
    an activation on such a path).  Directed (``i`` upstream): a dithered pair is ``d[i, j]``
    or ``d[j, i]``, never both; False on the diagonal."""
    acts = {t.tensor: k for k, t in enumerate(tensors) if t.kind == "act"}
    weights = {t.layer: k for k, t in enumerate(tensors) if t.kind == "weight"}
    reach = {x: 1 << acts[x] if x in acts else 0 for x in graph.inputs}  # bit masks
    d = np.zeros((len(tensors), len(tensors)), bool)
    for node in graph.nodes:
        m = 0
        for u in node.inputs:
            m |= reach.get(u, 0)
        if node.name in weights:
            m |= 1 << weights[node.name]
        j = acts.get(node.output)
        if j is not None:
            for i in range(len(tensors)):
                if m >> i & 1:
                    d[i, j] = True
            m |= 1 << j
        reach[node.output] = m
    return d


def gram_terms(start, g: np.ndarray, widths: list[list[int]]) -> tuple[list, dict]:
    """``(unary, pairs)`` of a :meth:`Interactions.gram` lookup table: ``unary[i][k] =
    g[r, r]`` and ``pairs[(i, j)] = 2 g[rows of i, rows of j]`` (``i < j``), with ``r =
    start[i] + k`` (:class:`~fxp.opt.problem.AllocationProblem`'s ``noise`` and
    ``noise_pairs``: their sum over a choice is ``g[rows][:, rows].sum()``)."""
    stop = [int(k) + len(ws) for k, ws in zip(start, widths, strict=True)]
    unary = [[float(g[r, r]) for r in range(a, b)] for a, b in zip(start, stop, strict=True)]
    pairs = {(i, j): 2.0 * np.asarray(g[start[i]:stop[i], start[j]:stop[j]], float)
             for i in range(len(widths)) for j in range(i + 1, len(widths))}
    return unary, pairs


class Interactions:
    """Second-order noise of mixed plans from a table's stored error vectors.

    Parameters
    ----------
    table : fxp.opt.noise.NoiseTable
        Measured with error vectors (:attr:`~fxp.opt.noise.NoiseTable.errors`).
    """

    def __init__(self, table):
        if table.errors is None or table.reference is None:
            raise ValueError("the noise table keeps no error vectors")
        self.table = table
        ref = np.asarray(table.reference, np.float64)
        self.signal = float(ref @ ref)
        self.n_samples = int(table.n_samples)
        self._ref_rows = (ref * ref).reshape(self.n_samples, -1).sum(axis=1)
        self._index = {n: i for i, n in enumerate(table.names)}
        self.pairs = getattr(table, "pair_noise", None) or {}
        """``{(i, j): [W, W]}``: measured terms of the dithered pairs (NaN: not measured)."""
        d = getattr(table, "dithered", None)
        self.upstream = {k: (k[0] if d[k] else k[1]) for k in self.pairs} \
            if d is not None else {}
        """``{(i, j): u}``: the tensor of each measured pair whose error reaches the other
        (the one whose noise a negative term absorbs, :meth:`absorption`)."""

    @classmethod
    def of(cls, table) -> Interactions | None:
        """The interactions of ``table``, or None when it keeps no error vectors."""
        if getattr(table, "errors", None) is None or getattr(table, "reference", None) is None:
            return None
        return cls(table)

    def _error(self, name: str, bits: int) -> np.ndarray:
        i = self._index[name]
        return self.table.errors[i, self.table.widths.index(int(bits))].astype(np.float64)

    def _override(self, g: np.ndarray, rows: list[tuple[int, int]]) -> np.ndarray:
        """``g`` (``<e_r, e_s> / |ref|^2`` between ``rows``, each ``(tensor index, width
        index)``) with each measured pair term (halved: ``g[r, s]`` and ``g[s, r]`` both
        count) in place of the inner product."""
        if not self.pairs:
            return g
        for r, (i, a) in enumerate(rows):
            for c, (j, b) in enumerate(rows):
                if i < j and (i, j) in self.pairs:
                    v = self.pairs[(i, j)][a, b]
                    if np.isfinite(v):
                        g[r, c] = g[c, r] = v / 2.0
        return g

    def _rows(self, names, widths) -> list[tuple[int, int]]:
        return [(self._index[n], self.table.widths.index(int(b)))
                for n, ws in zip(names, widths, strict=True) for b in ws]

    def gram(self, names: list[str], widths: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """``(start, g)``: the noise of any choice as a sum of lookups.  Row ``start[i] + k``
        of ``g`` is tensor ``names[i]`` at ``widths[i][k]``; ``g[r, s] = <e_r, e_s> /
        |ref|^2``, or half a measured pair term (:attr:`pairs`), so a plan's :meth:`noise` is
        ``g[rows][:, rows].sum()`` over its rows (one per tensor) plus
        :func:`~fxp.opt.problem.absorbed_excess` of :meth:`absorption`."""
        rows = self._rows(names, widths)
        e = np.stack([self.table.errors[i, a].astype(np.float64) for i, a in rows])
        g = self._override(e @ e.T / self.signal, rows)
        return np.concatenate([[0], np.cumsum([len(ws) for ws in widths])[:-1]]), g

    def milp_terms(self, names: list[str], widths: list[list[int]]) -> tuple[list, dict, list]:
        """``(unary, pairs, caps)`` of the second-order noise for an allocation problem:
        ``unary[i][k] = |e_i(w_k)|^2 / |ref|^2``, ``pairs[(i, j)][a, b] =
        2 <e_i(w_a), e_j(w_b)> / |ref|^2`` or the measured term of a dithered pair, and
        ``caps`` (:meth:`absorption`) (:class:`~fxp.opt.problem.AllocationProblem`'s
        ``noise``, ``noise_pairs`` and ``absorption``); the problem's noise of a choice is
        :meth:`noise`."""
        start, g = self.gram(names, widths)
        unary, pairs = gram_terms(start, g, widths)
        return unary, pairs, self.absorption(names, widths)

    def absorption(self, names: list[str], widths: list[list[int]]) -> list[tuple[int, list]]:
        """The caps on absorbed noise for tensors ``names`` at ``widths`` (positions into
        ``names``): ``[(u, [(p, q, neg), ...]), ...]``, one entry per upstream tensor ``u``
        of measured pairs, each pair ``p < q`` with ``neg[a, b] = min(0, measured term)`` at
        ``widths[p][a], widths[q][b]`` (0 where not measured).

        A negative measured term is the downstream quantizer absorbing part of the upstream
        error; measured two tensors at a time, two downstream quantizers would each absorb
        the same upstream error.  No more than the upstream tensor's own noise ``n_u`` can
        be absorbed, so the plan's noise is the sum of its terms plus, per ``u``,
        ``max(0, -n_u - sum of its negative terms)`` (:func:`~fxp.opt.problem.absorbed_excess`)."""
        pos = {self._index[n]: k for k, n in enumerate(names)}
        cols = [[self.table.widths.index(int(b)) for b in ws] for ws in widths]
        caps: dict[int, list] = {}
        for (i, j), m in self.pairs.items():
            if i not in pos or j not in pos or (i, j) not in self.upstream:
                continue
            p, q = pos[i], pos[j]
            sub = np.asarray(m, np.float64)[np.ix_(cols[p], cols[q])]
            neg = np.where(np.isfinite(sub), np.minimum(sub, 0.0), 0.0)
            if neg.any():
                if p > q:
                    p, q, neg = q, p, neg.T
                caps.setdefault(pos[self.upstream[(i, j)]], []).append((p, q, neg))
        return sorted(caps.items())

    def noise(self, widths: dict[str, int]) -> float:
        """Second-order noise-to-signal ratio: the additive terms plus one interaction term
        per pair (the inner product, or the measured term of a dithered pair), with no
        tensor's noise absorbed more than once (:meth:`absorption`); at least 0."""
        if self.signal <= 0:
            return math.inf
        if not widths:
            return 0.0
        names, ws = list(widths), [[b] for b in widths.values()]
        _, g = self.gram(names, ws)
        unary = [[float(g[k, k])] for k in range(len(names))]
        excess = absorbed_excess([0] * len(names), unary, self.absorption(names, ws))
        return max(0.0, float(g.sum()) + excess)

    def sqnr_db(self, widths: dict[str, int], correction_db: float = 0.0) -> float:
        n = self.noise(widths)
        return (math.inf if n == 0 else -10.0 * math.log10(n)) + correction_db

    def interaction_db(self, widths: dict[str, int]) -> float:
        """Second-order minus additive prediction (dB): > 0 when the errors partly cancel."""
        from fxp.opt.model import predict_sqnr_db

        return self.sqnr_db(widths) - predict_sqnr_db(self.table, widths)

    def _se_db(self, widths: dict[str, int]) -> float:
        """Standard error (dB) of the plan's noise from :data:`N_BATCHES` per-batch estimates
        (of the summed error vectors: the measured pair terms have no per-sample split)."""
        e = sum(self._error(n, b) for n, b in widths.items())  # clean inner products
        err_rows = (e * e).reshape(self.n_samples, -1).sum(axis=1)
        k = min(N_BATCHES, self.n_samples)
        total = err_rows.sum()
        if k < 2 or total <= 0:
            return math.nan
        parts = np.array_split(np.arange(self.n_samples), k)
        r = np.array([err_rows[p].sum() / max(self._ref_rows[p].sum(), 1e-300) for p in parts])
        return _DB * float(np.std(r, ddof=1) / math.sqrt(k)) / (total / self.signal)

    def standard_errors(self, widths: dict[str, int]) -> dict[str, float]:
        """Per tensor at its width: the standard error (dB) of its measured SQNR."""
        return {n: self._se_db({n: b}) for n, b in widths.items()}

    def total_standard_error_db(self, widths: dict[str, int]) -> float:
        """Standard error (dB) of the second-order prediction of the whole plan."""
        return self._se_db(widths)
