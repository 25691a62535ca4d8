"""Binary (XNOR-popcount) Conv2D/Dense layers: what :func:`fxp.sim.compile.compile_plan` precomputes.

The weights are binarized (``sign(W)`` with ``sign(0) = +1``; XNOR-Net
``alpha = mean |W[c]|`` in ``lp.alpha``'s format when given) and bit-packed
once; the worst-case "accumulator" is the popcount dot product, ``|dot| <=
K`` (``K = C*kh*kw`` or ``In``); the output transform is precomputed (scale
codes and bias codes, or exact integer sign thresholds with the bias folded
in).  See :mod:`fxp.plan.plan` for the plan fields.
"""

from __future__ import annotations

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import PlanError, UnsupportedOpError
from fxp.ir.nodes import Conv2D
from fxp.plan.plan import LayerPlan, TensorSpec
from fxp.sim.compile import LayerStep, _act_bounds
from fxp.sim.values import quantize_spec

__all__ = ["compile_binary"]


def compile_binary(node, lp: LayerPlan) -> LayerStep:
    """A binary layer: packed sign(W), bound K, and the output transform.

    The input is binarized by the executor (``H = sign(X)``, ``sign(0) = +1``,
    the sign of the incoming codes' real values), so the step's input spec is
    binary whatever the producer's coding.
    """
    from fractions import Fraction

    from fxp.ops import binary as ob
    from fxp.quant.binary import binarize, binarize_weights, sign_thresholds

    where = f"layer {node.name!r}"
    if isinstance(node, Conv2D):
        if node.groups != 1:
            raise UnsupportedOpError(f"{where}: binary convolution with groups={node.groups} is "
                                     "not supported (groups must be 1)")
        if any(node.pads) and lp.pad_value is None:
            raise PlanError(f"{where}: a binary convolution with pads {tuple(node.pads)} needs "
                            "'pad_value' in the plan (0 = zero padding, 1 or -1)")
    out_kind = lp.binary_output
    if out_kind != "threshold" and lp.output is None:
        raise PlanError(f"{where}: binary_output {out_kind!r} needs an 'output' spec")
    if out_kind == "threshold":
        act = node.fused_activation
        ok = act is None or (act != "relu" and (act[0] is None or act[0] < 0)
                             and (act[1] is None or act[1] >= 0))
        if not ok:
            raise PlanError(f"{where}: binary_output 'threshold' (sign output) cannot follow a "
                            f"fused activation {act!r}: sign(relu(y)) is always +1")
    w = node.weight.astype(np.float64)
    co = w.shape[0]
    if lp.alpha is not None:
        bw = binarize_weights(w, lp.alpha.fmt, "half_even", "saturate")
        signs, scale, scale_fmt = bw.signs, bw.alpha, bw.alpha_fmt
    else:
        signs = binarize(w)
        scale, scale_fmt = np.ones(co, np.int64), QFormat.integer(2)
    signs = signs.astype(np.int64)
    packed = ob.pack_conv_weights(signs) if isinstance(node, Conv2D) else ob.pack_bits(signs)
    k = int(np.prod(w.shape[1:]))
    step = LayerStep(node, lp, (TensorSpec.binary(),), lp.output, w_codes=signs,
                     w_packed=packed, pad_value=lp.pad_value if lp.pad_value is not None else 0,
                     acc_fmt=QFormat.integer(lp.acc_bits), bound=[k])
    if step.worst_case_bits > lp.acc_bits:
        raise PlanError(f"{where}: acc_bits={lp.acc_bits} cannot hold the popcount dot product "
                        f"(|dot| <= K = {k} needs {step.worst_case_bits} bits)")
    bias = node.bias
    if out_kind == "dot":
        if bias is not None and np.any(bias != 0):
            raise PlanError(f"{where}: binary_output 'dot' writes the bare dot product but the "
                            "layer has a bias; use 'scale' (adds it) or 'threshold' (folds it)")
        step.scale_codes, step.scale_fmt = np.ones(co, np.int64), QFormat.integer(2)
    elif out_kind == "scale":
        step.scale_codes, step.scale_fmt = scale, scale_fmt
        if bias is not None:
            step.b_fmt = lp.bias.fmt if lp.bias is not None else QFormat.from_frac(
                lp.acc_bits, max(scale_fmt.frac_bits, lp.output.fmt.frac_bits))
            step.b_codes, _ = quantize_spec(bias.astype(np.float64), TensorSpec(step.b_fmt))
    else:
        b = np.zeros(co, np.float64) if bias is None else bias.astype(np.float64)
        if lp.bias is not None and bias is not None:
            codes, _ = quantize_spec(b, lp.bias)
            fb = [Fraction(int(c)) * Fraction(2) ** -lp.bias.fmt.frac_bits for c in codes]
        else:
            fb = [Fraction(float(v)) for v in b]  # the exact float bias
        fa = [Fraction(int(c)) * Fraction(2) ** -scale_fmt.frac_bits for c in scale]
        step.thresholds, step.directions = sign_thresholds(fa, fb)
    if out_kind != "threshold":
        step.act_bounds = _act_bounds(node, lp.output)
    return step
