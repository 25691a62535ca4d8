"""Ternary and binary weights: TWN, Hwang & Sung's L2-optimal step, XNOR-Net binary.

Sources (``shared/seeds/003``, Athar, "An overview of datatype quantization
techniques for CNNs", section III):

* **TWN** (Li, Zhang & Liu 2016; section III-B.2, eq. 5-9): threshold
  ``Delta = 0.7 * mean|W|`` (the normal-distribution approximation),
  ``code = s(w)`` where ``|w| > Delta`` else 0 (``|w| = Delta`` -> 0, eq. 5's
  ``|w_i| <= Delta``), ``alpha = mean of the kept |w|`` (eq. 8; 0 when none is
  kept), ``w-hat = alpha * code``.
* **Hwang & Sung** (2014; section III-A.2): an M-level uniform quantizer
  (``M = 2L + 1``, ``L = 2**(bits-1) - 1``; ternary is ``bits = 2``, M = 3) with
  levels ``k * Delta``, ``|k| <= L``, nearest level with ties toward zero (the
  midtread rule of :mod:`fxp.quant.uniform`), clipped to ``+-L``.  The step
  minimises ``E(Delta) = ||W - Delta * Q(W; Delta)||**2``: a 1-D grid search
  over ``Delta in (0, max|W|/L * 2]`` (``grid`` points, the first minimum kept),
  then the Lloyd-Max style refinement -- assign levels, refit
  ``Delta = <W, q> / <q, q>`` by least squares, repeat until the codes stop
  changing (each step never raises E; at most ``max_iter``).  This is the
  weight-space (L2) step, per tensor or per channel; the paper's network-wide
  initial step and per-layer search of the *output* error, which need the
  network and data, are :func:`fxp.quant.step_search.search_steps`.
* **Binary** (XNOR-Net, Rastegari et al. 2016; section III-B.1, eq. 2):
  ``code = sign(w)`` with ``sign(0) = +1`` (:func:`fxp.quant.binary.binarize`),
  ``alpha = mean|W|``.

>>> q = twn([0.5, -0.1, -0.9, 0.05])
>>> q.codes.tolist(), q.params["alpha"]
([1, 0, -1, 0], 0.7)
>>> binary([0.5, 0.0, -1.5]).values.tolist()
[0.6666666666666666, 0.6666666666666666, -0.6666666666666666]
"""

from __future__ import annotations

import numpy as np

from fxp.errors import FormatError
from fxp.quant.base import QuantizedTensor, Quantizer, check_bits, register
from fxp.quant.binary import binarize

__all__ = ["Binary", "HwangSung", "TWN", "binary", "hwang_sung", "twn"]


class TWN(Quantizer):
    """Ternary weight networks: threshold ``0.7 mean|W|``, scale = mean kept ``|w|``."""

    name = "twn"
    fixed_bits = 2
    float_params = ("alpha",)

    def __init__(self, factor: float = 0.7) -> None:
        self.factor = float(factor)
        if not self.factor >= 0:
            raise FormatError(f"TWN threshold factor must be >= 0, got {factor!r}")
        if self.factor != 0.7:
            self.name = f"twn:{self.factor:g}"

    def fit(self, w: np.ndarray, bits: int) -> dict:
        a = np.abs(w)
        delta = self.factor * float(a.mean())
        kept = a[a > delta]
        return {"bits": 2, "threshold": delta, "alpha": float(kept.mean()) if kept.size else 0.0}

    def encode(self, w: np.ndarray, p: dict) -> np.ndarray:
        return np.where(np.abs(w) > p["threshold"], np.sign(w), 0).astype(np.int64)

    def decode(self, codes: np.ndarray, p: dict) -> np.ndarray:
        return p["alpha"] * codes.astype(np.float64)

    def levels(self, p: dict) -> np.ndarray:
        return np.array([-p["alpha"], 0.0, p["alpha"]])


