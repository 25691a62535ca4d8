"""Throughput kernels of the proven float path: float32 im2col and the fused requantization.

The proven path (:mod:`fxp.sim.fast`) computes a power-of-two Conv2D/Dense as
float32 GEMMs whose every partial sum is an integer below ``2**24`` in
magnitude (so float32, FMA or not, in any summation order, holds it exactly),
then one fused pass does what :func:`fxp.sim.integer._requant` does in
several numpy passes.  Each kernel here has a numpy statement of what it must
equal:

* :func:`im2col_f32` -- ``cols[k, (n*Ho + oy)*Wo + ox] = x[n, ci, iy, ix]``
  with ``k = (ci*kh + ky)*kw + kx``, ``iy = oy*sh - pad_top + ky*dh`` (same
  for x), and 0 outside the image (a power-of-two input's zero point is 0):
  the transposed im2col matrix of the NCHW input, as float32 (exact: codes
  below ``2**24``).
* :func:`requant_pow2_fused` -- per output ``acc = int64(a[co, n*P + p]) +
  bias[co]`` (``a`` float32 or float64 holding an exact integer), then
  ``y = round(acc / 2**shift)`` with the rounding mode (``shift < 0``:
  ``acc << -shift``), the activation clamp ``lo <= y`` and ``y <= hi``, and
  the output overflow into ``[out_lo, out_hi]`` (wrap to ``out_bits`` /
  saturate / saturate to zero), written to ``out[n, co, p]``; returns the
  number of outputs the overflow changed -- exactly
  ``cast(clip(cast(acc, F_acc -> F_out, rounding)), ..., overflow)`` of the
  executor.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import kernel, prange
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

__all__ = ["im2col_f32", "maxpool_valid", "requant_pow2_fused", "rounding_offsets"]


@kernel
def im2col_f32(x, kh, kw, sh, sw, pad_top, pad_left, dh, dw, out_h, out_w):
    """x int64 [N, C, H, W] -> float32 [C*kh*kw, N*out_h*out_w] (see the module docstring)."""
    n_b, c_in, in_h, in_w = x.shape
    k_total = c_in * kh * kw
    p = out_h * out_w
    cols = np.empty((k_total, n_b * p), np.float32)
    for k in prange(k_total):
        ci = k // (kh * kw)
        ky = (k // kw) % kh
        kx = k % kw
        for b in range(n_b):
            for oy in range(out_h):
                iy = oy * sh - pad_top + ky * dh
                base = (b * out_h + oy) * out_w
                if iy < 0 or iy >= in_h:
                    for ox in range(out_w):
                        cols[k, base + ox] = 0.0
                    continue
                for ox in range(out_w):
                    ix = ox * sw - pad_left + kx * dw
                    if 0 <= ix < in_w:
                        cols[k, base + ox] = np.float32(x[b, ci, iy, ix])
                    else:
                        cols[k, base + ox] = 0.0
    return cols


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
def requant_pow2_fused(a, bias, out, shift, t_pos, t_neg, even, lo, hi, out_lo, out_hi,
                       out_bits, omode):
    """a [Co, N*P] exact integers (float) -> ``out [N, Co, P]`` (any integer dtype holding
    the output format); returns the number the overflow changed (module docstring).

    ``shift > 0`` rounds with the offsets of :func:`rounding_offsets`; ``shift <= 0``
    shifts left by ``-shift``.  Branch-free inner loops (they vectorize).
    """
    c_out = a.shape[0]
    n_b = out.shape[0]
    p = a.shape[1] // n_b
    counts = np.zeros(c_out, np.int64)
    mask = (np.int64(1) << out_bits) - 1 if out_bits < 64 else np.int64(-1)
    dt = np.int64(t_neg - t_pos)
    for co in prange(c_out):
        b_c = bias[co]
        n_over = np.int64(0)
        for b in range(n_b):
            row = a[co, b * p:(b + 1) * p]
            dst = out[b, co]
            for i in range(p):
                acc = np.int64(row[i]) + b_c
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
                dst[i] = y
        counts[co] = n_over
    return counts.sum()


@kernel
def maxpool_valid(x, kh, kw, sh, sw, out_h, out_w):
    """Max over each ``kh x kw`` window of stride ``(sh, sw)`` with no padding or dilation.

    Equal to :func:`fxp.kernels.pool.maxpool2d_codes` when every window lies
    inside the image (no padding, dilation 1).
    """
    batches, depth = x.shape[0], x.shape[1]
    out = np.empty((batches, depth, out_h, out_w), x.dtype)
    for job in prange(batches * depth):
        b = job // depth
        c = job % depth
        for oy in range(out_h):
            for ox in range(out_w):
                m = x[b, c, oy * sh, ox * sw]
                for fy in range(kh):
                    for fx in range(kw):
                        v = x[b, c, oy * sh + fy, ox * sw + fx]
                        if v > m:
                            m = v
                out[b, c, oy, ox] = m
    return out
