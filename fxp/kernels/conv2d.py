"""2-D convolution (grouped, depthwise, dilated, asymmetric padding) on integer codes.

TFLM ``integer_ops/conv.h`` loop structure and names, NCHW layout, weights
``[Co, Ci/groups, kh, kw]``.  For each ``(batch, out_channel)`` (the parallel
axis) and each output pixel ``(out_y, out_x)`` (numpy specification:
:func:`fxp.kernels.spec_layers.conv2d`):

1. ``acc = 0``;
2. for ``in_channel`` in the group's channels, ``filter_y``, ``filter_x``
   (this order): ``in_y = out_y*sh - pad_top + filter_y*dh`` (same for x);
   ``acc += (x - zx) * (w - zw[out_channel])``, an exact int64 product,
   with the accumulator overflow applied after the addition
   (:func:`fxp.kernels.dense.acc_add`); a tap outside the image is padding
   with the code ``zx`` (real 0): its term is 0, which cannot overflow but
   still counts for the peak (``|acc|`` after a wrap of an unsigned
   accumulator can exceed every earlier exact sum);
3. ``acc += bias[out_channel]`` (one more addition, overflow applied);
4. events (additions that left the range) and the peak ``|acc + term|``
   are recorded per ``(batch, out_channel)``.

Worst-case bound per output channel (why int64 holds every product and why
the accumulator width matters)::

    |acc| <= max|x - zx| * sum_{ci,ky,kx} |w[co] - zw[co]| + |bias[co]|
          <= Ci/groups * kh * kw * 2**(Wx-1) * 2**(Ww-1) + |bias|  (full-range operands)

so an int8 x int8 conv with K = Ci*kh*kw taps needs ``14 + ceil(log2 K) + 1``
bits; 32 bits hold K up to 2**17.  The caller proves each product fits int64.

A product finer than the accumulator's LSB (``pshift > 0``, an hls4ml
``accum_t`` with fewer fraction bits than ``F_x + F_w``) is rounded to it
with ``prmode`` before step 2's cast/addition; ``pshift < 0`` shifts it left
(exact: the caller proves it fits int64).

``order`` 1 is hls4ml's (``nnet_conv2d_latency.h``): ``acc`` starts from the
bias cast into the accumulator, the taps run ``filter_y``, ``filter_x``,
``in_channel`` (channels innermost) and each product is cast into the
accumulator before it is added (see :mod:`fxp.kernels.spec_layers`).
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import kernel, prange
from fxp.kernels.dense import acc_add, scale_product
from fxp.kernels.scalar import U0


@kernel
def conv2d_acc(x, w, bias, zx, zw, sh, sw, pad_top, pad_left, dh, dw, groups, out_h, out_w,
               lo, hi, bits, signed, omode, order=0, pshift=0, prmode=0):
    """x [N,C,H,W], w [Co,C/g,kh,kw] -> (acc [N,Co,Ho,Wo], events [N,Co], peaks uint64 [N,Co]).

    ``order``: 0 fxp (channels outermost, bias last), 1 hls4ml (see the module docstring).
    ``pshift``/``prmode``: each product is first brought to the accumulator's LSB
    (:func:`fxp.kernels.dense.scale_product`).
    """
    batches, _, in_h, in_w = x.shape
    out_depth, filter_depth, filter_h, filter_w = w.shape
    per_group = out_depth // groups
    acc = np.empty((batches, out_depth, out_h, out_w), np.int64)
    events = np.zeros((batches, out_depth), np.int64)
    peaks = np.zeros((batches, out_depth), np.uint64)
    for job in prange(batches * out_depth):
        batch = job // out_depth
        out_channel = job % out_depth
        first_in = (out_channel // per_group) * filter_depth
        zw_c = zw[out_channel]
        count = 0
        peak = U0
        for out_y in range(out_h):
            for out_x in range(out_w):
                total = np.int64(0)
                if order == 1:
                    total, o, mag = acc_add(np.int64(0), bias[out_channel], lo, hi, bits,
                                            signed, omode)
                    count += o
                    peak = max(peak, mag)
                for tap in range(filter_depth * filter_h * filter_w):
                    if order == 0:
                        in_channel = tap // (filter_h * filter_w)
                        filter_y = (tap // filter_w) % filter_h
                        filter_x = tap % filter_w
                    else:
                        in_channel = tap % filter_depth
                        filter_y = tap // (filter_depth * filter_w)
                        filter_x = (tap // filter_depth) % filter_w
                    in_y = out_y * sh - pad_top + filter_y * dh
                    in_x = out_x * sw - pad_left + filter_x * dw
                    if 0 <= in_y < in_h and 0 <= in_x < in_w:
                        term = ((x[batch, first_in + in_channel, in_y, in_x] - zx)
                                * (w[out_channel, in_channel, filter_y, filter_x] - zw_c))
                        term = scale_product(term, pshift, prmode)
                    else:
                        term = np.int64(0)  # padding reads zx: real 0
                    if order == 1:
                        term, o, mag = acc_add(np.int64(0), term, lo, hi, bits, signed, omode)
                        count += o
                        peak = max(peak, mag)
                    total, o, mag = acc_add(total, term, lo, hi, bits, signed, omode)
                    count += o
                    peak = max(peak, mag)
                if order == 0:
                    total, o, mag = acc_add(total, bias[out_channel], lo, hi, bits, signed,
                                            omode)
                    count += o
                    peak = max(peak, mag)
                acc[batch, out_channel, out_y, out_x] = total
        events[batch, out_channel] = count
        peaks[batch, out_channel] = peak
    return acc, events, peaks
