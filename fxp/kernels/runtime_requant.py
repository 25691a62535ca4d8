"""Numba twin of :mod:`fxp.kernels.spec_runtime_requant` (ruy, LiteRT float64, gemmlowp).

The accumulator is seen C-order as ``[outer, C, inner]`` flattened: element
``i`` belongs to channel ``c = (i // inner) % C``.  Per element, by the
channel's ``variants[c]`` (an index in ``spec_runtime_requant.VARIANTS``):

0. ruy: ``s = int32(acc << left)`` (a wrap is counted), ``h = (s*M + 2**30) >> 31``,
   then ``(h + 2**(right-1)) >> right`` -- both roundings ties toward +inf;
1. float64: ``v = float64(acc) * scale[c]``, rounded half away from zero
   (``v - trunc(v)`` is exact); a result outside int32 becomes ``INT32_MIN``
   (x86 ``cvttsd2si``) and is counted;
2. double (gemmlowp): ``s`` as for ruy, ``SRDHM(s, M)`` = ``(s*M + nudge)``
   divided by ``2**31`` toward zero, ``nudge = 2**30`` or ``1 - 2**30`` (the
   same ``h``: ties toward +inf), then RoundingDivideByPOT (ties away from zero).

plus the zero point.  ``|s * M| < 2**62``: the products fit int64.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit, kernel, prange

_I32_MIN = -(1 << 31)
_I32_MAX = (1 << 31) - 1


@jit
def _wrap(x, left):
    shifted = x << left
    s = ((shifted + (np.int64(1) << 31)) & np.int64(0xFFFFFFFF)) - (np.int64(1) << 31)
    return s, s != shifted


@jit
def _round_away(v):
    t = np.float64(np.int64(v)) if abs(v) < 9.2e18 else v  # trunc toward zero
    d = v - t
    if d >= 0.5:
        t += 1.0
    elif d <= -0.5:
        t -= 1.0
    return t


@jit
def _rdbpot(h, right):
    mask = (np.int64(1) << right) - 1
    threshold = (mask >> 1) + (1 if h < 0 else 0)
    return (h >> right) + (1 if (h & mask) > threshold else 0)


@kernel
def requantize_runtime_channels(acc, multipliers, shifts, scales, inner, variants, zero_point):
    """Flat acc -> (variants[c](acc, channel c) + zp, n_counted)."""
    n = acc.size
    channels = multipliers.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        c = (i // inner) % channels
        variant = variants[c]
        if variant == 1:
            r = _round_away(np.float64(acc[i]) * scales[c])
            if r >= _I32_MIN and r <= _I32_MAX:
                y = np.int64(r)
            else:
                y = np.int64(_I32_MIN)
                count += 1
        else:
            e = shifts[c]
            left = max(0, e)
            right = -e if e < 0 else 0
            s, wrapped = _wrap(acc[i], left)
            if wrapped:
                count += 1
            ab = s * multipliers[c]
            if variant == 2:  # gemmlowp SRDHM (written as gemmlowp does)
                t = ab + ((np.int64(1) << 30) if ab >= 0 else 1 - (np.int64(1) << 30))
                h = (t >> 31) if t >= 0 else -((-t) >> 31)
            else:  # ruy
                h = (ab + (np.int64(1) << 30)) >> 31
            if right == 0:
                y = h
            elif variant == 0:
                y = (h + (np.int64(1) << (right - 1))) >> right
            else:
                y = _rdbpot(h, right)
        out[i] = y + zero_point
    return out, count
