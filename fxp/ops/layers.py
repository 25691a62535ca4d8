"""Integer layer operations on codes: the public, validated entry points.

Each function checks shapes, modes and int64 headroom, derives the kernel
parameters once, then runs the Numba kernel (``backend="numba"``) or the
numpy specification :mod:`fxp.kernels.spec_layers` (``backend="numpy"``);
both give the same integers.  The semantics (loop order, padding value,
overflow events, rounding divide) are written in those modules' docstrings.

Accumulating layers (:func:`conv2d_int`, :func:`dense_int`) take
``method``: ``"loop"`` is the exact ordered accumulation; ``"blas"`` is a
float64 im2col matmul, allowed only when :func:`accumulator_bound` proves
every partial sum is below 2**53 and inside the accumulator (then it gives
the same integers, and no overflow can happen); ``"auto"`` takes the
proven path when the proof holds and the loop otherwise.

>>> import numpy as np
>>> x = np.full((1, 1, 2, 2), -128)               # int8 codes, zero point -128: real 0
>>> w = np.ones((1, 1, 3, 3), np.int64)
>>> acc, stats = conv2d_int(x, w, x_zero_point=-128, pads=(1, 1, 1, 1))
>>> acc.tolist(), stats.n_overflow               # padding reads the zero point too
([[[[0, 0], [0, 0]]]], 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import FormatError, HeadroomError
from fxp.kernels import spec_layers as spec
from fxp.ops._checks import (
    I64_MAX, I64_MIN, _backend, _codes, _int64, _ints, _max_abs_diff, _seed, _span, _window,
)
from fxp.ops.pooling import avgpool2d_int, global_avgpool_int, maxpool2d_int
from fxp.ops.requant_channel import (
    requantize_float32_per_channel, requantize_multiplier_per_channel,
    requantize_pow2_per_channel,
)

__all__ = [
    "AccStats", "accumulator_bound", "add_int", "add_int_affine", "avgpool2d_int", "clip_int",
    "conv2d_int", "dense_int", "flatten_int", "global_avgpool_int", "maxpool2d_int", "relu_int",
    "requantize_float32_per_channel", "requantize_multiplier_per_channel",
    "requantize_pow2_per_channel", "required_acc_bits",
]

FLOAT64_EXACT = 1 << 53


@dataclass(frozen=True)
class AccStats:
    """What happened in an accumulator.

    Attributes
    ----------
    n_overflow : int
        Additions (products and the bias) whose exact result left the range.
    overflow_per_channel : int64 array [Co]
        The same, per output channel.
    max_abs_partial : int or None
        Largest ``|acc + term|`` over all additions, before overflow handling;
        None when the float64 path ran (it sees no partial sums; its proof
        bounds them by :func:`accumulator_bound`).
    max_abs_partial_per_channel : uint64 array [Co] or None
        The same, per output channel.
    method : str
        ``"loop"`` or ``"blas"``: the path that ran (``"shift"``: the shift-add
        loop of :mod:`fxp.ops.shift`).
    """

    n_overflow: int
    overflow_per_channel: np.ndarray
    max_abs_partial: int | None
    max_abs_partial_per_channel: np.ndarray | None
    method: str


# --------------------------------------------------------------------------- validation helpers
def _range_of(x: np.ndarray, x_range, what: str = "x") -> tuple[int, int]:
    """(lo, hi) the codes of ``x`` are known to lie in: a QFormat, a pair, or observed."""
    lo, hi = _span(x)
    if x_range is None:
        return lo, hi
    if isinstance(x_range, QFormat):
        r_lo, r_hi = x_range.min_code, x_range.max_code
    else:
        r_lo, r_hi = _ints(x_range, 2, "x_range", I64_MIN)
    if x.size and (lo < r_lo or hi > r_hi):
        raise FormatError(f"{what} holds codes in [{lo}, {hi}], outside x_range [{r_lo}, {r_hi}]")
    return r_lo, r_hi


def _zero_points(zp, c: int, what: str) -> np.ndarray:
    z = np.asarray(zp)
    if z.dtype.kind not in "iu" or z.ndim > 1 or (z.ndim == 1 and z.shape != (c,)):
        raise FormatError(f"{what} must be an integer or {c} integers (one per channel), "
                          f"got {zp!r}")
    return np.ascontiguousarray(np.broadcast_to(z.astype(np.int64), (c,)))


def _bias(bias, c: int) -> np.ndarray:
    if bias is None:
        return np.zeros(c, np.int64)
    b = _codes(bias, "bias", 1)
    if b.shape != (c,):
        raise FormatError(f"bias must have shape ({c},) (one per output channel), got {b.shape}")
    return b


def _acc_format(acc_bits: int, acc_signed: bool) -> QFormat:
    return QFormat.integer(acc_bits, bool(acc_signed))


# --------------------------------------------------------------------------- accumulator proofs
def accumulator_bound(w, w_zero_point, x_range, x_zero_point: int = 0, bias=None) -> list[int]:
    """Per output channel ``B = max|x - zx| * sum|w - zw| + |bias|`` (Python ints).

    ``w`` is ``[Co, ...]`` codes; ``x_range`` a :class:`QFormat` or ``(lo, hi)``
    codes.  Every partial sum of the layer, in any order, satisfies
    ``|acc| <= B``.

    >>> accumulator_bound([[1, -2, 3]], 0, QFormat.integer(8), 0, [5])
    [773]
    """
    w = _codes(w, "w")
    lo, hi = (x_range.min_code, x_range.max_code) if isinstance(x_range, QFormat) \
        else _ints(x_range, 2, "x_range", I64_MIN)
    zw = _zero_points(w_zero_point, w.shape[0], "w_zero_point")
    b = None if bias is None else _bias(bias, w.shape[0])
    return spec.accumulator_bound(w, zw, lo, hi, _int64(x_zero_point, "x_zero_point"), b)


def required_acc_bits(w, w_zero_point, x_range, x_zero_point: int = 0, bias=None) -> int:
    """Smallest signed accumulator width (bits) that provably never overflows.

    >>> required_acc_bits([[1, -2, 3]], 0, QFormat.integer(8), 0, [5])  # 773 < 2**10
    11
    """
    return max(accumulator_bound(w, w_zero_point, x_range, x_zero_point, bias)).bit_length() + 1


ACC_ORDERS = ("fxp", "hls4ml")
"""Accumulation orders of :func:`conv2d_int` / :func:`dense_int` (kernel codes 0, 1)."""


def _order(acc_order: str) -> int:
    if acc_order not in ACC_ORDERS:
        raise FormatError(f"acc_order must be one of {ACC_ORDERS}, got {str(acc_order)[:40]!r}")
    return ACC_ORDERS.index(acc_order)


def _choose(method: str, bound_fn, acc: QFormat, mode: OverflowMode) -> str:
    if method not in ("auto", "loop", "blas"):
        raise FormatError(f"method must be 'auto', 'loop' or 'blas', got {method!r}")
    if method == "loop":
        return "loop"
    bound = bound_fn()
    lo, hi = intmath._range_for(acc, mode)
    top = max(bound, default=0)
    if top < FLOAT64_EXACT and top <= hi and -top >= lo:
        return "blas"
    if method == "blas":
        c = bound.index(top)
        raise HeadroomError(
            f"method='blas' is not proven exact: output channel {c} can reach |acc| = {top}, "
            f"beyond {'2**53' if top >= FLOAT64_EXACT else f'the accumulator [{lo}, {hi}]'}; "
            "use method='loop' or 'auto'")
    return "loop"


LOOP_VECTORIZED = True
"""Run the ordered loop in :mod:`fxp.kernels.conv2d_rows` where :func:`_loop_lane` proves it
exact (False: always the scalar loop; for benchmarks and differential tests)."""


def _loop_lane(args, top: int, bias, pshift: int):
    """``(lane type, overflow code)`` in which the vectorized ordered loop is exact, or None.

    int32 or int64 lanes when ``3*A + T + max|bias| + 2**pshift`` fits them
    (``A`` the accumulator's reach, ``T`` the largest product after a left
    shift); else int32 lanes with the ``WRAP32`` code for a wrapping
    accumulator inside int32 whose products and bias fit int32.  See
    :mod:`fxp.kernels.conv2d_rows`.
    """
    if not LOOP_VECTORIZED:
        return None
    from fxp.kernels.conv2d_rows import WRAP32

    lo, hi, _, _, omode = args
    t = top << -pshift if pshift < 0 else top
    r = 1 << pshift if pshift > 0 else 0
    b = max(-int(bias.min(initial=0)), int(bias.max(initial=0)))
    i32 = np.iinfo(np.int32)
    if 3 * max(-lo, hi) + t + b + r <= i32.max:
        return np.int32, omode
    if omode == OverflowMode.WRAP.code and i32.min <= lo and hi <= i32.max \
            and max(t + r, b) <= i32.max:
        return np.int32, WRAP32
    if 3 * max(-lo, hi) + t + b + r <= I64_MAX:
        return np.int64, omode
    return None


def _stats(events, peaks, method: str) -> AccStats:
    per_channel = events.sum(axis=0) if events.ndim == 2 else events
    peak_c = None if peaks is None else (peaks.max(axis=0) if peaks.ndim == 2 else peaks)
    return AccStats(int(per_channel.sum()), per_channel.astype(np.int64),
                    None if peak_c is None else int(peak_c.max(initial=0)), peak_c, method)


def _product_scaling(product_shift, product_rounding, method: str, bound: int) -> tuple[int, int]:
    """(shift, rounding code) of the products into the accumulator's LSB, validated."""
    if isinstance(product_shift, bool) or not isinstance(product_shift, (int, np.integer)) \
            or not -62 <= int(product_shift) <= 62:
        raise FormatError(f"product_shift must be an integer in [-62, 62], got "
                          f"{str(product_shift)[:40]!r}")
    shift = int(product_shift)
    mode = RoundingMode.from_string(product_rounding)
    if mode is RoundingMode.STOCHASTIC:
        raise FormatError("product_rounding 'stochastic' is not supported (the products of a "
                          "layer have no element index to seed)")
    if shift and method == "blas":
        raise FormatError(f"method='blas' computes exact products; product_shift={shift} "
                          "needs method='loop' or 'auto'")
    if shift < 0 and bound << -shift > I64_MAX:
        raise HeadroomError(f"a product shifted left by {-shift} can reach {bound << -shift}, "
                            "beyond int64")
    return shift, mode.code


