"""Independent reference for TFLite Micro's int8 SOFTMAX, one row at a time, in Python ints.

Nothing here imports fxp.  gemmlowp's ``fixedpoint.h`` is re-derived as a tiny
``FixedPoint`` class (a raw int32 and its number of integer bits) with the
template functions written generically (``Rescale``, ``ConstantPOT``,
``One``, ``exp_on_negative_values`` for any integer bits, Newton-Raphson
``one_over_one_plus_x_for_x_in_0_1``); every raw int32 operation wraps or
saturates exactly as the C++ does.  Prepare (``PreprocessSoftmaxScaling``,
``QuantizeMultiplierGreaterThanOne``, ``CalculateInputRadius``) uses
``math.frexp`` and exact fractions.  Slow and obviously right.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def wrap(v: int) -> int:
    """C int32 two's-complement wrap."""
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul: round(a*b / 2**31), ties away from zero."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return int(Fraction(ab + nudge, 1 << 31))  # int() truncates toward zero as C does


def rdbpot(x: int, e: int) -> int:
    """RoundingDivideByPOT: x / 2**e, ties away from zero."""
    q = Fraction(x, 1 << e)
    fl = math.floor(q)
    frac = q - fl
    if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and x > 0):
        return fl + 1
    return fl


def sat_mul_pot(x: int, e: int) -> int:
    """SaturatingRoundingMultiplyByPOT<e>."""
    if e <= 0:
        return rdbpot(x, -e)
    return max(INT32_MIN, min(INT32_MAX, x * (1 << e)))


@dataclass(frozen=True)
class FP:
    """gemmlowp ``FixedPoint<int32_t, ib>``: value = raw / 2**(31 - ib)."""

    raw: int
    ib: int

    def __add__(self, o: FP) -> FP:
        assert o.ib == self.ib
        return FP(wrap(self.raw + o.raw), self.ib)

    def __sub__(self, o: FP) -> FP:
        assert o.ib == self.ib
        return FP(wrap(self.raw - o.raw), self.ib)

    def __mul__(self, o: FP) -> FP:
        return FP(srdhm(self.raw, o.raw), self.ib + o.ib)

    def rescale(self, ib: int) -> FP:
        return FP(sat_mul_pot(self.raw, self.ib - ib), ib)


def const_pot(exponent: int, ib: int) -> FP:
    return FP(1 << (31 - ib + exponent), ib)


def one(ib: int) -> FP:
    return FP(INT32_MAX if ib == 0 else 1 << (31 - ib), ib)


def checked_const(raw: int, real: float, ib: int) -> FP:
    """GEMMLOWP_CHECKED_FIXEDPOINT_CONSTANT: the raw literal, checked against the real."""
    assert raw == round(real * (1 << (31 - ib))), (raw, real)
    return FP(raw, ib)


def exp_quarter(a: FP) -> FP:
    """exp on [-1/4, 0): Taylor series around -1/8 (gemmlowp)."""
    c = checked_const(1895147668, math.exp(-1.0 / 8.0), 0)
    third = checked_const(715827883, 1.0 / 3.0, 0)
    x = a + const_pot(-3, 0)
    x2 = x * x
    x3 = x2 * x
    x4 = x2 * x2
    x4_over_4 = FP(sat_mul_pot(x4.raw, -2), 0)
    inner = (x4_over_4 + x3) * third + x2
    poly = FP(sat_mul_pot(inner.raw, -1), 0)
    return c + c * (x + poly)


def exp_on_negative_values(a: FP) -> FP:
    """gemmlowp ``exp_on_negative_values`` for any integer bits; a Q0.31 result."""
    frac = 31 - a.ib
    quarter = const_pot(-2, a.ib)
    mask = quarter.raw - 1
    a_mod = FP((a.raw & mask), a.ib) - quarter
    result = exp_quarter(a_mod.rescale(0))
    remainder = (a_mod - a).raw
    for k in range(-2, 5):
        if a.ib > k:
            mult = FP(round(math.exp(-(2.0 ** k)) * (1 << 31)), 0)
            if remainder & (1 << (frac + k)):
                result = result * mult
    if a.ib > 5 and a.raw < -(1 << (36 - a.ib)):
        result = FP(0, 0)
    return one(0) if a.raw == 0 else result


