"""Post-training quantization: model + calibration data + bit widths -> Plan.

Two families:

* :func:`ptq_pow2` -- power-of-two (Qm.n) formats for FPGA datapaths.  For a
  tensor with observed range ``r`` (max |value|, a percentile of |value|, or
  the MSE-optimal clip), the integer bits are the fewest that hold ``r``:
  ``I = floor(log2(r)) + 1`` (+1 for the sign bit when the tensor has negative
  values), fractional bits ``F = W - I``.  Biases are coded in the
  accumulator's format (``F = F_x + F_w``, ``acc_bits`` wide).
* :func:`ptq_affine` -- TFLite-style int8 for MCU runtimes: symmetric
  per-channel weights in [-127, 127] (scale ``max|w_c| / 127``), asymmetric
  activations with a zero point (the real 0 exactly representable), int32
  biases with scale ``s_x * s_w``, requantized by multiplier+shift (double or
  single rounding) or a float32 scale.

Binary layers (:func:`ptq_pow2` ``binary_layers=...``): the named Conv2D /
Dense layers get a binary weight (XNOR-popcount, see :mod:`fxp.plan.plan`),
an unsigned ``alpha_bits`` alpha format fitted to ``max_c mean|W[c]|``,
``pad_value`` for padded convolutions, and ``binary_output``.  Every
activation range is then calibrated on a *binarized float emulation* of the
network (binary layers compute ``alpha*sign(W)*sign(X) + b`` in float, or its
sign for ``"threshold"``), since the float model's ranges do not describe
them.  First and last layers usually stay in fixed point (XNOR-Net, FINN).
Note that ``sign`` of a ReLU output is always +1: a binary layer fed by a
ReLU sees a constant input.

Non-weighted nodes (Add, Concat, pools, ReLU/Clip, Sigmoid, LeakyRelu) get
entries from :mod:`fxp.plan.ptq_residual`: Add/Concat/Sigmoid/LeakyRelu outputs
are calibrated like every activation, pools and ReLU/Clip keep their input's
coding, and the entry names the scheme whose runtime arithmetic they follow.

Granularity follows seed 000 (Table I): ``"whole"`` quantizes every layer with
weights, ``"conv"`` only convolutions, ``"dense"`` only dense layers; the
others run in float (their plan entry has ``float_layer=True``).
"""

from __future__ import annotations

import math

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import CalibrationError, PlanError
from fxp.ir.graph import Graph
from fxp.ir.passes import canonicalize
from fxp.ir.nodes import Conv2D, Dense
from fxp.ops.fixed import dequantize, quantize
from fxp.plan.plan import LayerPlan, Plan, RequantScheme, TensorSpec
from fxp.plan.ptq_residual import calibrated_tensors, node_plans
from fxp.sim.float_ref import run_float

__all__ = ["calibrate", "int_bits_for", "ptq_affine", "ptq_pow2",
           "warn_nonnegative_binary"]

GRANULARITIES = ("whole", "conv", "dense")
RANGE_METHODS = ("minmax", "percentile", "mse")


def _selected(node, granularity: str) -> bool:
    if granularity not in GRANULARITIES:
        raise PlanError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if granularity == "conv":
        return isinstance(node, Conv2D)
    if granularity == "dense":
        return isinstance(node, Dense)
    return isinstance(node, (Conv2D, Dense))


def calibrate(graph: Graph, x: np.ndarray, tensors: list[str], *, batch_size: int = 256
              ) -> dict[str, np.ndarray]:
    """Run the float reference on ``x`` and collect the named tensors (flattened, float32)."""
    x = np.asarray(x, np.float32)
    if x.shape[0] == 0:
        raise CalibrationError("calibration set is empty")
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero((~np.isfinite(x.reshape(x.shape[0], -1))).any(axis=1))[0])
        raise CalibrationError(f"calibration sample {bad} holds NaN or Inf")
    out: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    for start in range(0, x.shape[0], batch_size):
        taps = run_float(graph, x[start:start + batch_size], tensors=tensors)
        for t in tensors:
            v = np.asarray(taps[t], np.float32)
            _check_finite_tensor(v, t, start)
            out[t].append(v.ravel())
    return {t: np.concatenate(v) for t, v in out.items()}


