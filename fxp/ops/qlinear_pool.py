"""onnxruntime's quantized average pools on int8/uint8 codes: the validated entry points.

Convention followed: onnxruntime 1.32's CPU ``QLinearAveragePool`` and
``QLinearGlobalAveragePool`` (com.microsoft), as restated step by step in
:mod:`fxp.kernels.spec_qlinear_pool` (sources cited there): the global pool
sums raw codes exactly and requantizes with one float32 scale
``x_scale / (y_scale * H*W)``; the windowed pool sums *dequantized* float32
values in window order, divides by the count in float32 and rounds after adding
the zero point.  Neither is fxp's exact ``round(sum(x - zp) / n)``
(:func:`fxp.ops.pooling.avgpool2d_int`, unchanged).

Both return ``(codes, n_saturated)``; ``backend="numba"`` runs
:mod:`fxp.kernels.qlinear_pool`, ``backend="numpy"`` the specification.

>>> import numpy as np
>>> from fxp.core.format import QFormat
>>> x = np.array([[[[1, 2], [3, 5]]]])                 # mean 2.75 in x's scale
>>> qlinear_global_avgpool(x, x_scale=0.5, x_zero_point=0, y_scale=0.5, y_zero_point=0,
...                        fmt=QFormat.integer(8))
(array([[[[3]]]]), 0)
"""

from __future__ import annotations

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FormatError, HeadroomError
from fxp.kernels import spec_qlinear_pool as spec
from fxp.kernels.spec_qlinear import dequantize_table
from fxp.ops._checks import _backend, _ints
from fxp.ops.qlinear import _in_format, _qtype, _scale, _zero_point

__all__ = ["qlinear_avgpool", "qlinear_global_avgpool"]

MAX_IMAGE = 1 << 24
"""onnxruntime refuses global pools over ``H*W >= 2**24`` pixels."""


def _pool_args(x, fmt, where, x_scale, x_zero_point, y_scale, y_zero_point):
    signed, lo, hi = _qtype(fmt, where)
    x = _in_format(x, "x", fmt, where)
    if x.ndim != 4:
        raise FormatError(f"{where}: x must be NCHW (4 dimensions), got shape {x.shape}")
    return (x, signed, lo, hi, _scale(x_scale, "x_scale", where),
            _zero_point(x_zero_point, "x_zero_point", fmt, where),
            _scale(y_scale, "y_scale", where),
            _zero_point(y_zero_point, "y_zero_point", fmt, where))


def _check_image(shape, where: str) -> None:
    """The global pool's size limits, checked on the shape before any copy."""
    if len(shape) != 4:
        raise FormatError(f"{where}: x must be NCHW (4 dimensions), got shape {shape}")
    n = int(shape[2]) * int(shape[3])
    if n >= MAX_IMAGE:
        raise FormatError(f"{where}: onnxruntime refuses global pools over H*W >= 2**24 pixels, "
                          f"got {n}")
    if n * 255 > (1 << 31) - 1:
        raise HeadroomError(f"{where}: the sum of {n} codes minus the zero point can leave "
                            "MLAS's int32 accumulator")


def _global(x, sx, zx, sy, zy, lo, hi, where, backend):
    n = x.shape[2] * x.shape[3]
    scale = spec.global_scale(sx, sy, n)
    if not (2.0 ** -32 <= scale < 256.0):
        raise FormatError(f"{where}: x_scale / (y_scale * H*W) = {float(scale)!r} is outside "
                          "onnxruntime's range [2**-32, 256) (it throws 'parameter out of "
                          "computation range')")
    if _backend(backend) == "numpy":
        return spec.qlinear_global_avgpool(x, sx, int(zx), sy, int(zy), lo, hi)
    from fxp.kernels.qlinear_pool import global_avgpool_codes

    codes, k = global_avgpool_codes(x.size, x, scale, zx, zy, lo, hi)
    return codes, int(k)


