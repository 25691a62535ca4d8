"""One importer for quantized ONNX models: onnxruntime QOperator and QDQ graphs.

:func:`load_quantized` reads a model written by
``onnxruntime.quantization.quantize_static`` (either ``QuantFormat``, with or
without ``quant_pre_process``) into a float :class:`~fxp.ir.graph.Graph` and
the affine :class:`~fxp.plan.plan.Plan` the file carries; ``compile_plan`` of
the pair reproduces onnxruntime's integers.

* QDQ graphs are first rewritten into their QOperator twins by
  :func:`~fxp.frontends.onnx_qdq.fold_qdq` (what onnxruntime's default session
  does: ``DQ -> Conv -> Q`` is run as one QLinearConv, and so on), keeping the
  QDQ tensor names.
* Weighted ops (QLinearConv, QGemm, QLinearMatMul) are read by
  :mod:`fxp.frontends.onnx_qoperator_ops` (see :mod:`fxp.frontends.onnx_qoperator`
  for their arithmetic and checks); non-weighted QLinear ops, int8 Relu/Clip
  and float islands by :mod:`fxp.frontends.onnx_qlinear_ops`.
* ``Constant`` nodes are read as constants (unused ones are ignored); opset
  domains the model declares but no node uses (``quant_pre_process`` declares
  several) are ignored.
* Before converting anything, every node is checked: an unsupported op lists
  all unsupported op types of the file at once, with counts and the first
  node of each (:class:`~fxp.errors.UnsupportedOpError`).

Observable layer outputs.  A Conv/Gemm output read by an activation or a
BatchNormalization node (``QLinearConv -> DQ -> Relu -> Q``, float BN islands)
is an integer tensor of its own; the importer gives such a layer the identity
activation ``fused_activation = (-inf, inf)`` so that
:func:`~fxp.ir.passes.canonicalize` neither folds the BatchNorm into it nor
fuses the activation (either would change what the plan quantizes).

Per-channel weight zero points (``WeightSymmetric=False`` per channel in
QOperator) differ per output channel; the plan holds one weight zero point, so
such weights are stored as ``code - zero_point[c]`` in a signed 9-bit format
with zero point 0: the accumulator ``sum (x - zx) * (w - zw[c])`` is the same
integer.

The ONNX tensor names of every integer tensor map to IR tensors in
``graph.metadata["fxp.qoperator.tensors"]`` (:func:`quantized_tensor_map`).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np

from fxp.errors import GraphError, ModelImportError, PlanError, UnsupportedOpError
from fxp.frontends.onnx_import import (
    MAX_MODEL_BYTES, _default_opset, _graph_context, check_output_count,
    check_single_output, convert_nodes, read_and_convert,
)
from fxp.frontends.onnx_qoperator import _MS, _PASS_THROUGH, _Q, TENSOR_MAP_KEY, _tensor
from fxp.ir import nodes as ir
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan
from fxp.sim.compile import INPUT_ARITHMETIC_KEY

__all__ = ["SUPPORTED_OPS", "is_quantized_model", "load_quantized", "quantized_tensor_map"]

_QOPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QGemm", "QLinearMatMul",
         "QLinearSoftmax", "QLinearAdd", "QLinearAveragePool", "QLinearGlobalAveragePool",
         "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearMul")


def _supported() -> frozenset[str]:
    from fxp.frontends.onnx_qlinear_ops import ISLAND_OPS

    return frozenset(_QOPS + _PASS_THROUGH + ISLAND_OPS + ("Softmax", "Constant"))


SUPPORTED_OPS = _supported()
"""Op types (after QDQ folding) the quantized importer reads."""


def load_quantized(source: str | os.PathLike | bytes | Any, *, base_dir: str | None = None,
                   max_bytes: int = MAX_MODEL_BYTES) -> tuple[Graph, Plan]:
    """Read an onnxruntime-quantized model (QOperator or QDQ) into ``(Graph, Plan)``.

    Parameters
    ----------
    source : path, bytes or onnx.ModelProto
    base_dir : str, optional
        Folder for external data when ``source`` is bytes or a ModelProto.
    max_bytes : int
        Refuse serialized models larger than this.

    Returns
    -------
    (Graph, Plan)
        ``compile_plan(graph, plan)`` reproduces onnxruntime's codes (the
        graph's metadata selects float32 input quantization and carries int32
        bias codes a float32 bias cannot hold).

    Raises
    ------
    ModelImportError
        Malformed model, a QDQ group that cannot be folded (naming the node and
        the pattern), quantizations that disagree between a tensor's producer and
        its readers, integer initializers the float round trip does not reproduce.
    UnsupportedOpError
        Ops outside :data:`SUPPORTED_OPS` (all of them listed at once) or
        attributes outside the supported subset.
    """
    return read_and_convert(source, _convert, base_dir=base_dir, max_bytes=max_bytes)


def quantized_tensor_map(graph: Graph) -> dict[str, str]:
    """``{onnx integer tensor name: IR tensor name}`` recorded by :func:`load_quantized`."""
    from fxp.frontends.onnx_qoperator import qoperator_tensor_map

    return qoperator_tensor_map(graph)


def is_quantized_model(model: Any) -> bool:
    """True if an ``onnx.ModelProto`` is quantized: QuantizeLinear / QLinear* / QGemm nodes,
    or a DequantizeLinear of an int8/uint8 initializer."""
    inits = {t.name: t.data_type for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "QGemm") or n.op_type.startswith("QLinear"):
            return True
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) in (2, 3):
            return True
    return False


def _check_ops(model: Any) -> None:
    """Every node's op is supported, else one error listing all unsupported ops."""
    bad: Counter = Counter()
    first: dict[str, str] = {}
    for i, n in enumerate(model.graph.node):
        ok = n.domain in ("", "ai.onnx", _MS) and n.op_type in SUPPORTED_OPS
        if not ok:
            key = n.op_type[:100] if n.domain in ("", "ai.onnx") else \
                f"{n.domain[:60]}:{n.op_type[:100]}"
            bad[key] += 1
            first.setdefault(key, (n.name or f"{n.op_type}_{i}")[:100])
    if bad:
        listed = ", ".join(f"{op} x{c} (first {first[op]!r})" for op, c in sorted(bad.items()))
        raise UnsupportedOpError(f"{sum(bad.values())} nodes of {len(bad)} unsupported op "
                                 f"types: {listed[:1500]}; a quantized model may hold "
                                 f"{', '.join(sorted(SUPPORTED_OPS))}")


