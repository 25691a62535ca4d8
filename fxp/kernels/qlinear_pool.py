"""Numba twins of :mod:`fxp.kernels.spec_qlinear_pool` (onnxruntime quantized average pools).

Global average pool, per ``(n, c)`` (``MlasQLinearGlobalAveragePoolNchw``):

1. ``acc = sum(x) - x_zp * H*W`` in int64 (the caller proves it fits int32,
   as MLAS accumulates in int32);
2. ``v = float32(float32(acc) * scale)``, ``scale`` precomputed by the caller
   (:func:`fxp.kernels.spec_qlinear_pool.global_scale`);
3. ``rint(v) + y_zp`` clamped to ``[lo, hi]`` (counted when clamped).

Average pool, per window (``QLinearPool2DTask`` + ``AveragePool`` functor):

1. ``acc = 0.0f``; ``acc = float32(acc + deq[x])`` over rows then columns of
   the window clipped to the image (``deq``: the 256 dequantized float32 values
   by byte);
2. ``acc = float32(acc / float32(count))`` (``count = kh*kw`` with
   ``include_pad``, else the real pixels);
3. ``cvt(float32(float32(acc / y_scale) + float32(y_zp)))`` clamped to ``[lo, hi]``.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import kernel, prange
from fxp.kernels.qlinear import cvtps_epi32


@kernel
def global_avgpool_codes(x, scale, x_zero_point, y_zero_point, lo, hi):
    """x [N,C,H,W] -> ([N,C,1,1] codes, n_saturated)."""
    batches, depth, in_h, in_w = x.shape
    size = in_h * in_w
    out = np.empty((batches, depth, 1, 1), np.int64)
    count = 0
    for job in prange(batches * depth):
        batch = job // depth
        channel = job % depth
        acc = np.int64(0)
        for in_y in range(in_h):
            for in_x in range(in_w):
                acc += x[batch, channel, in_y, in_x]
        acc -= x_zero_point * size
        r = np.rint(np.float64(np.float32(acc) * scale))
        if r < lo - y_zero_point:
            r = np.float64(lo - y_zero_point)
            count += 1
        elif r > hi - y_zero_point:
            r = np.float64(hi - y_zero_point)
            count += 1
        out[batch, channel, 0, 0] = np.int64(r) + y_zero_point
    return out, count


@kernel
def avgpool_codes(x, deq, y_scale, y_zero_point, kh, kw, sh, sw, pad_top, pad_left, out_h,
                  out_w, include_pad, lo, hi):
    """x [N,C,H,W] -> (codes [N,C,out_h,out_w], n_saturated), float32 window means."""
    batches, depth, in_h, in_w = x.shape
    out = np.empty((batches, depth, out_h, out_w), np.int64)
    zp32 = np.float32(y_zero_point)
    count = 0
    for job in prange(batches * depth):
        batch = job // depth
        channel = job % depth
        for out_y in range(out_h):
            h0 = out_y * sh - pad_top
            h1 = min(h0 + kh, in_h)
            h0 = max(h0, 0)
            for out_x in range(out_w):
                w0 = out_x * sw - pad_left
                w1 = min(w0 + kw, in_w)
                w0 = max(w0, 0)
                acc = np.float32(0.0)
                for in_y in range(h0, h1):
                    for in_x in range(w0, w1):
                        acc = acc + deq[x[batch, channel, in_y, in_x] & 255]
                size = kh * kw if include_pad else (h1 - h0) * (w1 - w0)
                acc = acc / np.float32(size)
                r = cvtps_epi32((acc / y_scale) + zp32)
                if r < lo:
                    r = np.int64(lo)
                    count += 1
                elif r > hi:
                    r = np.int64(hi)
                    count += 1
                out[batch, channel, out_y, out_x] = r
    return out, count
