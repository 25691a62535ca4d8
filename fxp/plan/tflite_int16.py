"""Mixed int8 / int16x8 plans for a full-integer int8 ``.tflite`` model.

TFLite Micro runs each operator in one type: int8 (8-bit activations and
weights, int32 accumulator) or int16x8 (16-bit activations, 8-bit weights,
int64 accumulator).  :func:`widen_plan` turns the plan an int8 ``.tflite``
carries (:func:`fxp.frontends.tflite.load_tflite`) into one where a chosen set
of weighted layers (``Conv2D`` / ``Dense``, i.e. CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED) and everything downstream of them run int16x8; the graph and
the weight codes do not change.

Types propagate along the graph (:func:`tensor_types`):

* a weighted layer's output is 16-bit when the layer is chosen or any of its
  inputs is 16-bit (a 16-bit tensor never goes back to int8: TFLite would need
  a QUANTIZE int16 -> int8, a second rounding the plan does not describe);
* pooling, MEAN, ADD, SOFTMAX and the layout / ReLU / PAD operators keep the
  type of their inputs; an ``Add`` whose inputs differ in type makes the
  choice infeasible (:class:`MixedInputs`), as do operators this module does
  not widen (``Sigmoid``, ``Tanh``, ``HardSwish``, ``Mul``, ``Concat``,
  ``Requantize``) reading a 16-bit tensor.

The 16-bit coding of a tensor (:func:`int16_spec`) is symmetric (zero point
0, as TFLite's int16x8 requires) and covers the float range of its int8
coding: ``scale16 = float32(max(|s * (-128 - z)|, |s * (127 - z)|) / 32767)``.
A softmax output takes TFLite's fixed int16 coding (scale 1/32768, zero
point 0).  Widened weighted layers take ``acc_bits = 64`` (int16x8
requantization: multiplier rounded to 16 bits, :mod:`fxp.ops.requant64`);
their bias codes follow from the graph's float bias at the new
``input scale x weight scale``.

**Switch points.**  A widened weighted layer whose input is still 8-bit reads
the int8 codes directly.  That equals, integer for integer, the TFLite graph
``QUANTIZE(int8 -> int16, scale s/128, zero point 0)`` followed by the int16x8
layer with bias codes ``128 x b``: the QUANTIZE is exact (``128 (x - z)``, at
most 32,640 in magnitude), every product and the bias scale by 128, and the
requantization multiplier ``s_in s_w / s_out`` changes by exactly ``2**-7``,
which moves only its shift.  :func:`switch_points` lists them, for the
deployment notes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import PlanError
from fxp.ir.graph import Graph
from fxp.ir.nodes import (
    AvgPool2D,
    Clip,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Identity,
    MaxPool2D,
    Pad,
    ReLU,
    Reshape,
    Softmax,
)
from fxp.plan.plan import Plan
from fxp.plan.tensor_spec import TensorSpec

__all__ = ["INT16", "MixedInputs", "SwitchPoint", "int16_spec", "switch_points",
           "tensor_types", "weighted_layers", "widen_plan"]

INT16 = QFormat.integer(16, True)
SOFTMAX_INT16 = TensorSpec(INT16, (1.0 / 32768.0,), 0)
"""TFLite's int16 softmax output coding."""
_WEIGHTED = (Conv2D, Dense)
_KEEP_TYPE = (MaxPool2D, AvgPool2D, GlobalAvgPool, Flatten, Reshape, ReLU, Clip, Pad, Identity,
              Dropout, Softmax)


class MixedInputs(PlanError):
    """A choice of int16x8 layers that TFLite cannot run without a second rounding."""


@dataclass(frozen=True)
class SwitchPoint:
    """A widened layer reading 8-bit codes: TFLite needs ``QUANTIZE`` before it.

    Attributes
    ----------
    layer : str
        The int16x8 layer.
    tensor : str
        Its 8-bit input tensor.
    scale : float
        Scale of the int16 tensor the QUANTIZE writes (the int8 scale / 128).
    """

    layer: str
    tensor: str
    scale: float


