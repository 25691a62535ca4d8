"""Parallel element-wise kernels: quantize, cast / power-of-two requantize, multiplier requantize.

Each returns ``(codes, n_overflow)``; inputs are flat (1-D, C order) arrays so
that the stochastic-rounding index of an element is its flat position plus
``offset``: the result does not depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np

from fxp.kernels._jit import kernel, prange
from fxp.kernels.scalar import STOCHASTIC, U0, mbqm, overflow, round_shift, shift_left, splitmix64


@kernel
def cast_codes(x, shift, rmode, omode, lo, hi, bits, signed, seed, offset):
    """shift >= 0: round(x / 2**shift) then overflow; shift < 0: x * 2**-shift with overflow."""
    n = x.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        if shift >= 0:
            u = splitmix64(seed, offset + i) if rmode == STOCHASTIC else U0
            v = round_shift(x[i], shift, rmode, u)
            c, o = overflow(v, lo, hi, bits, signed, omode)
        else:
            c, o = shift_left(x[i], -shift, lo, hi, bits, signed, omode)
        out[i] = c
        if o:
            count += 1
    return out, count


@kernel
def quantize_floats(xf, frac_bits, rmode, omode, lo, hi, bits, signed, seed, offset):
    """Finite float64 values -> codes, via the exact split x = mant * 2**(e - 53)."""
    n = xf.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        m, e = math.frexp(xf[i])
        mant = np.int64(math.ldexp(m, 53))
        t = np.int64(e) - 53 + frac_bits
        if t > 0:
            c, o = shift_left(mant, t, lo, hi, bits, signed, omode)
        else:
            u = splitmix64(seed, offset + i) if rmode == STOCHASTIC else U0
            v = round_shift(mant, -t, rmode, u)
            c, o = overflow(v, lo, hi, bits, signed, omode)
        out[i] = c
        if o:
            count += 1
    return out, count


@kernel
def requantize_multiplier_codes(acc, multiplier, exponent, single, zero_point,
                                omode, lo, hi, bits, signed):
    """sat(MultiplyByQuantizedMultiplier(acc) + zero_point); counts both stages."""
    n = acc.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        y, o1 = mbqm(acc[i], multiplier, exponent, single)
        c, o2 = overflow(y + zero_point, lo, hi, bits, signed, omode)
        out[i] = c
        if o1:
            count += 1
        if o2:
            count += 1
    return out, count


@kernel
def requantize_float32_codes(acc, scale32, zero_point, lo, hi):
    """rint(float32(acc) * float32(scale)) + zp, clamped: onnxruntime MLAS arithmetic."""
    n = acc.size
    out = np.empty(n, np.int64)
    count = 0
    flo = np.float32(lo - zero_point)
    fhi = np.float32(hi - zero_point)
    for i in prange(n):
        p = np.float32(acc[i]) * scale32
        r = np.rint(p)
        if r < flo:
            r = flo
            count += 1
        elif r > fhi:
            r = fhi
            count += 1
        out[i] = np.int64(r) + zero_point
    return out, count