def _prepare(x, w, bias, x_zero_point, w_zero_point, x_range, acc_bits, acc_signed,
             acc_overflow):
    zx = _int64(x_zero_point, "x_zero_point")
    zw = _zero_points(w_zero_point, w.shape[0], "w_zero_point")
    b = _bias(bias, w.shape[0])
    x_lo, x_hi = _range_of(x, x_range)
    mx = _max_abs_diff(x_lo, x_hi, zx, zx, "x")
    mw = _max_abs_diff(*_span(w), *_span(zw), "w")
    if mx * mw > I64_MAX:
        raise HeadroomError(f"a product (x - zx) * (w - zw) can reach {mx} * {mw} = {mx * mw}, "
                            "beyond int64: narrow the operands")
    acc = _acc_format(acc_bits, acc_signed)
    mode = OverflowMode.from_string(acc_overflow)
    lo, hi = intmath._range_for(acc, mode)
    return zx, zw, b, acc, mode, (lo, hi, acc.bits, acc.signed, mode.code), \
        (lambda: spec.accumulator_bound(w, zw, x_lo, x_hi, zx, b)), mx * mw


# --------------------------------------------------------------------------- conv / dense
def conv2d_int(x, w, bias=None, *, x_zero_point: int = 0, w_zero_point=0, strides=(1, 1),
               pads=(0, 0, 0, 0), dilations=(1, 1), groups: int = 1, acc_bits: int = 32,
               acc_signed: bool = True, acc_overflow="wrap", x_range=None,
               method: str = "auto", backend: str = "numba", acc_order: str = "fxp",
               product_shift: int = 0, product_rounding="floor"
               ) -> tuple[np.ndarray, AccStats]:
    """Integer 2-D convolution (NCHW codes, weights ``[Co, C/groups, kh, kw]``).

    Parameters
    ----------
    x, w, bias : int64 codes; ``bias`` ``[Co]`` or None (zeros).
    x_zero_point : the input code of real 0, also the padding code.
    w_zero_point : int or ``[Co]`` ints (per output channel).
    strides, dilations : ``(along H, along W)``; ``pads``: ``(top, left, bottom, right)``.
    acc_bits, acc_signed, acc_overflow : the accumulator (overflow applied after every addition).
    x_range : QFormat or ``(lo, hi)`` of the input codes for the float-path proof
        (default: the observed range of ``x``).
    method : ``"auto"`` | ``"loop"`` | ``"blas"`` (see the module docstring).
    acc_order : ``"fxp"`` (channels outermost, bias last) or ``"hls4ml"`` (bias
        first, channels innermost, each product cast to the accumulator); see
        :mod:`fxp.kernels.spec_layers`.  Only saturating accumulators can tell
        them apart; the proven float path is exact for both.
    product_shift, product_rounding : products finer than the accumulator's
        LSB (``F_x + F_w - F_acc = product_shift > 0`` bits, an hls4ml
        ``accum_t`` with fewer fraction bits) are each rounded to it with
        ``product_rounding`` before they are added (the ``bias`` codes are in
        the accumulator's LSB already); a negative shift is exact.  Runs the
        loop path.

    Returns
    -------
    (acc int64 [N, Co, Ho, Wo], AccStats)

    Raises
    ------
    FormatError for bad shapes, modes or codes outside ``x_range``; HeadroomError
    when a product could leave int64 or ``method="blas"`` is not proven.
    """
    x, w = _codes(x, "x", 4), _codes(w, "w", 4)
    g = int(groups)
    if g < 1 or w.shape[0] % g or x.shape[1] != w.shape[1] * g:
        raise FormatError(f"groups={groups}: need Co={w.shape[0]} divisible by groups and "
                          f"C={x.shape[1]} == groups * w.shape[1] = {g * w.shape[1]}")
    order = _order(acc_order)
    k, s, p, d, ho, wo = _window(x, w.shape[2:], strides, pads, dilations, "conv2d_int")
    zx, zw, b, acc, mode, args, bound, top = _prepare(x, w, bias, x_zero_point, w_zero_point,
                                                      x_range, acc_bits, acc_signed, acc_overflow)
    pshift, prmode = _product_scaling(product_shift, product_rounding, method, top)
    _backend(backend)
    if not pshift and _choose(method, bound, acc, mode) == "blas":
        out = spec.conv2d_float64(x, w, b, zx, zw, s, p, d, g)
        return out, _stats(np.zeros(w.shape[0], np.int64), None, "blas")
    if backend == "numpy":
        out, events, peaks = spec.conv2d(x, w, b, zx, zw, s, p, d, g, acc, mode, acc_order,
                                         pshift, RoundingMode.from_string(product_rounding))
        return out, _stats(events, peaks, "loop")
    lane = _loop_lane(args, top, b, pshift)
    if lane is not None:
        from fxp.kernels.conv2d_rows import conv2d_rows

        out, events, peaks = conv2d_rows(x, w, b, zx, zw, s, p, d, g, ho, wo,
                                         (*args[:4], lane[1]), order, pshift, prmode, lane[0])
        return out, _stats(events, peaks, "loop")
    from fxp.kernels.conv2d import conv2d_acc

    work = x.shape[0] * w.shape[0] * ho * wo * w[0].size
    out, events, peaks = conv2d_acc(work, x, w, b, zx, zw, s[0], s[1], p[0], p[1], d[0], d[1],
                                    g, ho, wo, *args, order, pshift, prmode)
    return out, _stats(events, peaks, "loop")


