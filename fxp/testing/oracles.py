"""Independent oracles: fixed-point arithmetic restated with Python ints and Fractions.

Nothing here imports fxp's kernels, ops or :mod:`fxp.core.intmath`; only the
*names* of the rounding and overflow modes and objects with the
:class:`~fxp.core.format.QFormat` attributes (``bits``, ``signed``,
``frac_bits``, ``min_code``, ``max_code``).  Each function restates a
documented rule from first principles, one element at a time, with unbounded
Python integers and :class:`fractions.Fraction`; no float is on any path
except :func:`requant_float32`, which models a float32 runtime on purpose.
That makes these slow and obviously right: use them as the expected side of
a property test of your own implementation (or of fxp).

Scalars
    :func:`round_fraction` (every rounding mode), :func:`fit` (every overflow
    mode), :func:`bounds`, :func:`value`, :func:`cast`, :func:`quantize`,
    :func:`shift_right`, :func:`requantize_pow2`.
Runtime requantization conventions
    :func:`srdhm`, :func:`rdbpot`, :func:`mbqm_double` (gemmlowp / TFLite
    reference), :func:`mbqm_single` (``TFLITE_SINGLE_ROUNDING``),
    :func:`requantize_multiplier` (either, plus zero point and overflow),
    :func:`requant_float32` (onnxruntime MLAS).
Accumulation
    :func:`accumulate`, :func:`accumulate_with_peak`, :func:`dot` (wrap or
    saturate after every addition, in index order).
Layers (nested lists, NCHW)
    :func:`conv2d`, :func:`dense`, :func:`maxpool2d`, :func:`avgpool2d`,
    :func:`add_pow2`, :func:`add_affine` and the per-channel requantizers.

>>> round_fraction(Fraction(-5, 2), "half_away"), round_fraction(Fraction(-5, 2), "half_up")
(-3, -2)
>>> mbqm_double(7984, 1583594044, -9), mbqm_single(7984, 1583594044, -9)
((12, False), (11, False))
>>> fit(200, 8, True, -128, 127, "wrap")
(-56, True)
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = [
    "HALF", "INT32_MAX", "INT32_MIN", "M64", "accumulate", "accumulate_with_peak", "add_affine",
    "add_pow2", "avgpool2d", "bound", "bounds", "cast", "conv2d", "dense", "dot", "fit",
    "maxpool2d", "mbqm_double", "mbqm_single", "out_size", "quantize", "rdbpot",
    "requant_float32", "requantize_float32_per_channel", "requantize_multiplier",
    "requantize_multiplier_per_channel", "requantize_pow2", "requantize_pow2_per_channel",
    "round_fraction", "shift_right", "splitmix64", "srdhm", "value", "wrap32",
]

HALF = Fraction(1, 2)
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
M64 = (1 << 64) - 1


# --------------------------------------------------------------------------- scalars
def round_fraction(v: Fraction, mode: str, u: int | None = None) -> int:
    """Round the exact rational ``v`` to an integer with the named mode.

    For ``stochastic``, ``u`` is a uniform 64-bit integer; rounds up iff
    ``u < floor(frac(v) * 2**64)``.

    >>> [round_fraction(Fraction(v), "half_even") for v in ("2.5", "-2.5", "1.5", "-0.5")]
    [2, -2, 2, 0]
    """
    mode = getattr(mode, "value", mode)
    fl = math.floor(v)
    r = v - fl
    if r == 0:
        return fl
    up = {
        "floor": False,
        "ceil": True,
        "to_zero": v < 0,
        "away": v > 0,
        "half_up": r >= HALF,
        "half_down": r > HALF,
        "half_to_zero": r > HALF or (r == HALF and v < 0),
        "half_away": r > HALF or (r == HALF and v > 0),
        "half_even": r > HALF or (r == HALF and fl % 2 == 1),
    }.get(mode)
    if mode == "stochastic":
        up = u < math.floor(r * (1 << 64))
    if up is None:
        raise ValueError(mode)
    return fl + 1 if up else fl


def fit(v: int, bits: int, signed: bool, lo: int, hi: int, mode: str) -> tuple[int, bool]:
    """Bring the integer ``v`` into [lo, hi]: (result, overflowed)."""
    mode = getattr(mode, "value", mode)
    if lo <= v <= hi:
        return v, False
    if mode == "wrap":
        m = v % (1 << bits)
        if signed and m >= 1 << (bits - 1):
            m -= 1 << bits
        return m, True
    if mode == "saturate_zero":
        return 0, True
    return (hi if v > hi else lo), True


def bounds(fmt, mode: str) -> tuple[int, int]:
    """Code range of ``fmt`` under overflow ``mode`` (narrow for saturate_symmetric)."""
    mode = getattr(mode, "value", mode)
    if fmt.signed:
        lo, hi = -(1 << (fmt.bits - 1)), (1 << (fmt.bits - 1)) - 1
        if mode == "saturate_symmetric" and fmt.bits > 1:  # ap_fixed<1,..,AP_SAT_SYM>: -1
            lo = -hi
    else:
        lo, hi = 0, (1 << fmt.bits) - 1
    return lo, hi


def value(code: int, frac_bits: int) -> Fraction:
    """Exact real value of a code."""
    return Fraction(code) / Fraction(2) ** frac_bits


def cast(code: int, src, dst, rmode: str, omode: str, u: int | None = None) -> tuple[int, bool]:
    """Cast one code between formats: exact value, round, then overflow."""
    v = value(code, src.frac_bits) * Fraction(2) ** dst.frac_bits
    lo, hi = bounds(dst, omode)
    return fit(round_fraction(v, rmode, u), dst.bits, dst.signed, lo, hi, omode)


def quantize(x: float, dst, rmode: str, omode: str, u: int | None = None) -> tuple[int, bool]:
    """Quantize one finite float exactly."""
    v = Fraction(x) * Fraction(2) ** dst.frac_bits
    lo, hi = bounds(dst, omode)
    return fit(round_fraction(v, rmode, u), dst.bits, dst.signed, lo, hi, omode)


def shift_right(x: int, shift: int, rmode: str, u: int | None = None) -> int:
    """``x / 2**shift`` rounded with ``rmode`` (a negative shift multiplies exactly).

    >>> shift_right(-5, 1, "floor"), shift_right(-5, 1, "to_zero"), shift_right(-5, 1, "half_away")
    (-3, -2, -3)
    """
    if shift < 0:
        return x * 2 ** -shift
    return round_fraction(Fraction(x, 1 << shift), rmode, u)


def requantize_pow2(acc: int, shift: int, out, rmode: str, omode: str,
                    u: int | None = None) -> tuple[int, bool]:
    """FPGA requantization: ``acc / 2**shift`` rounded, then overflow into ``out``."""
    lo, hi = bounds(out, omode)
    return fit(shift_right(acc, shift, rmode, u), out.bits, out.signed, lo, hi, omode)


def splitmix64(seed: int, index: int) -> int:
    """The documented splitmix64 stream, in Python ints."""
    z = (seed + (index + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


# --------------------------------------------------------------------------- runtime requant
def srdhm(a: int, b: int) -> int:
    """gemmlowp SRDHM from its definition: round(a*b / 2**31), ties toward +inf."""
    if a == b == INT32_MIN:
        return INT32_MAX
    return math.floor(Fraction(a * b, 1 << 31) + HALF)


def rdbpot(x: int, e: int) -> int:
    """RoundingDivideByPOT from its definition: x / 2**e, ties away from zero."""
    return round_fraction(Fraction(x, 1 << e), "half_away")


def wrap32(v: int) -> int:
    """Two's-complement wrap into int32."""
    return ((v + (1 << 31)) % (1 << 32)) - (1 << 31)


