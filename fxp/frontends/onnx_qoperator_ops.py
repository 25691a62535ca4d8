"""Per-operator handlers of the onnxruntime QOperator importer.

Each handler reads one QOperator node into the importer state (:class:`_Q`
in :mod:`fxp.frontends.onnx_qoperator`): IR nodes, tensor specs, layer plans
and the integer codes the import must reproduce.  See that module's
docstring for the supported operators and their arithmetic.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import ModelImportError, PrecisionWarning
from fxp.frontends.onnx_attrs import bool_attr, float_attr, int_attr
from fxp.frontends.onnx_ops import HANDLERS, WINDOW_ATTRS, window
from fxp.frontends.onnx_qoperator import _MS, _PASS_THROUGH, _Q, _UINT8
from fxp.ir import nodes as ir
from fxp.plan.plan import LayerPlan, RequantScheme, TensorSpec

__all__ = ["dispatch"]


def dispatch(q: _Q, node: Any) -> None:
    """Read one node of a QOperator graph (or a folded QDQ graph) into ``q``."""
    from fxp.frontends.onnx_qlinear_ops import QLINEAR_HANDLERS, float_op

    ctx, op = q.ctx, node.op_type
    if node.domain not in ("", "ai.onnx", _MS):
        raise ctx.fail(node, f"domain {node.domain[:200]!r} is not supported")
    if op == "Constant":
        HANDLERS["Constant"](ctx, node)
        return
    if not node.input or not node.input[0]:
        raise ctx.fail(node, "input 0 is missing", ModelImportError)
    if node.domain == _MS and op not in ("QGemm", "QLinearSoftmax", *QLINEAR_HANDLERS):
        raise ctx.fail(node, f"com.microsoft op {op!r} is not supported; supported: QGemm, "
                             f"QLinearSoftmax, {', '.join(QLINEAR_HANDLERS)}")
    fn = {"QuantizeLinear": _quantize_linear, "DequantizeLinear": _dequantize_linear,
          "QLinearConv": _qlinear_conv, "QGemm": _qgemm, "QLinearMatMul": _qlinear_matmul,
          "QLinearSoftmax": _qlinear_softmax, "Softmax": _softmax, **QLINEAR_HANDLERS}.get(op)
    if fn is not None:
        fn(q, node)
    elif any(t in q.deq or q.spec.get(q.ir_name(t), 0) is None for t in node.input if t):
        float_op(q, node)  # reads dequantized or float-island tensors
    elif op in _PASS_THROUGH:
        _pass_through(q, node)
    else:
        raise ctx.fail(node, f"op_type {op[:200]!r} is not supported in a quantized model")


def _quantize_linear(q: _Q, node: Any) -> None:
    ctx = q.ctx
    a = ctx.attrs(node, axis=int_attr(1), saturate=bool_attr(1), block_size=int_attr(0),
                  output_dtype=int_attr(0), precision=int_attr(0))
    if a["block_size"]:
        raise ctx.fail(node, "blocked quantization is not supported")
    if len(node.input) < 3 or not node.input[2]:
        z_type = _UINT8
    else:
        z_type = None
    s = q.scale(node, 1, "y_scale")
    z, fmt = q.zero_point(node, 2, "y_zero_point", optional_type=z_type)
    spec = TensorSpec(fmt, (float(s[0]),), int(z[0]))
    if node.input[0] != q.graph_input:
        from fxp.frontends.onnx_qlinear_ops import quantize_island

        quantize_island(q, node, spec)
        return
    if q.input_spec is not None:
        raise ctx.fail(node, "the graph input is quantized twice")
    q.input_spec = spec
    q.spec[q.graph_input] = q.input_spec
    q.alias[node.output[0]] = q.graph_input
    q.tensor_map[node.output[0]] = q.graph_input


def _dequantize_linear(q: _Q, node: Any) -> None:
    ctx = q.ctx
    a = ctx.attrs(node, axis=int_attr(1), block_size=int_attr(0))
    if a["block_size"]:
        raise ctx.fail(node, "blocked quantization is not supported")
    x_ir = q.ir_name(node.input[0])
    if x_ir not in ctx.shapes:
        raise ctx.fail(node, f"input {node.input[0]!r} is not produced before this node",
                       ModelImportError)
    spec = q.spec.get(x_ir)
    if spec is not None:
        z_type = _UINT8 if len(node.input) < 3 or not node.input[2] else None
        s = q.scale(node, 1, "x_scale")
        z, fmt = q.zero_point(node, 2, "x_zero_point", optional_type=z_type)
        q.check_same(node, TensorSpec(fmt, (float(s[0]),), int(z[0])), spec, node.input[0])
    elif not isinstance(ctx.producer(x_ir), ir.Softmax):
        raise ctx.fail(node, f"input {node.input[0]!r} is not quantized")
    q.alias[node.output[0]] = x_ir
    q.deq[node.output[0]] = x_ir


def _softmax(q: _Q, node: Any) -> None:
    x_ir = q.ir_name(node.input[0])
    if x_ir not in q.ctx.shapes:
        raise q.ctx.fail(node, f"input {node.input[0]!r} is not produced before this node",
                         ModelImportError)
    HANDLERS["Softmax"](q.ctx, q.renamed(node))
    q.spec[node.output[0]] = None


def _qlinear_softmax(q: _Q, node: Any) -> None:
    ctx = q.ctx
    a = ctx.attrs(node, axis=int_attr(-1), opset=int_attr(13))
    x, xs = q.qinput(node, 0)
    q.check_same(node, q.act_spec(node, 1, 2, "X"), xs, node.input[0])
    shape = ctx.shapes[x]
    axis = a["axis"] + len(shape) if a["axis"] < 0 else a["axis"]
    if not 1 <= axis < len(shape) or (a["opset"] < 13 and axis != len(shape) - 1):
        raise ctx.fail(node, f"axis={a['axis']} (opset {a['opset']}) on shape {shape} is not "
                             f"supported")
    warnings.warn(f"node {ctx.node_name!r}: QLinearSoftmax is imported as a float Softmax "
                  f"(onnxruntime uses an 8-bit lookup table); its input codes stay bit-exact, "
                  f"its probabilities do not", PrecisionWarning, stacklevel=7)
    q.emit(node.output[0], ir.Softmax(name=ctx.node_name, inputs=(x,), outputs=(node.output[0],),
                                      axis=axis), None)


def _pass_through(q: _Q, node: Any) -> None:
    ctx = q.ctx
    x_ir = q.ir_name(node.input[0]) if node.input else ""
    spec = q.spec.get(x_ir)
    if x_ir not in ctx.shapes or spec is None:
        raise ctx.fail(node, f"{node.op_type} is supported on int8/uint8 tensors produced by "
                             f"quantized operators; input {node.input[0] if node.input else ''!r}"
                             f" is not one")
    HANDLERS[node.op_type](ctx, q.renamed(node))
    out = ctx.nodes[-1]
    if out.output != node.output[0]:  # pragma: no cover - handlers write output 0
        raise ctx.fail(node, "unexpected handler output", ModelImportError)
    if isinstance(out, ir.Identity):  # Identity, identity Reshape/Transpose: an alias
        ctx.unemit_last()
        q.alias[node.output[0]] = x_ir
        q.tensor_map[node.output[0]] = x_ir
        return
    q.spec[out.output] = spec
    q.tensor_map[node.output[0]] = out.output


def _weights(q: _Q, node: Any, wi: int, what: str, transpose: bool = False
             ) -> tuple[np.ndarray, TensorSpec, np.ndarray, np.ndarray]:
    """Weight codes (int64, output channels first), spec, float weights, scales [Co]."""
    ctx = q.ctx
    w = ctx.const(node, wi, what)
    if w.dtype not in (np.dtype("i1"), np.dtype("u1")):
        raise ctx.fail(node, f"{what} {node.input[wi]!r} has type {w.dtype}; expected int8 or "
                             f"uint8")
    codes = w.astype(np.int64)
    if transpose:
        codes = codes.T
    co = codes.shape[0]
    s = q.scale(node, wi + 1, f"{what} scale", size=co)
    z, fmt = q.zero_point(node, wi + 2, f"{what} zero point", size=co)
    if fmt.signed != (w.dtype == np.dtype("i1")):
        raise ctx.fail(node, f"{what} zero point type differs from the weight type",
                       ModelImportError)
    zp = int(z[0])
    if np.any(z != z[0]):  # per-channel zero points: store code - zp[c] (9 bits), zp 0
        codes = codes - np.broadcast_to(z, (co,)).reshape((-1,) + (1,) * (codes.ndim - 1))
        fmt, zp = QFormat.integer(9), 0
    per_channel = s.size > 1
    spec = TensorSpec(fmt, tuple(float(v) for v in s), zp, axis=0 if per_channel else None)
    sc = np.broadcast_to(s.astype(np.float64), (co,))
    shape = (-1,) + (1,) * (codes.ndim - 1)
    with np.errstate(over="ignore"):
        wf = ((codes - zp).astype(np.float64) * sc.reshape(shape)).astype(np.float32)
    if not np.all(np.isfinite(wf)):
        raise ctx.fail(node, f"initializer {node.input[wi]!r}: dequantized weights overflow "
                             f"float32 (scale too large)", ModelImportError)
    return codes, spec, wf, sc


def _bias(q: _Q, node: Any, bi: int, co: int, sx: float, sw: np.ndarray
          ) -> tuple[np.ndarray | None, np.ndarray | None]:
    ctx = q.ctx
    if bi >= len(node.input) or not node.input[bi]:
        return None, None
    b = ctx.const(node, bi, "bias")
    if b.dtype != np.int32:
        raise ctx.fail(node, f"bias {node.input[bi]!r} must be int32, got {b.dtype}",
                       ModelImportError)
    flat = b.reshape(-1).astype(np.int64)
    if b.ndim > 2 or (b.ndim == 2 and b.shape[0] != 1) or flat.size != co:
        raise ctx.fail(node, f"bias {node.input[bi]!r} has shape {b.shape}; only a per-output "
                             f"vector ({co},) is supported")
    bscale = np.float64(sx) * sw  # the float64 product compile_plan divides by
    with np.errstate(over="ignore"):
        bf = (flat.astype(np.float64) * bscale).astype(np.float32)
    if not np.all(np.isfinite(bf)):
        raise ctx.fail(node, f"initializer {node.input[bi]!r}: dequantized bias overflows "
                             f"float32", ModelImportError)
    return flat, bf


def _out_spec(q: _Q, node: Any, si: int, zi: int) -> TensorSpec:
    return q.act_spec(node, si, zi, "y")


def _layer(q: _Q, node: Any, irnode: ir.Node, w_codes: np.ndarray, w_spec: TensorSpec,
           b_codes: np.ndarray | None, y: TensorSpec, w_name: str, b_name: str | None) -> None:
    sx = np.float32(q.spec[irnode.inputs[0]].scales[0])
    with np.errstate(all="ignore"):  # onnxruntime's float32(float32(s_x * s_w) / s_y)
        ratio = (sx * np.asarray(w_spec.scales, np.float32)) / np.float32(y.scales[0])
    bad = ~(np.isfinite(ratio) & (ratio >= np.finfo(np.float32).tiny))
    if np.any(bad):
        i = int(np.argmax(bad))
        raise q.ctx.fail(node, f"requantization scale s_x * s_w / s_y = {sx} * "
                               f"{w_spec.scales[i]} / {y.scales[0]} is {ratio[i]} in float32 "
                               f"(must be a normal positive float32)", ModelImportError)
    if y.zero_point == y.fmt.min_code:
        from dataclasses import replace
        irnode = replace(irnode, fused_activation="relu")
    q.emit(node.output[0], irnode, y)
    q.layers.append(LayerPlan(irnode.name, weight=w_spec, output=y, acc_bits=32,
                              acc_overflow="wrap", output_overflow="saturate",
                              requant=RequantScheme.FLOAT32))
    q.expect.append((irnode.name, w_name, w_codes, b_codes, b_name))


def _qlinear_conv(q: _Q, node: Any) -> None:
    ctx = q.ctx
    a = ctx.attrs(node, **WINDOW_ATTRS, group=int_attr(1, minimum=1))
    x, xs = q.qinput(node, 0)
    q.check_same(node, q.act_spec(node, 1, 2, "x"), xs, node.input[0])
    shape = ctx.shapes[x]
    if len(shape) != 4:
        raise ctx.fail(node, f"input {node.input[0]!r} has shape {shape}; only 2-D "
                             f"convolution (NCHW) is supported")
    w_raw = ctx.const(node, 3, "w")
    if w_raw.ndim != 4:
        raise ctx.fail(node, f"only 2-D convolution is supported; w has shape {w_raw.shape}")
    codes, wspec, wf, sw = _weights(q, node, 3, "w")
    y = _out_spec(q, node, 6, 7)
    b_codes, bf = _bias(q, node, 8, codes.shape[0], xs.scales[0], sw)
    kernel = tuple(int(k) for k in codes.shape[2:])
    if a["kernel_shape"] is not None and tuple(a["kernel_shape"]) != kernel:
        raise ctx.fail(node, f"kernel_shape={list(a['kernel_shape'])} disagrees with w shape "
                             f"{codes.shape}", ModelImportError)
    strides, dilations = window(ctx, node, a)
    group, cin, cout = a["group"], shape[1], codes.shape[0]
    if cin % group or cout % group or codes.shape[1] * group != cin:
        raise ctx.fail(node, f"group={group} does not fit input channels {cin} and w shape "
                             f"{codes.shape}", ModelImportError)
    pads = ctx.pads(node, a, shape[2:], kernel, strides, dilations)
    conv = ir.Conv2D(name=ctx.node_name, inputs=(x,), outputs=(node.output[0],), weight=wf,
                     bias=bf, strides=strides, pads=pads, dilations=dilations, groups=group)
    _layer(q, node, conv, codes, wspec, b_codes, y, node.input[3],
           node.input[8] if b_codes is not None else None)


def _qgemm(q: _Q, node: Any) -> None:
    ctx = q.ctx
    a = ctx.attrs(node, alpha=float_attr(1.0), transA=bool_attr(), transB=bool_attr())
    if a["alpha"] != 1.0:
        raise ctx.fail(node, f"alpha={a['alpha']} is not supported (only 1.0)")
    if a["transA"] != 0:
        raise ctx.fail(node, f"transA={a['transA']} is not supported (only 0)")
    x, xs = q.qinput(node, 0)
    q.check_same(node, q.act_spec(node, 1, 2, "a"), xs, node.input[0])
    if len(ctx.shapes[x]) != 2:
        raise ctx.fail(node, f"input {node.input[0]!r} has shape {ctx.shapes[x]}; QGemm needs "
                             f"2-D [N, K]")
    b_raw = ctx.const(node, 3, "B")
    if b_raw.ndim != 2:
        raise ctx.fail(node, f"B must be 2-D, got {b_raw.shape}", ModelImportError)
    if len(node.input) < 9 or not node.input[7]:
        raise ctx.fail(node, "QGemm without y_scale (float output) is not supported")
    codes, wspec, wf, sw = _weights(q, node, 3, "B", transpose=not a["transB"])
    if codes.shape[1] != ctx.shapes[x][1]:
        raise ctx.fail(node, f"B has {codes.shape[1]} inputs, A has {ctx.shapes[x][1]}",
                       ModelImportError)
    y = _out_spec(q, node, 7, 8)
    b_codes, bf = _bias(q, node, 6, codes.shape[0], xs.scales[0], sw)
    dense = ir.Dense(name=ctx.node_name, inputs=(x,), outputs=(node.output[0],), weight=wf,
                     bias=bf)
    _layer(q, node, dense, codes, wspec, b_codes, y, node.input[3],
           node.input[6] if b_codes is not None else None)


def _qlinear_matmul(q: _Q, node: Any) -> None:
    ctx = q.ctx
    ctx.attrs(node)
    x, xs = q.qinput(node, 0)
    q.check_same(node, q.act_spec(node, 1, 2, "a"), xs, node.input[0])
    if len(ctx.shapes[x]) != 2:
        raise ctx.fail(node, f"input {node.input[0]!r} has shape {ctx.shapes[x]}; only 2-D "
                             f"[N, K] activations are supported")
    b_raw = ctx.const(node, 3, "b")
    if b_raw.ndim != 2:
        raise ctx.fail(node, f"b must be a 2-D constant, got {b_raw.shape}")
    codes, wspec, wf, sw = _weights(q, node, 3, "b", transpose=True)
    y = _out_spec(q, node, 6, 7)
    dense = ir.Dense(name=ctx.node_name, inputs=(x,), outputs=(node.output[0],), weight=wf)
    _layer(q, node, dense, codes, wspec, None, y, node.input[3], None)


# --------------------------------------------------------------------------- verification
