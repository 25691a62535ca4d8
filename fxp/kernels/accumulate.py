"""Accumulation of integer products in a fixed-width accumulator.

Order: for each row, index 0, 1, ..., K-1 of the reduction axis, starting from
0; after each addition the partial sum is brought into the accumulator range
with the overflow mode.  Wrap is order-free; saturation is not (this is the
documented order).  The count is the number of additions whose partial sum
left the range.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit, kernel, prange
from fxp.kernels.scalar import SATURATE_ZERO, WRAP, wrap_bits


@jit
def accumulate_row(p, r, lo, hi, bits, signed, omode):
    """(sum, events) of row ``r`` of ``p`` in the documented order."""
    total = np.int64(0)
    events = 0
    for j in range(p.shape[1]):
        term = p[r, j]
        s = np.int64(np.uint64(total) + np.uint64(term))
        big = ((total >= 0) == (term >= 0)) and ((s >= 0) != (total >= 0))
        if big or s > hi or s < lo:
            events += 1
            if omode == WRAP:
                total = wrap_bits(s, bits, signed)
            elif omode == SATURATE_ZERO:
                total = np.int64(0)
            elif big:
                total = hi if term > 0 else lo
            else:
                total = hi if s > hi else lo
        else:
            total = s
    return total, events


@kernel
def accumulate_rows(p, lo, hi, bits, signed, omode):
    """p: int64 [rows, K] -> (sums [rows], n_events)."""
    rows = p.shape[0]
    out = np.empty(rows, np.int64)
    row_events = np.zeros(rows, np.int64)
    for r in prange(rows):
        total, events = accumulate_row(p, r, lo, hi, bits, signed, omode)
        out[r] = total
        row_events[r] = events
    return out, row_events.sum()