def mbqm_double(x: int, m: int, exponent: int) -> tuple[int, bool]:
    """TFLite/gemmlowp double rounding; the int32 left shift wraps (flagged)."""
    shifted = x * (1 << max(exponent, 0))
    w = wrap32(shifted)
    return rdbpot(srdhm(w, m), max(-exponent, 0)), w != shifted


def mbqm_single(x: int, m: int, exponent: int) -> tuple[int, bool]:
    """TFLITE_SINGLE_ROUNDING: round(x*m / 2**(31-exponent)), ties toward +inf."""
    out = math.floor(Fraction(x * m, 1 << (31 - exponent)) + HALF)
    return out, not INT32_MIN <= out <= INT32_MAX


def requantize_multiplier(acc: int, m: int, exponent: int, out, zp: int = 0,
                          scheme: str = "double", omode: str = "saturate") -> tuple[int, int]:
    """``fit(MBQM(acc, m, exponent) + zp)`` into ``out``: (code, number of overflow events).

    >>> class Int8:
    ...     bits, signed, frac_bits, min_code, max_code = 8, True, 0, -128, 127
    >>> requantize_multiplier(-2, 1 << 30, -1, Int8)      # -0.5: double rounding, ties away
    (-1, 0)
    >>> requantize_multiplier(-2, 1 << 30, -1, Int8, scheme="single")  # ties toward +inf
    (0, 0)
    """
    mbqm = mbqm_single if scheme == "single" else mbqm_double
    y, o1 = mbqm(acc, m, exponent)
    lo, hi = bounds(out, omode)
    code, o2 = fit(y + zp, out.bits, out.signed, lo, hi, omode)
    return code, int(o1) + int(o2)


