"""More TFLite operator handlers: LOGISTIC, TANH, HARD_SWISH, MUL, PAD, QUANTIZE, DEQUANTIZE.

Registered into :data:`fxp.frontends.tflite_ops.HANDLERS` (same contract:
``handler(ctx, index, operator, where)`` emits IR nodes and plan entries).

* ``LOGISTIC`` / ``TANH`` / ``HARD_SWISH`` -> :class:`~fxp.ir.nodes.Sigmoid` /
  :class:`~fxp.ir.nodes.Tanh` / :class:`~fxp.ir.nodes.HardSwish` with the
  output tensor's quantization as plan output (TFLite fixes it: LOGISTIC int8
  1/256 and -128, TANH int8 1/128 and 0, int16 2**-15 and 0), run as TFLite
  Micro's integer kernels (:mod:`fxp.sim.residual_tflite`).
* ``MUL`` of two activations (numpy broadcasting, e.g. a squeeze-excite gate
  ``[1, 1, 1, C]`` times ``[1, H, W, C]``) -> :class:`~fxp.ir.nodes.Mul`
  (TFLite's reference int8 / int16 MUL, :mod:`fxp.sim.residual_mul`), a fused
  activation as a ReLU/Clip node after it.
* ``PAD`` of H and W with the zero point (real 0; TFLite pads quantized
  tensors with the output zero point) -> :class:`~fxp.ir.nodes.Pad`; the
  quantization is unchanged.
* ``QUANTIZE`` between integer types (int8 / int16 in and out, a new scale or
  zero point) -> :class:`~fxp.ir.nodes.Requantize` with the output
  quantization (TFLM ``Requantize``).  A ``QUANTIZE`` of the float32 graph
  input is the plan's input spec: no IR node, its output tensor is the graph
  input's codes (TFLM rounds ``x / scale`` half away from zero in float32, the
  plan's input spec half to even: they differ only on exact ties).
* ``DEQUANTIZE`` of the graph output into float32: no IR node; the graph
  output is its input's codes, which the engine hands back dequantized
  (``scale * (code - zero_point)``).

Float tensors: the tensor map (:func:`fxp.frontends.tflite.tflite_tensor_map`)
maps the float graph input and a DEQUANTIZE output to the IR tensor whose
codes they quantize / dequantize; they have no activation spec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fxp.errors import ModelImportError, UnsupportedOpError
from fxp.frontends.tflite import FLOAT32, INT32, INT64, TfliteContext
from fxp.ir import nodes as ir
from fxp.plan.plan import LayerPlan

__all__ = ["HANDLERS"]


def _readers(ctx: TfliteContext, t: int) -> list[int]:
    """Indices of the operators reading tensor ``t``."""
    out = []
    for j in range(ctx.sg.OperatorsLength()):
        arr = ctx.sg.Operators(j).InputsAsNumpy()
        if isinstance(arr, np.ndarray) and t in arr.tolist():
            out.append(j)
    return out


def _io(op: Any, n_in: int, where: str) -> tuple[list[int], int]:
    ins, outs = base._ids(op.InputsAsNumpy()), base._ids(op.OutputsAsNumpy())
    if len(ins) != n_in or len(outs) != 1:
        raise ModelImportError(f"{where}: expected {n_in} inputs and 1 output, got {len(ins)} "
                               f"and {len(outs)}")
    return ins, outs[0]


def _plan(ctx: TfliteContext, name: str, out_t: int, where: str) -> None:
    ctx.layers.append(LayerPlan(name, output=ctx.act_spec(out_t, where), requant="double"))


def _unary(ctx: TfliteContext, i: int, op: Any, where: str, cls: type) -> None:
    (x_t,), out_t = _io(op, 1, where)
    x = ctx.activation(x_t, where)
    name = base._node_name(i, where)
    _plan(ctx, name, out_t, where)
    base._emit(ctx, i, where, [cls(name=name, inputs=(x,), outputs=(name,))], [x_t], out_t,
               ctx.layout[x_t])


def _mul(ctx: TfliteContext, i: int, op: Any, where: str) -> None:
    ins, out_t = _io(op, 2, where)
    for t in ins:
        if t not in ctx.ir and ctx.const(t, where) is not None:
            raise UnsupportedOpError(f"{where}: MUL by the constant tensor {t} "
                                     f"({ctx.tname(t)!r}); MUL of two activations is supported")
    xs = [ctx.activation(t, where) for t in ins]
    (sa, sb), layouts = [ctx.shape(t) for t in ins], {ctx.layout[t] for t in ins}
    broadcast = len(sa) == len(sb) and all(p == q or 1 in (p, q) for p, q in zip(sa, sb))
    if len(layouts) != 1 or not broadcast or (sa != sb and layouts != {"nhwc"}
                                               and layouts != {"same"}):
        raise UnsupportedOpError(f"{where}: MUL of shapes {sa} and {sb} (layouts "
                                 f"{sorted(layouts)}); same-rank broadcasting is supported")
    act = base._fused(base._options(ctx, op, "MulOptions").FusedActivationFunction(), where)
    name = base._node_name(i, where)
    nodes = [ir.Mul(name=name, inputs=tuple(xs), outputs=(name,)),
             *base._act_node(name, name, act)]
    _plan(ctx, name, out_t, where)
    base._emit(ctx, i, where, nodes, ins, out_t, layouts.pop())


def _pad(ctx: TfliteContext, i: int, op: Any, where: str) -> None:
    (x_t, p_t), out_t = _io(op, 2, where)
    x, _ = base._nhwc_input(ctx, x_t, where)
    base._same_quant(ctx, x_t, out_t, where)
    p = ctx.const(p_t, where)
    if p is None or ctx.tensor(p_t).Type() not in (INT32, INT64) or p.shape != (4, 2):
        raise UnsupportedOpError(f"{where}: paddings must be a constant int32 [4, 2] tensor, "
                                 f"got tensor {p_t} of shape {ctx.shape(p_t)}")
    if np.any(p < 0) or np.any(p[0]) or np.any(p[3]):
        raise UnsupportedOpError(f"{where}: paddings {p.tolist()}; non-negative pads of H and "
                                 f"W (not N or C) are supported")
    name = base._node_name(i, where)
    pads = (int(p[1, 0]), int(p[2, 0]), int(p[1, 1]), int(p[2, 1]))  # top, left, bottom, right
    base._emit(ctx, i, where, [ir.Pad(name=name, inputs=(x,), outputs=(name,), pads=pads)],
               [x_t], out_t, "nhwc")


def _quantize(ctx: TfliteContext, i: int, op: Any, where: str) -> None:
    (x_t,), out_t = _io(op, 1, where)
    if ctx.tensor(x_t).Type() == FLOAT32:
        graph_in = int(ctx.sg.InputsAsNumpy()[0])
        if x_t != graph_in or x_t in ctx.spec or _readers(ctx, x_t) != [i]:
            raise UnsupportedOpError(f"{where}: a float QUANTIZE input must be the graph input "
                                     f"read by this operator only (tensor {x_t}, "
                                     f"{ctx.tname(x_t)!r})")
        if out_t in ctx.ir:
            raise ModelImportError(f"{where}: tensor {out_t} ({ctx.tname(out_t)!r}) is written "
                                   "twice")
        spec = ctx.act_spec(out_t, where)
        ctx.spec[x_t] = ctx.spec[out_t] = spec  # the plan's input spec
        ctx.ir[out_t], ctx.layout[out_t] = ctx.ir[x_t], ctx.layout[x_t]
        ctx.ops.append([i, "QUANTIZE", [], [x_t], out_t])
        return
    x = ctx.activation(x_t, where)
    ctx.act_spec(x_t, where)  # an integer input
    name = base._node_name(i, where)
    _plan(ctx, name, out_t, where)
    base._emit(ctx, i, where, [ir.Requantize(name=name, inputs=(x,), outputs=(name,))], [x_t],
               out_t, ctx.layout[x_t])


def _dequantize(ctx: TfliteContext, i: int, op: Any, where: str) -> None:
    (x_t,), out_t = _io(op, 1, where)
    x = ctx.activation(x_t, where)
    outputs = [int(t) for t in ctx.sg.OutputsAsNumpy()]
    if ctx.tensor(out_t).Type() != FLOAT32 or out_t not in outputs or _readers(ctx, out_t):
        raise UnsupportedOpError(f"{where}: DEQUANTIZE is supported only into the float32 "
                                 f"graph output (tensor {out_t}, {ctx.tname(out_t)!r})")
    if out_t in ctx.ir:
        raise ModelImportError(f"{where}: tensor {out_t} ({ctx.tname(out_t)!r}) is written twice")
    ctx.ir[out_t], ctx.layout[out_t] = x, ctx.layout[x_t]
    ctx.ops.append([i, "DEQUANTIZE", [], [x_t], out_t])


HANDLERS: dict[str, Callable[[TfliteContext, int, Any, str], None]] = {
    "LOGISTIC": lambda c, i, o, w: _unary(c, i, o, w, ir.Sigmoid),
    "TANH": lambda c, i, o, w: _unary(c, i, o, w, ir.Tanh),
    "HARD_SWISH": lambda c, i, o, w: _unary(c, i, o, w, ir.HardSwish),
    "MUL": _mul,
    "PAD": _pad,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
}
"""TFLite builtin operator name -> handler (merged into ``tflite_ops.HANDLERS``)."""

# At the bottom, after HANDLERS exists: tflite_ops imports this module to register them,
# and its helpers are used only when a handler runs (either import order works).
from fxp.frontends import tflite_ops as base
