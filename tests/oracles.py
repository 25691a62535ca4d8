"""Independent references built from Python ints and ``fractions.Fraction``.

Nothing here imports fxp's arithmetic: only ``QFormat`` (for its bounds, which
the format tests check separately) and mode *names*.  These functions restate
the documented rules from first principles, one element at a time.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

HALF = Fraction(1, 2)
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
M64 = (1 << 64) - 1


def round_fraction(v: Fraction, mode: str, u: int | None = None) -> int:
    """Round the exact rational ``v`` to an integer with the named mode.

    For ``stochastic``, ``u`` is a uniform 64-bit integer; rounds up iff
    ``u < floor(frac(v) * 2**64)``.
    """
    fl = math.floor(v)
    r = v - fl
    if r == 0:
        return fl
    up = {
        "floor": False,
        "ceil": True,
        "to_zero": v < 0,
        "away": v > 0,
        "half_up": r >= HALF,
        "half_down": r > HALF,
        "half_to_zero": r > HALF or (r == HALF and v < 0),
        "half_away": r > HALF or (r == HALF and v > 0),
        "half_even": r > HALF or (r == HALF and fl % 2 == 1),
    }.get(mode)
    if mode == "stochastic":
        up = u < math.floor(r * (1 << 64))
    if up is None:
        raise ValueError(mode)
    return fl + 1 if up else fl


def fit(v: int, bits: int, signed: bool, lo: int, hi: int, mode: str) -> tuple[int, bool]:
    """Bring the integer ``v`` into [lo, hi]: (result, overflowed)."""
    if lo <= v <= hi:
        return v, False
    if mode == "wrap":
        m = v % (1 << bits)
        if signed and m >= 1 << (bits - 1):
            m -= 1 << bits
        return m, True
    if mode == "saturate_zero":
        return 0, True
    return (hi if v > hi else lo), True


def bounds(fmt, mode: str) -> tuple[int, int]:
    """Code range of ``fmt`` under overflow ``mode`` (narrow for saturate_symmetric)."""
    if fmt.signed:
        lo, hi = -(1 << (fmt.bits - 1)), (1 << (fmt.bits - 1)) - 1
        if mode == "saturate_symmetric":
            lo = -hi
    else:
        lo, hi = 0, (1 << fmt.bits) - 1
    return lo, hi


def value(code: int, frac_bits: int) -> Fraction:
    """Exact real value of a code."""
    return Fraction(code) / Fraction(2) ** frac_bits


def cast(code: int, src, dst, rmode: str, omode: str, u: int | None = None) -> tuple[int, bool]:
    """Cast one code between formats: exact value, round, then overflow."""
    v = value(code, src.frac_bits) * Fraction(2) ** dst.frac_bits
    lo, hi = bounds(dst, omode)
    return fit(round_fraction(v, rmode, u), dst.bits, dst.signed, lo, hi, omode)


def quantize(x: float, dst, rmode: str, omode: str, u: int | None = None) -> tuple[int, bool]:
    """Quantize one finite float exactly."""
    v = Fraction(x) * Fraction(2) ** dst.frac_bits
    lo, hi = bounds(dst, omode)
    return fit(round_fraction(v, rmode, u), dst.bits, dst.signed, lo, hi, omode)


def splitmix64(seed: int, index: int) -> int:
    """The documented splitmix64 stream, in Python ints."""
    z = (seed + (index + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def srdhm(a: int, b: int) -> int:
    """gemmlowp SRDHM from its definition: round(a*b / 2**31), ties toward +inf."""
    if a == b == INT32_MIN:
        return INT32_MAX
    return math.floor(Fraction(a * b, 1 << 31) + HALF)


def rdbpot(x: int, e: int) -> int:
    """RoundingDivideByPOT from its definition: x / 2**e, ties away from zero."""
    return round_fraction(Fraction(x, 1 << e), "half_away")


def wrap32(v: int) -> int:
    return ((v + (1 << 31)) % (1 << 32)) - (1 << 31)


def mbqm_double(x: int, m: int, exponent: int) -> tuple[int, bool]:
    """TFLite/gemmlowp double rounding; the int32 left shift wraps (flagged)."""
    shifted = x * (1 << max(exponent, 0))
    w = wrap32(shifted)
    return rdbpot(srdhm(w, m), max(-exponent, 0)), w != shifted


def mbqm_single(x: int, m: int, exponent: int) -> tuple[int, bool]:
    """TFLITE_SINGLE_ROUNDING: round(x*m / 2**(31-exponent)), ties toward +inf."""
    out = math.floor(Fraction(x * m, 1 << (31 - exponent)) + HALF)
    return out, not INT32_MIN <= out <= INT32_MAX


def requant_float32(acc: int, scale: float, zp: int, lo: int, hi: int) -> tuple[int, bool]:
    """MLAS: float32(acc) * float32(scale) rounded once to float32, RNE to int, + zp, clamp."""
    a32 = Fraction(float(np.float32(acc)))
    s32 = Fraction(float(np.float32(scale)))
    prod = float(np.float32(float(a32 * s32)))  # a32*s32 is exact in float64 (48 bits)
    r = round_fraction(Fraction(prod), "half_even") + zp
    if r > hi:
        return hi, True
    if r < lo:
        return lo, True
    return r, False


def accumulate(terms: list[int], bits: int, signed: bool, lo: int, hi: int, mode: str
               ) -> tuple[int, int]:
    """Sequential accumulation in index order; (sum, number of additions that overflowed)."""
    total, events = 0, 0
    for t in terms:
        total, over = fit(total + t, bits, signed, lo, hi, mode)
        events += over
    return total, events
