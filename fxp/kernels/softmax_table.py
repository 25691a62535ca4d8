"""hls4ml's table softmax on integer codes, row by row (Numba).

The computation, per row of ``n`` codes (:mod:`fxp.kernels.spec_softmax_table`
is its numpy specification):

1. stable: ``idx = top n_exp bits of ((max - x) mod 2**norm_bits)``;
   latency: ``idx = top n_exp bits of x``'s ``in_bits``-bit pattern;
2. ``e = cast(exp_table[idx] -> accum)`` (shift ``e_shift`` = F_acc - F_exp);
3. ``sum``: the adder tree ``sched`` (rows ``dst, a, b``), each sum brought
   into the accumulator with its overflow mode; then ``cast(sum -> inv_inp)``;
4. ``inv = inv_table[top n_inv bits of sum]``;
5. ``y = cast(e * inv -> out)`` (shift ``F_acc + F_inv - F_out``).

A cast with shift ``k`` (``F_dst - F_src``) is a left shift with overflow when
``k >= 0``, else a rounding right shift and then the overflow mode.  Mode
codes and ``(lo, hi)`` ranges come from the caller.  Products fit int64: the
caller checks ``W_acc + W_inv <= 62``.
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit, kernel, prange
from fxp.kernels.scalar import overflow, round_shift, shift_left


@jit
def _cast(v, k, rmode, lo, hi, bits, signed, omode):
    """(code, overflowed) of ``v`` cast by ``k = F_dst - F_src`` into [lo, hi]."""
    if k >= 0:
        return shift_left(v, k, lo, hi, bits, signed, omode)
    return overflow(round_shift(v, -k, rmode, np.uint64(0)), lo, hi, bits, signed, omode)


@kernel
def softmax_table_rows(x, stable, in_bits, norm_bits, n_exp, n_inv, exp_table, inv_table,
                       sched, acc_p, inv_inp_p, out_p, out):
    """Fill ``out`` [N, n] from ``x`` [N, n]; returns the number of output overflows.

    ``acc_p``, ``inv_inp_p``, ``out_p``: int64 ``[k, rmode, lo, hi, bits, signed, omode]``
    of the casts exp->accum, accum->inv_inp and product->out.
    """
    rows, n = x.shape
    n_slots = n + sched.shape[0]
    sat = np.zeros(rows, np.int64)
    in_mask = (np.int64(1) << in_bits) - 1
    norm_mask = (np.int64(1) << norm_bits) - 1
    for r in prange(rows):
        slots = np.empty(n_slots, np.int64)
        x_max = x[r, 0]
        for i in range(1, n):
            if x[r, i] > x_max:
                x_max = x[r, i]
        for i in range(n):
            if stable:
                idx = ((x_max - x[r, i]) & norm_mask) >> (norm_bits - n_exp)
            else:
                idx = (x[r, i] & in_mask) >> (in_bits - n_exp)
            slots[i] = _cast(exp_table[idx], acc_p[0], acc_p[1], acc_p[2], acc_p[3], acc_p[4],
                             acc_p[5] != 0, acc_p[6])[0]
        for j in range(sched.shape[0]):
            s = slots[sched[j, 1]] + slots[sched[j, 2]]
            slots[sched[j, 0]] = overflow(s, acc_p[2], acc_p[3], acc_p[4], acc_p[5] != 0,
                                          acc_p[6])[0]
        total = _cast(slots[n_slots - 1], inv_inp_p[0], inv_inp_p[1], inv_inp_p[2],
                      inv_inp_p[3], inv_inp_p[4], inv_inp_p[5] != 0, inv_inp_p[6])[0]
        inv_mask = (np.int64(1) << inv_inp_p[4]) - 1
        inv = inv_table[(total & inv_mask) >> (inv_inp_p[4] - n_inv)]
        for i in range(n):
            y, over = _cast(slots[i] * inv, out_p[0], out_p[1], out_p[2], out_p[3], out_p[4],
                            out_p[5] != 0, out_p[6])
            out[r, i] = y
            if over:
                sat[r] += 1
    return sat.sum()
