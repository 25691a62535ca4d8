"""Uniform scalar quantizers: midtread, midrise and dead-zone (Tonin & de Queiroz, Table 4).

Source: M. Tonin and R. L. de Queiroz, "On quantization of image classification
neural networks for compression without retraining", section 2, Table 4
(``shared/seeds/001``).  ``s(X)`` is the sign, ``Delta`` the step, ``sigma``
the relative dead zone; codes ``X_q`` are clipped to ``[-qmax, qmax]`` with
``qmax = 2**(bits-1) - 1`` (a symmetric ``bits``-bit signed integer)::

    midtread   X_q = s(X) * ceil(|X|/Delta - 1/2)      X-hat = Delta * X_q
    midrise    X_q = s(X) * ceil(|X|/Delta)            X-hat = s(X_q) * Delta * (|X_q| - 1/2)
    dead-zone  X_q = 0                 if |X|/Delta <= sigma
               X_q = s(X) * ceil(|X|/Delta - sigma)    X-hat = s(X_q) * Delta * (|X_q| + sigma - 1/2)

Tie rule.  Table 4 writes midtread as ``round(X/Delta)`` without a tie rule; fxp
rounds ties (``|X|/Delta = k + 1/2``) *toward zero in magnitude*, which is
exactly the dead-zone quantizer with ``sigma = 1/2`` -- the identity the paper
states ("midtread has sigma = 0.5").  Table 4's dead-zone test ``|X| < sigma*Delta``
and its ceiling agree at the boundary: ``|X| = sigma*Delta`` gives ``ceil(0) = 0``.
Midrise (``sigma = 0``) has no zero level; an exact ``X = 0`` gets code 0 and
``X-hat = 0`` (Table 4's ``s(X) * ceil(0)``), so zeros survive.

Step.  ``step="max"`` (default): ``Delta = max|W| / qmax`` so the largest weight
lands on the top code (the same Delta for all sigma, so the identities hold for
defaults too).  ``step="pow2"``: the smallest power of two with
``qmax * Delta >= max|W|``.  ``step=<float>``: given.  ``max|W| = 0`` gives
``Delta = 1`` (every code 0).

Arithmetic.  ``r = |X| / Delta`` is one float64 division (exact when Delta is a
power of two; then midtread runs through :func:`fxp.ops.fixed.quantize` with
``half_to_zero`` rounding and ``saturate_symmetric`` overflow, and the result
carries ``fmt``).  Everything after ``r`` is exact for ``sigma`` in {0, 1/2}
(``r - 1/2`` is exact below 2**52); for other sigma, ``r - sigma`` is rounded
once in float64.

>>> midtread([0.25, -0.75, 1.0], bits=3, step=0.5).codes.tolist()   # ties toward zero
[0, -1, 2]
>>> q = deadzone([0.25, -0.75, 1.0], 0.5, bits=3, step=0.5)
>>> q.codes.tolist(), q.values.tolist()
([0, -1, 2], [0.0, -0.5, 1.0])
>>> midrise([0.0, 0.2, -1.0], bits=3, step=0.5).values.tolist()
[0.0, 0.25, -0.75]
"""

from __future__ import annotations

import math

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FormatError
from fxp.ops import fixed
from fxp.quant.base import QuantizedTensor, Quantizer, check_bits, register

__all__ = ["DeadZone", "Midrise", "Midtread", "deadzone", "midrise", "midtread", "pow2_step"]


MIN_STEP = 2.0**-1000
"""Smallest step: below it the reconstruction levels fall into subnormal floats."""


def pow2_step(m: float, qmax: int) -> float:
    """Smallest power of two ``D`` with ``qmax * D >= m`` (exact; ``m > 0``)."""
    k = math.ceil(math.log2(m / qmax))
    while math.ldexp(qmax, k) < m:
        k += 1
    while math.ldexp(qmax, k - 1) >= m:
        k -= 1
    return math.ldexp(1.0, k)


def _is_pow2(x: float) -> bool:
    return x > 0 and math.frexp(x)[0] == 0.5


class _Uniform(Quantizer):
    """Shared fit (step, qmax) of the uniform family."""

    float_params = ("step",)
    min_bits = 2
    sigma: float = 0.5

    def __init__(self, step_mode: str = "max") -> None:
        if step_mode not in ("max", "pow2"):
            raise FormatError(f"step mode must be 'max' or 'pow2', got {step_mode!r}")
        self.step_mode = step_mode

    def fit(self, w: np.ndarray, bits: int, step=None) -> dict:
        bits = check_bits(bits, 2, 32)
        qmax = (1 << (bits - 1)) - 1
        m = float(np.max(np.abs(w)))
        step = self.step_mode if step is None else step
        if isinstance(step, str):
            if step not in ("max", "pow2"):
                raise FormatError(f"step must be a positive number, 'max' or 'pow2', got {step!r}")
            delta = 1.0 if m == 0 else (m / qmax if step == "max" else pow2_step(m, qmax))
        else:
            delta = float(step)
            if not (math.isfinite(delta) and delta > 0):
                raise FormatError(f"step must be finite and > 0, got {step!r}")
        if delta < MIN_STEP:
            raise FormatError(f"step {delta!r} (max|W| = {m!r}) is below 2**-1000: the "
                              "reconstruction levels would be subnormal floats and not exact")
        return {"bits": bits, "qmax": qmax, "step": delta, "sigma": float(self.sigma)}

    def _code_dz(self, w: np.ndarray, p: dict) -> np.ndarray:
        r = np.abs(w) / p["step"]
        sigma = p["sigma"]
        q = np.where(r <= sigma, 0.0, np.ceil(r - sigma))
        q = np.minimum(q, p["qmax"]).astype(np.int64)
        return np.where(w < 0, -q, q)

    def decode(self, codes: np.ndarray, p: dict) -> np.ndarray:
        mag = np.abs(codes).astype(np.float64)
        v = p["step"] * (mag + (p["sigma"] - 0.5))
        v = np.where(codes == 0, 0.0, v)
        return np.where(codes < 0, -v, v)

    def levels(self, p: dict) -> np.ndarray | None:
        if p["qmax"] > (1 << 15):
            return None
        pos = self.decode(np.arange(1, p["qmax"] + 1), p)
        return np.concatenate([-pos[::-1], [0.0], pos])