def dense_int(x, w, bias=None, *, x_zero_point: int = 0, w_zero_point=0, acc_bits: int = 32,
              acc_signed: bool = True, acc_overflow="wrap", x_range=None, method: str = "auto",
              backend: str = "numba", acc_order: str = "fxp", product_shift: int = 0,
              product_rounding="floor") -> tuple[np.ndarray, AccStats]:
    """Integer dense layer ``[N, In] x [Out, In] -> (acc [N, Out], AccStats)``.

    Same parameters and accumulation contract as :func:`conv2d_int`
    (order ``i = 0 .. In-1``, then the bias; ``acc_order="hls4ml"``: the cast
    bias first, then the cast products).
    """
    order = _order(acc_order)
    x, w = _codes(x, "x", 2), _codes(w, "w", 2)
    if x.shape[1] != w.shape[1]:
        raise FormatError(f"x has {x.shape[1]} features but w expects {w.shape[1]} ([Out, In])")
    zx, zw, b, acc, mode, args, bound, top = _prepare(x, w, bias, x_zero_point, w_zero_point,
                                                      x_range, acc_bits, acc_signed, acc_overflow)
    pshift, prmode = _product_scaling(product_shift, product_rounding, method, top)
    _backend(backend)
    if not pshift and _choose(method, bound, acc, mode) == "blas":
        return spec.dense_float64(x, w, b, zx, zw), _stats(np.zeros(w.shape[0], np.int64),
                                                           None, "blas")
    if backend == "numpy":
        out, events, peaks = spec.dense(x, w, b, zx, zw, acc, mode, acc_order, pshift,
                                        RoundingMode.from_string(product_rounding))
        return out, _stats(events, peaks, "loop")
    lane = _loop_lane(args, top, b, pshift)
    if lane is not None:
        from fxp.kernels.conv2d_rows import dense_rows

        out, events, peaks = dense_rows(x, w, b, zx, zw, (*args[:4], lane[1]), order, pshift,
                                        prmode, lane[0])
        return out, _stats(events, peaks, "loop")
    from fxp.kernels.dense import dense_acc

    out, events, peaks = dense_acc(x.size * w.shape[0], x, w, b, zx, zw, *args, order, pshift,
                                   prmode)
    return out, _stats(events, peaks, "loop")


