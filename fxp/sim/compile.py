"""Graph + Plan -> executable integer steps, with everything precomputed.

Compilation (TFLite's "Prepare"): for every layer it quantizes the weights and
biases once, derives shifts / multipliers / float32 scales, computes the
worst-case accumulator bound from the actual weights and the input format
(:func:`fxp.ops.layers.accumulator_bound`), and refuses plans that cannot run:
unknown layer names, a layer with weights and no plan, a multiplier scheme on
an accumulator wider than 32 bits, a scale that does not fit the multiplier.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.errors import PlanError, UnsupportedOpError
from fxp.ir.graph import Graph
from fxp.ir.nodes import (
    Add, AvgPool2D, Clip, Concat, Conv2D, Dense, Flatten, GlobalAvgPool, MaxPool2D, ReLU, Reshape,
    Softmax,
)
from fxp.ir.passes import canonicalize
from fxp.ops.layers import accumulator_bound
from fxp.plan.plan import LayerPlan, Plan, RequantScheme, TensorSpec
from fxp.sim.values import INPUT_ARITHMETIC, quantize_spec

__all__ = ["BIAS_CODES_KEY", "INPUT_ARITHMETIC_KEY", "CompiledModel", "LayerStep", "compile_plan"]

INPUT_ARITHMETIC_KEY = "fxp.sim.input_arithmetic"
"""Graph metadata key: default ``input_arithmetic`` of :func:`compile_plan`."""
BIAS_CODES_KEY = "fxp.sim.bias_codes"
"""Graph metadata key: JSON ``{layer: [int32 bias codes]}`` for affine layers."""

PASS_THROUGH = (MaxPool2D, ReLU, Clip, Flatten, Reshape)


@dataclass
class LayerStep:
    """One node with its plan and precomputed integer parameters."""

    node: object
    plan: LayerPlan | None
    in_specs: tuple  # TensorSpec or None (float) per input
    out_spec: TensorSpec | None  # None: the output is float
    w_codes: np.ndarray | None = None
    w_zero_point: np.ndarray | int = 0
    b_codes: np.ndarray | None = None
    acc_fmt: QFormat | None = None
    multipliers: np.ndarray | None = None
    exponents: np.ndarray | None = None
    f32_scales: np.ndarray | None = None
    act_bounds: tuple[int, int] | None = None
    bound: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def worst_case_bits(self) -> int | None:
        """Accumulator bits that hold the worst case (sign included); None without weights."""
        if not self.bound:
            return None
        return max(self.bound).bit_length() + 1


@dataclass
class CompiledModel:
    """A canonical graph, its plan, and one step per node, in order."""

    graph: Graph
    plan: Plan
    steps: list[LayerStep]
    input_arithmetic: str = "float64"
    """How an affine graph input is quantized (:func:`fxp.sim.values.quantize_spec`)."""


def _spec_range(spec: TensorSpec) -> tuple[int, int]:
    return spec.fmt.min_code, spec.fmt.max_code


def _quantize_weights(node, spec: TensorSpec) -> np.ndarray:
    w = node.weight.astype(np.float64)
    if spec.is_pow2:
        codes, _ = quantize_spec(w, spec)
        return codes
    scales = spec.scale_array()
    shape = (-1,) + (1,) * (w.ndim - 1)
    if scales.size not in (1, w.shape[0]):
        raise PlanError(f"layer {node.name!r}: {scales.size} weight scales for "
                        f"{w.shape[0]} output channels")
    wide = QFormat.integer(min(64, spec.fmt.bits + 40))
    from fxp.ops.fixed import quantize

    codes, _ = quantize(w / scales.reshape(shape), wide, "half_even", "saturate")
    return np.clip(codes + spec.zero_point, spec.fmt.min_code, spec.fmt.max_code)


def _act_bounds(node, spec: TensorSpec) -> tuple[int, int] | None:
    act = getattr(node, "fused_activation", None)
    if isinstance(node, ReLU):
        act = "relu"
    elif isinstance(node, Clip):
        act = (node.min_value, node.max_value)
    if act is None:
        return None
    lo, hi = spec.fmt.min_code, spec.fmt.max_code
    if act == "relu":
        return max(lo, spec.zero_point), hi
    bounds = np.array([v if v is not None and np.isfinite(v) else np.nan for v in act], np.float64)
    out = [lo, hi]
    for i, v in enumerate(bounds):
        if not np.isnan(v):
            c, _ = quantize_spec(np.array([v]), spec, f"{node.name} clip bound")
            out[i] = int(c[0])
    return max(lo, out[0]), min(hi, out[1])


def _exact_bias(node, codes, bias: np.ndarray, bscale: np.ndarray) -> np.ndarray:
    """Integer bias codes from graph metadata, checked against the node's float bias.

    A float32 bias cannot hold an int32 code above 2**24 exactly, so an importer
    of integer models (:mod:`fxp.frontends.onnx_qoperator`) records the codes;
    they are used only if each dequantizes (``float32(code * s_x * s_w)``,
    float64 product) to exactly the node's float bias.
    """
    c = np.asarray(codes)
    if c.shape != bias.shape or c.dtype.kind not in "iu":
        raise PlanError(f"layer {node.name!r}: metadata {BIAS_CODES_KEY!r} holds "
                        f"{c.shape} bias codes, the layer has {bias.shape}")
    c = c.astype(np.int64)
    if np.any(c < -(1 << 31)) or np.any(c >= 1 << 31):
        raise PlanError(f"layer {node.name!r}: metadata bias codes leave int32")
    back = (c.astype(np.float64) * np.broadcast_to(bscale, bias.shape)).astype(np.float32)
    if not np.array_equal(back, np.asarray(bias, np.float32)):
        raise PlanError(f"layer {node.name!r}: metadata {BIAS_CODES_KEY!r} does not match the "
                        f"layer's float bias (the graph was edited after import?)")
    return c


def _compile_weighted(node, lp: LayerPlan, in_spec: TensorSpec,
                      exact_bias=None) -> LayerStep:
    where = f"layer {node.name!r}"
    if lp.weight is None or lp.output is None:
        raise PlanError(f"{where}: an integer layer needs 'weight' and 'output' specs")
    if lp.input is not None:
        in_spec = lp.input
    w_codes = _quantize_weights(node, lp.weight)
    sx, sw = in_spec.scale_array(), lp.weight.scale_array()
    step = LayerStep(node, lp, (in_spec,), lp.output, w_codes=w_codes,
                     w_zero_point=lp.weight.zero_point)
    acc_frac = in_spec.fmt.frac_bits + lp.weight.fmt.frac_bits
    step.acc_fmt = QFormat.from_frac(lp.acc_bits, acc_frac)
    bias = node.bias if node.bias is not None else np.zeros(node.weight.shape[0], np.float32)
    if lp.requant is RequantScheme.POW2:
        if not (in_spec.is_pow2 and lp.weight.is_pow2 and lp.output.is_pow2):
            raise PlanError(f"{where}: requant 'pow2' needs power-of-two input, weight and output")
        b_spec = lp.bias or TensorSpec(step.acc_fmt)
        if b_spec.fmt.frac_bits != acc_frac:
            raise PlanError(f"{where}: bias format {b_spec.fmt} must have frac_bits = "
                            f"F_x + F_w = {acc_frac}")
        step.b_codes, _ = quantize_spec(bias.astype(np.float64), b_spec)
    else:
        if lp.acc_bits > 32:
            raise PlanError(f"{where}: requant {lp.requant.value!r} works on int32 accumulators; "
                            f"acc_bits={lp.acc_bits}")
        if in_spec.is_pow2 or lp.weight.is_pow2 or lp.output.is_pow2:
            raise PlanError(f"{where}: requant {lp.requant.value!r} needs affine (scaled) "
                            "input, weight and output")
        bscale = sx[0] * sw  # float64 product of the float32 scales (TFLite)
        b = np.asarray(bias, np.float64) / np.broadcast_to(bscale, bias.shape)
        from fxp.ops.fixed import quantize

        step.b_codes, _ = quantize(b, QFormat.integer(32), "half_even", "saturate")
        if exact_bias is not None:
            step.b_codes = _exact_bias(node, exact_bias, bias, bscale)
        eff = np.broadcast_to(sx[0] * sw / lp.output.scale_array()[0], (node.weight.shape[0],))
        if lp.requant is RequantScheme.FLOAT32:
            f32 = (np.float32(sx[0]) * sw.astype(np.float32)) / np.float32(lp.output.scale_array()[0])
            step.f32_scales = np.broadcast_to(f32, (node.weight.shape[0],)).astype(np.float32)
        else:
            pairs = [intmath.quantize_multiplier(float(s), single_rounding=lp.requant is
                                                 RequantScheme.SINGLE) for s in eff]
            hi_exp = 30 if lp.requant is RequantScheme.SINGLE else 31
            for (m, e), s in zip(pairs, eff, strict=True):
                if e > hi_exp:
                    raise PlanError(f"{where}: effective scale {s!r} does not fit a 32-bit "
                                    f"multiplier (exponent {e} > {hi_exp})")
            step.multipliers = np.array([p[0] for p in pairs], np.int64)
            step.exponents = np.array([p[1] for p in pairs], np.int64)
    step.act_bounds = _act_bounds(node, lp.output)
    zp_w = lp.weight.zero_point
    step.bound = accumulator_bound(w_codes, zp_w, _spec_range(in_spec), in_spec.zero_point,
                                   step.b_codes)
    return step


def compile_plan(graph: Graph, plan: Plan, *, input_arithmetic: str | None = None
                 ) -> CompiledModel:
    """Check ``plan`` against ``graph`` and precompute every layer's integer parameters.

    ``input_arithmetic`` (``"float64"`` or ``"float32"``) is how the executor
    divides float inputs by an affine input scale; ``"float32"`` reproduces
    onnxruntime's ``QuantizeLinear`` (see :func:`fxp.sim.values.quantize_spec`).
    ``None`` takes ``graph.metadata["fxp.sim.input_arithmetic"]``, else ``"float64"``.

    Graph metadata ``"fxp.sim.bias_codes"`` (JSON ``{layer: [int32 codes]}``,
    written by importers of integer models) gives exact bias codes for
    affine layers whose float32 bias cannot hold them; see :func:`_exact_bias`.
    """
    if input_arithmetic is None:
        input_arithmetic = graph.metadata.get(INPUT_ARITHMETIC_KEY, "float64")
    if input_arithmetic not in INPUT_ARITHMETIC:
        raise PlanError(f"input_arithmetic must be one of {INPUT_ARITHMETIC}, got "
                        f"{input_arithmetic!r}")
    graph = canonicalize(graph)
    try:
        exact_biases = json.loads(graph.metadata.get(BIAS_CODES_KEY, "{}"))
    except ValueError as e:
        raise PlanError(f"graph metadata {BIAS_CODES_KEY!r} is not valid JSON: {e}") from None
    names = {n.name for n in graph.nodes}
    unknown = sorted({lp.name for lp in plan.layers} - names)
    if unknown:
        raise PlanError(f"plan names unknown layers {unknown}; the model's layers are "
                        f"{[n.name for n in graph.nodes]}")
    if len(graph.inputs) != 1:
        raise UnsupportedOpError(f"the integer executor takes one graph input, got {graph.inputs}")
    spec_of: dict[str, TensorSpec | None] = {graph.inputs[0]: plan.input}
    steps = []
    for node in graph.nodes:
        lp = plan.layer(node.name)
        ins = tuple(spec_of[t] for t in node.inputs)
        if isinstance(node, (Conv2D, Dense)):
            if lp is None:
                raise PlanError(f"layer {node.name!r} ({type(node).__name__}) has weights but no "
                                "plan entry; add one or mark it float")
            if lp.float_layer:
                step = LayerStep(node, lp, ins, lp.output)
            else:
                src = ins[0]
                if src is None and lp.input is None:
                    raise PlanError(f"layer {node.name!r} follows a float layer: give it an "
                                    "'input' spec to quantize its input")
                step = _compile_weighted(node, lp, lp.input or src,
                                         exact_biases.get(node.name))
        elif lp is not None and lp.float_layer:
            step = LayerStep(node, lp, ins, lp.output)
        elif isinstance(node, Softmax):
            if node.output not in graph.outputs:
                raise UnsupportedOpError(f"Softmax {node.name!r} is supported only as a graph "
                                         "output (it is computed in float)")
            step = LayerStep(node, lp, ins, None)
        elif all(s is None for s in ins):
            step = LayerStep(node, lp, ins, None)  # float region
        elif any(s is None for s in ins):
            raise PlanError(f"layer {node.name!r} mixes float and integer inputs")
        elif isinstance(node, PASS_THROUGH):
            out = ins[0]
            step = LayerStep(node, lp, ins, out, act_bounds=_act_bounds(node, out))
        elif isinstance(node, (AvgPool2D, GlobalAvgPool)):
            step = LayerStep(node, lp, ins, ins[0])
        elif isinstance(node, (Add, Concat)):
            if not all(s.is_pow2 for s in ins):
                raise UnsupportedOpError(f"{type(node).__name__} {node.name!r}: only power-of-two "
                                         "inputs are supported in the integer path")
            out = lp.output if lp is not None and lp.output is not None else _join_spec(ins, node)
            step = LayerStep(node, lp, ins, out)
        else:
            raise UnsupportedOpError(f"node {node.name!r}: {type(node).__name__} has no integer "
                                     "implementation; mark it float in the plan")
        spec_of[node.output] = step.out_spec
        steps.append(step)
    return CompiledModel(graph, plan, steps, input_arithmetic)


def _join_spec(ins: tuple[TensorSpec, ...], node) -> TensorSpec:
    """Default output of Add/Concat: the finest LSB, one more integer bit for Add."""
    frac = max(s.fmt.frac_bits for s in ins)
    ib = max(s.fmt.int_bits for s in ins) + (1 if isinstance(node, Add) else 0)
    signed = any(s.fmt.signed for s in ins)
    return TensorSpec(QFormat(min(64 if signed else 63, frac + ib), ib, signed))
