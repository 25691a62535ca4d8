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
output overflow run fused (:func:`fxp.kernels.fast_layers.requant_rows`),
equal to :func:`fxp.sim.integer._requant`.

Data path: activations are read and written channels-last
(:class:`fxp.sim.values.ChannelsLast`, narrow :func:`storage_dtype` codes), so
a convolution is ``im2col rows [pixels, kh*kw*C] @ W [kh*kw*C, Co]`` and its
result already is the next layer's input; a Dense after a channels-last
Flatten uses its weight columns permuted to that order (the dot product is the
same sum).  The batch runs in blocks of images whose im2col rows take at most
:data:`BLOCK_BYTES`, into per-thread scratch buffers reused from call to call
(a fresh multi-megabyte array is page-faulted in on every call).

On CPUs with AVX-512 VNNI, a layer whose weights are int8 and whose input codes
fit a byte runs its GEMM in int32 instead (:mod:`fxp.sim.fast_vnni`): the same
accumulator integers, one fused kernel per layer (im2col or implicit GEMM,
``vpdpbusd`` sums, requantization).
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from fxp.core import intmath
from fxp.core.modes import OverflowMode
from fxp.ir.nodes import Conv2D
from fxp.kernels.fast_layers import (
    SMALL_GROUP,
    TILE,
    im2col_rows,
    im2col_runs,
    requant_rows,
    rounding_offsets,
)
from fxp.plan.plan import RequantScheme
from fxp.sim.fast_vnni import run_vnni, vnni_plan
from fxp.sim.values import ChannelsLast, IntValue

__all__ = ["BLOCK_BYTES", "FastLayer", "blas_threads", "cached_fast_layer", "cast_plan",
           "fast_cast", "fast_layer", "run_fast", "single_blas", "storage_dtype", "uses_blas"]

