"""Requantizations of LiteRT's int8 kernels (ruy, the reference FC): the numpy *specification*.

TFLite Micro's reference kernels requantize with gemmlowp's double rounding
(``RequantScheme.DOUBLE``, :func:`fxp.core.intmath.multiply_by_quantized_multiplier`).
LiteRT's kernels (:mod:`fxp.frontends.tflite_runtime`) use two other
conventions, on the same ``(M, shift)`` pair of ``QuantizeMultiplier`` or on
the scales themselves.  The Numba kernel :mod:`fxp.kernels.runtime_requant`
must equal this module bit for bit; both are pinned to the Python-int /
``Fraction`` oracle of ``tests/kernels/test_runtime_requant.py``.

``double`` -- gemmlowp: ``SRDHM`` (``(s*M + nudge) / 2**31`` toward zero with
``nudge = 2**30`` or ``1 - 2**30``: ties toward +inf) then RoundingDivideByPOT
(ties away from zero).

``ruy`` -- ruy's x86 kernels (``ruy/kernel_avx2_fma.cc`` and
``kernel_avx512.cc``, the ``apply_multiplier`` lambda, lines 355-525;
github.com/google/ruy 2af8886), which LiteRT's optimized ``CONV_2D`` and
``FULLY_CONNECTED`` call through ``cpu_backend_gemm`` on x86-64
(``cpu_backend_gemm_x86.h``: int8 goes to ruy)::

    left, right = max(shift, 0), max(-shift, 0)
    s = int32(acc << left)                         # _mm256_sllv_epi32: wraps (counted)
    h = (s * M + 2**30) >> 31                      # 64-bit, floor: ties toward +inf
    y = (h + 2**(right - 1)) >> right  if right    # rounding right shift, ties toward +inf

``h`` is gemmlowp's SRDHM; the second rounding differs: gemmlowp rounds its
ties away from zero, ruy toward +inf, so the two differ exactly on negative
values whose ``h`` is an odd multiple of ``2**(right-1)``.  (ruy's overflow
guard, ``h > INT32_MAX - nudge -> 1 << (31 - right)``, is this same value
computed without wrapping.)  LiteRT's optimized DEPTHWISE_CONV_2D
(``optimized_ops::Quantize``) and keep-dims MEAN (``optimized_integer_ops::MeanImpl``)
requantize whole blocks of 8 (16) channels in their NEON path -- compiled on
x86 through ``NEON_2_SSE``, measured to give ``ruy``'s integers -- and the
remaining channels one by one with gemmlowp's (:func:`litert_block_variants`).

``float64`` -- LiteRT's reference ``FULLY_CONNECTED`` (the overloads taking
float scales, ``kernels/internal/reference/integer_ops/fully_connected.h``
lines 117-123 and 221-225, google-ai-edge/LiteRT f674577)::

    scale = double(s_x) * double(s_w[c]) / double(s_y)     # left to right, float64
    y = int32(round(double(acc) * scale))                  # C round: ties away from zero

``acc`` is int32 (int8 models) or int64 (int16x8, exact in float64 below
2**53).  A result outside int32 is C undefined behaviour; x86's
``cvttsd2si`` gives ``INT32_MIN``, which is what fxp returns, counted.

Each function returns ``(y + zero_point, n)`` before the activation clamp and
the output overflow, which the caller applies; ``n`` counts left shifts that
wrapped int32 (``ruy``, ``double``) or float64 results outside int32.
"""

from __future__ import annotations

import numpy as np

__all__ = ["VARIANTS", "float64_scales", "litert_block_variants", "mbqm_double", "mbqm_ruy",
           "requant_float64", "requantize_runtime"]

VARIANTS = ("ruy", "float64", "double")
"""Variant names; the kernel takes their index, one per channel."""
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _wrap32(v: np.ndarray) -> np.ndarray:
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _high(x: np.ndarray, multiplier: int, shift: int) -> tuple[np.ndarray, int]:
    """``(int32(x << left) * M + 2**30) >> 31`` and the number of wrapped left shifts."""
    left = max(int(shift), 0)
    shifted = x << left
    s = _wrap32(shifted)
    return (s * np.int64(multiplier) + (1 << 30)) >> 31, int(np.count_nonzero(s != shifted))


