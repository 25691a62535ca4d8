"""Integer layer operations: the readable numpy *specification*.

The jitted kernels in :mod:`fxp.kernels.conv2d`, :mod:`~fxp.kernels.dense`,
:mod:`~fxp.kernels.pool` and :mod:`~fxp.kernels.requant_channel` must equal
these functions bit for bit, and both must equal the pure-Python oracle in
``tests/oracles_layers.py``.  Inputs are int64 codes already validated by
:mod:`fxp.ops.layers` (shapes, ranges, int64 headroom); nothing here checks.

Convolution / dense (one output ``acc[n, co, oy, ox]``)
-------------------------------------------------------
1. ``xs = x - x_zero_point`` and ``ws = w - w_zero_point[co]`` (exact in int64).
2. Padding: a padded tap reads the *code* ``x_zero_point`` (real 0), i.e.
   ``xs = 0`` there, so its term is 0 (correctness-anchors P14); it is still
   an addition of step 3 (it cannot overflow, but it counts for the peak).
3. ``acc = 0``; for ``ci`` in the group's input channels, ``ky``, ``kx``
   (in that order; dense: ``i = 0 .. In-1``): ``acc += xs * ws`` (the product
   is exact in int64), then the accumulator's overflow mode is applied.
4. ``acc += bias[co]``: one more addition, overflow applied.
5. An *event* is an addition whose exact result left the accumulator range;
   events are counted per output channel.  The peak is the largest
   ``|acc_before + term|`` over all additions, taken *before* the overflow
   step (it may reach ``2**64 - 2`` with a 64-bit accumulator, so it is
   reported as uint64).

Wrap is addition modulo ``2**bits`` (order-free); saturation depends on the
order of step 3, which is part of the contract (correctness-anchors P8).

``order="hls4ml"`` (a plan's ``acc_order``) is hls4ml's latency dense/conv
(``nnet_dense_latency.h``, ``nnet_conv2d_latency.h``): every product and the
bias are first *cast* to the accumulator type (``accum_t mult[]``, ``acc =
(accum_t) bias``: the overflow mode applied to each, an event when it changes
the value), the accumulator starts from the cast bias, and the cast products
are added for ``ky``, ``kx``, ``ci`` (channels innermost, im2col of a
channels-last input; dense: ``i = 0 .. In-1``), overflow applied after each
addition.  Padded taps add 0.

Products finer than the accumulator (``product_shift`` ``d > 0``: an hls4ml
``accum_t`` with ``F_acc < F_x + F_w``): each product of step 3 is first
rounded to the accumulator's LSB, ``round(xs * ws / 2**d)`` with
``product_rounding`` (``d < 0``: shifted left, exact), in either order; a
padded tap's 0 stays 0.  The bias is already in the accumulator's LSB.

Worst-case accumulator bound (per output channel ``co``)::

    |acc| <= B[co] = max|x - zx| * sum_{ci,ky,kx} |w[co] - zw[co]| + |bias[co]|

over every partial sum and every order.  When ``B < 2**53`` every product
and partial sum is an integer exactly representable in float64, and when
``B`` also fits the accumulator no overflow can happen, so the float64 BLAS
path (:func:`conv2d_float64`, :func:`dense_float64`) returns the same
integers (correctness-anchors P12).  ``required bits = B.bit_length() + 1``.
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode

__all__ = [
    "accumulator_bound",
    "add_affine",
    "add_pow2",
    "avgpool2d",
    "clip",
    "conv2d",
    "conv2d_float64",
    "dense",
    "dense_float64",
    "maxpool2d",
    "requantize_float32_per_channel",
    "requantize_multiplier_per_channel",
    "requantize_pow2_per_channel",
    "rounding_divide",
]

U64 = np.uint64
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# --------------------------------------------------------------------------- accumulation
def _add_step(total, term, acc: QFormat, mode: OverflowMode):
    """One addition of step 3/4: (new total, event mask, |exact sum| as uint64)."""
    lo, hi = intmath._range_for(acc, mode)
    s = (total.view(U64) + term.view(U64)).view(np.int64)  # exact mod 2**64
    big = ((total >= 0) == (term >= 0)) & ((s >= 0) != (total >= 0))  # left int64
    magnitude = np.where((s >= 0) != big, s.view(U64), U64(0) - s.view(U64))
    over = big | (s > hi) | (s < lo)
    if mode is OverflowMode.WRAP:
        new = intmath._wrap_bits(s.view(U64), acc)
    elif mode is OverflowMode.SATURATE_ZERO:
        new = np.where(over, 0, s)
    else:
        new = np.where(big, np.where(term > 0, hi, lo), np.clip(s, lo, hi))
    return new.astype(np.int64), over, magnitude


def _accumulate(terms, bias, shape, acc: QFormat, mode: OverflowMode, order: str = "fxp"):
    """Steps 3-5 over an iterable of term arrays of ``shape`` (channel axis 1), then ``bias``.

    ``order="hls4ml"``: the bias and each term are cast into the accumulator
    first (an addition to 0), the bias comes first.
    """
    total = np.zeros(shape, np.int64)
    events = np.zeros(shape, np.int64)
    peak = np.zeros(shape, U64)
    zero = np.zeros(shape, np.int64)
    items = [*terms, bias] if order == "fxp" else [bias, *terms]
    for term in items:
        term = np.broadcast_to(term, shape)
        if order == "hls4ml":  # accum_t cast of the product / bias
            term, over, mag = _add_step(zero, np.ascontiguousarray(term), acc, mode)
            events += over
            peak = np.maximum(peak, mag)
        total, over, mag = _add_step(total, term, acc, mode)
        events += over
        peak = np.maximum(peak, mag)
    other = tuple(a for a in range(len(shape)) if a != 1)
    return total, events.sum(axis=other), peak.max(axis=other, initial=U64(0))


def _scale_products(terms, shift: int, rounding):
    """Each product brought to the accumulator's LSB (``shift`` > 0 rounds, < 0 is exact)."""
    for t in terms:
        if shift > 0:
            yield intmath.shift_right_round(t, shift, rounding)
        elif shift < 0:
            yield np.left_shift(t, -shift)
        else:
            yield t


