"""TFLite's integer ADD, AVERAGE_POOL_2D and MEAN (over H, W) on codes: the numpy *specification*.

The Numba kernels in :mod:`fxp.kernels.tflite` must equal these functions bit
for bit; both are pinned to the Python-int oracle in ``tests/oracles_qlinear.py``.
Codes are NCHW int64 here (TFLite stores NHWC; the arithmetic of one element
does not depend on the layout).  The definitions are TensorFlow Lite's
*reference* kernels (github.com/tensorflow/tensorflow):

ADD, int8 / uint8 (``tensorflow/lite/kernels/add.cc`` Prepare,
``kernels/internal/reference/integer_ops/add.h`` ``AddFunc``):

* Prepare (float32 scales, double arithmetic): ``left_shift = 20``,
  ``twice_max = 2 * max(s1, s2)``, ``real_i = s_i / twice_max``,
  ``real_out = twice_max / (2**20 * s_out)``, each turned into
  ``(multiplier, shift <= 0)`` by ``QuantizeMultiplierSmallerThanOneExp``
  (:func:`multiplier_smaller_than_one`); the activation range from
  ``CalculateActivationRangeQuantized`` (:func:`activation_range`);
* per element: ``v_i = (x_i - zp_i) * 2**20``;
  ``y_i = MBQMSmallerThanOneExp(v_i, M_i, shift_i)`` =
  ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(v_i, M_i), -shift_i)``;
  ``raw = y_1 + y_2`` (int32); ``out = MBQMSmallerThanOneExp(raw, M_out, shift_out)
  + zp_out``, clamped to ``[act_min, act_max]``.  ``scheme="single"`` is the
  ``TFLITE_SINGLE_ROUNDING`` build (one rounding per multiply).

ADD, int16 (int16x8 models), as *TFLite Micro* runs it (``micro/kernels/add_common.cc``
``CalculateOpDataAdd``: ``left_shift = 15`` for an int16 output, the same three
multipliers; ``micro/kernels/add.cc`` calls ``reference_ops::Add(..., pot_scale=false)``
-> ``reference/add.h`` ``AddGeneralParamScale`` -> ``AddElementwise``): the int8
formula above with ``2**15`` in place of ``2**20``.  Zero points are 0 (the
converter's int16 activations), so ``|v_i| <= 2**30``: no int32 wrap.  The
power-of-two path (``pot_scale=true``: one ``RoundingDivideByPOT`` and a
saturating int16 add) is never taken by TFLM's non-broadcast int16 ADD.

AVERAGE_POOL_2D, int8 / uint8 (``reference/integer_ops/pooling.h``): sum the
*raw* codes of the window's real pixels (padding is skipped and not counted),
``(acc + count/2) / count`` for ``acc > 0`` else ``(acc - count/2) / count`` in C
(truncating) division -- round half away from zero of the mean code -- clamped
to the activation range.  Input and output share scale and zero point.

MEAN over axes (1, 2), int8 / int16, as *TFLite Micro* runs it
(``micro/kernels/reduce_common.cc`` ``PrepareMeanOrSum`` + ``EvalIntegerMean``
-> ``reference/reduce.h`` ``QuantizedMeanOrSum<T, int32_t>``; this is not
LiteRT's ``reference/integer_ops/mean.h``, whose result differs on 1,441 of
24,000 outputs of ``residual_mean_int8``):

* Prepare: ``(M, shift) = QuantizeMultiplier(double(s_in) / double(s_out))``;
* the ``1 / n`` factor (``n = H*W``) is folded into the multiplier:
  ``k = min(floor(log2 n), 32, 31 + shift)``,
  ``M' = int32((int64(M) << k) / n)`` (C truncating division),
  ``shift' = shift - k`` (:func:`mean_params`);
* per (n, c): ``acc = int32(sum(x) - zp_in * n)``;
  ``out = MultiplyByQuantizedMultiplier(acc, M', shift') + zp_out`` (the int32
  overload: gemmlowp double rounding, or single rounding), clamped to the
  type's range.  No separate division, hence no half-away rounding step.
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.errors import FormatError

__all__ = [
    "ACTIVATIONS", "LEFT_SHIFT", "LEFT_SHIFT_16", "activation_range", "add", "add_params", "avgpool",
    "divide_half_away", "mean_hw", "mean_params", "multiplier_smaller_than_one",
]

LEFT_SHIFT = 20  # 8-bit ADD
LEFT_SHIFT_16 = 15  # int16 ADD (TFLM add_common.cc)
ACTIVATIONS = ("none", "relu", "relu6", "relu_n1_to_1")
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# --------------------------------------------------------------------------- Prepare (Python)
def multiplier_smaller_than_one(real: float, single: bool = False) -> tuple[int, int]:
    """``QuantizeMultiplierSmallerThanOneExp``: ``(M, shift)`` with ``shift <= 0``.

    Raises FormatError unless ``0 < real < 1`` (TFLite's DCHECKs).
    """
    if not 0.0 < real < 1.0:
        raise FormatError(f"TFLite multiplier {real!r} must lie in (0, 1) "
                          "(QuantizeMultiplierSmallerThanOneExp)")
    m, e = intmath.quantize_multiplier(real, single_rounding=single)
    if e > 0:  # pragma: no cover - real < 1 always gives e <= 0
        raise FormatError(f"TFLite multiplier {real!r} gave a left shift {e}")
    return m, e


def add_params(s1, s2, s_out, single: bool = False, left_shift: int = LEFT_SHIFT
               ) -> tuple[int, int, int, int, int, int]:
    """``(M1, shift1, M2, shift2, M_out, shift_out)`` of add.cc Prepare (``left_shift`` 20
    for 8-bit codes, 15 for int16).

    Scales are read as float32 (TfLiteQuantizationParams), then
    ``2 * max(s1, s2)`` (exact), ``s_i / twice_max`` and
    ``twice_max / (2**left_shift * s_out)`` in double.
    """
    f1, f2, fo = (float(np.float32(v)) for v in (s1, s2, s_out))
    twice_max = 2.0 * max(f1, f2)
    real_out = twice_max / (float(1 << left_shift) * fo)
    return (*multiplier_smaller_than_one(f1 / twice_max, single),
            *multiplier_smaller_than_one(f2 / twice_max, single),
            *multiplier_smaller_than_one(real_out, single))


def mean_params(s_in, s_out, count: int, single: bool = False) -> tuple[int, int]:
    """``(M', shift')`` of TFLM's MEAN over ``count`` elements: ``QuantizeMultiplier(s_in /
    s_out)`` with ``1 / count`` folded in as ``QuantizedMeanOrSum`` does.

    >>> mean_params(0.5, 0.25, 4)  # (2**30, 2) -> k = 2: (2**32 / 4, 0)
    (1073741824, 0)
    """
    m, e = intmath.quantize_multiplier(float(np.float32(s_in)) / float(np.float32(s_out)),
                                       single_rounding=single)
    k = min(int(count).bit_length() - 1, 32, 31 + e)
    if count < 1 or k < 0:  # e >= -31 always (QuantizeMultiplier flushes smaller to 0)
        raise FormatError(f"TFLite MEAN: no multiplier for 1/{count} with shift {e}")
    return (m << k) // count, e - k  # 2**k <= count: still below 2**31


def activation_range(activation: str, scale, zero_point: int, qmin: int, qmax: int
                     ) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized``: ``quantize(f) = zp + round(float32(f) / scale)``
    (float32 divide, ``TfLiteRound`` = half away from zero), intersected with ``[qmin, qmax]``.

    >>> activation_range("relu6", 0.05, -128, -128, 127)
    (-128, -8)
    """
    if activation not in ACTIVATIONS:
        raise FormatError(f"unknown TFLite fused activation {activation!r:.40}; use one of "
                          f"{ACTIVATIONS}")
    s32 = np.float32(scale)

    def quantize(f: float) -> int:
        with np.errstate(over="ignore"):
            v = float(np.float32(f) / s32)
        r = np.copysign(np.floor(abs(v) + 0.5), v)  # exact for a float32 v
        if not INT32_MIN <= r <= INT32_MAX:
            raise FormatError(f"TFLite activation bound {f} / scale {float(s32)!r} does not "
                              "fit int32")
        return int(zero_point) + int(r)

    if activation == "relu":
        return max(qmin, quantize(0.0)), qmax
    if activation == "relu6":
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if activation == "relu_n1_to_1":
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    return qmin, qmax


