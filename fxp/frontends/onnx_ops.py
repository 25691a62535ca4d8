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

from fxp.errors import ModelImportError
from fxp.frontends.onnx_context import ImportContext
from fxp.frontends.onnx_tensors import check_finite
from fxp.ir import nodes as ir

__all__ = ["HANDLERS", "get_handler"]

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


def _rank(ctx: ImportContext, node: Any, x: str, ranks: tuple[int, ...]) -> tuple:
    shape = ctx.shapes[x]
    if len(shape) not in ranks:
        raise ctx.fail(node, f"input {x!r} has shape {shape}; supported ranks: {ranks}")
    return shape


# ------------------------------------------------------------- layers
@handles("Conv")
def _conv(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                  pads=None, strides=None)
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
    strides = ctx.ints(node, "strides", a["strides"] or (1, 1), 2, 1)
    dilations = ctx.ints(node, "dilations", a["dilations"] or (1, 1), 2, 1)
    group, cin, cout = a["group"], shape[1], w.shape[0]
    if group < 1 or cin % group or cout % group or w.shape[1] * group != cin:
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
    a = ctx.attrs(node, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=1)
    x = ctx.activation(node, 0)
    _rank(ctx, node, x, (2,))
    if a["transA"] != 0:
        raise ctx.fail(node, f"transA={a['transA']} is not supported (only 0)")
    b = ctx.weight(node, 1, "B")
    if b.ndim != 2:
        raise ctx.fail(node, f"B must be 2-D, got shape {b.shape}", ModelImportError)
    w = (b if a["transB"] else b.T).astype(np.float64) * a["alpha"]
    c = ctx.weight(node, 2, "C", optional=True)
    bias = None if c is None else _per_channel(ctx, node, c, w.shape[0], 2) * a["beta"]
    ctx.emit(ir.Dense(**_io(ctx, node, x), weight=w.astype(np.float32),
                      bias=None if bias is None else bias.astype(np.float32)))


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
    ctx.attrs(node, axis=None, broadcast=None)
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
    ctx.rewrite(layer, replace(layer, bias=(old + bias).astype(np.float32),
                               outputs=(node.output[0],)))


# ------------------------------------------------------------- pooling
def _pool(ctx: ImportContext, node: Any, cls: type, **extra: Any) -> None:
    a = ctx.attrs(node, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None,
                  pads=None, strides=None, **extra)
    _unused_extra_outputs(ctx, node)
    x = ctx.activation(node, 0)
    shape = _rank(ctx, node, x, (4,))
    if a["kernel_shape"] is None:
        raise ctx.fail(node, "attribute kernel_shape is required", ModelImportError)
    kernel = ctx.ints(node, "kernel_shape", a["kernel_shape"], 2, 1)
    strides = ctx.ints(node, "strides", a["strides"] or (1, 1), 2, 1)
    if a["ceil_mode"] != 0:
        raise ctx.fail(node, f"ceil_mode={a['ceil_mode']} is not supported (only 0)")
    if a["dilations"] not in (None, (1, 1)):
        raise ctx.fail(node, f"dilations={list(a['dilations'])} is not supported (only [1, 1])")
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
    _pool(ctx, node, ir.MaxPool2D, storage_order=0)


@handles("AveragePool")
def _avgpool(ctx: ImportContext, node: Any) -> None:
    _pool(ctx, node, ir.AvgPool2D, count_include_pad=0)


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


@handles("Clip")
def _clip(ctx: ImportContext, node: Any) -> None:
    if ctx.opset < 11:
        a = ctx.attrs(node, min=float("-inf"), max=float("inf"))
        lo, hi = a["min"], a["max"]
    else:
        ctx.attrs(node)
        bounds = [ctx.weight(node, i, what, optional=True) for i, what in ((1, "min"), (2, "max"))]
        for arr, what in zip(bounds, ("min", "max")):
            if arr is not None and arr.size != 1:
                raise ctx.fail(node, f"{what} must be a scalar, got shape {arr.shape}")
        lo = float("-inf") if bounds[0] is None else float(bounds[0].reshape(()))
        hi = float("inf") if bounds[1] is None else float(bounds[1].reshape(()))
    if lo > hi:
        raise ctx.fail(node, f"min={lo} > max={hi}", ModelImportError)
    ctx.emit(ir.Clip(**_io(ctx, node, ctx.activation(node, 0)), min_value=lo, max_value=hi))


