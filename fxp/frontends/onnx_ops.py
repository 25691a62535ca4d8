"""ONNX op handlers: one function per op_type, registered in :data:`HANDLERS`.

A handler ``handler(ctx, node)`` reads the ONNX ``NodeProto``, validates every
attribute it understands (unknown attributes are refused), and emits typed IR
nodes through :meth:`ImportContext.emit`.  Anything outside the supported
subset raises :class:`~fxp.errors.UnsupportedOpError` (or
:class:`~fxp.errors.ModelImportError` for malformed models) naming the node,
its op_type and the offending value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from fxp.errors import GraphError, ModelImportError
from fxp.frontends.onnx_attrs import (
    AUTO_PADS, bool_attr, float_attr, floats_attr, int_attr, ints_attr, str_attr, tensor_attr,
)
from fxp.frontends.onnx_context import ImportContext
from fxp.frontends.onnx_tensors import check_finite
from fxp.ir import nodes as ir
from fxp.ir.passes.fold_batchnorm import fold

__all__ = ["HANDLERS", "WINDOW_ATTRS", "get_handler", "window"]

Handler = Callable[[ImportContext, Any], None]
HANDLERS: dict[str, Handler] = {}
"""ONNX op_type -> handler."""


def handles(*op_types: str) -> Callable[[Handler], Handler]:
    """Register a handler for ``op_types``."""
    def register(fn: Handler) -> Handler:
        for op in op_types:
            HANDLERS[op] = fn
        return fn
    return register


def get_handler(ctx: ImportContext, node: Any) -> Handler:
    """The handler for ``node.op_type``; the error lists the supported op types."""
    if node.domain not in ("", "ai.onnx"):
        raise ctx.fail(node, f"domain {node.domain!r} is not supported; only the default ONNX "
                             f"domain. Supported op types: {sorted(HANDLERS)}")
    try:
        return HANDLERS[node.op_type]
    except KeyError:
        raise ctx.fail(node, f"op_type {node.op_type!r} is not supported; supported op types: "
                             f"{sorted(HANDLERS)}") from None


def _io(ctx: ImportContext, node: Any, *inputs: str) -> dict[str, Any]:
    return {"name": ctx.node_name, "inputs": inputs, "outputs": (node.output[0],)}


def _unused_extra_outputs(ctx: ImportContext, node: Any) -> None:
    for t in node.output[1:]:
        if t and (ctx.uses.get(t, 0) or t in ctx.graph_outputs):
            raise ctx.fail(node, f"extra output {t!r} is used; only the first output "
                                 f"is supported")


WINDOW_ATTRS = {"auto_pad": str_attr("NOTSET", choices=(*AUTO_PADS, "")),  # "": NOTSET (ORT)
                "dilations": ints_attr(minimum=1), "kernel_shape": ints_attr(minimum=1),
                "pads": ints_attr(minimum=0), "strides": ints_attr(minimum=1)}
"""Attributes shared by Conv, QLinearConv, MaxPool and AveragePool."""


def window(ctx: ImportContext, node: Any, a: dict[str, Any]) -> tuple[tuple, tuple]:
    """``strides`` and ``dilations`` (default ``(1, 1)``), two entries each."""
    return tuple(ctx.ints(node, what, (1, 1) if a[what] is None else a[what], 2, 1)
                 for what in ("strides", "dilations"))


def _rank(ctx: ImportContext, node: Any, x: str, ranks: tuple[int, ...]) -> tuple:
    shape = ctx.shapes[x]
    if len(shape) not in ranks:
        raise ctx.fail(node, f"input {x!r} has shape {shape}; supported ranks: {ranks}")
    return shape


# ------------------------------------------------------------- layers
@handles("Conv")
def _conv(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, **WINDOW_ATTRS, group=int_attr(1, minimum=1))
    x = ctx.activation(node, 0)
    w = ctx.weight(node, 1, "weight")
    b = ctx.weight(node, 2, "bias", optional=True)
    shape = _rank(ctx, node, x, (4,))
    if w.ndim != 4:
        raise ctx.fail(node, f"only 2-D convolution is supported; weight has shape {w.shape}")
    kernel = tuple(int(k) for k in w.shape[2:])
    if a["kernel_shape"] is not None and tuple(a["kernel_shape"]) != kernel:
        raise ctx.fail(node, f"kernel_shape={list(a['kernel_shape'])} disagrees with weight "
                             f"shape {w.shape}", ModelImportError)
    strides, dilations = window(ctx, node, a)
    group, cin, cout = a["group"], shape[1], w.shape[0]
    if cin % group or cout % group or w.shape[1] * group != cin:
        raise ctx.fail(node, f"group={group} does not fit input channels {cin} and weight "
                             f"shape {w.shape} (need Cin % group == 0, Cout % group == 0, "
                             f"weight.shape[1] * group == Cin)", ModelImportError)
    if b is not None and b.shape != (cout,):
        raise ctx.fail(node, f"bias shape {b.shape} != ({cout},)", ModelImportError)
    pads = ctx.pads(node, a, shape[2:], kernel, strides, dilations)
    ctx.emit(ir.Conv2D(**_io(ctx, node, x), weight=w, bias=b, strides=strides, pads=pads,
                       dilations=dilations, groups=group))


@handles("Gemm")
def _gemm(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, alpha=float_attr(1.0), beta=float_attr(1.0), transA=bool_attr(),
                  transB=bool_attr(), broadcast=bool_attr(1))
    x = ctx.activation(node, 0)
    _rank(ctx, node, x, (2,))
    if a["transA"] != 0:
        raise ctx.fail(node, f"transA={a['transA']} is not supported (only 0)")
    b = ctx.weight(node, 1, "B")
    if b.ndim != 2:
        raise ctx.fail(node, f"B must be 2-D, got shape {b.shape}", ModelImportError)
    w = (b if a["transB"] else b.T).astype(np.float64) * a["alpha"]
    w = ctx.float32(node, f"alpha * B (alpha={a['alpha']})", w)
    c = ctx.weight(node, 2, "C", optional=True)
    bias = None if c is None else ctx.float32(
        node, f"beta * C (beta={a['beta']})",
        _per_channel(ctx, node, c, w.shape[0], 2) * a["beta"])
    ctx.emit(ir.Dense(**_io(ctx, node, x), weight=w, bias=bias))


@handles("MatMul")
def _matmul(ctx: ImportContext, node: Any) -> None:
    ctx.attrs(node)
    x = ctx.activation(node, 0)
    _rank(ctx, node, x, (2,))
    b = ctx.weight(node, 1, "B")
    if b.ndim != 2:
        raise ctx.fail(node, f"B must be a 2-D constant, got shape {b.shape}")
    ctx.emit(ir.Dense(**_io(ctx, node, x), weight=b.T))


def _per_channel(ctx: ImportContext, node: Any, c: np.ndarray, channels: int,
                 rank: int) -> np.ndarray:
    """Float64 ``[channels]`` vector from a constant broadcasting along axis 1 only."""
    full = (1,) * (rank - c.ndim) + c.shape
    if c.ndim > rank or any(d != 1 for i, d in enumerate(full) if i != 1) \
            or full[1] not in (1, channels):
        raise ctx.fail(node, f"constant of shape {c.shape} is not a per-channel bias for "
                             f"{channels} channels")
    return np.broadcast_to(c.astype(np.float64).reshape(-1), (channels,))


@handles("Add")
def _add(ctx: ImportContext, node: Any) -> None:
    ctx.attrs(node)
    if len(node.input) != 2:
        raise ctx.fail(node, f"expected 2 inputs, got {len(node.input)}", ModelImportError)
    consts = [ctx.is_const(t) for t in node.input]
    if not any(consts):
        ctx.emit(ir.Add(**_io(ctx, node, ctx.activation(node, 0), ctx.activation(node, 1))))
        return
    if all(consts):
        raise ctx.fail(node, "both inputs are constants; constant folding is not supported")
    i = consts.index(False)
    x = ctx.activation(node, i)
    c = ctx.weight(node, 1 - i, "addend")
    layer = ctx.producer(x)
    if not isinstance(layer, (ir.Dense, ir.Conv2D)) or not ctx.sole_use(x):
        raise ctx.fail(node, f"adding constant {node.input[1 - i]!r} is supported only as a "
                             f"bias directly after MatMul/Gemm/Conv whose output has no "
                             f"other reader")
    shape = ctx.shapes[x]
    bias = _per_channel(ctx, node, c, shape[1], len(shape))
    old = np.zeros(shape[1]) if layer.bias is None else layer.bias.astype(np.float64)
    total = ctx.float32(node, f"bias of {layer.name!r} + addend {node.input[1 - i]!r}",
                        old + bias)
    ctx.rewrite(layer, replace(layer, bias=total, outputs=(node.output[0],)))


# ------------------------------------------------------------- pooling
def _pool(ctx: ImportContext, node: Any, cls: type, **extra: Any) -> None:
    a = ctx.attrs(node, **WINDOW_ATTRS, ceil_mode=bool_attr(), **extra)
    _unused_extra_outputs(ctx, node)
    x = ctx.activation(node, 0)
    shape = _rank(ctx, node, x, (4,))
    if a["kernel_shape"] is None:
        raise ctx.fail(node, "attribute kernel_shape is required", ModelImportError)
    kernel = ctx.ints(node, "kernel_shape", a["kernel_shape"], 2, 1)
    strides, dilations = window(ctx, node, a)
    if a["ceil_mode"] != 0:
        raise ctx.fail(node, f"ceil_mode={a['ceil_mode']} is not supported (only 0)")
    if dilations != (1, 1):
        raise ctx.fail(node, f"dilations={list(dilations)} is not supported (only [1, 1])")
    if a.get("storage_order", 0) != 0:
        raise ctx.fail(node, f"storage_order={a['storage_order']} is not supported (only 0)")
    if a["auto_pad"] in ("SAME_UPPER", "SAME_LOWER") and any(
            (-(-n // s) - 1) * s + k < n for n, k, s in zip(shape[2:], kernel, strides)):
        raise ctx.fail(node, f"auto_pad={a['auto_pad']} would need negative padding for input "
                             f"{shape[2:]}, kernel_shape {list(kernel)}, strides {list(strides)}")
    pads = ctx.pads(node, a, shape[2:], kernel, strides, (1, 1))
    if any(p >= kernel[i % 2] for i, p in enumerate(pads)):
        raise ctx.fail(node, f"pads {list(pads)} must be smaller than kernel_shape "
                             f"{list(kernel)}", ModelImportError)
    kw = {"count_include_pad": bool(a["count_include_pad"])} if cls is ir.AvgPool2D else {}
    ctx.emit(cls(**_io(ctx, node, x), kernel=kernel, strides=strides, pads=pads, **kw))


@handles("MaxPool")
def _maxpool(ctx: ImportContext, node: Any) -> None:
    _pool(ctx, node, ir.MaxPool2D, storage_order=bool_attr())


@handles("AveragePool")
def _avgpool(ctx: ImportContext, node: Any) -> None:
    _pool(ctx, node, ir.AvgPool2D, count_include_pad=bool_attr())


@handles("GlobalAveragePool")
def _gap(ctx: ImportContext, node: Any) -> None:
    ctx.attrs(node)
    x = ctx.activation(node, 0)
    _rank(ctx, node, x, (4,))
    ctx.emit(ir.GlobalAvgPool(**_io(ctx, node, x)))


# ---------------------------------------------------------- elementwise
@handles("Relu")
def _relu(ctx: ImportContext, node: Any) -> None:
    ctx.attrs(node)
    ctx.emit(ir.ReLU(**_io(ctx, node, ctx.activation(node, 0))))


@handles("Sigmoid")
def _sigmoid(ctx: ImportContext, node: Any) -> None:
    ctx.attrs(node)
    ctx.emit(ir.Sigmoid(**_io(ctx, node, ctx.activation(node, 0))))


@handles("Mul")
def _mul(ctx: ImportContext, node: Any) -> None:
    ctx.attrs(node)
    if len(node.input) != 2 or any(ctx.is_const(t) for t in node.input):
        raise ctx.fail(node, "Mul is supported between two activations only (a constant "
                             "factor is not folded)")
    ctx.emit(ir.Mul(**_io(ctx, node, ctx.activation(node, 0), ctx.activation(node, 1))))


@handles("LeakyRelu")
def _leaky_relu(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, alpha=float_attr(0.01))
    ctx.emit(ir.LeakyRelu(**_io(ctx, node, ctx.activation(node, 0)), alpha=a["alpha"]))


@handles("Clip")
def _clip(ctx: ImportContext, node: Any) -> None:
    """Opset < 11: bounds are the FLOAT attributes min/max; from 11: constant inputs 1, 2.

    Bounds given the other way (inputs before opset 11, attributes from 11) are
    refused, never dropped: the model would run unbounded.
    """
    if ctx.opset < 11:
        a = ctx.attrs(node, min=float_attr(float("-inf")), max=float_attr(float("inf")))
        extra = [t for t in node.input[1:] if t]
        if extra:
            raise ctx.fail(node, f"opset-{ctx.opset} Clip takes min/max as attributes, but "
                                 f"bound inputs {extra} are given (inputs need opset >= 11)",
                           ModelImportError)
        lo, hi = a["min"], a["max"]
    else:
        named = [a.name for a in node.attribute if a.name in ("min", "max")]
        if named:
            raise ctx.fail(node, f"opset-{ctx.opset} Clip takes min/max as inputs 1 and 2, but "
                                 f"attributes {named} are given (attributes need opset < 11)",
                           ModelImportError)
        ctx.attrs(node)
        if len(node.input) > 3:
            raise ctx.fail(node, f"expected at most 3 inputs, got {len(node.input)}",
                           ModelImportError)
        bounds = [ctx.weight(node, i, what, optional=True) for i, what in ((1, "min"), (2, "max"))]
        for arr, what in zip(bounds, ("min", "max")):
            if arr is not None and arr.size != 1:
                raise ctx.fail(node, f"{what} must be a scalar, got shape {arr.shape}",
                               ModelImportError)
        lo = float("-inf") if bounds[0] is None else float(bounds[0].reshape(()))
        hi = float("inf") if bounds[1] is None else float(bounds[1].reshape(()))
    if lo > hi:
        raise ctx.fail(node, f"min={lo} > max={hi}", ModelImportError)
    ctx.emit(ir.Clip(**_io(ctx, node, ctx.activation(node, 0)), min_value=lo, max_value=hi))


@handles("BatchNormalization")
def _batchnorm(ctx: ImportContext, node: Any) -> None:
    """Inference BN; its scale and, where it will fold, the folded layer must be finite."""
    a = ctx.attrs(node, epsilon=float_attr(1e-5), momentum=float_attr(0.9),
                  spatial=bool_attr(1), training_mode=bool_attr(0), is_test=bool_attr(1),
                  consumed_inputs=ints_attr())
    if a["training_mode"] != 0 or a["spatial"] != 1:
        raise ctx.fail(node, f"training_mode={a['training_mode']} / spatial={a['spatial']} "
                             f"not supported (need 0 / 1)")
    _unused_extra_outputs(ctx, node)
    x = ctx.activation(node, 0)
    _rank(ctx, node, x, (2, 4))
    vecs = [ctx.weight(node, i, w) for i, w in enumerate(("scale", "B", "mean", "var"), 1)]
    c = ctx.shapes[x][1]
    for arr, what in zip(vecs, ("scale", "B", "mean", "var")):
        if arr.shape != (c,):
            raise ctx.fail(node, f"{what} has shape {arr.shape}, expected ({c},)",
                           ModelImportError)
    eps = a["epsilon"]
    denom = vecs[3].astype(np.float64) + eps
    if np.any(denom <= 0) or np.any(vecs[3] + np.float32(eps) <= 0):
        i = int(np.argmax((denom <= 0) | (vecs[3] + np.float32(eps) <= 0)))
        raise ctx.fail(node, f"var + epsilon must be > 0, got var[{i}] = {vecs[3][i]} and "
                             f"epsilon = {eps}", ModelImportError)
    s = vecs[0].astype(np.float64) / np.sqrt(denom)
    ctx.float32(node, "scale / sqrt(var + epsilon)", s)
    ctx.float32(node, "B - mean * scale / sqrt(var + epsilon)", vecs[1] - vecs[2] * s)
    bn = ir.BatchNorm(**_io(ctx, node, x), scale=vecs[0], bias=vecs[1], mean=vecs[2],
                      var=vecs[3], epsilon=eps)
    layer = ctx.producer(x)
    if isinstance(layer, (ir.Conv2D, ir.Dense)) and ctx.sole_use(x):
        try:  # canonicalize will fold it: the folded weights must be finite too
            fold(layer, bn)
        except GraphError as e:
            raise ModelImportError(str(e)) from None
    ctx.emit(bn)


@handles("Softmax")
def _softmax(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, axis=int_attr(-1 if ctx.opset >= 13 else 1))
    x = ctx.activation(node, 0)
    shape = ctx.shapes[x]
    axis = a["axis"] + len(shape) if a["axis"] < 0 else a["axis"]
    if not 1 <= axis < len(shape):
        raise ctx.fail(node, f"axis={a['axis']} must be a non-batch axis of shape {shape}")
    if ctx.opset < 13 and any(d != 1 for d in shape[axis + 1:]):
        raise ctx.fail(node, f"opset-{ctx.opset} Softmax over flattened dims {shape[axis:]} "
                             f"is not supported")
    ctx.emit(ir.Softmax(**_io(ctx, node, x), axis=axis))


@handles("Dropout")
def _dropout(ctx: ImportContext, node: Any) -> None:
    ctx.attrs(node, ratio=float_attr(0.5), seed=int_attr(0), is_test=bool_attr(1),
              consumed_inputs=ints_attr())
    _unused_extra_outputs(ctx, node)
    mode = ctx.const(node, 2, "training_mode", optional=True)
    if mode is not None and bool(np.any(mode)):
        raise ctx.fail(node, "training_mode=True is not supported")
    ctx.emit(ir.Dropout(**_io(ctx, node, ctx.activation(node, 0))))


@handles("Identity")
def _identity(ctx: ImportContext, node: Any) -> None:
    ctx.attrs(node)
    ctx.emit(ir.Identity(**_io(ctx, node, ctx.activation(node, 0))))


@handles("Constant")
def _constant(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, value=tensor_attr(), value_float=float_attr(finite=False),
                  value_floats=floats_attr(finite=False), value_int=int_attr(),
                  value_ints=ints_attr())  # finiteness: check_finite below names the tensor
    given = [(k, v) for k, v in a.items() if v is not None]
    if len(given) != 1:
        raise ctx.fail(node, f"needs exactly one of value, value_float(s), value_int(s); got "
                             f"{[k for k, _ in given]}", ModelImportError)
    key, value = given[0]
    dtype = np.float32 if key.startswith("value_float") else np.int64
    arr = value if key == "value" else np.asarray(value, dtype=dtype)
    try:
        check_finite(node.output[0], arr)
    except ModelImportError as e:
        raise ctx.fail(node, str(e), ModelImportError) from None
    ctx.consts[node.output[0]] = arr


# The layout handlers (Concat, Flatten, Reshape, Transpose) register themselves.
from fxp.frontends import onnx_layout as _layout  # noqa: E402,F401
