"""Dense (fully connected) layer on integer codes, and the accumulator step.

``acc[n, o] = bias[o] + sum_i (x[n, i] - zx) * (w[o, i] - zw[o])`` computed as
(the numpy specification is :func:`fxp.kernels.spec_layers.dense`):

1. ``acc = 0``;
2. for ``i = 0 .. In-1``: ``acc += (x[n, i] - zx) * (w[o, i] - zw[o])``; the
   product is exact (the caller proves ``|x - zx| * |w - zw| < 2**63``); the
   sum is formed modulo 2**64 and the accumulator's overflow mode is applied
   (:func:`acc_add`);
3. ``acc += bias[o]``, overflow applied once more;
4. every addition whose exact result left ``[lo, hi]`` is an event (counted
   per ``(n, o)``), and ``peak`` keeps the largest ``|acc + term|`` before
   the overflow step, as uint64.

Worst case: ``|acc| <= max|x - zx| * sum_i |w[o, i] - zw[o]| + |bias[o]|``
(the weight-aware bound; In * 2**(Wx + Ww - 2) for full-range operands).
A 64-bit accumulator therefore may see int64 overflow of ``acc + term``;
:func:`acc_add` detects it and wraps / saturates as the exact sum would.

A product finer than the accumulator's LSB (``pshift > 0``) is first rounded
to it with rounding mode ``prmode`` (:func:`scale_product`); ``pshift < 0``
shifts it left.

``order`` 1 is hls4ml's (``nnet_dense_latency.h``): the bias and every
product are cast into the accumulator first (an addition to 0, counted as an
event when it changes the value) and the bias comes first.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit, kernel, prange
from fxp.kernels.scalar import SATURATE_ZERO, U0, WRAP, round_shift, wrap_bits


@jit
def scale_product(term, pshift, prmode):
    """A product brought to the accumulator's LSB: ``round(term / 2**pshift)`` with
    rounding mode code ``prmode`` when ``pshift > 0``, ``term << -pshift`` when
    ``pshift < 0`` (the caller proves it fits int64), else ``term``."""
    if pshift > 0:
        return round_shift(term, pshift, prmode, U0)
    if pshift < 0:
        return term << -pshift
    return term


@jit
def acc_add(total, term, lo, hi, bits, signed, omode):
    """(new total, event, |total + term| as uint64) for one accumulator addition.

    ``total`` lies in [lo, hi]; the sum is exact modulo 2**64 and ``big`` flags
    an int64 overflow (then the exact sum is beyond int64, hence beyond the
    range, on the side of ``term``).
    """
    s = np.int64(np.uint64(np.int64(total)) + np.uint64(np.int64(term)))  # int64(): no-jit mode
    big = ((total >= 0) == (term >= 0)) and ((s >= 0) != (total >= 0))
    us = np.uint64(s)
    mag = us if (s >= 0) != big else U0 - us
    if not big and lo <= s <= hi:
        return s, False, mag
    if omode == WRAP:
        return wrap_bits(s, bits, signed), True, mag
    if omode == SATURATE_ZERO:
        return np.int64(0), True, mag
    if big:
        return (hi if term > 0 else lo), True, mag
    return (hi if s > hi else lo), True, mag


@kernel
def dense_acc(x, w, bias, zx, zw, lo, hi, bits, signed, omode, order=0, pshift=0, prmode=0):
    """x [N, In], w [Out, In], bias [Out], zw [Out] -> (acc [N, Out], events, peaks [N, Out]).

    ``order``: 0 fxp (bias last), 1 hls4ml (cast bias first, cast products).
    ``pshift``/``prmode``: each product is first brought to the accumulator's
    LSB (:func:`scale_product`).
    """
    batches, accum_depth = x.shape
    output_depth = w.shape[0]
    acc = np.empty((batches, output_depth), np.int64)
    events = np.zeros((batches, output_depth), np.int64)
    peaks = np.zeros((batches, output_depth), np.uint64)
    for job in prange(batches * output_depth):
        b = job // output_depth
        out_c = job % output_depth
        total = np.int64(0)
        count = 0
        peak = U0
        if order == 1:
            total, o, mag = acc_add(np.int64(0), bias[out_c], lo, hi, bits, signed, omode)
            count += o
            peak = max(peak, mag)
        for d in range(accum_depth):
            term = scale_product((x[b, d] - zx) * (w[out_c, d] - zw[out_c]), pshift, prmode)
            if order == 1:
                term, o, mag = acc_add(np.int64(0), term, lo, hi, bits, signed, omode)
                count += o
                peak = max(peak, mag)
            total, o, mag = acc_add(total, term, lo, hi, bits, signed, omode)
            count += o
            peak = max(peak, mag)
        o, mag = False, U0
        if order == 0:
            total, o, mag = acc_add(total, bias[out_c], lo, hi, bits, signed, omode)
        acc[b, out_c] = total
        events[b, out_c] = count + o
        peaks[b, out_c] = max(peak, mag)
    return acc, events, peaks
