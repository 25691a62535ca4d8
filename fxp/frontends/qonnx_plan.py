"""The plan of a QONNX model: each quantizer to the layer entry that holds its codes.

Called by :func:`fxp.frontends.qonnx.load_qonnx` on the canonical float graph
(see that module for the mapping rules).  Every layer is checked after
compiling: its weight codes must give back the dequantized weights exactly,
and its bias must sit on the accumulator grid.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import ModelImportError, UnsupportedOpError
from fxp.frontends.qonnx_ops import QuantInfo, dyadic_frac
from fxp.ir import nodes as ir
from fxp.ir.graph import Graph
from fxp.plan.plan import LayerPlan, Plan, TensorSpec

__all__ = ["build_plan"]

_PASS = (ir.ReLU, ir.MaxPool2D, ir.Flatten, ir.Reshape)
"""Ops that commute with a monotone quantizer mapping 0 to 0 (codes pass through)."""
_OUT_AXIS = {"Conv": 0, "Gemm": None, "MatMul": -1}


def _bits_for(bound: int) -> int:
    """Signed width holding every integer in ``[-bound, bound]``."""
    return max(2, int(bound).bit_length() + 1)


class _Builder:
    def __init__(self, graph: Graph, onnx_nodes: dict[str, Any],
                 weights: dict[str, tuple[QuantInfo, np.ndarray]],
                 acts: dict[str, QuantInfo]) -> None:
        self.g, self.onnx_nodes, self.weights, self.acts = graph, onnx_nodes, weights, acts
        infos = list(acts.values()) + [w[0] for w in weights.values()]
        self.affine = any(not i.bipolar and (i.pow2_fracs() is None or i.zero_point != 0)
                          for i in infos)
        self.layers: list[LayerPlan] = []
        self.res: dict[str, tuple[str, Any]] = {}  # tensor -> ("spec", TensorSpec) | ("bipolar", info)
        self.new_nodes: dict[str, ir.Node] = {}

    # -- where a tensor gets quantized -------------------------------------------------
    def downstream(self, t: str, who: str) -> QuantInfo | None:
        """The first quantizer met from ``t`` through pass-through ops; None at the output."""
        self.crossed: list[ir.Node] = []
        while True:
            if t in self.acts:
                return self.acts[t]
            if t in self.g.outputs:
                return None
            rs = self.g.consumers(t)
            if len(rs) == 1 and isinstance(rs[0], _PASS):
                self.crossed.append(rs[0])
                t = rs[0].output
                continue
            seen = ", ".join(f"{r.name!r} ({r.op_type})" for r in rs[:3]) or "nothing"
            raise ModelImportError(f"{who}: tensor {t[:200]!r} reaches {seen[:300]} without a "
                                   f"Quant; every layer input must be quantized (QONNX float "
                                   f"tensors have no integer coding)")

    def spec_of(self, info: QuantInfo, where: str) -> TensorSpec:
        if not info.signed and info.narrow:
            raise ModelImportError(f"node {info.node!r} (Quant): unsigned narrow range "
                                   f"[0, {info.max_code}] has no fxp overflow mode")
        spec = info.activation_spec()
        if self.affine and spec.is_pow2:
            spec = TensorSpec(QFormat.integer(info.bits, info.signed),
                              scales=(float(info.scales.ravel()[0]),), zero_point=0)
        if self.affine and info.rounding not in ("ROUND", "HALF_EVEN"):
            raise ModelImportError(f"node {info.node!r} (Quant): rounding_mode "
                                   f"{info.rounding!r} on an affine activation ({where}); "
                                   f"fxp's affine requantization rounds half to even (ROUND)")
        return spec

    # -- the plan ----------------------------------------------------------------------
    def input_plan(self) -> tuple[TensorSpec, Any, Any]:
        name = self.g.inputs[0]
        info = self.downstream(name, "graph input")
        if info is None:
            raise ModelImportError("the graph input reaches the output without a layer")
        if info.shift is not None:
            raise ModelImportError(f"node {info.node!r} (MultiThreshold): thresholds the graph "
                                   f"input; fxp reads MultiThreshold only after a layer")
        if info.grid_frac is not None:
            raise ModelImportError(f"node {info.node!r} (Trunc): truncates the graph input's "
                                   f"codes after a rounding Quant (two roundings of a float "
                                   f"input); fxp reads Trunc only after a layer")
        if info.bipolar:
            self.res[name] = ("bipolar", info)  # floor keeps the sign: code < 0 iff x < 0
            return TensorSpec(QFormat.integer(16)), "floor", "saturate"
        spec = self.spec_of(info, "graph input")
        self.res[name] = ("spec", spec)
        return spec, info.mode, info.overflow() if spec.is_pow2 else "saturate"

    def weight_info(self, node: ir.Node) -> QuantInfo:
        on = self.onnx_nodes.get(node.name)
        w = on.input[1] if on is not None and len(on.input) > 1 else ""
        if w not in self.weights:
            raise ModelImportError(f"layer {node.name!r}: weight {w[:200]!r} is not the output "
                                   f"of a Quant or BipolarQuant node")
        info = self.weights[w][0]
        if info.zero_point != 0 and not info.per_tensor:  # pragma: no cover - read_quant
            raise ModelImportError(f"layer {node.name!r}: per-channel weight zero point")
        if not info.per_tensor:
            axis = _OUT_AXIS[on.op_type]
            if on.op_type == "Gemm":
                tb = next((a.i for a in on.attribute if a.name == "transB"), 0)
                axis = 0 if tb else 1
            shape = info.scales.shape
            axes = [i for i, d in enumerate(shape) if d != 1]
            want = axis % len(shape) if shape else None
            if axes != [want]:
                raise ModelImportError(f"node {info.node!r}: weight scales of shape "
                                       f"{list(shape)} are not per output channel of "
                                       f"{on.op_type} {node.name!r} (axis {axis})")
        return info

    def weight_spec(self, node: ir.Node, info: QuantInfo) -> TensorSpec:
        co = node.weight.shape[0]
        scales = np.broadcast_to(info.scales.ravel(), (co,)) if not info.per_tensor \
            else info.scales.ravel()
        if not self.affine:
            fr = info.pow2_fracs()
            f = int(fr.max())
            bits = info.bits + int(f - fr.min())
            signed = info.signed or info.bipolar
            return TensorSpec(QFormat.from_frac(max(bits, 2) if info.bipolar else bits, f,
                                                signed))
        return TensorSpec(QFormat.integer(max(info.bits, 2) if info.bipolar else info.bits,
                                          info.signed or info.bipolar),
                          scales=tuple(float(s) for s in scales), zero_point=info.zero_point,
                          axis=0 if len(scales) > 1 else None)

    def layer(self, node: ir.Node) -> None:
        winfo = self.weight_info(node)
        kind, xval = self.res[node.inputs[0]]
        out = self.downstream(node.output, f"layer {node.name!r}")
        if kind == "bipolar":
            if not winfo.bipolar:
                raise ModelImportError(f"layer {node.name!r}: its input is bipolar "
                                       f"({xval.node!r}) but its weights ({winfo.node!r}) are "
                                       f"{winfo.bits}-bit; fxp's binary layers need "
                                       f"BipolarQuant weights")
            return self.binary(node, xval, winfo, out)
        w = self.weight_spec(node, winfo)
        if out is not None and out.shift is not None:
            node = self.shift_bias(node, out)
        bias = node.bias
        if out is not None and (out.grid_frac is not None or out.shift is not None) and \
                self.affine:
            raise ModelImportError(f"node {out.node!r} after layer {node.name!r}: Trunc and "
                                   f"MultiThreshold are read in power-of-two models only")
        if self.affine:
            if out is None or out.bipolar:
                raise ModelImportError(f"layer {node.name!r}: an affine layer needs a "
                                       f"multi-bit Quant on its output")
            lp = LayerPlan(node.name, weight=w, output=self.spec_of(out, f"layer {node.name!r}"),
                           requant="float32", rounding="half_even",
                           output_overflow=out.overflow())
        else:
            fx, fw = xval.fmt.frac_bits, w.fmt.frac_bits
            facc = fx + fw
            fb = dyadic_frac(bias) if bias is not None else facc
            f = max(facc, fb)
            xmax = max(abs(xval.fmt.min_code), abs(xval.fmt.max_code))
            wsum = int(np.abs(np.round(np.ldexp(node.weight.astype(np.float64), fw)))
                       .reshape(node.weight.shape[0], -1).sum(axis=1).max())
            bmax = 0 if bias is None else int(np.abs(np.ldexp(bias.astype(np.float64), f)).max())
            acc_bits = max(32, _bits_for((xmax * wsum << (f - facc)) + bmax))
            if acc_bits > 64:
                raise ModelImportError(f"layer {node.name!r}: the exact accumulator needs "
                                       f"{acc_bits} bits (bias fraction bits {fb}); fxp "
                                       f"accumulates in at most 64")
            if out is not None and out.grid_frac is not None and f > out.grid_frac:
                raise ModelImportError(f"node {out.node!r} (Trunc) after layer {node.name!r}: "
                                       f"the accumulator has {f} fraction bits, finer than "
                                       f"the {out.grid_frac} of the Quant before the Trunc; "
                                       f"rounding twice is not one fxp requantization")
            extra = {"acc_frac_bits": f} if f != facc else {}
            if out is None or out.bipolar:  # the exact accumulator (its sign, for bipolar)
                spec, mode, ovf = TensorSpec(QFormat.from_frac(acc_bits, f)), "half_even", \
                    "saturate"
            else:
                spec = self.spec_of(out, f"layer {node.name!r}")
                mode, ovf = out.mode, out.overflow()
            lp = LayerPlan(node.name, weight=w, output=spec, acc_bits=acc_bits,
                           rounding=mode, output_overflow=ovf, requant="pow2", **extra)
        self.layers.append(lp)
        self.res[node.output] = ("spec", lp.output)
        if node.output in self.acts and self.acts[node.output].bipolar:
            self.res[node.output] = ("bipolar", self.acts[node.output])

    def shift_bias(self, node: ir.Node, out: QuantInfo) -> ir.Node:
        """The layer with a MultiThreshold's ``shift`` added to its bias (exactly, float32)."""
        co = node.weight.shape[0]
        if out.shift.size != 1 and (out.shift.size != co or any(
                isinstance(p, (ir.Flatten, ir.Reshape)) for p in self.crossed)):
            raise ModelImportError(f"node {out.node!r} (MultiThreshold): {out.shift.size} "
                                   f"per-channel thresholds do not match the {co} output "
                                   f"channels of layer {node.name!r}")
        b = (np.zeros(co) if node.bias is None else node.bias.astype(np.float64)) + out.shift
        if np.any(b.astype(np.float32) != b):
            raise ModelImportError(f"node {out.node!r} (MultiThreshold): bias of "
                                   f"{node.name!r} plus the threshold offset "
                                   f"{b.tolist()[:4]} is not float32-exact")
        node = replace(node, bias=b.astype(np.float32))
        self.new_nodes[node.name] = node
        return node

    def binary(self, node: ir.Node, xinfo: QuantInfo, winfo: QuantInfo,
               out: QuantInfo | None) -> None:
        if self.affine:
            raise ModelImportError(f"layer {node.name!r}: a binary layer needs power-of-two "
                                   f"scales in the whole model (binary layers requantize in "
                                   f"power of two)")
        if not xinfo.per_tensor:
            raise ModelImportError(f"node {xinfo.node!r}: per-channel bipolar activation "
                                   f"scales are not supported")
        if out is not None and (out.grid_frac is not None or out.shift is not None):
            raise ModelImportError(f"node {out.node!r} after binary layer {node.name!r}: "
                                   f"Trunc and MultiThreshold are not read after binary layers")
        co = node.weight.shape[0]
        alpha = np.broadcast_to(xinfo.scales.astype(np.float64).ravel()[0]
                                * winfo.scales.astype(np.float64).ravel(), (co,))
        signs = np.where(node.weight >= 0, 1.0, -1.0)
        self.new_nodes[node.name] = replace(
            node, weight=(signs * alpha.reshape((co,) + (1,) * (signs.ndim - 1)))
            .astype(np.float32))
        fa = dyadic_frac(alpha)
        a_codes = np.ldexp(alpha, fa)
        a_spec = None if np.all(alpha == 1) else TensorSpec(
            QFormat.from_frac(_bits_for(int(a_codes.max())), fa))
        fa = 0 if a_spec is None else fa
        bias = node.bias
        fb = dyadic_frac(bias) if bias is not None else 0
        k = int(np.prod(node.weight.shape[1:]))
        pads = isinstance(node, ir.Conv2D) and any(node.pads)
        common = {"weight": TensorSpec.binary(), "alpha": a_spec, "acc_bits": 32,
                  "pad_value": 0 if pads else None}
        if out is not None and out.bipolar:
            lp = LayerPlan(node.name, binary_output="threshold", **common)
            self.res[node.output] = ("bipolar", out)
        else:
            spec = TensorSpec(QFormat.from_frac(64, max(fa, fb))) if out is None else \
                self.spec_of(out, f"layer {node.name!r}")
            f = max(fa, fb, spec.fmt.frac_bits)
            bmax = 0 if bias is None else int(np.abs(np.ldexp(bias.astype(np.float64), f)).max())
            bound = int(a_codes.max()) * k << (f - fa) if a_spec is not None else k << f
            bbits = _bits_for(bound + bmax)
            if bbits > 62:
                raise ModelImportError(f"layer {node.name!r}: the exact output needs {bbits} "
                                       f"bits (bias fraction bits {fb})")
            if out is None:
                spec = TensorSpec(QFormat.from_frac(bbits, f))
            lp = LayerPlan(node.name, binary_output="scale", output=spec,
                           bias=TensorSpec(QFormat.from_frac(bbits, f)),
                           rounding=out.mode if out is not None else "half_even",
                           output_overflow=out.overflow() if out is not None else "saturate",
                           **common)
            self.res[node.output] = ("spec", spec)
        self.layers.append(lp)

    def passthrough(self, node: ir.Node) -> None:
        prev = self.res[node.inputs[0]]
        self.res[node.output] = prev
        info = self.acts.get(node.output)
        if info is None:
            return
        if info.bipolar:
            self.res[node.output] = ("bipolar", info)
            return
        if info.grid_frac is not None and (prev[0] == "bipolar" or not prev[1].is_pow2 or
                                           prev[1].fmt.frac_bits > info.grid_frac):
            raise ModelImportError(f"node {info.node!r} (Trunc) truncates the output of "
                                   f"{node.op_type} {node.name!r}; fxp reads a Trunc after a "
                                   f"pass-through op only when it repeats the coding before it")
        if prev[0] == "bipolar" or self.spec_of(info, node.name) != prev[1]:
            raise ModelImportError(f"node {info.node!r} (Quant) requantizes the output of "
                                   f"{node.op_type} {node.name!r} into another coding; fxp "
                                   f"reads a Quant after a pass-through op only when it "
                                   f"repeats the coding before it")

    def run(self) -> tuple[Graph, Plan]:
        inp, rounding, overflow = self.input_plan()
        for node in self.g.nodes:
            if isinstance(node, (ir.Conv2D, ir.Dense)):
                self.layer(node)
            elif isinstance(node, _PASS):
                self.passthrough(node)
            elif isinstance(node, ir.Softmax) and node.output in self.g.outputs:
                pass  # a final float Softmax of the quantized values (fxp.export.qonnx)
            else:
                raise UnsupportedOpError(f"node {node.name!r} ({node.op_type}): not supported "
                                         f"between QONNX quantizers (layers: Conv, Gemm, "
                                         f"MatMul; pass-through: Relu, MaxPool, Flatten, "
                                         f"Reshape)")
        graph = self.g.with_nodes([self.new_nodes.get(n.name, n) for n in self.g.nodes])
        if self.affine:
            from fxp.sim.compile import INPUT_ARITHMETIC_KEY

            meta = {**graph.metadata, INPUT_ARITHMETIC_KEY: "float32"}
            graph = Graph(nodes=graph.nodes, inputs=graph.inputs,
                          input_shapes=graph.input_shapes, outputs=graph.outputs,
                          metadata=meta, name=graph.name)
        plan = Plan(input=inp, layers=tuple(self.layers), name="qonnx",
                    input_rounding=rounding, input_overflow=overflow)
        _verify(graph, plan)
        return graph, plan


