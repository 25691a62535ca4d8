"""onnxruntime's ``QLinearAveragePool`` / ``QLinearGlobalAveragePool``: numpy *specification*.

The Numba kernels in :mod:`fxp.kernels.qlinear_pool` must equal these
functions bit for bit (``tests/kernels/test_qlinear_ops.py``), and both equal
onnxruntime 1.32's CPU results (``tests/kernels/test_qlinear_ort.py``).  Codes
are NCHW int64, validated by :mod:`fxp.ops.qlinear`; scales are float32.

``QLinearGlobalAveragePool`` (``contrib_ops/cpu/quantization/qlinear_global_average_pool.cc``
-> ``MlasQLinearGlobalAveragePoolNchw``, ``core/mlas/lib/qlgavgpool.cpp``, SSE2 path):

1. ``scale = float32(x_scale / float32(y_scale * float32(H*W)))``; onnxruntime
   refuses ``H*W >= 2**24`` and ``scale`` outside ``[2**-32, 256)``;
2. ``acc = sum(x) - x_zp * H*W``: exact integer sum (int32 in MLAS);
3. ``MlasRequantizeOutput``: ``float32(float32(acc) * scale)`` clamped to
   ``[lo - y_zp, hi - y_zp]``, rounded half to even, ``+ y_zp``.

``QLinearAveragePool`` (``contrib_ops/cpu/quantization/qlinear_pool.cc``, 2-D NCHW task):

1. when the kernel covers the whole image and every pad is 0, onnxruntime
   runs ``QLinearGlobalAveragePool`` instead (``fallback_to_global``);
2. every code is dequantized ``float32(x_scale * float32(x - x_zp))``;
3. per window, rows ``hstart..hend-1`` then columns (``hstart = oy*sh - pad_top``
   clipped to the image, likewise columns), ``acc = float32(acc + v)`` from
   ``0.0f``: a float32 running sum in that order (padding adds nothing);
4. ``acc = float32(acc / float32(count))`` with ``count = kh*kw`` when
   ``count_include_pad`` else the number of real pixels (``AveragePool::Finalize``);
5. ``quantize_value``: ``nearbyintf(float32(float32(acc / y_scale) + float32(y_zp)))``
   -- the zero point is added *before* rounding, unlike MLAS QuantizeLinear --
   cast to int32 (out of range: ``INT32_MIN``) and clamped to ``[lo, hi]``.

Neither equals fxp's exact ``round(sum(x - zp) / n)`` average
(:func:`fxp.kernels.spec_layers.avgpool2d`), which is left unchanged.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels.spec_qlinear import cvtps_epi32, dequantize_table

__all__ = ["global_scale", "qlinear_avgpool", "qlinear_global_avgpool"]

F32 = np.float32


def global_scale(x_scale, y_scale, image_size: int) -> np.float32:
    """Step 1 of the global pool: ``float32(x_scale / float32(y_scale * float32(n)))``."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return F32(F32(x_scale) / (F32(y_scale) * F32(image_size)))


def qlinear_global_avgpool(x, x_scale, x_zp: int, y_scale, y_zp: int, lo: int, hi: int):
    """``[N, C, H, W] -> [N, C, 1, 1]``, steps 1-3 of the global pool.

    Returns ``(codes, n_saturated)`` (elements whose rounded value left ``[lo, hi]``).
    """
    x = np.asarray(x, np.int64)
    n = x.shape[2] * x.shape[3]
    scale = global_scale(x_scale, y_scale, n)
    acc = x.sum(axis=(2, 3), keepdims=True) - x_zp * n
    with np.errstate(over="ignore"):
        v = acc.astype(F32) * scale
    r = np.rint(v.astype(np.float64))
    sat = (r < lo - y_zp) | (r > hi - y_zp)
    return np.clip(r, lo - y_zp, hi - y_zp).astype(np.int64) + y_zp, int(np.count_nonzero(sat))


def qlinear_avgpool(x, x_scale, x_zp: int, y_scale, y_zp: int, kernel, strides, pads,
                    count_include_pad: bool, signed: bool, lo: int, hi: int):
    """2-D ``QLinearAveragePool`` (floor mode, no dilation), steps 1-5; ``pads`` are
    ``(top, left, bottom, right)``.  Returns ``(codes, n_saturated)``."""
    x = np.asarray(x, np.int64)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, strides, pads
    if (kh, kw) == (h, w) and not any(pads):
        return qlinear_global_avgpool(x, x_scale, x_zp, y_scale, y_zp, lo, hi)
    deq = dequantize_table(x_scale, x_zp, signed)[x & 255]  # index by the code's byte
    ho = (h + pt + pb - kh) // sh + 1
    wo = (w + pl + pr - kw) // sw + 1
    out = np.empty((n, c, ho, wo), np.int64)
    n_sat = 0
    for oy in range(ho):
        h0 = oy * sh - pt
        h1, h0 = min(h0 + kh, h), max(h0, 0)
        for ox in range(wo):
            w0 = ox * sw - pl
            w1, w0 = min(w0 + kw, w), max(w0, 0)
            acc = np.zeros((n, c), F32)
            with np.errstate(over="ignore", invalid="ignore"):
                for yy in range(h0, h1):
                    for xx in range(w0, w1):
                        acc = acc + deq[:, :, yy, xx]
                count = kh * kw if count_include_pad else (h1 - h0) * (w1 - w0)
                acc = acc / F32(count)
                v = (acc / F32(y_scale)) + F32(y_zp)
            r = cvtps_epi32(v)
            n_sat += int(np.count_nonzero((r < lo) | (r > hi)))
            out[:, :, oy, ox] = np.clip(r, lo, hi)
    return out, n_sat
