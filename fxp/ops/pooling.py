"""Integer pooling on codes: max, average (exact rounding divide) and global average.

Validated entry points over :mod:`fxp.kernels.pool` (``backend="numba"``)
and the numpy specification :mod:`fxp.kernels.spec_layers`
(``backend="numpy"``); both give the same integers.
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.core.modes import RoundingMode
from fxp.errors import FormatError, HeadroomError
from fxp.kernels import spec_layers as spec
from fxp.ops._checks import I64_MAX, _backend, _codes, _int64, _max_abs_diff, _span, _window

__all__ = ["avgpool2d_int", "global_avgpool_int", "maxpool2d_int"]


def maxpool2d_int(x, x_fmt: QFormat, kernel, *, strides=(1, 1), pads=(0, 0, 0, 0),
                  dilations=(1, 1), backend: str = "numba") -> np.ndarray:
    """Max pooling of codes of ``x_fmt``; padding reads ``x_fmt.min_code`` (never wins)."""
    x = _codes(x, "x", 4)
    intmath._check_in_format(x, x_fmt)
    k, s, p, d, ho, wo = _window(x, kernel, strides, pads, dilations, "maxpool2d_int")
    if _backend(backend) == "numpy":
        return spec.maxpool2d(x, x_fmt.min_code, k, s, p, d)
    from fxp.kernels.pool import maxpool2d_codes

    return maxpool2d_codes(x.size * k[0] * k[1], x, x_fmt.min_code, *k, *s, p[0], p[1], *d, ho, wo)


def avgpool2d_int(x, kernel, rounding, *, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1),
                  count_include_pad: bool = False, zero_point: int = 0,
                  backend: str = "numba") -> np.ndarray:
    """Average pooling: ``round(sum(x - zp) / count) + zp`` with an explicit rounding mode.

    ``count`` is ``kh*kw`` with ``count_include_pad`` (padding is real 0), else
    the number of real pixels.  The divide is exact integer arithmetic; CMSIS /
    TFLite int8 use ``"half_away"``.  Output codes share the input's format.
    """
    x = _codes(x, "x", 4)
    mode = RoundingMode.from_string(rounding)
    if mode is RoundingMode.STOCHASTIC:
        raise FormatError("avgpool2d_int: stochastic rounding is not offered for the divide; "
                          "choose a deterministic mode")
    zp = _int64(zero_point, "zero_point")
    k, s, p, d, ho, wo = _window(x, kernel, strides, pads, dilations, "avgpool2d_int")
    m = _max_abs_diff(*_span(x), zp, zp, "x")
    if m * k[0] * k[1] > I64_MAX:
        raise HeadroomError(f"a window sum can reach {k[0] * k[1]} * {m}, beyond int64")
    if _backend(backend) == "numpy":
        return spec.avgpool2d(x, zp, k, s, p, d, bool(count_include_pad), mode)
    from fxp.kernels.pool import avgpool2d_codes

    return avgpool2d_codes(x.size * k[0] * k[1], x, zp, *k, *s, p[0], p[1], *d, ho, wo,
                           bool(count_include_pad), mode.code)


def global_avgpool_int(x, rounding, *, zero_point: int = 0, backend: str = "numba") -> np.ndarray:
    """``[N, C, H, W] -> [N, C, 1, 1]``: :func:`avgpool2d_int` over the whole image."""
    x = _codes(x, "x", 4)
    return avgpool2d_int(x, x.shape[2:], rounding, zero_point=zero_point, backend=backend)
