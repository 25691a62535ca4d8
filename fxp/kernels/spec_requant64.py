"""TFLite's int64-accumulator requantization (int16x8 layers): the numpy *specification*.

TensorFlow Lite's int16x8 ``CONV_2D``, ``DEPTHWISE_CONV_2D`` and
``FULLY_CONNECTED`` (``reference/integer_ops/conv.h`` ``ConvPerChannel`` with
``std::int64_t`` bias, ``depthwise_conv.h``, ``fully_connected.h``) accumulate
``sum(x * w) + bias`` in int64 and requantize with the int64 overload of
``MultiplyByQuantizedMultiplier`` (``kernels/internal/common.cc``), which is
the same function in the double-rounding and the ``TFLITE_SINGLE_ROUNDING``
builds::

    reduced = M < 0x7FFF0000 ? (M + 2**15) >> 16 : 0x7FFF   # 16-bit multiplier
    total   = 15 - shift                                     # shift in [-31, 7]
    result  = int32((x * reduced + 2**(total - 1)) >> total) # x in [-2**47, 2**47)

``>>`` is arithmetic (floor), so ties round toward +inf; the cast to int32
wraps in the double-rounding build (the single-rounding build DCHECKs), and
fxp counts each wrap.  The output zero point (0 for int16) is added and the
activation clamp applied by the caller.

How the engine selects it: a weighted layer whose plan entry has
``acc_bits=64`` and ``requant="double"`` or ``"single"`` (what the ``.tflite``
reader writes for int16x8 layers) is requantized by
:func:`fxp.ops.requant64.requantize_int64_per_channel`; with ``acc_bits=32``
the int32 overload applies as before.  TFLite has no other 64-bit
multiplier-requantization, so no separate scheme name is needed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_ABS_X", "SHIFT_RANGE", "mbqm64", "reduce_multiplier", "requantize64"]

SHIFT_RANGE = (-31, 7)
MAX_ABS_X = 1 << 47


def reduce_multiplier(multiplier: int) -> int:
    """The 16-bit multiplier of ``MultiplyByQuantizedMultiplier(int64_t ...)``.

    >>> reduce_multiplier(1 << 30), reduce_multiplier((1 << 31) - 1)
    (16384, 32767)
    """
    m = int(multiplier)
    return (m + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF


def mbqm64(x, multiplier: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise int64 MBQM; ``(values wrapped to int32, wrapped mask)``."""
    x = np.asarray(x, np.int64)
    total = 15 - int(shift)
    r = (x * np.int64(reduce_multiplier(multiplier)) + (np.int64(1) << (total - 1))) >> total
    w = ((r + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    return w, w != r


def requantize64(acc, multipliers, shifts, axis: int, zero_point: int) -> tuple[np.ndarray, int]:
    """Per-channel ``mbqm64(acc, M[c], shift[c]) + zero_point`` along ``axis``;
    ``(values, n_wrapped)``."""
    acc = np.asarray(acc, np.int64)
    out = np.empty_like(acc)
    n = 0
    moved, dst = np.moveaxis(acc, axis, 0), np.moveaxis(out, axis, 0)
    for c in range(moved.shape[0]):
        y, wrapped = mbqm64(moved[c], int(multipliers[c]), int(shifts[c]))
        dst[c] = y + zero_point
        n += int(np.count_nonzero(wrapped))
    return out, n
