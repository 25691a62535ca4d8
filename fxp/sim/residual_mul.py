"""Integer step of the elementwise :class:`~fxp.ir.nodes.Mul` (numpy broadcasting).

:func:`compile_mul` is called by :func:`fxp.sim.residual.compile_step` and
returns a :class:`~fxp.sim.compile.LayerStep` whose ``op(codes_list)`` gives
``(codes, n_saturated)``.  The arithmetic follows the plan entry's ``requant``:

* ``float32`` (affine int8 / uint8 inputs) -- onnxruntime ``QLinearMul``
  (MLAS SSE2 kernel, :func:`~fxp.ops.qlinear.qlinear_mul`):
  ``ratio = float32(float32(sA*sB) / sC)``, per element
  ``cvt(float32(float32(p) * ratio) + float32(zC))`` with the exact product
  ``p = (a - zA) * (b - zB)``, half to even, saturated.
* ``double`` / ``single`` (affine) -- TFLite Micro's reference int8 / int16 MUL
  (``tensorflow/lite/kernels/internal/reference/integer_ops/mul.h``,
  ``MulElementwise``): ``zC + MultiplyByQuantizedMultiplier((a - zA) * (b - zB),
  M, shift)`` clamped to the format, ``(M, shift) = QuantizeMultiplier(real)``
  with ``real = double(s1) * double(s2) / double(s_out)`` (TFLM
  ``micro/kernels/mul_common.cc``; LiteRT's ``mul.cc`` forms the ratio in
  float32 instead, which changes the low multiplier bits).  int16 codes need
  zero points 0 (the products fit int32).
* ``pow2`` (power-of-two inputs) -- fxp's own datapath: the exact product of
  the codes (``frac = frac_a + frac_b``, at most 63 bits) cast into the plan's
  output format with the layer's rounding and overflow; without a plan entry
  (or without an output spec) the exact product format is the output.

Raises :class:`~fxp.errors.PlanError` for mixed power-of-two / affine inputs,
a missing plan entry or output spec on affine inputs, ``requant`` not fitting
the inputs, formats the runtime does not take, or products wider than 63 bits.
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.errors import FxpError, PlanError
from fxp.kernels.spec_qlinear import qlinear_mul_ratio
from fxp.plan.plan import LayerPlan, RequantScheme, TensorSpec

__all__ = ["compile_mul", "product_spec", "tflite_mul"]


def _where(node) -> str:
    return f"layer {node.name!r} (Mul)"


def product_spec(a: TensorSpec, b: TensorSpec) -> TensorSpec:
    """The exact product coding of two power-of-two specs (``bits_a + bits_b`` bits)."""
    signed = a.fmt.signed or b.fmt.signed
    return TensorSpec(QFormat.from_frac(a.fmt.bits + b.fmt.bits,
                                        a.fmt.frac_bits + b.fmt.frac_bits, signed))


def tflite_mul(a, b, *, a_zero_point: int, b_zero_point: int, multiplier: int, shift: int,
               y_zero_point: int, fmt: QFormat, scheme: str) -> tuple[np.ndarray, int]:
    """TFLite reference int8 MUL on codes (numpy broadcasting): ``(codes, n_saturated)``.

    ``zC + MBQM((a - zA) * (b - zB), multiplier, shift)`` clamped to ``fmt``;
    ``n_saturated`` counts clamped elements and multiplier overflows.
    """
    p = (np.asarray(a, np.int64) - a_zero_point) * (np.asarray(b, np.int64) - b_zero_point)
    y, n = intmath.multiply_by_quantized_multiplier(p, multiplier, shift, scheme)
    y = y + y_zero_point
    c = np.clip(y, fmt.min_code, fmt.max_code)
    return c, int(n) + int(np.count_nonzero(c != y))


def tflite_mul_params(a_scale, b_scale, y_scale, scheme: str) -> tuple[int, int]:
    """``QuantizeMultiplier(double(s1) * double(s2) / double(s_out))`` as TFLM's Prepare."""
    real = float(np.float32(a_scale)) * float(np.float32(b_scale)) / float(np.float32(y_scale))
    if not (np.isfinite(real) and real > 0):
        raise PlanError(f"scale ratio s1*s2/s_out={real!r} must be finite and > 0")
    m, e = intmath.quantize_multiplier(real, single_rounding=scheme == "single")
    if not -31 <= e <= (30 if scheme == "single" else 31):
        raise PlanError(f"scale ratio {real!r} gives the multiplier shift {e}, outside "
                        "TFLite's range")
    return m, e


