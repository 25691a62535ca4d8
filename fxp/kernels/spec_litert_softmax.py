"""LiteRT's integer SOFTMAX where it differs from TFLite Micro: the numpy *specification*.

Sources: google-ai-edge/LiteRT f674577, ``tflite/kernels/activations.cc``
(``SoftmaxPrepare`` lines 560-645, ``SoftmaxQuantized`` lines 1199-1258) and
``tflite/kernels/internal``.  The Numba kernel :mod:`fxp.kernels.litert_softmax`
equals :func:`softmax_float_table` bit for bit; both are pinned to the
``Fraction`` oracle of ``tests/kernels/test_litert_softmax.py``.

int8, optimized kernels (``optimized_ops::Softmax``, ``optimized_ops.h``
lines 3504-3567; LiteRT's default ``BUILTIN`` resolver, with or without
XNNPACK, which does not take quantized SOFTMAX).  On x86-64
``TFLITE_SOFTMAX_USE_UINT16_LUT`` is off (aarch64 clang only), so the kernel
works in float32:

* Prepare (``PopulateSoftmaxLookupTable``): ``k = f32(-s_x * beta)``,
  ``table[255 - d] = expf(f32(k * d))`` for ``d = 0..255`` (:func:`float_table`;
  ``expf`` is taken as the correctly rounded float32 exp);
* per row: ``m = max(x)``; ``sum = sum_j table[255 - (m - x_j)]`` in float32,
  left to right; ``inv = f32(1 / f32(sum * s_y))``;
  ``y_j = round(f32(table[255 - (m - x_j)] * inv)) + z_y`` (``std::round``:
  ties away from zero), clamped to [-128, 127].

The reference kernels (``BUILTIN_REF``) compute int8 as TFLite Micro does
(:mod:`fxp.kernels.spec_tflite_softmax`).

int16 (``reference_ops::SoftmaxInt16`` in every LiteRT resolver): TFLite
Micro's algorithm, but the two 513-entry tables come from
``LUTPopulate<int16_t>`` with ``double`` (``internal/common.h``
``LUTPopulateInt16<double>``, lines 557-619, "for backward compatibility")
where TFLite Micro builds them in float32; :func:`lut_int16_double` builds
them.  ``input_multiplier`` is ``QuantizeMultiplier(f32(s_x * beta) /
(10 / 65535))``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["float_table", "lut_int16_double", "softmax_float_table"]

F32 = np.float32


def float_table(x_scale, beta: float = 1.0) -> np.ndarray:
    """``table[255 - d] = expf(f32(f32(-s_x * beta) * d))`` for ``d`` in 0..255 (float32)."""
    k = F32(-F32(x_scale) * F32(beta))
    d = np.arange(256, dtype=np.float32)
    e = np.exp((k * d).astype(np.float32).astype(np.float64)).astype(np.float32)
    return e[::-1].copy()


def _round_away(v: np.ndarray) -> np.ndarray:
    t = np.trunc(v)
    return t + np.where(np.abs(v - t) >= 0.5, np.sign(v), 0.0)


def softmax_float_table(x, table: np.ndarray, y_scale, y_zero_point: int
                        ) -> tuple[np.ndarray, int]:
    """LiteRT's optimized int8 softmax over the last axis of codes ``x [R, n]``;
    ``(codes, n_clamped)``."""
    x = np.asarray(x, np.int64)
    t = np.asarray(table, np.float32)
    e = t[255 - (x.max(axis=1, keepdims=True) - x)]
    total = np.zeros((x.shape[0], 1), np.float32)
    for j in range(x.shape[1]):  # float32 sum, left to right
        total = (total + e[:, j:j + 1]).astype(np.float32)
    inv = (F32(1.0) / (total * F32(y_scale)).astype(np.float32)).astype(np.float32)
    p = (e * inv).astype(np.float32)
    q = _round_away(p.astype(np.float64)).astype(np.int64) + int(y_zero_point)
    out = np.clip(q, -128, 127)
    return out, int(np.count_nonzero(out != q))


def _round(v: float) -> float:
    """``std::round`` on a double: ties away from zero."""
    t = math.trunc(v)
    return float(t + (math.copysign(1, v) if abs(v - t) >= 0.5 else 0))


def lut_int16_double(kind: str) -> np.ndarray:
    """LiteRT's 513-entry int16 table of ``exp`` on [-10, 0] (``"exp"``) or ``1 / (1 + x)``
    on [0, 1] (``"recip"``), built in double as ``LUTPopulateInt16<double>``."""
    rng = 32767 - (-32768)
    if kind == "exp":
        in_scale, in_zp, func = 10.0 / rng, 32767, math.exp
    elif kind == "recip":
        in_scale, in_zp, func = 1.0 / rng, -32768, lambda v: 1.0 / (1.0 + v)
    else:
        raise ValueError(f"LUT kind must be 'exp' or 'recip', got {kind!r:.40}")
    out_scale, out_zp = 2.0 / rng, 0
    in_min = in_scale * (-32768 - in_zp)
    in_max = in_scale * (32767 - in_zp)
    out_min = out_scale * (-32768 - out_zp)
    out_max = out_scale * (32767 - out_zp)
    steps = 512
    step = (in_max - in_min) / steps
    half = step / 2
    inv = float(32767 - (-32768) + 1) / (out_max - out_min)
    lut = np.empty(steps + 1, np.int64)
    for i in range(steps):
        val = func(in_min + i * step)
        mid = func(in_min + i * step + half)
        nxt = func(in_min + (i + 1) * step)
        sample = _round(val * inv)
        interp = _round((nxt * inv + _round(val * inv)) / 2)
        bias = _round((interp - _round(mid * inv)) / 2)
        lut[i] = int(min(max(sample - bias, -32768.0), 32767.0))
    lut[steps] = int(min(max(_round(func(in_max) * inv), -32768.0), 32767.0))
    return lut
