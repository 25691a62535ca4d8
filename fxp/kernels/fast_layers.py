"""Throughput kernels of the proven float path, on channels-last codes.

The proven path (:mod:`fxp.sim.fast`) computes a power-of-two Conv2D/Dense as
float32 GEMMs whose every partial sum is an integer below ``2**24`` in
magnitude (so float32, FMA or not, in any summation order, holds it exactly),
then one fused pass does what :func:`fxp.sim.integer._requant` does in
several numpy passes.  Activations stay channels-last (``[N, H, W, C]``) and
narrow between the layers of that path, so the im2col rows are runs of
contiguous channels and a GEMM's ``[pixels, Co]`` result already is the next
layer's layout.  Each kernel has a numpy statement of what it must equal
(:mod:`fxp.kernels.spec_fast_layers`):

* :func:`im2col_rows` -- ``cols[(n*Ho + oy)*Wo + ox, ((g*kh + ky)*kw + kx)*Cg + c] =
  x[n, iy, ix, g*Cg + c]`` with ``iy = oy*sh - pad_top + ky*dh`` (same for x)
  and 0 outside the image (a power-of-two input's zero point is 0), for
  ``x [N, H, W, C]`` of any integer dtype and any strides (an NCHW array is
  passed as its ``transpose(0, 2, 3, 1)`` view), ``Cg = C / groups``: each
  group's taps are one contiguous column range, as float32 (exact: codes
  below ``2**24``).
* :func:`requant_rows` -- per output ``acc = int64(a[g, m, j]) + bias[co]``
  with ``co = g*Cog + j`` (``a`` float32 or float64 holding an exact
  integer), then ``y = round(acc / 2**shift)`` with the rounding mode
  (``shift < 0``: ``acc << -shift``), the activation clamp ``lo <= y`` and
  ``y <= hi``, and the output overflow into ``[out_lo, out_hi]`` (wrap to
  ``out_bits`` / saturate / saturate to zero), written to ``out[m, co]``;
  returns the number of outputs the overflow changed -- exactly
  ``cast(clip(cast(acc, F_acc -> F_out, rounding)), ..., overflow)`` of the
  executor.
* :func:`maxpool_rows` -- ``out[n, oy, ox, c] = max`` over the window's taps
  of ``x[n, iy, ix, c]``, a padded tap reading ``pad_code`` (the format's
  min code, so it never wins against a real pixel):
  :func:`fxp.kernels.pool.maxpool2d_codes` in channels-last order.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit, kernel, prange
from fxp.kernels.scalar import (
    AWAY,
    CEIL,
    FLOOR,
    HALF_AWAY,
    HALF_DOWN,
    HALF_EVEN,
    HALF_TO_ZERO,
    HALF_UP,
    SATURATE_ZERO,
    TO_ZERO,
    WRAP,
)

__all__ = ["im2col_rows", "maxpool_rows", "requant_rows", "rounding_offsets"]


SMALL_GROUP = 8
"""Groups of fewer input channels than this fill im2col columns along the output row
(long loops over ``ox``); wider groups fill each row's contiguous channel runs."""


@kernel
def im2col_rows(x, cols, kh, kw, sh, sw, pad_top, pad_left, dh, dw, out_h, out_w, groups):
    """x [N, H, W, C] integers -> ``cols [N*out_h*out_w, kh*kw*C]`` float32, in place
    (the module docstring)."""
    n_b, in_h, in_w, c_in = x.shape
    cg = c_in // groups
    for r in prange(n_b * out_h):
        b = r // out_h
        oy = r % out_h
        r0 = r * out_w
        if cg < SMALL_GROUP:
            _im2col_by_column(x, cols, b, oy, r0, kh, kw, sh, sw, pad_top, pad_left, dh, dw,
                              out_w, groups)
            continue
        for ox in range(out_w):
            row = cols[r0 + ox]
            for g in range(groups):
                for ky in range(kh):
                    iy = oy * sh - pad_top + ky * dh
                    for kx in range(kw):
                        ix = ox * sw - pad_left + kx * dw
                        base = ((g * kh + ky) * kw + kx) * cg
                        if 0 <= iy < in_h and 0 <= ix < in_w:
                            for c in range(cg):
                                row[base + c] = np.float32(x[b, iy, ix, g * cg + c])
                        else:
                            for c in range(cg):
                                row[base + c] = np.float32(0.0)