def one_over_one_plus_x(a: FP) -> FP:
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1``: 1 / (1 + a), a in [0, 1)."""
    s = a.raw + one(0).raw
    half = FP(int(Fraction(s + (1 if s >= 0 else -1), 2)), 0)  # RoundingHalfSum
    x = checked_const(1515870810, 48.0 / 17.0, 2) + half * checked_const(-1010580540,
                                                                         -32.0 / 17.0, 2)
    for _ in range(3):
        hx = half * x
        one_minus = one(2) - hx
        x = x + (x * one_minus).rescale(2)
    return FP(x.raw, 1).rescale(0)  # ExactMulByPot<-1>: same raw, one integer bit fewer


def prepare(beta: float, input_scale: float) -> tuple[int, int, int]:
    """(multiplier, left_shift, diff_min): TFLM's int8 softmax Prepare."""
    real = min(Fraction(beta) * Fraction(input_scale) * (1 << 26), Fraction((1 << 31) - 1))
    frac, exp = math.frexp(float(real))  # real is an exact double product here
    q = Fraction(frac) * (1 << 31)
    m = math.floor(q + Fraction(1, 2))  # std::round, q > 0
    if m == 1 << 31:
        m //= 2
        exp += 1
    assert exp >= 0
    radius = math.floor(Fraction(31 * (1 << 26), 1 << exp))
    return m, exp, -radius


def softmax_row(row: list[int], beta: float, input_scale: float) -> list[int]:
    """TFLM reference int8 softmax of one row of int8 codes."""
    m, shift, diff_min = prepare(beta, input_scale)
    mx = max(row)
    exps = []
    for v in row:
        d = v - mx
        if d >= diff_min:
            exps.append(exp_on_negative_values(FP(srdhm(d * (1 << shift), m), 5)))
        else:
            exps.append(None)
    total = FP(0, 12)
    for e in exps:
        if e is not None:
            total = total + e.rescale(12)
    head = 32 - total.raw.bit_length()  # CountLeadingZeros of a positive int32
    nbou = 12 - head
    r = one_over_one_plus_x(FP(wrap((total.raw << head) - (1 << 31)), 0))
    out = []
    for e in exps:
        if e is None:
            out.append(-128)
        else:
            v = rdbpot((r * e).raw, nbou + 31 - 8) - 128
            out.append(max(-128, min(127, v)))
    return out


# --------------------------------------------------------------------------- int16
def f32(v: float) -> float:
    """Round a Python float (double) to the nearest float32 (``struct``: ties to even)."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def c_round(v: float) -> float:
    """std::round: half away from zero."""
    return float(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def gen_lut(func, lo: float, hi: float) -> list[int]:
    """TFLM ``gen_lut<float, int16_t, int16_t>`` with output range [-1, 1]: 513 entries.

    Each C float operation is the exact double result rounded once to float32.
    """
    step = f32((hi - lo) / 512)
    half = f32(step / 2)
    inv = f32(65536.0 / 2.0)
    lut = []
    for i in range(512):
        x = f32(lo + f32(i * step))
        val, mid = func(x), func(f32(x + half))
        nxt = func(f32(lo + f32((i + 1) * step)))
        sample = c_round(f32(val * inv))
        interp = c_round(f32(f32(f32(nxt * inv) + c_round(f32(val * inv))) / 2))
        bias = c_round(f32(f32(interp - c_round(f32(mid * inv))) / 2))
        lut.append(int(min(max(f32(sample - bias), -32768.0), 32767.0)))
    lut.append(int(min(max(c_round(f32(func(hi) * inv)), -32768.0), 32767.0)))
    return lut


EXP_LUT = gen_lut(lambda v: f32(math.exp(v)), -10.0, 0.0)
RECIP_LUT = gen_lut(lambda v: f32(1.0 / f32(1.0 + v)), 0.0, 1.0)


def lookup(value: int, lut: list[int]) -> int:
    """generic_int16_table_lookup: int16 value -> interpolated LUT entry."""
    index = 256 + (value >> 7)
    offset = value & 0x7F
    slope = lut[index + 1] - lut[index]
    return lut[index] + ((slope * offset + 64) >> 7)


def mbqm(x: int, m: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier (int32, gemmlowp double rounding)."""
    return rdbpot(srdhm(wrap(x * (1 << max(shift, 0))), m), max(-shift, 0))


def prepare_int16(beta: float, input_scale: float) -> tuple[int, int]:
    """QuantizeMultiplier(s * beta / (10 / 65535)) (frexp, std::round)."""
    real = input_scale * beta / (10.0 / 65535.0)
    frac, exp = math.frexp(real)
    m = math.floor(Fraction(frac) * (1 << 31) + Fraction(1, 2))
    if m == 1 << 31:
        m //= 2
        exp += 1
    return m, exp


def softmax_row_int16(row: list[int], beta: float, input_scale: float) -> list[int]:
    """TFLM ``SoftmaxInt16`` of one row of int16 codes (zero point 0)."""
    m, shift = prepare_int16(beta, input_scale)
    mx = max(row)
    exps = [lookup(max(-32768, min(32767, mbqm(v - mx, m, shift) + 32767)), EXP_LUT)
            for v in row]
    total = sum(exps)
    head = 32 - total.bit_length()
    shifted = ((total << (head - 1)) + (1 << 13)) >> 14
    r = lookup(max(-32768, min(32767, shifted - (1 << 15) - (1 << 16))), RECIP_LUT)
    rs = 31 - head
    return [max(0, min(32767, (e * r + (1 << (rs - 1))) >> rs)) for e in exps]
