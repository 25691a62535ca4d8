"""Integer steps of the non-weighted nodes: Add, Concat, pools, ReLU/Clip, Sigmoid, LeakyRelu.

(Mul is compiled by :mod:`fxp.sim.residual_mul`; Tanh, HardSwish, Pad, Requantize
and the TFLite Sigmoid by :mod:`fxp.sim.residual_tflite`.)

:func:`compile_step` turns one such node, its plan entry (or None) and its
input specs into a :class:`~fxp.sim.compile.LayerStep`; the executor runs
``step.op(codes_list) -> (codes, n_saturated)`` when ``step.op`` is set
(everything the runtime derives at Prepare time -- scale ratios, multipliers,
lookup tables -- is computed here, once).  The arithmetic is chosen by the
plan entry's ``requant`` when the inputs are affine (int8 / uint8 codes with a
float32 scale and a zero point):

* ``float32`` -- onnxruntime (MLAS, x86-64): Add :func:`~fxp.ops.qlinear.qlinear_add`,
  Concat :func:`~fxp.ops.qlinear.qlinear_concat`, AvgPool2D
  :func:`~fxp.ops.qlinear_pool.qlinear_avgpool` (the node's ``count_include_pad``),
  GlobalAvgPool :func:`~fxp.ops.qlinear_pool.qlinear_global_avgpool`, Sigmoid /
  LeakyRelu a 256-entry :func:`~fxp.ops.qlinear.qlinear_table`; ReLU / Clip
  into another spec are onnxruntime's float island
  ``QuantizeLinear(op(DequantizeLinear(x)))`` (float32 both ways), into the
  same spec a clamp of the codes whose bounds are the float32-quantized
  bounds (the same integers: QuantizeLinear is monotone and inverts
  DequantizeLinear on codes).
* ``double`` / ``single`` -- TFLite reference kernels (gemmlowp double rounding
  or ``TFLITE_SINGLE_ROUNDING``): Add :func:`~fxp.ops.tflite.tflite_add` (int8 / int16),
  AvgPool2D :func:`~fxp.ops.tflite.tflite_avgpool` (input and output specs
  equal; ``count_include_pad`` with padding is what the converter emits, an
  explicit PAD with the zero point and a VALID pool), GlobalAvgPool
  :func:`~fxp.ops.tflite.tflite_mean_hw` (int8 / int16), ReLU / Clip ``ReluX``
  (``zp_out + MultiplyByQuantizedMultiplier(x - zp_in, M, shift)`` with
  ``(M, shift) = QuantizeMultiplier(s_in / s_out)``, clamped to
  ``zp_out + TfLiteRound(bound / s_out)``; the identity for equal specs),
  Concat ``ConcatenationWithScaling`` with fixed-point scaling
  (``reference/concatenation.h``): an input with the output's scale and
  zero point is copied, any other becomes
  ``zp_out + MultiplyByQuantizedMultiplier(x - zp_i, M_i, shift_i)``
  clamped to the format.  Sigmoid is TFLite Micro's LOGISTIC
  (:func:`fxp.sim.residual_tflite.tflite_act_op`); LeakyRelu is refused.
* ``float64`` / ``ruy`` / ``xnnpack`` -- LiteRT's reference or optimized
  kernels and XNNPACK (:mod:`fxp.sim.residual_runtime`): TFLite's steps where
  those runtimes compute TFLite Micro's integers, their own ADD / MEAN where not.
* ``pow2`` (power-of-two inputs) -- fxp's own datapath, unchanged: pools
  ``round(sum(x) / count)`` with the layer's rounding (zero point 0), ReLU /
  Clip a clamp, Add / Concat aligned to the finest LSB (:func:`join_spec` or
  the plan's output), and Sigmoid / LeakyRelu into the plan's power-of-two
  output: LeakyRelu exactly (``x * alpha`` with ``alpha`` the float32 value,
  rounded once), Sigmoid evaluated in float64 on the exact input value and
  rounded once with the layer's rounding.

Without a plan entry: pools, ReLU and Clip on power-of-two inputs pass the
input spec through, Add / Concat take :func:`join_spec`; on affine inputs ReLU
/ Clip clamp, and Add, Concat, pools, Sigmoid and LeakyRelu are a
:class:`~fxp.errors.PlanError` naming the node (their arithmetic and output
coding must be stated).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.errors import FxpError, PlanError, UnsupportedOpError
from fxp.ir.nodes import Add, AvgPool2D, Clip, Concat, GlobalAvgPool, LeakyRelu, Mul, ReLU, Sigmoid
from fxp.plan.plan import LayerPlan, RequantScheme, TensorSpec
from fxp.sim.residual_tflite import EXTRA_NODES, compile_extra, tflite_act_op

__all__ = ["QUANT_NODES", "compile_step", "join_spec"]

QUANT_NODES = (Add, Mul, Concat, AvgPool2D, GlobalAvgPool, Sigmoid, LeakyRelu, ReLU, Clip,
               *EXTRA_NODES)
"""Non-weighted nodes that may carry their own output coding and arithmetic."""

Op = Callable[[list], tuple[np.ndarray, int]]


def join_spec(ins: tuple[TensorSpec, ...], node) -> TensorSpec:
    """Default output of a power-of-two Add/Concat: the finest LSB, one more integer bit for Add."""
    frac = max(s.fmt.frac_bits for s in ins)
    ib = max(s.fmt.int_bits for s in ins) + (1 if isinstance(node, Add) else 0)
    signed = any(s.fmt.signed for s in ins)
    return TensorSpec(QFormat(min(64 if signed else 63, frac + ib), ib, signed))


def _where(node) -> str:
    return f"layer {node.name!r} ({type(node).__name__})"


def _named(node, op: Op) -> Op:
    """``op`` whose runtime errors name the layer (one line, same exception class)."""
    def run(codes: list) -> tuple[np.ndarray, int]:
        try:
            return op(codes)
        except FxpError as e:
            raise type(e)(f"{_where(node)}: {e}") from None
    return run


def compile_step(node, lp: LayerPlan | None, ins: tuple[TensorSpec, ...]):
    """The :class:`~fxp.sim.compile.LayerStep` of one :data:`QUANT_NODES` node.

    Raises
    ------
    PlanError
        Inputs mixing power-of-two and affine coding, a ``requant`` that does
        not fit the inputs' coding, a missing output spec where one is needed,
        formats the runtime does not take, Prepare-time parameters out of the
        runtime's range.
    UnsupportedOpError
        LeakyRelu under a TFLite scheme.
    """
    from fxp.sim.compile import LayerStep, _act_bounds

    if isinstance(node, Mul):  # its own module: fxp.sim.residual_mul
        from fxp.sim.residual_mul import compile_mul
        return compile_mul(node, lp, ins)
    if isinstance(node, EXTRA_NODES):  # Tanh, HardSwish, Pad, Requantize: residual_tflite
        return compile_extra(node, lp, ins)
    affine = [not s.is_pow2 for s in ins]
    if any(affine) and not all(affine):
        raise PlanError(f"{_where(node)} mixes power-of-two and affine inputs "
                        f"{[str(s.fmt) for s in ins]}")
    out = lp.output if lp is not None else None
    if not any(affine):
        if lp is not None and out is not None and lp.requant is not RequantScheme.POW2:
            raise PlanError(f"{_where(node)}: requant {lp.requant.value!r} needs affine inputs; "
                            f"its inputs are power-of-two {[str(s.fmt) for s in ins]}")
        return _pow2_step(node, lp, ins, LayerStep, _act_bounds)
    src = ins[0]
    if lp is None:
        if isinstance(node, (ReLU, Clip)):
            return LayerStep(node, lp, ins, src, act_bounds=_act_bounds(node, src))
        raise PlanError(f"{_where(node)} on affine inputs has no plan entry: give it an output "
                        "spec and requant 'float32' (onnxruntime) or 'double' / 'single' "
                        "(TFLite)")
    if lp.requant is RequantScheme.POW2:
        raise PlanError(f"{_where(node)}: requant 'pow2' needs power-of-two inputs; affine "
                        "inputs take requant 'float32' (onnxruntime) or 'double' / 'single' "
                        "(TFLite)")
    if out is None:
        if isinstance(node, (Add, Concat, Sigmoid, LeakyRelu)):
            raise PlanError(f"{_where(node)} on affine inputs: give it an output spec")
        out = src
    if out.is_pow2 or (out.scales is not None and len(out.scales) > 1):
        raise PlanError(f"{_where(node)}: an affine input needs an affine per-tensor output, "
                        f"got {out.fmt} with scales {out.scales!r:.80}")
    try:
        if lp.requant is RequantScheme.FLOAT32:
            op = _ort_op(node, ins, out)
        elif lp.requant.value in ("float64", "ruy", "xnnpack"):  # LiteRT, XNNPACK
            from fxp.sim.residual_runtime import runtime_op
            op = runtime_op(node, ins, out, lp.requant, _tflite_op)
        else:
            op = _tflite_op(node, ins, out, lp.requant.value)
    except (PlanError, UnsupportedOpError):
        raise
    except FxpError as e:
        raise PlanError(f"{_where(node)}: {e}") from None
    return LayerStep(node, lp, ins, out, op=_named(node, op))


# --------------------------------------------------------------------------- helpers
def _s(spec: TensorSpec) -> np.float32:
    return np.float32(spec.scales[0])


def _same_8bit(node, ins, out) -> QFormat:
    fmt = out.fmt
    if fmt.bits != 8 or fmt.frac_bits or any(s.fmt != fmt for s in ins):
        raise PlanError(f"{_where(node)}: the runtime kernel takes one 8-bit integer type for "
                        f"inputs and output, got inputs {[str(s.fmt) for s in ins]} and output "
                        f"{fmt}")
    return fmt


def _bounds(node) -> tuple[float, float]:
    if isinstance(node, ReLU):
        return 0.0, float("inf")
    return node.min_value, node.max_value


# --------------------------------------------------------------------------- onnxruntime
def _ort_op(node, ins, out) -> Op:
    from fxp.ops import qlinear as Q
    from fxp.ops import qlinear_pool as QP
    from fxp.sim.values import quantize_linear_f32

    x = ins[0]
    if isinstance(node, (ReLU, Clip)):
        lo, hi = _bounds(node)
        if out == x:  # clamp on codes: QuantizeLinear of the float32 bounds
            b = [quantize_linear_f32([v], _s(out), out.zero_point, out.fmt)[0][0]
                 if np.isfinite(v) else None for v in (lo, hi)]
            clo = out.fmt.min_code if b[0] is None else int(b[0])
            chi = out.fmt.max_code if b[1] is None else int(b[1])
            return lambda c: (np.clip(c[0], clo, chi), 0)
        sx, zx = _s(x), x.zero_point

        def island(c):
            v = ((c[0] - zx).astype(np.float64) * float(sx)).astype(np.float32)  # ORT DQ
            v = np.clip(v, np.float32(lo), np.float32(hi))
            return quantize_linear_f32(v, _s(out), out.zero_point, out.fmt)
        return island
    fmt = _same_8bit(node, ins, out)
    y = dict(y_scale=_s(out), y_zero_point=out.zero_point, fmt=fmt)
    if isinstance(node, Add):
        a, b = ins
        return lambda c: Q.qlinear_add(c[0], c[1], a_scale=_s(a), a_zero_point=a.zero_point,
                                       b_scale=_s(b), b_zero_point=b.zero_point, **y)
    if isinstance(node, Concat):
        return lambda c: Q.qlinear_concat(c, scales=[_s(s) for s in ins],
                                          zero_points=[s.zero_point for s in ins],
                                          axis=node.axis, **y)
    xq = dict(x_scale=_s(x), x_zero_point=x.zero_point, **y)
    if isinstance(node, AvgPool2D):
        return lambda c: QP.qlinear_avgpool(c[0], node.kernel, strides=node.strides,
                                            pads=node.pads,
                                            count_include_pad=node.count_include_pad, **xq)
    if isinstance(node, GlobalAvgPool):
        return lambda c: QP.qlinear_global_avgpool(c[0], **xq)
    if isinstance(node, Sigmoid):
        table = Q.qlinear_table("sigmoid", **xq)
    else:
        table = Q.qlinear_table("leaky_relu", alpha=node.alpha, **xq)
    return lambda c: Q.qlinear_lookup(c[0], *table, fmt)


# --------------------------------------------------------------------------- TFLite
def _tflite_round_bound(v: float, spec: TensorSpec) -> int:
    """``zp + TfLiteRound(float32(v) / float32(scale))`` (half away from zero)."""
    q = float(np.float32(v) / _s(spec))
    return spec.zero_point + int(np.copysign(np.floor(abs(q) + 0.5), q))


def _requant_mbqm(codes, zp_in: int, m: int, e: int, zp_out: int, scheme: str):
    y, n = intmath.multiply_by_quantized_multiplier(codes - zp_in, m, e, scheme)
    return y + zp_out, n


def _multiplier(sx: np.float32, sy: np.float32, scheme: str) -> tuple[int, int]:
    m, e = intmath.quantize_multiplier(float(sx) / float(sy),
                                       single_rounding=scheme == "single")
    if not -31 <= e <= (30 if scheme == "single" else 31):
        raise PlanError(f"scale ratio {float(sx) / float(sy)!r} gives the multiplier shift {e}, "
                        "outside TFLite's range")
    return m, e


def _tflite_op(node, ins, out, scheme: str) -> Op:
    from fxp.ops import tflite as T

    x = ins[0]
    if isinstance(node, Sigmoid):  # TFLM LOGISTIC, int8 / int16
        return tflite_act_op(node, x, out, scheme)
    if isinstance(node, LeakyRelu):
        raise UnsupportedOpError(f"{_where(node)}: TFLite LeakyRelu is not implemented; use "
                                 "requant 'float32' or mark the layer float")
    if isinstance(node, (ReLU, Clip)):
        if out.fmt.frac_bits or x.fmt.frac_bits:
            raise PlanError(f"{_where(node)}: affine codes need integer formats")
        lo, hi = _bounds(node)
        clo = out.fmt.min_code if not np.isfinite(lo) else max(out.fmt.min_code,
                                                               _tflite_round_bound(lo, out))
        chi = out.fmt.max_code if not np.isfinite(hi) else min(out.fmt.max_code,
                                                               _tflite_round_bound(hi, out))
        if out == x:
            return lambda c: (np.clip(c[0], clo, chi), 0)
        m, e = _multiplier(_s(x), _s(out), scheme)

        def relu_x(c):
            y, n = _requant_mbqm(c[0], x.zero_point, m, e, out.zero_point, scheme)
            return np.clip(y, clo, chi), n
        return relu_x
    if isinstance(node, Concat):
        fmt = out.fmt
        if fmt.frac_bits or any(s.fmt != fmt for s in ins):
            raise PlanError(f"{_where(node)}: TFLite concatenation takes one integer type, got "
                            f"inputs {[str(s.fmt) for s in ins]} and output {fmt}")
        params = [None if (_s(s) == _s(out) and s.zero_point == out.zero_point)
                  else _multiplier(_s(s), _s(out), scheme) for s in ins]

        def concat(c):
            parts, n = [], 0
            for codes, s, p in zip(c, ins, params, strict=True):
                if p is None:
                    parts.append(codes)
                    continue
                y, k = _requant_mbqm(codes, s.zero_point, *p, out.zero_point, scheme)
                clipped = np.clip(y, fmt.min_code, fmt.max_code)
                parts.append(clipped)
                n += k + int(np.count_nonzero(clipped != y))
            return np.concatenate(parts, axis=node.axis), n
        return concat
    if isinstance(node, (Add, AvgPool2D, GlobalAvgPool)) and \
            out.fmt == QFormat.integer(16) and all(s.fmt == out.fmt for s in ins):
        fmt = out.fmt  # int16x8: TFLite's ADD, pool and MEAN kernels take int16 codes too
    else:
        fmt = _same_8bit(node, ins, out)
    if isinstance(node, Add):
        a, b = ins
        T.tflite_add_params(_s(a), _s(b), _s(out), scheme=scheme,  # Prepare: refuses early
                            bits=fmt.bits)
        return lambda c: T.tflite_add(c[0], c[1], a_scale=_s(a), a_zero_point=a.zero_point,
                                      b_scale=_s(b), b_zero_point=b.zero_point,
                                      y_scale=_s(out), y_zero_point=out.zero_point, fmt=fmt,
                                      scheme=scheme)
    if isinstance(node, GlobalAvgPool):
        if not fmt.signed:
            raise PlanError(f"{_where(node)}: TFLite's integer MEAN takes int8 / int16 codes, "
                            f"got {fmt}")
        return lambda c: T.tflite_mean_hw(c[0], x_scale=_s(x), x_zero_point=x.zero_point,
                                          y_scale=_s(out), y_zero_point=out.zero_point, fmt=fmt,
                                          scheme=scheme)
    if out != x:
        raise PlanError(f"{_where(node)}: TFLite AVERAGE_POOL_2D keeps its input's scale and "
                        f"zero point; the output spec must equal the input spec")
    if node.count_include_pad and any(node.pads):
        t, left, b, r = node.pads

        def padded(c):  # the converter's PAD (zero point: real 0) + VALID pool
            xp = np.pad(c[0], ((0, 0), (0, 0), (t, b), (left, r)), constant_values=x.zero_point)
            return T.tflite_avgpool(xp, node.kernel, strides=node.strides, fmt=fmt)
        return padded
    return lambda c: T.tflite_avgpool(c[0], node.kernel, strides=node.strides, pads=node.pads,
                                      fmt=fmt)


# --------------------------------------------------------------------------- power of two
def _pow2_step(node, lp, ins, LayerStep, act_bounds):
    from fxp.ops import layers as L
    from fxp.ops.fixed import cast

    src = ins[0]
    out = lp.output if lp is not None else None
    rounding = lp.rounding if lp is not None else "half_away"
    overflow = lp.output_overflow if lp is not None else "saturate"
    if isinstance(node, (ReLU, Clip, AvgPool2D, GlobalAvgPool)):
        if out is not None and out != src:
            raise PlanError(f"{_where(node)} keeps its input's coding ({src.fmt}); its plan "
                            f"entry's output {out.fmt} would be ignored (remove it)")
        if isinstance(node, (ReLU, Clip)):
            o = TensorSpec(src.fmt) if src.is_binary else src  # relu(+-1) is 0/+1
            return LayerStep(node, lp, ins, o, act_bounds=act_bounds(node, o))
        o = TensorSpec(src.fmt) if src.is_binary else src  # a mean of +-1
        if isinstance(node, AvgPool2D):
            op = lambda c: (L.avgpool2d_int(c[0], node.kernel, rounding, strides=node.strides,  # noqa: E731
                                            pads=node.pads,
                                            count_include_pad=node.count_include_pad), 0)
        else:
            op = lambda c: (L.global_avgpool_int(c[0], rounding), 0)  # noqa: E731
        return LayerStep(node, lp, (o,), o, op=_named(node, op),
                         op_channels_last=_avgpool_rows_op(node, o, rounding))
    if isinstance(node, (Add, Concat)):
        o = out if out is not None else join_spec(ins, node)
        if isinstance(node, Add):
            a, b = ins
            op = lambda c: L.add_int(c[0], a.fmt, c[1], b.fmt, o.fmt, rounding, overflow)  # noqa: E731
            rows = _add_rows_op(a, b, o, rounding, overflow)  # elementwise: any layout
            return LayerStep(node, lp, ins, o, op=_named(node, op),
                             op_channels_last=_named(node, rows or op))
        else:
            def op(c):
                parts, n = [], 0
                for codes, s in zip(c, ins, strict=True):
                    p, k = cast(codes, s.fmt, o.fmt, rounding, overflow)
                    parts.append(p)
                    n += k
                return np.concatenate(parts, axis=node.axis), n
        return LayerStep(node, lp, ins, o, op=_named(node, op))
    if out is None:  # Sigmoid, LeakyRelu
        raise PlanError(f"{_where(node)} has no integer output coding: give it a plan entry "
                        "with an output spec (or mark it float)")
    if src.fmt.bits > 32:
        raise PlanError(f"{_where(node)}: inputs wider than 32 bits are not supported, got "
                        f"{src.fmt}")
    if isinstance(node, Sigmoid):
        return LayerStep(node, lp, ins, out, op=_named(node, _pow2_sigmoid(src, out, lp)))
    return LayerStep(node, lp, ins, out, op=_named(node, _pow2_leaky(node, src, out, lp)))


def _pow2_sigmoid(src: TensorSpec, out: TensorSpec, lp: LayerPlan) -> Op:
    from fxp.ops.fixed import quantize

    def op(c):
        real = np.ldexp(c[0].astype(np.float64), -src.fmt.frac_bits)  # exact: |code| < 2**32
        with np.errstate(over="ignore"):
            y = 1.0 / (1.0 + np.exp(-real))
        return quantize(y, out.fmt, lp.rounding, lp.output_overflow)
    return op


def _pow2_leaky(node, src: TensorSpec, out: TensorSpec, lp: LayerPlan) -> Op:
    """``x >= 0``: ``x`` cast to ``out``; ``x < 0``: ``x * m * 2**e`` (``alpha`` = float32
    ``m * 2**e``, ``|m| < 2**24``) rounded once into ``out``; then the output overflow."""
    frac, exp = np.frexp(np.float32(node.alpha))
    m, e = int(np.ldexp(frac, 24)), int(exp) - 24
    shift = src.fmt.frac_bits - e - out.fmt.frac_bits  # right shift of code * m
    wide = QFormat.from_frac(64, out.fmt.frac_bits)
    if src.fmt.bits + 24 + max(-shift, 0) > 62:
        raise PlanError(f"{_where(node)}: x * alpha from {src.fmt} into {out.fmt} needs more "
                        "than 63 bits")

    def op(c):
        x = c[0]
        pos, _ = intmath.cast(x, src.fmt, wide, lp.rounding, "saturate")
        prod = x * m
        if shift >= 0:
            neg = intmath.shift_right_round(prod, shift, lp.rounding)
        else:
            neg = prod << -shift  # fits: checked at compile time
        return intmath.apply_overflow(np.where(x >= 0, pos, neg), out.fmt, lp.output_overflow)
    return op


def _avgpool_rows_op(node, spec: TensorSpec, rounding) -> Op | None:
    """The AvgPool2D / GlobalAvgPool op on channels-last codes ``[N, H, W, C]``
    (:func:`fxp.kernels.fast_layers.avgpool_rows`), or None for codes wider than 32 bits."""
    from fxp.core.modes import RoundingMode
    from fxp.kernels.fast_layers import avgpool_rows, pow2_count

    if spec.fmt.bits > 32:
        return None
    mode = RoundingMode.from_string(rounding).code
    zp = int(spec.zero_point)

    def op(c):
        x = c[0]
        if isinstance(node, AvgPool2D):
            (kh, kw), (sh, sw), (t, left, b, r) = node.kernel, node.strides, node.pads
            include = node.count_include_pad
        else:
            (kh, kw), (sh, sw), (t, left, b, r), include = x.shape[1:3], (1, 1), (0,) * 4, True
        n, h, w, depth = x.shape
        out = np.empty((n, (h + t + b - kh) // sh + 1, (w + left + r - kw) // sw + 1, depth),
                       x.dtype)  # a rounded mean lies between the codes (or is zp): it fits
        full = include or not (t or left or b or r)  # every window counts kh*kw codes
        avgpool_rows(out.size * kh * kw, x, out, zp, kh, kw, sh, sw, t, left, include, mode,
                     *(pow2_count(kh * kw, mode) if full else (-1, 0, 0, 0)))
        return out, 0
    return op


def _add_rows_op(a: TensorSpec, b: TensorSpec, o: TensorSpec, rounding, overflow) -> Op | None:
    """The power-of-two Add on the engine's own (in-format) codes in one fused pass
    (:func:`fxp.kernels.fast_layers.add_rows`), narrow codes out; None for stochastic
    rounding or where the aligned, shifted sum could leave ``2**62``."""
    from fxp.core import intmath
    from fxp.core.modes import OverflowMode, RoundingMode
    from fxp.kernels.fast_layers import add_rows, rounding_offsets
    from fxp.sim.fast import storage_dtype

    rmode = RoundingMode.from_string(rounding)
    if rmode is RoundingMode.STOCHASTIC or any(s.zero_point or s.is_binary for s in (a, b, o)):
        return None
    f = max(a.fmt.frac_bits, b.fmt.frac_bits)
    ka, kb, shift = f - a.fmt.frac_bits, f - b.fmt.frac_bits, f - o.fmt.frac_bits
    top = (max(-a.fmt.min_code, a.fmt.max_code) << ka) + (max(-b.fmt.min_code, b.fmt.max_code)
                                                          << kb)
    if top << max(0, -shift) >= 1 << 62:
        return None
    out_lo, out_hi = intmath._range_for(o.fmt, overflow)
    args = (ka, kb, shift, *(rounding_offsets(shift, rmode.code) if shift > 0 else (0, 0, 0)),
            out_lo, out_hi, o.fmt.bits, OverflowMode.from_string(overflow).code)
    dtype = storage_dtype(o.fmt)

    def op(c):
        x, y = c[0], c[1]
        out = np.empty(x.shape, dtype)
        n = add_rows(x.size, np.ascontiguousarray(x).reshape(-1),
                     np.ascontiguousarray(y).reshape(-1), out.reshape(-1), *args)
        return out, int(n)
    return op