def _levels(w: np.ndarray, delta: float, lmax: int) -> np.ndarray:
    r = np.abs(w) / delta
    q = np.floor(r)
    q = np.minimum(q + ((r - q) > 0.5), lmax)
    return np.where(w < 0, -q, q)


class HwangSung(Quantizer):
    """L2-optimal M-level uniform quantizer with least-squares refinement (module docstring)."""

    name = "hwang"
    default_bits = 2
    min_bits = 2
    float_params = ("step",)

    def __init__(self, grid: int = 200, max_iter: int = 100) -> None:
        self.grid, self.max_iter = int(grid), int(max_iter)

    def fit(self, w: np.ndarray, bits: int) -> dict:
        bits = check_bits(bits, 2, 24)
        lmax = (1 << (bits - 1)) - 1
        flat = w.ravel()
        m = float(np.max(np.abs(flat)))
        if m == 0:
            return {"bits": bits, "qmax": lmax, "step": 1.0, "iterations": 0, "sse": 0.0}
        deltas = 2 * m / lmax * np.arange(1, self.grid + 1) / self.grid
        sse = [float(np.sum((flat - d * _levels(flat, d, lmax)) ** 2)) for d in deltas]
        delta = float(deltas[int(np.argmin(sse))])
        q = _levels(flat, delta, lmax)
        it = 0
        for it in range(1, self.max_iter + 1):  # noqa: B007
            qq = float(q @ q)
            if qq == 0:
                break
            delta = float(flat @ q) / qq
            q_new = _levels(flat, delta, lmax)
            if np.array_equal(q_new, q):
                break
            q = q_new
        return {"bits": bits, "qmax": lmax, "step": delta, "iterations": it,
                "sse": float(np.sum((flat - delta * q) ** 2))}

    def encode(self, w: np.ndarray, p: dict) -> np.ndarray:
        return _levels(w, p["step"], p["qmax"]).astype(np.int64)

    def decode(self, codes: np.ndarray, p: dict) -> np.ndarray:
        return p["step"] * codes.astype(np.float64)

    def levels(self, p: dict) -> np.ndarray | None:
        if p["qmax"] > (1 << 15):
            return None
        return p["step"] * np.arange(-p["qmax"], p["qmax"] + 1, dtype=np.float64)


class Binary(Quantizer):
    """XNOR-Net binary weights: ``sign(w)`` (``sign(0) = +1``) times ``alpha = mean|W|``."""

    name = "binary"
    fixed_bits = 1
    float_params = ("alpha",)

    def fit(self, w: np.ndarray, bits: int) -> dict:
        return {"bits": 1, "alpha": float(np.abs(w).mean())}

    def encode(self, w: np.ndarray, p: dict) -> np.ndarray:
        return binarize(w).astype(np.int64)

    def decode(self, codes: np.ndarray, p: dict) -> np.ndarray:
        return p["alpha"] * codes.astype(np.float64)

    def levels(self, p: dict) -> np.ndarray:
        return np.array([-p["alpha"], p["alpha"]])


def twn(w, *, axis: int | None = None, factor: float = 0.7) -> QuantizedTensor:
    """Ternary weight network quantization of ``w`` (module docstring)."""
    return TWN(factor)(w, axis=axis)


def hwang_sung(w, bits: int = 2, *, axis: int | None = None) -> QuantizedTensor:
    """Hwang & Sung L2-optimal uniform quantization (ternary for ``bits=2``)."""
    return HwangSung()(w, bits, axis=axis)


def binary(w, *, axis: int | None = None) -> QuantizedTensor:
    """XNOR-Net binarization of ``w`` with ``alpha = mean|W|``."""
    return Binary()(w, axis=axis)


register("twn", "twn[:FACTOR=0.7] (ternary, 2 bits)")(lambda f="0.7": TWN(float(f)))
register("ternary", "alias of twn")(lambda f="0.7": TWN(float(f)))
register("hwang", "hwang (Hwang & Sung L2-optimal M-level; ternary at 2 bits)")(HwangSung)
register("binary", "binary (XNOR-Net sign, alpha = mean|W|; 1 bit)")(Binary)
