"""Numba twins of :mod:`fxp.kernels.spec_tflite` (TFLite reference ADD, AVERAGE_POOL_2D, MEAN).

All arithmetic is int64 holding TFLite's int32 values; where C int32
arithmetic could leave int32 the value is wrapped (two's complement) and the
event counted, exactly as the specification does.

ADD, per element (``AddFunc``):

1. ``v = (x - zp) << left_shift``: ``|v| <= 255 * 2**20 < 2**31`` for 8-bit codes
   (left shift 20), ``|v| <= 2**15 * 2**15`` for int16 codes with zero point 0
   (left shift 15, TFLM's int16 ADD): no wrap;
2. ``y = MBQM(v, M, shift)`` (:func:`fxp.kernels.scalar.mbqm`, double or single
   rounding, same as gemmlowp ``SaturatingRoundingDoublingHighMul`` +
   ``RoundingDivideByPOT``);
3. ``raw = wrap32(y1 + y2)``; ``out = MBQM(raw, M_out, shift_out) + zp_out``,
   clamped to ``[act_min, act_max]``.

AVERAGE_POOL_2D: the window's real pixels summed as raw codes
(``|acc| <= 255 * kh*kw``, checked by the caller to fit int32), divided with
C's ``(acc +- count/2) / count``; clamped to the activation range.

MEAN over H, W (TFLM ``QuantizedMeanOrSum``): ``acc = wrap32(sum(x) - zp_in*H*W)``,
MBQM with the multiplier that already holds ``1/(H*W)`` (left shift first
when ``shift > 0``), ``+ zp_out``, clamped to ``[lo, hi]``.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit, kernel, prange
from fxp.kernels.scalar import mbqm


@jit
def wrap32(v):
    """Two's-complement reduction of an int64 to int32 (as int64)."""
    return ((v + (np.int64(1) << 31)) & np.int64(0xFFFFFFFF)) - (np.int64(1) << 31)


@jit
def divide_half_away(acc, count):
    """(C ``acc > 0 ? (acc + count/2)/count : (acc - count/2)/count``, offset wrapped)."""
    t = acc + count // 2 if acc > 0 else acc - count // 2
    w = wrap32(t)
    q = w // count if w >= 0 else -((-w) // count)
    return q, w != t


@kernel
def add_codes(a, b, z1, z2, z_out, m1, e1, m2, e2, mo, eo, left_shift, single, act_min,
              act_max):
    """Flat a, b -> TFLite ``AddFunc`` codes; ``(codes, n_events)``."""
    n = a.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        y1, o1 = mbqm((a[i] - z1) << left_shift, m1, e1, single)
        y2, o2 = mbqm((b[i] - z2) << left_shift, m2, e2, single)
        raw = wrap32(y1 + y2)
        y, o4 = mbqm(raw, mo, eo, single)
        v = y + z_out
        o5 = v < act_min or v > act_max
        out[i] = min(max(v, act_min), act_max)
        count += np.int64(o1) + np.int64(o2) + np.int64(raw != y1 + y2) + np.int64(o4) \
            + np.int64(o5)
    return out, count


@kernel
def avgpool_codes(x, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, act_min, act_max):
    """x [N,C,H,W] -> (TFLite integer AveragePool codes, n_clamped)."""
    batches, depth, in_h, in_w = x.shape
    out = np.empty((batches, depth, out_h, out_w), np.int64)
    count = 0
    for job in prange(batches * depth):
        batch = job // depth
        channel = job % depth
        for out_y in range(out_h):
            y0 = max(out_y * sh - pad_top, 0)
            y1 = min(out_y * sh - pad_top + kh, in_h)
            for out_x in range(out_w):
                x0 = max(out_x * sw - pad_left, 0)
                x1 = min(out_x * sw - pad_left + kw, in_w)
                acc = np.int64(0)
                for in_y in range(y0, y1):
                    for in_x in range(x0, x1):
                        acc += x[batch, channel, in_y, in_x]
                q, _ = divide_half_away(acc, np.int64((y1 - y0) * (x1 - x0)))
                if q < act_min or q > act_max:
                    count += 1
                out[batch, channel, out_y, out_x] = min(max(q, act_min), act_max)
    return out, count


@kernel
def mean_hw_codes(x, zp_in, zp_out, multiplier, shift, single, lo, hi):
    """x [N,C,H,W] -> ([N,C,1,1] TFLM ``QuantizedMeanOrSum`` codes, n_events)."""
    batches, depth, in_h, in_w = x.shape
    size = np.int64(in_h * in_w)
    out = np.empty((batches, depth, 1, 1), np.int64)
    count = 0
    for job in prange(batches * depth):
        batch = job // depth
        channel = job % depth
        acc = np.int64(0)
        for in_y in range(in_h):
            for in_x in range(in_w):
                acc += x[batch, channel, in_y, in_x]
        t = acc - zp_in * size
        w = wrap32(t)
        y, o1 = mbqm(w, multiplier, shift, single)
        v = y + zp_out
        o3 = v < lo or v > hi
        out[batch, channel, 0, 0] = min(max(v, lo), hi)
        count += np.int64(w != t) + np.int64(o1) + np.int64(o3)
    return out, count
