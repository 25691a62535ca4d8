"""Numba twin of :mod:`fxp.kernels.spec_requant64` (TFLite's int64 MBQM, int16x8 layers).

The accumulator is seen C-order as ``[outer, C, inner]`` flattened: element
``i`` belongs to channel ``(i // inner) % C``.  Per element: the 16-bit
multiplier ``(M + 2**15) >> 16`` (``0x7FFF`` from ``M >= 0x7FFF0000``),
``(x * reduced + 2**(14 - shift)) >> (15 - shift)`` in int64 (the caller
guarantees ``|x| <= 2**47``, so the product fits), wrapped to int32 (counted),
plus the zero point.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import kernel, prange


@kernel
def requantize64_channels(acc, multipliers, shifts, inner, zero_point):
    """Flat acc -> (MBQM64(acc, M[c], shift[c]) + zp, n_wrapped)."""
    n = acc.size
    channels = multipliers.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        c = (i // inner) % channels
        m = multipliers[c]
        reduced = (m + (np.int64(1) << 15)) >> 16 if m < np.int64(0x7FFF0000) else np.int64(0x7FFF)
        total = 15 - shifts[c]
        r = (acc[i] * reduced + (np.int64(1) << (total - 1))) >> total
        w = ((r + (np.int64(1) << 31)) & np.int64(0xFFFFFFFF)) - (np.int64(1) << 31)
        if w != r:
            count += 1
        out[i] = w + zero_point
    return out, count
