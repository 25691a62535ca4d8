"""Throughput kernels of the proven float path, on channels-last codes.

The proven path (:mod:`fxp.sim.fast`) computes a power-of-two Conv2D/Dense as
float32 GEMMs whose every partial sum is an integer below ``2**24`` in
magnitude (so float32, FMA or not, in any summation order, holds it exactly),
then one fused pass does what :func:`fxp.sim.integer._requant` does in
several numpy passes.  Activations stay channels-last (``[N, H, W, C]``) and
narrow between the layers of that path, so the im2col rows are runs of
contiguous channels and a GEMM's ``[pixels, Co]`` result already is the next
layer's layout.  Each kernel has a numpy statement of what it must equal
(:mod:`fxp.kernels.spec_fast_layers`):

* :func:`im2col_rows` -- ``cols[(n*Ho + oy)*Wo + ox, ((g*kh + ky)*kw + kx)*Cg + c] =
  x[n, iy, ix, g*Cg + c]`` with ``iy = oy*sh - pad_top + ky*dh`` (same for x)
  and ``pad`` outside the image (the code of a real zero), for
  ``x [N, H, W, C]`` of any integer dtype and any strides (an NCHW array is
  passed as its ``transpose(0, 2, 3, 1)`` view), ``Cg = C / groups``: each
  group's taps are one contiguous column range, in ``cols``' dtype: float32
  (exact: codes below ``2**24``; ``pad = 0``) or uint8 (the VNNI path's
  offset codes, :mod:`fxp.sim.fast_vnni`).  ``cols`` may be a view with a
  longer row stride.
* :func:`requant_rows` -- per output ``acc = int64(a[g, m, j]) + bias[co]``
  with ``co = g*Cog + j`` (``a`` float32 or float64 holding an exact
  integer), then ``y = round(acc / 2**shift)`` with the rounding mode
  (``shift < 0``: ``acc << -shift``), the activation clamp ``lo <= y`` and
  ``y <= hi``, and the output overflow into ``[out_lo, out_hi]`` (wrap to
  ``out_bits`` / saturate / saturate to zero), written to ``out[m, co]``;
  returns the number of outputs the overflow changed -- exactly
  ``cast(clip(cast(acc, F_acc -> F_out, rounding)), ..., overflow)`` of the
  executor.
* :func:`maxpool_rows` -- ``out[n, oy, ox, c] = max`` over the window's taps
  of ``x[n, iy, ix, c]``, a padded tap reading ``pad_code`` (the format's
  min code, so it never wins against a real pixel):
  :func:`fxp.kernels.pool.maxpool2d_codes` in channels-last order.
* :func:`avgpool_rows` -- ``out[n, oy, ox, c] = round(s / count) + zp`` with ``s`` the
  sum of ``x - zp`` over the window's real taps and ``count`` = ``kh*kw``
  (``include_pad``) or the number of real taps (an empty window gives ``zp``):
  :func:`fxp.kernels.pool.avgpool2d_codes` in channels-last order.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit, jit_inline, kernel, prange
from fxp.kernels.pool import round_div, round_div_small
from fxp.kernels.scalar import (
    AWAY,
    CEIL,
    FLOOR,
    HALF_AWAY,
    HALF_DOWN,
    HALF_EVEN,
    HALF_TO_ZERO,
    HALF_UP,
    SATURATE_ZERO,
    TO_ZERO,
    WRAP,
)

__all__ = ["add_rows", "avgpool_rows", "im2col_rows", "im2col_runs", "maxpool_rows", "pow2_count",
           "requant_rows",
           "rounding_offsets"]


SMALL_GROUP = 4
"""Groups of fewer input channels than this fill im2col columns along the output row
(long loops over ``ox``); wider groups fill each row's contiguous channel runs
(:func:`im2col_runs` where the input is contiguous channels-last, one group, ``dw = 1``)."""


@kernel
def im2col_rows(x, cols, pad, kh, kw, sh, sw, pad_top, pad_left, dh, dw, out_h, out_w, groups):
    """x [N, H, W, C] integers -> ``cols [N*out_h*out_w, kh*kw*C]`` (float32 or uint8), in
    place, ``pad`` for taps outside the image (the module docstring)."""
    n_b, in_h, in_w, c_in = x.shape
    cg = c_in // groups
    for r in prange(n_b * out_h):
        b = r // out_h
        oy = r % out_h
        r0 = r * out_w
        if cg < SMALL_GROUP:
            _im2col_by_column(x, cols, pad, b, oy, r0, kh, kw, sh, sw, pad_top, pad_left, dh, dw,
                              out_w, groups)
            continue
        for ox in range(out_w):
            row = cols[r0 + ox]
            for g in range(groups):
                for ky in range(kh):
                    iy = oy * sh - pad_top + ky * dh
                    for kx in range(kw):
                        ix = ox * sw - pad_left + kx * dw
                        base = ((g * kh + ky) * kw + kx) * cg
                        if 0 <= iy < in_h and 0 <= ix < in_w:
                            for c in range(cg):
                                row[base + c] = x[b, iy, ix, g * cg + c]
                        else:
                            for c in range(cg):
                                row[base + c] = pad


@kernel
def im2col_runs(xf, in_h, c_in, cols, pad, kh, kw, sh, sw, pad_top, pad_left, dh, out_h, out_w):
    """:func:`im2col_rows` (one group, ``dw = 1``) of a C-contiguous ``x [N, H, W, C]`` given
    as ``xf = x.reshape(N*H, W*C)``: each tap row ``ky`` of an output pixel is one run of
    ``kw*C`` contiguous codes, copied as one loop (fewer, longer loops than per channel)."""
    in_w = xf.shape[1] // c_in
    run = kw * c_in
    for r in prange(xf.shape[0] // in_h * out_h):
        b = r // out_h
        oy = r % out_h
        for ox in range(out_w):
            row = cols[r * out_w + ox]
            ix0 = ox * sw - pad_left
            for ky in range(kh):
                iy = oy * sh - pad_top + ky * dh
                dst = row[ky * run:(ky + 1) * run]
                if iy < 0 or iy >= in_h:
                    for q in range(run):
                        dst[q] = pad
                elif ix0 >= 0 and ix0 + kw <= in_w:
                    src = xf[b * in_h + iy, ix0 * c_in:ix0 * c_in + run]
                    for q in range(run):
                        dst[q] = src[q]
                else:
                    src = xf[b * in_h + iy]
                    for kx in range(kw):
                        ix = ix0 + kx
                        inside = 0 <= ix < in_w
                        for c in range(c_in):
                            dst[kx * c_in + c] = src[ix * c_in + c] if inside \
                                else pad


@jit
def _im2col_by_column(x, cols, pad, b, oy, r0, kh, kw, sh, sw, pad_top, pad_left, dh, dw, out_w,
                      groups):
    """The rows ``r0 .. r0 + out_w - 1`` of :func:`im2col_rows` (image ``b``, output row
    ``oy``), one column at a time: zeros, the in-image run ``lo <= ox < hi``, zeros."""
    _, in_h, in_w, c_in = x.shape
    cg = c_in // groups
    for g in range(groups):
        for ky in range(kh):
            iy = oy * sh - pad_top + ky * dh
            for kx in range(kw):
                off = kx * dw - pad_left
                lo = 0
                while lo < out_w and lo * sw + off < 0:
                    lo += 1
                hi = out_w
                while hi > lo and (hi - 1) * sw + off >= in_w:
                    hi -= 1
                if iy < 0 or iy >= in_h:
                    lo = hi = out_w
                for c in range(cg):
                    col = ((g * kh + ky) * kw + kx) * cg + c
                    for ox in range(lo):
                        cols[r0 + ox, col] = pad
                    for ox in range(lo, hi):
                        cols[r0 + ox, col] = x[b, iy, ox * sw + off, g * cg + c]
                    for ox in range(hi, out_w):
                        cols[r0 + ox, col] = pad


def rounding_offsets(shift: int, mode: int) -> tuple[int, int, int]:
    """``(t_pos, t_neg, even)`` with ``round(y / 2**shift) = (y + t + even*((y >> shift) & 1))
    >> shift``, ``t = t_neg`` for ``y < 0`` else ``t_pos`` (``shift >= 1``, deterministic modes).

    >>> rounding_offsets(2, HALF_EVEN)  # 6/4 = 1.5 -> 2: (6 + 1 + 1) >> 2
    (1, 1, 1)
    """
    half, full = 1 << (shift - 1), (1 << shift) - 1
    table = {FLOOR: (0, 0), CEIL: (full, full), TO_ZERO: (0, full), AWAY: (full, 0),
             HALF_UP: (half, half), HALF_DOWN: (half - 1, half - 1),
             HALF_TO_ZERO: (half - 1, half), HALF_AWAY: (half, half - 1),
             HALF_EVEN: (half - 1, half - 1)}
    t_pos, t_neg = table[mode]
    return t_pos, t_neg, int(mode == HALF_EVEN)


@jit_inline
def _requant_one(acc, shift, t_pos, dt, even, lo, hi):
    """Round ``acc / 2**shift`` (:func:`rounding_offsets`; ``shift <= 0``: left shift), then
    clamp to ``[lo, hi]``."""
    if shift > 0:
        neg = np.int64(acc < 0)
        y = (acc + t_pos + neg * dt + even * ((acc >> shift) & 1)) >> shift
    else:
        y = acc << -shift
    return min(max(y, lo), hi)


@jit_inline
def _requant_run(src, bias, dst, shift, t_pos, dt, even, lo, hi, out_lo, out_hi, mask, omode,
                 ka=0, kb=0):
    """``dst[t] = overflow(requant((int64(src[t]) << ka) + (int64(bias[t]) << kb)))`` for
    every ``t``; returns the number the overflow changed.  One loop per overflow mode and
    per rounding kind (the offset alone, or with the sign/parity terms), so each vectorizes
    with only the operations it needs."""
    if dt == 0 and even == 0:  # floor, ceil, half_up, half_down: (y + t) >> shift
        return _requant_loops(src, bias, dst, shift, t_pos, 0, 0, lo, hi, out_lo, out_hi, mask,
                              omode, ka, kb)
    return _requant_loops(src, bias, dst, shift, t_pos, dt, even, lo, hi, out_lo, out_hi, mask,
                          omode, ka, kb)


@jit_inline
def _requant_loops(src, bias, dst, shift, t_pos, dt, even, lo, hi, out_lo, out_hi, mask, omode,
                   ka, kb):
    """The loops of :func:`_requant_run` (inlined twice: once with ``dt = even = 0``
    literals, so LLVM drops their terms)."""
    n_over = np.int64(0)
    n = src.shape[0]
    if omode == WRAP:
        for t in range(n):
            y = _requant_one((np.int64(src[t]) << ka) + (np.int64(bias[t]) << kb), shift, t_pos,
                             dt, even, lo, hi)
            n_over += (y > out_hi) | (y < out_lo)
            dst[t] = ((y - out_lo) & mask) + out_lo
    elif omode == SATURATE_ZERO:
        for t in range(n):
            y = _requant_one((np.int64(src[t]) << ka) + (np.int64(bias[t]) << kb), shift, t_pos,
                             dt, even, lo, hi)
            over = (y > out_hi) | (y < out_lo)
            n_over += over
            dst[t] = y * (1 - np.int64(over))
    else:
        for t in range(n):
            y = _requant_one((np.int64(src[t]) << ka) + (np.int64(bias[t]) << kb), shift, t_pos,
                             dt, even, lo, hi)
            n_over += (y > out_hi) | (y < out_lo)
            dst[t] = min(max(y, out_lo), out_hi)
    return n_over


TILE = 256
"""Requantization runs over flat tiles of at least this many outputs (a whole number of
rows, the bias repeated along them): short rows (few channels) still vectorize."""


@kernel
def requant_rows(a, bias, out, shift, t_pos, t_neg, even, lo, hi, out_lo, out_hi, out_bits,
                 omode):
    """a [G, M, Cog] exact integers (float) -> ``out [M, G*Cog]`` (any integer dtype holding
    the output format); returns the number the overflow changed (module docstring).
    ``bias`` is per output channel, or already repeated along one tile (see :data:`TILE`).

    ``shift > 0`` rounds with the offsets of :func:`rounding_offsets`; ``shift <= 0``
    shifts left by ``-shift``.  ``out`` must be C-contiguous (and ``a`` too when G = 1).
    """
    n_g, m, cog = a.shape
    c_out = n_g * cog
    mask = (np.int64(1) << out_bits) - 1 if out_bits < 64 else np.int64(-1)
    dt = np.int64(t_neg - t_pos)
    rows = max(1, (TILE + c_out - 1) // c_out)  # rows per tile
    tile = rows * c_out
    n_tiles = (m + rows - 1) // rows
    counts = np.zeros(n_tiles, np.int64)
    if bias.shape[0] == tile:  # the caller's precomputed tile
        bias_tile = bias
    else:
        bias_tile = np.empty(tile, np.int64)
        for t in range(tile):
            bias_tile[t] = bias[t % c_out]
    flat_out = out.reshape(-1)
    for k in prange(n_tiles):  # one run per tile of whole rows (groups: gathered first)
        r0 = k * rows
        r1 = min(m, r0 + rows)
        if n_g == 1:
            src = a.reshape(-1)[r0 * c_out:r1 * c_out]
        else:
            src = np.empty((r1 - r0) * c_out, a.dtype)
            for i in range(r0, r1):
                for g in range(n_g):
                    for j in range(cog):
                        src[(i - r0) * c_out + g * cog + j] = a[g, i, j]
        counts[k] = _requant_run(src, bias_tile, flat_out[r0 * c_out:r1 * c_out], shift, t_pos,
                                 dt, even, lo, hi, out_lo, out_hi, mask, omode)
    return counts.sum()


@kernel
def add_rows(a, b, out, ka, kb, shift, t_pos, t_neg, even, out_lo, out_hi, out_bits, omode):
    """Flat ``a``, ``b`` integer codes -> ``out[t] = overflow(round(((a[t] << ka) + (b[t] <<
    kb)) / 2**shift))`` (``shift <= 0``: left shift), the residual Add of
    :func:`fxp.ops.layers.add_int` for deterministic rounding; returns the number the
    overflow changed.  The caller proves the aligned, shifted sum fits int64."""
    n = a.shape[0]
    mask = (np.int64(1) << out_bits) - 1 if out_bits < 64 else np.int64(-1)
    dt = np.int64(t_neg - t_pos)
    n_tiles = (n + TILE - 1) // TILE
    counts = np.zeros(n_tiles, np.int64)
    lo, hi = np.int64(-(1 << 63)), np.int64((1 << 63) - 1)
    for k in prange(n_tiles):
        s = k * TILE
        e = min(n, s + TILE)
        counts[k] = _requant_run(a[s:e], b[s:e], out[s:e], shift, t_pos, dt, even, lo, hi,
                                 out_lo, out_hi, mask, omode, ka, kb)
    return counts.sum()


@kernel
def maxpool_rows(x, out, pad_code, kh, kw, sh, sw, pad_top, pad_left, dh, dw):
    """x [N, H, W, C] -> ``out [N, Ho, Wo, C]`` (same dtype), in place: the window maxima,
    a padded tap reading ``pad_code`` (module docstring)."""
    n_b, in_h, in_w, depth = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for r in prange(n_b * out_h):
        b = r // out_h
        oy = r % out_h
        for ox in range(out_w):
            dst = out[b, oy, ox]
            first = True
            for ky in range(kh):
                iy = oy * sh - pad_top + ky * dh
                for kx in range(kw):
                    ix = ox * sw - pad_left + kx * dw
                    if 0 <= iy < in_h and 0 <= ix < in_w:
                        src = x[b, iy, ix]
                        if first:
                            for c in range(depth):
                                dst[c] = src[c]
                        else:
                            for c in range(depth):
                                dst[c] = max(dst[c], src[c])
                    elif first:
                        for c in range(depth):
                            dst[c] = pad_code
                    else:
                        for c in range(depth):
                            dst[c] = max(dst[c], pad_code)
                    first = False


def pow2_count(count: int, mode: int) -> tuple[int, int, int, int]:
    """``(k, t_pos, t_neg, even)`` of :func:`avgpool_rows` for windows that all count
    ``count`` codes: ``round(s / 2**k)`` by :func:`rounding_offsets` where ``count = 2**k``,
    else ``k = -1`` (the general division)."""
    if count < 1 or count & (count - 1):
        return -1, 0, 0, 0
    k = count.bit_length() - 1
    return (k, *rounding_offsets(k, mode)) if k else (0, 0, 0, 0)


@kernel
def avgpool_rows(x, out, zp, kh, kw, sh, sw, pad_top, pad_left, include_pad, rmode, k2, t_pos,
                 t_neg, even):
    """x [N, H, W, C] -> ``out [N, Ho, Wo, C]`` (any integer dtype holding x's codes: a
    rounded mean lies between them), in place: the rounded window means (module docstring;
    ``rmode`` as :func:`fxp.kernels.pool.round_div`).  ``k2 >= 0``: the caller proved every
    window counts ``2**k2`` codes (``include_pad``, or no padding); the quotient is then
    ``(s + t + even*((s >> k2) & 1)) >> k2`` with :func:`pow2_count`'s offsets (``t =
    t_neg`` for ``s < 0``), branch-free."""
    n_b, in_h, in_w, depth = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    # |sum| < kh*kw * (2**32 + |zp|) < 2**53: round_div_small is exact
    small = x.itemsize <= 4 and kh * kw < (1 << 18) and abs(zp) < (1 << 32)
    dt = np.int64(t_neg - t_pos)
    for r in prange(n_b * out_h):
        b = r // out_h
        oy = r % out_h
        sums = np.zeros(depth, np.int64)
        for ox in range(out_w):
            sums[:] = 0
            count = np.int64(0)
            for ky in range(kh):
                iy = oy * sh - pad_top + ky
                for kx in range(kw):
                    ix = ox * sw - pad_left + kx
                    if 0 <= iy < in_h and 0 <= ix < in_w:
                        src = x[b, iy, ix]
                        for c in range(depth):
                            sums[c] += np.int64(src[c]) - zp
                        count += 1
            if include_pad:
                count = np.int64(kh * kw)
            dst = out[b, oy, ox]
            if count == 0:
                for c in range(depth):
                    dst[c] = zp
            elif k2 >= 0:
                for c in range(depth):
                    v = sums[c]
                    dst[c] = ((v + t_pos + dt * (v < 0) + even * ((v >> k2) & 1)) >> k2) + zp
            elif small:
                for c in range(depth):
                    dst[c] = round_div_small(sums[c], count, rmode) + zp
            else:
                for c in range(depth):
                    dst[c] = round_div(sums[c], count, rmode) + zp
