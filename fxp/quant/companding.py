"""mu-law companding quantizer (Tonin & de Queiroz, section 2 and 3, ``shared/seeds/001``).

The seed tests "mu-law" non-uniform quantization with mu from 2**24 down to
2**2 without spelling out the formula; fxp uses the standard (ITU-T G.711
continuous) mu-law compressor on weights normalised by ``xmax = max|W|``::

    y     = s(x) * ln(1 + mu |x| / xmax) / ln(1 + mu)          in [-1, 1]
    X_q   = midtread(y) with step 1/qmax, qmax = 2**(bits-1) - 1, ties toward zero
    x-hat = s(X_q) * xmax * ((1 + mu)**(|X_q|/qmax) - 1) / mu

Evaluated in float64 with ``log1p`` / ``expm1``.  Levels are dense near zero:
the cell of code k is ``[F^-1((k - 1/2)/qmax), F^-1((k + 1/2)/qmax)]`` and the
reconstruction lies inside it.  ``mu`` must lie in ``[2**2, 2**24]``.

>>> q = mulaw([0.0, 0.01, -1.0], mu=255, bits=4)
>>> q.codes.tolist()
[0, 2, -7]
"""

from __future__ import annotations

import math

import numpy as np

from fxp.errors import FormatError
from fxp.quant.base import QuantizedTensor, Quantizer, check_bits, register

__all__ = ["MU_RANGE", "MuLaw", "mulaw"]

MU_RANGE = (4.0, float(1 << 24))
"""Allowed mu (the seed sweeps 2**2 .. 2**24)."""


class MuLaw(Quantizer):
    """mu-law compander followed by a midtread quantizer (module docstring)."""

    float_params = ("xmax",)
    min_bits = 2

    def __init__(self, mu: float = 255.0) -> None:
        mu = float(mu)
        if not MU_RANGE[0] <= mu <= MU_RANGE[1]:
            raise FormatError(f"mu must lie in [2**2, 2**24], got {mu!r}")
        self.mu = mu
        self.name = f"mulaw:{mu:g}"

    def fit(self, w: np.ndarray, bits: int, xmax=None) -> dict:
        bits = check_bits(bits, 2, 32)
        m = float(np.max(np.abs(w))) if xmax is None else float(xmax)
        if not (math.isfinite(m) and m >= 0):
            raise FormatError(f"xmax must be finite and >= 0, got {xmax!r}")
        return {"bits": bits, "qmax": (1 << (bits - 1)) - 1, "mu": self.mu,
                "xmax": m if m > 0 else 1.0}

    def encode(self, w: np.ndarray, p: dict) -> np.ndarray:
        a = np.minimum(np.abs(w) / p["xmax"], 1.0)
        r = np.log1p(p["mu"] * a) / math.log1p(p["mu"]) * p["qmax"]
        q = np.floor(r)
        q = np.minimum(q + ((r - q) > 0.5), p["qmax"]).astype(np.int64)
        return np.where(w < 0, -q, q)

    def decode(self, codes: np.ndarray, p: dict) -> np.ndarray:
        y = np.abs(codes) / p["qmax"]
        v = p["xmax"] * np.expm1(y * math.log1p(p["mu"])) / p["mu"]
        return np.where(codes < 0, -v, v)

    def levels(self, p: dict) -> np.ndarray | None:
        if p["qmax"] > (1 << 15):
            return None
        return self.decode(np.arange(-p["qmax"], p["qmax"] + 1), p)


def mulaw(w, mu: float = 255.0, bits: int = 8, *, axis: int | None = None) -> QuantizedTensor:
    """mu-law quantization of ``w`` (module docstring)."""
    return MuLaw(mu)(w, bits, axis=axis)


def _mu(text: str = "255") -> MuLaw:
    t = text.replace("**", "^")
    try:
        mu = 2.0 ** float(t[2:]) if t.startswith("2^") else float(t)
    except ValueError:
        raise FormatError(f"mu must be a number or 2^K, got {text!r}") from None
    return MuLaw(mu)


register("mulaw", "mulaw[:MU=255], MU a number or 2^K in 2^2..2^24")(_mu)
