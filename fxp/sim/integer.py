"""Run a compiled model on integer codes, layer by layer, with accounting.

Per layer the executor records (in :class:`LayerCounters`): accumulator
overflow events (additions whose partial sum left the accumulator, in the
documented order), output saturations (elements the output overflow mode
changed), the largest |partial sum| observed (loop path) and the worst-case
bound proven at compile time.

The graph input is quantized with the plan's input spec (half-to-even,
saturating, or the plan's ``input_rounding`` / ``input_overflow``; an affine
input divides in ``model.input_arithmetic``).  A final Softmax is computed in
float on the dequantized logits, or, with ``LayerPlan.softmax``, in hls4ml's
table arithmetic (:mod:`fxp.ops.softmax_table`).  Layers the plan marks
float run the float reference on dequantized inputs.

Binary layers run on the XNOR-popcount path (:mod:`fxp.ops.binary`): the
input is binarized (``H = sign(X)``, ``sign(0) = +1``, the sign of the
incoming real values; binary inputs pass as they are), ``dot`` comes from
:func:`~fxp.ops.binary.binary_conv2d_int` / :func:`~fxp.ops.binary.binary_dense_int`,
and the output is :func:`~fxp.ops.binary.binary_scale_int` (``"scale"``,
``"dot"``) or :func:`~fxp.ops.binary.binary_threshold` (``"threshold"``).
With a plan ``beta`` (``"scale"`` only), XNOR-Net's input scaling ``beta =
mean |X|`` per receptive field is computed from the incoming codes
(:func:`fxp.quant.binary.xnor_beta`) and multiplies the output.
Their counters: no accumulator overflow (``|dot| <= K`` is checked against
``acc_bits`` at compile time), ``max_abs_acc`` = the largest ``|dot|`` seen.

Shift-add layers (shift weights) run :func:`~fxp.ops.shift.conv2d_shift_int` /
:func:`~fxp.ops.shift.dense_shift_int` whatever ``method`` says: the ordered
shift-add loop, which gives the integers of the multiply path and observes
every partial sum.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fxp.core.format import QFormat
from fxp.ir.nodes import Clip, Conv2D, Dense, Flatten, MaxPool2D, ReLU, Reshape, Softmax
from fxp.ops import layers as L
from fxp.ops.fixed import cast
from fxp.plan.plan import RequantScheme
from fxp.sim.compile import CompiledModel, LayerStep
from fxp.sim.fast import cached_fast_layer as _fast_plan
from fxp.sim.fast import run_fast, uses_blas
from fxp.sim.float_ref import run_node
from fxp.sim.input_casts import cast_input, clamp_narrow, quantize_pow2_input
from fxp.sim.values import ChannelsLast, FloatValue, IntValue, quantize_spec, to_float

__all__ = ["INPUT_COUNTER", "IntegerRun", "LayerCounters", "run_integer"]


@dataclass
class LayerCounters:
    """Accumulated events of one layer over all samples run so far."""

    acc_overflows: int = 0
    acc_overflow_per_channel: np.ndarray | None = None
    output_saturations: int = 0
    max_abs_acc: int = 0
    blas_batches: int = 0

    def add_acc(self, stats: L.AccStats) -> None:
        self.acc_overflows += stats.n_overflow
        per = np.asarray(stats.overflow_per_channel, np.int64)
        self.acc_overflow_per_channel = per if self.acc_overflow_per_channel is None \
            else self.acc_overflow_per_channel + per
        if stats.max_abs_partial is None:
            self.blas_batches += 1
        else:
            self.max_abs_acc = max(self.max_abs_acc, int(stats.max_abs_partial))


@dataclass
class IntegerRun:
    """The result of one batch: final outputs and (optionally) every tensor."""

    output: np.ndarray
    values: dict[str, IntValue | FloatValue] = field(default_factory=dict)


def _requant(step: LayerStep, acc: np.ndarray) -> tuple[np.ndarray, int]:
    """Accumulator -> output codes: round, then the activation clamp, then overflow.

    With a ``result`` format (power of two, fused activation): round into
    ``result`` with its overflow, clamp there, then cast into the output.

    The rounding stage writes into a wide signed intermediate (it cannot
    overflow there), the fused activation clamps it, and only then is the
    output overflow mode applied and counted, so values removed by a ReLU
    are not reported as saturations.
    """
    lp, out = step.plan, step.out_spec
    wide = QFormat.from_frac(64, out.fmt.frac_bits)
    if lp.result is not None:  # hls4ml: result type, then the activation, then its type
        r, n_r = cast(acc, step.acc_fmt, lp.result.fmt, lp.rounding, lp.result_overflow)
        r = np.clip(r, *step.result_bounds)
        y, n_y = cast(r, lp.result.fmt, out.fmt, lp.rounding, lp.output_overflow)
        return y, n_r + n_y
    if lp.requant is RequantScheme.POW2:
        y, _ = cast(acc, step.acc_fmt, wide, lp.rounding, "saturate")
    elif lp.requant in (RequantScheme.FLOAT32, RequantScheme.XNNPACK):
        y, _ = L.requantize_float32_per_channel(acc, step.f32_scales, QFormat.integer(40), axis=1,
                                                zero_point=out.zero_point)
    elif lp.requant in (RequantScheme.RUY, RequantScheme.FLOAT64):
        from fxp.ops.runtime_requant import requantize_runtime_per_channel

        y, _ = requantize_runtime_per_channel(acc, step.requant_variants or lp.requant.value,
                                              step.multipliers, step.exponents, step.f64_scales,
                                              axis=1, zero_point=out.zero_point)
    elif lp.acc_bits == 64:  # TFLite int16x8: int64 MBQM, 16-bit multiplier
        from fxp.ops.requant64 import requantize_int64_per_channel

        y, _ = requantize_int64_per_channel(acc, step.multipliers, step.exponents, axis=1,
                                            zero_point=out.zero_point)
    else:
        y, _ = L.requantize_multiplier_per_channel(acc, step.multipliers, step.exponents,
                                                   QFormat.integer(40), axis=1,
                                                   zero_point=out.zero_point,
                                                   scheme=lp.requant.value, overflow="saturate")
    if step.act_bounds is not None:
        lo, hi = step.act_bounds
        y = np.clip(y, lo, None)
        if hi < out.fmt.max_code:
            y = np.minimum(y, hi)
    return cast(y, QFormat.from_frac(64, out.fmt.frac_bits), out.fmt, "floor", lp.output_overflow)


def _wide(v):
    """``v`` as NCHW int64 codes (the fast path stores narrower, channels-last ones)."""
    if isinstance(v, ChannelsLast):
        v = v.to_int()
    if isinstance(v, IntValue) and v.codes.dtype != np.int64:
        return IntValue(v.codes.astype(np.int64), v.spec)
    return v


def _weighted(step: LayerStep, v: IntValue | FloatValue, counters: LayerCounters,
              method: str = "auto") -> IntValue:
    node, lp = step.node, step.plan
    spec = step.in_specs[0]
    cl = isinstance(v, ChannelsLast)
    fl = _fast_plan(step) if method == "auto" else None
    if cl and fl is None:
        v, cl = v.to_int(), False
    if isinstance(v, FloatValue) or (v.spec is not spec and v.spec != spec):
        if not isinstance(v, FloatValue) and v.spec.is_pow2 and spec.is_pow2:  # elementwise
            codes, n = cast_input(step, v)
            v = ChannelsLast(codes, spec, v.chw) if cl else IntValue(codes, spec)
        else:
            v = v.to_int() if cl else v
            codes, n = quantize_spec(to_float(v, node.name), spec, node.name)
            v = IntValue(codes, spec)
        counters.output_saturations += n
    if fl is not None:  # method "auto": the proven path (fxp.sim.fast), the layer qualifies
        out, n = run_fast(step, fl, v)
        counters.blas_batches += 1  # no accumulator event: the proof (fxp.sim.fast)
        if counters.acc_overflow_per_channel is None:
            counters.acc_overflow_per_channel = np.zeros(step.w_codes.shape[0], np.int64)
        counters.output_saturations += n
        return out
    codes = v.codes
    common = dict(x_zero_point=spec.zero_point, acc_bits=lp.acc_bits, acc_overflow=lp.acc_overflow,
                  x_range=(spec.fmt.min_code, spec.fmt.max_code))
    if step.is_shift:  # shift-add kernel: sign * (x << k), zero weights skipped
        from fxp.ops import shift as S

        if isinstance(node, Conv2D):
            acc, stats = S.conv2d_shift_int(codes, step.w_sign, step.w_shift, step.b_codes,
                                            strides=node.strides, pads=node.pads,
                                            dilations=node.dilations, groups=node.groups, **common)
        else:
            acc, stats = S.dense_shift_int(codes.reshape(codes.shape[0], -1), step.w_sign,
                                           step.w_shift, step.b_codes, **common)
    elif isinstance(node, Conv2D):
        acc, stats = L.conv2d_int(codes, step.w_codes, step.b_codes, strides=node.strides,
                                  pads=node.pads, dilations=node.dilations, groups=node.groups,
                                  w_zero_point=step.w_zero_point, method=method,
                                  acc_order=lp.acc_order, product_shift=step.product_shift,
                                  product_rounding=lp.acc_rounding, **common)
    else:
        flat, w = codes.reshape(codes.shape[0], -1), step.w_codes
        if step.in_order is not None:  # hls4ml's channels-last feature order
            flat, w = flat[:, step.in_order], w[:, step.in_order]
        acc, stats = L.dense_int(flat, w, step.b_codes, w_zero_point=step.w_zero_point,
                                 method=method, acc_order=lp.acc_order,
                                 product_shift=step.product_shift,
                                 product_rounding=lp.acc_rounding, **common)
    counters.add_acc(stats)
    out, n = _requant(step, acc)
    counters.output_saturations += n
    return IntValue(out, step.out_spec)


def _reads_channels_last(step: LayerStep) -> bool:
    """Whether the step takes :class:`ChannelsLast` inputs as they are (else they go NCHW)."""
    known = step.__dict__.get("_reads_cl")
    if known is None:
        known = step.__dict__["_reads_cl"] = _reads_cl(step)
    return known


def _reads_cl(step: LayerStep) -> bool:
    node, lp = step.node, step.plan
    if step.op is not None:
        return step.op_channels_last is not None
    if step.out_spec is None or (lp is not None and lp.float_layer):
        return False
    if isinstance(node, (Conv2D, Dense)):
        return not step.is_binary
    return isinstance(node, (MaxPool2D, ReLU, Clip, Flatten))


def _run_step(step: LayerStep, vals: list, counters: LayerCounters, method: str):
    node = step.node
    weighted = step.__dict__.get("_weighted")
    if weighted is None:  # a fixed-point Conv2D/Dense: it reads any layout (found once)
        weighted = step.__dict__["_weighted"] = isinstance(node, (Conv2D, Dense)) \
            and not step.is_binary and step.out_spec is not None \
            and not (step.plan is not None and step.plan.float_layer)
    if weighted:
        return _weighted(step, vals[0], counters, method)
    if not _reads_channels_last(step) and any(isinstance(v, ChannelsLast) for v in vals):
        vals = [v.to_int() if isinstance(v, ChannelsLast) else v for v in vals]
    if step.out_spec is None or (step.plan is not None and step.plan.float_layer):
        y = run_node(node, *[to_float(v, node.name) for v in vals])
        if step.out_spec is None:
            return FloatValue(np.asarray(y, np.float32))
        f32 = step.plan is not None and step.plan.requant is RequantScheme.FLOAT32
        codes, n = quantize_spec(y, step.out_spec, node.name,  # float32: ORT QuantizeLinear
                                 arithmetic="float32" if f32 else "float64")
        counters.output_saturations += n
        return IntValue(codes, step.out_spec)
    if isinstance(node, (Conv2D, Dense)):
        if step.is_binary:
            from fxp.sim.integer_binary import run_binary

            return run_binary(step, vals[0], counters)
        return _weighted(step, vals[0], counters, method)
    if step.op is not None:  # fxp.sim.residual: Add, Concat, pools, activations
        cl = [v for v in vals if isinstance(v, ChannelsLast)]
        if cl and (len(cl) < len(vals) or len({v.codes.shape for v in cl}) > 1
                   or cl[0].codes.ndim != 4):
            vals = [_wide(v) for v in vals]
        elif cl:  # all channels-last, one shape: the op's channels-last form
            codes, n = step.op_channels_last([v.codes for v in cl])
            counters.output_saturations += n
            return ChannelsLast(codes, step.out_spec, (codes.shape[3], *codes.shape[1:3]))
        codes, n = step.op([_wide(v).codes for v in vals])
        counters.output_saturations += n
        return IntValue(codes, step.out_spec)
    x = vals[0]
    spec = step.in_specs[0]
    cl = isinstance(x, ChannelsLast)
    if isinstance(node, MaxPool2D) and x.codes.ndim == 4:  # engine codes: no re-check
        from fxp.kernels.fast_layers import maxpool_rows

        xv = x.codes if cl else x.codes.transpose(0, 2, 3, 1)
        (kh, kw), (sh, sw), (t, left, b, r) = node.kernel, node.strides, node.pads
        n, h, w, c = xv.shape
        out = np.empty((n, (h + t + b - kh) // sh + 1, (w + left + r - kw) // sw + 1, c),
                       xv.dtype)
        maxpool_rows(out.size * kh * kw, xv, out, spec.fmt.min_code, kh, kw, sh, sw, t, left,
                     1, 1)
        return ChannelsLast(out, spec, (c, out.shape[1], out.shape[2]))
    if isinstance(node, MaxPool2D):
        return IntValue(L.maxpool2d_int(x.codes, spec.fmt, node.kernel, strides=node.strides,
                                        pads=node.pads), spec)
    if isinstance(node, (ReLU, Clip)):
        if cl:
            return ChannelsLast(clamp_narrow(x.codes, *step.act_bounds), step.out_spec, x.chw)
        return IntValue(np.clip(_wide(x).codes, *step.act_bounds), step.out_spec)
    if isinstance(node, Flatten):
        if cl:
            c, h, w = x.chw
            return ChannelsLast(x.codes.reshape(x.codes.shape[0], c * h * w), spec,
                                x.chw)
        return IntValue(L.flatten_int(x.codes), spec)
    if isinstance(node, Reshape):
        return IntValue(x.codes.reshape((x.codes.shape[0], *node.shape)), spec)  # per sample
    raise AssertionError(f"unhandled node {node!r}")  # pragma: no cover - compile refuses these


INPUT_COUNTER = "(input)"
"""Key of the graph input's :class:`LayerCounters` (its saturations when quantized)."""


