"""Power-of-two (shift) quantization and INQ's incremental partition (``shared/seeds/002``).

Source: Damb, Markis and Kovacs, "Shift Quantization" (2023), section 3.2,
eq. 1-3, after Zhou et al., "Incremental Network Quantization" (INQ, ICLR 2017).
Weights become ``{+-2**n2, ..., +-2**n1, 0}`` with, for ``b`` bits::

    n1 = ceil(log2(4/3 * max|W|))                       (eq. 1; INQ itself uses floor)
    n2 = n1 + 1 - 2**(b-1)                              (eq. 2)
    n  = floor(log2(4/3 * |w|));   w-hat = s(w) 2**n if n2 <= n <= n1, else 0   (eq. 3)

``floor(log2(4|w|/3)) = n`` means ``0.75 * 2**n <= |w| < 1.5 * 2**n``: the nearest
power of two in linear distance, the midpoint ``0.75 * 2**n`` between ``2**(n-1)``
and ``2**n`` going *up* (tie away from zero).  Weights below ``0.75 * 2**n2`` become
0.  Exact: ``n`` and ``n1`` come from ``frexp`` (``|w| = f 2**e``: ``n = e - 1 +
[f >= 3/4]``, ``n1 = e + [f > 3/4]``), never from a rounded ``log2``.

With eq. 1's ceiling, ``2**n1`` is reached only when ``max|W|`` is at least
``0.75 * 2**n1``; ``n1_rule="floor"`` follows the INQ paper (``n1 = n(max|W|)``),
so the largest weight always uses the top level.  Eq. 2 gives ``2**(b-1)``
magnitudes, i.e. ``2**b + 1`` levels with zero: one more than ``b`` bits hold
(INQ counts one bit for zero and uses ``2**(b-2)`` magnitudes); fxp follows the
seed and reports codes in ``[-2**(b-1), 2**(b-1)]``.

Codes: ``s(w) * (n - n2 + 1)`` for a nonzero weight, 0 for zero.  Hardware
meaning: ``w * x = s(w) * (x << n)`` -- a multiplication becomes a shift;
:func:`pow2_shifts` gives the ``(sign, shift)`` pairs with fxp's convention that a
positive shift divides by ``2**shift``.

>>> q = pow2([0.9, -0.3, 0.01, 0.0], bits=3)
>>> q.params["n1"], q.params["n2"], q.values.tolist(), q.codes.tolist()
(1, -2, [1.0, -0.25, 0.0, 0.0], [3, -1, 0, 0])
>>> pow2_shifts(q)[1].tolist()
[0, 2, 0, 0]
"""

from __future__ import annotations

import math

import numpy as np

from fxp.errors import FormatError
from fxp.quant.base import QuantizedTensor, Quantizer, as_weights, check_bits, register

__all__ = ["INQ_SCHEDULE", "Pow2", "inq_partition", "inq_step", "pow2", "pow2_shifts"]

INQ_SCHEDULE = (0.5, 0.75, 0.875, 1.0)
"""INQ's accumulated portions of frozen weights (the seed prints 85.5%, a typo for 87.5%)."""


def _exponent(a: np.ndarray) -> np.ndarray:
    """``floor(log2(4/3 * a))`` for ``a > 0``, exactly (``a = f * 2**e``, f in [1/2, 1))."""
    f, e = np.frexp(a)
    return e.astype(np.int64) - 1 + (f >= 0.75)


