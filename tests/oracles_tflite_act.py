"""Independent reference for TFLite Micro's integer LOGISTIC, TANH and HARD_SWISH, in Python ints.

Nothing here imports fxp.  One element at a time, written from TFLM's
sources (``micro/kernels/logistic_common.cc``, ``tanh.cc``,
``hard_swish_common.cc``; ``reference/integer_ops/logistic.h``, ``tanh.h``,
``reference/hard_swish.h``) and gemmlowp's ``fixedpoint.h`` through the
generic ``FixedPoint`` re-derivation of :mod:`tests.oracles_tflite_softmax`
(``logistic``, ``tanh`` and ``one_minus_x_over_one_plus_x_for_x_in_0_1`` are
written here the same way).  Float32 steps are a double rounded once to
float32 (exact for one +, -, * or / of float32 values); int16 arithmetic is
done in Python ints with C's truncating division and explicit wraps.  The
256-entry ``sigmoid_table_uint16`` is data: the caller passes it in.
"""

from __future__ import annotations

import math
from fractions import Fraction

from tests.oracles_tflite_softmax import (
    FP,
    c_round,
    checked_const,
    exp_on_negative_values,
    f32,
    one,
    one_over_one_plus_x,
    rdbpot,
    srdhm,
    wrap,
)


def quantize_multiplier(real: float, single: bool = False) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: frexp, round half away, 2**31 folded, tiny flushed."""
    frac, exp = math.frexp(real)
    q = math.floor(Fraction(frac) * (1 << 31) + Fraction(1, 2))
    if q == 1 << 31:
        q, exp = q // 2, exp + 1
    if exp < -31:
        return 0, 0
    if single and exp > 30:
        return (1 << 31) - 1, 30
    return q, exp


def mbqm(x: int, m: int, shift: int, single: bool) -> int:
    """``MultiplyByQuantizedMultiplier(int32 x, m, shift)``: gemmlowp double rounding or
    ``TFLITE_SINGLE_ROUNDING`` (``(x*m + 2**(30-shift)) >> (31-shift)``)."""
    if single:
        total = 31 - shift
        return (x * m + (1 << (total - 1))) >> total
    return rdbpot(srdhm(wrap(x * (1 << max(shift, 0))), m), max(-shift, 0))


# --------------------------------------------------------------------------- gemmlowp
def one_minus_x_over_one_plus_x(a: FP) -> FP:
    """gemmlowp ``one_minus_x_over_one_plus_x_for_x_in_0_1``: (1 - a) / (1 + a)."""
    s = a.raw + one(0).raw
    half = FP(int(Fraction(s + (1 if s >= 0 else -1), 2)), 0)  # RoundingHalfSum
    x = checked_const(1515870810, 48.0 / 17.0, 2) + half * checked_const(-1010580540,
                                                                         -32.0 / 17.0, 2)
    for _ in range(3):
        x = x + (x * (one(2) - half * x)).rescale(2)
    return (x - one(2)).rescale(0)


def logistic(a: FP) -> FP:
    """gemmlowp ``logistic``: 1 / (1 + exp(-a)) for any ``a``; Q0.31."""
    abs_in = a if a.raw > 0 else FP(wrap(-a.raw), a.ib)
    pos = one_over_one_plus_x(exp_on_negative_values(FP(wrap(-abs_in.raw), a.ib)))
    if a.raw == 0:
        return checked_const(1 << 30, 0.5, 0)
    return pos if a.raw > 0 else one(0) - pos


def tanh(a: FP) -> FP:
    """gemmlowp ``tanh``: ``-t`` or ``t`` with ``t = (1 - exp(2n)) / (1 + exp(2n))``, ``n = -|a|``."""
    n = a if a.raw < 0 else FP(wrap(-a.raw), a.ib)
    t = one_minus_x_over_one_plus_x(exp_on_negative_values(FP(n.raw, n.ib + 1)))  # ExactMulByPot<1>
    if a.raw == 0:
        return FP(0, 0)
    return FP(wrap(-t.raw), 0) if a.raw < 0 else t


# --------------------------------------------------------------------------- int8
def prepare_int8(input_scale: float) -> tuple[int, int, int]:
    """``(multiplier, left_shift, radius)``: frexp of ``s * 2**27``, ``CalculateInputRadius``."""
    frac, shift = math.frexp(input_scale * (1 << 27))
    m = math.floor(Fraction(frac) * (1 << 31) + Fraction(1, 2))
    radius = math.floor(Fraction(15 * (1 << 27), 1 << shift))
    return m, shift, radius


def logistic_tanh_int8(x: int, zero_point: int, input_scale: float, single: bool,
                       is_tanh: bool) -> int:
    """One int8 LOGISTIC / TANH output code (``input_scale`` already float32)."""
    m, shift, radius = prepare_int8(input_scale)
    d = x - zero_point
    if d <= -radius:
        return -128
    if d >= radius:
        return 127
    a = FP(mbqm(d, m, shift, single), 4)
    if is_tanh:
        y = rdbpot(tanh(a).raw, 24)
    else:
        y = rdbpot(logistic(a).raw, 23) - 128
    return max(-128, min(127, y))


# --------------------------------------------------------------------------- int16
def checked_log2(x: float) -> tuple[bool, int]:
    """``CheckedLog2`` in float32 (``logf`` taken as correctly rounded)."""
    x_log2 = f32(f32(math.log(x)) * f32(1.0 / f32(math.log(2.0))))
    rounded = c_round(x_log2)
    return abs(f32(x_log2 - rounded)) < f32(1e-3), int(rounded)


def prepare_int16(input_scale: float, is_tanh: bool) -> tuple[int, int]:
    pot, log2 = checked_log2(input_scale)
    shift = 12 + log2
    if pot and (shift in (0, 1) if is_tanh else shift == 0):
        return 0, shift
    mult, shift = input_scale * 4096.0 * 3.0, 0
    while mult <= 32767.0 / 2.0 and shift <= 30:
        shift, mult = shift + 1, mult * 2.0
    return int(mult), shift  # static_cast<int32_t>: truncation


def lut_int16(x: int, input_scale: float, is_tanh: bool, table) -> int:
    """One int16 LOGISTIC / TANH output code (zero points 0)."""
    m, shift = prepare_int16(input_scale, is_tanh)
    if m == 0:
        m, shift = 3 << shift, 0
    v = (x * m + ((1 << (shift - 1)) if shift > 0 else 0)) >> shift
    a = abs(v)
    bits = 8 if is_tanh else 9
    uh, ut = a >> bits, a & ((1 << bits) - 1)
    if is_tanh:
        r = 0xFFFF << 8 if uh >= 255 else (table[uh] << 8) + ut * (table[uh + 1] - table[uh])
        r = r - (1 << 23) + (1 << 7) if v >= 0 else -r + (1 << 23) + (1 << 7) - 1
        return r >> 8
    r = 0x7FFF << 10 if uh >= 255 else (table[uh] << 9) + ut * (table[uh + 1] - table[uh])
    r = r + (1 << 9) if v >= 0 else (1 << 25) - r + (1 << 9) - 1
    return r >> 10


# --------------------------------------------------------------------------- HARD_SWISH
def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _s16(v: int) -> int:
    """C conversion to int16_t (two's complement wrap)."""
    return (v + (1 << 15)) % (1 << 16) - (1 << 15)


def srdhm16(a: int, b: int) -> int:
    if a == b == -32768:
        return 32767
    ab = a * b
    return _s16(_c_div(ab + ((1 << 14) if ab >= 0 else 1 - (1 << 14)), 1 << 15))


def sdhm16(a: int, b: int) -> int:
    if a == b == -32768:
        return 32767
    return _s16(_c_div(a * b, 1 << 15))


def sat_shl16(v: int, amount: int) -> int:
    return max(-32768, min(32767, v * (1 << amount)))


def downscale16(m: int) -> int:
    if m >= (1 << 31) - 1 - (1 << 15):
        return 32767
    return (m + (1 << 15)) >> 16


def prepare_hard_swish(s_in: float, s_out: float, single: bool) -> tuple[int, int, int, int]:
    hires = f32(f32(1.0 / 128.0) * s_in)
    om, oe = quantize_multiplier(f32(hires / s_out), single)
    rm, re = quantize_multiplier(f32(hires / f32(f32(3.0) / f32(32768.0))), single)
    return downscale16(rm), re, downscale16(om), oe


def hard_swish_int8(x: int, zp_in: int, zp_out: int, s_in: float, s_out: float,
                    single: bool) -> int:
    """One int8 HARD_SWISH output code (scales already float32)."""
    rm, re, om, oe = prepare_hard_swish(s_in, s_out, single)
    hires = _s16((x - zp_in) * 128)
    pre = srdhm16(hires, om)
    r = hires
    if re > 0:
        r = sat_shl16(r, re - 1)
    r = srdhm16(r, rm)
    if re > 0:
        r = sat_shl16(r, 1)
    if re < 0:
        r = rdbpot(r, -re)
    r = _s16((r + (1 << 15)) >> 1)
    out = _s16(rdbpot(sdhm16(r, pre), -oe) + zp_out)
    return max(-128, min(127, out))