def run_integer(model: CompiledModel, x: np.ndarray, counters: dict[str, LayerCounters] | None
                = None, *, keep: bool = False, method: str = "auto",
                on_value: Callable[[str, IntValue | FloatValue], None] | None = None
                ) -> IntegerRun:
    """Run one batch ``x`` (float inputs, preprocessed) through the integer datapath.

    ``counters`` (name -> :class:`LayerCounters`) accumulates per-layer events
    across calls; the graph input's saturations go to ``counters["(input)"]``
    (:data:`INPUT_COUNTER`).  ``keep=True`` returns every tensor's value;
    otherwise each tensor is freed after its last use, so memory holds only
    the live tensors (a chain of 2,000 layers needs two at a time).
    ``on_value(tensor, value)`` is called for the graph input and then for
    every tensor as soon as it is computed (in node order), so statistics can
    be gathered without keeping the tensors.  ``method`` is passed to the
    accumulating kernels: ``"auto"`` takes the proven float fast path where it
    is exact, ``"loop"`` always runs the ordered integer loop (slower; it also
    observes every partial sum).
    """
    counters = counters if counters is not None else {}
    if not keep and on_value is None:  # big batches: sub-batches on worker threads
        from fxp.sim.threads import merge_counters, run_split, workers_for

        workers = workers_for(len(x))
        if workers > 1:
            outs, parts = run_split(lambda xp, c: _run_batch(model, xp, c, method)[0],
                                    np.asarray(x), workers)
            merge_counters(counters, parts)
            return IntegerRun(outs[0] if len(outs) == 1 else np.stack(outs))
    outs, vals = _run_batch(model, x, counters, method, keep, on_value)
    result = IntegerRun(outs[0] if len(outs) == 1 else np.stack(outs))
    if keep:
        result.values = vals
    return result


