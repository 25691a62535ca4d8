"""Max and average pooling on integer codes (NCHW, floor-mode output size).

Max pooling, per ``(batch, channel)`` and output pixel:

1. ``m = pad_code`` if the window holds a padded tap, else the first tap;
   the caller passes the format's *min code* as ``pad_code``, so padding
   never changes the result of a window with a real pixel (it acts as
   -inf; an all-padding window gives the min code);
2. ``m = max(m, x[tap])`` over the window.  No arithmetic, no overflow.

Average pooling (numpy specification :func:`fxp.kernels.spec_layers.avgpool2d`):

1. ``s = sum over real taps of (x - zp)`` (padding is real 0, i.e. the code
   ``zp``, and adds nothing); ``|s| <= kh*kw * max|x - zp|``, which the
   caller proves fits int64;
2. ``count = kh*kw`` (``count_include_pad``) or the number of real taps;
3. ``out = round(s / count) + zp`` with :func:`round_div`; an empty window
   (count 0, only without ``count_include_pad``) gives ``zp``.  The mean of
   in-range codes rounds to an in-range code, so no overflow is possible.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit, kernel, prange
from fxp.kernels.scalar import (
    AWAY,
    CEIL,
    FLOOR,
    HALF_AWAY,
    HALF_DOWN,
    HALF_EVEN,
    HALF_TO_ZERO,
    HALF_UP,
    TO_ZERO,
)


@jit
def round_div_small(s, count, mode):
    """:func:`round_div` for ``|s| < 2**53``, its floor quotient from a float64 division
    (vectorizes; an int64 division does not).

    Exact: ``fl(s/count) = (s/count)(1 + d)`` with ``|d| <= 2**-53``, an error below
    ``|s|/count * 2**-53 < 1/count``; a quotient that is not an integer lies at least
    ``1/count`` from each integer, so the rounded quotient has the same floor.
    """
    q = np.int64(np.floor(np.float64(s) / np.float64(count)))
    return _round_up(s, q, s - q * count, count, mode)


@jit
def round_div(s, count, mode):
    """``round(s / count)`` for ``count >= 1``, exactly: floor quotient + remainder test.

    ``q = floor(s / count)``, ``r = s - q*count`` in ``[0, count)``; the tie is
    ``2*r == count``.  Modes as :func:`fxp.kernels.scalar.round_shift`
    (stochastic is not offered).  ``-10 / 4``: half_away -3, half_up -2, half_even -2.
    """
    q = s // count  # numba follows Python: floor division
    return _round_up(s, q, s - q * count, count, mode)


@jit
def _round_up(s, q, r, count, mode):
    """``q`` or ``q + 1``: the rounding of ``s / count = q + r / count`` (``0 <= r < count``)."""
    if r == 0:
        return q
    r2 = 2 * r
    if mode == FLOOR:
        inc = False
    elif mode == CEIL:
        inc = True
    elif mode == TO_ZERO:
        inc = s < 0
    elif mode == AWAY:
        inc = s > 0
    elif mode == HALF_UP:
        inc = r2 >= count
    elif mode == HALF_DOWN:
        inc = r2 > count
    elif mode == HALF_TO_ZERO:
        inc = r2 > count or (r2 == count and s < 0)
    elif mode == HALF_AWAY:
        inc = r2 > count or (r2 == count and s > 0)
    elif mode == HALF_EVEN:
        inc = r2 > count or (r2 == count and (q & 1) == 1)
    else:
        inc = False
    return q + 1 if inc else q


@kernel
def maxpool2d_codes(x, pad_code, kh, kw, sh, sw, pad_top, pad_left, dh, dw, out_h, out_w):
    """x [N,C,H,W] -> max over each window, padding reading ``pad_code``."""
    batches, depth, in_h, in_w = x.shape
    out = np.empty((batches, depth, out_h, out_w), np.int64)
    for job in prange(batches * depth):
        batch = job // depth
        channel = job % depth
        for out_y in range(out_h):
            for out_x in range(out_w):
                m = np.int64(-9223372036854775807 - 1)
                for filter_y in range(kh):
                    in_y = out_y * sh - pad_top + filter_y * dh
                    for filter_x in range(kw):
                        in_x = out_x * sw - pad_left + filter_x * dw
                        if 0 <= in_y < in_h and 0 <= in_x < in_w:
                            v = x[batch, channel, in_y, in_x]
                        else:
                            v = pad_code
                        if v > m:
                            m = v
                out[batch, channel, out_y, out_x] = m
    return out


@kernel
def avgpool2d_codes(x, zp, kh, kw, sh, sw, pad_top, pad_left, dh, dw, out_h, out_w,
                    include_pad, rmode):
    """x [N,C,H,W] -> round(sum(x - zp) / count) + zp per window."""
    batches, depth, in_h, in_w = x.shape
    out = np.empty((batches, depth, out_h, out_w), np.int64)
    for job in prange(batches * depth):
        batch = job // depth
        channel = job % depth
        for out_y in range(out_h):
            for out_x in range(out_w):
                s = np.int64(0)
                count = np.int64(0)
                for filter_y in range(kh):
                    in_y = out_y * sh - pad_top + filter_y * dh
                    for filter_x in range(kw):
                        in_x = out_x * sw - pad_left + filter_x * dw
                        if 0 <= in_y < in_h and 0 <= in_x < in_w:
                            s += x[batch, channel, in_y, in_x] - zp
                            count += 1
                if include_pad:
                    count = np.int64(kh * kw)
                q = round_div(s, count, rmode) if count > 0 else np.int64(0)
                out[batch, channel, out_y, out_x] = q + zp
    return out
