"""Measured joint noise of the dithered pairs (issue 23).

The second-order prediction of :mod:`fxp.opt.interactions` takes the interaction
of two tensors as ``2 <e_i, e_j>``, their error vectors measured each alone on
clean signals.  That holds while both errors stay what they were measured as.
It does not when one tensor is an activation that the other's error reaches
before it is quantized (a *dithered* pair, :func:`fxp.opt.interactions.dithered_pairs`):
its quantizer then rounds a perturbed signal.  Depending on the two steps the
perturbation is absorbed (a coarse quantizer maps most small perturbations,
and ReLU's zeros, back to the same code: on ``fashion_cnn`` an activation-only
plan with a 5-bit input, 4-bit ``relu1`` and ``relu2`` and a 7-bit ``fc1``
measured 18.9 dB against the additive 14.8 dB) or decorrelates the two errors
(``mnist_cnn``, an 8-bit input, 6-bit ``relu1``, 10-bit ``relu2`` and ``fc1``:
the clean inner products predicted 2.1 dB too little).  Both figures come from
a throwaway analysis of ``bench_fidelity.py``'s random plans, not from a test;
``tests/opt/test_fidelity.py`` checks that a dithered pair alone is predicted
within 0.1 dB of the integer engine.  Neither zero nor the clean inner product is right for
both, so for these pairs the interaction is **measured**: one fake-quant pass
with both tensors quantized gives ``e_ij`` and the term ``(|e_ij|^2 - |e_i|^2
- |e_j|^2) / |ref|^2`` that replaces ``2 <e_i, e_j> / |ref|^2``.

Which width pairs are measured: where the noisier of the two tensors alone measures at
most :data:`PAIR_MAX_DB` and the other at most :data:`PAIR_PARTNER_MAX_DB`; the rest keep
the clean inner product.  The partner's bound is the wider because a quantizer with little
noise of its own can still absorb a large upstream error: on ``fashion_cnn`` a 9-bit input
(47.8 dB alone) with a 9-bit ``relu1`` (55.7 dB alone) measures 48.2 dB, better than the
input alone, where the inner product predicts 46.4 dB (a random plan of ``bench_fidelity.py``
was 1.6 dB off through that one pair).  The passes run on the calibration samples of the
table, with its formats and roundings: one pass per upstream tensor and width recomputes
what lies downstream of it, and each downstream width then only what lies downstream of the
activation (:meth:`fxp.opt.noise._FakeQuant.run` ``base``).

The dithered pairs grow as the square of the tensors (every tensor upstream of an
activation), each with one pass per upstream width and one per width pair: on 1,000
images ``mnist_cnn`` makes 1,036 passes, ``lenet5`` 2,599 (2,329 width pairs),
``fashion_cnn`` 1,283; ``mobilenet_small`` about 21,000.  At most :data:`MAX_PAIR_PASSES`
passes are made: pairs are taken nearest first (fewest activations between the two, then
in tensor order), whole pairs only, and those that do not fit keep the clean inner product;
they are listed in :attr:`PairNoise.skipped`.  The three nets above fit, so their
benchmarks are unchanged by the budget.  Nearer pairs move their noise more: on 200 images
(``benchmarks/bench_pair_order.py``) nearest first keeps 30 of the 119 pairs of
``mobilenet_small`` whose term changes their noise by more than a quarter, and 20 of 34 of
``resnet_small`` (reversed or random orders: 16-22 and 2-11).  On ``resnet_small`` the budget
predicts random plans as well as every pair measured; on ``mobilenet_small`` no choice of
pairs beat the clean inner products.
"""

from __future__ import annotations

import numpy as np

from fxp.core.format import QFormat
from fxp.ops.fixed import dequantize, quantize

__all__ = ["MAX_PAIR_PASSES", "PAIR_MAX_DB", "PAIR_PARTNER_MAX_DB", "PairNoise",
           "measure_pair_noise"]

PAIR_MAX_DB = 50.0
"""A dithered pair's joint noise is measured at width pairs where the noisier tensor alone
measures at most this output SQNR (dB) ..."""
PAIR_PARTNER_MAX_DB = 65.0
"""... and the other at most this."""
MAX_PAIR_PASSES = 4000
"""Most fake-quant passes of :func:`measure_pair_noise` (module docstring)."""


