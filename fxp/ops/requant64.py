"""TFLite int64-accumulator requantization (int16x8 layers): the validated entry point.

Convention followed: TensorFlow Lite's ``MultiplyByQuantizedMultiplier(int64_t
x, int32_t M, int shift)`` (``kernels/internal/common.cc``), restated in
:mod:`fxp.kernels.spec_requant64` with the engine's selection rule
(``acc_bits=64`` with ``requant="double"`` / ``"single"``).  ``M`` and
``shift`` are TFLite's ``QuantizeMultiplier`` pair of the effective scale
(:func:`fxp.core.intmath.quantize_multiplier`); only the rounding of the
multiplier to 16 bits differs from the int32 path.

>>> import numpy as np
>>> requantize_int64_per_channel(np.array([[6, -6]]), [1 << 30] * 2, [-1] * 2)  # +-1.5
(array([[ 2, -1]]), 0)
"""

from __future__ import annotations

import numpy as np

from fxp.errors import FormatError, HeadroomError
from fxp.kernels import spec_requant64 as spec
from fxp.ops._checks import _backend

__all__ = ["check_multipliers64", "requantize_int64_per_channel"]


def check_multipliers64(multipliers, shifts, where: str) -> None:
    """Raise FormatError unless every ``M`` is in ``[0, 2**31)`` and every ``shift`` in
    TFLite's ``[-31, 7]`` (its DCHECKs)."""
    lo, hi = spec.SHIFT_RANGE
    for c, (m, e) in enumerate(zip(multipliers, shifts, strict=True)):
        if not 0 <= int(m) < 1 << 31 or not lo <= int(e) <= hi:
            raise FormatError(f"{where}: channel {c}: multiplier {int(m)} / shift {int(e)} "
                              f"outside TFLite's int64 requantization ([0, 2**31) / "
                              f"[{lo}, {hi}]); the effective scale is too large")


def requantize_int64_per_channel(acc, multipliers, shifts, *, axis: int = 1,
                                 zero_point: int = 0, backend: str = "numba"
                                 ) -> tuple[np.ndarray, int]:
    """``int32(MBQM64(acc, M[c], shift[c])) + zero_point`` per channel along ``axis``.

    Returns ``(values, n_wrapped)`` (int64 values, not yet clamped to the
    output format; ``n_wrapped``: results that left int32 and wrapped).

    Raises
    ------
    FormatError
        Multipliers / shifts outside TFLite's range or not one per channel.
    HeadroomError
        An accumulator outside TFLite's ``[-2**47, 2**47)``.
    """
    where = "requantize_int64_per_channel"
    acc = np.asarray(acc)
    if acc.dtype.kind not in "iu":
        raise FormatError(f"{where}: acc must be integer, got dtype {acc.dtype}")
    acc = acc.astype(np.int64)
    m = np.asarray(multipliers, np.int64).ravel()
    e = np.asarray(shifts, np.int64).ravel()
    if acc.ndim == 0 or not -acc.ndim <= axis < acc.ndim or m.size != acc.shape[axis] or \
            e.size != m.size:
        raise FormatError(f"{where}: {m.size} multipliers and {e.size} shifts for axis {axis} "
                          f"of shape {acc.shape}")
    check_multipliers64(m, e, where)
    bad = (acc < -spec.MAX_ABS_X) | (acc >= spec.MAX_ABS_X)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise HeadroomError(f"{where}: accumulator {int(acc.flat[i])} at flat index {i} is "
                            "outside TFLite's [-2**47, 2**47)")
    if _backend(backend) == "numpy":
        return spec.requantize64(acc, m, e, axis % acc.ndim, int(zero_point))
    from fxp.kernels.requant64 import requantize64_channels

    inner = int(np.prod(acc.shape[axis % acc.ndim + 1:], dtype=np.int64))
    out, n = requantize64_channels(acc.size, np.ascontiguousarray(acc).ravel(), m, e, inner,
                                   np.int64(zero_point))
    return out.reshape(acc.shape), int(n)