def _check_finite_tensor(v: np.ndarray, name: str, first_sample: int = 0) -> None:
    """CalibrationError naming tensor ``name`` (and the sample) if ``v`` holds NaN or Inf."""
    bad = ~np.isfinite(v)
    if bad.any():
        where = ""
        if v.ndim >= 1 and v.shape[0] > 0:
            i = int(np.argmax(bad.reshape(v.shape[0], -1).any(axis=1)))
            where = f" (first on calibration sample {first_sample + i})"
        raise CalibrationError(f"tensor {name!r} holds {int(bad.sum())} NaN/Inf value(s) on "
                               f"the calibration data{where}: its range cannot be set (a NaN "
                               "or Inf weight or bias upstream?)")


def _check_weights(layers) -> None:
    """CalibrationError naming the first layer whose weights or bias hold NaN or Inf."""
    for node in layers:
        _check_finite_tensor(node.weight.ravel(), f"{node.name}.weight")
        if node.bias is not None:
            _check_finite_tensor(np.asarray(node.bias).ravel(), f"{node.name}.bias")


def int_bits_for(r: float, signed: bool) -> int:
    """Fewest integer bits (sign included) whose range holds ``r`` > 0: floor(log2 r) + 1 (+1)."""
    if not (r > 0 and math.isfinite(r)):
        raise CalibrationError(f"range {r!r} must be finite and > 0")
    return math.floor(math.log2(r)) + 1 + (1 if signed else 0)


def _range(values: np.ndarray, method: str, percentile: float) -> float:
    a = np.abs(values)
    if method == "percentile":
        return float(np.percentile(a, percentile))
    return float(a.max())


def _binary_emulation(graph: Graph, x: np.ndarray, tensors: list[str], binary: dict,
                      *, batch_size: int = 256) -> dict[str, np.ndarray]:
    """:func:`calibrate` on the binarized float emulation (``binary``: name -> LayerPlan)."""
    from dataclasses import replace

    from fxp.quant.binary import binarize
    from fxp.sim.float_ref import apply_activation, run_node

    x = np.asarray(x, np.float32)
    if x.shape[0] == 0:
        raise CalibrationError("calibration set is empty")
    emulated = {}
    for node in graph.nodes:
        lp = binary.get(node.name)
        if lp is None:
            continue
        w = node.weight.astype(np.float64)
        sw = binarize(w).astype(np.float64)
        if lp.alpha is not None and lp.binary_output != "dot":
            sw = sw * np.abs(w.reshape(w.shape[0], -1)).mean(axis=1).reshape(
                (-1,) + (1,) * (w.ndim - 1))
        bias = None if lp.binary_output == "dot" else node.bias
        changes = dict(weight=sw.astype(np.float32), bias=bias, fused_activation=None)
        if isinstance(node, Conv2D):
            changes["pads"] = (0, 0, 0, 0)
        emulated[node.name] = (replace(node, **changes), lp)
    out: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    for start in range(0, x.shape[0], batch_size):
        env = {graph.inputs[0]: x[start:start + batch_size]}
        for node in graph.nodes:
            ins = [env[t] for t in node.inputs]
            if node.name not in emulated:
                env[node.output] = run_node(node, *ins)
                continue
            enode, lp = emulated[node.name]
            h = binarize(ins[0]).astype(np.float32)
            if isinstance(node, Conv2D) and any(node.pads):
                t, left, b, r = node.pads
                h = np.pad(h, ((0, 0), (0, 0), (t, b), (left, r)),
                           constant_values=float(lp.pad_value or 0))
            y = run_node(enode, h)
            if lp.binary_output == "threshold":
                y = np.where(y >= 0, 1, -1).astype(np.float32)
            else:
                y = apply_activation(y, node.fused_activation)
            env[node.output] = y
        for t in tensors:
            out[t].append(np.asarray(env[t], np.float32).ravel())
    return {t: np.concatenate(v) for t, v in out.items()}


