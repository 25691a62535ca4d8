"""Handlers of the quantized importer for non-weighted ops, activations and float islands.

Integer ops without weights (QOperator, or what :func:`~fxp.frontends.onnx_qdq.fold_qdq`
made of a QDQ group): ``QLinearAdd``, ``QLinearAveragePool``,
``QLinearGlobalAveragePool``, ``QLinearConcat``, ``QLinearSigmoid``,
``QLinearLeakyRelu``, ``QLinearMul``.  Each becomes its float IR twin (``Add``,
``AvgPool2D``, ``GlobalAvgPool``, ``Concat``, ``Sigmoid``, ``LeakyRelu``, ``Mul``:
numpy broadcasting, e.g. an SE gate) with a plan entry
``LayerPlan(output=<int8/uint8 spec>, requant="float32")``: the engine computes
it with onnxruntime's x86 arithmetic (:mod:`fxp.ops.qlinear`,
:mod:`fxp.ops.qlinear_pool`).

Dequantized tensors (``DequantizeLinear`` of an activation) feed float ops:

* ``DQ -> Relu | Clip | MaxPool | Flatten | Reshape -> Q`` with the same
  scale and zero point on both sides: the op runs on the codes (no plan entry);
* ``DQ -> Relu | Clip -> Q`` with another output quantization: a quantized
  activation, ``LayerPlan(output=<spec>, requant="float32")``;
* anything else is a float island ``DQ -> op(s) -> Q``: each op becomes a
  float IR node with ``LayerPlan(float_layer=True)``, the last one's
  ``output`` is the QuantizeLinear's spec (the engine dequantizes as
  onnxruntime's DequantizeLinear, runs float, quantizes as its QuantizeLinear).
"""

from __future__ import annotations

from typing import Any

from fxp.errors import ModelImportError, UnsupportedOpError
from fxp.frontends.onnx_attrs import int_attr
from fxp.frontends.onnx_ops import HANDLERS
from fxp.frontends.onnx_qoperator import _Q
from fxp.ir import nodes as ir
from fxp.plan.plan import LayerPlan, RequantScheme, TensorSpec

__all__ = ["ISLAND_OPS", "QLINEAR_HANDLERS", "float_op", "quantize_island"]

ISLAND_OPS = ("BatchNormalization", "Relu", "Clip", "LeakyRelu", "Sigmoid", "MaxPool",
              "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Add", "Mul",
              "Concat", "Conv", "Gemm")
"""Float ops the importer runs on dequantized tensors (float islands)."""
_CODE_OPS = ("Relu", "Clip", "MaxPool", "Flatten", "Reshape")


def _twin(q: _Q, node: Any, op: str, inputs: list[str], drop: tuple[str, ...] = ()) -> Any:
    """A float ONNX node ``op`` reading IR tensors ``inputs``, with ``node``'s attributes."""
    n = type(node)()
    n.op_type, n.name = op, node.name
    n.input.extend(inputs)
    n.output.append(node.output[0])
    n.attribute.extend(a for a in node.attribute if a.name not in drop)
    return n


def _emit_quantized(q: _Q, node: Any, twin: Any, y: TensorSpec, *,
                    floor_relu: bool = False) -> None:
    """Emit ``twin`` with plan entry ``y``.

    ``floor_relu``: when ``y``'s zero point is its lowest code the output holds no
    value below 0 (onnxruntime's quantizer folds a following ReLU into that
    range), so the float view gets an explicit ``ReLU`` after the node; its codes
    pass through unchanged (the clamp is already the saturation).
    """
    ctx = q.ctx
    HANDLERS[twin.op_type](ctx, twin)
    out = ctx.nodes[-1].output
    q.spec[out] = y
    q.layers.append(LayerPlan(ctx.node_name, output=y, requant=RequantScheme.FLOAT32))
    if floor_relu and y.zero_point == y.fmt.min_code:
        relu = ir.ReLU(name=f"{ctx.node_name}/relu", inputs=(out,), outputs=(f"{out}/relu",))
        ctx.emit(relu)
        out = relu.output
        q.spec[out] = y
        q.alias[node.output[0]] = out
    q.tensor_map[node.output[0]] = out


def _qin(q: _Q, node: Any, i: int, si: int, zi: int, what: str) -> str:
    x, xs = q.qinput(node, i)
    q.check_same(node, q.act_spec(node, si, zi, what), xs, node.input[i])
    return x


def _channels_last(q: _Q, node: Any) -> None:
    a = q.ctx.attrs(node, channels_last=int_attr(0))
    if a["channels_last"]:
        raise q.ctx.fail(node, "channels_last=1 is not supported (only NCHW)")


def _qlinear_binary(q: _Q, node: Any) -> None:
    q.ctx.attrs(node)
    if len(node.input) != 8:
        raise q.ctx.fail(node, f"expected 8 inputs, got {len(node.input)}", ModelImportError)
    a = _qin(q, node, 0, 1, 2, "A")
    b = _qin(q, node, 3, 4, 5, "B")
    op = node.op_type.removeprefix("QLinear")  # Add, or Mul (numpy broadcasting)
    if op == "Add" and q.ctx.shapes[a] != q.ctx.shapes[b]:
        raise q.ctx.fail(node, f"broadcasting {q.ctx.shapes[a]} + {q.ctx.shapes[b]} is not "
                               f"supported (equal shapes only)")
    _emit_quantized(q, node, _twin(q, node, op, [a, b]), q.act_spec(node, 6, 7, "C"),
                    floor_relu=op == "Add")