@handles("BatchNormalization")
def _batchnorm(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, epsilon=1e-5, momentum=0.9, spatial=1, training_mode=0,
                  is_test=1, consumed_inputs=None)
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
    if np.any(vecs[3].astype(np.float64) + a["epsilon"] <= 0):
        raise ctx.fail(node, "var + epsilon must be > 0", ModelImportError)
    ctx.emit(ir.BatchNorm(**_io(ctx, node, x), scale=vecs[0], bias=vecs[1], mean=vecs[2],
                          var=vecs[3], epsilon=a["epsilon"]))


@handles("Softmax")
def _softmax(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, axis=-1 if ctx.opset >= 13 else 1)
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
    ctx.attrs(node, ratio=0.5, seed=0, is_test=1, consumed_inputs=None)
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
    a = ctx.attrs(node, value=None, value_float=None, value_floats=None, value_int=None,
                  value_ints=None)
    given = [(k, v) for k, v in a.items() if v is not None]
    if len(given) != 1:
        raise ctx.fail(node, f"needs exactly one of value, value_float(s), value_int(s); got "
                             f"{[k for k, _ in given]}")
    key, value = given[0]
    dtype = np.float32 if key.startswith("value_float") else np.int64
    arr = value if key == "value" else np.asarray(value, dtype=dtype)
    try:
        check_finite(node.output[0], arr)
    except ModelImportError as e:
        raise ctx.fail(node, str(e), ModelImportError) from None
    ctx.consts[node.output[0]] = arr


# ------------------------------------------------------------- layout
@handles("Concat")
def _concat(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, axis=None)
    xs = [ctx.activation(node, i) for i in range(len(node.input))]
    rank = len(ctx.shapes[xs[0]])
    if a["axis"] is None:
        raise ctx.fail(node, "attribute axis is required", ModelImportError)
    axis = a["axis"] + rank if a["axis"] < 0 else a["axis"]
    if not 1 <= axis < rank:
        raise ctx.fail(node, f"axis={a['axis']} is not a non-batch axis for rank {rank}")
    ctx.emit(ir.Concat(**_io(ctx, node, *xs), axis=axis))


@handles("Flatten")
def _flatten(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, axis=1)
    x = ctx.activation(node, 0)
    rank = len(ctx.shapes[x])
    axis = a["axis"] + rank if a["axis"] < 0 else a["axis"]
    if axis != 1:
        raise ctx.fail(node, f"axis={a['axis']} is not supported; only 1 (keep the batch)")
    ctx.emit(ir.Flatten(**_io(ctx, node, x)))


@handles("Reshape")
def _reshape(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, allowzero=0, shape=None, consumed_inputs=None)
    x = ctx.activation(node, 0)
    target = a["shape"] if a["shape"] is not None else ctx.const(node, 1, "shape")
    target = [int(v) for v in np.asarray(target).reshape(-1)]
    src = ctx.shapes[x]
    size = int(np.prod(src[1:], dtype=np.int64))
    bad = ctx.fail(node, f"target shape {target} for input shape {src} does not keep the "
                         f"batch dimension first; only per-sample reshapes are supported")
    if not target or (a["allowzero"] and 0 in target):
        raise bad
    rest = [src[i + 1] if (d == 0 and i + 1 < len(src)) else d
            for i, d in enumerate(target[1:])]
    if target[0] == -1:
        if -1 in rest or int(np.prod(rest, dtype=np.int64)) != size:
            raise bad
    elif target[0] in (0, 1) or target[0] == ctx.batch:
        if rest.count(-1) > 1:
            raise bad
        if -1 in rest:
            known = int(np.prod([d for d in rest if d != -1], dtype=np.int64))
            if known <= 0 or size % known:
                raise bad
            rest[rest.index(-1)] = size // known
    else:
        raise bad
    if any(d < 1 for d in rest) or int(np.prod(rest, dtype=np.int64)) != size:
        raise bad
    cls = {"shape": tuple(rest)} if len(rest) != 1 else {}
    ctx.emit((ir.Reshape if cls else ir.Flatten)(**_io(ctx, node, x), **cls))


@handles("Transpose")
def _transpose(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, perm=None)
    x = ctx.activation(node, 0)
    src = ctx.shapes[x]
    perm = list(a["perm"]) if a["perm"] is not None else list(range(len(src)))[::-1]
    if sorted(perm) != list(range(len(src))):
        raise ctx.fail(node, f"perm={perm} is not a permutation of {len(src)} axes",
                       ModelImportError)
    moved = [p for p in perm if p == 0 or src[p] != 1]
    if perm[0] != 0 or moved != sorted(moved):
        raise ctx.fail(node, f"perm={perm} on shape {src} moves data; only layout-preserving "
                             f"transposes (moving size-1 dims) are supported")
    ctx.emit(ir.Reshape(**_io(ctx, node, x), shape=tuple(src[p] for p in perm[1:])))
