"""Numba twin of :mod:`fxp.kernels.spec_tflite_softmax` (TFLM's int8 SOFTMAX).

Scalar gemmlowp fixed-point on int32 values held in int64:
``SaturatingRoundingDoublingHighMul`` and ``RoundingDivideByPOT`` are
:func:`fxp.kernels.scalar.srdhm` / :func:`~fxp.kernels.scalar.rdbpot`;
``exp_on_negative_values`` (Q5.26 in) and
``one_over_one_plus_x_for_x_in_0_1`` are restated here step for step.  One
row at a time: max, sum of Q12.19 exps, ``GetReciprocal``, then each output
``RoundingDivideByPOT(SRDHM(r, e), 35 - clz(sum)) - 128`` clamped to int8.
int16 (``SoftmaxInt16``): the two 513-entry LUTs of the specification,
interpolated as ``generic_int16_table_lookup``.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit, kernel, prange
from fxp.kernels.scalar import rdbpot, srdhm

__all__ = ["softmax_int8_rows", "softmax_int16_rows"]

_BARREL_K = np.array([-2, -1, 0, 1, 2, 3, 4], np.int64)
_BARREL_M = np.array([1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242],
                     np.int64)


@jit
def _wrap32(v):
    return ((v + (np.int64(1) << 31)) & np.int64(0xFFFFFFFF)) - (np.int64(1) << 31)


@jit
def _sat_shl(x, e):
    threshold = (np.int64(1) << (31 - e)) - 1
    if x > threshold:
        return np.int64(2147483647)
    if x < -threshold:
        return np.int64(-2147483648)
    return x << e


@jit
def _exp_quarter(a):
    c = np.int64(1895147668)
    x = _wrap32(a + (np.int64(1) << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_4 = rdbpot(x4, 2)
    poly = rdbpot(_wrap32(srdhm(_wrap32(x4_4 + x3), np.int64(715827883)) + x2), 1)
    return _wrap32(c + srdhm(c, _wrap32(x + poly)))


@jit
def exp_on_negative(a, int_bits):
    """gemmlowp ``exp_on_negative_values`` of a ``FixedPoint<int32, int_bits>`` raw ``a <= 0``
    (``int_bits`` <= 5); Q0.31 out."""
    if a == 0:
        return np.int64(2147483647)
    frac = 31 - int_bits
    quarter = np.int64(1) << (frac - 2)
    mod = (a & (quarter - 1)) - quarter
    result = _exp_quarter(_sat_shl(mod, int_bits))
    remainder = _wrap32(mod - a)
    for j in range(7):
        if int_bits > _BARREL_K[j] and remainder & (np.int64(1) << (frac + _BARREL_K[j])):
            result = srdhm(result, _BARREL_M[j])
    return result


@jit
def exp_on_negative5(a):
    """gemmlowp ``exp_on_negative_values`` of a Q5.26 raw value ``a <= 0``; Q0.31 out."""
    return exp_on_negative(a, 5)


@jit
def newton_one_over_one_plus_x(a):
    """gemmlowp's Newton-Raphson ``x ~ 1 / (1 + a)`` in Q2.29 (48/17 - 32/17 * half, three
    steps), ``half = (1 + a) / 2`` from a Q0.31 ``a >= 0``: shared by its two callers."""
    half = (a + np.int64(2147483647) + 1) // 2
    x = _wrap32(np.int64(1515870810) + srdhm(half, np.int64(-1010580540)))
    for _ in range(3):
        one_minus = _wrap32((np.int64(1) << 29) - srdhm(half, x))
        x = _wrap32(x + _sat_shl(srdhm(x, one_minus), 2))
    return x


@jit
def one_over_one_plus_x(a):
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1``, Q0.31 ``a >= 0`` in and out."""
    return _sat_shl(newton_one_over_one_plus_x(a), 1)


@kernel
def softmax_int8_rows(x, multiplier, left_shift, diff_min):
    """int8 codes ``x [N, n]`` -> ``(codes [N, n], n_clamped)``, TFLM's reference softmax."""
    rows, n = x.shape
    out = np.empty((rows, n), np.int64)
    clamped = 0
    for i in prange(rows):
        mx = x[i, 0]
        for c in range(1, n):
            mx = max(mx, x[i, c])
        total = np.int64(0)
        for c in range(n):
            d = x[i, c] - mx
            if d >= diff_min:
                total = _wrap32(total + rdbpot(exp_on_negative5(srdhm(d << left_shift,
                                                                       multiplier)), 12))
        h = 0
        while h < 32 and not (total & (np.int64(1) << (31 - h))):
            h += 1
        r = one_over_one_plus_x(_wrap32((total << h) - (np.int64(1) << 31)))
        for c in range(n):
            d = x[i, c] - mx
            if d >= diff_min:
                e = exp_on_negative5(srdhm(d << left_shift, multiplier))
                v = rdbpot(srdhm(r, e), 12 - h + 31 - 8) - 128
                if v > 127:
                    v = np.int64(127)
                    clamped += 1
                elif v < -128:
                    v = np.int64(-128)
                    clamped += 1
                out[i, c] = v
            else:
                out[i, c] = -128
    return out, clamped


@jit
def _lut(value, lut):
    index = 256 + (value >> 7)
    base = lut[index]
    return base + (((lut[index + 1] - base) * (value & 0x7F) + 64) >> 7)


@kernel
def softmax_int16_rows(x, multiplier, shift, exp_lut, recip_lut):
    """int16 codes ``x [N, n]`` -> ``(codes [N, n], n_clamped)``, TFLM's ``SoftmaxInt16``."""
    rows, n = x.shape
    out = np.empty((rows, n), np.int64)
    left = max(0, shift)
    right = -shift if shift < 0 else 0
    clamped = 0
    for i in prange(rows):
        mx = x[i, 0]
        for c in range(1, n):
            mx = max(mx, x[i, c])
        total = np.int64(0)
        for c in range(n):
            s = rdbpot(srdhm(_wrap32((x[i, c] - mx) << left), multiplier), right) + 32767
            s = min(max(s, -32768), 32767)
            out[i, c] = _lut(s, exp_lut)  # the exps, cached in the output as TFLM does
            total += out[i, c]
        h = 0
        while h < 32 and not (total & (np.int64(1) << (31 - h))):
            h += 1
        shifted = ((total << (h - 1)) + (1 << 13)) >> 14
        r = _lut(min(max(shifted - ((1 << 15) + (1 << 16)), -32768), 32767), recip_lut)
        rs = 31 - h
        for c in range(n):
            v = (out[i, c] * r + (np.int64(1) << (rs - 1))) >> rs
            if v < 0 or v > 32767:
                clamped += 1
                v = np.int64(0) if v < 0 else np.int64(32767)
            out[i, c] = v
    return out, clamped