def _verify(graph: Graph, plan: Plan) -> None:
    """Compiled weight and bias codes must give back the graph's values exactly."""
    from fxp.sim.compile import compile_plan

    for step in compile_plan(graph, plan).steps:
        node, lp = step.node, step.plan
        if lp is None or lp.weight is None or lp.is_binary:
            continue
        w = lp.weight
        if w.is_pow2:
            back = np.ldexp(step.w_codes.astype(np.float64), -w.fmt.frac_bits)
        else:
            s = np.asarray(w.scales, np.float32).reshape((-1,) + (1,) * (node.weight.ndim - 1))
            back = ((step.w_codes - w.zero_point).astype(np.float32) * s).astype(np.float64)
        if not np.array_equal(back.reshape(node.weight.shape), node.weight.astype(np.float64)):
            bad = int(np.count_nonzero(back.reshape(node.weight.shape) != node.weight))
            raise ModelImportError(f"layer {node.name!r}: {bad} weights are not on the grid of "
                                   f"their Quant (a Gemm alpha or a folded op changed them?)")
        if node.bias is None:
            continue
        if w.is_pow2:
            f = step.acc_fmt.frac_bits if step.acc_fmt is not None else lp.acc_frac_bits
            bb = np.ldexp(np.asarray(step.b_codes, np.float64), -int(f))
        else:
            sx = np.float64(step.in_specs[0].scales[0])
            bb = np.asarray(step.b_codes, np.float64) * sx * np.asarray(w.scales, np.float64)
        if not np.array_equal(bb, node.bias.astype(np.float64)):
            raise ModelImportError(f"layer {node.name!r}: bias {node.bias.ravel()[:4].tolist()} "
                                   f"is not on the accumulator grid (scale of input x weight)")


def build_plan(graph: Graph, onnx_nodes: dict[str, Any],
               weights: dict[str, tuple[QuantInfo, np.ndarray]],
               acts: dict[str, QuantInfo]) -> tuple[Graph, Plan]:
    """``(graph, plan)`` for a canonical float ``graph`` and the model's quantizers."""
    return _Builder(graph, onnx_nodes, weights, acts).run()