def _observable_layers(nodes: list[ir.Node]) -> list[ir.Node]:
    """Give the identity activation to Conv/Dense layers read by BatchNorm/ReLU/Clip."""
    producers = {n.output: n for n in nodes}
    keep = set()
    for n in nodes:
        if isinstance(n, (ir.BatchNorm, ir.ReLU, ir.Clip)):
            p = producers.get(n.inputs[0])
            if isinstance(p, (ir.Conv2D, ir.Dense)) and p.fused_activation is None:
                keep.add(p.name)
    return [replace(n, fused_activation=(float("-inf"), float("inf"))) if n.name in keep
            else n for n in nodes]


def _convert(onnx: Any, model: Any, folder: str | None) -> tuple[Graph, Plan]:
    from fxp.frontends.onnx_qdq import fold_qdq
    from fxp.frontends.onnx_qoperator_ops import dispatch  # handlers import onnx_qoperator

    if not 3 <= model.ir_version <= onnx.IR_VERSION:
        raise ModelImportError(f"ir_version {model.ir_version} is outside 3..{onnx.IR_VERSION}")
    opset = _default_opset(onnx, model)
    g = model.graph
    if not g.node or not g.output:
        raise ModelImportError("graph has no nodes or no outputs")
    consts: dict[str, Any] = {}
    for t in g.initializer:
        if t.name in consts:
            raise ModelImportError(f"initializer {t.name!r} is defined twice")
        consts[t.name] = _tensor(t, folder)
    _check_ops(model)
    fmt = "qdq" if not any(n.op_type.startswith("QLinear") or n.op_type == "QGemm"
                           for n in g.node) else "qoperator"
    model, _ = fold_qdq(onnx, model, consts)
    _check_ops(model)  # QLinearMul, folded from a QDQ Mul
    g = model.graph
    name, shape, outputs, ctx = _graph_context(g, consts, opset, folder)
    q = _Q(ctx, name)
    q.spec[name] = None
    for node in g.node:
        for t in node.input:
            if t:
                q.readers.setdefault(t, []).append(node)
    convert_nodes(ctx, g, lambda node: dispatch(q, node), lambda t: t in consts or t in q.alias)
    if q.input_spec is None:
        raise ModelImportError(f"graph input {name!r} is not quantized by a QuantizeLinear; "
                               f"this is not a quantized (QOperator or QDQ) model")
    check_output_count(outputs)
    nodes = _observable_layers(list(ctx.nodes))
    renames: dict[str, str] = {}
    for t in outputs:
        src = q.ir_name(t)
        if src not in ctx.shapes or src == name:
            raise ModelImportError(f"graph output {t!r} is not produced by a supported node")
        if src != t:
            renames[src] = t
    meta = {p.key: p.value for p in model.metadata_props}
    tmap = {k: renames.get(v, v) for k, v in q.tensor_map.items()}
    meta[TENSOR_MAP_KEY] = json.dumps(tmap, sort_keys=True)
    meta["fxp.qoperator.producer"] = f"{model.producer_name} {model.producer_version}".strip()
    meta["fxp.quantized.format"] = fmt
    meta[INPUT_ARITHMETIC_KEY] = "float32"
    try:
        graph = Graph(nodes=tuple(nodes), inputs=(name,), input_shapes={name: shape},
                      outputs=tuple(q.ir_name(t) for t in outputs), metadata=meta,
                      name=g.name or "graph")
        for old, new in renames.items():
            graph = graph.rename_tensor(old, new)
    except GraphError as e:
        raise ModelImportError(str(e)) from None
    check_single_output(graph)
    plan = Plan(input=q.input_spec, layers=tuple(q.layers), name=f"onnxruntime-{fmt}")
    return _verify(graph, plan, q.expect), plan


