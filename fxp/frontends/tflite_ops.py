"""Handlers per TFLite operator for :func:`fxp.frontends.tflite.load_tflite`.

Each handler reads one operator of the flatbuffer, emits IR nodes (NCHW) and
plan entries into the :class:`~fxp.frontends.tflite.TfliteContext`, and
records the operator in ``ctx.ops``.  Node names are ``op{index}_{name}``
(``op0_conv_2d``); a fused activation on an operator without a
``fused_activation`` attribute becomes a ReLU/Clip node ``op{index}_..._act``.
LOGISTIC, TANH, HARD_SWISH, MUL, PAD, QUANTIZE and DEQUANTIZE are handled in
:mod:`fxp.frontends.tflite_ops_extra` and registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import ModelImportError, UnsupportedOpError
from fxp.frontends.tflite import INT8, INT32, INT64, TfliteContext
from fxp.ir import nodes as ir
from fxp.plan.plan import LayerPlan, TensorSpec

__all__ = ["HANDLERS", "convert_op"]

_W8 = QFormat.integer(8, True)
# ActivationFunctionType: NONE, RELU, RELU_N1_TO_1, RELU6
_FUSED = {0: None, 1: "relu", 2: (-1.0, 1.0), 3: (0.0, 6.0)}
_SAME, _VALID = 0, 1


def convert_op(ctx: TfliteContext, i: int, name: str) -> None:
    """Convert operator ``i`` (``name`` from :data:`HANDLERS`)."""
    HANDLERS[name](ctx, i, ctx.sg.Operators(i), f"operator {i} ({name})")


# --------------------------------------------------------------------------- helpers
def _ids(arr: Any) -> list[int]:
    return [int(v) for v in arr] if isinstance(arr, np.ndarray) else []


def _options(ctx: TfliteContext, op: Any, cls_name: str) -> Any:
    table = op.BuiltinOptions()
    if table is None:
        return None
    opt = getattr(ctx.tfl, cls_name)()
    opt.Init(table.Bytes, table.Pos)
    return opt


def _fused(code: int, where: str):
    if code not in _FUSED:
        raise UnsupportedOpError(f"{where}: fused activation type {code} is not supported "
                                 f"(NONE, RELU, RELU_N1_TO_1, RELU6 are)")
    return _FUSED[code]


def _node_name(i: int, where: str) -> str:
    return f"op{i}_{where.split('(')[1].rstrip(')').lower()}"


def _emit(ctx: TfliteContext, i: int, where: str, nodes: list, ins: list[int], out_t: int,
          layout: str) -> None:
    ctx.nodes.extend(nodes)
    ctx.define(out_t, nodes[-1].output, layout, where)
    ctx.ops.append([i, where.split("(")[1].rstrip(")"), [n.name for n in nodes], ins, out_t])


def _act_node(name: str, src: str, act) -> list:
    if act is None:
        return []
    if act == "relu":
        return [ir.ReLU(name=f"{name}_act", inputs=(src,), outputs=(f"{name}_act",))]
    return [ir.Clip(name=f"{name}_act", inputs=(src,), outputs=(f"{name}_act",),
                    min_value=act[0], max_value=act[1])]


def _same_quant(ctx: TfliteContext, a: int, b: int, where: str) -> None:
    if ctx.spec[a] != ctx.act_spec(b, where):
        raise UnsupportedOpError(f"{where}: output quantization {ctx.act_spec(b, where)} differs "
                                 f"from the input's {ctx.spec[a]}; this operator must not "
                                 f"requantize")


def _pads(padding: int, size: tuple[int, int], kernel: tuple[int, int],
          strides: tuple[int, int], dil: tuple[int, int], where: str) -> tuple[int, int, int, int]:
    """TFLite SAME/VALID padding as (top, left, bottom, right) (ComputePaddingHeightWidth)."""
    if padding == _VALID:
        return (0, 0, 0, 0)
    if padding != _SAME:
        raise ModelImportError(f"{where}: padding type {padding} is neither SAME nor VALID")
    begin, end = [], []
    for a in range(2):
        out = (size[a] + strides[a] - 1) // strides[a]
        eff = (kernel[a] - 1) * dil[a] + 1
        total = max((out - 1) * strides[a] + eff - size[a], 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return (begin[0], begin[1], end[0], end[1])


def _nhwc_input(ctx: TfliteContext, t: int, where: str) -> tuple[str, tuple[int, ...]]:
    x = ctx.activation(t, where)
    if ctx.layout[t] != "nhwc":
        raise UnsupportedOpError(f"{where}: input tensor {t} ({ctx.tname(t)!r}) must be an "
                                 f"image [1, H, W, C], got shape {ctx.shape(t)}")
    return x, ctx.shape(t)


def _weights(ctx: TfliteContext, t: int, where: str, qdim: int, cout: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """(int8 codes as in the file, float32 scales of size 1 or ``cout``)."""
    w = ctx.const(t, where)
    if w is None or ctx.tensor(t).Type() != INT8:
        raise UnsupportedOpError(f"{where}: weights {t} ({ctx.tname(t)!r}) must be a constant "
                                 f"int8 tensor (type code {ctx.tensor(t).Type()})")
    s, z, dim = ctx.quant(t, where)
    if np.any(z != 0):
        raise ModelImportError(f"{where}: weights {t} ({ctx.tname(t)!r}) have nonzero zero "
                               f"points {z.tolist()[:8]}; TFLite int8 weights are symmetric")
    if s.size not in (1, cout) or (s.size > 1 and dim != qdim):
        raise ModelImportError(f"{where}: weights {t} ({ctx.tname(t)!r}) have {s.size} scales "
                               f"on dimension {dim}; expected 1 or {cout} on dimension {qdim}")
    return w, s


def _dequantize(ctx: TfliteContext, codes: np.ndarray, s: np.ndarray, w_t: int, where: str
                ) -> np.ndarray:
    """float32(scale * code) per output channel (axis 0), checked to quantize back exactly."""
    sc = s.astype(np.float64).reshape((-1,) + (1,) * (codes.ndim - 1))
    wf = (codes.astype(np.float64) * sc).astype(np.float32)
    if not np.array_equal(np.rint(wf.astype(np.float64) / sc), codes):
        raise ModelImportError(f"{where}: weights {w_t} ({ctx.tname(w_t)!r}) do not survive the "
                               f"float32 round trip scale * code")
    return wf


def _bias(ctx: TfliteContext, t: int, name: str, sx: float, sw: np.ndarray, cout: int,
          where: str) -> np.ndarray | None:
    """Float bias ``float32(code * s_x * s_w)``; exact codes go to the graph metadata."""
    if t < 0:
        return None
    b = ctx.const(t, where)
    if b is None or ctx.tensor(t).Type() not in (INT32, INT64) or b.shape != (cout,):
        raise ModelImportError(f"{where}: bias {t} ({ctx.tname(t)!r}) must be a constant int32/"
                               f"int64 tensor of shape ({cout},), got shape "
                               f"{None if b is None else b.shape}")
    codes = b.astype(np.int64)
    bscale = np.float64(np.float32(sx)) * np.broadcast_to(sw.astype(np.float64), (cout,))
    if np.all(np.abs(codes) < (1 << 31)):
        ctx.bias_codes[name] = [int(c) for c in codes]
    return (codes.astype(np.float64) * bscale).astype(np.float32)


def _layer(ctx: TfliteContext, name: str, x_t: int, out_t: int, ws: np.ndarray, where: str
           ) -> LayerPlan:
    wspec = TensorSpec(_W8, tuple(float(v) for v in ws), 0, axis=0 if ws.size > 1 else None)
    wide = ctx.spec[x_t].fmt.bits > 8  # int16x8: int64 accumulator (TFLite)
    return LayerPlan(name, weight=wspec, output=ctx.act_spec(out_t, where),
                     acc_bits=64 if wide else 32, requant="double")


# --------------------------------------------------------------------------- handlers
def _conv(ctx: TfliteContext, i: int, op: Any, where: str, depthwise: bool) -> None:
    ins, (out_t,) = _ids(op.InputsAsNumpy()), _ids(op.OutputsAsNumpy())
    if len(ins) not in (2, 3):
        raise ModelImportError(f"{where}: expected 2 or 3 inputs, got {len(ins)}")
    x, shape = _nhwc_input(ctx, ins[0], where)
    opt = _options(ctx, op, "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
    cin = shape[3]
    w_shape = ctx.shape(ins[1])
    if len(w_shape) != 4:
        raise ModelImportError(f"{where}: weights have shape {w_shape}, expected 4-D")
    cout = w_shape[3] if depthwise else w_shape[0]
    w, ws = _weights(ctx, ins[1], where, 3 if depthwise else 0, cout)
    if depthwise:
        if w_shape[0] != 1 or cout % cin or cout // cin != max(opt.DepthMultiplier(), 1):
            raise ModelImportError(f"{where}: depthwise weights {w_shape} do not match {cin} "
                                   f"input channels and multiplier {opt.DepthMultiplier()}")
        codes, groups = np.transpose(w[0], (2, 0, 1))[:, None], cin
    else:
        if w_shape[3] < 1 or cin % w_shape[3]:
            raise ModelImportError(f"{where}: weights {w_shape} do not divide {cin} input "
                                   f"channels into groups")
        codes, groups = np.transpose(w, (0, 3, 1, 2)), cin // w_shape[3]
    name = _node_name(i, where)
    wf = _dequantize(ctx, codes.astype(np.int64), ws, ins[1], where)
    bias = _bias(ctx, ins[2] if len(ins) == 3 else -1, name, ctx.spec[ins[0]].scales[0], ws,
                 cout, where)
    strides = (opt.StrideH(), opt.StrideW())
    dil = (opt.DilationHFactor(), opt.DilationWFactor())
    pads = _pads(opt.Padding(), (shape[1], shape[2]), (w_shape[1], w_shape[2]), strides, dil,
                 where)
    node = ir.Conv2D(name=name, inputs=(x,), outputs=(name,), weight=wf, bias=bias,
                     strides=strides, pads=pads, dilations=dil, groups=groups,
                     fused_activation=_fused(opt.FusedActivationFunction(), where))
    ctx.layers.append(_layer(ctx, name, ins[0], out_t, ws, where))
    _emit(ctx, i, where, [node], [ins[0]], out_t, "nhwc")


def _fully_connected(ctx: TfliteContext, i: int, op: Any, where: str) -> None:
    ins, (out_t,) = _ids(op.InputsAsNumpy()), _ids(op.OutputsAsNumpy())
    x = ctx.activation(ins[0], where)
    layout = ctx.layout[ins[0]]
    opt = _options(ctx, op, "FullyConnectedOptions")
    if layout == "nhwc" or opt.WeightsFormat() != 0:
        raise UnsupportedOpError(f"{where}: a 2-D input ([1, F], got {ctx.shape(ins[0])}) and "
                                 f"DEFAULT weights format (got {opt.WeightsFormat()}) are "
                                 f"supported")
    w_shape = ctx.shape(ins[1])
    w, ws = _weights(ctx, ins[1], where, 0, w_shape[0])
    codes = w.astype(np.int64)
    if layout.startswith("chw:"):  # the input is flattened C,H,W in the IR, H,W,C in TFLite
        c, h, wd = (int(v) for v in layout[4:].split(","))
        codes = codes.reshape(-1, h, wd, c).transpose(0, 3, 1, 2).reshape(codes.shape[0], -1)
    name = _node_name(i, where)
    wf = _dequantize(ctx, codes, ws, ins[1], where)
    bias = _bias(ctx, ins[2] if len(ins) > 2 else -1, name, ctx.spec[ins[0]].scales[0], ws,
                 w_shape[0], where)
    node = ir.Dense(name=name, inputs=(x,), outputs=(name,), weight=wf, bias=bias,
                    fused_activation=_fused(opt.FusedActivationFunction(), where))
    ctx.layers.append(_layer(ctx, name, ins[0], out_t, ws, where))
    _emit(ctx, i, where, [node], [ins[0]], out_t, "same")


def _pool(ctx: TfliteContext, i: int, op: Any, where: str, avg: bool) -> None:
    (x_t,), (out_t,) = _ids(op.InputsAsNumpy()), _ids(op.OutputsAsNumpy())
    x, shape = _nhwc_input(ctx, x_t, where)
    _same_quant(ctx, x_t, out_t, where)
    opt = _options(ctx, op, "Pool2DOptions")
    kernel, strides = (opt.FilterHeight(), opt.FilterWidth()), (opt.StrideH(), opt.StrideW())
    pads = _pads(opt.Padding(), (shape[1], shape[2]), kernel, strides, (1, 1), where)
    name = _node_name(i, where)
    cls = ir.AvgPool2D if avg else ir.MaxPool2D
    node = cls(name=name, inputs=(x,), outputs=(name,), kernel=kernel, strides=strides,
               pads=pads)
    if avg:  # TFLite: raw-code sum, divided by the in-bounds count, rounded half away
        ctx.layers.append(LayerPlan(name, rounding="half_away", requant="double"))
    nodes = [node, *_act_node(name, name, _fused(opt.FusedActivationFunction(), where))]
    _emit(ctx, i, where, nodes, [x_t], out_t, "nhwc")


def _mean(ctx: TfliteContext, i: int, op: Any, where: str) -> None:
    ins, (out_t,) = _ids(op.InputsAsNumpy()), _ids(op.OutputsAsNumpy())
    x, shape = _nhwc_input(ctx, ins[0], where)
    axes = ctx.const(ins[1], where) if len(ins) == 2 else None
    if axes is None or sorted(int(a) % 4 for a in axes.ravel()) != [1, 2]:
        raise UnsupportedOpError(f"{where}: MEAN over axes "
                                 f"{None if axes is None else axes.ravel().tolist()}; only the "
                                 f"mean over H and W (axes [1, 2]) is supported")
    keep = bool(_options(ctx, op, "ReducerOptions").KeepDims())
    name = _node_name(i, where)
    nodes = [ir.GlobalAvgPool(name=name, inputs=(x,), outputs=(name,))]
    if not keep:
        nodes.append(ir.Flatten(name=f"{name}_flatten", inputs=(name,),
                                outputs=(f"{name}_flatten",)))
    ctx.layers.append(LayerPlan(name, output=ctx.act_spec(out_t, where), rounding="half_away",
                                requant="double"))
    _emit(ctx, i, where, nodes, [ins[0]], out_t, "nhwc" if keep else "same")


def _add(ctx: TfliteContext, i: int, op: Any, where: str) -> None:
    ins, (out_t,) = _ids(op.InputsAsNumpy()), _ids(op.OutputsAsNumpy())
    xs = [ctx.activation(t, where) for t in ins]
    if len(ins) != 2 or ctx.layout[ins[0]] != ctx.layout[ins[1]] or \
            ctx.shape(ins[0]) != ctx.shape(ins[1]):
        raise UnsupportedOpError(f"{where}: ADD of two tensors of one shape is supported "
                                 f"(no broadcasting); got shapes "
                                 f"{[ctx.shape(t) for t in ins]}")
    opt = _options(ctx, op, "AddOptions")
    name = _node_name(i, where)
    nodes = [ir.Add(name=name, inputs=tuple(xs), outputs=(name,)),
             *_act_node(name, name, _fused(opt.FusedActivationFunction(), where))]
    ctx.layers.append(LayerPlan(name, output=ctx.act_spec(out_t, where), requant="double"))
    _emit(ctx, i, where, nodes, ins, out_t, ctx.layout[ins[0]])


def _concat(ctx: TfliteContext, i: int, op: Any, where: str) -> None:
    ins, (out_t,) = _ids(op.InputsAsNumpy()), _ids(op.OutputsAsNumpy())
    xs = [ctx.activation(t, where) for t in ins]
    layouts = {ctx.layout[t] for t in ins}
    opt = _options(ctx, op, "ConcatenationOptions")
    rank = len(ctx.shape(ins[0]))
    axis = opt.Axis() % rank if rank else 0
    if layouts not in ({"nhwc"}, {"same"}) or axis == 0:
        raise UnsupportedOpError(f"{where}: concatenation of inputs with layouts "
                                 f"{sorted(layouts)} along axis {opt.Axis()}")
    ir_axis = {1: 2, 2: 3, 3: 1}[axis] if layouts == {"nhwc"} else axis
    name = _node_name(i, where)
    nodes = [ir.Concat(name=name, inputs=tuple(xs), outputs=(name,), axis=ir_axis),
             *_act_node(name, name, _fused(opt.FusedActivationFunction(), where))]
    ctx.layers.append(LayerPlan(name, output=ctx.act_spec(out_t, where), requant="double"))
    _emit(ctx, i, where, nodes, ins, out_t, layouts.pop())


def _reshape(ctx: TfliteContext, i: int, op: Any, where: str) -> None:
    ins, (out_t,) = _ids(op.InputsAsNumpy()), _ids(op.OutputsAsNumpy())
    x = ctx.activation(ins[0], where)
    _same_quant(ctx, ins[0], out_t, where)
    src, dst, layout = ctx.shape(ins[0]), ctx.shape(out_t), ctx.layout[ins[0]]
    name = _node_name(i, where)
    if len(dst) != 2 or dst[0] != 1 or int(np.prod(src)) != dst[1]:
        raise UnsupportedOpError(f"{where}: RESHAPE {src} -> {dst}; only flattening to [1, F] "
                                 f"is supported")
    if layout == "nhwc":
        node = ir.Flatten(name=name, inputs=(x,), outputs=(name,))
        h, w, c = src[1:]
        out_layout = "same" if h == w == 1 else f"chw:{c},{h},{w}"
    else:
        node = ir.Reshape(name=name, inputs=(x,), outputs=(name,), shape=(dst[1],))
        out_layout = layout
    _emit(ctx, i, where, [node], [ins[0]], out_t, out_layout)


def _softmax(ctx: TfliteContext, i: int, op: Any, where: str) -> None:
    (x_t,), (out_t,) = _ids(op.InputsAsNumpy()), _ids(op.OutputsAsNumpy())
    x = ctx.activation(x_t, where)
    beta = _options(ctx, op, "SoftmaxOptions").Beta()
    if beta != 1.0 or len(ctx.shape(x_t)) != 2:
        raise UnsupportedOpError(f"{where}: SOFTMAX with beta {beta} on shape {ctx.shape(x_t)}; "
                                 f"beta 1 over the last axis of [1, F] is supported")
    name = _node_name(i, where)
    ctx.layers.append(LayerPlan(name, output=ctx.act_spec(out_t, where), requant="double"))
    _emit(ctx, i, where, [ir.Softmax(name=name, inputs=(x,), outputs=(name,), axis=1)],
          [x_t], out_t, "same")


def _relu(ctx: TfliteContext, i: int, op: Any, where: str, act) -> None:
    (x_t,), (out_t,) = _ids(op.InputsAsNumpy()), _ids(op.OutputsAsNumpy())
    x = ctx.activation(x_t, where)
    _same_quant(ctx, x_t, out_t, where)
    name = _node_name(i, where)
    node = ir.ReLU(name=name, inputs=(x,), outputs=(name,)) if act == "relu" else \
        ir.Clip(name=name, inputs=(x,), outputs=(name,), min_value=act[0], max_value=act[1])
    _emit(ctx, i, where, [node], [x_t], out_t, ctx.layout[x_t])


HANDLERS: dict[str, Callable[[TfliteContext, int, Any, str], None]] = {
    "CONV_2D": lambda c, i, o, w: _conv(c, i, o, w, False),
    "DEPTHWISE_CONV_2D": lambda c, i, o, w: _conv(c, i, o, w, True),
    "FULLY_CONNECTED": _fully_connected,
    "MAX_POOL_2D": lambda c, i, o, w: _pool(c, i, o, w, False),
    "AVERAGE_POOL_2D": lambda c, i, o, w: _pool(c, i, o, w, True),
    "MEAN": _mean,
    "ADD": _add,
    "CONCATENATION": _concat,
    "RESHAPE": _reshape,
    "SOFTMAX": _softmax,
    "RELU": lambda c, i, o, w: _relu(c, i, o, w, "relu"),
    "RELU6": lambda c, i, o, w: _relu(c, i, o, w, (0.0, 6.0)),
    "RELU_N1_TO_1": lambda c, i, o, w: _relu(c, i, o, w, (-1.0, 1.0)),
}
"""TFLite builtin operator name -> handler ``(ctx, index, operator, where)``."""

from fxp.frontends.tflite_ops_extra import HANDLERS as _EXTRA  # (it uses the helpers above)

HANDLERS.update(_EXTRA)  # LOGISTIC, TANH, HARD_SWISH, MUL, PAD, QUANTIZE, DEQUANTIZE
