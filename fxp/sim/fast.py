"""The proven float32 path of power-of-two Conv2D/Dense layers (the executor's ``method="auto"``).

A layer qualifies when its integers cannot depend on how it is computed:

* power-of-two requantization, fixed-point (not binary / shift-add) weights,
  products exact in the accumulator (``product_shift == 0``), no ``result``
  format (hls4ml's two casts);
* the weight-aware worst case ``B[co] = max|x| * sum|w[co]| + |bias[co]|``
  (:func:`fxp.ops.layers.accumulator_bound`) fits the accumulator, so no
  addition overflows in any order (wrap or saturate, fxp's or hls4ml's order:
  the same integers, zero events);
* the GEMM is split into chunks of input channels (or single taps) whose own
  bound ``max|x| * sum_{chunk}|w[co]|`` is below ``2**24``: every partial sum
  a float32 GEMM forms is then an integer of magnitude below ``2**24``, held
  exactly whatever the summation order or FMA use; chunk results are summed
  in float64 (exact: ``B < 2**53``), then the bias is added in int64.

Everything else falls back to :func:`fxp.ops.layers.conv2d_int` /
:func:`~fxp.ops.layers.dense_int`.  The requantization, activation clamp and
output overflow run fused (:func:`fxp.kernels.fast_layers.requant_pow2_fused`),
equal to :func:`fxp.sim.integer._requant`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fxp.core import intmath
from fxp.core.modes import OverflowMode
from fxp.kernels.fast_layers import rounding_offsets
from fxp.ir.nodes import Conv2D
from fxp.plan.plan import RequantScheme

__all__ = ["FastLayer", "blas_threads", "fast_layer", "run_fast", "storage_dtype"]

F32_EXACT = 1 << 24
"""Integers of magnitude below this are exact in float32 (24-bit significand)."""
F64_EXACT = 1 << 53
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass
class FastLayer:
    """What the float32 path precomputes for one layer (weights as float32 chunks)."""

    chunks: list  # (slice of K, float32 weights [G, Co/G, k]) per chunk
    groups: int
    bias: np.ndarray  # int64 [Co], in the accumulator's LSB
    shift: int  # F_acc - F_out
    offsets: tuple  # (t_pos, t_neg, even): fxp.kernels.fast_layers.rounding_offsets
    lo: int
    hi: int
    out_lo: int
    out_hi: int
    out_bits: int
    omode: int


def _chunks(w2: np.ndarray, x_max: int) -> list[slice] | None:
    """Column ranges of ``w2 [Co, K]`` whose float32 partial sums are proven exact.

    A chunk's bound ``x_max * max_co sum_{j in chunk} |w2[co, j]|`` stays
    below ``2**24``; None when a single product can reach it.
    """
    a = np.abs(w2.astype(np.int64))
    if a.size and int(a.max()) * x_max >= F32_EXACT:
        return None
    cuts, start = [], 0
    acc = np.zeros(w2.shape[0], np.int64)
    for j in range(w2.shape[1]):
        nxt = acc + a[:, j]
        if int(nxt.max()) * x_max >= F32_EXACT:
            cuts.append(slice(start, j))
            start, nxt = j, a[:, j].copy()
        acc = nxt
    cuts.append(slice(start, w2.shape[1]))
    return cuts


def fast_layer(step) -> FastLayer | None:
    """The float32 plan of ``step`` (a compiled Conv2D/Dense), or None if it does not qualify."""
    lp = step.plan
    if lp is None or lp.requant is not RequantScheme.POW2 or step.is_binary or step.is_shift \
            or step.product_shift or lp.result is not None or not step.bound:
        return None
    spec = step.in_specs[0]
    acc_lo, acc_hi = intmath._range_for(step.acc_fmt, lp.acc_overflow)
    top = max(step.bound)
    if top > acc_hi or -top < acc_lo or top >= F64_EXACT:
        return None
    w = step.w_codes
    w2 = w.reshape(w.shape[0], -1)
    x_max = max(abs(spec.fmt.min_code), abs(spec.fmt.max_code))
    cuts = _chunks(w2, x_max)
    if cuts is None:
        return None
    out = step.out_spec.fmt
    shift = step.acc_fmt.frac_bits - out.frac_bits
    if shift > 62 or (shift < 0 and (top << -shift) > I64_MAX // 2):
        return None
    lo, hi = step.act_bounds if step.act_bounds is not None else (I64_MIN, I64_MAX)
    if hi >= out.max_code:
        hi = I64_MAX  # the executor clamps from above only below the format's top
    o_lo, o_hi = intmath._range_for(out, lp.output_overflow)
    offsets = rounding_offsets(shift, lp.rounding.code) if shift > 0 else (0, 0, 0)
    groups = getattr(step.node, "groups", 1)
    w3 = w2.reshape(groups, w2.shape[0] // groups, w2.shape[1])
    return FastLayer([(c, np.ascontiguousarray(w3[:, :, c], np.float32)) for c in cuts], groups,
                     np.asarray(step.b_codes, np.int64), shift, offsets, int(lo), int(hi),
                     int(o_lo), int(o_hi), out.bits,
                     OverflowMode.from_string(lp.output_overflow).code)


SMALL_BATCH = 16
"""Batches below this run BLAS on one thread (threads cost more than they give on small
GEMMs: a 64x288x121 float32 GEMM took 4.3 ms on two busy cores, 0.11 ms on one)."""
_CONTROLLER = []


def blas_threads(batch: int):
    """A context for one batch: one BLAS thread below :data:`SMALL_BATCH` images (threadpoolctl),
    else BLAS's own setting."""
    import contextlib

    if batch >= SMALL_BATCH:
        return contextlib.nullcontext()
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            _CONTROLLER.append(None)
    c = _CONTROLLER[0]
    return contextlib.nullcontext() if c is None else c.limit(limits=1, user_api="blas")


