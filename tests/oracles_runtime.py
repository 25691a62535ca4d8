"""Independent references for the other runtimes' arithmetic: Python ints and ``Fraction``.

Float arithmetic is emulated exactly: :func:`f32` / :func:`f64` round a
``Fraction`` to the nearest float32 / float64 (ties to even), so each C
operation ``a op b`` becomes ``f32(Fraction(a) op Fraction(b))``.  Never
imported by ``fxp``.
"""

from __future__ import annotations

import math
from fractions import Fraction

__all__ = ["f32", "f64", "mbqm_cmsis", "mbqm_double", "mbqm_ruy", "round_away", "round_even",
           "xnnpack_add", "xnnpack_mean"]


def _round_to_bits(x: Fraction, bits: int, emin: int) -> Fraction:
    """``x`` rounded to ``bits`` significant bits (ties to even), subnormals below ``2**emin``."""
    if x == 0:
        return Fraction(0)
    sign = -1 if x < 0 else 1
    a = abs(x)
    e = math.floor(math.log2(a.numerator) - math.log2(a.denominator))
    while Fraction(2) ** e > a:  # fix the float estimate of the exponent
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    e = max(e, emin)
    ulp = Fraction(2) ** (e - bits + 1)
    return sign * round_even(a / ulp) * ulp


def f32(x) -> Fraction:
    """The float32 nearest to ``x`` (a Fraction, int or float), as a Fraction."""
    return _round_to_bits(Fraction(x), 24, -126)


def f64(x) -> Fraction:
    """The float64 nearest to ``x``, as a Fraction."""
    return _round_to_bits(Fraction(x), 53, -1022)


def round_even(x: Fraction) -> int:
    """Nearest integer, ties to even."""
    f = math.floor(x)
    d = x - f
    return f + 1 if d > Fraction(1, 2) or (d == Fraction(1, 2) and f % 2) else f


def round_away(x: Fraction) -> int:
    """Nearest integer, ties away from zero (C ``round``)."""
    return int(math.copysign(math.floor(abs(x) + Fraction(1, 2)), x)) if x else 0


def _wrap32(v: int) -> int:
    return (v + 2 ** 31) % 2 ** 32 - 2 ** 31


def _split(shift: int) -> tuple[int, int]:
    return max(shift, 0), max(-shift, 0)


def _c_div(a: int, b: int) -> int:
    """C integer division (truncation toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def mbqm_ruy(x: int, m: int, shift: int) -> int:
    """ruy (``kernel_avx2_fma.cc``): ``h = round_half_up(int32(x << l) * m / 2**31)``, then
    ``round_half_up(h / 2**r)``."""
    left, right = _split(shift)
    h = math.floor(Fraction(_wrap32(x << left) * m, 2 ** 31) + Fraction(1, 2))
    return math.floor(Fraction(h, 2 ** right) + Fraction(1, 2)) if right else h


def mbqm_double(x: int, m: int, shift: int) -> int:
    """gemmlowp, transcribed: ``SaturatingRoundingDoublingHighMul`` (nudge ``2**30`` or
    ``1 - 2**30``, C division by ``2**31``) then ``RoundingDivideByPOT`` (mask / threshold)."""
    left, right = _split(shift)
    ab = _wrap32(x << left) * m
    high = _c_div(ab + (2 ** 30 if ab >= 0 else 1 - 2 ** 30), 2 ** 31)
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if (high & mask) > threshold else 0)


def mbqm_cmsis(x: int, m: int, shift: int) -> int:
    """CMSIS-NN ``arm_nn_requantize``, default build, transcribed:
    ``arm_nn_doubling_high_mult_no_sat`` (``(2**30 + m1*m2) >> 31``) then
    ``arm_nn_divide_by_power_of_two`` (threshold raised when the quotient is negative)."""
    left, right = _split(shift)
    high = (2 ** 30 + _wrap32(x * (1 << left)) * m) >> 31
    remainder = ((1 << right) - 1) & high
    result = high >> right
    threshold = ((1 << right) - 1) >> 1
    if result < 0:
        threshold += 1
    return result + (1 if remainder > threshold else 0)


def xnnpack_add(a: int, b: int, sa: float, za: int, sb: float, zb: int, sy: float,
                zy: int) -> int:
    """XNNPACK qs8 ADD from the scales (float32 emulated with Fractions)."""
    ra, rb = f32(Fraction(sa) / Fraction(sy)), f32(Fraction(sb) / Fraction(sy))
    e = math.floor(math.log2(max(ra, rb)))
    while Fraction(2) ** e > max(ra, rb):
        e -= 1
    while Fraction(2) ** (e + 1) <= max(ra, rb):
        e += 1
    shift = 20 - e
    ma, mb = round_even(ra * 2 ** shift), round_even(rb * 2 ** shift)
    acc = 2 ** (shift - 1) + ma * (a - za) + mb * (b - zb)
    return max(-128, min(127, math.floor(Fraction(acc, 2 ** shift)) + zy))


def xnnpack_mean(codes: list[int], sx: float, zx: int, sy: float, zy: int) -> int:
    """XNNPACK qs8 MEAN of ``codes`` (float32 emulated with Fractions)."""
    n = len(codes)
    scale = f32(f32(Fraction(sx) / Fraction(sy)) * f32(Fraction(1, n)))
    zp = f32(zy - f32(n * zx * scale))
    v = f32(f32(sum(codes)) * scale)
    return max(-128, min(127, round_even(f32(v + zp))))