def _out_size(size, k, stride, dilation, pad_begin, pad_end):
    return (size + pad_begin + pad_end - ((k - 1) * dilation + 1)) // stride + 1


def _taps(xp, ky, kx, ho, wo, strides, dilations):
    """The window views ``xp[..., oy*sh + ky*dh, ox*sw + kx*dw]`` for all (oy, ox)."""
    (sh, sw), (dh, dw) = strides, dilations
    rows = slice(ky * dh, ky * dh + sh * (ho - 1) + 1, sh)
    cols = slice(kx * dw, kx * dw + sw * (wo - 1) + 1, sw)
    return xp[..., rows, cols]


def _pad(x, pads, value):
    t, left, b, r = pads
    return np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)), constant_values=value)


def conv2d(x, w, bias, x_zero_point, w_zero_point, strides, pads, dilations, groups,
           acc: QFormat, overflow: OverflowMode, order: str = "fxp", product_shift: int = 0,
           product_rounding=RoundingMode.FLOOR):
    """NCHW conv, steps 1-5: ``(acc [N,Co,Ho,Wo], events [Co], peak uint64 [Co])``."""
    n, _, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    ho = _out_size(h, kh, strides[0], dilations[0], pads[0], pads[2])
    wo = _out_size(wd, kw, strides[1], dilations[1], pads[1], pads[3])
    xp = _pad(x - x_zero_point, pads, 0)                                  # steps 1-2
    ws = w - np.broadcast_to(np.asarray(w_zero_point, np.int64), (c_out,))[:, None, None, None]
    first_in = (np.arange(c_out) // (c_out // groups)) * cg  # first input channel of co's group

    def term(ci, ky, kx):
        channel = xp[:, first_in + ci]  # [N, Co, Hp, Wp]: input channel ci of co's group
        patch = _taps(channel, ky, kx, ho, wo, strides, dilations)  # [N,Co,Ho,Wo]
        return patch * ws[:, ci, ky, kx][None, :, None, None]

    if order == "fxp":
        terms = (term(ci, ky, kx) for ci in range(cg) for ky in range(kh) for kx in range(kw))
    else:  # hls4ml: channels innermost
        terms = (term(ci, ky, kx) for ky in range(kh) for kx in range(kw) for ci in range(cg))
    bias = np.asarray(bias, np.int64)[None, :, None, None]
    terms = _scale_products(terms, product_shift, product_rounding)
    return _accumulate(terms, bias, (n, c_out, ho, wo), acc, overflow, order)


def dense(x, w, bias, x_zero_point, w_zero_point, acc: QFormat, overflow: OverflowMode,
          order: str = "fxp", product_shift: int = 0, product_rounding=RoundingMode.FLOOR):
    """[N, In] x [Out, In] -> ``(acc [N, Out], events [Out], peak uint64 [Out])``."""
    xs = x - x_zero_point
    ws = w - np.broadcast_to(np.asarray(w_zero_point, np.int64), (w.shape[0],))[:, None]
    terms = (xs[:, i][:, None] * ws[:, i][None, :] for i in range(w.shape[1]))
    bias = np.asarray(bias, np.int64)[None, :]
    terms = _scale_products(terms, product_shift, product_rounding)
    return _accumulate(terms, bias, (x.shape[0], w.shape[0]), acc, overflow, order)


# --------------------------------------------------------------------------- proven float path
def accumulator_bound(w, w_zero_point, x_lo: int, x_hi: int, x_zero_point: int, bias) -> list[int]:
    """Per output channel ``B = max|x - zx| * sum|w - zw| + |bias|`` as Python ints.

    ``w`` is ``[Co, ...]``; exact for any int64 inputs (falls back to Python
    ints when an int64 sum could overflow).
    """
    w = np.asarray(w, np.int64).reshape(len(w), -1)
    zw = np.broadcast_to(np.asarray(w_zero_point, np.int64), (w.shape[0],))
    x_max = max(abs(int(x_lo) - int(x_zero_point)), abs(int(x_hi) - int(x_zero_point)))
    w_span = max([abs(int(v)) for v in (w.min(initial=0), w.max(initial=0))]
                 + [abs(int(z)) for z in (zw.min(initial=0), zw.max(initial=0))])
    if (2 * w_span + 1) * max(w.shape[1], 1) < (1 << 62):
        sums = [int(v) for v in np.abs(w - zw[:, None]).sum(axis=1)]
    else:
        sums = [sum(abs(int(v) - int(z)) for v in row) for row, z in zip(w, zw, strict=True)]
    b = [0] * len(sums) if bias is None else [abs(int(v)) for v in np.asarray(bias)]
    return [x_max * s + bb for s, bb in zip(sums, b, strict=True)]


def _im2col(x, kh, kw, strides, pads, dilations, x_zero_point):
    """Float patches ``[N, C, kh, kw, Ho, Wo]`` of ``x - zx`` (padding = 0), x's float dtype."""
    dt = x.dtype if x.dtype.kind == "f" else np.float64
    xp = _pad((x - x_zero_point).astype(dt) if x_zero_point or x.dtype != dt else x, pads, 0.0)
    ho = _out_size(x.shape[2], kh, strides[0], dilations[0], pads[0], pads[2])
    wo = _out_size(x.shape[3], kw, strides[1], dilations[1], pads[1], pads[3])
    s = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (*xp.shape[:2], kh, kw, ho, wo),
        (s[0], s[1], s[2] * dilations[0], s[3] * dilations[1],
         s[2] * strides[0], s[3] * strides[1]),
        writeable=False)


