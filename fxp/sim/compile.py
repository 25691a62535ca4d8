"""Graph + Plan -> executable integer steps, with everything precomputed.

Compilation (TFLite's "Prepare"): for every layer it quantizes the weights and
biases once, derives shifts / multipliers / float32 scales, computes the
worst-case accumulator bound from the actual weights and the input format
(:func:`fxp.ops.layers.accumulator_bound`), and refuses plans that cannot run:
unknown layer names, a layer with weights and no plan, a multiplier scheme on
an accumulator wider than 32 bits, a scale that does not fit the multiplier.

Binary layers (``lp.weight`` binary, see :mod:`fxp.plan.plan`) are compiled
by :func:`fxp.sim.compile_binary.compile_binary`: the weights are binarized (``sign(W)`` with
``sign(0) = +1``; XNOR-Net ``alpha = mean |W[c]|`` in ``lp.alpha``'s format
when given) and bit-packed once; the worst-case "accumulator" is the
popcount dot product, ``|dot| <= K`` (``K = C*kh*kw`` or ``In``); the output
transform is precomputed (scale codes and bias codes, or exact integer sign
thresholds with the bias folded in).

Shift-add layers (``lp.weight`` shift) are compiled as fixed layers, then their
weight codes are encoded once as ``(sign, k)`` (:func:`fxp.ops.shift.encode_shift`;
a code that is not 0 or ``+-2**k`` raises :class:`~fxp.errors.ShiftWeightError`
naming the layer, index and value) for the shift-add kernel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.errors import PlanError, UnsupportedOpError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Clip, Conv2D, Dense, Flatten, MaxPool2D, ReLU, Reshape, Softmax
from fxp.ir.passes import canonicalize
from fxp.ops.layers import accumulator_bound
from fxp.plan.plan import LayerPlan, Plan, RequantScheme, TensorSpec
from fxp.sim.residual import QUANT_NODES, compile_step
from fxp.sim.values import INPUT_ARITHMETIC, quantize_spec

__all__ = ["BIAS_CODES_KEY", "INPUT_ARITHMETIC_KEY", "CompiledModel", "LayerStep", "compile_plan"]

INPUT_ARITHMETIC_KEY = "fxp.sim.input_arithmetic"
"""Graph metadata key: default ``input_arithmetic`` of :func:`compile_plan`."""
BIAS_CODES_KEY = "fxp.sim.bias_codes"
"""Graph metadata key: JSON ``{layer: [int32 bias codes]}`` for affine layers."""

PASS_THROUGH = (MaxPool2D, Flatten, Reshape)
_WIDE_SCHEMES = (RequantScheme.DOUBLE, RequantScheme.SINGLE, RequantScheme.FLOAT64)
"""Schemes that take an int64 accumulator (TFLite int16x8 layers)."""
_SOFTMAX_SCHEMES = ("double", "float64", "ruy", "xnnpack")
"""Requant values of an integer final Softmax (:mod:`fxp.ops.litert`)."""


@dataclass
class LayerStep:
    """One node with its plan and precomputed integer parameters."""

    node: object
    plan: LayerPlan | None
    in_specs: tuple  # TensorSpec or None (float) per input
    out_spec: TensorSpec | None  # None: the output is float
    w_codes: np.ndarray | None = None
    product_shift: int = 0  # pow2: F_x + F_w - F_acc (fxp.sim.compile_pow2)
    result_bounds: tuple[int, int] | None = None  # pow2 with lp.result: the clamp there
    w_zero_point: np.ndarray | int = 0
    b_codes: np.ndarray | None = None
    acc_fmt: QFormat | None = None
    multipliers: np.ndarray | None = None
    exponents: np.ndarray | None = None
    f32_scales: np.ndarray | None = None
    f64_scales: np.ndarray | None = None  # requant "float64" (LiteRT's reference FC)
    requant_variants: tuple | None = None  # per channel (fxp.ops.runtime_requant), or None
    act_bounds: tuple[int, int] | None = None
    bound: list[int] = field(default_factory=list)
    # binary (XNOR-popcount) layers only
    w_packed: object | None = None  # fxp.ops.binary.PackedBits of sign(W)
    pad_value: int | None = None
    scale_codes: np.ndarray | None = None  # per output channel ("scale" / "dot")
    scale_fmt: QFormat | None = None
    b_fmt: QFormat | None = None
    thresholds: np.ndarray | None = None  # "threshold": int64 [Co]
    directions: np.ndarray | None = None  # "threshold": int8 [Co]
    # non-weighted nodes with their own arithmetic (fxp.sim.residual): codes -> (codes, n_sat)
    op: object | None = None
    op_channels_last: object | None = None  # the same op on [N, H, W, C] codes, where it has one
    # shift-add layers only: w_codes = w_sign * 2**w_shift
    w_sign: np.ndarray | None = None  # int8 in {-1, 0, +1}
    w_shift: np.ndarray | None = None  # uint8
    # acc_order "hls4ml" Dense after a flattened NCHW tensor: hls4ml's channels-last order
    in_order: np.ndarray | None = None

    @property
    def is_shift(self) -> bool:
        """True for a shift-add layer (power-of-two weights, multiplication as a shift)."""
        return self.w_sign is not None

    @property
    def is_binary(self) -> bool:
        """True for a binary (XNOR-popcount) layer."""
        return self.w_packed is not None

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


def node_activation(node):
    """The activation a node applies: its ``fused_activation`` (Conv2D/Dense), ``"relu"``
    for a ReLU, ``(min, max)`` for a Clip, else None."""
    if isinstance(node, ReLU):
        return "relu"
    if isinstance(node, Clip):
        return (node.min_value, node.max_value)
    return getattr(node, "fused_activation", None)


def _act_bounds(node, spec: TensorSpec) -> tuple[int, int] | None:
    act = node_activation(node)
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


def _exact_bias(node, codes, bias: np.ndarray, bscale: np.ndarray) -> np.ndarray | None:
    """Integer bias codes from graph metadata, or None when they are not this plan's.

    A float32 bias cannot hold an int32 code above 2**24 exactly, so an importer
    of integer models (:mod:`fxp.frontends.onnx_qoperator`, the ``.tflite``
    reader) records the codes.  They are used only if each dequantizes
    (``float32(code * s_x * s_w)``, float64 product) to exactly the node's
    float bias; a plan that codes the layer's input at another scale (e.g.
    :func:`fxp.plan.tflite_int16.widen_plan`), or a graph whose bias was
    edited, quantizes the float bias instead (None).
    """
    c = np.asarray(codes)
    if c.shape != bias.shape or c.dtype.kind not in "iu":
        raise PlanError(f"layer {node.name!r}: metadata {BIAS_CODES_KEY!r} holds "
                        f"{c.shape} bias codes, the layer has {bias.shape}")
    c = c.astype(np.int64)
    if np.any(c < -(1 << 31)) or np.any(c >= 1 << 31):
        raise PlanError(f"layer {node.name!r}: metadata bias codes leave int32")
    back = (c.astype(np.float64) * np.broadcast_to(bscale, bias.shape)).astype(np.float32)
    return c if np.array_equal(back, np.asarray(bias, np.float32)) else None


def _compile_weighted(node, lp: LayerPlan, in_spec: TensorSpec,
                      exact_bias=None) -> LayerStep:
    where = f"layer {node.name!r}"
    if lp.weight is None or lp.output is None:
        raise PlanError(f"{where}: an integer layer needs 'weight' and 'output' specs")
    if lp.input is not None:
        in_spec = lp.input
    if lp.requant is RequantScheme.POW2:
        return _compile_pow2(node, lp, in_spec)
    w_codes = _quantize_weights(node, lp.weight)
    sx, sw = in_spec.scale_array(), lp.weight.scale_array()
    step = LayerStep(node, lp, (in_spec,), lp.output, w_codes=w_codes,
                     w_zero_point=lp.weight.zero_point)
    acc_frac = in_spec.fmt.frac_bits + lp.weight.fmt.frac_bits
    step.acc_fmt = QFormat.from_frac(lp.acc_bits, acc_frac)
    bias = node.bias if node.bias is not None else np.zeros(node.weight.shape[0], np.float32)
    wide = lp.acc_bits == 64 and lp.requant in _WIDE_SCHEMES
    if lp.acc_bits > 32 and not wide:  # int64: TFLite int16x8 (fxp.kernels.spec_requant64)
        raise PlanError(f"{where}: requant {lp.requant.value!r} works on int32 accumulators "
                        f"(or int64 with 'double' / 'single' / 'float64'); "
                        f"acc_bits={lp.acc_bits}")
    if in_spec.is_pow2 or lp.weight.is_pow2 or lp.output.is_pow2:
        raise PlanError(f"{where}: requant {lp.requant.value!r} needs affine (scaled) "
                        "input, weight and output")
    bscale = sx[0] * sw  # float64 product of the float32 scales (TFLite)
    b = np.asarray(bias, np.float64) / np.broadcast_to(bscale, bias.shape)
    from fxp.ops.fixed import quantize

    step.b_codes, _ = quantize(b, QFormat.integer(64 if wide else 32), "half_even",
                               "saturate")
    codes = None if exact_bias is None else _exact_bias(node, exact_bias, bias, bscale)
    if codes is not None:
        step.b_codes = codes
    eff = np.broadcast_to(sx[0] * sw / lp.output.scale_array()[0], (node.weight.shape[0],))
    if lp.requant in (RequantScheme.FLOAT32, RequantScheme.XNNPACK):  # one scale formula
        f32 = (np.float32(sx[0]) * sw.astype(np.float32)) / np.float32(lp.output.scale_array()[0])
        step.f32_scales = np.broadcast_to(f32, (node.weight.shape[0],)).astype(np.float32)
    elif lp.requant is RequantScheme.FLOAT64:  # LiteRT's reference FC (spec_runtime_requant)
        from fxp.kernels.spec_runtime_requant import float64_scales

        step.f64_scales = np.broadcast_to(float64_scales(sx[0], sw, lp.output.scales[0]),
                                          (node.weight.shape[0],)).copy()
    else:
        pairs = [intmath.quantize_multiplier(float(s), single_rounding=lp.requant is
                                             RequantScheme.SINGLE) for s in eff]
        hi_exp = 7 if wide else 30 if lp.requant is RequantScheme.SINGLE else 31
        for (m, e), s in zip(pairs, eff, strict=True):
            if e > hi_exp:
                raise PlanError(f"{where}: effective scale {s!r} does not fit a 32-bit "
                                f"multiplier (exponent {e} > {hi_exp})")
        step.multipliers = np.array([p[0] for p in pairs], np.int64)
        step.exponents = np.array([p[1] for p in pairs], np.int64)
        if lp.requant is RequantScheme.RUY and isinstance(node, Conv2D) and node.groups > 1 \
                and node.weight.shape[1] == 1:  # LiteRT's optimized depthwise (ruy's docstring)
            from fxp.kernels.spec_runtime_requant import litert_block_variants

            step.requant_variants = litert_block_variants(node.weight.shape[0], 8)
    step.act_bounds = _act_bounds(node, lp.output)
    if lp.requant is RequantScheme.XNNPACK:  # XNNPACK quantizes the clamp bounds itself
        from fxp.ops.xnnpack import xnnpack_act_bounds

        step.act_bounds = xnnpack_act_bounds(node, lp.output)
    zp_w = lp.weight.zero_point
    step.bound = accumulator_bound(w_codes, zp_w, _spec_range(in_spec), in_spec.zero_point,
                                   step.b_codes)
    return step


def _compile_pow2(node, lp: LayerPlan, in_spec: TensorSpec) -> LayerStep:
    """A power-of-two multiply or shift-add layer (:mod:`fxp.sim.compile_pow2`)."""
    from fxp.sim.compile_pow2 import pow2_layer_params, scaled_bound

    if not (in_spec.is_pow2 and lp.weight.is_pow2 and lp.output.is_pow2):
        raise PlanError(f"layer {node.name!r}: requant 'pow2' needs power-of-two input, weight "
                        "and output")
    w_codes, b_codes, acc_fmt, pshift = pow2_layer_params(node, lp, in_spec)
    step = LayerStep(node, lp, (in_spec,), lp.output, w_codes=w_codes, w_zero_point=0,
                     b_codes=b_codes, acc_fmt=acc_fmt, product_shift=pshift)
    if lp.result is not None:
        step.result_bounds = _act_bounds(node, lp.result)
        if step.result_bounds is None:
            raise PlanError(f"layer {node.name!r}: a 'result' format is for a layer with a "
                            "fused activation (ReLU/Clip); give 'output' alone")
    else:
        step.act_bounds = _act_bounds(node, lp.output)
    rng = _spec_range(in_spec)
    if pshift:
        step.bound = scaled_bound(accumulator_bound(w_codes, 0, rng, 0, None), b_codes,
                                  w_codes[0].size, pshift)
    else:
        step.bound = accumulator_bound(w_codes, 0, rng, 0, b_codes)
    if lp.weight.is_shift:
        from fxp.ops.shift import encode_shift

        step.w_sign, step.w_shift = encode_shift(w_codes, layer=node.name, fmt=lp.weight.fmt)
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
        raise PlanError(f"plan names unknown layers {_few(unknown)}; the model's "
                        f"{len(names)} layers are {_few([n.name for n in graph.nodes])}")
    _check_specs(plan)
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
            elif lp.is_binary:
                from fxp.sim.compile_binary import compile_binary

                step = compile_binary(node, lp)
            else:
                src = ins[0]
                if src is None and lp.input is None:
                    raise PlanError(f"layer {node.name!r} follows a float layer: give it an "
                                    "'input' spec to quantize its input")
                step = _compile_weighted(node, lp, lp.input or src,
                                         exact_biases.get(node.name))
                if lp.acc_order == "hls4ml" and isinstance(node, Dense):
                    step.in_order = _channels_last_order(graph, node)
        elif lp is not None and lp.float_layer:
            step = LayerStep(node, lp, ins, lp.output)
        elif lp is not None and any(getattr(lp, k) is not None
                                    for k in ("weight", "bias", "alpha", "input")):
            key = next(k for k in ("weight", "bias", "alpha", "input") if getattr(lp, k))
            raise PlanError(f"layer {node.name!r} ({type(node).__name__}) has no weights; its "
                            f"plan entry's {key!r} spec would be ignored (remove it)")
        elif isinstance(node, Softmax):
            if node.output not in graph.outputs:
                raise UnsupportedOpError(f"Softmax {node.name!r} is supported only as a graph "
                                         "output (it is computed in float)")
            step = LayerStep(node, lp, ins, None)
            if lp is not None and lp.softmax is not None:
                step = _compile_table_softmax(graph, node, lp, ins[0])
            elif lp is not None and lp.requant.value in _SOFTMAX_SCHEMES \
                    and lp.output is not None and not lp.output.is_pow2 \
                    and lp.output.fmt.bits in (8, 16):  # TFLM, or LiteRT
                from fxp.ops.litert import compile_runtime_softmax
                from fxp.ops.tflite_softmax import compile_tflite_softmax

                make = compile_tflite_softmax if lp.requant.value == "double" else \
                    compile_runtime_softmax
                step = LayerStep(node, lp, ins, lp.output, op=make(graph, node, lp, ins[0]))
        elif all(s is None for s in ins):
            step = LayerStep(node, lp, ins, None)  # float region
        elif any(s is None for s in ins):
            raise PlanError(f"layer {node.name!r} mixes float and integer inputs")
        elif isinstance(node, QUANT_NODES):
            step = compile_step(node, lp, ins)
        elif isinstance(node, PASS_THROUGH) and lp is not None and lp.output is not None \
                and lp.output != ins[0]:
            raise PlanError(f"layer {node.name!r} ({type(node).__name__}) keeps its input's "
                            f"coding ({ins[0].fmt}); its plan entry's output {lp.output.fmt} "
                            "would be ignored (remove it)")
        elif isinstance(node, PASS_THROUGH):
            step = LayerStep(node, lp, ins, ins[0])
        else:
            raise UnsupportedOpError(f"node {node.name!r}: {type(node).__name__} has no integer "
                                     "implementation; mark it float in the plan")
        spec_of[node.output] = step.out_spec
        steps.append(step)
    return CompiledModel(graph, plan, steps, input_arithmetic)


def _compile_table_softmax(graph: Graph, node, lp: LayerPlan, src: TensorSpec | None
                           ) -> LayerStep:
    """A final Softmax in hls4ml's table arithmetic (:mod:`fxp.ops.softmax_table`)."""
    from fxp.ops.softmax_table import prepare_softmax, softmax_table_int

    where = f"Softmax {node.name!r}"
    shape = graph.shapes.get(node.inputs[0])
    if src is None or not src.is_pow2 or src.is_binary:
        raise PlanError(f"{where}: a table softmax needs power-of-two input codes, got "
                        f"{'float' if src is None else src.fmt}")
    if shape is None or len(shape) != 2 or node.axis % 2 != 1 or not isinstance(shape[1], int):
        raise UnsupportedOpError(f"{where}: a table softmax runs over the last axis of "
                                 f"[N, n] logits; got shape {shape}, axis {node.axis}")
    prep = prepare_softmax(src.fmt, lp.softmax, shape[1], where)
    out = lp.output

    def op(codes: list) -> tuple:
        return softmax_table_int(codes[0], prep, out.fmt, lp.rounding, lp.output_overflow)

    return LayerStep(node, lp, (src,), out, op=op)


