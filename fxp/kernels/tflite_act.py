"""Numba twins of :mod:`fxp.kernels.spec_tflite_act` (TFLM LOGISTIC, TANH, HARD_SWISH).

Flat int64 arrays in and out (the caller reshapes); every value is a C int32
or int16 held in int64, wrapped or saturated where the C++ does.

int8 LOGISTIC / TANH, per element:

1. ``d = x - zp``; outside ``(-radius, radius)`` the output is -128 / 127;
2. ``a = MBQM(d, M, left_shift)`` (:func:`fxp.kernels.scalar.mbqm`; ``|d| < radius``
   bounds ``d * 2**left_shift`` below ``15 * 2**27``, inside int32);
3. gemmlowp ``logistic`` / ``tanh`` of the Q4.27 value ``a`` (:func:`gemmlowp_logistic`,
   :func:`gemmlowp_tanh`; ``exp_on_negative_values`` for 4 or 5 integer bits);
4. ``RoundingDivideByPOT`` to 8 bits (``- 128`` for LOGISTIC), clamped to int8.

int16 LOGISTIC / TANH: ``v = (x * M + round) >> left_shift`` (``|x * M| < 2**30``), then
``sigmoid_table_uint16`` interpolated in uint32 (never above ``2**25``) and shifted back.

int8 HARD_SWISH: int16 gemmlowp products (``SRDHM<int16>`` rounds, the final
``SaturatingDoublingHighMul`` truncates), saturating int16 left shifts, the
``+ zp_out`` wrapped to int16, clamped to int8.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit, kernel, prange
from fxp.kernels.scalar import mbqm, rdbpot
from fxp.kernels.tflite_softmax import (
    _sat_shl,
    _wrap32,
    exp_on_negative,
    newton_one_over_one_plus_x,
    one_over_one_plus_x,
)

__all__ = ["gemmlowp_logistic", "gemmlowp_tanh", "hard_swish_int8_codes",
           "logistic_tanh_int8_codes", "lut_int16_codes"]


@jit
def one_minus_x_over_one_plus_x(a):
    """gemmlowp ``one_minus_x_over_one_plus_x_for_x_in_0_1``, Q0.31 ``a >= 0`` in and out."""
    x = newton_one_over_one_plus_x(a)
    return _sat_shl(_wrap32(x - (np.int64(1) << 29)), 2)


@jit
def gemmlowp_logistic(a):
    """gemmlowp ``logistic`` of a Q4.27 raw value; Q0.31 out."""
    if a == 0:
        return np.int64(1) << 30
    r = one_over_one_plus_x(exp_on_negative(-a if a > 0 else a, 4))
    return r if a > 0 else _wrap32(np.int64(2147483647) - r)


@jit
def gemmlowp_tanh(a):
    """gemmlowp ``tanh`` of a Q4.27 raw value; Q0.31 out (``exp`` of the Q5.26 reading)."""
    if a == 0:
        return np.int64(0)
    t = one_minus_x_over_one_plus_x(exp_on_negative(a if a < 0 else -a, 5))
    return _wrap32(-t) if a < 0 else t


@kernel
def logistic_tanh_int8_codes(x, zero_point, radius, multiplier, left_shift, single, tanh):
    """int8 codes (flat) -> (codes, n_clamped): TFLM's int8 LOGISTIC or TANH."""
    out = np.empty(x.size, np.int64)
    clamped = 0
    for i in prange(x.size):
        d = x[i] - zero_point
        if d <= -radius:
            out[i] = -128
        elif d >= radius:
            out[i] = 127
        else:
            a, _ = mbqm(d, multiplier, left_shift, single)
            if tanh:
                y = rdbpot(gemmlowp_tanh(a), 24)
            else:
                y = rdbpot(gemmlowp_logistic(a), 23) - 128
            if y > 127 or y < -128:
                clamped += 1
                y = np.int64(127) if y > 127 else np.int64(-128)
            out[i] = y
    return out, clamped


@kernel
def lut_int16_codes(x, table, multiplier, left_shift, tanh):
    """int16 codes (flat, zero point 0) -> int16 codes of scale 2**-15: TFLM's int16
    LOGISTIC or TANH (``sigmoid_table_uint16`` interpolation)."""
    if multiplier == 0:  # power-of-two input scale
        multiplier = np.int64(3) << left_shift
        left_shift = 0
    rnd = (np.int64(1) << (left_shift - 1)) if left_shift > 0 else np.int64(0)
    bits = 8 if tanh else 9
    out = np.empty(x.size, np.int64)
    for i in prange(x.size):
        v = (x[i] * multiplier + rnd) >> left_shift
        a = -v if v < 0 else v
        uh = a >> bits
        if tanh:
            if uh >= 255:
                r = np.int64(0xFFFF) << 8
            else:
                r = (table[uh] << 8) + (a & 0xFF) * (table[uh + 1] - table[uh])
            if v >= 0:
                r = r - (np.int64(1) << 23) + (1 << 7)
            else:
                r = -r + (np.int64(1) << 23) + (1 << 7) - 1
            out[i] = r >> 8
        else:
            if uh >= 255:
                r = np.int64(0x7FFF) << 10
            else:
                r = (table[uh] << 9) + (a & 0x1FF) * (table[uh + 1] - table[uh])
            if v >= 0:
                r = r + (1 << 9)
            else:
                r = (np.int64(1) << 25) - r + (1 << 9) - 1
            out[i] = r >> 10
    return out


@jit
def _srdhm16(a, b):
    if a == -32768 and b == -32768:
        return np.int64(32767)
    ab = a * b
    t = ab + (1 << 14) if ab >= 0 else ab + 1 - (1 << 14)
    return t >> 15 if t >= 0 else -((-t) >> 15)


@jit
def _sdhm16(a, b):
    if a == -32768 and b == -32768:
        return np.int64(32767)
    ab = a * b
    return ab >> 15 if ab >= 0 else -((-ab) >> 15)


@jit
def _sat_shl16(v, amount):
    w = v * (np.int64(1) << amount)
    return max(min(w, np.int64(32767)), np.int64(-32768))


@kernel
def hard_swish_int8_codes(x, zp_in, zp_out, reluish_m, reluish_e, out_m, out_e):
    """int8 codes (flat) -> (codes, n_events): TFLM's int8 HARD_SWISH."""
    out = np.empty(x.size, np.int64)
    events = 0
    for i in prange(x.size):
        hires = (x[i] - zp_in) * 128
        pre = _srdhm16(hires, out_m)
        r = hires
        if reluish_e > 0:
            r = _sat_shl16(r, reluish_e - 1)
        r = _srdhm16(r, reluish_m)
        if reluish_e > 0:
            r = _sat_shl16(r, 1)
        if reluish_e < 0:
            r = rdbpot(r, -reluish_e)
        r = (r + (1 << 15)) >> 1
        y = rdbpot(_sdhm16(r, pre), -out_e) + zp_out
        w = ((y + (1 << 15)) & 0xFFFF) - (1 << 15)
        c = min(max(w, np.int64(-128)), np.int64(127))
        events += np.int64(w != y) + np.int64(c != w)
        out[i] = c
    return out, events