def _gemm(fl: FastLayer, cols: np.ndarray) -> np.ndarray:
    """``W [Co, G*K] @ cols [G*K, M]`` per group (``[G, Co/G, K] @ [G, K, M]``) by chunks of
    K: float32 exact per chunk, float64 across chunks; returns ``[Co, M]``."""
    c3 = cols.reshape(fl.groups, -1, cols.shape[1])
    total = None
    for sl, wc in fl.chunks:
        part = wc[0] @ c3[0, sl] if fl.groups == 1 else np.matmul(wc, c3[:, sl])
        if len(fl.chunks) > 1:
            part = part.astype(np.float64)
        total = part if total is None else total + part
    return total.reshape(-1, cols.shape[1])


def run_fast(step, fl: FastLayer, codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Output codes (narrow: :func:`storage_dtype`) and the number the overflow changed."""
    from fxp.kernels.fast_layers import im2col_f32, requant_pow2_fused

    node = step.node
    n = codes.shape[0]
    if isinstance(node, Conv2D):
        c_out, _, kh, kw = step.w_codes.shape
        (sh, sw), (dh, dw) = node.strides, node.dilations
        t, left, b, r = node.pads
        h, wd = codes.shape[2:]
        ho = (h + t + b - ((kh - 1) * dh + 1)) // sh + 1
        wo = (wd + left + r - ((kw - 1) * dw + 1)) // sw + 1
        x = np.ascontiguousarray(codes, np.int64)
        cols = im2col_f32(x.size * kh * kw, x, kh, kw, sh, sw, t, left, dh, dw, ho, wo)
        acc = _gemm(fl, cols)
        shape = (n, c_out, ho, wo)
    else:
        flat = codes.reshape(n, -1)
        acc = _gemm(fl, np.ascontiguousarray(flat.T, np.float32))
        shape = (n, acc.shape[0])
    y = np.empty((n, acc.shape[0], acc.shape[1] // n), storage_dtype(step.out_spec.fmt))
    n_over = requant_pow2_fused(acc.size, acc, fl.bias, y, fl.shift, *fl.offsets, fl.lo, fl.hi,
                                fl.out_lo, fl.out_hi, fl.out_bits, fl.omode)
    return y.reshape(shape), int(n_over)


def storage_dtype(fmt) -> np.dtype:
    """The narrowest signed integer dtype holding every code of ``fmt`` (int8 .. int64).

    The fast path stores codes narrow between layers (less memory traffic);
    :func:`fxp.sim.integer.run_integer` widens them to int64 wherever they
    leave the fast path.
    """
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= fmt.min_code and fmt.max_code <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)