F32_EXACT = 1 << 24
"""Integers of magnitude below this are exact in float32 (24-bit significand)."""
F64_EXACT = 1 << 53
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass
class FastLayer:
    """What the float32 path precomputes for one layer.

    ``w_rows`` holds the integer weights as ``[Co, Kg]`` rows in the column order
    of the im2col rows (conv: ``(ky, kx, channel)`` within each group; dense:
    the node's feature order); :meth:`chunks_for` gives the float32 chunks.
    """

    w_rows: np.ndarray
    x_max: int
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
    out_dtype: np.dtype
    conv: tuple | None  # (kh, kw, sh, sw, pad_top, pad_left, pad_bottom, pad_right, dh, dw)
    variants: dict = field(default_factory=dict)
    geometry: dict = field(default_factory=dict)
    vnni: object = None  # fxp.sim.fast_vnni.VnniLayer where the int8 GEMM applies

    def __post_init__(self) -> None:
        c_out = len(self.bias)
        rows = max(1, -(-TILE // c_out)) if c_out else 1
        self.bias_tile = np.tile(self.bias, rows)  # the bias along one requantization tile
        self.requant_args = (self.shift, *self.offsets, self.lo, self.hi, self.out_lo,
                             self.out_hi, self.out_bits, self.omode)

    def rows_for(self, chw: tuple | None) -> np.ndarray:
        """``w_rows`` for inputs in the weights' own column order (``chw=None``) or, for a
        Dense, a channels-last flattening of ``(C, H, W)``."""
        if chw is None:
            return self.w_rows
        c, h, wd = chw
        return self.w_rows[:, np.arange(c * h * wd).reshape(c, h, wd).transpose(1, 2, 0).ravel()]

    def chunks_for(self, chw: tuple | None) -> list:
        """``[(slice of Kg, float32 [G, k, Co/G])]`` for inputs in the column order of
        :meth:`rows_for`."""
        if chw not in self.variants:
            w = self.rows_for(chw)
            w3 = w.reshape(self.groups, w.shape[0] // self.groups, w.shape[1])
            self.variants[chw] = [(c, np.ascontiguousarray(w3[:, :, c].transpose(0, 2, 1),
                                                          np.float32))
                                  for c in _chunks(w, self.x_max)]
        return self.variants[chw]


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
    x_max = max(abs(spec.fmt.min_code), abs(spec.fmt.max_code))
    if w.ndim == 4:  # [Co, Cg, kh, kw] -> rows in (ky, kx, c) order
        w = w.transpose(0, 2, 3, 1)
    w_rows = np.ascontiguousarray(w.reshape(w.shape[0], -1), np.int64)
    if _chunks(w_rows, x_max) is None:
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
    node = step.node
    conv = None
    if isinstance(node, Conv2D):
        t, left, b, r = node.pads
        conv = (*step.w_codes.shape[2:], *node.strides, t, left, b, r, *node.dilations)
    fl = FastLayer(w_rows, x_max, getattr(node, "groups", 1),
                   np.asarray(step.b_codes, np.int64), shift, offsets, int(lo), int(hi),
                   int(o_lo), int(o_hi), out.bits,
                   OverflowMode.from_string(lp.output_overflow).code, storage_dtype(out), conv)
    fl.vnni = vnni_plan(fl, spec.fmt, top)
    return fl


SMALL_BATCH = 16
"""Batches below this run BLAS on one thread (threads cost more than they give on small
GEMMs: a 64x288x121 float32 GEMM took 4.3 ms on two busy cores, 0.11 ms on one)."""
_CONTROLLER = []


def _blas_libs() -> list:
    """threadpoolctl's controllers of the loaded BLAS libraries (found once)."""
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.extend(ThreadpoolController().select(user_api="blas").lib_controllers)
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            pass
        _CONTROLLER.append(None)  # found
    return _CONTROLLER[:-1]


@contextlib.contextmanager
def single_blas():
    """A context in which BLAS runs on one thread (threadpoolctl's library handles)."""
    libs = _blas_libs()
    saved = [lc.num_threads for lc in libs]
    for lc, k in zip(libs, saved, strict=True):
        if k != 1:
            lc.set_num_threads(1)
    try:
        yield
    finally:
        for lc, k in zip(libs, saved, strict=True):
            if k != 1:
                lc.set_num_threads(k)


def blas_threads(batch: int):
    """A context for one batch: one BLAS thread below :data:`SMALL_BATCH` images, else
    BLAS's own setting (nothing inside a batch-splitting worker: its caller set one)."""
    from fxp.kernels._jit import in_serial

    if batch >= SMALL_BATCH or in_serial():
        return contextlib.nullcontext()
    return single_blas()


BLOCK_BYTES = 4 << 20
"""Images run in blocks whose float32 im2col rows take at most this many bytes (at least
one image per block): the rows of a block stay in cache between im2col and GEMM, and the
scratch memory stays bounded whatever the batch."""
_SCRATCH = threading.local()


_ZERO = np.float32(0)


def _scratch(name: str, shape: tuple, dtype=np.float32) -> np.ndarray:
    """A per-thread buffer of ``shape``, reused across calls (contents undefined)."""
    size = math.prod(shape)
    bufs = _SCRATCH.__dict__.setdefault("bufs", {})
    buf = bufs.get(name)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = bufs[name] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


def _gemm(chunks: list, cols: np.ndarray, groups: int) -> np.ndarray:
    """``cols [M, G*Kg] @ W`` per group by chunks of Kg: float32 exact per chunk, float64
    across chunks; returns ``[G, M, Co/G]``."""
    m = cols.shape[0]
    if groups == 1 and len(chunks) == 1:
        w = chunks[0][1][0]
        return np.matmul(cols, w, out=_scratch("acc", (m, w.shape[1])))[None]
    c3 = cols.reshape(m, groups, -1).transpose(1, 0, 2)
    total = None
    for sl, wc in chunks:
        part = np.matmul(c3[:, :, sl], wc)
        if len(chunks) > 1:
            part = part.astype(np.float64)
        total = part if total is None else total + part
    return total


def _geometry(fl: FastLayer, x: np.ndarray, chw) -> tuple:
    """``(Ho, Wo, pixels per image, im2col row length, contiguous runs?, chw)`` for an
    input of ``x``'s per-image shape (cached per layer and shape by :func:`run_fast`)."""
    if fl.conv is None:
        return 1, 1, 1, x.shape[1], False, chw
    kh, kw, sh, sw, t, left, b, r, dh, dw = fl.conv
    ho = (x.shape[1] + t + b - ((kh - 1) * dh + 1)) // sh + 1
    wo = (x.shape[2] + left + r - ((kw - 1) * dw + 1)) // sw + 1
    runs = dw == 1 and fl.groups == 1 and x.shape[3] >= SMALL_GROUP and x.flags.c_contiguous
    return ho, wo, ho * wo, kh * kw * x.shape[3], runs, None


def run_fast(step, fl: FastLayer, v) -> tuple[object, int]:
    """``(output value, number the overflow changed)`` of a Conv2D/Dense on the proven path
    (the int8 GEMM where :attr:`FastLayer.vnni` is set, else float32 chunks).

    ``v`` is an :class:`~fxp.sim.values.IntValue` (NCHW codes of any integer dtype)
    or a :class:`~fxp.sim.values.ChannelsLast`; a Conv2D returns a
    :class:`~fxp.sim.values.ChannelsLast`, a Dense an ``IntValue [N, Co]``; codes
    are narrow (:func:`storage_dtype`).
    """
    codes, chw = v.codes, getattr(v, "chw", None)
    n, c_out = codes.shape[0], fl.w_rows.shape[0]
    if fl.conv is not None:
        x = codes if chw is not None else codes.transpose(0, 2, 3, 1)
    else:
        x = codes.reshape(n, -1)
    key = (x.shape[1:], chw, x.flags.c_contiguous)
    geo = fl.geometry.get(key)
    if geo is None:
        geo = fl.geometry[key] = _geometry(fl, x, chw)
    ho, wo, p, k, runs, _ = geo
    y = np.empty((n * p, c_out), fl.out_dtype)
    n_over, rq = 0, fl.requant_args
    if fl.vnni is not None:
        return _value(step, fl, y, n, geo), run_vnni(fl, fl.vnni, x, geo, y)
    chunks = fl.chunks_for(chw if fl.conv is None else None)
    per = max(1, BLOCK_BYTES // max(1, 4 * p * k))
    for s in range(0, n, per):
        e = min(n, s + per)
        cols = _scratch("cols", ((e - s) * p, k))
        if runs:
            xb = x[s:e]
            kh, kw, sh, sw, t, left, _, _, dh, _ = fl.conv
            im2col_runs(cols.size, xb.reshape(-1, xb.shape[2] * xb.shape[3]), xb.shape[1],
                        xb.shape[3], cols, _ZERO, kh, kw, sh, sw, t, left, dh, ho, wo)
        elif fl.conv is not None:
            kh, kw, sh, sw, t, left, _, _, dh, dw = fl.conv
            im2col_rows(cols.size, x[s:e], cols, _ZERO, kh, kw, sh, sw, t, left, dh, dw, ho, wo,
                        fl.groups)
        else:
            np.copyto(cols, x[s:e], casting="unsafe")
        acc = _gemm(chunks, cols, fl.groups)
        n_over += requant_rows(acc.size, acc, fl.bias_tile, y[s * p:e * p], *rq)
    return _value(step, fl, y, n, geo), n_over


def _value(step, fl: FastLayer, y: np.ndarray, n: int, geo: tuple):
    """The layer's output rows ``y [N*pixels, Co]`` as the value :func:`run_fast` returns."""
    if fl.conv is None:
        return IntValue(y, step.out_spec)
    ho, wo, c_out = geo[0], geo[1], y.shape[1]
    return ChannelsLast(y.reshape(n, ho, wo, c_out), step.out_spec, (c_out, ho, wo))


def cast_plan(src, dst, rounding) -> tuple | None:
    """The arguments of :func:`fast_cast` from ``src`` to ``dst`` codes (power-of-two formats,
    saturating, as the executor casts a layer's input), or None for stochastic rounding or a
    left shift that could leave ``2**62``."""
    from fxp.core.modes import RoundingMode

    mode = RoundingMode.from_string(rounding)
    shift = src.frac_bits - dst.frac_bits
    top = max(-src.min_code, src.max_code)
    if mode is RoundingMode.STOCHASTIC or (shift < 0 and top << -shift >= 1 << 62):
        return None
    lo, hi = intmath._range_for(dst, "saturate")
    offs = rounding_offsets(shift, mode.code) if shift > 0 else (0, 0, 0)
    return (np.zeros(1, np.int64), shift, *offs, I64_MIN, I64_MAX, lo, hi, dst.bits,
            OverflowMode.SATURATE.code, storage_dtype(dst))


def fast_cast(codes: np.ndarray, plan: tuple) -> tuple[np.ndarray, int]:
    """``(codes cast, number saturated)``: :func:`fxp.ops.fixed.cast` (saturate) of in-format
    codes in one fused pass (:func:`fxp.kernels.fast_layers.requant_rows` with a zero bias),
    narrow codes out, same shape."""
    zero, *args, dtype = plan
    out = np.empty(codes.shape, dtype)
    x = np.ascontiguousarray(codes).reshape(1, -1, 1)
    n = requant_rows(x.size, x, zero, out.reshape(-1, 1), *args)
    return out, int(n)


def storage_dtype(fmt) -> np.dtype:
    """The narrowest integer dtype holding every code of ``fmt`` (int8, uint8, .. int64).

    The fast path stores codes narrow between layers (less memory traffic);
    :func:`fxp.sim.integer.run_integer` widens them to int64 wherever they
    leave the fast path.
    """
    for dt in (np.int8, np.uint8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dt)
        if info.min <= fmt.min_code and fmt.max_code <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def cached_fast_layer(step) -> FastLayer | None:
    """:func:`fast_layer` of ``step``, computed once and kept on the step."""
    if "_fast" not in step.__dict__:
        step.__dict__["_fast"] = fast_layer(step)
    return step.__dict__["_fast"]


def uses_blas(model) -> bool:
    """Whether ``method="auto"`` may call BLAS: some weighted step is off the int8 GEMM
    (:mod:`fxp.sim.fast_vnni`); computed once per model."""
    known = model.__dict__.get("_uses_blas")
    if known is None:
        known = model.__dict__["_uses_blas"] = any(
            fl is None or fl.vnni is None for s in model.steps if s.w_codes is not None
            for fl in [cached_fast_layer(s)])
    return known