def mbqm_ruy(x, multiplier: int, shift: int) -> tuple[np.ndarray, int]:
    """ruy's x86 multiplier: both roundings ties toward +inf; ``(values, n_wrapped)``.

    >>> mbqm_ruy(np.array([3, -3]), 1 << 30, -1)[0].tolist()  # h = 2, -1; then 1, -0.5 -> 0
    [1, 0]
    """
    h, n = _high(np.asarray(x, np.int64), multiplier, shift)
    right = max(-int(shift), 0)
    if right:
        h = (h + (1 << (right - 1))) >> right
    return h, n


def _rdbpot(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: ``round(x / 2**exponent)``, ties away from zero."""
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def mbqm_double(x, multiplier: int, shift: int) -> tuple[np.ndarray, int]:
    """gemmlowp's ``RDBPOT(SRDHM(int32(x << left), M), right)``; ``(values, n_wrapped)``.

    ``SRDHM`` rounds ties toward +inf (``M >= 0``: it never saturates),
    RDBPOT away from zero.

    >>> mbqm_double(np.array([3, -3, -1]), 1 << 30, -1)[0].tolist()  # h = 2, -1, 0
    [1, -1, 0]
    """
    x = np.asarray(x, np.int64)
    left, right = max(int(shift), 0), max(-int(shift), 0)
    shifted = x << left
    s = _wrap32(shifted)
    ab = s * np.int64(multiplier)
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    t = ab + nudge
    high = np.where(t >= 0, t >> 31, -((-t) >> 31))  # C division: toward zero
    return _rdbpot(high, right), int(np.count_nonzero(s != shifted))


def litert_block_variants(channels: int, block: int) -> tuple[str, ...]:
    """Per channel: ``"ruy"`` for the channels in whole blocks of ``block``, ``"double"``
    for the ``channels % block`` left over (LiteRT's optimized kernels on x86).

    >>> litert_block_variants(10, 8)
    ('ruy', 'ruy', 'ruy', 'ruy', 'ruy', 'ruy', 'ruy', 'ruy', 'double', 'double')
    """
    whole = channels // block * block
    return ("ruy",) * whole + ("double",) * (channels - whole)


def float64_scales(x_scale, w_scales, y_scale) -> np.ndarray:
    """``double(s_x) * double(s_w[c]) / double(s_y)`` of float32 scales (LiteRT's order)."""
    sx = np.float64(np.float32(x_scale))
    sw = np.asarray(w_scales, np.float32).astype(np.float64)
    return (sx * sw) / np.float64(np.float32(y_scale))


def requant_float64(acc, scale: float) -> tuple[np.ndarray, int]:
    """``int32(round(double(acc) * scale))``, ties away from zero; ``(values, n_outside)``.

    >>> requant_float64(np.array([5, -5, 7]), 0.5)[0].tolist()   # 2.5 -> 3, -2.5 -> -3
    [3, -3, 4]
    """
    v = np.asarray(acc, np.int64).astype(np.float64) * np.float64(scale)
    t = np.trunc(v)
    r = t + np.where(np.abs(v - t) >= 0.5, np.sign(v), 0.0)  # v - trunc(v) is exact
    bad = ~((r >= INT32_MIN) & (r <= INT32_MAX))
    out = np.where(bad, INT32_MIN, np.where(bad, 0.0, r).astype(np.int64))
    return out.astype(np.int64), int(np.count_nonzero(bad))


def requantize_runtime(acc, variants, multipliers, shifts, scales, axis: int,
                       zero_point: int) -> tuple[np.ndarray, int]:
    """Per channel ``c`` of ``axis``: ``variants[c]`` of :data:`VARIANTS` plus ``zero_point``.

    ``multipliers`` / ``shifts`` serve ``"ruy"`` and ``"double"``,
    ``scales`` (float64, :func:`float64_scales`) serves ``"float64"``.  Returns
    ``(values, n)`` (see the module docstring).
    """
    acc = np.asarray(acc, np.int64)
    out = np.empty_like(acc)
    n = 0
    src, dst = np.moveaxis(acc, axis, 0), np.moveaxis(out, axis, 0)
    for c in range(src.shape[0]):
        if variants[c] == "float64":
            y, k = requant_float64(src[c], float(scales[c]))
        else:
            fn = mbqm_ruy if variants[c] == "ruy" else mbqm_double
            y, k = fn(src[c], int(multipliers[c]), int(shifts[c]))
        dst[c] = y + zero_point
        n += k
    return out, n