def requant_float32(acc: int, scale: float, zp: int, lo: int, hi: int) -> tuple[int, bool]:
    """MLAS: float32(acc) * float32(scale) rounded once to float32, RNE to int, + zp, clamp."""
    a32 = Fraction(float(np.float32(acc)))
    s32 = Fraction(float(np.float32(scale)))
    prod = float(np.float32(float(a32 * s32)))  # a32*s32 is exact in float64 (48 bits)
    r = round_fraction(Fraction(prod), "half_even") + zp
    if r > hi:
        return hi, True
    if r < lo:
        return lo, True
    return r, False


# --------------------------------------------------------------------------- accumulation
def accumulate(terms: list[int], bits: int, signed: bool, lo: int, hi: int, mode: str
               ) -> tuple[int, int]:
    """Sequential accumulation in index order; (sum, number of additions that overflowed)."""
    total, events = 0, 0
    for t in terms:
        total, over = fit(total + t, bits, signed, lo, hi, mode)
        events += over
    return total, events


def accumulate_with_peak(terms, bits, signed, lo, hi, mode):
    """Ordered accumulation: (sum, events, peak |exact partial sum|)."""
    total = events = peak = 0
    for t in terms:
        peak = max(peak, abs(total + t))
        total, over = fit(total + t, bits, signed, lo, hi, mode)
        events += over
    return total, events, peak


def dot(a, b, acc, mode: str = "wrap") -> tuple[int, int]:
    """``sum(a[i] * b[i])`` in the accumulator format ``acc`` (overflow after every addition).

    Wrap commutes (the result is ``sum mod 2**bits``); saturation depends on
    the order, which is ``i = 0, 1, ...``.  Returns (sum, overflow events).

    >>> class Acc3:
    ...     bits, signed = 3, True
    >>> dot([3, 3, -3], [1, 1, 1], Acc3, "saturate"), dot([-3, 3, 3], [1, 1, 1], Acc3, "saturate")
    ((0, 1), (3, 0))
    """
    lo, hi = bounds(acc, mode)
    return accumulate([int(x) * int(y) for x, y in zip(a, b, strict=True)],
                      acc.bits, acc.signed, lo, hi, mode)


# --------------------------------------------------------------------------- layers
def out_size(size: int, k: int, stride: int, dilation: int, pb: int, pe: int) -> int:
    """Output length of a window sweep (ONNX / fxp convention, floor)."""
    return (size + pb + pe - ((k - 1) * dilation + 1)) // stride + 1


def _window(h, w, kh, kw, strides, pads, dilations):
    """Yield (oy, ox, [(iy, ix) or None for each tap in ky, kx order])."""
    ho = out_size(h, kh, strides[0], dilations[0], pads[0], pads[2])
    wo = out_size(w, kw, strides[1], dilations[1], pads[1], pads[3])
    for oy in range(ho):
        for ox in range(wo):
            taps = []
            for ky in range(kh):
                for kx in range(kw):
                    iy = oy * strides[0] - pads[0] + ky * dilations[0]
                    ix = ox * strides[1] - pads[1] + kx * dilations[1]
                    taps.append((iy, ix) if 0 <= iy < h and 0 <= ix < w else None)
            yield oy, ox, taps