class PairNoise(dict):
    """``{(i, j): m}`` of :func:`measure_pair_noise`, with the pairs it left unmeasured.

    Attributes
    ----------
    skipped : list of (int, int)
        Dithered pairs ``i < j`` past the pass budget (clean inner product kept).
    passes : int
        Fake-quant passes made.
    """

    def __init__(self, *args, skipped=(), passes: int = 0):
        super().__init__(*args)
        self.skipped, self.passes = list(skipped), passes


def _change(table, nodes, name: str, bits: int, acts: dict, weights: dict) -> None:
    """Add tensor ``name`` at ``bits`` (the table's format and rounding) to a pass."""
    t = table.tensors[table.index(name)]
    fmt = QFormat.parse(table.formats[name][bits])
    if t.kind == "weight":
        codes, _ = quantize(nodes[t.layer].weight.astype(np.float64), fmt, "half_even",
                            "saturate")
        weights[t.layer] = dequantize(codes, fmt).astype(np.float32)
    else:
        acts[t.tensor] = (fmt, "half_even" if t.layer is None else table.rounding)


def _work(table, max_db: float, partner_max_db: float) -> list[tuple]:
    """The dithered pairs, nearest first: ``(hops, i, j, u, v, [(a, bs), ...])`` with ``u``
    the upstream tensor, ``hops`` the activations between them, and per width index ``a``
    of ``u`` the width indices ``bs`` of ``v`` to measure."""
    d = table.dithered
    hops = d.astype(np.int64) @ d.astype(np.int64)  # activations k with u -> k -> v
    sq = np.where(np.isfinite(table.sqnr_db), table.sqnr_db, np.inf)
    nw = len(table.widths)
    out = []
    for i, j in zip(*np.nonzero(np.triu(d | d.T, 1)), strict=True):
        u, v = (i, j) if d[i, j] else (j, i)  # u's error reaches v
        steps = [(a, [b for b in range(nw) if min(sq[u, a], sq[v, b]) <= max_db
                      and max(sq[u, a], sq[v, b]) <= partner_max_db]) for a in range(nw)]
        out.append((int(hops[u, v]), int(i), int(j), int(u), int(v),
                    [(a, bs) for a, bs in steps if bs]))
    return sorted(out, key=lambda w: w[:3])


def measure_pair_noise(graph, calib_x: np.ndarray, table, max_db: float = PAIR_MAX_DB,
                       partner_max_db: float = PAIR_PARTNER_MAX_DB,
                       max_passes: int = MAX_PAIR_PASSES) -> PairNoise:
    """:class:`PairNoise` ``{(i, j): m}`` for the dithered pairs ``i < j`` of ``table``
    (tensor indices): ``m[a, b]`` is the measured interaction term at widths
    ``table.widths[a], [b]`` (noise-to-signal ratio, linear), NaN where not measured
    (module docstring); at most ``max_passes`` fake-quant passes, nearest pairs first.

    ``calib_x`` are the calibration samples the table was measured on (its first
    ``table.n_samples`` are used, as for its error vectors).
    """
    from fxp.opt.noise import _FakeQuant

    if table.errors is None or table.reference is None or table.dithered is None:
        return PairNoise()
    x = np.asarray(calib_x, np.float32)[:table.n_samples]
    fq = _FakeQuant(graph, x, table.rounding)
    ref = fq.base[fq.logits].astype(np.float64).ravel()
    signal = float(ref @ ref)
    if signal <= 0:
        return PairNoise()
    nodes = {n.name: n for n in graph.nodes}
    names, widths = table.names, table.widths
    own = [[float(np.dot(e, e)) for e in table.errors[i].astype(np.float64)]
           for i in range(len(names))]
    out, skipped, passes = {}, [], 0
    for _, i, j, u, v, steps in _work(table, max_db, partner_max_db):
        need = sum(1 + len(bs) for _, bs in steps)
        if not need:
            continue
        if passes + need > max_passes:
            skipped.append((i, j))
            continue
        passes += need
        m = np.full((len(widths), len(widths)), np.nan)
        for a, bs in steps:
            acts, weights = {}, {}
            _change(table, nodes, names[u], widths[a], acts, weights)
            upstream = fq.run(acts, weights, None)
            for b in bs:
                acts = {}
                _change(table, nodes, names[v], widths[b], acts, {})
                e = fq.run(acts, {}, None, base=upstream)[fq.logits]
                e = e.astype(np.float64).ravel() - ref
                term = (float(e @ e) - own[u][a] - own[v][b]) / signal
                m[(a, b) if u == i else (b, a)] = term
        out[(i, j)] = m
    return PairNoise(out, skipped=skipped, passes=passes)