def qlinear_global_avgpool(x, *, x_scale, x_zero_point, y_scale, y_zero_point, fmt: QFormat,
                           backend: str = "numba") -> tuple[np.ndarray, int]:
    """onnxruntime ``QLinearGlobalAveragePool`` (NCHW): ``[N, C, H, W] -> [N, C, 1, 1]``.

    ``rint(float32(sum(x) - zx*H*W) * scale) + zy`` saturated, with
    ``scale = float32(x_scale / float32(y_scale * H*W))``.

    Raises
    ------
    FormatError
        Not NCHW, bad format / scale / zero point, ``H*W >= 2**24`` or ``scale``
        outside ``[2**-32, 256)`` (onnxruntime throws for both).
    HeadroomError
        ``255 * H*W`` beyond int32 (MLAS's accumulator).
    """
    where = "qlinear_global_avgpool"
    _check_image(np.shape(x), where)
    x, _, lo, hi, sx, zx, sy, zy = _pool_args(x, fmt, where, x_scale, x_zero_point, y_scale,
                                              y_zero_point)
    return _global(x, sx, zx, sy, zy, lo, hi, where, backend)


def qlinear_avgpool(x, kernel, *, strides=(1, 1), pads=(0, 0, 0, 0),
                    count_include_pad: bool = False, x_scale, x_zero_point, y_scale,
                    y_zero_point, fmt: QFormat, backend: str = "numba"
                    ) -> tuple[np.ndarray, int]:
    """onnxruntime 2-D ``QLinearAveragePool`` (NCHW, floor mode, no dilation).

    ``pads`` are ``(top, left, bottom, right)``; each must be smaller than the
    kernel (onnxruntime's check).  A kernel equal to the image with zero pads
    runs :func:`qlinear_global_avgpool`, as onnxruntime does.

    Raises
    ------
    FormatError
        Bad geometry (window larger than the padded image, a pad not smaller
        than the kernel), format, scale or zero point, and the global pool's
        refusals when it falls back to it.
    HeadroomError
        As :func:`qlinear_global_avgpool` on the fallback.
    """
    where = "qlinear_avgpool"
    x, signed, lo, hi, sx, zx, sy, zy = _pool_args(x, fmt, where, x_scale, x_zero_point,
                                                   y_scale, y_zero_point)
    (kh, kw) = _ints(kernel, 2, "kernel", 1)
    (sh, sw) = _ints(strides, 2, "strides", 1)
    p = _ints(pads, 4, "pads (top, left, bottom, right)", 0)
    if max(p[0], p[2]) >= kh or max(p[1], p[3]) >= kw:
        raise FormatError(f"{where}: every pad must be smaller than the kernel (onnxruntime's "
                          f"check), got pads={p} for kernel {(kh, kw)}")
    h, w = x.shape[2:]
    ho = (h + p[0] + p[2] - kh) // sh + 1
    wo = (w + p[1] + p[3] - kw) // sw + 1
    if h + p[0] + p[2] < kh or w + p[1] + p[3] < kw:
        raise FormatError(f"{where}: kernel {(kh, kw)} does not fit the padded input "
                          f"{(h + p[0] + p[2], w + p[1] + p[3])}")
    if (kh, kw) == (h, w) and not any(p):
        _check_image(x.shape, where)
        return _global(x, sx, zx, sy, zy, lo, hi, where, backend)
    if _backend(backend) == "numpy":
        return spec.qlinear_avgpool(x, sx, int(zx), sy, int(zy), (kh, kw), (sh, sw), p,
                                    bool(count_include_pad), signed, lo, hi)
    from fxp.kernels.qlinear_pool import avgpool_codes

    deq = dequantize_table(sx, int(zx), signed)
    codes, k = avgpool_codes(x.size * kh * kw, x, deq, sy, zy, kh, kw, sh, sw, p[0], p[1], ho, wo,
                             bool(count_include_pad), lo, hi)
    return codes, int(k)