class Pow2(Quantizer):
    """Power-of-two quantizer (module docstring)."""

    min_bits = 1

    def __init__(self, n1_rule: str = "ceil") -> None:
        if n1_rule not in ("ceil", "floor"):
            raise FormatError(f"n1_rule must be 'ceil' (seed eq. 1) or 'floor' (INQ), "
                              f"got {n1_rule!r}")
        self.n1_rule = n1_rule
        self.name = "pow2" + (":floor" if n1_rule == "floor" else "")

    def fit(self, w: np.ndarray, bits: int, n1=None) -> dict:
        bits = check_bits(bits, 1, 24)
        m = float(np.max(np.abs(w)))
        if n1 is None:
            if m == 0:
                n1 = 0
            elif self.n1_rule == "floor":
                n1 = int(_exponent(np.array([m]))[0])
            else:
                f, e = math.frexp(m)
                n1 = e + (f > 0.75)
        n1 = int(n1)
        return {"bits": bits, "n1": n1, "n2": n1 + 1 - (1 << (bits - 1))}

    def side_bits(self, p: dict) -> int:
        return 8  # n1 as a small integer

    def encode(self, w: np.ndarray, p: dict) -> np.ndarray:
        a = np.abs(w)
        n = np.minimum(_exponent(np.where(a > 0, a, 1.0)), p["n1"])
        idx = np.where((a > 0) & (n >= p["n2"]), n - p["n2"] + 1, 0)
        return np.where(w < 0, -idx, idx).astype(np.int64)

    def decode(self, codes: np.ndarray, p: dict) -> np.ndarray:
        mag = np.abs(codes)
        v = np.where(mag > 0, np.ldexp(1.0, (mag - 1 + p["n2"]).astype(np.int64)), 0.0)
        return np.where(codes < 0, -v, v)

    def levels(self, p: dict) -> np.ndarray | None:
        if p["bits"] > 16:
            return None
        pos = np.ldexp(1.0, np.arange(p["n2"], p["n1"] + 1))
        return np.concatenate([-pos[::-1], [0.0], pos])


def pow2(w, bits: int = 4, *, axis: int | None = None, n1_rule: str = "ceil") -> QuantizedTensor:
    """Power-of-two quantization of ``w`` (module docstring)."""
    return Pow2(n1_rule)(w, bits, axis=axis)


def pow2_shifts(qt: QuantizedTensor) -> tuple[np.ndarray, np.ndarray]:
    """``(signs int8, shifts int64)`` with ``value = sign * 2**-shift`` (0 -> sign 0, shift 0).

    A positive shift divides by ``2**shift`` (arithmetic right shift of the
    activation); a negative one multiplies (left shift).  Works on any tensor
    whose values are 0 or +-powers of two.
    """
    v = np.asarray(qt.values, np.float64)
    f, e = np.frexp(np.abs(v))
    if np.any((v != 0) & (f != 0.5)):
        raise FormatError(f"quantizer {qt.name!r}: values are not all 0 or +-2**n")
    signs = np.sign(v).astype(np.int8)
    shifts = np.where(v != 0, 1 - e.astype(np.int64), 0)
    return signs, shifts


def inq_partition(w, fraction: float, frozen=None) -> np.ndarray:
    """INQ's pruning-inspired partition: the mask of weights frozen at ``fraction``.

    Keeps the already ``frozen`` mask and adds the largest-``|w|`` remaining
    weights (ties broken by flat index) until ``floor(fraction * n + 1/2)`` are
    frozen.  Nested along :data:`INQ_SCHEDULE` for unchanged ``w``.
    """
    a = as_weights(w)
    if not 0.0 <= float(fraction) <= 1.0:
        raise FormatError(f"fraction must lie in [0, 1], got {fraction!r}")
    mask = np.zeros(a.size, bool) if frozen is None else np.asarray(frozen, bool).ravel().copy()
    if mask.size != a.size:
        raise FormatError(f"frozen mask has {mask.size} entries, w has {a.size}")
    want = math.floor(float(fraction) * a.size + 0.5)
    order = np.argsort(-np.abs(a.ravel()), kind="stable")
    free = order[~mask[order]]
    need = max(0, want - int(mask.sum()))
    mask[free[:need]] = True
    return mask.reshape(a.shape)


def inq_step(w, fraction: float, bits: int, frozen=None) -> tuple[np.ndarray, np.ndarray]:
    """One INQ step: freeze up to ``fraction`` and quantize the frozen weights to powers of two.

    ``n1`` is fitted on the whole tensor (as INQ does per layer); the other
    weights stay float (a trainer would retrain them).  Returns ``(w_new, mask)``.
    """
    a = as_weights(w)
    mask = inq_partition(a, fraction, frozen)
    q = pow2(a, bits)
    return np.where(mask, q.values, a), mask


register("pow2", "pow2[:floor] (INQ power-of-two; floor = INQ's n1 rule)")(lambda *a: Pow2(*a))
register("inq", "alias of pow2")(lambda *a: Pow2(*a))
