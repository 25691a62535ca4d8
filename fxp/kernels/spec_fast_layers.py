"""Numpy statements of the channels-last kernels of the proven float path.

:mod:`fxp.kernels.fast_layers` must equal these functions element for element
(``tests/kernels/test_fast_layers.py``); they are written with the NCHW
specifications of :mod:`fxp.kernels.spec_layers` and the rounding/overflow
specification of :mod:`fxp.core.intmath`, transposed to channels-last.
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.kernels.spec_layers import _im2col, avgpool2d, maxpool2d

__all__ = ["avgpool_rows", "gemm_u8s8", "im2col_rows", "maxpool_rows", "requant_rows"]


def im2col_rows(x, kh: int, kw: int, strides, pads, dilations, groups: int, pad: int = 0,
                dtype=np.float32) -> np.ndarray:
    """``x [N, H, W, C]`` -> ``[N*Ho*Wo, kh*kw*C]`` of ``dtype``, columns ordered
    ``(group, ky, kx, channel within the group)``, taps outside the image ``pad``."""
    x = np.asarray(x)
    # the patches of x - pad (zero outside the image), plus pad
    t = _im2col(x.transpose(0, 3, 1, 2).astype(np.float64), kh, kw, strides, pads, dilations,
                pad) + pad
    n, c, _, _, ho, wo = t.shape  # [N, C, kh, kw, Ho, Wo]
    t = t.reshape(n, groups, c // groups, kh, kw, ho, wo).transpose(0, 5, 6, 1, 3, 4, 2)
    return t.reshape(n * ho * wo, -1).astype(dtype)


def gemm_u8s8(a, b) -> np.ndarray:
    """``a [M, K]`` uint8 codes, ``b [K, N]`` int8 -> int64 ``[M, N]``: the exact products
    summed (what :func:`fxp.kernels.vnni.gemm_u8s8` must hold in int32 where no sum reaches
    ``2**31``)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != np.uint8 or b.dtype != np.int8:
        raise TypeError(f"gemm_u8s8 takes uint8 x int8 codes, got {a.dtype} x {b.dtype}")
    return a.astype(np.int64) @ b.astype(np.int64)


def requant_rows(a, bias, shift: int, rounding, lo: int, hi: int, out: QFormat, overflow
                 ) -> tuple[np.ndarray, int]:
    """``a [G, M, Cog]`` exact integers -> ``(codes int64 [M, G*Cog], n_overflow)``: add the
    bias, round ``/ 2**shift`` (``shift <= 0``: exact left shift), clamp to ``[lo, hi]``,
    then ``out``'s overflow mode, counting the values it changed."""
    g, m, cog = a.shape
    acc = np.asarray(a).astype(np.int64).transpose(1, 0, 2).reshape(m, g * cog)
    acc = acc + np.asarray(bias, np.int64)
    y = intmath.shift_right_round(acc, shift, rounding) if shift > 0 else acc << -shift
    return intmath.apply_overflow(np.clip(y, lo, hi), out, overflow)


def maxpool_rows(x, pad_code: int, kernel, strides, pads, dilations) -> np.ndarray:
    """``x [N, H, W, C]`` -> int64 ``[N, Ho, Wo, C]``: :func:`maxpool2d` in channels-last order."""
    nchw = np.asarray(x).transpose(0, 3, 1, 2).astype(np.int64)
    return maxpool2d(nchw, pad_code, kernel, strides, pads, dilations).transpose(0, 2, 3, 1)


def avgpool_rows(x, zero_point: int, kernel, strides, pads, count_include_pad: bool,
                 rounding) -> np.ndarray:
    """``x [N, H, W, C]`` -> int64 ``[N, Ho, Wo, C]``: :func:`avgpool2d` in channels-last order."""
    nchw = np.asarray(x).transpose(0, 3, 1, 2).astype(np.int64)
    return avgpool2d(nchw, zero_point, kernel, strides, pads, (1, 1), count_include_pad,
                     rounding).transpose(0, 2, 3, 1)
