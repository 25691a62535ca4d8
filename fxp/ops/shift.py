"""Shift-add layers: power-of-two weights, where a multiplication becomes a shift.

Power-of-two quantizers (:mod:`fxp.quant.pow2`, INQ) leave every weight at 0 or
``+-2**n``.  Stored in a power-of-two format, each weight code is 0 or
``+-2**k`` (``k`` >= 0 counted from the format's LSB), and hardware computes
``x * w`` as ``sign * (x << k)``.  :func:`encode_shift` turns codes into that
``(sign, k)`` form (refusing any other code); :func:`conv2d_shift_int` and
:func:`dense_shift_int` run the shift-add kernels (:mod:`fxp.kernels.shift_add`,
numpy specification :mod:`fxp.kernels.spec_shift`), which give exactly the
integers (accumulator values and overflow events) of :func:`fxp.ops.layers.conv2d_int`
/ :func:`~fxp.ops.layers.dense_int` on the decoded codes, with the same
accumulator width, overflow mode and order (the peak statistics are compared in
:mod:`fxp.kernels.shift_add`).  Zero weights are skipped.

>>> sign, k = encode_shift([[4, -1, 0, 8]])
>>> sign.tolist(), k.tolist()
([[1, -1, 0, 1]], [[2, 0, 0, 3]])
>>> acc, stats = dense_shift_int([[3, 5, 7, -1]], sign, k, [1])
>>> acc.tolist()                                   # 3*4 - 5 + 0 - 8 + 1
[[0]]
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode
from fxp.errors import FormatError, HeadroomError, ShiftWeightError
from fxp.kernels import spec_shift as spec
from fxp.ops.layers import (
    I64_MAX, AccStats, _acc_format, _backend, _bias, _codes, _int64, _max_abs_diff, _range_of,
    _stats, _window,
)

__all__ = ["conv2d_shift_int", "decode_shift", "dense_shift_int", "encode_shift"]

MAX_SHIFT = 63


def encode_shift(codes, *, layer: str | None = None, fmt: QFormat | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Weight codes -> ``(sign int8, k uint8)`` with ``code = sign * 2**k`` (0 -> (0, 0)).

    Raises :class:`~fxp.errors.ShiftWeightError` naming ``layer``, the index
    and the code (and its real value in ``fmt`` when given) of the first code
    that is not 0 or ``+-2**k``.

    >>> encode_shift([0, 1, -2, 64])[1].tolist()
    [0, 0, 1, 6]
    """
    c = np.asarray(intmath._as_codes(codes, "shift weight codes"))
    mag = np.where(c < 0, np.uint64(0) - c.view(np.uint64), c.view(np.uint64))
    bad = (mag & (mag - np.uint64(1))) != 0  # more than one bit set (0 passes)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        v = int(c[idx])
        where = f"layer {layer!r}: " if layer is not None else ""
        real = f" (real value {v * 2.0 ** -fmt.frac_bits!r} in {fmt})" if fmt is not None else ""
        at = idx if c.ndim != 1 else idx[0]
        raise ShiftWeightError(
            f"{where}weight code {v} at index {at}{real} is not 0 or +-2**k, so it is not a "
            f"shift weight ({int(bad.sum())} such code{'s' if bad.sum() > 1 else ''}); use a "
            "power-of-two quantizer (pow2, INQ) or a plain fixed weight spec")
    _, e = np.frexp(mag.astype(np.float64))  # exact: mag is 0 or a power of two <= 2**63
    k = np.where(mag != 0, e - 1, 0).astype(np.uint8)
    return np.sign(c).astype(np.int8), k


def decode_shift(sign, shift) -> np.ndarray:
    """``sign * 2**shift`` as int64 codes (the inverse of :func:`encode_shift`)."""
    s, k = _sign_shift(sign, shift, None)
    if np.any((k > 62) & (s > 0)):
        raise HeadroomError("+2**63 is not an int64 code")
    return spec.decode(s, k)


def _sign_shift(sign, shift, ndim: int | None) -> tuple[np.ndarray, np.ndarray]:
    s, k = np.asarray(sign), np.asarray(shift)
    if s.dtype.kind not in "iu" or k.dtype.kind not in "iu":
        raise FormatError(f"sign and shift must be integer arrays, got {s.dtype} and {k.dtype}")
    if s.shape != k.shape or (ndim is not None and s.ndim != ndim):
        raise FormatError(f"sign and shift must have the same shape with {ndim} dimensions, got "
                          f"{s.shape} and {k.shape}")
    if s.size and (s.min() < -1 or s.max() > 1):
        raise FormatError("sign must hold only -1, 0 and +1")
    if k.size and (k.min() < 0 or k.max() > MAX_SHIFT):
        raise FormatError(f"shift must lie in 0..{MAX_SHIFT}, got {int(k.min())}..{int(k.max())}")
    return (np.ascontiguousarray(s.astype(np.int8, copy=False)),
            np.ascontiguousarray(k.astype(np.uint8, copy=False)))


