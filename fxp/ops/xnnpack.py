"""XNNPACK's int8 ADD, MEAN and clamp bounds: validated entry points.

Convention followed: XNNPACK's qs8 operators as LiteRT's default delegate
runs them (:mod:`fxp.kernels.spec_xnnpack` states the arithmetic and the
source lines).  ``backend="numba"`` runs :mod:`fxp.kernels.xnnpack`,
``"numpy"`` the specification; both give the same integers.

>>> import numpy as np
>>> xnnpack_add(np.array([10, -3]), np.array([4, 4]), a_scale=0.5, a_zero_point=0,
...             b_scale=0.25, b_zero_point=0, y_scale=1.0, y_zero_point=0)
array([6, 0])
"""

from __future__ import annotations

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FormatError, PlanError
from fxp.kernels import spec_xnnpack as spec
from fxp.ops._checks import _backend, _codes

__all__ = ["xnnpack_act_bounds", "xnnpack_add", "xnnpack_add_params", "xnnpack_mean_hw"]

_I8 = QFormat.integer(8, True)


def _int8(x, what: str, where: str) -> np.ndarray:
    a = _codes(x, what)
    if a.size and (a.min() < -128 or a.max() > 127):
        raise FormatError(f"{where}: {what} holds codes outside int8 [{int(a.min())}, "
                          f"{int(a.max())}]")
    return a


def _zp(v, what: str, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not -128 <= v <= 127:
        raise FormatError(f"{where}: {what} must be an int8 code, got {v!r:.40}")
    return int(v)


def _scale(v, what: str, where: str) -> np.float32:
    s = np.float32(v)
    if not (np.isfinite(s) and s > 0):
        raise FormatError(f"{where}: {what} must be finite and > 0 in float32, got {v!r:.40}")
    return s


def xnnpack_add_params(a_scale, a_zero_point, b_scale, b_zero_point, y_scale
                       ) -> tuple[int, int, int, int]:
    """``(bias, a_multiplier, b_multiplier, shift)`` (XNNPACK's Prepare).

    Raises
    ------
    FormatError
        Bad scales or zero points, or a ratio ``s_a / s_y`` or ``s_b / s_y``
        outside XNNPACK's ``[2**-10, 2**8)``.
    """
    where = "xnnpack_add"
    sa, sb, sy = (_scale(v, k, where) for v, k in ((a_scale, "a_scale"), (b_scale, "b_scale"),
                                                   (y_scale, "y_scale")))
    za, zb = _zp(a_zero_point, "a_zero_point", where), _zp(b_zero_point, "b_zero_point", where)
    try:
        return spec.add_params(sa, za, sb, zb, sy)
    except ValueError as exc:
        raise FormatError(f"{where}: {exc}") from None


def xnnpack_add(a, b, *, a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point,
                lo: int = -128, hi: int = 127, backend: str = "numba") -> np.ndarray:
    """XNNPACK qs8 ADD of int8 codes of one shape, clamped to ``[lo, hi]`` (a fused
    activation's bounds, :func:`xnnpack_act_bounds`).

    Raises
    ------
    FormatError
        Codes outside int8, shapes that differ, bad scales (see :func:`xnnpack_add_params`).
    """
    where = "xnnpack_add"
    x, y = _int8(a, "a", where), _int8(b, "b", where)
    if x.shape != y.shape:
        raise FormatError(f"{where}: a and b must have one shape, got {x.shape} and {y.shape}")
    params = xnnpack_add_params(a_scale, a_zero_point, b_scale, b_zero_point, y_scale)
    zy = _zp(y_zero_point, "y_zero_point", where)
    if not -128 <= int(lo) <= int(hi) <= 127:
        raise FormatError(f"{where}: bounds [{lo}, {hi}] are not an int8 range")
    if _backend(backend) == "numpy":
        return spec.add(x, y, params, zy, int(lo), int(hi))
    from fxp.kernels.xnnpack import add_elements

    bias, ma, mb, shift = params
    out = add_elements(x.size, x.ravel(), y.ravel(), np.int64(bias), np.int64(ma),
                       np.int64(mb), np.int64(shift), np.int64(zy), np.int64(lo), np.int64(hi))
    return out.reshape(x.shape)


def xnnpack_mean_hw(x, *, x_scale, x_zero_point, y_scale, y_zero_point,
                    backend: str = "numba") -> np.ndarray:
    """XNNPACK qs8 MEAN over H and W of int8 codes ``[N, C, H, W]`` -> ``[N, C, 1, 1]``.

    Raises
    ------
    FormatError
        Not NCHW int8 codes, an empty window, bad scales or zero points.
    """
    where = "xnnpack_mean_hw"
    a = _int8(x, "x", where)
    if a.ndim != 4 or a.shape[2] * a.shape[3] == 0:
        raise FormatError(f"{where}: x must be NCHW with H*W > 0, got shape {a.shape}")
    n = a.shape[2] * a.shape[3]
    params = spec.mean_params(_scale(x_scale, "x_scale", where),
                              _zp(x_zero_point, "x_zero_point", where),
                              _scale(y_scale, "y_scale", where),
                              _zp(y_zero_point, "y_zero_point", where), n)
    if _backend(backend) == "numpy":
        return spec.mean_hw(a, params)
    from fxp.kernels.xnnpack import mean_rows

    rows = np.ascontiguousarray(a.reshape(-1, n))
    out = mean_rows(rows.size, rows, np.float32(params[0]), np.float32(params[1]))
    return out.reshape(a.shape[0], a.shape[1], 1, 1)


def xnnpack_act_bounds(node, out_spec) -> tuple[int, int] | None:
    """Int8 clamp bounds XNNPACK derives for the fused activation of ``node`` (a Conv2D /
    Dense ``fused_activation``, a ReLU or a Clip) into ``out_spec``; None without one.

    Raises
    ------
    PlanError
        ``out_spec`` is not an affine int8 per-tensor coding.
    """
    from fxp.sim.compile import node_activation

    if out_spec.fmt != _I8 or out_spec.scales is None or len(out_spec.scales) != 1:
        raise PlanError(f"layer {node.name!r}: XNNPACK's int8 kernels need an affine int8 "
                        f"per-tensor output, got {out_spec.fmt}")
    act = node_activation(node)
    if act is None:
        return None
    lo, hi = (0.0, float("inf")) if act == "relu" else act
    s, z = out_spec.scales[0], out_spec.zero_point
    b_lo = -128 if lo is None or not np.isfinite(lo) else spec.quantize_bound(lo, s, z)
    b_hi = 127 if hi is None or not np.isfinite(hi) else spec.quantize_bound(hi, s, z)
    return b_lo, b_hi