def _verify(graph: Graph, plan: Plan, expect) -> Graph:
    """Compile; the compiled codes and scales must be the model's, exactly.

    Bias codes that a float32 bias cannot hold (``|code| > 2**24``, e.g. the
    near-2**31 codes onnxruntime writes for channels with tiny weight scales)
    are recorded in ``graph.metadata["fxp.sim.bias_codes"]``, which
    :func:`~fxp.sim.compile.compile_plan` uses after checking that they
    dequantize to the float bias.  Returns the graph with that metadata.
    """
    from fxp.sim.compile import BIAS_CODES_KEY, compile_plan

    steps = {s.name: s for s in compile_plan(graph, plan).steps}
    exact = {}
    for name, _, w_codes, b_codes, _ in expect:
        if b_codes is not None and not np.array_equal(steps[name].b_codes, b_codes):
            exact[name] = [int(v) for v in b_codes]
    if exact:
        meta = dict(graph.metadata)
        meta[BIAS_CODES_KEY] = json.dumps(exact, sort_keys=True)
        graph = Graph(nodes=graph.nodes, inputs=graph.inputs, input_shapes=graph.input_shapes,
                      outputs=graph.outputs, metadata=meta, name=graph.name)
        try:
            steps = {s.name: s for s in compile_plan(graph, plan).steps}
        except PlanError as e:
            raise ModelImportError(f"bias codes of layers {sorted(exact)} cannot be carried: "
                                   f"{e}") from None
    for name, w_name, w_codes, b_codes, b_name in expect:
        step = steps[name]
        if step.w_codes.shape != w_codes.shape or not np.array_equal(step.w_codes, w_codes):
            bad = int(np.count_nonzero(step.w_codes != w_codes)) \
                if step.w_codes.shape == w_codes.shape else -1
            raise ModelImportError(f"initializer {w_name!r} (layer {name!r}): re-quantizing the "
                                   f"dequantized weights does not give the model's codes "
                                   f"({bad} differ)")
        want_b = np.zeros(w_codes.shape[0], np.int64) if b_codes is None else b_codes
        if not np.array_equal(step.b_codes, want_b):
            bad = int(np.count_nonzero(step.b_codes != want_b))
            raise ModelImportError(f"initializer {b_name or '(no bias)'!r} (layer {name!r}): "
                                   f"the compiled int32 bias codes differ from the model's "
                                   f"({bad} differ)")
        sx = np.float32(step.in_specs[0].scales[0])
        sw = np.asarray(step.plan.weight.scales, np.float32)
        sy = np.float32(step.plan.output.scales[0])
        ort = np.broadcast_to((sx * sw) / sy, step.f32_scales.shape).astype(np.float32)
        if not np.array_equal(ort.view(np.uint32), step.f32_scales.view(np.uint32)):
            raise ModelImportError(f"layer {name!r}: compiled float32 requantization scales "
                                   f"differ from onnxruntime's float32(float32(s_x * s_w) / s_y)")
    return graph