def _prepare(x, sign, shift, bias, x_zero_point, x_range, acc_bits, acc_signed, acc_overflow):
    zx = _int64(x_zero_point, "x_zero_point")
    b = _bias(bias, sign.shape[0])
    x_lo, x_hi = _range_of(x, x_range)
    mx = _max_abs_diff(x_lo, x_hi, zx, zx, "x")
    s2, k2 = sign.reshape(len(sign), -1), shift.reshape(len(shift), -1)
    nz = s2 != 0
    top = int(k2[nz].max()) if nz.any() else 0
    if nz.any() and mx << top > I64_MAX:
        raise HeadroomError(f"a shifted input (x - zx) << k can reach {mx} << {top} = "
                            f"{mx << top}, beyond int64: narrow the operands")
    # per output channel: can every partial sum be formed in int64?  (bound max|x - zx| *
    # sum|w| + |bias|; the kernels then try an unchecked pass first, see fxp.kernels.shift_add)
    if top + s2.shape[1].bit_length() < 62:
        sums = (nz.astype(np.int64) << k2.astype(np.int64)).sum(axis=1).tolist()
    else:
        sums = [sum(1 << int(k) for k in kr[nr]) for kr, nr in zip(k2, nz, strict=True)]
    safe = np.array([mx * sm + abs(int(bb)) <= I64_MAX for sm, bb in zip(sums, b, strict=True)],
                    np.bool_)
    acc = _acc_format(acc_bits, acc_signed)
    mode = OverflowMode.from_string(acc_overflow)
    lo, hi = intmath._range_for(acc, mode)
    return zx, b, acc, mode, (lo, hi, acc.bits, acc.signed, mode.code, safe)


def conv2d_shift_int(x, sign, shift, bias=None, *, x_zero_point: int = 0, strides=(1, 1),
                     pads=(0, 0, 0, 0), dilations=(1, 1), groups: int = 1, acc_bits: int = 32,
                     acc_signed: bool = True, acc_overflow="wrap", x_range=None,
                     backend: str = "numba") -> tuple[np.ndarray, AccStats]:
    """Shift-add 2-D convolution (NCHW codes; ``sign``/``shift`` ``[Co, C/groups, kh, kw]``).

    Same parameters and accumulation contract as :func:`fxp.ops.layers.conv2d_int`
    with weights ``sign * 2**shift`` and weight zero point 0; always the ordered
    loop (``AccStats.method == "shift"``).  Raises FormatError / HeadroomError
    as that function does.
    """
    x = _codes(x, "x", 4)
    sign, shift = _sign_shift(sign, shift, 4)
    g = int(groups)
    if g < 1 or sign.shape[0] % g or x.shape[1] != sign.shape[1] * g:
        raise FormatError(f"groups={groups}: need Co={sign.shape[0]} divisible by groups and "
                          f"C={x.shape[1]} == groups * w.shape[1] = {g * sign.shape[1]}")
    _, s, p, d, ho, wo = _window(x, sign.shape[2:], strides, pads, dilations, "conv2d_shift_int")
    zx, b, acc, mode, args = _prepare(x, sign, shift, bias, x_zero_point, x_range, acc_bits,
                                      acc_signed, acc_overflow)
    if _backend(backend) == "numpy":
        out, events, peaks = spec.conv2d_shift(x, sign, shift, b, zx, s, p, d, g, acc, mode)
        return out, _shift_stats(events, peaks)
    from fxp.kernels.shift_add import conv2d_shift_acc

    work = x.shape[0] * sign.shape[0] * ho * wo * sign[0].size
    out, events, peaks = conv2d_shift_acc(work, x, sign, shift, b, zx, s[0], s[1], p[0], p[1],
                                          d[0], d[1], g, ho, wo, *args)
    return out, _shift_stats(events, peaks)


def dense_shift_int(x, sign, shift, bias=None, *, x_zero_point: int = 0, acc_bits: int = 32,
                    acc_signed: bool = True, acc_overflow="wrap", x_range=None,
                    backend: str = "numba") -> tuple[np.ndarray, AccStats]:
    """Shift-add dense layer: ``x [N, In]``, ``sign``/``shift [Out, In]`` -> ``(acc, AccStats)``.

    Same contract as :func:`fxp.ops.layers.dense_int` (order ``i = 0 .. In-1``, then the bias).
    """
    x = _codes(x, "x", 2)
    sign, shift = _sign_shift(sign, shift, 2)
    if x.shape[1] != sign.shape[1]:
        raise FormatError(f"x has {x.shape[1]} features but the weights expect {sign.shape[1]} "
                          "([Out, In])")
    zx, b, acc, mode, args = _prepare(x, sign, shift, bias, x_zero_point, x_range, acc_bits,
                                      acc_signed, acc_overflow)
    if _backend(backend) == "numpy":
        out, events, peaks = spec.dense_shift(x, sign, shift, b, zx, acc, mode)
        return out, _shift_stats(events, peaks)
    from fxp.kernels.shift_add import dense_shift_acc

    out, events, peaks = dense_shift_acc(x.size * sign.shape[0], x, sign, shift, b, zx, *args)
    return out, _shift_stats(events, peaks)


def _shift_stats(events, peaks) -> AccStats:
    return _stats(events, peaks, "shift")