def quantize_input(model: CompiledModel, x: np.ndarray) -> tuple[IntValue, int]:
    """The plan's conversion of float inputs ``x`` to the graph input's integer codes.

    Returns the value and the number of input samples' elements that saturated."""
    plan = model.plan
    if plan.input.is_pow2:  # the plan's input conversion (hls4ml: the input type's modes)
        codes, n = quantize_pow2_input(model, np.asarray(x, np.float32))
    else:
        codes, n = quantize_spec(np.asarray(x, np.float32), plan.input, "input",
                                 plan.input_rounding.value,
                                 arithmetic=getattr(model, "input_arithmetic", "float64"))
    return IntValue(codes, plan.input), n


def step_schedule(model: CompiledModel) -> list[tuple]:
    """``(step, its name, input tensors, output tensor, tensors to free after it)`` per step,
    in execution order (found once per model)."""
    last_use = model.__dict__.get("_last_use")
    if last_use is None:  # computed once per model
        last_use = model.__dict__["_last_use"] = {t: i for i, step in enumerate(model.steps)
                                                  for t in step.node.inputs}
    return _schedule(model, last_use)


def _run_batch(model: CompiledModel, x, counters, method, keep=False, on_value=None):
    """``(graph output arrays, values)`` of one batch on this thread (see :func:`run_integer`)."""
    g = model.graph
    value, n = quantize_input(model, x)
    counters.setdefault(INPUT_COUNTER, LayerCounters()).output_saturations += n
    vals: dict[str, IntValue | FloatValue] = {g.inputs[0]: value}
    if on_value is not None:
        on_value(g.inputs[0], vals[g.inputs[0]])
    from fxp.sim.fast import blas_threads

    with blas_threads(len(value.codes)) if method != "auto" or uses_blas(model) \
            else contextlib.nullcontext():
        _run_steps(model, vals, counters, method, keep, on_value)
    return [to_float(vals[t], t) for t in g.outputs], vals


