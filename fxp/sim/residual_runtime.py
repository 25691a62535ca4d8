"""Non-weighted integer steps under the other runtimes' schemes (``float64``, ``ruy``,
``xnnpack``).

A plan entry's ``requant`` names the runtime whose kernel a non-weighted
layer follows (:mod:`fxp.sim.residual`; the profiles of
:mod:`fxp.frontends.tflite_runtime` set it).  Where that runtime computes
what TFLite Micro computes, the step is TFLite's (:func:`fxp.sim.residual._tflite_op`
with ``"double"``); where it differs:

* ``xnnpack``: Add is XNNPACK's qs8 ADD (:func:`fxp.ops.xnnpack.xnnpack_add`),
  GlobalAvgPool its qs8 MEAN (:func:`fxp.ops.xnnpack.xnnpack_mean_hw`).  The
  delegate does not take quantized AVERAGE_POOL_2D or SOFTMAX; LiteRT's
  optimized kernels run them (the same integers as TFLite Micro's pools).
* ``ruy`` (LiteRT's optimized kernels): Add is LiteRT's optimized ADD
  (:func:`fxp.ops.litert.litert_add`); GlobalAvgPool is the optimized MEAN
  LiteRT runs for a 4-D ``keep_dims`` mean over H and W
  (:func:`fxp.ops.litert.litert_mean_hw_keepdims`; a MEAN without
  ``keep_dims`` runs the reference kernel, so the ``litert-opt`` profile gives
  it ``"double"``).  Pools, ReLU/Clip and CONCATENATION compute as TFLite
  Micro (the pools measured equal: ``tests/frontends/test_tflite_runtimes.py``).
* ``float64`` (LiteRT's reference kernels): as TFLite Micro.
"""

from __future__ import annotations

import numpy as np

from fxp.errors import PlanError
from fxp.ir.nodes import Add, GlobalAvgPool
from fxp.plan.tensor_spec import RequantScheme

__all__ = ["RUNTIME_SCHEMES", "runtime_op"]

RUNTIME_SCHEMES = (RequantScheme.FLOAT64, RequantScheme.RUY, RequantScheme.XNNPACK)
"""The schemes this module compiles for non-weighted nodes."""


def _s(spec) -> np.float32:
    return np.float32(spec.scales[0])


def _int8(node, ins, out, runtime: str) -> None:
    from fxp.core.format import QFormat

    i8 = QFormat.integer(8, True)
    if out.fmt != i8 or any(s.fmt != i8 for s in ins):
        raise PlanError(f"layer {node.name!r} ({type(node).__name__}): {runtime}'s kernel takes "
                        f"int8 codes, got inputs {[str(s.fmt) for s in ins]} and output "
                        f"{out.fmt}")


def runtime_op(node, ins, out, scheme: RequantScheme, tflite_op):
    """``op(codes_list) -> (codes, n)`` of ``node`` under ``scheme`` (see the module docstring).

    ``tflite_op(node, ins, out, scheme_name)`` builds TFLite Micro's step.

    Raises
    ------
    PlanError
        Codes the runtime's kernel does not take, scales it refuses.
    """
    from fxp.errors import FormatError

    try:
        if scheme is RequantScheme.XNNPACK and isinstance(node, Add):
            return _xnnpack_add(node, ins, out)
        if scheme is RequantScheme.XNNPACK and isinstance(node, GlobalAvgPool):
            return _xnnpack_mean(node, ins, out)
        if scheme is RequantScheme.RUY and isinstance(node, GlobalAvgPool):
            return _litert_mean(node, ins, out)
        if scheme is RequantScheme.RUY and isinstance(node, Add):
            return _litert_add(node, ins, out)
    except FormatError as exc:
        raise PlanError(f"layer {node.name!r} ({type(node).__name__}): {exc}") from None
    return tflite_op(node, ins, out, "double")


def _xnnpack_add(node, ins, out):
    from fxp.ops.xnnpack import xnnpack_add, xnnpack_add_params

    _int8(node, ins, out, "XNNPACK")
    a, b = ins
    xnnpack_add_params(_s(a), a.zero_point, _s(b), b.zero_point, _s(out))  # Prepare

    def op(c):
        return xnnpack_add(c[0], c[1], a_scale=_s(a), a_zero_point=a.zero_point, b_scale=_s(b),
                           b_zero_point=b.zero_point, y_scale=_s(out),
                           y_zero_point=out.zero_point), 0
    return op


def _xnnpack_mean(node, ins, out):
    from fxp.ops.xnnpack import xnnpack_mean_hw

    _int8(node, ins, out, "XNNPACK")
    x = ins[0]
    return lambda c: (xnnpack_mean_hw(c[0], x_scale=_s(x), x_zero_point=x.zero_point,
                                      y_scale=_s(out), y_zero_point=out.zero_point), 0)


def _litert_add(node, ins, out):
    from fxp.ops.litert import litert_add
    from fxp.ops.tflite import tflite_add_params

    _int8(node, ins, out, "LiteRT's optimized ADD")
    a, b = ins
    tflite_add_params(_s(a), _s(b), _s(out))  # Prepare: refuses early
    return lambda c: litert_add(c[0], c[1], a_scale=_s(a), a_zero_point=a.zero_point,
                                b_scale=_s(b), b_zero_point=b.zero_point, y_scale=_s(out),
                                y_zero_point=out.zero_point)


def _litert_mean(node, ins, out):
    from fxp.ops.litert import litert_mean_hw_keepdims

    _int8(node, ins, out, "LiteRT's optimized MEAN")
    x = ins[0]
    return lambda c: litert_mean_hw_keepdims(c[0], x_scale=_s(x), x_zero_point=x.zero_point,
                                             y_scale=_s(out), y_zero_point=out.zero_point)
