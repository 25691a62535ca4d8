"""Per-channel requantization as LiteRT's optimized (ruy) and reference (float64) kernels do it.

Validated entry point over :mod:`fxp.kernels.runtime_requant`
(``backend="numba"``) and its numpy specification
:mod:`fxp.kernels.spec_runtime_requant` (``backend="numpy"``); both give the
same integers.  The engine calls it for weighted layers whose plan entry has
``requant`` ``"ruy"`` or ``"float64"`` (see
:mod:`fxp.frontends.tflite_runtime` for which runtime uses which).

>>> import numpy as np
>>> requantize_runtime_per_channel(np.array([[3, -3]]), "ruy", [1 << 30] * 2, [-1] * 2)
(array([[1, 0]]), 0)
>>> requantize_runtime_per_channel(np.array([[5, -5]]), "float64", scales=[0.5, 0.5])
(array([[ 3, -3]]), 0)
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.errors import FormatError, HeadroomError
from fxp.kernels import spec_runtime_requant as spec
from fxp.ops._checks import _backend, _codes, _int64

__all__ = ["requantize_runtime_per_channel"]


def requantize_runtime_per_channel(acc, variant, multipliers=None, shifts=None,
                                   scales=None, *, axis: int = 1, zero_point: int = 0,
                                   backend: str = "numba") -> tuple[np.ndarray, int]:
    """``variant(acc, channel c) + zero_point`` per channel of ``axis``.

    Parameters
    ----------
    acc : int64 accumulators; int32 values for ``"ruy"`` / ``"double"``, below
        2**53 in magnitude for ``"float64"``.
    variant : str or sequence of str
        ``"ruy"``, ``"float64"`` or ``"double"``
        (:data:`spec_runtime_requant.VARIANTS`), for every channel or one per
        channel (LiteRT's optimized depthwise mixes ``"ruy"`` and ``"double"``:
        :func:`~fxp.kernels.spec_runtime_requant.litert_block_variants`).
    multipliers, shifts : ``QuantizeMultiplier`` pairs per channel (``M`` in
        ``[0, 2**31)``, ``shift`` in ``[-31, 31]``; positive = left shift), for
        ``"ruy"`` / ``"double"``.
    scales : float64 effective scales per channel (> 0), for ``"float64"``
        (:func:`fxp.kernels.spec_runtime_requant.float64_scales`).

    Returns
    -------
    (values, n) : int64 values before the activation clamp and output overflow;
        ``n`` counts int32 wraps of the left shift or float64 results outside int32.

    Raises
    ------
    FormatError
        Unknown variant, parameters missing, out of range or not one per channel.
    HeadroomError
        An accumulator outside the variant's range.
    """
    where = "requantize_runtime_per_channel"
    x = _codes(acc, "accumulator")
    if x.ndim == 0 or not -x.ndim <= int(axis) < x.ndim:
        raise FormatError(f"{where}: axis={axis} is out of range for shape {x.shape}")
    axis = int(axis) % x.ndim
    channels = x.shape[axis]
    names = (variant,) * channels if isinstance(variant, str) else tuple(variant)
    bad = [v for v in names if v not in spec.VARIANTS]
    if bad or len(names) != channels:
        raise FormatError(f"{where}: variant must be one of {spec.VARIANTS} or one per channel "
                          f"({channels}), got {str(variant)[:80]!r}")
    zp = _int64(zero_point, "zero_point")
    s = np.zeros(channels, np.float64)
    m = e = np.zeros(channels, np.int64)
    if "float64" in names:
        s = _per_channel(scales, channels, "scales", where).astype(np.float64)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise FormatError(f"{where}: scales must be finite and > 0, got "
                              f"{s.tolist()[:8]}")
        if x.size and int(np.abs(x).max()) >= 1 << 53:
            raise HeadroomError(f"{where}: an accumulator reaches 2**53; float64 is not exact")
    if any(v != "float64" for v in names):
        m = _per_channel(multipliers, channels, "multipliers", where).astype(np.int64)
        e = _per_channel(shifts, channels, "shifts", where).astype(np.int64)
        for mc, ec in zip(m.tolist(), e.tolist(), strict=True):
            intmath._check_multiplier(mc, ec, -31, 31)
        intmath._check_int32(x)
    if _backend(backend) == "numpy":
        return spec.requantize_runtime(x, names, m, e, s, axis, zp)
    from fxp.kernels.runtime_requant import requantize_runtime_channels

    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    codes = np.array([spec.VARIANTS.index(v) for v in names], np.int64)
    out, n = requantize_runtime_channels(x.size, x.ravel(), m, e, s, inner, codes, np.int64(zp))
    return out.reshape(x.shape), int(n)


def _per_channel(values, channels: int, what: str, where: str) -> np.ndarray:
    if values is None:
        raise FormatError(f"{where}: {what} are required for this variant")
    v = np.ascontiguousarray(np.asarray(values).ravel())
    if v.shape != (channels,) or v.dtype.kind not in ("iuf" if what == "scales" else "iu"):
        raise FormatError(f"{where}: {what} must hold {channels} numbers (one per channel), "
                          f"got {np.asarray(values).shape} of {np.asarray(values).dtype}")
    return v