def _channels_last_order(graph: Graph, node) -> np.ndarray | None:
    """Input order of a Dense fed by a flattened NCHW tensor in hls4ml (channels last).

    hls4ml keeps activations as (H, W, C) and permutes the dense weights, so its
    accumulation runs over the features in (h, w, c) order; None for plain 2-D input.
    """
    t = node.inputs[0]
    while isinstance(graph.producer(t), (Flatten, Reshape)):
        t = graph.producer(t).inputs[0]
    shape = graph.shapes.get(t)
    if shape is None or len(shape) != 4 or t == node.inputs[0]:
        return None
    c, h, w = shape[1:]
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()


def _few(names: list[str], n: int = 10) -> str:
    """At most ``n`` names (repr, so control characters are escaped) and how many more."""
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return f"{[str(x)[:100] for x in names[:n]]}{more}"


def _check_specs(plan: Plan) -> None:
    """Refuse what the executor would otherwise ignore: per-channel scales are applied to
    weights only, along their output channels (``axis`` 0); activations (the graph input, a
    layer's ``input`` and ``output``) take one scale; affine layers code their bias themselves.
    """
    acts = [("the plan input", plan.input)]
    if plan.input is not None and plan.input.channel_formats is not None:
        raise PlanError("the plan input: per-channel formats are for power-of-two weights only")
    for lp in plan.layers:
        acts += [(f"layer {lp.name!r} input", lp.input), (f"layer {lp.name!r} output", lp.output)]
        w = lp.weight
        for key in ("input", "bias", "output", "result", "alpha"):
            if getattr(lp, key) is not None and getattr(lp, key).channel_formats is not None:
                raise PlanError(f"layer {lp.name!r} {key}: per-channel formats are for "
                                "power-of-two weights only")
        if w is not None and w.channel_formats is not None and (
                lp.requant is not RequantScheme.POW2 or lp.float_layer):
            raise PlanError(f"layer {lp.name!r} weight: per-channel formats need requant "
                            f"'pow2', got {lp.requant.value!r}")
        if w is not None and w.scales is not None and len(w.scales) > 1 and w.axis != 0:
            raise PlanError(f"layer {lp.name!r} weight: per-channel scales are applied along "
                            f"the output channels (axis 0); axis={w.axis} is not supported")
        if lp.bias is not None and not lp.float_layer and lp.requant is not RequantScheme.POW2:
            raise PlanError(f"layer {lp.name!r}: requant {lp.requant.value!r} codes the bias "
                            "itself (int32, scale s_x*s_w); remove the 'bias' spec")
    for where, spec in acts:
        if spec is not None and spec.scales is not None and len(spec.scales) > 1:
            raise PlanError(f"{where}: activations take one scale per tensor, got "
                            f"{len(spec.scales)} (axis {spec.axis}); per-channel scales are "
                            "for weights only")