def _run_steps(model, vals, counters, method, keep, on_value) -> None:
    """Every step in order, freeing each tensor after its last use unless ``keep``.

    The steps read and write ``live`` (narrow, possibly channels-last codes);
    ``vals`` and ``on_value`` get NCHW int64 values: every tensor with ``keep``,
    else the graph outputs.
    """
    g = model.graph
    live = dict(vals)
    watch = keep or on_value is not None
    for step, name, inputs, output, frees in step_schedule(model):
        c = counters.get(name)
        if c is None:
            c = counters[name] = LayerCounters()
        out = live[output] = _run_step(step, [live[t] for t in inputs], c, method)
        if watch:  # what callers see holds int64 codes
            seen = _wide(out)
            if keep:
                vals[output] = seen
            if on_value is not None:
                on_value(output, seen)
        if frees and not keep:
            for t in frees:
                del live[t]
    for t in g.outputs:
        vals.setdefault(t, _wide(live[t]))


def _schedule(model, last_use) -> list[tuple]:
    """``(step, its name, input tensors, output tensor, tensors to free after it)`` per step,
    found once per model: a tensor is freed after its last use unless it is a graph output."""
    known = model.__dict__.get("_schedule")
    if known is None:
        outputs = set(model.graph.outputs)
        known = model.__dict__["_schedule"] = [
            (step, step.name, tuple(step.node.inputs), step.node.output,
             tuple(t for t in dict.fromkeys(step.node.inputs)
                   if last_use[t] == i and t not in outputs))
            for i, step in enumerate(model.steps)]
    return known


def logits_tensor(model: CompiledModel) -> str:
    """The tensor SQNR is measured on: the input of a final Softmax, else the output."""
    last = model.graph.producer(model.graph.outputs[0])
    if isinstance(last, Softmax):
        return last.inputs[0]
    return model.graph.outputs[0]
