"""Fold onnxruntime QDQ groups into their QOperator twins (an ONNX-to-ONNX rewrite).

``quantize_static(..., quant_format=QuantFormat.QDQ)`` writes float operators
wrapped in ``QuantizeLinear`` (Q) / ``DequantizeLinear`` (DQ) pairs.
onnxruntime's default session fuses each group ``DQ(x) [, DQ(w), DQ(b)] -> op
-> Q`` into the integer operator below, so the integers users get are those
of the QOperator twin; :func:`fold_qdq` performs the same fusion on the ONNX
graph, and the QOperator importer (:mod:`fxp.frontends.onnx_quantized`) reads
the result.  The fused node writes the Q's output tensor, so the tensor names
of the QDQ file (``..._QuantizeLinear_Output``) are kept.

=======================  ===========================================  ======================
float op                 group (activations ``DQ``, constants ``DQw``)  becomes
=======================  ===========================================  ======================
Conv                     ``DQ, DQw [, DQw int32 bias] -> Conv -> Q``    QLinearConv
Gemm                     ``DQ, DQw [, DQw int32 bias] -> Gemm -> Q``    QGemm (com.microsoft)
MatMul                   ``DQ, DQw -> MatMul -> Q``                     QLinearMatMul
Add, Mul                 ``DQ, DQ -> Add -> Q``                         QLinearAdd / QLinearMul
AveragePool              ``DQ -> AveragePool -> Q``                     QLinearAveragePool
GlobalAveragePool        ``DQ -> GlobalAveragePool -> Q``               QLinearGlobalAveragePool
Concat                   ``DQ, DQ, ... -> Concat -> Q``                 QLinearConcat
Sigmoid, LeakyRelu       ``DQ -> op -> Q``                              QLinearSigmoid / ...
=======================  ===========================================  ======================

Not folded here (the importer reads them in both formats): ``DQ -> MaxPool /
Flatten / Reshape / Relu / Clip -> Q`` (codes pass through when the two
quantizations agree) and float islands ``DQ -> float ops -> Q`` (e.g. the
BatchNormalization of a model quantized without ``quant_pre_process``).  A
``DequantizeLinear`` of an initializer that feeds such a float op becomes a
float32 initializer computed as onnxruntime does, ``float32(q - zp) * scale``.

A compute op with a DQ of an initializer among its inputs that cannot be
folded (its output does not go to exactly one QuantizeLinear, a weight is not
int8/uint8, a bias is not int32 or its scale is not ``s_x * s_w``) raises
:class:`~fxp.errors.ModelImportError` naming the node and the pattern.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fxp.errors import ModelImportError

__all__ = ["FOLDED", "fold_qdq", "is_qdq"]

_MS = "com.microsoft"
FOLDED = {"Conv": ("QLinearConv", ""), "Gemm": ("QGemm", _MS),
          "MatMul": ("QLinearMatMul", ""), "Add": ("QLinearAdd", _MS),
          "Mul": ("QLinearMul", _MS), "AveragePool": ("QLinearAveragePool", _MS),
          "GlobalAveragePool": ("QLinearGlobalAveragePool", _MS),
          "Concat": ("QLinearConcat", _MS), "Sigmoid": ("QLinearSigmoid", _MS),
          "LeakyRelu": ("QLinearLeakyRelu", _MS)}
"""Float op -> (QOperator op, domain) of the groups :func:`fold_qdq` fuses."""
_WEIGHTED = ("Conv", "Gemm", "MatMul")
_BIAS_RTOL = 1e-6


def is_qdq(model: Any) -> bool:
    """True if ``model`` holds a QDQ group (a DequantizeLinear feeding a foldable op)."""
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return any(n.op_type in FOLDED and any(i in dq_out for i in n.input)
               for n in model.graph.node)


class _Index:
    def __init__(self, model: Any, consts: dict[str, np.ndarray]) -> None:
        g = model.graph
        self.consts = consts
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.readers: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                if i:
                    self.readers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}

    def dq(self, t: str) -> Any | None:
        p = self.producer.get(t)
        return p if p is not None and p.op_type == "DequantizeLinear" else None

    def is_weight_dq(self, t: str) -> bool:
        p = self.dq(t)
        return p is not None and p.input[0] in self.consts

    def sole_q(self, t: str) -> Any | None:
        r = self.readers.get(t, [])
        if len(r) == 1 and r[0].op_type == "QuantizeLinear" and t not in self.outputs:
            return r[0]
        return None


def _pattern(ix: _Index, node: Any) -> str:
    """``"DQ,DQw->Conv->Q,Relu"``: producers of the inputs, the op, readers of the output."""
    ins = []
    for t in node.input:
        if not t or t in ix.consts:
            continue
        p = ix.producer.get(t)
        ins.append("in" if p is None else ("DQw" if ix.is_weight_dq(t) else
                                           {"DequantizeLinear": "DQ",
                                            "QuantizeLinear": "Q"}.get(p.op_type, p.op_type)))
    outs = sorted({{"QuantizeLinear": "Q", "DequantizeLinear": "DQ"}.get(r.op_type, r.op_type)
                   for r in ix.readers.get(node.output[0], [])})
    if node.output[0] in ix.outputs:
        outs.append("out")
    return f"{','.join(ins)}->{node.op_type}->{','.join(outs)}"


def _fail(ix: _Index, node: Any, why: str) -> ModelImportError:
    name = node.name or node.output[0]
    return ModelImportError(f"node {name[:200]!r} ({node.op_type}): QDQ pattern "
                            f"{_pattern(ix, node)[:300]!r} cannot be folded into "
                            f"{FOLDED[node.op_type][0]}: {why}")


def _dq_triple(dq: Any) -> list[str]:
    zp = dq.input[2] if len(dq.input) > 2 else ""
    return [dq.input[0], dq.input[1], zp]


def _axis(dq: Any) -> int:
    for a in dq.attribute:
        if a.name == "axis":
            return int(a.i)
    return 1


def _check_bias(ix: _Index, node: Any, x_dq: Any, w_dq: Any, b_dq: Any) -> None:
    """An int32 bias whose DQ scale is ``s_x * s_w`` (the fused op ignores that scale)."""
    q = ix.consts.get(b_dq.input[0])
    if q is None or q.dtype != np.int32:
        raise _fail(ix, node, f"bias {b_dq.input[0]!r} is not an int32 initializer")
    zp = ix.consts.get(b_dq.input[2]) if len(b_dq.input) > 2 and b_dq.input[2] else None
    if zp is not None and np.any(zp != 0):
        raise _fail(ix, node, f"bias zero point {b_dq.input[2]!r} is not 0")
    sb, sx, sw = (ix.consts.get(d.input[1]) for d in (b_dq, x_dq, w_dq))
    if sb is None or sx is None or sw is None:
        raise _fail(ix, node, "a scale is not an initializer")
    want = np.float64(sx.reshape(-1)[0]) * sw.astype(np.float64).reshape(-1)
    got = sb.astype(np.float64).reshape(-1)
    if got.size not in (1, want.size) or not np.allclose(got, want, rtol=_BIAS_RTOL, atol=0):
        raise _fail(ix, node, f"bias scale {got.tolist()[:4]} is not input scale x weight "
                              f"scale {want.tolist()[:4]}")


def _group(onnx: Any, ix: _Index, node: Any) -> tuple[Any, list[Any]] | None:
    """The fused node and the DQ/Q nodes it absorbs, or None (not a QDQ group)."""
    op = node.op_type
    acts = [t for t in node.input if t and t not in ix.consts and not ix.is_weight_dq(t)]
    weights = [t for t in node.input if t and ix.is_weight_dq(t)]
    if op not in _WEIGHTED and weights:
        return None  # a float island reading dequantized constants
    if not acts or not all(ix.dq(t) is not None for t in acts):
        if weights:
            raise _fail(ix, node, "an activation input is not a DequantizeLinear output")
        return None
    q = ix.sole_q(node.output[0])
    if q is None:
        if weights:
            raise _fail(ix, node, "its output is not read by exactly one QuantizeLinear")
        return None
    y = [q.input[1], q.input[2] if len(q.input) > 2 else ""]
    attrs = list(node.attribute)
    if op == "Gemm":  # QGemm has no beta: C is added as it is
        beta = [a for a in attrs if a.name == "beta"]
        if beta and beta[0].f != 1.0:
            raise _fail(ix, node, f"beta={beta[0].f} (QGemm adds the bias with beta 1)")
        attrs = [a for a in attrs if a.name != "beta"]
    new_op, domain = FOLDED[op]
    x = _dq_triple(ix.dq(acts[0]))
    absorbed = [ix.dq(t) for t in node.input if t and ix.dq(t) is not None] + [q]
    if op in _WEIGHTED:
        if len(node.input) < 2 or not ix.is_weight_dq(node.input[1]) or \
                node.input[0] != acts[0] or len(acts) != 1:
            raise _fail(ix, node, "needs an activation and a DequantizeLinear of an int8 "
                                  "initializer as its first two inputs")
        w_dq = ix.dq(node.input[1])
        if ix.consts[w_dq.input[0]].dtype not in (np.int8, np.uint8):
            raise _fail(ix, node, f"weight {w_dq.input[0]!r} is "
                                  f"{ix.consts[w_dq.input[0]].dtype}, not int8/uint8")
        w = _dq_triple(w_dq)
        b_dq = ix.dq(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and (b_dq is None or
                                                      not ix.is_weight_dq(node.input[2])):
            raise _fail(ix, node, "the bias is not a DequantizeLinear of an int32 initializer")
        if b_dq is not None:
            _check_bias(ix, node, ix.dq(acts[0]), w_dq, b_dq)
        bias = [b_dq.input[0]] if b_dq is not None else []
        if op == "Conv":
            inputs = x + w + y + bias
        elif op == "MatMul":
            if bias:  # pragma: no cover - MatMul has two inputs
                raise _fail(ix, node, "MatMul has no bias")
            inputs = x + w + y
        else:
            inputs = x + w + (bias or [""]) + y
    elif op in ("Add", "Mul"):
        if len(acts) != 2 or len(node.input) != 2:
            raise _fail(ix, node, "needs two DequantizeLinear inputs")
        inputs = x + _dq_triple(ix.dq(acts[1])) + y
    elif op == "Concat":
        if len(acts) != len(node.input):
            raise _fail(ix, node, "every input must be a DequantizeLinear output")
        inputs = y + [v for t in acts for v in _dq_triple(ix.dq(t))]
    else:
        inputs = x + y
    fused = onnx.helper.make_node(new_op, inputs, [q.output[0]], name=node.name or None,
                                  domain=domain)
    fused.attribute.extend(attrs)
    return fused, absorbed


def _weight_to_float(ix: _Index, dq: Any) -> np.ndarray:
    """onnxruntime's DequantizeLinear of an initializer: ``float32(q - zp) * scale``."""
    q = ix.consts[dq.input[0]].astype(np.int64)
    s = ix.consts[dq.input[1]].astype(np.float32)
    zp = ix.consts.get(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
    z = np.zeros(1, np.int64) if zp is None else zp.astype(np.int64)
    if s.size > 1:
        shape = [1] * q.ndim
        shape[_axis(dq) % q.ndim] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    return ((q - z).astype(np.float32) * s).astype(np.float32)


def fold_qdq(onnx: Any, model: Any, consts: dict[str, np.ndarray]) -> tuple[Any, int]:
    """Rewrite the QDQ groups of ``model`` (a copy) into QOperator nodes.

    Parameters
    ----------
    onnx : module
    model : onnx.ModelProto
    consts : dict
        Decoded initializers (and Constant values) by name; float32 initializers
        replacing dequantized constants of float islands are added to it.

    Returns
    -------
    (onnx.ModelProto, int)
        The rewritten model and the number of groups folded.
    """
    ix = _Index(model, consts)
    replace: dict[int, Any] = {}
    absorbed: set[int] = set()
    for n in model.graph.node:
        if n.op_type in FOLDED and n.domain in ("", "ai.onnx"):
            got = _group(onnx, ix, n)
            if got is not None:
                replace[id(n)] = got[0]
                absorbed.update(id(m) for m in got[1])
    out = type(model)()
    out.CopyFrom(model)
    kept = []
    for n in model.graph.node:
        if id(n) in replace:
            kept.append(replace[id(n)])
        elif id(n) in absorbed and n.op_type == "QuantizeLinear":
            continue
        else:
            kept.append(n)
    # drop DequantizeLinear nodes nobody reads any more; dequantize constants still read
    read = {i for n in kept for i in n.input if i} | ix.outputs
    final = []
    for n in kept:
        if n.op_type == "DequantizeLinear" and n.output[0] not in read:
            continue
        if n.op_type == "DequantizeLinear" and n.input[0] in consts:
            consts[n.output[0]] = _weight_to_float(ix, n)
            continue
        final.append(n)
    del out.graph.node[:]
    out.graph.node.extend(final)
    if replace and not any(o.domain == _MS for o in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid(_MS, 1))
    return out, len(replace)