def _affine_op(node, ins, out, requant: RequantScheme):
    from fxp.ops import qlinear as Q

    a, b = ins
    fmt = out.fmt
    int16 = requant is not RequantScheme.FLOAT32 and fmt == QFormat.integer(16, True)
    if not (fmt.bits == 8 or int16) or fmt.frac_bits or any(s.fmt != fmt for s in ins):
        raise PlanError(f"{_where(node)}: the runtime kernel takes one 8-bit integer type (TFLite:"
                        f" or int16) for inputs and output, got inputs "
                        f"{[str(s.fmt) for s in ins]} and output {fmt}")
    if int16 and any(s.zero_point for s in (a, b, out)):
        raise PlanError(f"{_where(node)}: TFLite's int16 MUL needs zero points 0, got "
                        f"{[s.zero_point for s in (a, b, out)]}")
    sa, sb, sy = (np.float32(s.scales[0]) for s in (a, b, out))
    if requant is RequantScheme.FLOAT32:
        ratio = qlinear_mul_ratio(sa, sb, sy)
        if not (np.isfinite(ratio) and ratio > 0):
            raise PlanError(f"{_where(node)}: scale ratio s_a*s_b/s_y={ratio!r} must be finite "
                            "and > 0 in float32")
        return lambda c: Q.qlinear_mul(c[0], c[1], a_scale=sa, a_zero_point=a.zero_point,
                                       b_scale=sb, b_zero_point=b.zero_point, y_scale=sy,
                                       y_zero_point=out.zero_point, fmt=fmt)
    scheme = requant.value
    try:
        m, e = tflite_mul_params(sa, sb, sy, scheme)
    except PlanError as exc:
        raise PlanError(f"{_where(node)}: {exc}") from None
    return lambda c: tflite_mul(c[0], c[1], a_zero_point=a.zero_point,
                                b_zero_point=b.zero_point, multiplier=m, shift=e,
                                y_zero_point=out.zero_point, fmt=fmt, scheme=scheme)


def _pow2_op(node, lp, ins, out):
    from fxp.ops.fixed import cast

    a, b = ins
    if a.fmt.bits + b.fmt.bits > 63:
        raise PlanError(f"{_where(node)}: the exact product of {a.fmt} and {b.fmt} needs "
                        f"{a.fmt.bits + b.fmt.bits} bits (at most 63)")
    prod = product_spec(a, b)
    if out is None or out == prod:
        return prod, lambda c: (c[0] * c[1], 0)
    rounding = lp.rounding if lp is not None else "half_away"
    overflow = lp.output_overflow if lp is not None else "saturate"
    return out, lambda c: cast(c[0] * c[1], prod.fmt, out.fmt, rounding, overflow)


def compile_mul(node, lp: LayerPlan | None, ins: tuple[TensorSpec, ...]):
    """The :class:`~fxp.sim.compile.LayerStep` of a Mul node (see the module docstring)."""
    from fxp.sim.compile import LayerStep
    from fxp.sim.residual import _named

    affine = [not s.is_pow2 for s in ins]
    if any(affine) and not all(affine):
        raise PlanError(f"{_where(node)} mixes power-of-two and affine inputs "
                        f"{[str(s.fmt) for s in ins]}")
    out = lp.output if lp is not None else None
    requant = lp.requant if lp is not None else RequantScheme.POW2
    if not any(affine):
        if out is not None and requant is not RequantScheme.POW2:
            raise PlanError(f"{_where(node)}: requant {requant.value!r} needs affine inputs; "
                            f"its inputs are power-of-two {[str(s.fmt) for s in ins]}")
        if out is not None and not out.is_pow2:
            raise PlanError(f"{_where(node)}: power-of-two inputs need a power-of-two output, "
                            f"got scales {out.scales!r:.80}")
        out, op = _pow2_op(node, lp, ins, out)
        return LayerStep(node, lp, ins, out, op=_named(node, op))
    if lp is None or out is None:
        raise PlanError(f"{_where(node)} on affine inputs: give it a plan entry with an output "
                        "spec and requant 'float32' (onnxruntime) or 'double' / 'single' "
                        "(TFLite)")
    if requant is RequantScheme.POW2:
        raise PlanError(f"{_where(node)}: requant 'pow2' needs power-of-two inputs; affine "
                        "inputs take requant 'float32' (onnxruntime) or 'double' / 'single' "
                        "(TFLite)")
    if out.is_pow2 or len(out.scales) > 1 or any(len(s.scales) > 1 for s in ins):
        raise PlanError(f"{_where(node)}: affine Mul needs per-tensor scales, got inputs "
                        f"{[s.scales for s in ins]!r:.120} and output {out.scales!r:.80}")
    try:
        op = _affine_op(node, ins, out, requant)
    except PlanError:
        raise
    except FxpError as e:
        raise PlanError(f"{_where(node)}: {e}") from None
    return LayerStep(node, lp, ins, out, op=_named(node, op))
