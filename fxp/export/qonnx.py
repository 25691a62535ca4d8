"""Export a model and its plan as a QONNX model (``Quant`` / ``BipolarQuant`` nodes).

The inverse of :func:`fxp.frontends.qonnx.load_qonnx`: the written ONNX file
computes, in qonnx's semantics (qonnx 1.0 ``intquant.py``,
``bipolar_quant.py``; domain ``qonnx.custom_op.general``), the integers the
plan computes, so a plan made by fxp can go to FINN or hls4ml's QONNX path::

    x -> Quant(input) -> Conv(Wq, B) [-> Relu] -> Quant(output) -> MaxPool -> ...
                              ^
         W (the plan's weight codes * scale) -> Quant(weight)

How each plan entry is written (``s = 2**-F`` for a power-of-two format):

* the plan input: ``Quant(x, 2**-F, 0, bits)`` with ``input_rounding`` as
  ``rounding_mode`` and ``narrow`` for ``saturate_symmetric``;
* a Conv2D / Dense layer's weight: its codes (as the plan computes them:
  ``weight_rounding``, ``weight_overflow``, ``param_decimals`` applied here)
  times the scale, through ``Quant(W, s, 0, bits)``; per-channel formats of
  one width become per-channel scales ``2**-F_c``; the bias: its codes in the
  accumulator's LSB as float32 values (no Quant: qonnx adds it exactly);
* the layer's output: ``[Relu ->] Quant(y, s_out, 0, bits)`` with the
  layer's ``rounding`` (``half_even`` -> ``ROUND``, ``ceil`` -> ``CEIL``,
  ``floor`` -> ``FLOOR``, ``away`` -> ``UP``, ``to_zero`` -> ``DOWN``,
  ``half_away`` -> ``HALF_UP``, ``half_to_zero`` -> ``HALF_DOWN``; fxp's
  ``half_up`` / ``half_down`` only where the output cannot go below 0 -- a
  fused ReLU or an unsigned format -- where they equal ``HALF_UP`` /
  ``HALF_DOWN``), ``narrow=1`` for ``saturate_symmetric`` signed outputs;
* a binary (XNOR-popcount) layer: ``BipolarQuant(sign(W), alpha[c])`` weights
  (alpha 1 without XNOR-Net scaling) on a bipolar input: a binary tensor as it
  is, a multi-bit one through ``BipolarQuant(v, 1)`` (``sign(0) = +1`` in
  both); ``threshold`` outputs are ``BipolarQuant(y, 1)``, ``scale`` / ``dot``
  outputs a ``Quant`` as above;
* MaxPool, Flatten, Reshape and a standalone ReLU pass the float-carried codes
  through (as in fxp); a final float Softmax is written as ``Softmax``.

Refused with one :class:`~fxp.errors.FxpError` naming the layer and the
field (QONNX cannot say it): a wrapping or saturate-to-zero ``output_overflow``
(or ``input_overflow``); ``half_up`` / ``half_down`` rounding where the output
can be negative; an accumulator (``acc_bits``) that can overflow; products
rounded into a coarser accumulator (``acc_frac_bits`` below ``F_x + F_w``,
hls4ml) or a separate ``result`` type; a layer ``input`` cast; ``float_layer``;
any ``requant`` but ``pow2`` (TFLite's double or single rounding, and
onnxruntime's float32 one, whose ``float32(acc) * float32(s_x s_w / s_y)``
is not qonnx's ``conv(x, w) / s_y`` near ties; an affine bias is rarely a
float32 multiple of ``s_x s_w`` either), so affine (scaled) plans are
refused; fused clips other than ReLU; per-channel weight formats of different
widths; binary layers padded with +-1, with groups or with XNOR-Net's input
scaling ``beta``; Quant bit widths above 32 or scales outside float32; ops
other than those above.

Exactness of qonnx's own executor: qonnx carries values in float32, exact as
long as each accumulator (plus bias) fits float32's 24-bit significand in its
LSB; the plan's integers are exact regardless (FINN and hls4ml compute them in
integers).  A round trip ``export_qonnx`` -> ``load_qonnx`` gives back the
same layer entries (the accumulator is re-derived at ``max(32, worst case)``
bits; binary layers get the narrowest ``alpha`` / ``bias`` formats holding the
same values; a multi-bit tensor re-binarized by ``BipolarQuant`` is written
but not read back by the importer, which holds one coding per tensor).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import PlanError, UnsupportedOpError
from fxp.fileio import write_bytes
from fxp.ir import nodes as ir
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan, RequantScheme, TensorSpec

__all__ = ["QONNX_DOMAIN", "QONNX_ROUNDING_NAMES", "export_qonnx", "qonnx_model"]

QONNX_DOMAIN = "qonnx.custom_op.general"
R = RoundingMode
QONNX_ROUNDING_NAMES = {R.HALF_EVEN: "ROUND", R.CEIL: "CEIL", R.FLOOR: "FLOOR", R.AWAY: "UP",
                        R.TO_ZERO: "DOWN", R.HALF_AWAY: "HALF_UP", R.HALF_TO_ZERO: "HALF_DOWN"}
"""fxp rounding -> qonnx ``rounding_mode`` (the inverse of the importer's table)."""
_NONNEG_ROUNDING = {R.HALF_UP: "HALF_UP", R.HALF_DOWN: "HALF_DOWN"}
"""Equal to qonnx's ties-away / ties-to-zero on values >= 0 (ties toward +inf / -inf)."""
del R
_MAX_QUANT_BITS = 32
_PASS = (ir.MaxPool2D, ir.Flatten, ir.Reshape)


def export_qonnx(graph: Graph, plan: Plan, path: str | os.PathLike, *, batch: int = 1) -> Path:
    """Write ``graph`` under ``plan`` as a QONNX model file; returns the path.

    Parameters
    ----------
    graph : Graph
    plan : Plan
    path : str or PathLike
        The ``.onnx`` file to write (atomically).
    batch : int
        The input's batch dimension (qonnx's executor and FINN want fixed
        shapes; FINN streams one sample at a time, ``batch=1``).

    Raises
    ------
    PlanError
        A plan field QONNX cannot express exactly (named, with the layer).
    UnsupportedOpError
        An op with no QONNX export (named, with the node).
    OutputError
        The file cannot be written.
    """
    model = qonnx_model(graph, plan, batch=batch)
    return write_bytes(path, model.SerializeToString())


def qonnx_model(graph: Graph, plan: Plan, *, batch: int = 1) -> Any:
    """The QONNX ``onnx.ModelProto`` of ``graph`` under ``plan`` (see the module docstring)."""
    from fxp.sim.compile import compile_plan

    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise PlanError(f"batch must be an integer >= 1, got {batch!r}")
    return _Writer(compile_plan(graph, plan)).run(batch)


def _exact_f32(values: np.ndarray, where: str) -> np.ndarray:
    """float64 values as float32, refusing any that float32 cannot hold exactly."""
    v = np.asarray(values, np.float64)
    f = v.astype(np.float32)
    if not np.array_equal(f.astype(np.float64), v):
        bad = v.ravel()[np.flatnonzero(f.ravel().astype(np.float64) != v.ravel())[0]]
        raise PlanError(f"{where}: value {bad!r} is not a float32 number; QONNX carries "
                        f"values in float32")
    return f


def _codes_to_values(codes: np.ndarray, frac: np.ndarray | int, where: str) -> np.ndarray:
    """``codes * 2**-frac`` in float64 (exact: codes below 2**53 are checked)."""
    c = np.asarray(codes, np.int64)
    if np.any(np.abs(c) >= 1 << 53):
        raise PlanError(f"{where}: codes up to {int(np.abs(c).max())} do not fit float32; "
                        f"QONNX carries values in float32")
    return np.ldexp(c.astype(np.float64), -np.asarray(frac, np.int64))


class _Writer:
    def __init__(self, model: Any) -> None:
        import onnx

        self.onnx, self.m, self.g, self.plan = onnx, model, model.graph, model.plan
        self.nodes: list = []
        self.inits: list = []
        # fxp's tensor names are reserved for the tensors holding their values (claim())
        self.used = set(self.g.shapes) | {n.name for n in self.g.nodes}
        self.claimed: set[str] = set()
        self.val: dict[str, str] = {}     # fxp tensor -> onnx tensor holding its values
        self.binary: set[str] = set()     # fxp tensors holding +-1 (bipolar) values
        self.bipolar_of: dict[str, str] = {}

    # -- names, constants, quantizers ---------------------------------------------------
    def fresh(self, stem: str) -> str:
        name, i = stem, 1
        while name in self.used:
            name, i = f"{stem}_{i}", i + 1
        self.used.add(name)
        return name

    def claim(self, tensor: str) -> str:
        """fxp tensor ``tensor``'s own name for the ONNX tensor holding its values."""
        if tensor in self.claimed or tensor in self.g.inputs:
            return self.fresh(tensor + "_quant")
        self.claimed.add(tensor)
        return tensor

    def const(self, stem: str, values: np.ndarray, dtype: Any = np.float32) -> str:
        name = self.fresh(stem)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(values, dtype), name))
        return name

    def node(self, op: str, ins: list[str], out: str, name: str, domain: str = "",
             **attrs: Any) -> str:
        self.nodes.append(self.onnx.helper.make_node(op, ins, [out], name=name, domain=domain,
                                                     **attrs))
        return out

    def quant(self, x: str, out: str, scale: np.ndarray, bits: int, signed: bool,
              narrow: bool, mode: str, where: str) -> str:
        if not 1 <= bits <= _MAX_QUANT_BITS:
            raise PlanError(f"{where}: {bits}-bit codes; QONNX Quant bit widths here are "
                            f"1..{_MAX_QUANT_BITS} (values are carried in float32)")
        s = _exact_f32(scale, f"{where} scale")
        if np.any(s == 0) or not np.all(np.isfinite(s)):
            raise PlanError(f"{where}: scale {np.asarray(scale).ravel()[:4].tolist()} is "
                            f"outside float32's normal range")
        ins = [x, self.const(out + "_scale", s), self.const(out + "_zeropt", 0.0),
               self.const(out + "_bitwidth", float(bits))]
        return self.node("Quant", ins, out, self.fresh("Quant_" + out), QONNX_DOMAIN,
                         signed=int(signed), narrow=int(narrow), rounding_mode=mode)

    def bipolar(self, x: str, out: str, scale: np.ndarray | float) -> str:
        s = self.const(out + "_scale", _exact_f32(scale, f"BipolarQuant {out!r} scale"))
        return self.node("BipolarQuant", [x, s], out, self.fresh("BipolarQuant_" + out),
                         QONNX_DOMAIN)

    def spec_quant(self, x: str, out: str, spec: TensorSpec, rounding: RoundingMode,
                   overflow: OverflowMode, nonneg: bool, where: str) -> str:
        """``Quant`` of a power-of-two activation spec with fxp's rounding and overflow."""
        fmt = spec.fmt
        if not spec.is_pow2:
            raise PlanError(f"{where}: affine (scaled) coding {fmt} with scales "
                            f"{list(spec.scales)[:4]}; this export writes power-of-two plans")
        mode = QONNX_ROUNDING_NAMES.get(rounding)
        if mode is None and (nonneg or not fmt.signed):
            mode = _NONNEG_ROUNDING.get(rounding)
        if mode is None:
            raise PlanError(f"{where}: rounding {rounding.value!r} (ties toward "
                            f"{'+' if rounding is RoundingMode.HALF_UP else '-'}inf) on a "
                            f"signed output that can be negative has no qonnx rounding_mode; "
                            f"use half_away (HALF_UP) or half_even (ROUND)")
        if overflow not in (OverflowMode.SATURATE, OverflowMode.SATURATE_SYMMETRIC):
            raise PlanError(f"{where}: overflow {overflow.value!r}; a QONNX Quant saturates "
                            f"(narrow: symmetric)")
        narrow = overflow is OverflowMode.SATURATE_SYMMETRIC and fmt.signed and fmt.bits > 1
        return self.quant(x, out, np.array(np.ldexp(1.0, -fmt.frac_bits)), fmt.bits,
                          fmt.signed, narrow, mode, where)

    # -- the graph ----------------------------------------------------------------------
    def run(self, batch: int) -> Any:
        oh = self.onnx.helper
        for step in self.m.steps:  # the layer's requantization first: it names the layer
            lp = step.plan
            if isinstance(step.node, (ir.Conv2D, ir.Dense)) and not lp.float_layer and \
                    not lp.is_binary and lp.requant is not RequantScheme.POW2:
                raise PlanError(f"layer {step.node.name!r} ({step.node.op_type}): requant "
                                f"{lp.requant.value!r}; QONNX requantizes by dividing by a "
                                f"scale and rounding once, which only 'pow2' (a shift) "
                                f"equals exactly")
        x = self.g.inputs[0]
        p = self.plan
        consumers = self.g.consumers(x)
        if consumers and all(self._is_binary_layer(n) for n in consumers) and \
                p.input_rounding is RoundingMode.FLOOR and p.input.is_pow2 and \
                p.input_overflow is not OverflowMode.WRAP:
            self.val[x] = x  # floor and saturation keep the sign: BipolarQuant reads x itself
        else:
            self.val[x] = self.spec_quant(x, self.claim(x), p.input,
                                          p.input_rounding, p.input_overflow, False,
                                          "plan input")
        for step in self.m.steps:
            self.emit(step)
        shape = self.g.input_shapes[x]
        inputs = [oh.make_tensor_value_info(x, self.onnx.TensorProto.FLOAT,
                                            [batch, *[int(d) for d in shape[1:]]])]
        outputs = [oh.make_tensor_value_info(self.val[t], self.onnx.TensorProto.FLOAT, None)
                   for t in self.g.outputs]
        graph = oh.make_graph(self.nodes, self.g.name or "fxp", inputs, outputs, self.inits)
        model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13),
                                                    oh.make_opsetid(QONNX_DOMAIN, 1)],
                              producer_name="fxp")
        model.ir_version = 8
        for k, v in self.g.metadata.items():
            model.metadata_props.add(key=k, value=v)
        model.metadata_props.add(key="fxp.plan.name", value=self.plan.name)
        return model

    def _is_binary_layer(self, node: ir.Node) -> bool:
        lp = self.plan.layer(node.name)
        return lp is not None and lp.is_binary

    def emit(self, step: Any) -> None:
        node, lp = step.node, step.plan
        where = f"layer {node.name!r} ({node.op_type})"
        if lp is not None and lp.float_layer:
            raise PlanError(f"{where}: float_layer; QONNX layers between quantizers compute "
                            f"on codes (quantize the layer or drop the export)")
        if isinstance(node, (ir.Conv2D, ir.Dense)):
            if lp.input is not None:
                raise PlanError(f"{where}: the 'input' cast ({lp.input.fmt}) requantizes a "
                                f"quantized tensor; the QONNX importer holds one coding per "
                                f"tensor (give the producer that output format)")
            return self.binary_layer(step, where) if lp.is_binary else self.layer(step, where)
        src = node.inputs[0]
        if isinstance(node, _PASS) or (isinstance(node, ir.ReLU) and step.out_spec is not None
                                       and step.out_spec == step.in_specs[0]):
            self.val[node.output] = self.pass_through(node, self.val[src])
            if src in self.binary:
                self.binary.add(node.output)
            return
        if isinstance(node, ir.Softmax) and step.out_spec is None and lp is None:
            self.val[node.output] = self.node("Softmax", [self.val[src]],
                                              self.claim(node.output), node.name,
                                              axis=node.axis)
            return
        raise UnsupportedOpError(f"node {node.name!r}: {node.op_type} has no QONNX export "
                                 f"(exported: Conv2D, Dense, MaxPool2D, Flatten, Reshape, ReLU, "
                                 f"a final float Softmax)")

    def pass_through(self, node: ir.Node, x: str) -> str:
        out = self.claim(node.output)
        if isinstance(node, ir.MaxPool2D):
            return self.node("MaxPool", [x], out, node.name, kernel_shape=list(node.kernel),
                             strides=list(node.strides), pads=list(node.pads))
        if isinstance(node, ir.Flatten):
            return self.node("Flatten", [x], out, node.name, axis=1)
        if isinstance(node, ir.Reshape):
            shape = self.const(node.name + "_shape", [-1, *node.shape], np.int64)
            return self.node("Reshape", [x, shape], out, node.name)
        return self.node("Relu", [x], out, node.name)

    def layer_op(self, node: ir.Node, x: str, w: str, bias: np.ndarray | None, out: str,
                 where: str) -> str:
        ins = [x, w]
        if bias is not None:
            ins.append(self.const(node.name + "_bias", _exact_f32(bias, f"{where} bias")))
        if isinstance(node, ir.Dense):
            return self.node("Gemm", ins, out, node.name, transB=1)
        return self.node("Conv", ins, out, node.name, kernel_shape=list(node.kernel),
                         strides=list(node.strides), pads=list(node.pads),
                         dilations=list(node.dilations), group=node.groups)

    def activation(self, node: ir.Node, y: str, where: str) -> tuple[str, bool]:
        """``(tensor, nonneg)`` after the layer's fused activation (a Relu node or none)."""
        act = node.fused_activation
        if act is None or act == (float("-inf"), float("inf")):
            return y, False
        if act == "relu" or act == (0.0, float("inf")):
            return self.node("Relu", [y], self.fresh(node.output + "_relu"),
                             self.fresh(node.name + "_relu")), True
        raise PlanError(f"{where}: fused_activation {act!r}; the QONNX export writes ReLU only "
                        f"(a clip's bounds are not Quant parameters)")

    def layer(self, step: Any, where: str) -> None:
        node, lp = step.node, step.plan
        if step.product_shift > 0:
            raise PlanError(f"{where}: acc_frac_bits={lp.acc_frac_bits} rounds each product "
                            f"into the accumulator (hls4ml's accum_t); QONNX accumulates "
                            f"exactly")
        if lp.result is not None:
            raise PlanError(f"{where}: a separate 'result' format ({lp.result.fmt}) rounds "
                            f"before the activation; QONNX quantizes once after it")
        worst, top = max(step.bound), step.acc_fmt.max_code
        if worst > top:
            raise PlanError(f"{where}: acc_bits={lp.acc_bits} ({lp.acc_overflow.value}) can "
                            f"overflow (worst case |acc| = {worst} codes > {top}); QONNX "
                            f"accumulates exactly: widen acc_bits by "
                            f"{worst.bit_length() + 1 - step.acc_fmt.bits}")
        w = self.weight(step, where)
        bias = None
        if node.bias is not None:
            bias = _codes_to_values(step.b_codes, step.acc_fmt.frac_bits, f"{where} bias")
        y = self.layer_op(node, self.val[node.inputs[0]], w, bias,
                          self.fresh(node.output + "_acc"), where)
        y, nonneg = self.activation(node, y, where)
        self.val[node.output] = self.spec_quant(y, self.claim(node.output), lp.output,
                                                lp.rounding, lp.output_overflow, nonneg,
                                                f"{where} output")

    def weight(self, step: Any, where: str) -> str:
        node, spec = step.node, step.plan.weight
        codes = np.asarray(step.w_codes, np.int64)
        if spec.channel_formats is None:
            fmt = spec.fmt
            scale, bits = np.array(np.ldexp(1.0, -fmt.frac_bits)), fmt.bits
            vals = _codes_to_values(codes, fmt.frac_bits, f"{where} weight")
        else:
            widths = {f.bits for f in spec.channel_formats}
            if len(widths) > 1:
                raise PlanError(f"{where}: per-channel weight formats of widths "
                                f"{sorted(widths)}; a QONNX Quant has one bit width")
            fr = np.array([f.frac_bits for f in spec.channel_formats], np.int64)
            shape = (-1,) + (1,) * (codes.ndim - 1)
            codes = codes >> step.plan.weight.channel_shifts().reshape(shape)
            scale, bits = np.ldexp(1.0, -fr).reshape(shape), widths.pop()
            vals = _codes_to_values(codes, fr.reshape(shape), f"{where} weight")
        init = self.const(node.name + "_W", _exact_f32(vals, f"{where} weight"))
        return self.quant(init, self.fresh(node.name + "_Wq"), scale, bits, spec.fmt.signed,
                          False, "ROUND", f"{where} weight")

    def binary_layer(self, step: Any, where: str) -> None:
        node, lp = step.node, step.plan
        beta = getattr(lp, "beta", None)
        if beta is not None:
            raise PlanError(f"{where}: beta ({beta.fmt}), XNOR-Net's per-window input scaling "
                            f"mean |X|, has no QONNX node")
        if isinstance(node, ir.Conv2D) and any(node.pads) and lp.pad_value != 0:
            raise PlanError(f"{where}: pad_value={lp.pad_value}; QONNX's Conv pads the "
                            f"bipolar input with zeros (pad_value 0)")
        src = node.inputs[0]
        x = self.val[src]
        if src not in self.binary:
            if src not in self.bipolar_of:
                self.bipolar_of[src] = self.bipolar(x, self.fresh(src + "_bipolar"), 1.0)
            x = self.bipolar_of[src]
        co = node.weight.shape[0]
        shape = (co,) + (1,) * (node.weight.ndim - 1)
        if lp.binary_output == "threshold":
            alpha = self.threshold_alpha(step)
        else:  # "scale": alpha codes (ones without alpha); "dot": ones
            alpha = _codes_to_values(step.scale_codes, step.scale_fmt.frac_bits, f"{where} alpha")
        signs = self.const(node.name + "_W", np.asarray(step.w_codes, np.float32))
        w = self.bipolar(signs, self.fresh(node.name + "_Wq"), alpha.reshape(shape))
        bias = self.binary_bias(step)
        y = self.layer_op(node, x, w, bias, self.fresh(node.output + "_acc"), where)
        if lp.binary_output == "threshold":  # a clip with lo < 0 <= hi keeps the sign
            self.val[node.output] = self.bipolar(y, self.claim(node.output), 1.0)
            self.binary.add(node.output)
            return
        y, nonneg = self.activation(node, y, where)
        self.val[node.output] = self.spec_quant(y, self.claim(node.output), lp.output,
                                                lp.rounding, lp.output_overflow, nonneg,
                                                f"{where} output")

    @staticmethod
    def threshold_alpha(step: Any) -> np.ndarray:
        """alpha of a threshold layer (its codes in ``lp.alpha``, else 1), as compile_binary."""
        from fxp.quant.binary import binarize_weights

        lp, co = step.plan, step.node.weight.shape[0]
        if lp.alpha is None:
            return np.ones(co)
        bw = binarize_weights(step.node.weight.astype(np.float64), lp.alpha.fmt, "half_even",
                              "saturate")
        return _codes_to_values(bw.alpha, bw.alpha_fmt.frac_bits, f"layer {lp.name!r} alpha")

    @staticmethod
    def binary_bias(step: Any) -> np.ndarray | None:
        """The bias a binary layer adds: its codes (``scale``), or the exact / coded bias."""
        from fxp.sim.values import quantize_spec

        node, lp = step.node, step.plan
        if node.bias is None or lp.binary_output == "dot":
            return None
        if lp.binary_output == "scale":
            return _codes_to_values(step.b_codes, step.b_fmt.frac_bits, f"layer {lp.name!r} bias")
        if lp.bias is None:
            return node.bias.astype(np.float64)
        codes, _ = quantize_spec(node.bias.astype(np.float64), lp.bias)
        return _codes_to_values(codes, lp.bias.fmt.frac_bits, f"layer {lp.name!r} bias")
