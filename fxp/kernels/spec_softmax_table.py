"""Numpy specification of hls4ml's table softmax (``nnet_activation.h``, hls4ml 1.3.0).

For one slice ``x[0..n)`` of codes of the input type ``D`` (``W`` bits,
``F`` fraction bits, signed ``s``), ``softmax_stable`` computes:

1. ``x_max = max x`` (``Op_max``, exact);
2. ``d[i] = x_max - x[i]`` assigned to ``inp_norm_t = ap_ufixed<W-s, I-s>``
   (same ``F``; ``AP_TRN, AP_WRAP``: the code modulo ``2**(W-s)``);
3. ``e[i] = exp_table[top N bits of d[i]]`` (``N = log2(exp_table_size)``),
   cast to ``accum_t``;
4. ``sum`` = hls4ml's adder tree ``reduce`` over ``e`` (left part
   ``2**floor(log2(n-1))`` elements, recursively), each ``a + b`` cast to
   ``accum_t`` (its overflow mode applies at every node), then cast to
   ``inv_inp_t``;
5. ``inv = inv_table[top N_inv bits of sum]`` (two's-complement bits);
6. ``y[i] = e[i] * inv`` (exact product) cast to the result type.

``softmax_latency`` skips 1-2 and indexes with ``x`` itself.  The tables are
built as the C++ builds them: index ``i`` is the real value of a code whose
top ``N`` bits are ``i`` (``softmax_real_val_from_idx``, exact in float),
``exp`` is taken in float32 (``std::exp(float)``; here float64 ``exp``
rounded to float32, checked against the C library's ``expf`` by the tests),
``1 / x`` is a float32 division (``1/0 = inf``), and the float is converted
to the table type with its quantization and overflow modes (``inf``
saturates to the largest code, or becomes 0 under ``AP_WRAP`` /
``AP_SAT_ZERO``, as ap_fixed does).
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode

__all__ = ["exp_table_codes", "inv_table_codes", "reduce_schedule", "softmax_table_spec",
           "top_bits"]


def top_bits(codes: np.ndarray, fmt: QFormat, n: int) -> np.ndarray:
    """The top ``n`` bits of each code's ``fmt.bits``-bit pattern, as an unsigned index."""
    mask = (1 << fmt.bits) - 1
    return (np.asarray(codes, np.int64) & mask) >> (fmt.bits - n)


def _index_reals(fmt: QFormat, n: int) -> np.ndarray:
    """float32 real value of the code whose top ``n`` bits are ``i``, for every ``i``."""
    codes = np.arange(1 << n, dtype=np.int64) << (fmt.bits - n)
    if fmt.signed:
        sign = np.int64(1) << (fmt.bits - 1)
        codes = (codes ^ sign) - sign
    return np.ldexp(codes.astype(np.float64), -fmt.frac_bits).astype(np.float32)


def _float_to_codes(v: np.ndarray, t) -> np.ndarray:
    """ap_fixed's conversion of float32 values (``inf`` included) into ``t`` (an ApType)."""
    v = np.asarray(v, np.float32)
    finite = np.isfinite(v)
    codes, _ = intmath.quantize(np.where(finite, v, 0).astype(np.float64), t.fmt, t.rounding,
                                t.overflow)
    lo, hi = intmath._range_for(t.fmt, t.overflow)
    if t.overflow in (OverflowMode.WRAP, OverflowMode.SATURATE_ZERO):
        big = np.zeros_like(codes)
    else:
        big = np.where(v > 0, hi, lo)
    return np.where(finite, codes, big).astype(np.int64)


def exp_table_codes(data_fmt: QFormat, n: int, t, negative: bool) -> np.ndarray:
    """``init_exp_table``: ``t(expf(+-real(i)))`` for ``i < 2**n`` (``exp_scale`` 1)."""
    x = _index_reals(data_fmt, n)
    if negative:
        x = -x
    e = np.exp(x.astype(np.float64)).astype(np.float32)
    return _float_to_codes(e, t)


def inv_table_codes(data_fmt: QFormat, n: int, t) -> np.ndarray:
    """``init_invert_table``: ``t(1.0f / real(i))`` for ``i < 2**n``."""
    x = _index_reals(data_fmt, n)
    with np.errstate(divide="ignore"):
        inv = np.float32(1) / x
    return _float_to_codes(inv, t)


def reduce_schedule(n: int) -> np.ndarray:
    """hls4ml's ``reduce`` tree as ``[k, 3]`` rows ``(dst, a, b)`` over a scratch vector.

    Slots ``0..n-1`` hold the leaves; row ``j`` writes slot ``n + j``; the
    last row (or slot 0 when ``n == 1``) is the root.
    """
    rows: list[tuple[int, int, int]] = []

    def build(start: int, count: int) -> int:
        if count == 1:
            return start
        left = 1 << ((count - 1).bit_length() - 1) if count > 2 else 1
        a = build(start, left)
        b = build(start + left, count - left)
        rows.append((n + len(rows), a, b))
        return rows[-1][0]

    build(0, n)
    return np.array(rows, np.int64).reshape(-1, 3)


def _cast(codes, src: QFormat, t) -> np.ndarray:
    return intmath.cast(codes, src, t.fmt, t.rounding, t.overflow)[0]


def softmax_table_spec(x: np.ndarray, p, out_fmt: QFormat, rounding, overflow
                       ) -> tuple[np.ndarray, int]:
    """Rows of ``x`` (codes of ``p.in_fmt``, shape ``[N, n]``) -> (output codes, saturations).

    ``p`` is a :class:`fxp.ops.softmax_table.PreparedSoftmax`.
    """
    x = np.asarray(x, np.int64)
    if p.stable:
        d = x.max(axis=1, keepdims=True) - x
        d = d & ((1 << p.norm_fmt.bits) - 1)
        idx = top_bits(d, p.norm_fmt, p.n_exp)
    else:
        idx = top_bits(x, p.in_fmt, p.n_exp)
    e = _cast(p.exp_table[idx], p.exp_t.fmt, p.accum_t)
    slots = [e[:, j] for j in range(e.shape[1])]
    for _, a, b in p.schedule:
        s = slots[a] + slots[b]
        slots.append(intmath.apply_overflow(s, p.accum_t.fmt, p.accum_t.overflow)[0])
    total = _cast(slots[-1], p.accum_t.fmt, p.inv_inp_t)
    inv = p.inv_table[top_bits(total, p.inv_inp_t.fmt, p.n_inv)]
    prod = e * inv[:, None]
    src = QFormat.from_frac(64, p.accum_t.fmt.frac_bits + p.inv_t.fmt.frac_bits)
    return intmath.cast(prod, src, out_fmt, rounding, overflow)
