"""XNNPACK's int8 (qs8) ADD, MEAN and clamp bounds: the numpy *specification*.

XNNPACK (github.com/google/XNNPACK 75db3c0), as LiteRT's default delegate
runs it for int8 models.  Its convolutions and fully connected layers
requantize in float32 exactly as ``RequantScheme.FLOAT32`` does (see
:mod:`fxp.frontends.tflite_runtime`); what differs is below.  The Numba
kernels :mod:`fxp.kernels.xnnpack` equal this module bit for bit, and both
are pinned to the ``Fraction`` oracle of ``tests/kernels/test_xnnpack.py``.
All float arithmetic is IEEE float32 with round-to-nearest-even, one
rounding per C operation (no contraction into FMA is assumed).

ADD (``src/microparams-init.c`` ``xnn_init_qs8_add_minmax_scalar_params``
lines 906-957, kernel ``src/qs8-vadd/gen/qs8-vadd-minmax-scalar-u1.c``;
the AVX2/AVX-512 kernels compute the same integers), :func:`add_params`::

    ra = f32(s_a / s_y),  rb = f32(s_b / s_y)              # float32 divisions
    e  = biased exponent of max(ra, rb) - 127               # float_as_uint32 >> 23
    shift = 20 - e                                          # in [12, 30]
    ma = lrintf(ra * 2**shift),  mb = lrintf(rb * 2**shift) # exact scaling, ties to even
    bias = 2**(shift-1) - ma*z_a - mb*z_b                   # int32

and per element ``y = ((bias + a*ma + b*mb) >> shift) + z_y`` clamped to
[-128, 127] (one rounding, ties toward +inf; ``>>`` is arithmetic).  XNNPACK
asserts ``2**-10 <= ra, rb < 2**8``; fxp refuses scales outside that.

MEAN over H and W (``src/operators/reduce-nd.c`` lines 240-380,
``xnn_init_qs8_reduce_scalar_params`` / ``xnn_update_qs8_reduce_scalar_params``
in ``microparams-init.c`` lines 1190-1228, the int32 -> qs8 convert of
``src/reference/unary-elementwise.cc`` with ``round_float_to_int``),
:func:`mean_params`::

    scale = f32(f32(s_x / s_y) * f32(1 / n))                # n = H * W
    zp    = f32(float(z_y) - f32(float(n * z_x) * scale))
    y     = clamp(nearbyint(f32(f32(float(sum x)) * scale) + zp), -128, 127)

where ``sum x`` adds the raw int8 codes in int32 and ``nearbyint`` rounds
half to even.

Clamp bounds of a fused activation (``xnn_qs8_quantize``,
``src/xnnpack/requantization.h`` lines 221-225), :func:`quantize_bound`::

    code = lrintf(min(max(f32(f32(v / s_y) + float(z_y)), -128), 127))
"""

from __future__ import annotations

import numpy as np

__all__ = ["add", "add_params", "mean_hw", "mean_params", "quantize_bound"]

F32 = np.float32


def _f32(v) -> np.float32:
    return F32(v)


def add_params(a_scale, a_zero_point: int, b_scale, b_zero_point: int, y_scale
               ) -> tuple[int, int, int, int]:
    """``(bias, a_multiplier, b_multiplier, shift)`` of XNNPACK's qs8 ADD.

    Raises ``ValueError`` when a scale ratio is outside ``[2**-10, 2**8)``
    (XNNPACK's asserts); the validated caller turns it into a one-line error.

    >>> add_params(0.5, 0, 0.25, 0, 1.0)   # ratios 0.5 and 0.25: shift 21
    (1048576, 1048576, 524288, 21)
    """
    ra = _f32(_f32(a_scale) / _f32(y_scale))
    rb = _f32(_f32(b_scale) / _f32(y_scale))
    for r in (ra, rb):
        if not (F32(2.0 ** -10) <= r < F32(2.0 ** 8)):
            raise ValueError(f"scale ratio {float(r)!r} is outside XNNPACK's [2**-10, 2**8)")
    top = max(ra, rb)
    exponent = int(np.array(top, F32).view(np.uint32) >> 23) - 127
    shift = 20 - exponent
    ma = int(np.rint(np.ldexp(np.float64(ra), shift)))  # exact scaling; rint: ties to even
    mb = int(np.rint(np.ldexp(np.float64(rb), shift)))
    bias = (1 << (shift - 1)) - ma * int(a_zero_point) - mb * int(b_zero_point)
    return bias, ma, mb, shift


def add(a, b, params: tuple[int, int, int, int], y_zero_point: int, lo: int = -128,
        hi: int = 127) -> np.ndarray:
    """``clamp(((bias + a*ma + b*mb) >> shift) + z_y, lo, hi)`` per element (int8 codes)."""
    bias, ma, mb, shift = params
    acc = bias + np.asarray(a, np.int64) * ma + np.asarray(b, np.int64) * mb
    return np.clip((acc >> shift) + int(y_zero_point), lo, hi)


def mean_params(x_scale, x_zero_point: int, y_scale, y_zero_point: int, n: int
                ) -> tuple[np.float32, np.float32]:
    """``(scale, zero_point)`` float32 of XNNPACK's qs8 MEAN over ``n`` elements."""
    scale = _f32(_f32(_f32(x_scale) / _f32(y_scale)) * _f32(F32(1.0) / F32(n)))
    zp = _f32(F32(y_zero_point) - _f32(F32(n * int(x_zero_point)) * scale))
    return scale, zp


def mean_hw(x, params: tuple[np.float32, np.float32]) -> np.ndarray:
    """XNNPACK's MEAN over the last two axes of int8 codes ``x`` ``[N, C, H, W]`` ->
    ``[N, C, 1, 1]``."""
    scale, zp = params
    s = np.asarray(x, np.int64).sum(axis=(2, 3), keepdims=True)
    v = (s.astype(F32) * scale).astype(F32)
    v = (v + zp).astype(F32)
    return np.clip(np.rint(v), -128, 127).astype(np.int64)


def quantize_bound(value: float, y_scale, y_zero_point: int) -> int:
    """``xnn_qs8_quantize``: the int8 code of a clamp bound (ties to even).

    >>> quantize_bound(6.0, 0.05, -128), quantize_bound(0.0, 0.05, -128)
    (-8, -128)
    """
    v = _f32(_f32(F32(value) / _f32(y_scale)) + F32(y_zero_point))
    return int(np.rint(min(max(v, F32(-128.0)), F32(127.0))))
