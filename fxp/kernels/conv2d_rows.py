"""The ordered integer loop of Conv2D / Dense, vectorized across outputs.

Same contract as :func:`fxp.kernels.conv2d.conv2d_acc` and
:func:`fxp.kernels.dense.dense_acc` (numpy specification:
:func:`fxp.kernels.spec_layers.conv2d` / :func:`~fxp.kernels.spec_layers.dense`):
per output the same additions in the same order, the overflow mode after
each, the same events and peaks.  Only the order *within* one output is part
of the contract, so a whole block of outputs advances one tap at a time:

1. ``xs = x - zx`` is laid out once as rows a tap reads contiguously
   (:func:`conv_rows`): ``cols[(c*kh + ky)*kw + kx, (b*Ho + oy)*Wo + ox] =
   xs_pad[b, c, oy*sh + ky*dh, ox*sw + kx*dw]`` (im2col; zero padding: a
   padded tap's term is 0, an addition that cannot overflow but counts for
   the peak, as in the scalar loop).  Dense: ``cols = (x - zx).T``.
2. The taps of output channel ``co`` are the rows ``group*K + order_rows[t]``
   for ``t = 0 .. K-1`` in the documented order (fxp: ``ci, ky, kx``;
   hls4ml: ``ky, kx, ci``), with weights ``ws[co, t]`` in the same order;
   ``ws = (w - zw) << -pshift`` for ``pshift < 0`` (the same exact product).
3. For each job (prange: an output channel and a block of ``BLOCK`` output
   positions) the accumulators start at 0 (hls4ml: at the bias cast into the
   accumulator), then for each tap every accumulator of the block runs the
   branch-free step ``t = x*w`` (``pshift > 0``: ``t = (t + r(t)) >> pshift``,
   the rounding mode as a bias, :func:`round_bias`; hls4ml: ``t = fit(t)``,
   the cast), ``s = acc + t``, ``acc = fit(s)`` (wrap ``((s - lo) & mask) +
   lo``, saturate ``clip(s, lo, hi)``, saturate_zero ``s`` or 0),
   ``events += fit(s) != s``, ``peak = max(peak, |s|)``; then the fxp order
   adds the bias the same way.  Small dense batches run across outputs
   instead (:func:`dense_cols_acc`, events and peaks kept per output).

Every value above is exact in the *lane* type (int32 or int64) when
``3*A + T + |bias| + 2**pshift`` fits it, ``A = max(|lo|, |hi|)`` the
accumulator's reach and ``T`` the largest scaled product: then ``|s| <= A +
max(T, A, |bias|)``, ``|s - lo| <= 3A + T + |bias|``, and the rounding bias
adds at most ``2**pshift``.  A wrapping accumulator inside int32 whose
products and bias fit int32 (a 32-bit ``acc32`` plan) also runs in int32
lanes (``WRAP32``): ``s`` is formed modulo ``2**32``, an int32 overflow of the
addition (``(a ^ s) & (t ^ s) < 0``) is an event, and then ``|exact s| =
2**32 - |s|`` is the peak (``|exact s| < 2**32``).
:func:`fxp.ops.layers.conv2d_int` proves one of these (else the scalar,
int64-overflow-safe loop runs); int32 lanes hold twice as many accumulators
per vector.  Each (overflow mode, order, rounding) runs its own compiled copy
of the kernel (:func:`variant`), so the inner loop has no branch and the
compiler vectorizes it.

Worst case per output channel, as in :mod:`fxp.kernels.conv2d`: ``|acc| <=
max|x - zx| * sum|w - zw| + |bias|`` before the accumulator's overflow; the
lanes above hold every partial sum whatever the accumulator does with it.
"""

from __future__ import annotations

import types

import numpy as np

from fxp.kernels._jit import Kernel, jit_inline, prange
from fxp.kernels.scalar import (
    AWAY,
    CEIL,
    HALF_AWAY,
    HALF_DOWN,
    HALF_EVEN,
    HALF_TO_ZERO,
    HALF_UP,
    SATURATE,
    SATURATE_SYMMETRIC,
    SATURATE_ZERO,
    TO_ZERO,
    WRAP,
)