def _qlinear_pool(q: _Q, node: Any) -> None:
    x = _qin(q, node, 0, 1, 2, "X")
    y = q.act_spec(node, 3, 4, "Y")
    op = "AveragePool" if node.op_type == "QLinearAveragePool" else "GlobalAveragePool"
    if op == "GlobalAveragePool":
        _channels_last(q, node)
    else:
        ch = [a for a in node.attribute if a.name == "channels_last"]
        if ch and ch[0].i:
            raise q.ctx.fail(node, "channels_last=1 is not supported (only NCHW)")
    _emit_quantized(q, node, _twin(q, node, op, [x], drop=("channels_last",)), y)


def _qlinear_concat(q: _Q, node: Any) -> None:
    if len(node.input) < 5 or (len(node.input) - 2) % 3:
        raise q.ctx.fail(node, f"expected Y_scale, Y_zero_point and (X, scale, zero point) "
                               f"triples, got {len(node.input)} inputs", ModelImportError)
    y = q.act_spec(node, 0, 1, "Y")
    xs = [_qin(q, node, i, i + 1, i + 2, f"X{(i - 2) // 3}")
          for i in range(2, len(node.input), 3)]
    _emit_quantized(q, node, _twin(q, node, "Concat", xs), y)


def _qlinear_unary(q: _Q, node: Any) -> None:
    x = _qin(q, node, 0, 1, 2, "X")
    y = q.act_spec(node, 3, 4, "Y")
    op = node.op_type.removeprefix("QLinear")
    _emit_quantized(q, node, _twin(q, node, op, [x]), y)


QLINEAR_HANDLERS = {"QLinearAdd": _qlinear_binary, "QLinearMul": _qlinear_binary,
                    "QLinearAveragePool": _qlinear_pool,
                    "QLinearGlobalAveragePool": _qlinear_pool,
                    "QLinearConcat": _qlinear_concat, "QLinearSigmoid": _qlinear_unary,
                    "QLinearLeakyRelu": _qlinear_unary}
"""QOperator op type -> handler (all in the com.microsoft domain)."""


# --------------------------------------------------------------------------- float islands
def _sole_q(q: _Q, t: str) -> Any | None:
    readers = q.readers.get(t, [])
    if len(readers) == 1 and readers[0].op_type == "QuantizeLinear" and \
            t not in q.ctx.graph_outputs:
        return readers[0]
    return None


def float_op(q: _Q, node: Any) -> None:
    """A float op reading dequantized (or island) tensors; see the module docstring."""
    ctx, op = q.ctx, node.op_type
    if op not in ISLAND_OPS:
        raise ctx.fail(node, f"{op} on dequantized tensors is not supported (float islands "
                             f"may hold {', '.join(ISLAND_OPS)})")
    acts = [t for t in node.input if t and not ctx.is_const(t)]
    if op in ("Add", "Mul") and len(acts) != 2:
        raise ctx.fail(node, f"a float {op} in a quantized model needs two activation inputs")
    for t in acts:
        if q.ir_name(t) not in ctx.shapes:
            raise ctx.fail(node, f"input {t[:200]!r} is not produced before this node",
                           ModelImportError)
    first = q.ir_name(node.input[0])
    x_spec = q.spec.get(first)
    qn = _sole_q(q, node.output[0])
    if op in _CODE_OPS and len(acts) == 1 and node.input[0] in q.deq and qn is not None:
        y = q.act_spec(qn, 1, 2, "y") if len(qn.input) > 2 and qn.input[2] else None
        HANDLERS[op](ctx, q.renamed(node))
        out = ctx.nodes[-1]
        if isinstance(out, ir.Identity):  # an identity Reshape: an alias
            ctx.unemit_last()
            q.alias[node.output[0]] = first
            q.spec[first] = x_spec
            return
        if y == x_spec:
            q.spec[out.output] = x_spec  # codes pass through
            return
        if op in ("Relu", "Clip") and y is not None:
            q.spec[out.output] = y
            q.layers.append(LayerPlan(ctx.node_name, output=y, requant=RequantScheme.FLOAT32))
            return
        ctx.unemit_last()
    HANDLERS[op](ctx, q.renamed(node))
    out = ctx.nodes[-1].output
    q.spec[out] = None
    q.island[out] = len(q.layers)
    q.layers.append(LayerPlan(ctx.node_name, float_layer=True))


def quantize_island(q: _Q, node: Any, spec: TensorSpec) -> None:
    """A QuantizeLinear after an island op or a code op: the op's output coding."""
    ctx = q.ctx
    x = q.ir_name(node.input[0])
    have = q.spec.get(x)
    if have is not None and x not in q.island:
        q.check_same(node, spec, have, node.input[0])
    elif x in q.island and ctx.uses.get(node.input[0], 0) == 1 and \
            node.input[0] not in ctx.graph_outputs:
        i = q.island.pop(x)
        q.layers[i] = q.layers[i].with_(output=spec)
        q.spec[x] = spec
    else:
        raise UnsupportedOpError(
            f"node {ctx.node_name[:200]!r} (QuantizeLinear): pattern "
            f"'{_producer(q, node.input[0])}->Q' cannot be folded: a QuantizeLinear must "
            f"follow a quantized op with the same quantization, or a float op whose output "
            f"it alone reads")
    q.alias[node.output[0]] = x
    q.tensor_map[node.output[0]] = x


def _producer(q: _Q, t: str) -> str:
    if t in q.deq:
        return "DQ"
    p = q.ctx.producer(q.ir_name(t))
    return "in" if p is None else p.op_type