def weighted_layers(graph: Graph) -> list[str]:
    """Names of the layers the search may switch to int16x8, in graph order."""
    return [n.name for n in graph.nodes if isinstance(n, _WEIGHTED)]


def int16_spec(spec: TensorSpec, where: str) -> TensorSpec:
    """Symmetric int16 coding covering the float range of the int8 coding ``spec``."""
    if spec.fmt.bits != 8 or spec.scales is None or len(spec.scales) != 1:
        raise PlanError(f"{where}: widening needs a per-tensor int8 activation coding, got "
                        f"{spec.fmt} with scales {str(spec.scales)[:60]}")
    s, z = float(spec.scales[0]), int(spec.zero_point)
    reach = max(abs(s * (spec.fmt.min_code - z)), abs(s * (spec.fmt.max_code - z)))
    return TensorSpec(INT16, (float(np.float32(reach / INT16.max_code)),), 0)


def _check_int8(plan: Plan, graph: Graph) -> None:
    wide = [lp.name for lp in plan.layers if lp.output is not None and lp.output.fmt.bits != 8]
    if plan.input.fmt.bits != 8 or wide:
        what = "the input" if plan.input.fmt.bits != 8 else f"layer {wide[0]!r}"
        raise PlanError(f"model {graph.name!r}: {what} is not int8; exploring int16x8 layers "
                        f"starts from a full-integer int8 .tflite")


def tensor_types(graph: Graph, wide: set[str] | frozenset[str]) -> dict[str, int]:
    """Bits (8 or 16) of every activation tensor when the layers ``wide`` run int16x8.

    Raises
    ------
    MixedInputs
        An operator would read tensors of both types, or an operator this
        module does not widen would read a 16-bit tensor.
    """
    unknown = sorted(set(wide) - set(weighted_layers(graph)))
    if unknown:
        raise PlanError(f"not weighted layers of model {graph.name!r}: {unknown[:10]}; "
                        f"choose among {weighted_layers(graph)[:20]}")
    bits = {t: 8 for t in graph.inputs}
    for node in graph.nodes:
        ins = {bits[t] for t in node.inputs if t in bits}
        if isinstance(node, _WEIGHTED):
            out = 16 if node.name in wide or 16 in ins else 8
        elif len(ins) > 1:
            raise MixedInputs(f"layer {node.name!r} ({node.op_type}) would read int8 and int16 "
                              f"inputs; widen the layers feeding all of its inputs")
        elif 16 in ins and not isinstance(node, _KEEP_TYPE) and node.op_type != "Add":
            raise MixedInputs(f"layer {node.name!r} ({node.op_type}) would read an int16 "
                              f"input; fxp widens only conv, dense, pooling, MEAN, ADD, "
                              f"SOFTMAX and layout operators to int16x8")
        else:
            out = max(ins) if ins else 8
        for t in node.outputs:
            bits[t] = out
    return bits


def switch_points(graph: Graph, plan: Plan, wide) -> list[SwitchPoint]:
    """Where the int16x8 region starts: a QUANTIZE int8 -> int16 before each layer listed."""
    bits, out = tensor_types(graph, wide), []
    specs = _int8_specs(graph, plan)
    for node in graph.nodes:
        if isinstance(node, _WEIGHTED) and bits[node.outputs[0]] == 16 and \
                bits[node.inputs[0]] == 8:
            s = specs[node.inputs[0]].scales[0] / 128.0
            out.append(SwitchPoint(node.name, node.inputs[0], float(s)))
    return out


def _int8_specs(graph: Graph, plan: Plan) -> dict[str, TensorSpec]:
    """The int8 coding of every activation tensor (a layer's output spec, else its input's)."""
    specs = {t: plan.input for t in graph.inputs}
    for node in graph.nodes:
        lp = plan.layer(node.name)
        spec = lp.output if lp is not None and lp.output is not None else \
            specs.get(node.inputs[0]) if node.inputs else None
        for t in node.outputs:
            if spec is not None:
                specs[t] = spec
    return specs


