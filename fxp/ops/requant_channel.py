"""Per-channel requantization of accumulators: power-of-two shifts, multiplier+shift, float32.

Validated entry points over :mod:`fxp.kernels.requant_channel`
(``backend="numba"``) and the numpy specification
:mod:`fxp.kernels.spec_layers` (``backend="numpy"``); both give the same
integers.  One value per channel of ``axis``.
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import FormatError
from fxp.kernels import spec_layers as spec
from fxp.ops._checks import _backend, _codes, _int64, _seed

__all__ = ["requantize_float32_per_channel", "requantize_multiplier_per_channel",
           "requantize_pow2_per_channel"]


def _channels(acc, values, axis: int, what: str):
    x = _codes(acc, "accumulator")
    if not -x.ndim <= int(axis) < x.ndim:
        raise FormatError(f"axis={axis} is out of range for an accumulator of shape {x.shape}")
    axis = int(axis) % x.ndim
    v = np.ascontiguousarray(np.asarray(values).ravel())
    if v.shape != (x.shape[axis],):
        raise FormatError(f"{what} must hold {x.shape[axis]} values (one per channel of axis "
                          f"{axis}), got {np.asarray(values).shape}")
    return x, v, axis, int(np.prod(x.shape[axis + 1:], dtype=np.int64))


def requantize_pow2_per_channel(acc, shifts, out: QFormat, rounding="half_up",
                                overflow="saturate", *, axis: int = 1, seed: int | None = None,
                                index_offset: int = 0, backend: str = "numba"):
    """Per-channel ``requantize_pow2``: channel ``c`` divides by ``2**shifts[c]``.

    A shift in 0..64 rounds then overflows; a negative shift (down to -64)
    multiplies by ``2**-shift`` with overflow.  Stochastic draws use the flat
    C-order index in ``acc`` plus ``index_offset``.  Returns ``(codes, n_overflow)``.
    """
    rmode, omode = RoundingMode.from_string(rounding), OverflowMode.from_string(overflow)
    x, s, axis, inner = _channels(acc, shifts, axis, "shifts")
    if s.dtype.kind not in "iu" or (s.size and (s.min() < -64 or s.max() > 64)):
        raise FormatError(f"shifts must be integers in -64..64, got {shifts!r}")
    s = s.astype(np.int64)
    intmath._stochastic_bits(rmode, seed, (0,), 0)  # validates the seed
    if _backend(backend) == "numpy":
        u = intmath._stochastic_bits(rmode, seed, x.shape, index_offset)
        return spec.requantize_pow2_per_channel(x, s, axis, out, rmode, omode, u)
    from fxp.kernels.requant_channel import requantize_pow2_channels

    lo, hi = intmath._range_for(out, omode)
    codes, n = requantize_pow2_channels(x.size, x.ravel(), s, inner, rmode.code, omode.code,
                                        lo, hi, out.bits, out.signed, _seed(seed),
                                        int(index_offset))
    return codes.reshape(x.shape), int(n)


def requantize_multiplier_per_channel(acc, multipliers, exponents, out: QFormat, *,
                                      axis: int = 1, zero_point: int = 0, scheme: str = "double",
                                      overflow="saturate", backend: str = "numba"):
    """Per-channel ``requantize_multiplier``: ``sat(MBQM(acc, M[c], e[c]) + zp)``."""
    omode = OverflowMode.from_string(overflow)
    if scheme not in ("double", "single"):
        raise FormatError(f"unknown multiplier scheme {scheme!r}; use 'double' or 'single'")
    x, m, axis, inner = _channels(acc, multipliers, axis, "multipliers")
    _, e, _, _ = _channels(x, exponents, axis, "exponents")
    for mc, ec in zip(m.tolist(), e.tolist(), strict=True):
        intmath._check_multiplier(mc, ec, -31, 30 if scheme == "single" else 31)
    intmath._check_int32(x)
    zp = _int64(zero_point, "zero_point")
    if not out.contains_code(zp):
        raise FormatError(f"zero_point={zp} is outside {out} [{out.min_code}, {out.max_code}]")
    if _backend(backend) == "numpy":
        return spec.requantize_multiplier_per_channel(x, m, e, axis, out, zp, scheme, omode)
    from fxp.kernels.requant_channel import requantize_multiplier_channels

    lo, hi = intmath._range_for(out, omode)
    codes, n = requantize_multiplier_channels(x.size, x.ravel(), m.astype(np.int64),
                                              e.astype(np.int64), inner, scheme == "single", zp,
                                              omode.code, lo, hi, out.bits, out.signed)
    return codes.reshape(x.shape), int(n)


def requantize_float32_per_channel(acc, scales, out: QFormat, *, axis: int = 1,
                                   zero_point: int = 0, backend: str = "numba"):
    """Per-channel ``requantize_float32`` (onnxruntime per-channel QLinearConv output)."""
    x, sc, axis, inner = _channels(acc, scales, axis, "scales")
    s32 = sc.astype(np.float32)
    if not np.all(np.isfinite(s32)) or np.any(s32 <= 0):
        raise FormatError(f"scales must be finite and > 0 in float32, got {scales!r}")
    zp = _int64(zero_point, "zero_point")
    if _backend(backend) == "numpy":
        return spec.requantize_float32_per_channel(x, sc, axis, out, zp)
    from fxp.kernels.requant_channel import requantize_float32_channels

    codes, n = requantize_float32_channels(x.size, x.ravel(), s32, inner, zp, out.min_code,
                                           out.max_code)
    return codes.reshape(x.shape), int(n)
