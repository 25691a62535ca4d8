"""Per-channel requantization, residual add and clip kernels on flat int64 codes.

Per-channel kernels see the accumulator as C-order ``[outer, C, inner]``
flattened: element ``i`` belongs to channel ``(i // inner) % C``, and its
stochastic-rounding index is ``offset + i`` (its flat position in the whole
tensor, so the result does not depend on the thread count).  Each channel is
computed exactly as the per-tensor primitive of :mod:`fxp.core.intmath`
(reusing the scalar twins of :mod:`fxp.kernels.scalar`):

* pow2: ``shift[c] >= 0``: ``overflow(round(acc / 2**shift[c]))``;
  ``shift[c] < 0``: ``acc * 2**-shift[c]`` with overflow (no rounding);
* multiplier: ``overflow(MBQM(acc, M[c], e[c]) + zp)``, both stages counted;
* float32: ``clamp(rint(float32(acc) * float32(scale[c]))) + zp`` (MLAS).

Residual add, power-of-two formats (``ka = F - a_frac >= 0``, ``kb = F - b_frac``):

1. ``s = a * 2**ka + b * 2**kb``, exact (the caller proves |s| < 2**63);
2. ``s`` is cast from frac ``F`` to the output: ``shift = F - out_frac``;
   a positive shift rounds then overflows, a negative one shifts left with
   overflow -- the same as ``intmath.cast``.

Residual add, affine (TFLite int8 ``Add``): see
:func:`fxp.kernels.spec_layers.add_affine`; the int32 sum of the two
rescaled inputs wraps (and is counted) like C int32 arithmetic.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import kernel, prange
from fxp.kernels.scalar import STOCHASTIC, U0, mbqm, overflow, round_shift, shift_left, splitmix64


@kernel
def requantize_pow2_channels(acc, shifts, inner, rmode, omode, lo, hi, bits, signed, seed,
                             offset):
    """Flat acc -> (codes, n_overflow) with shift ``shifts[(i // inner) % C]``."""
    n = acc.size
    channels = shifts.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        s = shifts[(i // inner) % channels]
        if s >= 0:
            u = splitmix64(seed, offset + i) if rmode == STOCHASTIC else U0
            c, o = overflow(round_shift(acc[i], s, rmode, u), lo, hi, bits, signed, omode)
        else:
            c, o = shift_left(acc[i], -s, lo, hi, bits, signed, omode)
        out[i] = c
        if o:
            count += 1
    return out, count


@kernel
def requantize_multiplier_channels(acc, multipliers, exponents, inner, single, zero_point,
                                   omode, lo, hi, bits, signed):
    """Flat acc -> sat(MBQM(acc, M[c], e[c]) + zp); counts both stages."""
    n = acc.size
    channels = multipliers.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        ch = (i // inner) % channels
        y, o1 = mbqm(acc[i], multipliers[ch], exponents[ch], single)
        c, o2 = overflow(y + zero_point, lo, hi, bits, signed, omode)
        out[i] = c
        if o1:
            count += 1
        if o2:
            count += 1
    return out, count


@kernel
def requantize_float32_channels(acc, scales32, inner, zero_point, lo, hi):
    """Flat acc -> rint(float32(acc) * scale32[c]) + zp, clamped (per-channel MLAS)."""
    n = acc.size
    channels = scales32.size
    out = np.empty(n, np.int64)
    count = 0
    flo = np.float32(lo - zero_point)
    fhi = np.float32(hi - zero_point)
    for i in prange(n):
        r = np.rint(np.float32(acc[i]) * scales32[(i // inner) % channels])
        if r < flo:
            r = flo
            count += 1
        elif r > fhi:
            r = fhi
            count += 1
        out[i] = np.int64(r) + zero_point
    return out, count


@kernel
def add_pow2_codes(a, b, ka, kb, shift, rmode, omode, lo, hi, bits, signed, seed, offset):
    """Flat a, b -> cast(a * 2**ka + b * 2**kb) by ``shift`` into the output range."""
    n = a.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        s = (a[i] << ka) + (b[i] << kb)
        if shift >= 0:
            u = splitmix64(seed, offset + i) if rmode == STOCHASTIC else U0
            c, o = overflow(round_shift(s, shift, rmode, u), lo, hi, bits, signed, omode)
        else:
            c, o = shift_left(s, -shift, lo, hi, bits, signed, omode)
        out[i] = c
        if o:
            count += 1
    return out, count


@kernel
def add_affine_codes(a, b, a_zp, b_zp, a_mult, a_exp, b_mult, b_exp, out_mult, out_exp,
                     out_zp, left_shift, single, omode, lo, hi, bits, signed):
    """Flat a, b -> TFLite int8 Add (spec_layers.add_affine); counts every stage."""
    n = a.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        ya, o1 = mbqm((a[i] - a_zp) << left_shift, a_mult, a_exp, single)
        yb, o2 = mbqm((b[i] - b_zp) << left_shift, b_mult, b_exp, single)
        raw = ya + yb
        wrapped = ((raw + (np.int64(1) << 31)) & np.int64(0xFFFFFFFF)) - (np.int64(1) << 31)
        y, o4 = mbqm(wrapped, out_mult, out_exp, single)
        c, o5 = overflow(y + out_zp, lo, hi, bits, signed, omode)
        out[i] = c
        count += np.int64(o1) + np.int64(o2) + np.int64(wrapped != raw) + np.int64(o4) \
            + np.int64(o5)
    return out, count


@kernel
def clip_codes(x, lo, hi):
    """Flat x -> min(max(x, lo), hi) (ReLU: lo = zero point)."""
    n = x.size
    out = np.empty(n, np.int64)
    for i in prange(n):
        v = x[i]
        out[i] = lo if v < lo else (hi if v > hi else v)
    return out
