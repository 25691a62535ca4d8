"""Numba twin of :func:`fxp.kernels.spec_litert_softmax.softmax_float_table`.

Per row of int8 codes: ``m = max(x)``; ``e_j = table[255 - (m - x_j)]``
(float32); ``sum`` of the ``e_j`` in float32, left to right;
``inv = f32(1 / f32(sum * s_y))``; ``y_j = round(f32(e_j * inv)) + z_y``
(ties away from zero), clamped to [-128, 127] (each clamp counted).  Every
float32 operation is rounded to float32 (numba keeps float32 * float32 in
float32; no FMA: fastmath is off).
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import kernel, prange


@kernel
def softmax_float_table_rows(x, table, y_scale, y_zero_point):
    """Rows ``x [R, n]`` -> (codes [R, n], n_clamped)."""
    rows, n = x.shape
    out = np.empty((rows, n), np.int64)
    count = 0
    for r in prange(rows):
        m = x[r, 0]
        for j in range(1, n):
            m = max(m, x[r, j])
        total = np.float32(0.0)
        for j in range(n):
            total = np.float32(total + table[255 - (m - x[r, j])])
        inv = np.float32(np.float32(1.0) / np.float32(total * y_scale))
        for j in range(n):
            p = np.float64(np.float32(table[255 - (m - x[r, j])] * inv))
            t = np.float64(np.int64(p))
            if p - t >= 0.5:
                t += 1.0
            elif p - t <= -0.5:
                t -= 1.0
            q = np.int64(t) + y_zero_point
            if q < -128:
                out[r, j] = -128
                count += 1
            elif q > 127:
                out[r, j] = 127
                count += 1
            else:
                out[r, j] = q
    return out, count