# --------------------------------------------------------------------------- Eval
def _wrap32(v):
    return ((np.asarray(v, np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def divide_half_away(acc, count: int):
    """C ``acc > 0 ? (acc + count/2) / count : (acc - count/2) / count`` (truncating /),
    the intermediate wrapped to int32 as C does; ``(quotients, n_wrapped)``."""
    acc = np.asarray(acc, np.int64)
    t = np.where(acc > 0, acc + count // 2, acc - count // 2)
    w = _wrap32(t)
    q = np.where(w >= 0, w // count, -((-w) // count))
    return q, int(np.count_nonzero(w != t))


def _clamp(v, lo: int, hi: int):
    return np.clip(v, lo, hi), int(np.count_nonzero((v < lo) | (v > hi)))


def add(a, b, z1: int, z2: int, z_out: int, params, act_min: int, act_max: int, scheme: str,
        left_shift: int = LEFT_SHIFT):
    """``AddFunc`` / ``AddElementwise`` element-wise (``left_shift`` 20: 8-bit, 15: int16);
    returns ``(codes, n_events)``: int32 wraps of the multiplier stages and the
    sum, plus elements the activation clamp changed."""
    m1, e1, m2, e2, mo, eo = params
    mbqm = intmath.multiply_by_quantized_multiplier
    y1, n1 = mbqm((np.asarray(a, np.int64) - z1) << left_shift, m1, e1, scheme)
    y2, n2 = mbqm((np.asarray(b, np.int64) - z2) << left_shift, m2, e2, scheme)
    raw = _wrap32(y1 + y2)
    n3 = int(np.count_nonzero(raw != y1 + y2))
    y, n4 = mbqm(raw, mo, eo, scheme)
    codes, n5 = _clamp(y + z_out, act_min, act_max)
    return codes, n1 + n2 + n3 + n4 + n5


def avgpool(x, kernel, strides, pads, act_min: int, act_max: int):
    """TFLite integer ``AveragePool`` on NCHW codes (``pads`` top, left, bottom, right);
    every window must hold >= 1 real pixel.  ``(codes, n_clamped)``."""
    x = np.asarray(x, np.int64)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, strides, pads
    ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    acc = np.zeros((n, c, ho, wo), np.int64)
    count = np.zeros((1, 1, ho, wo), np.int64)
    for oy in range(ho):
        y0, y1 = max(oy * sh - pt, 0), min(oy * sh - pt + kh, h)
        for ox in range(wo):
            x0, x1 = max(ox * sw - pl, 0), min(ox * sw - pl + kw, w)
            acc[:, :, oy, ox] = x[:, :, y0:y1, x0:x1].sum(axis=(2, 3))
            count[0, 0, oy, ox] = (y1 - y0) * (x1 - x0)
    count = np.broadcast_to(count, acc.shape)
    t = np.where(acc > 0, acc + count // 2, acc - count // 2)
    q = np.where(t >= 0, t // count, -((-t) // count))
    return _clamp(q, act_min, act_max)


def mean_hw(x, zp_in: int, zp_out: int, multiplier: int, shift: int, lo: int, hi: int,
            scheme: str):
    """TFLM ``QuantizedMeanOrSum`` over H, W: ``[N,C,H,W] -> [N,C,1,1]``; ``multiplier`` and
    ``shift`` from :func:`mean_params` (``1/(H*W)`` folded in).

    ``(codes, n_events)``: int32 wraps (the centred sum, the multiplier's left
    shift) plus clamped elements.
    """
    x = np.asarray(x, np.int64)
    size = x.shape[2] * x.shape[3]
    t = x.sum(axis=(2, 3), keepdims=True) - zp_in * size
    acc = _wrap32(t)
    y, n1 = intmath.multiply_by_quantized_multiplier(acc, multiplier, shift, scheme)
    codes, n3 = _clamp(y + zp_out, lo, hi)
    return codes, int(np.count_nonzero(acc != t)) + n1 + n3
