"""The fused int8 convolutions of the proven path on AVX-512 VNNI CPUs (issue 17).

One kernel call runs a whole Conv2D (or Dense) in tasks of :data:`ROWS` output
pixels, each task on one core: its codes (as uint8 ``x + offset``), the int32
sums of :mod:`fxp.kernels.vnni`'s microkernels and the requantization of
:func:`fxp.kernels.fast_layers.requant_rows` stay in that core's cache.

* :func:`conv_rows_vnni` copies each pixel's im2col row first (any channel count);
* :func:`conv_taps_vnni` is an implicit GEMM for ``C % 4 == 0``: the microkernel
  reads each tap's ``C`` codes where they lie in the input;
* :func:`fxp.kernels.vnni_runs.conv_runs_vnni` (on this module's task helpers) is an
  implicit GEMM for any ``C`` (``dw == 1``) on a padded copy of the input.

Both must equal the statement chain ``im2col(x + offset, pad=offset) ->``
:func:`fxp.kernels.spec_fast_layers.gemm_u8s8` ``->``
:func:`fxp.kernels.spec_fast_layers.requant_rows` with the bias ``bias - offset *
sum_k w`` (``tests/kernels/test_vnni.py``).
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit, jit_inline, kernel, prange
from fxp.kernels.fast_layers import _requant_run
from fxp.kernels.scalar import SATURATE_ZERO, WRAP
from fxp.kernels.vnni import MR, _taps1, _taps2, _tile1, _tile2

__all__ = ["ROWS", "conv_rows_vnni", "conv_taps_vnni", "narrow_ok"]


ROWS = 64
"""Output pixels per task of :func:`conv_rows_vnni` (a multiple of :data:`MR`): its uint8
im2col rows and int32 sums stay in the core's cache between the three stages."""


LONG_RUN = 16
"""Tap rows of at least this many codes are copied through array views (a vectorized loop);
shorter ones by index (a view costs more than it saves)."""


@jit_inline
def _next_pixel(b, oy, ox, out_h, out_w):
    """The output pixel after ``(b, oy, ox)`` in row-major order (no division)."""
    ox += 1
    if ox == out_w:
        ox = 0
        oy += 1
        if oy == out_h:
            oy = 0
            b += 1
    return b, oy, ox