# --------------------------------------------------------------------------- activations
def clip_int(x, lo: int, hi: int, *, backend: str = "numba") -> np.ndarray:
    """``min(max(x, lo), hi)`` on codes; ReLU6 passes the codes of 0 and 6."""
    x = _codes(x, "x")
    lo, hi = _int64(lo, "lo"), _int64(hi, "hi")
    if lo > hi:
        raise FormatError(f"clip_int needs lo <= hi, got lo={lo}, hi={hi}")
    if _backend(backend) == "numpy":
        return spec.clip(x, lo, hi)
    from fxp.kernels.requant_channel import clip_codes

    return clip_codes(x.size, x.ravel(), lo, hi).reshape(x.shape)


def relu_int(x, zero_point: int = 0, *, backend: str = "numba") -> np.ndarray:
    """``max(x, zero_point)``: ReLU on codes whose real 0 is ``zero_point``."""
    return clip_int(x, zero_point, I64_MAX, backend=backend)


def flatten_int(x) -> np.ndarray:
    """``[N, ...] -> [N, prod(...)]`` (a reshape, C order)."""
    x = _codes(x, "x")
    return x.reshape(x.shape[0], -1)


# --------------------------------------------------------------------------- residual add
def add_int(a, a_fmt: QFormat, b, b_fmt: QFormat, out: QFormat, rounding="half_even",
            overflow="saturate", *, seed: int | None = None, index_offset: int = 0,
            backend: str = "numba") -> tuple[np.ndarray, int]:
    """Residual add of power-of-two formats: align to the finer LSB, add, cast to ``out``.

    Returns ``(codes, n_overflow)``; equals ``cast(a*2**ka + b*2**kb, fixed<64, F>, out)``.
    """
    rmode, omode = RoundingMode.from_string(rounding), OverflowMode.from_string(overflow)
    a, b = _codes(a, "a"), _codes(b, "b")
    if a.shape != b.shape:
        raise FormatError(f"add_int operands differ in shape: {a.shape} vs {b.shape}")
    intmath._check_in_format(a, a_fmt)
    intmath._check_in_format(b, b_fmt)
    f = max(a_fmt.frac_bits, b_fmt.frac_bits)
    ka, kb = f - a_fmt.frac_bits, f - b_fmt.frac_bits
    top = (max(-a_fmt.min_code, a_fmt.max_code) * 2**ka
           + max(-b_fmt.min_code, b_fmt.max_code) * 2**kb)
    if top > I64_MAX:
        raise HeadroomError(f"aligning {a_fmt} and {b_fmt} to frac {f} needs |sum| up to {top}, "
                            "beyond int64")
    intmath._stochastic_bits(rmode, seed, (0,), 0)
    if _backend(backend) == "numpy":
        return spec.add_pow2(a, a_fmt.frac_bits, b, b_fmt.frac_bits, out, rmode, omode, seed,
                             index_offset)
    from fxp.kernels.requant_channel import add_pow2_codes

    lo, hi = intmath._range_for(out, omode)
    codes, n = add_pow2_codes(a.size, a.ravel(), b.ravel(), ka, kb, f - out.frac_bits, rmode.code,
                              omode.code, lo, hi, out.bits, out.signed, _seed(seed),
                              int(index_offset))
    return codes.reshape(a.shape), int(n)


