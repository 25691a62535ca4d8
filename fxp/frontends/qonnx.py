"""Import QONNX models (``Quant``, ``BipolarQuant``, ``Trunc``, ``MultiThreshold``) into fxp.

QONNX (Brevitas, QKeras exports; FINN and hls4ml read it) carries every
tensor as float32 values that sit exactly on a quantizer's grid.
:func:`load_qonnx` reads the quantizers into an fxp plan, so the integer
engine computes the codes qonnx's float-carried values stand for
(``value / scale + zero_point``).  Semantics: :mod:`fxp.frontends.qonnx_ops`.

How each quantizer becomes a plan entry:

* ``Quant`` of a constant (a weight): qonnx's codes are computed at import
  (numpy float32, as qonnx does); the graph holds the dequantized weights
  and the layer's ``weight`` spec holds their coding: power-of-two scales
  ``2**-F_c`` with zero point 0 give a power-of-two format (per-channel
  scales: the container format with the finest LSB, ``F = max F_c``, whose
  codes are ``q_c << (F - F_c)``, the same values), other scales an affine
  spec (per tensor or per output channel, one integer zero point).
* ``Quant`` of an activation: the ``output`` spec of the layer that computes
  the tensor, with the Quant's rounding mode (``rounding``) and range
  (``output_overflow``: saturate, or saturate_symmetric for narrow signed
  codes); a Quant of the graph input is the plan's ``input`` (with
  ``input_rounding``).  A Quant placed after ``Relu``, ``MaxPool``,
  ``Flatten`` or ``Reshape`` is the output spec of the layer before them:
  these ops commute with a monotone quantizer that maps 0 to 0.
* ``BipolarQuant`` (or a 1-bit signed ``Quant``) of an activation read by a
  layer whose weights are ``BipolarQuant`` too: an XNOR-popcount layer
  (binary weight, ``pad_value`` 0 as the Conv pads the +-1 values with
  zeros; XNOR-Net ``alpha = s_x * s_w[c]``, the graph weights being
  ``+-alpha[c]``).  Its output is ``threshold`` (binary) when the next
  quantizer is bipolar, else ``scale`` into the next Quant's format.
  Bipolar weights with a multi-bit input are a fixed layer with codes +-1.
* ``Trunc`` right after an activation ``Quant`` (read by it alone) is one
  quantizer of the layer's output (:func:`~fxp.frontends.qonnx_ops.read_trunc`):
  ``Trunc_v2`` (opset 2) with zero point 0, power-of-two scales and
  ``output_scale = scale * 2**k`` becomes the output spec at scale
  ``output_scale`` with the Trunc's rounding mode and the code range both
  clips leave, provided the layer's accumulator lies on the Quant's grid (so
  the Quant does not round first).  ``Trunc_v1`` (opset 1) is read only when it
  drops no bits (it keeps the scale, so it divides the value by ``2**k``).
* ``MultiThreshold`` with ``2**n - 1`` evenly spaced thresholds per channel
  (one power-of-two step ``d``, first threshold ``> 0``, ``out_scale = d``,
  ``out_bias = 0``) is an unsigned n-bit FLOOR requantization of the layer
  before it, whose bias gains ``d - t0[c]``
  (:mod:`fxp.frontends.qonnx_threshold`).
* The last layer's output, when no Quant follows it, is the exact
  accumulator (power-of-two format ``F_x + F_w``), as qonnx's float value.

Exactness.  The integers are exact; they equal qonnx's float-carried values
wherever qonnx's float32 arithmetic is exact, which holds for power-of-two
scales as long as each accumulator (plus bias) fits float32's 24-bit
significand.  Affine (non power-of-two) layers requantize in float32 as
onnxruntime does (``requant: float32``, ties to even; only ``ROUND``
activations are accepted there), which can differ from qonnx's float
``conv / scale`` by one code where the quotient lies within a float32 ulp of
a tie.  Refused with one :class:`~fxp.errors.FxpError` naming the node and
the value: non-integer or per-channel zero points, bit widths that are not
an integer constant, unsigned narrow activations, per-channel activation
scales, two different Quants of one tensor, a requantization after a
pass-through op, a tensor reaching a layer without a Quant, biases off the
accumulator grid, a bipolar input to a multi-bit layer, non-``ROUND``
affine activations, a ``Trunc`` or ``MultiThreshold`` outside the cases
above.  ``BatchNormalization`` and other ops are listed together in one
:class:`~fxp.errors.UnsupportedOpError`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np

from fxp.errors import ModelImportError, PlanError, UnsupportedOpError
from fxp.frontends.onnx_import import MAX_MODEL_BYTES, read_and_convert
from fxp.frontends.qonnx_ops import QONNX_DOMAINS, QuantInfo, read_quant, read_trunc
from fxp.frontends.qonnx_plan import build_plan
from fxp.frontends.qonnx_threshold import read_multithreshold
from fxp.ir import nodes as ir
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan

__all__ = ["FLOAT_OPS", "QONNX_OPS", "is_qonnx_model", "load_qonnx"]

QONNX_OPS = ("Quant", "BipolarQuant", "Trunc", "MultiThreshold")
"""QONNX quantizer ops read (``Trunc`` right after a ``Quant``, ``MultiThreshold`` with evenly
spaced thresholds, each where exact)."""
FLOAT_OPS = ("Conv", "Gemm", "MatMul", "Add", "Relu", "MaxPool", "Flatten", "Reshape",
             "Identity", "Dropout", "Softmax")
"""Standard ops accepted between quantizers (``Add`` only as a MatMul bias, ``Softmax``
only as a graph output, computed in float as fxp does)."""


def is_qonnx_model(model: Any) -> bool:
    """True if an ``onnx.ModelProto`` has a node in a QONNX domain (:data:`QONNX_DOMAINS`)."""
    return any(n.domain in QONNX_DOMAINS for n in model.graph.node)


def load_qonnx(source: str | os.PathLike | bytes | Any, *, base_dir: str | None = None,
               max_bytes: int = MAX_MODEL_BYTES) -> tuple[Graph, Plan]:
    """Read a QONNX model into a float :class:`Graph` and the :class:`Plan` its quantizers say.

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
        A canonical graph (dequantized weights, fused ReLUs) and the plan
        whose integers are the codes of qonnx's quantized tensors.

    Raises
    ------
    ModelImportError
        A quantizer fxp cannot represent exactly (the message names the node
        and the value; see the module docstring).
    UnsupportedOpError
        Ops outside :data:`QONNX_OPS` and :data:`FLOAT_OPS`, all listed at once.
    """
    return read_and_convert(source, _convert, base_dir=base_dir, max_bytes=max_bytes)


def _check_ops(model: Any) -> None:
    bad: Counter = Counter()
    first: dict[str, str] = {}
    for i, n in enumerate(model.graph.node):
        if n.domain in QONNX_DOMAINS:
            ok = n.op_type in QONNX_OPS
        else:
            ok = n.domain in ("", "ai.onnx") and n.op_type in FLOAT_OPS
        if not ok:
            key = n.op_type[:100] if n.domain in ("", "ai.onnx") else \
                f"{n.domain[:60]}:{n.op_type[:100]}"
            bad[key] += 1
            first.setdefault(key, (n.name or f"{n.op_type}_{i}")[:100])
    if bad:
        listed = ", ".join(f"{op} x{c} (first {first[op]!r})" for op, c in sorted(bad.items()))
        raise UnsupportedOpError(f"{sum(bad.values())} nodes of {len(bad)} unsupported op "
                                 f"types: {listed[:1500]}; a QONNX model may hold "
                                 f"{', '.join(QONNX_OPS + FLOAT_OPS)}")


def _strip(onnx: Any, model: Any, consts: dict[str, np.ndarray]
           ) -> tuple[Any, dict[str, tuple[QuantInfo, np.ndarray]], dict[str, QuantInfo]]:
    """The float model without quantizers, the weight quantizers and the activation ones.

    Returns ``(model, weights, acts)``: ``weights[t]`` is the (info, codes) of
    the constant tensor ``t`` a Quant produced (now a float32 initializer
    holding qonnx's values); ``acts[t]`` the quantizer of activation ``t``
    (Quant outputs are renamed to their inputs).
    """
    weights: dict[str, tuple[QuantInfo, np.ndarray]] = {}
    acts: dict[str, QuantInfo] = {}
    alias: dict[str, str] = {}
    new_consts: dict[str, np.ndarray] = {}
    kept = []
    outputs = {o.name for o in model.graph.output}
    opsets = {o.domain: int(o.version) for o in model.opset_import}
    for node in model.graph.node:
        if node.domain not in QONNX_DOMAINS:
            kept.append(node)
            continue
        x = alias.get(node.input[0], node.input[0])
        if node.op_type == "Trunc":
            readers = sum(t == node.input[0] for n in model.graph.node for t in n.input)
            prev = acts.get(x) if node.input[0] in alias and readers == 1 and \
                node.input[0] not in outputs else None
            acts[x] = read_trunc(node, consts, prev, opsets.get(node.domain, 1))
            alias[node.output[0]] = x
            continue
        if node.op_type == "MultiThreshold":
            if x in consts or x in acts:
                raise ModelImportError(f"node {node.name or node.output[0]!r} "
                                       f"(MultiThreshold): its input {x[:200]!r} is a constant "
                                       f"or already quantized")
            acts[x] = read_multithreshold(node, consts)
            alias[node.output[0]] = x
            continue
        info = read_quant(node, consts)
        if x in consts:
            if x in weights and weights[x][0].bipolar is False and not info.same_as(weights[x][0]):
                raise ModelImportError(f"node {info.node!r}: re-quantizes the quantized "
                                       f"constant {x!r} into another coding")
            codes, vals = info.quantize_const(consts[x])
            consts[node.output[0]] = new_consts[node.output[0]] = vals
            weights[node.output[0]] = (info, codes)
            continue
        prev = acts.get(x)
        if prev is not None and not prev.same_as(info):
            raise ModelImportError(f"node {info.node!r}: tensor {x[:200]!r} is quantized twice "
                                   f"in different codings (also by {prev.node!r}); fxp holds "
                                   f"one coding per tensor")
        acts[x] = info
        alias[node.output[0]] = x
    out = type(model)()
    out.CopyFrom(model)
    del out.graph.node[:]
    for node in kept:
        n = type(node)()
        n.CopyFrom(node)
        for i, t in enumerate(n.input):
            n.input[i] = alias.get(t, t)
        out.graph.node.append(n)
    for o in out.graph.output:
        o.name = alias.get(o.name, o.name)
    read = {t for n in out.graph.node for t in n.input if t}
    inits = [t for t in out.graph.initializer if t.name in read]
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits)
    for name, vals in new_consts.items():
        if name in read:
            out.graph.initializer.append(onnx.numpy_helper.from_array(vals, name))
    del out.graph.value_info[:]
    keep = [o for o in out.opset_import if o.domain not in QONNX_DOMAINS]
    del out.opset_import[:]
    out.opset_import.extend(keep)
    for v in list(out.graph.input):
        if v.name not in read and v.name in consts:
            out.graph.input.remove(v)
    return out, weights, acts


def _keep_observable(graph: Graph, acts: dict[str, QuantInfo]) -> Graph:
    """Layers whose own output is quantized and read by ReLU/Clip keep them separate."""
    nodes = []
    for n in graph.nodes:
        if isinstance(n, (ir.Conv2D, ir.Dense)) and n.fused_activation is None and \
                n.output in acts and any(isinstance(r, (ir.ReLU, ir.Clip))
                                         for r in graph.consumers(n.output)):
            n = replace(n, fused_activation=(float("-inf"), float("inf")))
        nodes.append(n)
    return graph.with_nodes(nodes)


def _convert(onnx: Any, model: Any, folder: str | None) -> tuple[Graph, Plan]:
    from fxp.frontends.onnx_import import _convert as convert_float
    from fxp.frontends.onnx_tensors import tensor_to_array
    from fxp.ir.passes import canonicalize

    consts: dict[str, np.ndarray] = {}
    for t in model.graph.initializer:
        if t.name in consts:
            raise ModelImportError(f"initializer {t.name!r} is defined twice")
        consts[t.name] = tensor_to_array(t, folder)
    _check_ops(model)
    onnx_nodes = {}
    for i, n in enumerate(model.graph.node):
        if n.domain not in QONNX_DOMAINS:
            onnx_nodes[n.name or f"{n.op_type}_{i}"] = n
    float_model, weights, acts = _strip(onnx, model, consts)
    # convert_nodes names unnamed nodes by their index in the stripped graph: name them first
    for i, n in enumerate(float_model.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{len(onnx_nodes) + i}_qonnx"
    onnx_nodes = {n.name: n for n in float_model.graph.node}
    graph = convert_float(onnx, float_model, folder)
    graph = canonicalize(_keep_observable(graph, acts))
    try:
        return build_plan(graph, onnx_nodes, weights, acts)
    except PlanError as e:
        raise ModelImportError(str(e)) from None