def _grid(n, c, ho, wo):
    return [[[[0] * wo for _ in range(ho)] for _ in range(c)] for _ in range(n)]


def conv2d(x, w, bias, zx, zw, strides, pads, dilations, groups, bits, signed, lo, hi, mode):
    """Integer conv2d, one output at a time.

    ``x`` is ``[N][C][H][W]`` codes, ``w`` ``[Co][C/groups][kh][kw]``, ``bias``
    ``[Co]``, ``zw`` ``[Co]`` (per-channel weight zero points); ``pads`` is
    (top, left, bottom, right) and padding reads ``zx`` (real 0).  Each output
    sums ``(x - zx) * (w - zw)`` over ci, ky, kx (in that order), then the
    bias, in a ``bits``-wide accumulator with overflow ``mode`` into [lo, hi]
    applied after every addition.  Returns ``(acc, events[Co], peak[Co])``.
    """
    n, c_out, cg = len(x), len(w), len(w[0])
    h, wd, kh, kw = len(x[0][0]), len(x[0][0][0]), len(w[0][0]), len(w[0][0][0])
    ho = out_size(h, kh, strides[0], dilations[0], pads[0], pads[2])
    wo = out_size(wd, kw, strides[1], dilations[1], pads[1], pads[3])
    out = _grid(n, c_out, ho, wo)
    events, peaks = [0] * c_out, [0] * c_out
    for b in range(n):
        for co in range(c_out):
            first = (co // (c_out // groups)) * cg
            for oy, ox, taps in _window(h, wd, kh, kw, strides, pads, dilations):
                terms = []
                for ci in range(cg):
                    for k, tap in enumerate(taps):
                        xv = zx if tap is None else x[b][first + ci][tap[0]][tap[1]]  # pad = zx
                        terms.append((xv - zx) * (w[co][ci][k // kw][k % kw] - zw[co]))
                total, ev, pk = accumulate_with_peak(terms + [bias[co]], bits, signed, lo, hi,
                                                     mode)
                out[b][co][oy][ox] = total
                events[co] += ev
                peaks[co] = max(peaks[co], pk)
    return out, events, peaks


def dense(x, w, bias, zx, zw, bits, signed, lo, hi, mode):
    """x [N][In], w [Out][In] -> (acc [N][Out], events[Out], peak[Out])."""
    out, events, peaks = [], [0] * len(w), [0] * len(w)
    for row in x:
        res = []
        for o, wrow in enumerate(w):
            terms = [(xi - zx) * (wi - zw[o]) for xi, wi in zip(row, wrow, strict=True)]
            total, ev, pk = accumulate_with_peak(terms + [bias[o]], bits, signed, lo, hi, mode)
            res.append(total)
            events[o] += ev
            peaks[o] = max(peaks[o], pk)
        out.append(res)
    return out, events, peaks


def bound(w_flat_rows, zw, x_lo, x_hi, zx, bias) -> list[int]:
    """max|x - zx| * sum|w - zw| + |bias| per output channel."""
    mx = max(abs(x_lo - zx), abs(x_hi - zx))
    return [mx * sum(abs(v - z) for v in row) + abs(b)
            for row, z, b in zip(w_flat_rows, zw, bias, strict=True)]


def _pool(x, kernel, strides, pads, dilations, reduce):
    n, c, h, wd = len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])
    ho = out_size(h, kernel[0], strides[0], dilations[0], pads[0], pads[2])
    wo = out_size(wd, kernel[1], strides[1], dilations[1], pads[1], pads[3])
    out = _grid(n, c, ho, wo)
    for b in range(n):
        for ch in range(c):
            for oy, ox, taps in _window(h, wd, *kernel, strides, pads, dilations):
                vals = [None if t is None else x[b][ch][t[0]][t[1]] for t in taps]
                out[b][ch][oy][ox] = reduce(vals)
    return out


def maxpool2d(x, pad_code, kernel, strides, pads, dilations):
    """Max over each window; padding reads ``pad_code``."""
    return _pool(x, kernel, strides, pads, dilations,
                 lambda vals: max(pad_code if v is None else v for v in vals))


def avgpool2d(x, zp, kernel, strides, pads, dilations, include_pad, mode):
    """round(mean of (x - zp) over the window, real 0 for padding) + zp."""
    def reduce(vals):
        real = [v - zp for v in vals if v is not None]
        count = kernel[0] * kernel[1] if include_pad else len(real)
        if count == 0:
            return zp
        return round_fraction(Fraction(sum(real), count), mode) + zp
    return _pool(x, kernel, strides, pads, dilations, reduce)


def add_pow2(a, a_fmt, b, b_fmt, out, rmode, omode, us):
    """Exact real sum of two fixed-point values, rounded and fitted into ``out``."""
    lo, hi = bounds(out, omode)
    res, n = [], 0
    for av, bv, u in zip(a, b, us, strict=True):
        v = value(av, a_fmt.frac_bits) + value(bv, b_fmt.frac_bits)
        code, over = fit(round_fraction(v * Fraction(2) ** out.frac_bits, rmode, u),
                         out.bits, out.signed, lo, hi, omode)
        res.append(code)
        n += over
    return res, n


def add_affine(a, b, azp, bzp, am, ae, bm, be, om, oe, ozp, ls, out, scheme, omode):
    """TFLite int8 Add from its stages, with Python ints."""
    mbqm = mbqm_single if scheme == "single" else mbqm_double
    lo, hi = bounds(out, omode)
    res, n = [], 0
    for av, bv in zip(a, b, strict=True):
        ya, o1 = mbqm((av - azp) * (1 << ls), am, ae)
        yb, o2 = mbqm((bv - bzp) * (1 << ls), bm, be)
        raw = wrap32(ya + yb)
        y, o4 = mbqm(raw, om, oe)
        code, o5 = fit(y + ozp, out.bits, out.signed, lo, hi, omode)
        res.append(code)
        n += o1 + o2 + (raw != ya + yb) + o4 + o5
    return res, n


def _channel(i: int, shape: list[int], axis: int) -> int:
    inner = 1
    for d in shape[axis + 1:]:
        inner *= d
    return (i // inner) % shape[axis]


def requantize_pow2_per_channel(flat, shape, axis, shifts, out, rmode, omode, us):
    """Channel c: round(acc / 2**shift[c]) (exact rational), then overflow."""
    lo, hi = bounds(out, omode)
    res, n = [], 0
    for i, (v, u) in enumerate(zip(flat, us, strict=True)):
        s = shifts[_channel(i, shape, axis)]
        q = round_fraction(Fraction(v) / Fraction(2) ** s, rmode, u) if s >= 0 \
            else v * 2 ** -s
        code, over = fit(q, out.bits, out.signed, lo, hi, omode)
        res.append(code)
        n += over
    return res, n


def requantize_multiplier_per_channel(flat, shape, axis, mults, exps, out, zp, scheme, omode):
    """Channel c: ``fit(MBQM(acc, mults[c], exps[c]) + zp)``; (codes, events)."""
    mbqm = mbqm_single if scheme == "single" else mbqm_double
    lo, hi = bounds(out, omode)
    res, n = [], 0
    for i, v in enumerate(flat):
        c = _channel(i, shape, axis)
        y, o1 = mbqm(v, mults[c], exps[c])
        code, o2 = fit(y + zp, out.bits, out.signed, lo, hi, omode)
        res.append(code)
        n += o1 + o2
    return res, n


def requantize_float32_per_channel(flat, shape, axis, scales, out, zp):
    """Channel c: :func:`requant_float32` with ``scales[c]``; (codes, events)."""
    res, n = [], 0
    for i, v in enumerate(flat):
        code, over = requant_float32(v, scales[_channel(i, shape, axis)], zp,
                                     out.min_code, out.max_code)
        res.append(code)
        n += over
    return res, n