__all__ = ["BLOCK", "WRAP32", "conv2d_rows", "conv_rows", "dense_cols_acc", "dense_rows",
           "order_rows", "round_bias", "rows_acc", "variant"]

BLOCK = 2048
"""Accumulators advanced together: 8 or 16 KiB of lanes stay in L1 across the taps, and
consecutive jobs (output channels) reread the same ``K x BLOCK`` codes of ``cols`` from L2."""


def round_bias(shift: int, mode: int) -> tuple[int, int, int]:
    """``(pos, neg, even)``: ``round(t / 2**shift) = (t + (neg if t < 0 else pos)
    + ((t >> shift) & even)) >> shift`` for the rounding mode code ``mode``.

    With ``h = 2**(shift-1)``: floor adds 0, ceil ``2h - 1``; half_up ``h``,
    half_down ``h - 1``; to_zero / away / half_to_zero / half_away take the
    up or down bias by sign; half_even adds ``h - 1`` plus the floor's parity
    (a tie reaches ``2h`` only from an odd floor).  ``shift <= 0``: no rounding.
    """
    if shift <= 0:
        return 0, 0, 0
    h = 1 << (shift - 1)
    up, half = 2 * h - 1, {HALF_UP: (h, h), HALF_DOWN: (h - 1, h - 1),
                           HALF_TO_ZERO: (h - 1, h), HALF_AWAY: (h, h - 1)}
    if mode in half:
        return (*half[mode], 0)
    if mode == HALF_EVEN:
        return h - 1, h - 1, 1
    return {CEIL: (up, up), TO_ZERO: (0, up), AWAY: (up, 0)}.get(mode, (0, 0)) + (0,)


def conv_rows(xs_pad: np.ndarray, kh: int, kw: int, strides, dilations, out_h: int,
              out_w: int) -> np.ndarray:
    """im2col of the zero-padded ``x - zx`` (step 1 of the module docstring).

    ``cols[(c*kh + ky)*kw + kx, (b*Ho + oy)*Wo + ox] = xs_pad[b, c, oy*sh + ky*dh,
    ox*sw + kx*dw]``, in ``xs_pad``'s dtype (the lane type).
    """
    (sh, sw), (dh, dw) = strides, dilations
    n, c = xs_pad.shape[:2]
    cols = np.empty((c, kh, kw, n, out_h, out_w), xs_pad.dtype)
    for ky in range(kh):
        for kx in range(kw):
            cols[:, ky, kx] = xs_pad[:, :, ky * dh: ky * dh + (out_h - 1) * sh + 1: sh,
                                     kx * dw: kx * dw + (out_w - 1) * sw + 1: sw
                                     ].transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n * out_h * out_w)


def order_rows(cg: int, kh: int, kw: int, order: int) -> np.ndarray:
    """Row ``(ci*kh + ky)*kw + kx`` of each tap in the accumulation order (step 2).

    >>> order_rows(2, 1, 2, 1).tolist()   # hls4ml: channels innermost
    [0, 2, 1, 3]
    """
    rows = np.arange(cg * kh * kw).reshape(cg, kh, kw)
    return (rows if order == 0 else rows.transpose(1, 2, 0)).ravel()


WRAP32 = 4
"""Pseudo overflow code: a wrapping accumulator of <= 32 bits in int32 lanes whose exact
sums may leave int32 (``|s| < 2**32``); step 3 then reads ``s`` from the wrapped int32 sum
and its overflow flag (module docstring)."""


@jit_inline
def _fit(s, lo, hi, mask, omode, lane):
    """The accumulator's overflow mode applied to the sum ``s`` (lane type)."""
    if omode == WRAP or omode == WRAP32:
        return lane(((s - lo) & mask) + lo)
    if omode == SATURATE_ZERO:
        return s if lo <= s <= hi else lane(0)
    return min(max(s, lo), hi)


