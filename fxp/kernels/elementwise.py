"""Parallel element-wise kernels: quantize and cast / power-of-two requantize.

(Multiplier and float32 requantization use the per-channel kernels in
:mod:`fxp.kernels.requant_channel` with a single channel.)

Each returns ``(codes, n_overflow)``; inputs are flat (1-D, C order) arrays so
that the stochastic-rounding index of an element is its flat position plus
``offset``: the result does not depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np

from fxp.kernels._jit import jit, kernel, prange
from fxp.kernels.scalar import (
    ROUND_TABLE,
    STOCHASTIC,
    U0,
    overflow,
    round_shift,
    shift_left,
    splitmix64,
)


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


@jit
def _round_scaled(v, mode, u):
    """Round the float64 ``v`` (an exact value with |v| < 2**52) to an integer.

    ``floor(v)`` and ``v - floor(v)`` are exact for such ``v``, so the decision
    is the same as on the integer mantissa (the tests pin it to the slow path).
    """
    fl = math.floor(v)
    r = v - fl
    q = np.int64(fl)
    if mode == STOCHASTIC:  # up iff u < floor(r * 2**64); r has at most 52 significant bits
        return q + 1 if u < np.uint64(math.ldexp(r, 64)) else q
    cls = np.int64(r != 0.0) + np.int64(r >= 0.5) + np.int64(r > 0.5)
    return q + ROUND_TABLE[mode * 16 + cls * 4 + (2 if v < 0 else 0) + (q & 1)]


@kernel
def quantize_floats(xf, frac_bits, rmode, omode, lo, hi, bits, signed, seed, offset):
    """Finite float64 values -> codes.

    Fast path: ``v = x * 2**frac_bits`` is exact when 2**-1000 < |v| < 2**52 (a
    power-of-two scaling of a normal double), so it is rounded directly.
    Otherwise the exact split x = mant * 2**(e - 53) goes through the integer
    rounding shift.
    """
    n = xf.size
    out = np.empty(n, np.int64)
    count = 0
    scale = math.ldexp(1.0, frac_bits) if -1000 < frac_bits < 1000 else 0.0
    for i in prange(n):
        v = xf[i] * scale
        av = abs(v)
        if scale != 0.0 and (av < 4503599627370496.0 and (av > 1e-300 or xf[i] == 0.0)):
            u = splitmix64(seed, offset + i) if rmode == STOCHASTIC else U0
            c, o = overflow(_round_scaled(v, rmode, u), lo, hi, bits, signed, omode)
        else:
            m, e = math.frexp(xf[i])
            mant = np.int64(math.ldexp(m, 53))
            t = np.int64(e) - 53 + frac_bits
            if t > 0:
                c, o = shift_left(mant, t, lo, hi, bits, signed, omode)
            else:
                u = splitmix64(seed, offset + i) if rmode == STOCHASTIC else U0
                v2 = round_shift(mant, -t, rmode, u)
                c, o = overflow(v2, lo, hi, bits, signed, omode)
        out[i] = c
        if o:
            count += 1
    return out, count


# --------------------------------------------------------------------------- branch-free fast paths
# For a deterministic rounding mode the increment decision is bit ``cls*4 + neg*2 + odd`` of a
# 16-bit mask per mode (the same table as ROUND_TABLE), so the inner loops have no data-dependent
# branches and LLVM can vectorize them.  The callers use these kernels only inside their stated
# preconditions and fall back to the general kernels otherwise; the tests pin both to the spec.
ROUND_MASKS = np.array([sum(int(ROUND_TABLE[m * 16 + k]) << k for k in range(16))
                        for m in range(9)], np.int64)


@kernel
def fast_cast_codes(x, shift, rmask, lo, hi, saturating):
    """round(x / 2**shift) (1 <= shift <= 62, deterministic mode) then clamp or count.

    ``saturating``: clamp to [lo, hi]; otherwise the caller only uses the result
    when the count of out-of-range values is 0.
    """
    n = x.size
    out = np.empty(n, np.int64)
    count = 0
    half = np.int64(1) << (shift - 1)
    mask = (np.int64(1) << shift) - 1
    for i in prange(n):
        v = x[i]
        q = v >> shift
        r = v & mask
        cls = np.int64(r != 0) + np.int64(r >= half) + np.int64(r > half)
        idx = cls * 4 + np.int64(v < 0) * 2 + (q & 1)
        q += (rmask >> idx) & 1
        over = (q < lo) | (q > hi)
        count += np.int64(over)
        if saturating:
            q = min(max(q, lo), hi)
        out[i] = q
    return out, count


@kernel
def fast_quantize_floats(xf, scale, rmask, lo, hi, saturating):
    """Round x*scale (scale = 2**frac_bits >= 1, so the product is exact) with a deterministic mode.

    Returns (codes, n_overflow, n_unsafe): ``n_unsafe`` counts elements with
    |x*scale| >= 2**52 (or non-finite), where the caller must use the general kernel.
    """
    n = xf.size
    out = np.empty(n, np.int64)
    count = 0
    unsafe = 0
    for i in prange(n):
        v = xf[i] * scale
        ok = abs(v) < 4503599627370496.0
        unsafe += np.int64(not ok)
        v = v if ok else 0.0
        fl = math.floor(v)
        r = v - fl
        q = np.int64(fl)
        cls = np.int64(r != 0.0) + np.int64(r >= 0.5) + np.int64(r > 0.5)
        idx = cls * 4 + np.int64(v < 0) * 2 + (q & 1)
        q += (rmask >> idx) & 1
        over = (q < lo) | (q > hi)
        count += np.int64(over)
        if saturating:
            q = min(max(q, lo), hi)
        out[i] = q
    return out, count, unsafe