def widen_plan(graph: Graph, plan: Plan, wide) -> Plan:
    """``plan`` with the layers ``wide``, and all downstream of them, in int16x8.

    Parameters
    ----------
    graph, plan : Graph, Plan
        An int8 ``.tflite`` as :func:`fxp.frontends.tflite.load_tflite` reads it.
    wide : iterable of str
        Weighted layers to run int16x8 (see :func:`weighted_layers`).

    Returns
    -------
    Plan
        Named ``<plan name>+int16x8[<layers>]``; equal to ``plan`` when
        ``wide`` is empty.
    """
    wide = frozenset(wide)
    _check_int8(plan, graph)
    bits = tensor_types(graph, wide)
    nodes = {n.name: n for n in graph.nodes}
    layers = []
    for lp in plan.layers:
        node = nodes.get(lp.name)
        if node is None or bits.get(node.outputs[0], 8) == 8 or lp.output is None:
            layers.append(lp)
            continue
        where = f"layer {lp.name!r}"
        out = SOFTMAX_INT16 if isinstance(node, Softmax) else int16_spec(lp.output, where)
        changes: dict = {"output": out}
        if isinstance(node, _WEIGHTED):
            changes["acc_bits"] = 64
        layers.append(lp.with_(**changes))
    if not wide:
        return plan
    label = ",".join(n for n in weighted_layers(graph) if bits[nodes[n].outputs[0]] == 16)
    return Plan(plan.input, tuple(layers), name=f"{plan.name}+int16x8[{label}]",
                input_rounding=plan.input_rounding, input_overflow=plan.input_overflow)


def closed_choices(graph: Graph, limit: int = 4096) -> list[frozenset[str]]:
    """Every feasible set of int16x8 weighted layers, closed downstream, smallest first.

    Two choices that widen the same layers are one; the all-int8 choice (the
    empty set) comes first.

    Raises
    ------
    PlanError
        More than ``limit`` distinct choices (the search is exhaustive).
    """
    names = weighted_layers(graph)
    start: frozenset[str] = frozenset()
    seen, frontier, feasible = {start}, [start], [start]
    while frontier:
        nxt = []
        for choice in frontier:
            for name in names:
                if name in choice:
                    continue
                grown = _closure(graph, choice | {name})
                if grown in seen:
                    continue
                seen.add(grown)
                if len(seen) > limit:
                    raise PlanError(f"model {graph.name!r}: more than {limit} int8/int16x8 "
                                    f"choices; the exhaustive search stops there")
                nxt.append(grown)
                try:
                    tensor_types(graph, grown)
                except MixedInputs:
                    continue
                feasible.append(grown)
        frontier = nxt
    return sorted(feasible, key=lambda c: (len(c), [names.index(n) for n in c]))


def _closure(graph: Graph, wide: frozenset[str]) -> frozenset[str]:
    """``wide`` plus every weighted layer downstream of it (reading a 16-bit tensor)."""
    bits = {t: 8 for t in graph.inputs}
    out = set(wide)
    for node in graph.nodes:
        wide_in = any(bits.get(t) == 16 for t in node.inputs)
        is16 = (node.name in out) if isinstance(node, _WEIGHTED) else wide_in
        if isinstance(node, _WEIGHTED) and wide_in:
            out.add(node.name)
            is16 = True
        for t in node.outputs:
            bits[t] = 16 if is16 else 8
    return frozenset(out)


def describe(graph: Graph, plan: Plan, wide) -> list[dict]:
    """One row per weighted layer: its type under ``wide`` and the QUANTIZE it needs."""
    bits = tensor_types(graph, wide)
    starts = {p.layer: p for p in switch_points(graph, plan, wide)}
    nodes = {n.name: n for n in graph.nodes}
    rows = []
    for name in weighted_layers(graph):
        node = nodes[name]
        p = starts.get(name)
        rows.append({"layer": name, "type": "int16x8" if bits[node.outputs[0]] == 16 else "int8",
                     "quantize_before": None if p is None else
                     f"int8 -> int16, scale {p.scale:.6g}, zero point 0"})
    return rows

