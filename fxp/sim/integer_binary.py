"""Binary (XNOR-popcount) Conv2D/Dense steps of the integer executor.

The input is binarized (``H = sign(X)``, ``sign(0) = +1``, the sign of the
incoming real values; binary inputs pass as they are), ``dot`` comes from
:func:`~fxp.ops.binary.binary_conv2d_int` / :func:`~fxp.ops.binary.binary_dense_int`,
and the output is :func:`~fxp.ops.binary.binary_scale_int` (``"scale"``,
``"dot"``) or :func:`~fxp.ops.binary.binary_threshold` (``"threshold"``); with
a plan ``beta``, XNOR-Net's ``mean |X|`` per receptive field scales it
(see :mod:`fxp.sim.integer`).
"""

from __future__ import annotations

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import PlanError
from fxp.ir.nodes import Conv2D
from fxp.ops.fixed import cast
from fxp.sim.compile import LayerStep
from fxp.sim.values import FloatValue, IntValue

__all__ = ["run_binary"]


def _binarize_input(v: IntValue | FloatValue) -> np.ndarray:
    """``sign`` of the real values of ``v`` as int64 +-1, ``sign(0) = +1``."""
    from fxp.quant.binary import binarize

    if isinstance(v, FloatValue):
        return binarize(v.data).astype(np.int64)
    if v.spec.is_binary:
        return v.codes
    return np.where(v.codes < v.spec.zero_point, -1, 1).astype(np.int64)


def _xnor_beta(step: LayerStep, v: IntValue | FloatValue) -> np.ndarray:
    """XNOR-Net ``beta = mean |X|`` per receptive field (Dense: per sample) in ``plan.beta``'s format.

    Computed from the incoming power-of-two codes (a binary input gives 1),
    rounded half to even and saturated (:func:`fxp.quant.binary.xnor_beta`).
    """
    from fxp.quant.binary import xnor_beta, xnor_beta_dense

    node, fmt = step.node, step.plan.beta.fmt
    if isinstance(v, FloatValue) or not v.spec.is_pow2:
        raise PlanError(f"layer {node.name!r}: beta needs power-of-two input codes (got "
                        f"{'float values' if isinstance(v, FloatValue) else v.spec.fmt})")
    if isinstance(node, Conv2D):
        return xnor_beta(v.codes, v.spec.fmt, fmt, node.weight.shape[2:], strides=node.strides,
                         pads=node.pads, dilations=node.dilations)
    return xnor_beta_dense(v.codes.reshape(v.codes.shape[0], -1), v.spec.fmt, fmt)


def run_binary(step: LayerStep, v: IntValue | FloatValue, counters) -> IntValue:
    """One binary layer on ``v``; events go to ``counters`` (a LayerCounters)."""
    from fxp.ops import binary as ob

    node, lp = step.node, step.plan
    h = _binarize_input(v)
    if isinstance(node, Conv2D):
        dot, _ = ob.binary_conv2d_int(h, step.w_packed, pad_value=step.pad_value,
                                      strides=node.strides, pads=node.pads,
                                      dilations=node.dilations)
    else:
        dot, _ = ob.binary_dense_int(h.reshape(h.shape[0], -1), step.w_packed)
    co = dot.shape[1]
    per = np.zeros(co, np.int64)
    counters.acc_overflow_per_channel = per if counters.acc_overflow_per_channel is None \
        else counters.acc_overflow_per_channel + per
    if dot.size:
        counters.max_abs_acc = max(counters.max_abs_acc, int(np.abs(dot).max()))
    if lp.binary_output == "threshold":
        return IntValue(ob.binary_threshold(dot, step.thresholds, step.directions)
                        .astype(np.int64), step.out_spec)
    out = step.out_spec
    wide = QFormat.from_frac(64, out.fmt.frac_bits)
    beta = None if lp.beta is None else _xnor_beta(step, v)
    y, _ = ob.binary_scale_int(dot, step.scale_codes, step.scale_fmt, wide, bias=step.b_codes,
                               bias_fmt=step.b_fmt, rounding=lp.rounding, overflow="saturate",
                               beta=beta, beta_fmt=None if beta is None else lp.beta.fmt)
    if step.act_bounds is not None:
        lo, hi = step.act_bounds
        y = np.clip(y, lo, None)
        if hi < out.fmt.max_code:
            y = np.minimum(y, hi)
    codes, n = cast(y, wide, out.fmt, "floor", lp.output_overflow)
    counters.output_saturations += n
    return IntValue(codes, out)