class DeadZone(_Uniform):
    """Dead-zone uniform quantizer with relative dead zone ``sigma`` (see module docstring)."""

    def __init__(self, sigma: float = 0.4, step_mode: str = "max") -> None:
        super().__init__(step_mode)
        sigma = float(sigma)
        if not 0.0 <= sigma <= 1.0:
            raise FormatError(f"dead-zone sigma must lie in [0, 1], got {sigma!r}")
        self.sigma = sigma
        self.name = f"deadzone:{sigma:g}" + (":pow2" if step_mode == "pow2" else "")

    def encode(self, w: np.ndarray, p: dict) -> np.ndarray:
        return self._code_dz(w, p)


class Midtread(_Uniform):
    """Midtread: ``X_q = round(X/Delta)`` with ties toward zero; ``X-hat = Delta * X_q``."""

    sigma = 0.5

    def __init__(self, step_mode: str = "max") -> None:
        super().__init__(step_mode)
        self.name = "midtread" + (":pow2" if step_mode == "pow2" else "")

    def fmt(self, p: dict) -> QFormat | None:
        d = p["step"]
        if not _is_pow2(d):
            return None
        try:
            return QFormat.from_frac(p["bits"], -(math.frexp(d)[1] - 1))
        except FormatError:  # a step beyond QFormat's int_bits range (-1024..1024): float path
            return None

    def encode(self, w: np.ndarray, p: dict) -> np.ndarray:
        fmt = self.fmt(p)
        if fmt is not None:  # exact path: fxp's quantizer on the binary value of each weight
            codes, _ = fixed.quantize(w, fmt, "half_to_zero", "saturate_symmetric")
            return np.clip(codes, -p["qmax"], p["qmax"])
        r = np.abs(w) / p["step"]
        q = np.floor(r)
        q = q + ((r - q) > 0.5)  # r - floor(r) is exact in float64: ties stay ties
        q = np.minimum(q, p["qmax"]).astype(np.int64)
        return np.where(w < 0, -q, q)

    def decode(self, codes: np.ndarray, p: dict) -> np.ndarray:
        return p["step"] * codes.astype(np.float64)


class Midrise(_Uniform):
    """Midrise: ``X_q = s(X) ceil(|X|/Delta)``, ``X-hat = s(X_q) Delta (|X_q| - 1/2)``; 0 -> 0."""

    sigma = 0.0

    def __init__(self, step_mode: str = "max") -> None:
        super().__init__(step_mode)
        self.name = "midrise" + (":pow2" if step_mode == "pow2" else "")

    def encode(self, w: np.ndarray, p: dict) -> np.ndarray:
        q = np.minimum(np.ceil(np.abs(w) / p["step"]), p["qmax"]).astype(np.int64)
        return np.where(w < 0, -q, q)


def midtread(w, bits: int = 8, *, step=None, axis: int | None = None,
             step_mode: str = "max") -> QuantizedTensor:
    """Midtread quantization of ``w`` (see the module docstring)."""
    return Midtread(step_mode)(w, bits, axis=axis, step=step)


def midrise(w, bits: int = 8, *, step=None, axis: int | None = None,
            step_mode: str = "max") -> QuantizedTensor:
    """Midrise quantization of ``w`` (see the module docstring)."""
    return Midrise(step_mode)(w, bits, axis=axis, step=step)


def deadzone(w, sigma: float = 0.4, bits: int = 8, *, step=None, axis: int | None = None,
             step_mode: str = "max") -> QuantizedTensor:
    """Dead-zone quantization of ``w`` with relative dead zone ``sigma`` (module docstring)."""
    return DeadZone(sigma, step_mode)(w, bits, axis=axis, step=step)


def _sigma(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise FormatError(f"dead-zone sigma must be a number, got {text!r}") from None


register("midtread", "midtread[:pow2]")(lambda *a: Midtread(*a))
register("midrise", "midrise[:pow2]")(lambda *a: Midrise(*a))
register("deadzone", "deadzone[:SIGMA=0.4[:pow2]]")(
    lambda sigma="0.4", *a: DeadZone(_sigma(sigma), *a))
