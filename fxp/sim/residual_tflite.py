"""Integer steps of Tanh, HardSwish, Pad and Requantize, and of Sigmoid under TFLite schemes.

:func:`compile_extra` is called by :func:`fxp.sim.residual.compile_step` for
:class:`~fxp.ir.nodes.Tanh`, :class:`~fxp.ir.nodes.HardSwish`,
:class:`~fxp.ir.nodes.Pad` and :class:`~fxp.ir.nodes.Requantize`;
:func:`tflite_act_op` also serves its Sigmoid under ``requant`` ``double`` /
``single``.  Each returns ``op(codes_list) -> (codes, n_saturated)`` with
everything TFLM derives at Prepare time computed once, here.

* Sigmoid / Tanh / HardSwish, affine inputs, ``double`` / ``single`` -- TFLite
  Micro's LOGISTIC / TANH (int8, int16) and HARD_SWISH (int8) kernels
  (:mod:`fxp.ops.tflite_act`).  The plan's output spec must be the coding
  TFLite fixes (LOGISTIC int8 1/256 and -128, TANH int8 1/128 and 0, int16
  2**-15 and 0; HARD_SWISH any int8 scale and zero point), the input the same
  integer type (int16: zero point 0).  ``float32`` (onnxruntime) has no integer
  Tanh / HardSwish here: mark the layer float.
* Tanh / HardSwish, power-of-two inputs -- evaluated in float64 on the exact
  input value and rounded once into the plan's power-of-two output with the
  layer's rounding and overflow (as fxp's power-of-two Sigmoid).
* Pad -- the codes of real 0 (the zero point; 0 for power-of-two codes) around
  the spatial axes, the coding unchanged (TFLite PAD with its output zero
  point); only ``value = 0`` is supported.
* Requantize -- ``double`` / ``single``: TFLM's ``Requantize`` (``QUANTIZE``
  between integer types): ``zp_out + MultiplyByQuantizedMultiplier(x - zp_in,
  M, shift)`` with ``(M, shift) = QuantizeMultiplier(double(s_in) / double(s_out))``,
  clamped to the output format; ``float32``: onnxruntime's
  ``QuantizeLinear(DequantizeLinear(x))`` in float32; power of two: a cast with
  the layer's rounding and overflow.  Without a plan output the coding is kept.
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.errors import FormatError, PlanError, UnsupportedOpError
from fxp.ir.nodes import HardSwish, Pad, Requantize, Sigmoid, Tanh
from fxp.plan.plan import LayerPlan, RequantScheme, TensorSpec

__all__ = ["EXTRA_NODES", "compile_extra", "tflite_act_op"]

EXTRA_NODES = (Tanh, HardSwish, Pad, Requantize)
"""The nodes :func:`compile_extra` compiles (registered in :data:`fxp.sim.residual.QUANT_NODES`)."""
_KIND = {Sigmoid: "logistic", Tanh: "tanh"}


def _where(node) -> str:
    return f"layer {node.name!r} ({type(node).__name__})"


def _s(spec: TensorSpec) -> np.float32:
    return np.float32(spec.scales[0])


def tflite_act_op(node, x: TensorSpec, out: TensorSpec, scheme: str):
    """The op of a Sigmoid / Tanh / HardSwish run as TFLM's integer kernel (see module doc).

    Raises
    ------
    PlanError
        Formats, zero points or output codings TFLM does not take, scales
        outside the kernel's range (TFLM's Prepare would fail).
    """
    from fxp.ops import tflite_act as T

    where = _where(node)
    bits = x.fmt.bits
    if x.fmt != QFormat.integer(bits, True) or bits not in (8, 16) or out.fmt != x.fmt:
        raise PlanError(f"{where}: TFLite's kernel takes int8 or int16 codes in and out, got "
                        f"{x.fmt} -> {out.fmt}")
    try:
        if isinstance(node, HardSwish):
            if bits != 8:
                raise UnsupportedOpError(f"{where}: TFLite Micro has no int16 HARD_SWISH")
            T.tflite_hard_swish_params(_s(x), _s(out), scheme=scheme)  # Prepare: refuse early
            return lambda c: T.tflite_hard_swish(c[0], x_scale=_s(x), x_zero_point=x.zero_point,
                                                 y_scale=_s(out), y_zero_point=out.zero_point,
                                                 fmt=x.fmt, scheme=scheme)
        kind = _KIND[type(node)]
        scale, zp = T.OUTPUT_CODING[(kind, bits)]
        if out.zero_point != zp or _s(out) != np.float32(scale):
            raise PlanError(f"{where}: TFLite int{bits} {kind.upper()} writes codes of scale "
                            f"{scale!r} and zero point {zp}; the plan's output is {out}"[:300])
        if bits == 16 and x.zero_point:
            raise PlanError(f"{where}: TFLite's int16 {kind.upper()} needs input zero point 0, "
                            f"got {x.zero_point}")
        T.tflite_act_params(kind, _s(x), x.fmt, scheme=scheme)
    except FormatError as e:
        raise PlanError(f"{where}: {e}") from None
    fn = T.tflite_logistic if kind == "logistic" else T.tflite_tanh
    return lambda c: fn(c[0], x_scale=_s(x), x_zero_point=x.zero_point, fmt=x.fmt, scheme=scheme)


def _pow2_unary(node, src: TensorSpec, out: TensorSpec, lp: LayerPlan):
    from fxp.ops.fixed import quantize

    if src.fmt.bits > 32:
        raise PlanError(f"{_where(node)}: inputs wider than 32 bits are not supported, got "
                        f"{src.fmt}")

    def op(c):
        v = np.ldexp(c[0].astype(np.float64), -src.fmt.frac_bits)  # exact: |code| < 2**32
        y = np.tanh(v) if isinstance(node, Tanh) else v * np.clip(v + 3.0, 0.0, 6.0) / 6.0
        return quantize(y, out.fmt, lp.rounding, lp.output_overflow)
    return op


def _pad_op(node, src: TensorSpec, lp: LayerPlan | None):
    if node.value != 0.0:
        raise UnsupportedOpError(f"{_where(node)}: only zero padding (value 0.0) has an integer "
                                 f"step, got value {node.value!r}")
    if src.is_binary:
        raise PlanError(f"{_where(node)}: binary (+-1) codes cannot hold a zero pad")
    if lp is not None and lp.output is not None and lp.output != src:
        raise PlanError(f"{_where(node)} keeps its input's coding ({src.fmt}); its plan "
                        f"entry's output {lp.output.fmt} would be ignored (remove it)")
    t, left, b, r = node.pads
    code = 0 if src.is_pow2 else src.zero_point

    def op(c):
        return np.pad(c[0], ((0, 0), (0, 0), (t, b), (left, r)), constant_values=code), 0
    return op


def _requant_op(node, src: TensorSpec, out: TensorSpec, lp: LayerPlan):
    where = _where(node)
    if src.is_pow2:
        from fxp.ops.fixed import cast

        return lambda c: cast(c[0], src.fmt, out.fmt, lp.rounding, lp.output_overflow)
    for s in (src, out):
        if s.fmt.frac_bits or s.fmt.bits not in (8, 16) or len(s.scales) != 1:
            raise PlanError(f"{where}: a requantization takes per-tensor 8- or 16-bit integer "
                            f"codes, got {s}"[:300])
    fmt = out.fmt
    if lp.requant is RequantScheme.FLOAT32:
        from fxp.sim.values import quantize_linear_f32

        def island(c):  # onnxruntime DequantizeLinear then QuantizeLinear, float32
            v = ((c[0] - src.zero_point).astype(np.float64) * float(_s(src))).astype(np.float32)
            return quantize_linear_f32(v, _s(out), out.zero_point, fmt)
        return island
    scheme = lp.requant.value
    real = float(_s(src)) / float(_s(out))
    m, e = intmath.quantize_multiplier(real, single_rounding=scheme == "single")
    if not -31 <= e <= (30 if scheme == "single" else 31):
        raise PlanError(f"{where}: scale ratio {real!r} gives the multiplier shift {e}, outside "
                        "TFLite's range")

    def requant(c):
        y, n = intmath.multiply_by_quantized_multiplier(c[0] - src.zero_point, m, e, scheme)
        y = y + out.zero_point
        clipped = np.clip(y, fmt.min_code, fmt.max_code)
        return clipped, n + int(np.count_nonzero(clipped != y))
    return requant


def compile_extra(node, lp: LayerPlan | None, ins: tuple[TensorSpec, ...]):
    """The :class:`~fxp.sim.compile.LayerStep` of a Tanh, HardSwish, Pad or Requantize node.

    Raises
    ------
    PlanError
        Mixed or missing codings, a ``requant`` that does not fit the inputs,
        formats or scales the kernel does not take.
    UnsupportedOpError
        Tanh / HardSwish under ``float32``, int16 HardSwish, a nonzero Pad value.
    """
    from fxp.sim.compile import LayerStep
    from fxp.sim.residual import _named

    where = _where(node)
    (src,) = ins
    out = lp.output if lp is not None else None
    if isinstance(node, Pad):
        return LayerStep(node, lp, ins, src, op=_named(node, _pad_op(node, src, lp)))
    if out is None:
        if isinstance(node, Requantize):
            return LayerStep(node, lp, ins, src, op=lambda c: (c[0], 0))
        raise PlanError(f"{where} has no integer output coding: give it a plan entry with an "
                        "output spec (or mark it float)")
    if src.is_pow2 != out.is_pow2:
        raise PlanError(f"{where}: input {src.fmt} and output {out.fmt} must both be "
                        "power-of-two or both affine")
    if src.is_pow2 != (lp.requant is RequantScheme.POW2):
        raise PlanError(f"{where}: requant {lp.requant.value!r} does not fit "
                        f"{'power-of-two' if src.is_pow2 else 'affine'} codes {src.fmt}")
    if isinstance(node, Requantize):
        op = _requant_op(node, src, out, lp)
    elif src.is_pow2:
        op = _pow2_unary(node, src, out, lp)
    elif lp.requant is RequantScheme.FLOAT32:
        raise UnsupportedOpError(f"{where}: no onnxruntime integer kernel for "
                                 f"{type(node).__name__}; mark the layer float")
    else:
        if len(src.scales) != 1 or len(out.scales) != 1:
            raise PlanError(f"{where}: TFLite activations take one scale per tensor")
        op = tflite_act_op(node, src, out, lp.requant.value)
    return LayerStep(node, lp, ins, out, op=_named(node, op))
