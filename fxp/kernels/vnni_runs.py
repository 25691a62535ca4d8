"""The int8 convolution of the proven path for any channel count, on a padded copy (issue 17).

:func:`conv_runs_vnni` is :func:`fxp.kernels.vnni_conv.conv_taps_vnni` for inputs
whose channel count is not a multiple of 4 (``dw == 1``): it first writes the
stored codes ``x + offset`` into a copy padded with the offset
(:func:`pad_stored`), where one kernel row's ``kw*C`` codes are contiguous;
the tap microkernel then reads each kernel row as ``ceil(kw*C / 4)`` groups of
four, against weights (:func:`run_weights`) that are zero past ``kw*C``.  It
must equal the statement chain of :mod:`fxp.kernels.vnni_conv`
(``tests/kernels/test_vnni.py``).
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit_inline, kernel, prange
from fxp.kernels.vnni_conv import ROWS, _requant_task, _tap_offsets, _tap_sums, _tasks

__all__ = ["SLACK", "conv_runs_vnni", "pad_stored", "run_weights"]


def run_weights(w: np.ndarray, kh: int) -> np.ndarray:
    """``w [kh*kw*C, Co]`` (rows in ``(ky, kx, c)`` order) -> ``[kh * 4*r4, Co]`` in the
    ``(ky, j)`` order of :func:`conv_runs_vnni`: each kernel row's ``kw*C`` rows, then
    zero rows up to ``4*r4``, ``r4 = ceil(kw*C / 4)``."""
    run = w.shape[0] // kh
    rows = w.reshape(kh, run, w.shape[1])
    return np.pad(rows, ((0, 0), (0, -run % 4), (0, 0))).reshape(-1, w.shape[1])


SLACK = 4
"""Bytes after the padded codes of :func:`pad_stored`: :func:`conv_runs_vnni` reads each
kernel row as whole groups of four, up to 3 bytes past its last code."""


@kernel
def pad_stored(x, xp, offset, hp, wp, pad_top, pad_left):
    """``xp`` (uint8, ``N*hp*wp*C + SLACK`` long) := ``x [N, H, W, C]`` (integer codes
    that fit a byte after the offset, any strides) as ``[N, hp, wp, C]`` stored codes:
    ``x + offset`` at ``[b, iy + pad_top, ix + pad_left, c]``, ``offset`` (the stored code
    of a real 0) everywhere else, 0 in the slack."""
    for r in prange(_pad_prologue(x, xp, hp, wp)):
        _pad_row(x, xp, r, hp, wp, offset, pad_top, pad_left)


@jit_inline
def _pad_prologue(x, xp, hp, wp):
    """Zero :func:`pad_stored`'s slack; returns the number of padded rows ``N*hp``."""
    size = x.shape[0] * hp * wp * x.shape[3]
    for j in range(SLACK):
        xp[size + j] = 0
    return x.shape[0] * hp


@jit_inline
def _pad_row(x, xp, r, hp, wp, offset, pad_top, pad_left):
    """Padded row ``r`` (image ``r // hp``, row ``r % hp``) of :func:`pad_stored`."""
    in_h, in_w, c_in = x.shape[1], x.shape[2], x.shape[3]
    b = r // hp
    iy = r % hp - pad_top
    row = xp[r * wp * c_in:(r + 1) * wp * c_in]
    fill = np.uint8(offset)
    if iy < 0 or iy >= in_h:
        row[:] = fill
        return
    for xx in range(wp):
        ix = xx - pad_left
        if 0 <= ix < in_w:
            for c in range(c_in):
                row[xx * c_in + c] = np.uint8(np.int32(x[b, iy, ix, c]) + offset)
        else:
            for c in range(c_in):
                row[xx * c_in + c] = fill


@kernel
def conv_runs_vnni(x, xp, pad, offset, hp, wp, pad_top, pad_left, bp, bias, y, kh, sh, sw, dh,
                   out_h, out_w, shift, t_pos, t_neg, even, lo, hi, out_lo, out_hi, out_bits,
                   omode, narrow, workers):
    """:func:`conv_rows_vnni` for ``dw == 1`` as an implicit GEMM on padded stored codes:
    first ``xp`` := :func:`pad_stored` of the codes ``x [N, H, W, C]`` (``xp``: ``[N, hp,
    wp, C]`` flattened, plus :data:`SLACK`); then kernel row ``ky`` of output pixel ``(b,
    oy, ox)`` is the ``kw*C`` contiguous codes at ``((b*hp + oy*sh + ky*dh)*wp +
    ox*sw)*C``, read as ``r4 = ceil(kw*C / 4)`` groups of four; ``bp`` packs the weights
    in ``(ky, j)`` order, ``j < 4*r4``, zero for ``j >= kw*C`` (:func:`run_weights`: the up
    to 3 codes read past a run add nothing).  ``pad`` is unused (no read falls outside
    ``xp``)."""
    for r in prange(_pad_prologue(x, xp, hp, wp)):
        _pad_row(x, xp, r, hp, wp, offset, pad_top, pad_left)
    n_b, c_in = x.shape[0], x.shape[3]
    n_panels, k4, width, _ = bp.shape
    r4 = k4 // kh
    c_out = y.shape[1]
    m = n_b * out_h * out_w
    n_tasks, task_rows, mask, dt, bias_rows, bias32, counts = _tasks(m, bias, c_out, out_bits,
                                                                     t_pos, t_neg)
    flat_y = y.reshape(-1)
    ldc = n_panels * width
    per = -(-n_tasks // workers)  # tasks per worker, in one block
    for worker in prange(workers):
        offs = np.empty(kh * task_rows, np.int64)  # this worker's scratch: [ky, row]
        acc = np.empty((task_rows, ldc), np.int32)
        for task in range(worker * per, min(n_tasks, (worker + 1) * per)):
            r0 = task * ROWS
            rows = min(ROWS, m - r0)
            _tap_offsets(offs, task_rows, 0, r0, rows, hp, wp, c_in, kh, 1, sh, sw, 0, 0, dh, 1,
                         out_h, out_w)
            _tap_sums(xp, pad, offs, task_rows, kh, r4, bp, acc, rows)
            counts[task] = _requant_task(acc, rows, bias_rows, bias32,
                                         flat_y[r0 * c_out:(r0 + rows) * c_out], shift, t_pos, dt,
                                         even, lo, hi, out_lo, out_hi, mask, omode, narrow)
    return counts.sum()