@jit
def _fill_rows(xf, in_h, c_in, cols, pix, rows, offset, kh, kw, sh, sw, pad_top, pad_left, dh,
               dw, out_h, out_w):
    """``cols[r, (ky*kw + kx)*C + c] = x[b, iy, ix, c] + offset`` as uint8 (``offset`` outside
    the image) for the output pixels ``pix .. pix + rows - 1``, ``x [N, H, W, C]``
    C-contiguous given as ``xf = x.reshape(N*H, W*C)`` (indices, no array view per tap)."""
    in_w = xf.shape[1] // c_in
    run = kw * c_in
    b = pix // (out_h * out_w)
    oy = (pix // out_w) % out_h
    ox = pix % out_w
    fill = np.uint8(offset)
    for r in range(rows):
        ix0 = ox * sw - pad_left
        inside_x = dw == 1 and ix0 >= 0 and ix0 + kw <= in_w
        for ky in range(kh):
            iy = oy * sh - pad_top + ky * dh
            d0 = ky * run
            if iy < 0 or iy >= in_h:
                for q in range(run):
                    cols[r, d0 + q] = fill
                continue
            y0 = b * in_h + iy
            if inside_x:
                s1 = ix0 * c_in
                if run >= LONG_RUN:  # views: their loop vectorizes
                    dst = cols[r, d0:d0 + run]
                    src = xf[y0, s1:s1 + run]
                    for q in range(run):
                        dst[q] = np.uint8(np.int32(src[q]) + offset)
                else:
                    for q in range(run):
                        cols[r, d0 + q] = np.uint8(np.int32(xf[y0, s1 + q]) + offset)
                continue
            for kx in range(kw):
                ix = ix0 + kx * dw
                d1 = d0 + kx * c_in
                if 0 <= ix < in_w:
                    s1 = ix * c_in
                    for c in range(c_in):
                        cols[r, d1 + c] = np.uint8(np.int32(xf[y0, s1 + c]) + offset)
                else:
                    for c in range(c_in):
                        cols[r, d1 + c] = fill
        b, oy, ox = _next_pixel(b, oy, ox, out_h, out_w)


@jit
def _fill_columns(xf, in_h, c_in, cols, pix, rows, offset, kh, kw, sh, sw, pad_top, pad_left,
                  dh, dw, out_h, out_w):
    """:func:`_fill_rows` column by column, for short tap rows (``kw*C`` below
    :data:`LONG_RUN`): within each run of pixels on one output row, one loop along the
    row per im2col column."""
    in_w = xf.shape[1] // c_in
    fill = np.uint8(offset)
    b = pix // (out_h * out_w)
    oy = (pix // out_w) % out_h
    ox0 = pix % out_w
    r = 0
    while r < rows:
        seg = min(rows - r, out_w - ox0)  # pixels r .. r + seg - 1: ox = ox0 .. ox0 + seg - 1
        for ky in range(kh):
            iy = oy * sh - pad_top + ky * dh
            row_ok = 0 <= iy < in_h
            y0 = b * in_h + iy
            for kx in range(kw):
                off = kx * dw - pad_left
                for c in range(c_in):
                    col = (ky * kw + kx) * c_in + c
                    for j in range(seg):
                        ix = (ox0 + j) * sw + off
                        if row_ok and 0 <= ix < in_w:
                            cols[r + j, col] = np.uint8(np.int32(xf[y0, ix * c_in + c]) + offset)
                        else:
                            cols[r + j, col] = fill
        r += seg
        b, oy, ox0 = _next_pixel(b, oy, out_w - 1, out_h, out_w)  # the next output row


@kernel
def conv_rows_vnni(xf, in_h, c_in, bp, bias, y, offset, kh, kw, sh, sw, pad_top, pad_left, dh,
                   dw, out_h, out_w, shift, t_pos, t_neg, even, lo, hi, out_lo, out_hi, out_bits,
                   omode, narrow, workers):
    """One Conv2D (a Dense: ``x [N, 1, 1, F]``, a 1x1 kernel) of ``x [N, H, W, C]`` integer
    codes (C-contiguous, given as ``xf = x.reshape(N*H, W*C)``) into ``y [N*out_h*out_w,
    Co]``, in tasks of :data:`ROWS` output pixels: the im2col rows of ``x + offset`` (uint8,
    padded with ``offset``), :func:`fxp.kernels.vnni.gemm_u8s8`'s int32 sums with the
    weights ``bp`` (:func:`fxp.kernels.vnni.pack_weights`), then
    :func:`fxp.kernels.fast_layers.requant_rows`' requantization with ``bias`` per output
    channel; returns the number of outputs the overflow changed."""
    n_b = xf.shape[0] // in_h
    n_panels, k4, width, _ = bp.shape
    c_out = y.shape[1]
    m = n_b * out_h * out_w
    n_tasks, task_rows, mask, dt, bias_rows, bias32, counts = _tasks(m, bias, c_out, out_bits,
                                                                     t_pos, t_neg)
    flat_y = y.reshape(-1)
    panel = k4 * width * 4
    ldc = n_panels * width
    lda = 4 * k4
    per = -(-n_tasks // workers)  # tasks per worker, in one block
    for worker in prange(workers):
        cols = np.empty((task_rows, lda), np.uint8)  # this worker's scratch
        acc = np.empty((task_rows, ldc), np.int32)
        for task in range(worker * per, min(n_tasks, (worker + 1) * per)):
            r0 = task * ROWS
            rows = min(ROWS, m - r0)
            if kw * c_in < LONG_RUN:
                _fill_columns(xf, in_h, c_in, cols, r0, rows, offset, kh, kw, sh, sw, pad_top,
                              pad_left, dh, dw, out_h, out_w)
            else:
                _fill_rows(xf, in_h, c_in, cols, r0, rows, offset, kh, kw, sh, sw, pad_top,
                           pad_left, dh, dw, out_h, out_w)
            for nb in range(n_panels):
                for i in range(0, rows, MR):
                    c_off = i * ldc + nb * width
                    if width == 16:
                        _tile1(cols, i * lda, lda, bp, nb * panel, k4, acc, c_off, ldc)
                    else:
                        _tile2(cols, i * lda, lda, bp, nb * panel, k4, acc, c_off, ldc)
            counts[task] = _requant_task(acc, rows, bias_rows, bias32,
                                         flat_y[r0 * c_out:(r0 + rows) * c_out], shift, t_pos, dt,
                                         even, lo, hi, out_lo, out_hi, mask, omode, narrow)
    return counts.sum()


@jit_inline
def _tap_sums(x, pad, offs, stride, taps, c4, bp, acc, rows):
    """``acc[r, :]`` := the int32 sums of rows ``r < rows`` (up to the next multiple of
    :data:`MR`) by the tap microkernels: tap ``t`` of row ``r`` reads ``4*c4`` codes at
    ``x + offs[t*stride + r]`` (``pad`` where negative), with the weights ``bp``."""
    width = bp.shape[2]
    panel = bp.shape[1] * width * 4
    ldc = acc.shape[1]
    for nb in range(bp.shape[0]):
        for qd in range((rows + MR - 1) // MR):
            c_off = qd * MR * ldc + nb * width
            if width == 16:
                _taps1(x, pad, offs, qd * MR, stride, taps, c4, bp, nb * panel, acc, c_off, ldc)
            else:
                _taps2(x, pad, offs, qd * MR, stride, taps, c4, bp, nb * panel, acc, c_off, ldc)


@jit
def _tap_offsets(offs, stride, spare, r0, rows, in_h, in_w, c_in, kh, kw, sh, sw, pad_top,
                 pad_left, dh, dw, out_h, out_w):
    """``offs[(ky*kw + kx)*stride + r]`` := the index of tap ``(ky, kx)``'s first code of
    output pixel ``r0 + r`` in ``x [N, in_h, in_w, c_in]`` flattened, -1 for a tap outside
    the image, for ``r < rows``; ``spare`` for the rows up to the next multiple of
    :data:`MR`.  One run of pixels along an output row at a time (a loop that vectorizes)."""
    b = r0 // (out_h * out_w)
    oy = (r0 // out_w) % out_h
    ox0 = r0 % out_w
    r = 0
    while r < rows:
        seg = min(rows - r, out_w - ox0)  # pixels r .. r + seg - 1: ox = ox0 .. ox0 + seg - 1
        for ky in range(kh):
            iy = oy * sh - pad_top + ky * dh
            row0 = (b * in_h + iy) * in_w
            for kx in range(kw):
                dst = offs[(ky * kw + kx) * stride + r:(ky * kw + kx) * stride + r + seg]
                if iy < 0 or iy >= in_h:
                    dst[:] = -1
                    continue
                off = kx * dw - pad_left
                for j in range(seg):
                    ix = (ox0 + j) * sw + off
                    dst[j] = (row0 + ix) * c_in if 0 <= ix < in_w else -1
        r += seg
        b, oy, ox0 = _next_pixel(b, oy, out_w - 1, out_h, out_w)  # the next output row
    for t in range(kh * kw):
        for q in range(rows, (rows + MR - 1) // MR * MR):
            offs[t * stride + q] = spare


@jit
def _requant_task(acc, rows, bias_rows, bias32, dst, shift, t_pos, dt, even, lo, hi, out_lo,
                  out_hi, mask, omode, narrow):
    """Requantize the first ``rows`` rows of ``acc [ROWS, ldc]`` (their first ``Co`` sums,
    ``Co = dst.size / rows``) into ``dst`` (on int32 lanes where ``narrow``:
    :func:`_requant_run32`); returns the number the overflow changed."""
    c_out = dst.shape[0] // rows
    sums = acc.reshape(-1)
    if acc.shape[1] != c_out:  # the rows' first c_out sums, packed (one run vectorizes)
        for r in range(rows):
            for j in range(c_out):
                sums[r * c_out + j] = acc[r, j]
    if narrow:
        return _requant_run32(sums[:rows * c_out], bias32, dst, shift, t_pos, dt, even, lo, hi,
                              out_lo, out_hi, mask, omode)
    return _requant_run(sums[:rows * c_out], bias_rows, dst, shift, t_pos, dt, even, lo, hi,
                        out_lo, out_hi, mask, omode)


@jit_inline
def _requant_run32(src, bias, dst, shift, t_pos, dt, even, lo, hi, out_lo, out_hi, mask,
                   omode):
    """:func:`fxp.kernels.fast_layers._requant_run` (``ka = kb = 0``) on int32 lanes, for
    int32 ``src`` and ``bias``.  Exact where the caller proves (:func:`narrow_ok`) that every
    ``src + bias`` (the accumulator, computed modulo ``2**32``) and that value plus the
    rounding offsets (at most ``2**shift``) lie in int32, ``0 <= shift <= 30`` and
    ``out_bits <= 16``: then no int32 operation below leaves int32, and each one equals its
    int64 counterpart (the clamp bounds are cut to int32, which changes no clamp of an int32
    value).  numpy ufuncs on int32 scalars keep int32 (numba's operators widen to int64),
    so the loops vectorize on 16 lanes."""
    i32 = np.int32
    tp, tn = i32(t_pos), i32(t_pos + dt)
    bit = i32(1 << shift) if even else i32(0)  # parity term: bit ``shift`` of the sum
    s = i32(shift)
    lo32, hi32 = i32(max(lo, I32_MIN)), i32(min(hi, I32_MAX))
    ol, oh, m = i32(out_lo), i32(out_hi), i32(mask)
    n_over = i32(0)
    n = src.shape[0]
    if omode == WRAP:
        for t in range(n):
            y = _round32(src[t], bias[t], tp, tn, bit, s, lo32, hi32)
            n_over = np.add(n_over, i32((y > oh) | (y < ol)))
            dst[t] = np.add(np.bitwise_and(np.subtract(y, ol), m), ol)
    elif omode == SATURATE_ZERO:
        for t in range(n):
            y = _round32(src[t], bias[t], tp, tn, bit, s, lo32, hi32)
            over = (y > oh) | (y < ol)
            n_over = np.add(n_over, i32(over))
            dst[t] = i32(0) if over else y
    else:
        for t in range(n):
            y = _round32(src[t], bias[t], tp, tn, bit, s, lo32, hi32)
            n_over = np.add(n_over, i32((y > oh) | (y < ol)))
            dst[t] = np.minimum(np.maximum(y, ol), oh)
    return np.int64(n_over)


@jit_inline
def _round32(v, b, tp, tn, bit, s, lo, hi):
    """``clamp(round((v + b) / 2**s), lo, hi)`` on int32 (:func:`_requant_run32`)."""
    a = np.add(v, b)
    t = tn if a < 0 else tp
    r = np.add(np.add(a, t), np.int32(np.bitwise_and(a, bit) != 0))
    return np.minimum(np.maximum(np.right_shift(r, s), lo), hi)


I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


def narrow_ok(top: int, bias, shift: int, out_bits: int) -> bool:
    """Whether :func:`_requant_run32` is exact for a layer whose accumulators are bounded by
    ``|acc| <= top`` (the proven bound, bias included) with the int32 sums' bias ``bias``
    (:mod:`fxp.sim.fast_vnni`: ``bias - offset * sum w``)."""
    b = np.asarray(bias, np.int64)
    return (0 <= shift <= 30 and out_bits <= 16 and top + (1 << shift) <= I32_MAX
            and (b.size == 0 or (int(b.min()) >= I32_MIN and int(b.max()) <= I32_MAX)))


@jit
def _tasks(m, bias, c_out, out_bits, t_pos, t_neg):
    """``(tasks, rows per task buffer, overflow mask, t_neg - t_pos, bias along the task
    rows (int64, and as int32 for the int32 lanes where the caller proved them exact),
    per-task counts)`` for ``m`` output pixels (small batches: smaller buffers)."""
    n_tasks = (m + ROWS - 1) // ROWS
    task_rows = min(ROWS, (m + MR - 1) // MR * MR)
    mask = (np.int64(1) << out_bits) - 1 if out_bits < 64 else np.int64(-1)
    rows = _bias_rows(bias, c_out, task_rows)
    return (n_tasks, task_rows, mask, np.int64(t_neg - t_pos), rows, rows.astype(np.int32),
            np.zeros(n_tasks, np.int64))


@jit
def _bias_rows(bias, c_out, rows):
    """``bias`` repeated along ``rows`` rows of ``c_out`` sums."""
    out = np.empty(rows * c_out, np.int64)
    for t in range(rows * c_out):
        out[t] = bias[t % c_out]
    return out


@kernel
def conv_taps_vnni(xs, pad, in_h, in_w, bp, bias, y, kh, kw, sh, sw, pad_top, pad_left, dh, dw,
                   out_h, out_w, shift, t_pos, t_neg, even, lo, hi, out_lo, out_hi, out_bits,
                   omode, narrow, workers):
    """:func:`conv_rows_vnni` as an implicit GEMM, for ``C`` a multiple of 4: no im2col rows;
    the microkernel reads each tap's ``C`` stored codes (``xs``: ``x + offset`` as uint8,
    C-contiguous ``[N, H, W, C]`` flattened) where they are, or ``pad`` (``C`` bytes of the
    offset) for a tap outside the image."""
    n_panels, k4, width, _ = bp.shape
    taps = kh * kw
    c4 = k4 // taps
    c_in = 4 * c4
    c_out = y.shape[1]
    m = xs.shape[0] // (in_h * in_w * c_in) * out_h * out_w
    n_tasks, task_rows, mask, dt, bias_rows, bias32, counts = _tasks(m, bias, c_out, out_bits,
                                                                     t_pos, t_neg)
    flat_y = y.reshape(-1)
    ldc = n_panels * width
    per = -(-n_tasks // workers)  # tasks per worker, in one block
    for worker in prange(workers):
        offs = np.empty(taps * task_rows, np.int64)  # this worker's scratch: [tap, row]
        acc = np.empty((task_rows, ldc), np.int32)
        for task in range(worker * per, min(n_tasks, (worker + 1) * per)):
            r0 = task * ROWS
            rows = min(ROWS, m - r0)
            _tap_offsets(offs, task_rows, -1, r0, rows, in_h, in_w, c_in, kh, kw, sh, sw, pad_top,
                         pad_left, dh, dw, out_h, out_w)
            _tap_sums(xs, pad, offs, task_rows, taps, c4, bp, acc, rows)
            counts[task] = _requant_task(acc, rows, bias_rows, bias32,
                                         flat_y[r0 * c_out:(r0 + rows) * c_out], shift, t_pos, dt,
                                         even, lo, hi, out_lo, out_hi, mask, omode, narrow)
    return counts.sum()