@jit
def _im2col_by_column(x, cols, b, oy, r0, kh, kw, sh, sw, pad_top, pad_left, dh, dw, out_w,
                      groups):
    """The rows ``r0 .. r0 + out_w - 1`` of :func:`im2col_rows` (image ``b``, output row
    ``oy``), one column at a time: zeros, the in-image run ``lo <= ox < hi``, zeros."""
    _, in_h, in_w, c_in = x.shape
    cg = c_in // groups
    for g in range(groups):
        for ky in range(kh):
            iy = oy * sh - pad_top + ky * dh
            for kx in range(kw):
                off = kx * dw - pad_left
                lo = 0
                while lo < out_w and lo * sw + off < 0:
                    lo += 1
                hi = out_w
                while hi > lo and (hi - 1) * sw + off >= in_w:
                    hi -= 1
                if iy < 0 or iy >= in_h:
                    lo = hi = out_w
                for c in range(cg):
                    col = ((g * kh + ky) * kw + kx) * cg + c
                    for ox in range(lo):
                        cols[r0 + ox, col] = np.float32(0.0)
                    for ox in range(lo, hi):
                        cols[r0 + ox, col] = np.float32(x[b, iy, ox * sw + off, g * cg + c])
                    for ox in range(hi, out_w):
                        cols[r0 + ox, col] = np.float32(0.0)


def rounding_offsets(shift: int, mode: int) -> tuple[int, int, int]:
    """``(t_pos, t_neg, even)`` with ``round(y / 2**shift) = (y + t + even*((y >> shift) & 1))
    >> shift``, ``t = t_neg`` for ``y < 0`` else ``t_pos`` (``shift >= 1``, deterministic modes).

    >>> rounding_offsets(2, HALF_EVEN)  # 6/4 = 1.5 -> 2: (6 + 1 + 1) >> 2
    (1, 1, 1)
    """
    half, full = 1 << (shift - 1), (1 << shift) - 1
    table = {FLOOR: (0, 0), CEIL: (full, full), TO_ZERO: (0, full), AWAY: (full, 0),
             HALF_UP: (half, half), HALF_DOWN: (half - 1, half - 1),
             HALF_TO_ZERO: (half - 1, half), HALF_AWAY: (half, half - 1),
             HALF_EVEN: (half - 1, half - 1)}
    t_pos, t_neg = table[mode]
    return t_pos, t_neg, int(mode == HALF_EVEN)


@kernel
def requant_rows(a, bias, out, shift, t_pos, t_neg, even, lo, hi, out_lo, out_hi, out_bits,
                 omode):
    """a [G, M, Cog] exact integers (float) -> ``out [M, G*Cog]`` (any integer dtype holding
    the output format); returns the number the overflow changed (module docstring).

    ``shift > 0`` rounds with the offsets of :func:`rounding_offsets`; ``shift <= 0``
    shifts left by ``-shift``.  Branch-free inner loop (it vectorizes).
    """
    n_g, m, cog = a.shape
    counts = np.zeros(m, np.int64)
    mask = (np.int64(1) << out_bits) - 1 if out_bits < 64 else np.int64(-1)
    dt = np.int64(t_neg - t_pos)
    for i in prange(m):
        n_over = np.int64(0)
        dst = out[i]
        for g in range(n_g):
            src = a[g, i]
            for j in range(cog):
                co = g * cog + j
                acc = np.int64(src[j]) + bias[co]
                if shift > 0:
                    neg = np.int64(acc < 0)
                    y = (acc + t_pos + neg * dt + even * ((acc >> shift) & 1)) >> shift
                else:
                    y = acc << -shift
                y = min(max(y, lo), hi)
                over = (y > out_hi) | (y < out_lo)
                n_over += over
                if omode == WRAP:
                    y = ((y - out_lo) & mask) + out_lo
                elif omode == SATURATE_ZERO:
                    y = y * (1 - np.int64(over))
                else:
                    y = min(max(y, out_lo), out_hi)
                dst[co] = y
        counts[i] = n_over
    return counts.sum()


@kernel
def maxpool_rows(x, out, pad_code, kh, kw, sh, sw, pad_top, pad_left, dh, dw):
    """x [N, H, W, C] -> ``out [N, Ho, Wo, C]`` (same dtype), in place: the window maxima,
    a padded tap reading ``pad_code`` (module docstring)."""
    n_b, in_h, in_w, depth = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for r in prange(n_b * out_h):
        b = r // out_h
        oy = r % out_h
        for ox in range(out_w):
            dst = out[b, oy, ox]
            first = True
            for ky in range(kh):
                iy = oy * sh - pad_top + ky * dh
                for kx in range(kw):
                    ix = ox * sw - pad_left + kx * dw
                    if 0 <= iy < in_h and 0 <= ix < in_w:
                        src = x[b, iy, ix]
                        if first:
                            for c in range(depth):
                                dst[c] = src[c]
                        else:
                            for c in range(depth):
                                dst[c] = max(dst[c], src[c])
                    elif first:
                        for c in range(depth):
                            dst[c] = pad_code
                    else:
                        for c in range(depth):
                            dst[c] = max(dst[c], pad_code)
                    first = False
