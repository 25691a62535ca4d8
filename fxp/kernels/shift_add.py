"""Shift-add conv2d / dense: power-of-two weights, multiplication as a shift.

A shift weight is a code ``w = sign * 2**k`` (``sign`` in {-1, 0, +1} as int8,
``k`` >= 0 as uint8, relative to the weight format's LSB; ``w = 0`` is
``sign = 0``), see :func:`fxp.ops.shift.encode_shift`.  The product
``(x - zx) * w`` of the multiply kernels (:mod:`fxp.kernels.conv2d`,
:mod:`fxp.kernels.dense`) becomes ``sign * ((x - zx) << k)``: an arithmetic
left shift of the int64 input code and a conditional negation, exact under the
same int64 headroom proof (``|x - zx| * 2**k < 2**63``, checked by the caller).

Loop order, accumulator and overflow are those of the multiply kernels (numpy
specification: :mod:`fxp.kernels.spec_shift`): for each output, ``acc = 0``;
for ``in_channel, filter_y, filter_x`` (dense: ``i = 0 .. In-1``) in that
order, ``acc += sign * ((x - zx) << k)`` with the overflow mode applied after
the addition (:func:`fxp.kernels.dense.acc_add`); then ``acc += bias``.

A zero weight (``sign = 0``) and a padded tap add nothing and are *skipped*:
no addition is performed (hardware has no adder there).  Adding 0 to an
in-range accumulator can neither change it nor overflow, so the accumulator
values and overflow events equal the multiply path's exactly.  The peak
(largest ``|acc + term|`` over the additions performed) equals the multiply
path's for every signed accumulator (the engine's) and for every saturating
one; only an unsigned *wrapping* accumulator can differ, since there the
multiply path also counts ``|acc|`` after a wrap at its zero-term additions.

Speed (same results).  The convolution runs tap-major: for each nonzero tap
``(in_channel, filter_y, filter_x)`` in order, every output pixel of the
(batch, out_channel) plane whose tap lies inside the image gets its addition
(a unit-stride row loop that vectorizes); each output still sees its own
additions in the documented order.  Each plane (dense: each output) is first
summed *unchecked* in int64 when the caller proves that no partial sum can
leave int64 (``safe``: ``max|x - zx| * sum|w| + |bias| < 2**63``), tracking
the largest and smallest partial sum: if they stay inside the accumulator
range, no addition overflowed and these are the exact results (0 events, peak
``max(top, -bottom)``); otherwise (the convolution stops at the first tap that
left the range) the plane is recomputed in the ordered, checked loop (output
pixel by output pixel, as :mod:`fxp.kernels.conv2d`), overflow mode applied
after every addition.  The dense unchecked pass is branch-free: a zero weight
adds ``0 * (...)``, which changes neither the sum nor its extremes.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit, jit_inline, kernel, prange
from fxp.kernels.dense import acc_add
from fxp.kernels.scalar import U0

__all__ = ["conv2d_shift_acc", "dense_shift_acc"]


@jit
def _span(out_n, in_n, offset, stride):
    """Outputs ``o`` in ``[lo, hi)`` whose tap ``o*stride + offset`` lies in ``[0, in_n)``."""
    lo = max(0, -(offset // stride))
    hi = min(out_n, (in_n - 1 - offset) // stride + 1)
    return lo, hi


@jit_inline
def _row_add(prow, row, x_lo, x_hi, sw, c0, zx, k, negative, top, bottom):
    """``prow[o] -+= (row[o*sw + c0] - zx) << k`` for o in [x_lo, x_hi), unchecked.

    Returns the new (largest, smallest) partial sum.  Four loops so that the
    common unit-stride case vectorizes.
    """
    if sw == 1:
        if negative:
            for o in range(x_lo, x_hi):
                t = prow[o] - ((row[o + c0] - zx) << k)
                prow[o] = t
                top, bottom = max(top, t), min(bottom, t)
        else:
            for o in range(x_lo, x_hi):
                t = prow[o] + ((row[o + c0] - zx) << k)
                prow[o] = t
                top, bottom = max(top, t), min(bottom, t)
    elif negative:
        for o in range(x_lo, x_hi):
            t = prow[o] - ((row[o * sw + c0] - zx) << k)
            prow[o] = t
            top, bottom = max(top, t), min(bottom, t)
    else:
        for o in range(x_lo, x_hi):
            t = prow[o] + ((row[o * sw + c0] - zx) << k)
            prow[o] = t
            top, bottom = max(top, t), min(bottom, t)
    return top, bottom


@jit
def _plane_unchecked(plane, images, sign, shift, zx, sh, sw, pad_top, pad_left, dh, dw, lo, hi):
    """The taps of one (batch, out_channel) plane in int64: (largest, smallest) partial sum.

    Stops early (the plane is then incomplete) once a partial sum left ``[lo, hi]``.
    """
    out_h, out_w = plane.shape
    filter_depth, in_h, in_w = images.shape
    _, filter_h, filter_w = sign.shape
    top = np.int64(0)
    bottom = np.int64(0)
    for in_channel in range(filter_depth):
        image = images[in_channel]
        for filter_y in range(filter_h):
            y_lo, y_hi = _span(out_h, in_h, filter_y * dh - pad_top, sh)
            for filter_x in range(filter_w):
                s = sign[in_channel, filter_y, filter_x]
                if s == 0:
                    continue  # zero weight: no addition
                k = np.int64(shift[in_channel, filter_y, filter_x])
                c0 = filter_x * dw - pad_left
                x_lo, x_hi = _span(out_w, in_w, c0, sw)
                for out_y in range(y_lo, y_hi):  # padded taps: no addition
                    row = image[out_y * sh - pad_top + filter_y * dh]
                    top, bottom = _row_add(plane[out_y], row, x_lo, x_hi, sw, c0, zx, k, s < 0,
                                           top, bottom)
                if top > hi or bottom < lo:
                    return top, bottom  # an addition overflowed: the caller redoes it checked
    return top, bottom


@jit
def _plane_checked(plane, images, sign, shift, zx, sh, sw, pad_top, pad_left, dh, dw,
                   lo, hi, bits, signed, omode):
    """The taps of one plane, overflow mode after every addition: (events, peak).

    Output-major like :func:`fxp.kernels.conv2d.conv2d_acc` (the accumulator
    stays in a register), skipping zero weights and padded taps.
    """
    out_h, out_w = plane.shape
    filter_depth, in_h, in_w = images.shape
    _, filter_h, filter_w = sign.shape
    count = 0
    peak = U0
    for out_y in range(out_h):
        for out_x in range(out_w):
            total = np.int64(0)
            for in_channel in range(filter_depth):
                for filter_y in range(filter_h):
                    in_y = out_y * sh - pad_top + filter_y * dh
                    if not 0 <= in_y < in_h:
                        continue  # padded row: no addition
                    for filter_x in range(filter_w):
                        s = sign[in_channel, filter_y, filter_x]
                        in_x = out_x * sw - pad_left + filter_x * dw
                        if s == 0 or not 0 <= in_x < in_w:
                            continue  # zero weight or padding: no addition
                        term = (images[in_channel, in_y, in_x] - zx) << np.int64(
                            shift[in_channel, filter_y, filter_x])
                        total, o, mag = acc_add(total, term if s > 0 else -term, lo, hi, bits,
                                                signed, omode)
                        count += o
                        peak = max(peak, mag)
            plane[out_y, out_x] = total
    return count, peak


@kernel
def conv2d_shift_acc(x, sign, shift, bias, zx, sh, sw, pad_top, pad_left, dh, dw, groups,
                     out_h, out_w, lo, hi, bits, signed, omode, safe):
    """x [N,C,H,W], sign int8 / shift uint8 [Co,C/g,kh,kw] -> (acc, events [N,Co], peaks [N,Co]).

    ``safe[co]`` (bool): no partial sum of channel ``co`` can leave int64 (the
    caller's bound), so the unchecked first pass is exact.
    """
    batches = x.shape[0]
    out_depth, filter_depth = sign.shape[:2]
    per_group = out_depth // groups
    acc = np.zeros((batches, out_depth, out_h, out_w), np.int64)
    events = np.zeros((batches, out_depth), np.int64)
    peaks = np.zeros((batches, out_depth), np.uint64)
    for job in prange(batches * out_depth):
        batch = job // out_depth
        out_channel = job % out_depth
        first_in = (out_channel // per_group) * filter_depth
        plane = acc[batch, out_channel]
        images = x[batch, first_in:first_in + filter_depth]
        w_sign, w_shift = sign[out_channel], shift[out_channel]
        checked = True
        if safe[out_channel]:
            top, bottom = _plane_unchecked(plane, images, w_sign, w_shift, zx, sh, sw, pad_top,
                                           pad_left, dh, dw, lo, hi)
            checked = top > hi or bottom < lo  # some addition overflowed: redo in order
            count, peak = 0, max(np.uint64(top), np.uint64(-bottom))
        if checked:
            count, peak = _plane_checked(plane, images, w_sign, w_shift, zx, sh, sw, pad_top,
                                         pad_left, dh, dw, lo, hi, bits, signed, omode)
        b = bias[out_channel]
        for out_y in range(out_h):
            for out_x in range(out_w):
                total, o, mag = acc_add(plane[out_y, out_x], b, lo, hi, bits, signed, omode)
                plane[out_y, out_x] = total
                count += o
                peak = max(peak, mag)
        events[batch, out_channel] = count
        peaks[batch, out_channel] = peak
    return acc, events, peaks


@jit
def _dot_unchecked(xrow, srow, krow, zx):
    """``sum sign * ((x - zx) << k)`` in int64: (total, largest, smallest partial sum).

    Branch-free so that it vectorizes: a zero weight adds ``0 * (...)``, which
    changes neither the sum nor its extremes, exactly as skipping it.
    """
    total = np.int64(0)
    top = np.int64(0)
    bottom = np.int64(0)
    for d in range(xrow.shape[0]):
        total += ((xrow[d] - zx) << np.int64(krow[d])) * np.int64(srow[d])
        top, bottom = max(top, total), min(bottom, total)
    return total, top, bottom


@jit
def _dot_checked(xrow, srow, krow, zx, lo, hi, bits, signed, omode):
    """The same, overflow mode after every addition, zero weights skipped: (total, events, peak)."""
    total = np.int64(0)
    count = 0
    peak = U0
    for d in range(xrow.shape[0]):
        s = srow[d]
        if s != 0:  # zero weight: no addition
            term = (xrow[d] - zx) << np.int64(krow[d])
            total, o, mag = acc_add(total, term if s > 0 else -term, lo, hi, bits, signed, omode)
            count += o
            peak = max(peak, mag)
    return total, count, peak


@kernel
def dense_shift_acc(x, sign, shift, bias, zx, lo, hi, bits, signed, omode, safe):
    """x [N, In], sign int8 / shift uint8 [Out, In], bias [Out] -> (acc, events, peaks [N, Out]).

    ``safe[o]``: no partial sum of output ``o`` can leave int64.
    """
    batches = x.shape[0]
    output_depth = sign.shape[0]
    acc = np.empty((batches, output_depth), np.int64)
    events = np.zeros((batches, output_depth), np.int64)
    peaks = np.zeros((batches, output_depth), np.uint64)
    for job in prange(batches * output_depth):
        b = job // output_depth
        out_c = job % output_depth
        total, top, bottom = _dot_unchecked(x[b], sign[out_c], shift[out_c], zx) \
            if safe[out_c] else (np.int64(0), np.int64(1), np.int64(-1))
        if safe[out_c] and lo <= bottom and top <= hi:
            count, peak = 0, max(np.uint64(top), np.uint64(-bottom))
        else:  # an addition overflowed (or could leave int64): the ordered, checked sum
            total, count, peak = _dot_checked(x[b], sign[out_c], shift[out_c], zx, lo, hi, bits,
                                              signed, omode)
        total, o, mag = acc_add(total, bias[out_c], lo, hi, bits, signed, omode)
        acc[b, out_c] = total
        events[b, out_c] = count + o
        peaks[b, out_c] = max(peak, mag)
    return acc, events, peaks