def _pow2_spec(values: np.ndarray, bits: int, method: str, percentile: float, name: str,
               signed: bool | None = None) -> TensorSpec:
    if method not in RANGE_METHODS:
        raise PlanError(f"range method must be one of {RANGE_METHODS}, got {method!r}")
    values = np.asarray(values)
    if values.size == 0:
        raise CalibrationError(f"tensor {name!r} has no calibration values")
    _check_finite_tensor(values.ravel(), name)
    if signed is None:
        signed = bool(values.min() < 0)
    r = _range(values, method, percentile)
    if r == 0:
        raise CalibrationError(f"tensor {name!r} is identically zero on the calibration data: "
                               "its range (and so its scale) cannot be set")
    ib = int_bits_for(r, signed)
    if method == "mse":
        sample = values[:: max(1, values.size // 200_000)].astype(np.float64)
        best = None
        for cand in range(ib - 4, ib + 1):
            fmt = QFormat(bits, cand, signed)
            codes, _ = quantize(sample, fmt, "half_even", "saturate")
            err = float(np.mean((dequantize(codes, fmt) - sample) ** 2))
            if best is None or err < best[0]:
                best = (err, cand)
        ib = best[1]
    return TensorSpec(QFormat(bits, ib, signed))


def _upstream_weighted(graph: Graph, tensor: str):
    """The nearest Conv2D/Dense feeding ``tensor`` through single-input nodes, or None."""
    node = graph.producer(tensor)
    while node is not None and not isinstance(node, (Conv2D, Dense)):
        if len(node.inputs) != 1:
            return node
        node = graph.producer(node.inputs[0])
    return node


def _needs_input_spec(graph: Graph, node, granularity: str) -> bool:
    """An integer layer whose input comes from a float layer must quantize it itself."""
    up = _upstream_weighted(graph, node.inputs[0])
    return up is not None and not _selected(up, granularity)


def _bits_for(name: str, default: int, overrides: dict | None) -> int:
    if overrides and name in overrides:
        return int(overrides[name])
    return default


def ptq_pow2(graph: Graph, calib_x: np.ndarray, *, weight_bits: int = 8, act_bits: int = 8,
             input_bits: int | None = None, acc_bits: int = 32, granularity: str = "whole",
             method: str = "minmax", percentile: float = 99.99, rounding: str = "half_up",
             acc_overflow: str = "wrap", output_overflow: str = "saturate",
             layer_weight_bits: dict[str, int] | None = None,
             layer_act_bits: dict[str, int] | None = None, name: str | None = None,
             layer_acc_bits: dict[str, int] | None = None,
             calib_ranges: dict[str, np.ndarray] | None = None,
             binary_layers: tuple[str, ...] | list[str] = (), alpha_bits: int | None = 8,
             binary_output: str = "scale", pad_value: int = 0,
             weight_method: str = "minmax") -> Plan:
    """Power-of-two plan from calibration data.

    Parameters
    ----------
    graph : Graph
        The model (canonicalized here: BatchNorm folded, activations fused).
    calib_x : array [N, ...]
        Calibration inputs (preprocessed floats).
    weight_bits, act_bits, input_bits : int
        Default word lengths in bits (weights, layer outputs, graph input).
    layer_weight_bits, layer_act_bits : dict name -> bits
        Per-layer overrides (weights; the layer's output activations).
    acc_bits : int
        Accumulator width in bits.
    method : {"minmax", "percentile", "mse"}
        Range estimation for activations.
    weight_method : {"minmax", "percentile", "mse"}
        Range estimation for weights: ``"minmax"`` never clips; ``"mse"``
        picks, among the integer-bit counts up to four below the min/max one,
        the format with the least mean squared weight error (saturating the
        outliers; the step-size choice of Lin et al. 2016, section 3).
    layer_acc_bits : dict name -> bits, optional
        Per-layer accumulator widths (override ``acc_bits``; the bit-width
        optimizer sets each to the layer's proven worst case).
    calib_ranges : dict tensor -> values, optional
        Precomputed calibration values (what :func:`calibrate` returns) for
        some tensors; those are not recomputed.  Any array with the same
        statistics will do, e.g. ``[min, max]`` of the tensor when
        ``method="minmax"`` (the graph input always uses min/max).
    binary_layers : names of Conv2D / Dense layers
        Make these binary (XNOR-popcount; see the module docstring).  Ranges
        are then calibrated on the binarized float emulation.
    alpha_bits : int or None
        Width of the unsigned XNOR-Net alpha format of binary layers; None
        for no alpha (BNN).
    binary_output : {"scale", "dot", "threshold"}
        Output transform of the binary layers.
    pad_value : {0, 1, -1}
        Padding of binary convolutions that pad (0 = zero padding).
    """
    graph = canonicalize(graph)  # idempotent: plan entries name the canonical layers
    layers = [n for n in graph.nodes if isinstance(n, (Conv2D, Dense))]
    _check_weights(layers)
    for table in (layer_weight_bits, layer_act_bits, layer_acc_bits):
        unknown = sorted(set(table or {}) - {n.name for n in layers})
        if unknown:
            raise PlanError(f"unknown layer names {unknown}; layers with weights: "
                            f"{[n.name for n in layers]}")
    binary_layers = tuple(binary_layers or ())
    unknown = sorted(set(binary_layers) - {n.name for n in layers})
    if unknown:
        raise PlanError(f"unknown binary layer names {unknown}; layers with weights: "
                        f"{[n.name for n in layers]}")
    binary = {}
    for node in layers:
        if node.name in binary_layers:
            if not _selected(node, granularity):
                raise PlanError(f"layer {node.name!r} is binary but granularity "
                                f"{granularity!r} keeps it in float")
            alpha = None
            if alpha_bits is not None and binary_output != "dot":
                a = np.abs(node.weight.reshape(node.weight.shape[0], -1).astype(np.float64)
                           ).mean(axis=1)
                alpha = _pow2_spec(a, alpha_bits, "minmax", percentile,
                                   f"{node.name}.alpha", signed=False)
            pv = pad_value if isinstance(node, Conv2D) and any(node.pads) else None
            binary[node.name] = LayerPlan(node.name, weight=TensorSpec.binary(), alpha=alpha,
                                          pad_value=pv, binary_output=binary_output,
                                          output=None if binary_output == "threshold"
                                          else TensorSpec.pow2(8, 0))
    if binary:
        warn_nonnegative_binary(graph, calib_x, [n for n in layers if n.name in binary])
    gin = graph.inputs[0]
    feeds = [n.inputs[0] for n in layers if _selected(n, granularity)
             and _needs_input_spec(graph, n, granularity)]
    wanted = list(dict.fromkeys([gin, *feeds] + [n.output for n in layers]
                                + calibrated_tensors(graph)))
    given = {t: np.asarray(v) for t, v in (calib_ranges or {}).items() if t in wanted}
    missing = [t for t in wanted if t not in given]
    if binary and missing:
        ranges = {**given, **_binary_emulation(graph, calib_x, missing, binary)}
    else:
        ranges = {**given, **(calibrate(graph, calib_x, missing) if missing else {})}
    if input_bits is None:
        input_bits = act_bits
    in_spec = _pow2_spec(ranges[gin], input_bits, "minmax", percentile, gin)
    plans = []
    for node in layers:
        if not _selected(node, granularity):
            plans.append(LayerPlan(node.name, float_layer=True))
            continue
        ab = _bits_for(node.name, act_bits, layer_act_bits)
        if node.name in binary:
            lp = binary[node.name]
            out_spec = None if binary_output == "threshold" else _pow2_spec(
                ranges[node.output], ab, method, percentile, node.output)
            plans.append(lp.with_(output=out_spec,
                                  acc_bits=_bits_for(node.name, acc_bits, layer_acc_bits),
                                  rounding=rounding, output_overflow=output_overflow))
            continue
        wb = _bits_for(node.name, weight_bits, layer_weight_bits)
        w_spec = _pow2_spec(node.weight.ravel(), wb, weight_method, percentile,
                            f"{node.name}.weight", signed=True)
        out_spec = _pow2_spec(ranges[node.output], ab, method, percentile, node.output)
        cast_in = None
        if node.inputs[0] in feeds:
            cast_in = _pow2_spec(ranges[node.inputs[0]], input_bits, method,
                                 percentile, node.inputs[0])
        plans.append(LayerPlan(node.name, input=cast_in, weight=w_spec, output=out_spec,
                               acc_bits=_bits_for(node.name, acc_bits, layer_acc_bits),
                               acc_overflow=acc_overflow, rounding=rounding,
                               output_overflow=output_overflow, requant=RequantScheme.POW2))
    plans += node_plans(graph, ranges,
                        lambda v, t: _pow2_spec(v, act_bits, method, percentile, t),
                        requant=RequantScheme.POW2, rounding=rounding,
                        output_overflow=output_overflow)
    label = name or f"ptq-pow2-{granularity}-w{weight_bits}a{act_bits}-{method}"
    return Plan(input=in_spec, layers=tuple(plans), name=label)


def _affine_act_spec(values: np.ndarray, bits: int, signed: bool, name: str) -> TensorSpec:
    values = np.asarray(values)
    if values.size == 0:
        raise CalibrationError(f"tensor {name!r} has no calibration values")
    _check_finite_tensor(values.ravel(), name)
    lo = min(float(values.min()), 0.0)
    hi = max(float(values.max()), 0.0)
    if hi == lo:
        raise CalibrationError(f"tensor {name!r} is identically zero on the calibration data: "
                               "its scale cannot be set")
    fmt = QFormat.integer(bits, signed)
    scale = float(np.float32((hi - lo) / (fmt.max_code - fmt.min_code)))
    zp = int(round(fmt.min_code - lo / scale))
    zp = min(max(zp, fmt.min_code), fmt.max_code)
    return TensorSpec(fmt, (scale,), zp)


def ptq_affine(graph: Graph, calib_x: np.ndarray, *, bits: int = 8, per_channel: bool = True,
               scheme: str = "double", act_signed: bool = True, acc_bits: int = 32,
               granularity: str = "whole", name: str | None = None) -> Plan:
    """TFLite-style affine int8 plan (see the module docstring).

    ``scheme`` is the requantization: ``"double"``, ``"single"`` or ``"float32"``.
    """
    graph = canonicalize(graph)  # idempotent: plan entries name the canonical layers
    scheme_enum = RequantScheme.from_string(scheme)
    if scheme_enum is RequantScheme.POW2:
        raise PlanError("ptq_affine needs scheme 'double', 'single' or 'float32'; "
                        "use ptq_pow2 for power-of-two plans")
    layers = [n for n in graph.nodes if isinstance(n, (Conv2D, Dense))]
    _check_weights(layers)
    gin = graph.inputs[0]
    feeds = [n.inputs[0] for n in layers if _selected(n, granularity)
             and _needs_input_spec(graph, n, granularity)]
    ranges = calibrate(graph, calib_x, list(dict.fromkeys(
        [gin, *feeds] + [n.output for n in layers] + calibrated_tensors(graph))))
    in_spec = _affine_act_spec(ranges[gin], bits, act_signed, gin)
    wfmt = QFormat.integer(bits)
    plans = []
    for node in layers:
        if not _selected(node, granularity):
            plans.append(LayerPlan(node.name, float_layer=True))
            continue
        w = node.weight.reshape(node.weight.shape[0], -1).astype(np.float64)
        m = np.abs(w).max(axis=1) if per_channel else np.array([np.abs(w).max()])
        if np.any(m == 0):
            raise CalibrationError(f"layer {node.name!r}: an output channel has all-zero weights")
        scales = tuple(float(np.float32(v / wfmt.max_code)) for v in m)
        w_spec = TensorSpec(wfmt, scales, 0, 0 if per_channel else None)
        out_spec = _affine_act_spec(ranges[node.output], bits, act_signed, node.output)
        cast_in = (_affine_act_spec(ranges[node.inputs[0]], bits, act_signed, node.inputs[0])
                   if node.inputs[0] in feeds else None)
        plans.append(LayerPlan(node.name, input=cast_in, weight=w_spec, output=out_spec,
                               acc_bits=acc_bits,
                               acc_overflow="wrap", rounding="half_even",
                               output_overflow="saturate", requant=scheme_enum))
    plans += node_plans(graph, ranges, lambda v, t: _affine_act_spec(v, bits, act_signed, t),
                        requant=scheme_enum, rounding="half_even")
    label = name or f"ptq-affine-{granularity}-int{bits}-{scheme_enum.value}"
    return Plan(input=in_spec, layers=tuple(plans), name=label)


def warn_nonnegative_binary(graph: Graph, calib_x: np.ndarray, nodes) -> list[str]:
    """Warn (:class:`~fxp.errors.BinaryInputWarning`) for each binary layer whose input is never negative.

    A binary layer binarizes its input, ``H = sign(X)`` with ``sign(0) = +1``;
    when every calibration value of ``X`` is ``>= 0`` (e.g. after a ReLU) ``H``
    is the constant +1 and the layer's output no longer depends on the image.
    The float reference is run on ``calib_x`` (at most 256 samples).  Returns
    the messages.
    """
    import warnings

    from fxp.errors import BinaryInputWarning

    x = np.asarray(calib_x)[:256]
    values = calibrate(graph, x, list(dict.fromkeys(n.inputs[0] for n in nodes)))
    out = []
    for n in nodes:
        v = values[n.inputs[0]]
        if v.size and float(v.min()) >= 0.0:
            msg = (f"binary layer {n.name!r}: its input {n.inputs[0]!r} is >= 0 on all "
                   f"{x.shape[0]} calibration samples (after a ReLU?), so sign() makes it a "
                   f"constant +1; binarize a layer whose input takes both signs")
            warnings.warn(msg, BinaryInputWarning, stacklevel=3)
            out.append(msg)
    return out