@jit_inline
def _run(acc, n, v, wv, lo, hi, mask, omode, cast, evs, pks, lanes, lane):
    """One tap for the ``n`` accumulators ``acc``: ``(events, peak)`` of its additions
    (``lanes``: added to ``evs[p]`` / ``pks[p]`` instead).  Inlined with constant
    ``omode``, ``cast`` and ``lanes``, so the loop has no branch and vectorizes."""
    ev = lane(0)
    pk = lane(0)
    pku = np.uint32(0)  # WRAP32: |s| < 2**32
    for p in range(n):
        t = lane(v[p] * wv)
        e = lane(0)
        m = lane(0)
        if cast:  # hls4ml: (accum_t) product, an addition to 0
            c = _fit(t, lo, hi, mask, omode, lane)
            e = lane(c != t)
            m = abs(t)
            t = c
        a = acc[p]
        s = lane(a + t)  # WRAP32: modulo 2**32
        c = _fit(s, lo, hi, mask, omode, lane)
        acc[p] = c
        if omode == WRAP32:  # after an int32 overflow |exact s| = 2**32 - |s|
            over = ((a ^ s) & (t ^ s)) < 0
            e = lane(e + (over | (c != s)))
            mag = np.uint32(abs(s))
            mu = max(np.uint32(m), np.uint32(np.uint32(0) - mag) if over else mag)
            if lanes:
                evs[p] += e
                pks[p] = max(pks[p], np.int64(mu))
            else:
                ev = lane(ev + e)
                pku = max(pku, mu)
        else:
            e = lane(e + (c != s))
            m = max(m, abs(s))
            if lanes:
                evs[p] += e
                pks[p] = max(pks[p], np.int64(m))
            else:
                ev = lane(ev + e)
                pk = max(pk, m)
    return ev, max(np.int64(pk), np.int64(pku))


@jit_inline
def _step(acc, n, vec, off, wv, lo, hi, mask, omode, cast, rounding, rs, rpos, rneg, reven,
          buf, evs, pks, lanes, lane):
    """Tap ``acc[p] += vec[off + p] * wv``; ``rounding``: each product rounded first
    (:func:`round_bias`) into ``buf``, then added with weight 1."""
    v = vec[off:off + n]
    if rounding:
        for p in range(n):
            t = lane(v[p] * wv)
            buf[p] = lane((t + (rneg if t < 0 else rpos) + ((t >> rs) & reven)) >> rs)
        return _run(acc, n, buf, lane(1), lo, hi, mask, omode, cast, evs, pks, lanes, lane)
    return _run(acc, n, v, wv, lo, hi, mask, omode, cast, evs, pks, lanes, lane)


# Compile-time constants of a kernel variant (:func:`variant` rebinds them per copy).
OMODE, CAST, ROUNDING = WRAP, False, False


