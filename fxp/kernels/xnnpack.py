"""Numba twins of :mod:`fxp.kernels.spec_xnnpack` (XNNPACK's qs8 ADD and MEAN).

ADD, per element of the flat codes: ``acc = bias + a*ma + b*mb`` (int64
here; XNNPACK's int32 cannot overflow: ``|ma|, |mb| <= 2**21`` and
``|a|, |b| <= 128``), ``y = (acc >> shift) + z_y`` (arithmetic shift: ties
toward +inf), clamped to ``[lo, hi]``.

MEAN, per ``(n, c)`` row of ``[N*C, H*W]`` codes: the int32 sum of the raw
codes, then in float32 ``f32(float(sum) * scale)``, ``+ zp`` (each operation
rounded to float32, no FMA), ``rint`` (ties to even) and the clamp to
[-128, 127].
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import kernel, prange


@kernel
def add_elements(a, b, bias, ma, mb, shift, zero_point, lo, hi):
    """Flat int8 codes ``a``, ``b`` -> XNNPACK qs8 ADD codes."""
    n = a.size
    out = np.empty(n, np.int64)
    for i in prange(n):
        y = ((bias + a[i] * ma + b[i] * mb) >> shift) + zero_point
        out[i] = min(max(y, lo), hi)
    return out


@kernel
def mean_rows(x, scale, zero_point):
    """Rows of int8 codes ``x [R, K]`` -> XNNPACK qs8 MEAN codes ``[R]`` (float32 ``scale``,
    ``zero_point``)."""
    rows, k = x.shape
    out = np.empty(rows, np.int64)
    for r in prange(rows):
        s = np.int64(0)
        for j in range(k):
            s += x[r, j]
        v = np.float32(np.float32(s) * scale)
        v = np.float32(v + zero_point)
        q = np.rint(v)
        q = max(q, -128.0)
        q = min(q, 127.0)
        out[r] = np.int64(q)
    return out