def add_int_affine(a, b, *, a_zero_point: int, a_multiplier: int, a_exponent: int,
                   b_zero_point: int, b_multiplier: int, b_exponent: int, out_multiplier: int,
                   out_exponent: int, out_zero_point: int, out: QFormat, left_shift: int = 20,
                   scheme: str = "double", overflow="saturate",
                   backend: str = "numba") -> tuple[np.ndarray, int]:
    """TFLite int8 ``Add``: ``sat(MBQM(MBQM(a') + MBQM(b')) + zp_out)``, ``a' = (a - zp) << ls``.

    See :func:`fxp.kernels.spec_layers.add_affine`.  Returns ``(codes, n_overflow)``.
    """
    omode = OverflowMode.from_string(overflow)
    if scheme not in ("double", "single"):
        raise FormatError(f"unknown multiplier scheme {scheme!r}; use 'double' or 'single'")
    hi_exp = 30 if scheme == "single" else 31
    for m, e in ((a_multiplier, a_exponent), (b_multiplier, b_exponent),
                 (out_multiplier, out_exponent)):
        intmath._check_multiplier(m, e, -31, hi_exp)
    a, b = _codes(a, "a"), _codes(b, "b")
    if a.shape != b.shape:
        raise FormatError(f"add_int_affine operands differ in shape: {a.shape} vs {b.shape}")
    ls = int(left_shift)
    if not 0 <= ls <= 31:
        raise FormatError(f"left_shift={left_shift} must lie in 0..31")
    for v, zp, name in ((a, a_zero_point, "a"), (b, b_zero_point, "b")):
        m = _max_abs_diff(*_span(v), int(zp), int(zp), name) << ls
        if m > intmath.INT32_MAX:
            raise HeadroomError(f"({name} - zero_point) << {ls} reaches {m}, beyond int32")
    if not out.contains_code(int(out_zero_point)):
        raise FormatError(f"out_zero_point={out_zero_point} is outside {out}")
    if _backend(backend) == "numpy":
        return spec.add_affine(a, b, int(a_zero_point), int(b_zero_point), a_multiplier,
                               a_exponent, b_multiplier, b_exponent, out_multiplier, out_exponent,
                               int(out_zero_point), ls, out, scheme, omode)
    from fxp.kernels.requant_channel import add_affine_codes

    lo, hi = intmath._range_for(out, omode)
    codes, n = add_affine_codes(a.size, a.ravel(), b.ravel(), int(a_zero_point), int(b_zero_point),
                                int(a_multiplier), int(a_exponent), int(b_multiplier),
                                int(b_exponent), int(out_multiplier), int(out_exponent),
                                int(out_zero_point), ls, scheme == "single", omode.code, lo, hi,
                                out.bits, out.signed)
    return codes.reshape(a.shape), int(n)