def _exact_float_dtype(xs_max: int, ws_abs_sum: np.ndarray, bias) -> type:
    """float32 when every partial sum is provably below 2**24, else float64.

    Any partial sum of a dot product is bounded by ``max|x - zx| * sum|w - zw|``
    per output channel (plus |bias|, added in int64 afterwards), so float32
    products and sums of integers below 2**24 are exact in any order.
    """
    bound = int(xs_max) * int(ws_abs_sum.max(initial=0))
    return np.float32 if bound < (1 << 24) else np.float64


def conv2d_float64(x, w, bias, x_zero_point, w_zero_point, strides, pads, dilations, groups):
    """im2col + one float GEMM per group; equals :func:`conv2d` only under the bound.

    The caller proves the bound (< 2**53 and inside the accumulator); this
    function additionally drops to float32 when the bound is below 2**24.
    """
    n = x.shape[0]
    c_out, cg, kh, kw = w.shape
    ws = w - np.broadcast_to(np.asarray(w_zero_point, np.int64), (c_out,))[:, None, None, None]
    xs_max = max(abs(int(x.max(initial=0)) - x_zero_point), abs(int(x.min(initial=0)) - x_zero_point))
    dt = _exact_float_dtype(xs_max, np.abs(ws).reshape(c_out, -1).sum(axis=1), bias)
    xf = x.astype(dt)
    if x_zero_point:
        xf -= dt(x_zero_point)  # exact: integers below 2**24 (float32) / 2**53 (float64)
    cols = _im2col(xf, kh, kw, strides, pads, dilations, 0)  # [n, C, kh, kw, ho, wo]; pad = real 0
    ho, wo = cols.shape[-2:]
    k = cg * kh * kw
    # one copy into [groups, C/g*kh*kw, n*ho*wo]
    cols = cols.reshape(n, groups, cg, kh, kw, ho, wo).transpose(1, 2, 3, 4, 0, 5, 6)
    cols = cols.reshape(groups, k, n * ho * wo)
    wf = ws.astype(dt).reshape(groups, c_out // groups, k)
    out = np.matmul(wf, cols)  # [groups, Co/g, n*ho*wo]
    out = out.reshape(c_out, n, ho, wo).transpose(1, 0, 2, 3)
    return out.astype(np.int64) + np.asarray(bias, np.int64)[None, :, None, None]


def dense_float64(x, w, bias, x_zero_point, w_zero_point):
    """float matmul; equals :func:`dense` only under the bound (module doc)."""
    zw = np.broadcast_to(np.asarray(w_zero_point, np.int64), (w.shape[0],))[:, None]
    ws = w - zw
    xs = x - x_zero_point
    dt = _exact_float_dtype(int(np.abs(xs).max(initial=0)), np.abs(ws).sum(axis=1), bias)
    out = xs.astype(dt) @ ws.astype(dt).T
    return out.astype(np.int64) + np.asarray(bias, np.int64)[None, :]


# --------------------------------------------------------------------------- pooling
def rounding_divide(s, count, mode: RoundingMode):
    """``round(s / count)`` exactly in integers (count >= 1; not stochastic).

    ``q = s // count`` (floor), ``r = s - q*count`` in ``[0, count)``; the
    remainder class compares ``2*r`` with ``count`` (tie when equal); the
    mode's increment is then the same rule as for shifts
    (``sum=-10, count=4``: half_away -3, half_up -2, half_even -2).
    """
    s = np.asarray(s, np.int64)
    count = np.broadcast_to(np.asarray(count, np.int64), s.shape)
    q = s // count
    r2 = 2 * (s - q * count)
    cls = np.where(r2 == 0, intmath.EXACT, np.where(r2 < count, intmath.BELOW_HALF,
                   np.where(r2 == count, intmath.TIE, intmath.ABOVE_HALF)))
    return q + intmath._round_increment(s, q, cls, None, mode, None).astype(np.int64)


def maxpool2d(x, pad_code, kernel, strides, pads, dilations):
    """Max over each window; padding reads ``pad_code`` (the format's min code)."""
    xp = _pad(x, pads, pad_code)
    ho = _out_size(x.shape[2], kernel[0], strides[0], dilations[0], pads[0], pads[2])
    wo = _out_size(x.shape[3], kernel[1], strides[1], dilations[1], pads[1], pads[3])
    views = [_taps(xp, ky, kx, ho, wo, strides, dilations)
             for ky in range(kernel[0]) for kx in range(kernel[1])]
    return np.maximum.reduce(views).astype(np.int64)


def avgpool2d(x, zero_point, kernel, strides, pads, dilations, count_include_pad,
              rounding: RoundingMode):
    """``round(sum(x - zp) / count) + zp`` per window; empty windows give ``zp``."""
    xp = _pad(x - zero_point, pads, 0)
    real = _pad(np.ones((1, 1, *x.shape[2:]), np.int64), pads, 0)
    ho = _out_size(x.shape[2], kernel[0], strides[0], dilations[0], pads[0], pads[2])
    wo = _out_size(x.shape[3], kernel[1], strides[1], dilations[1], pads[1], pads[3])
    taps = [(ky, kx) for ky in range(kernel[0]) for kx in range(kernel[1])]
    total = sum(_taps(xp, ky, kx, ho, wo, strides, dilations) for ky, kx in taps)
    if count_include_pad:
        count = np.full((1, 1, ho, wo), kernel[0] * kernel[1], np.int64)
    else:
        count = sum(_taps(real, ky, kx, ho, wo, strides, dilations) for ky, kx in taps)
    count = np.broadcast_to(count, total.shape)
    q = rounding_divide(total, np.maximum(count, 1), rounding)
    return np.where(count == 0, 0, q) + zero_point


def clip(x, lo: int, hi: int):
    """``min(max(x, lo), hi)`` on codes (ReLU is ``lo = zero_point``)."""
    return np.clip(x, lo, hi).astype(np.int64)


# --------------------------------------------------------------------------- residual add
def add_pow2(a, a_frac: int, b, b_frac: int, out: QFormat, rounding, overflow, seed, offset):
    """Align to ``F = max(a_frac, b_frac)`` by left shifts, add exactly, cast to ``out``."""
    f = max(a_frac, b_frac)
    s = (a << (f - a_frac)) + (b << (f - b_frac))
    return intmath.cast(s, QFormat.from_frac(64, f), out, rounding, overflow, seed=seed,
                        index_offset=offset)


def add_affine(a, b, a_zero_point, b_zero_point, a_mult, a_exp, b_mult, b_exp,
               out_mult, out_exp, out_zero_point, left_shift, out: QFormat, scheme, overflow):
    """TFLite int8 Add: both inputs rescaled by multipliers, summed, requantized.

    1. ``sa = (a - a_zp) * 2**left_shift`` (fits int32, checked by the caller);
    2. ``ya = MBQM(sa, a_mult, a_exp)``, same for ``b``;
    3. ``raw = ya + yb`` as an int32 addition (two's-complement wrap, counted);
    4. ``sat(MBQM(raw, out_mult, out_exp) + out_zp)`` into ``out``.
    """
    ya, na = intmath.multiply_by_quantized_multiplier((a - a_zero_point) << left_shift,
                                                      a_mult, a_exp, scheme)
    yb, nb = intmath.multiply_by_quantized_multiplier((b - b_zero_point) << left_shift,
                                                      b_mult, b_exp, scheme)
    raw = ya + yb
    wrapped = ((raw + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    codes, n = intmath.requantize_multiplier(wrapped, out_mult, out_exp, out,
                                             zero_point=out_zero_point, scheme=scheme,
                                             overflow=overflow)
    return codes, na + nb + int(np.count_nonzero(wrapped != raw)) + n


# --------------------------------------------------------------------------- per-channel requant
def _along(values, axis: int, ndim: int):
    shape = [1] * ndim
    shape[axis] = -1
    return np.asarray(values, np.int64).reshape(shape)


def requantize_pow2_per_channel(acc, shifts, axis: int, out: QFormat, rounding: RoundingMode,
                                overflow: OverflowMode, u):
    """Channel ``c``: shift >= 0 is ``intmath.requantize_pow2(acc_c, shift)``; a
    negative shift multiplies by ``2**-shift`` with overflow (``intmath.cast``).
    ``u``: stochastic bits at the element's flat C-order index (or None)."""
    s = np.broadcast_to(_along(shifts, axis, acc.ndim), acc.shape)
    right, over_r = intmath._overflow_masked(
        intmath._shift_right_round_array(acc, np.maximum(s, 0), rounding, u), out, overflow)
    left, over_l = intmath._shift_left_overflow(np.where(s < 0, acc, 0), np.maximum(-s, 0),
                                                out, overflow)
    codes = np.where(s < 0, left, right).astype(np.int64)
    return codes, int(np.count_nonzero(np.where(s < 0, over_l, over_r)))


def _per_channel(acc, axis, fn):
    out = np.empty(acc.shape, np.int64)
    n = 0
    for c in range(acc.shape[axis]):
        idx = (slice(None),) * axis + (c,)
        out[idx], k = fn(c, acc[idx])
        n += k
    return out, n


def requantize_multiplier_per_channel(acc, multipliers, exponents, axis: int, out: QFormat,
                                      zero_point: int, scheme: str, overflow: OverflowMode):
    """``intmath.requantize_multiplier`` applied to each channel with its own (M, e)."""
    return _per_channel(acc, axis, lambda c, a: intmath.requantize_multiplier(
        a, int(multipliers[c]), int(exponents[c]), out, zero_point=zero_point, scheme=scheme,
        overflow=overflow))


def requantize_float32_per_channel(acc, scales, axis: int, out: QFormat, zero_point: int):
    """``intmath.requantize_float32`` applied to each channel with its own scale."""
    return _per_channel(acc, axis, lambda c, a: intmath.requantize_float32(
        a, scales[c], out, zero_point=zero_point))