def rows_acc(out, cols, tap_rows, ws, bias, groups, lo, hi, mask, rs, rpos, rneg, reven, lane,
             ones):
    """cols [groups*K, N*P], tap_rows [K], ws [Co, K] lane (both in accumulation order) ->
    ``out[n, co, p]`` (int64 [N, Co, P]) and (events, peaks [blocks, Co]); one job per
    output channel and block of ``BLOCK`` columns.

    A template: :func:`variant` compiles it with ``OMODE`` (wrap, WRAP32, saturate,
    saturate_zero), ``CAST`` (the hls4ml order) and ``ROUNDING`` (``pshift > 0``) fixed.
    ``lo, hi, mask, rs, rpos, rneg, reven`` are lane scalars, ``lane`` the lane type
    (``np.int32`` or ``np.int64``).  The bias is one more tap (``ones`` [BLOCK] times
    ``bias[co]``), first in the hls4ml order (the accumulator starts from its cast), last
    in fxp's.
    """
    width = cols.shape[1]
    out_depth, n_taps = ws.shape
    hw = out.shape[2]
    per_group = out_depth // groups
    n_blocks = (width + BLOCK - 1) // BLOCK
    events = np.zeros((n_blocks, out_depth), np.int64)
    peaks = np.zeros((n_blocks, out_depth), np.int64)
    first = -1 if CAST else 0
    for job in prange(out_depth * n_blocks):
        out_c = job % out_depth  # consecutive jobs share the block of ``cols`` (in L2)
        blk = job // out_depth
        start = blk * BLOCK
        n = min(BLOCK, width - start)
        first_row = (out_c // per_group) * n_taps
        block = np.zeros(n, lane)
        buf = np.empty(n if ROUNDING else 1, lane)
        count = 0
        peak = 0
        for tap in range(first, n_taps + 1 + first):
            if tap < 0 or tap == n_taps:
                e, m = _run(block, n, ones, lane(bias[out_c]), lo, hi, mask, OMODE, False,
                            events, events, False, lane)
            else:
                e, m = _step(block, n, cols[first_row + tap_rows[tap]], start, ws[out_c, tap],
                             lo, hi, mask, OMODE, CAST, ROUNDING, rs, rpos, rneg, reven, buf,
                             events, events, False, lane)
            count += e
            peak = max(peak, np.int64(m))
        i = 0
        while i < n:  # columns start + i .. are (image, pixel) pairs
            image = (start + i) // hw
            pixel = start + i - image * hw
            k = min(n - i, hw - pixel)
            out[image, out_c, pixel:pixel + k] = block[i:i + k]
            i += k
        events[blk, out_c] = count
        peaks[blk, out_c] = peak
    return events, peaks


def dense_cols_acc(xs, wt, bias, lo, hi, mask, rs, rpos, rneg, reven, lane):
    """Across outputs (small batches): xs [N, In] lane (``x - zx``), wt [In, Out]
    (``(w - zw).T``), bias lane -> (acc [N, Out], events, peaks [N, Out]); one job per
    row.  A template, like :func:`rows_acc`."""
    batches, accum_depth = xs.shape
    output_depth = wt.shape[1]
    acc = np.empty((batches, output_depth), np.int64)
    events = np.zeros((batches, output_depth), np.int64)
    peaks = np.zeros((batches, output_depth), np.int64)
    first = -1 if CAST else 0
    for batch in prange(batches):
        block = np.zeros(output_depth, lane)
        buf = np.empty(output_depth if ROUNDING else 1, lane)
        evs, pks = events[batch], peaks[batch]
        for d in range(first, accum_depth + 1 + first):
            if d < 0 or d == accum_depth:  # the bias
                _run(block, output_depth, bias, lane(1), lo, hi, mask, OMODE, False, evs, pks,
                     True, lane)
            else:
                _step(block, output_depth, wt[d], 0, xs[batch, d], lo, hi, mask, OMODE, CAST,
                      ROUNDING, rs, rpos, rneg, reven, buf, evs, pks, True, lane)
        acc[batch] = block
    return acc, events, peaks


_VARIANTS: dict = {}


def variant(template, omode: int, cast: bool, rounding: bool) -> Kernel:
    """``template`` compiled as a :class:`~fxp.kernels._jit.Kernel` with ``OMODE``,
    ``CAST`` and ``ROUNDING`` bound to constants: one branch-free loop per variant, and
    only the variants a run uses are compiled (each cached under its own name)."""
    omode = SATURATE if omode == SATURATE_SYMMETRIC else omode  # the same clip, other lo
    key = (template.__name__, omode, bool(cast), bool(rounding))
    if key not in _VARIANTS:
        name = f"{template.__name__}_m{omode}_c{int(cast)}_r{int(rounding)}"
        consts = dict(template.__globals__, OMODE=omode, CAST=bool(cast),
                      ROUNDING=bool(rounding))
        fn = types.FunctionType(template.__code__, consts, name, template.__defaults__)
        fn.__qualname__, fn.__module__, fn.__doc__ = name, template.__module__, template.__doc__
        _VARIANTS[key] = Kernel(fn)
    return _VARIANTS[key]


# --------------------------------------------------------------------------- drivers (numpy)
COLS_BYTES = 1 << 26
"""Batches are laid out (:func:`conv_rows`) in chunks of at most this many bytes."""

ONES = np.ones(BLOCK, np.int8)
"""The bias tap's codes."""

DENSE_COLS_BELOW = 16
"""Dense batches smaller than this run across outputs (:func:`dense_cols_acc`)."""


def _lane_args(acc_args, pshift: int, prmode: int, lane) -> tuple:
    """``(lo, hi, mask, rs, rpos, rneg, reven)`` as lane scalars (kernel arguments)."""
    lo, hi, bits = acc_args[:3]
    mask = (1 << bits) - 1
    if mask > np.iinfo(lane).max:  # WRAP32 with 32 bits: all ones
        mask -= 1 << (8 * np.dtype(lane).itemsize)
    return tuple(lane(v) for v in (lo, hi, mask, max(pshift, 0), *round_bias(pshift, prmode)))


def conv2d_rows(x, w, bias, zx: int, zw, strides, pads, dilations, groups: int, out_h: int,
                out_w: int, acc_args, order: int, pshift: int, prmode: int, lane):
    """:func:`rows_acc` on validated int64 codes: ``(acc [N,Co,Ho,Wo], events, peaks
    uint64 [blocks, Co])``, equal to :func:`fxp.kernels.conv2d.conv2d_acc` after summing
    (events) / maximizing (peaks) over the first axis.

    ``acc_args`` is ``(lo, hi, bits, signed, omode)`` (``omode`` may be ``WRAP32``),
    ``order`` 0 fxp / 1 hls4ml; the caller proves the lane bound of the module docstring.
    Codes are held in lanes too: ``|x - zx| * |w - zw| <= T`` fits them, unless every
    ``w - zw`` is 0 (then every product is 0, whatever the wrapped ``x - zx``).
    """
    n, c, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    taps = order_rows(cg, kh, kw, order)
    ws = ((w - zw[:, None, None, None]) << max(-pshift, 0)).reshape(c_out, -1)[:, taps]
    ws = np.ascontiguousarray(ws, dtype=lane)  # one layout: one compiled signature
    step = max(1, COLS_BYTES // (c * kh * kw * out_h * out_w * np.dtype(lane).itemsize))
    run = variant(rows_acc, acc_args[4], order == 1, pshift > 0)
    args = _lane_args(acc_args, pshift, prmode, lane)
    acc = np.empty((n, c_out, out_h * out_w), np.int64)
    stats = []
    for b0 in range(0, n, step):
        xb = x[b0:b0 + step]
        xs = np.zeros((len(xb), c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), lane)
        np.subtract(xb, zx, out=xs[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd],
                    casting="unsafe")
        cols = conv_rows(xs, kh, kw, strides, dilations, out_h, out_w)
        stats.append(run(cols.size * cg * c_out // c, acc[b0:b0 + step], cols, taps, ws, bias,
                         groups, *args, lane, ONES))
    events, peaks = (np.concatenate(p) for p in zip(*stats, strict=True))
    return acc.reshape(n, c_out, out_h, out_w), events, peaks.astype(np.uint64)


def dense_rows(x, w, bias, zx: int, zw, acc_args, order: int, pshift: int, prmode: int, lane):
    """:func:`rows_acc` across the batch (:func:`dense_cols_acc` across outputs for small
    batches) on validated int64 codes: ``(acc [N, Out], events, peaks uint64)`` with one
    column per output channel, equal to :func:`fxp.kernels.dense.dense_acc` after
    summing / maximizing over the first axis (arguments as :func:`conv2d_rows`)."""
    args = _lane_args(acc_args, pshift, prmode, lane)
    xs = np.subtract(x, zx, out=np.empty(x.shape, lane), casting="unsafe")
    work = x.size * w.shape[0]
    if x.shape[0] >= DENSE_COLS_BELOW:
        run = variant(rows_acc, acc_args[4], order == 1, pshift > 0)
        ws = np.subtract(w, zw[:, None], out=np.empty(w.shape, lane), casting="unsafe")
        acc = np.empty((x.shape[0], w.shape[0], 1), np.int64)
        events, peaks = run(work, acc, np.ascontiguousarray(xs.T), np.arange(w.shape[1]),
                            ws << max(-pshift, 0), bias, 1, *args, lane, ONES)
        acc = acc[:, :, 0]
    else:
        run = variant(dense_cols_acc, acc_args[4], order == 1, pshift > 0)
        wt = np.subtract(w.T, zw, out=np.empty(w.shape[::-1], lane), casting="unsafe")
        if pshift < 0:
            wt <<= -pshift
        acc, events, peaks = run(work, xs, wt, bias.astype(lane), *args, lane)
    return acc, events, peaks.astype(np.uint64)
