"""Fake quantization in torch that is bit-exact with fxp's integer engine.

:class:`FxpNet` is a ``torch.nn.Module`` built from a canonical fxp
:class:`~fxp.ir.graph.Graph` (a chain of Conv2D / Dense with fused ReLU or
clip, MaxPool2D, Flatten, ReLU, Reshape and a final Softmax) and a
power-of-two :class:`~fxp.plan.plan.Plan`.  ``net(x)`` (``quant=True``)
computes what :func:`fxp.sim.integer.run_integer` computes, step for step
(:mod:`fxp.sim.compile`, :mod:`fxp.sim.integer`):

1. the graph input is quantized to ``plan.input`` (round half to even, saturate);
2. an integer Conv2D / Dense layer

   * casts its input codes to ``lp.input`` when the plan gives one (pow2
     cast with the layer's rounding, saturating) or quantizes a float input
     (half to even, saturating),
   * quantizes its weights to ``lp.weight`` and its bias to the accumulator
     format ``F_x + F_w`` (``lp.bias`` if given), both half to even, saturating,
     exactly as :func:`fxp.sim.compile.compile_plan` does,
   * accumulates the exact integer sum ``sum x_code * w_code + b_code``, then
     applies the accumulator overflow (``wrap``: modulo ``2**acc_bits`` of the
     exact sum, which is what wrapping after every addition gives; a
     saturating accumulator is accepted only where the worst case fits),
   * requantizes by the power-of-two shift ``F_acc - F_out`` with the layer's
     rounding mode, then applies the fused ReLU / clip bounds, then the output
     overflow mode (the engine's order: round, activation clamp, overflow);

3. a float layer (``float_layer=True``) runs on the float32 view of its input,
   accumulates in float64, rounds once to float32 and applies its activation,
   like :mod:`fxp.sim.float_ref` (the float64 summation order may differ, which
   the rounding to float32 hides unless a sum lies within ~2**-50 relative of a
   float32 rounding boundary); a float output is quantized by the next integer
   layer's ``input`` spec (half to even, saturating);
4. max-pool, flatten, reshape and ReLU act on codes (monotone, so equal to
   acting on the exact values); the final Softmax is left out: ``net(x)``
   returns the logits (the tensor fxp's predictions are the argmax of).

Exactness.  Every tensor of the integer path is held in float64 as ``code *
2**-F``; scaling by a power of two is exact, products of codes are exact
integers, and a sum of integers is exact in float64 -- in any order and with
or without FMA -- while every partial sum stays below ``2**53``.  The partial
sums of a dot product are bounded by ``max|x_code| * sum|w_code| + |b_code|``
(the weight-aware worst case of :func:`fxp.ops.layers.accumulator_bound`);
:class:`FxpNet` checks that bound against ``2**52`` on every forward pass
and raises :class:`~fxp.errors.PlanError` otherwise.  The torch convolution
must be a direct / im2col-GEMM one (the CPU float64 kernels are; no Winograd
or FFT), which the tests confirm against the integer engine.  Roundings are
decided on ``t - floor(t)``, which is exact, never on ``t + 0.5``.

Backward: straight-through estimators -- rounding passes the gradient
unchanged; saturation and the ReLU clamp pass it only inside the range;
wrapping passes it unchanged.

Weight projections.  :meth:`FxpNet.set_projection` attaches a ``torch.nn.Module``
to a Conv2D / Dense layer (held in the ``nn.ModuleDict`` ``net.projections``,
so its parameters and buffers are in ``net.parameters()`` and the state dict).
The layer's weight is then ``projection(raw_weight)`` (a float64 tensor) in
every forward pass and export -- the ternary, binary and clustered weights of
:mod:`fxp.train.ternary` and :mod:`fxp.train.cluster`.  On the integer path
the projected values are first clamped, value only (the gradient passes), to
the symmetric range ``+-max_code * 2**-F`` of the plan's weight format, then
fake-quantized by it like any weight, so a sign-symmetric level set such as
``{-a, 0, a}`` keeps symmetric codes ``{-k, 0, k}`` even when ``a`` outgrows
the format (plain saturation would give ``{min_code, 0, max_code}``).  Layers
without a projection are unchanged.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import PlanError, UnsupportedOpError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Reshape, Softmax
from fxp.ir.passes import canonicalize
from fxp.plan.plan import Plan, RequantScheme, TensorSpec
from fxp.train import require_torch

torch = require_torch()
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

__all__ = ["EXACT_LIMIT", "FxpNet", "fake_codes", "overflow_codes", "round_exact", "ste_round"]

EXACT_LIMIT = 2.0 ** 52
"""Largest accumulator bound (exclusive) the float64 fake-quant path accepts."""

SUPPORTED = (Conv2D, Dense, MaxPool2D, Flatten, ReLU, Reshape, Softmax)


def _p2(k: int) -> float:
    return math.ldexp(1.0, int(k))


def round_exact(t, mode: RoundingMode | str):
    """Round a float64 tensor to integers with fxp's rounding ``mode``, exactly (|t| < 2**52)."""
    mode = RoundingMode.from_string(mode)
    f = torch.floor(t)
    r = t - f  # exact: the fractional part of t
    one = lambda b: b.to(t.dtype)  # noqa: E731
    if mode is RoundingMode.FLOOR:
        return f
    if mode is RoundingMode.CEIL:
        return f + one(r > 0)
    if mode is RoundingMode.TO_ZERO:
        return f + one((t < 0) & (r > 0))
    if mode is RoundingMode.AWAY:
        return f + one((t >= 0) & (r > 0))
    if mode is RoundingMode.HALF_UP:
        return f + one(r >= 0.5)
    if mode is RoundingMode.HALF_DOWN:
        return f + one(r > 0.5)
    if mode is RoundingMode.HALF_TO_ZERO:
        return f + one(torch.where(t < 0, r >= 0.5, r > 0.5))
    if mode is RoundingMode.HALF_AWAY:
        return f + one(torch.where(t < 0, r > 0.5, r >= 0.5))
    if mode is RoundingMode.HALF_EVEN:
        odd = torch.fmod(f, 2) != 0
        return f + one((r > 0.5) | ((r == 0.5) & odd))
    raise PlanError(f"rounding {mode.value!r} cannot be trained through (use a deterministic mode)")


def ste_round(t, mode: RoundingMode | str):
    """``round_exact`` in the forward pass, identity in the backward pass."""
    return t + (round_exact(t.detach(), mode) - t).detach()


def _range(fmt: QFormat, mode: OverflowMode) -> tuple[int, int]:
    lo, hi = fmt.min_code, fmt.max_code
    if mode is OverflowMode.SATURATE_SYMMETRIC and fmt.signed:
        lo = -hi
    return lo, hi


def overflow_codes(c, fmt: QFormat, mode: OverflowMode | str):
    """Integer-valued float64 codes -> ``fmt``'s range with overflow ``mode`` (fxp semantics)."""
    mode = OverflowMode.from_string(mode)
    lo, hi = _range(fmt, mode)
    if mode in (OverflowMode.SATURATE, OverflowMode.SATURATE_SYMMETRIC):
        return torch.clamp(c, float(lo), float(hi))
    if mode is OverflowMode.SATURATE_ZERO:
        return torch.where((c < lo) | (c > hi), torch.zeros_like(c), c)
    # WRAP: two's complement modulo 2**bits, exact with fmod on integers
    if fmt.bits >= 53:
        with torch.no_grad():
            if bool(((c < lo) | (c > hi)).any()):
                raise PlanError(f"cannot wrap into {fmt} exactly in float64")
        return c
    m = _p2(fmt.bits)
    with torch.no_grad():
        w = torch.fmod(c - lo, m)
        w = torch.where(w < 0, w + m, w) + lo
    return c + (w - c).detach()


def fake_codes(x, fmt: QFormat, rounding="half_even", overflow="saturate"):
    """Real float64 values -> codes of ``fmt`` (as float64 integers), STE backward.

    The value ``x * 2**F`` is exact, so the rounding is decided on the exact
    binary value, as :func:`fxp.ops.fixed.quantize` does.
    """
    t = x * _p2(fmt.frac_bits)
    mode = OverflowMode.from_string(overflow)
    if mode is not OverflowMode.WRAP:  # clamping first changes no saturated result
        lo, hi = _range(fmt, mode)
        if mode is OverflowMode.SATURATE_ZERO:
            t = torch.where((t < lo - 1) | (t > hi + 1), torch.zeros_like(t), t)
        else:
            t = torch.clamp(t, float(lo) - 1.0, float(hi) + 1.0)
    return overflow_codes(ste_round(t, rounding), fmt, mode)


def _value(codes, fmt: QFormat):
    return codes * _p2(-fmt.frac_bits)


def _pad_arg(pads: tuple[int, int, int, int]):
    top, left, bottom, right = pads
    if top == bottom and left == right:
        return (top, left), None
    return (0, 0), (left, right, top, bottom)


def _act(y, act):
    if act is None:
        return y
    if act == "relu":
        return torch.relu(y)
    lo, hi = act
    return torch.clamp(y, min=None if lo is None or not np.isfinite(lo) else float(lo),
                       max=None if hi is None or not np.isfinite(hi) else float(hi))


class FxpNet(nn.Module):
    """A trainable torch twin of an fxp graph; ``quant=True`` is bit-exact with the plan.

    Parameters
    ----------
    graph : Graph
        The model (canonicalized here); its weights initialise the parameters.
    plan : Plan, optional
        Power-of-two plan (``requant="pow2"`` on every integer layer); settable
        later with :meth:`set_plan`.  Without a plan only ``quant=False`` runs.
    dropout : float
        Dropout probability on the input of every Dense layer, training only
        (the canonical graph has no Dropout nodes; exports are unaffected).
    """

    def __init__(self, graph: Graph, plan: Plan | None = None, *, dropout: float = 0.0) -> None:
        super().__init__()
        graph = canonicalize(graph)
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise UnsupportedOpError("fxp train handles graphs with one input and one output")
        prev = graph.inputs[0]
        for i, node in enumerate(graph.nodes):
            if not isinstance(node, SUPPORTED):
                raise UnsupportedOpError(f"fxp train: node {node.name!r} ({node.op_type}) is not "
                                         f"supported; supported: {[c.__name__ for c in SUPPORTED]}")
            if len(node.inputs) != 1 or node.inputs[0] != prev:
                raise UnsupportedOpError(f"fxp train handles chains of layers; node {node.name!r} "
                                         f"does not read the previous node's output")
            if isinstance(node, Softmax) and i != len(graph.nodes) - 1:
                raise UnsupportedOpError("fxp train: Softmax is supported only as the last node")
            prev = node.output
        self.graph = graph
        self.dropout = float(dropout)
        self.params = nn.ParameterList()
        self._index: dict[str, tuple[int, int]] = {}
        for node in graph.nodes:
            if isinstance(node, (Conv2D, Dense)):
                w = torch.tensor(np.asarray(node.weight, np.float32))
                b = node.bias if node.bias is not None else np.zeros(w.shape[0], np.float32)
                self._index[node.name] = (len(self.params), len(self.params) + 1)
                self.params.append(nn.Parameter(w))
                self.params.append(nn.Parameter(torch.tensor(np.asarray(b, np.float32))))
        self.projections = nn.ModuleDict()
        self._proj_keys = {name: f"l{i}_{re.sub(r'[^0-9A-Za-z_]', '_', name)}"
                           for i, name in enumerate(self._index)}
        last = graph.nodes[-1]
        self.logits_tensor = last.inputs[0] if isinstance(last, Softmax) else last.output
        self.plan: Plan | None = None
        self._steps: dict[str, object] = {}
        self.logits_spec: TensorSpec | None = None
        if plan is not None:
            self.set_plan(plan)

    # -- parameters -------------------------------------------------------
    def weight(self, name: str):
        """The float32 weight parameter of layer ``name``."""
        return self.params[self._index[name][0]]

    def bias(self, name: str):
        """The float32 bias parameter of layer ``name``."""
        return self.params[self._index[name][1]]

    def set_projection(self, name: str, module) -> None:
        """Make layer ``name``'s weight ``module(raw_weight)`` (None removes it)."""
        if name not in self._index:
            raise PlanError(f"no Conv2D / Dense layer {name!r}; layers: {self.weighted_layers}")
        key = self._proj_keys[name]
        if module is None:
            if key in self.projections:
                del self.projections[key]
        else:
            self.projections[key] = module

    def projection(self, name: str):
        """The projection module of layer ``name``, or None."""
        key = self._proj_keys.get(name)
        return self.projections[key] if key is not None and key in self.projections else None

    def effective_weight(self, name: str, fmt: QFormat | None = None):
        """The weight the layer computes with: float64, projected; clamped to ``fmt`` if given.

        ``fmt`` (the plan's weight format) applies the symmetric value-only clamp
        of projected weights (module docstring); a layer without projection
        returns its raw weight as float64.
        """
        w = self.weight(name)
        proj = self.projection(name)
        if proj is None:
            return w.to(torch.float64)
        v = proj(w).to(torch.float64)
        if fmt is not None:
            lo, hi = _range(fmt, OverflowMode.SATURATE_SYMMETRIC)
            lim_lo, lim_hi = lo * _p2(-fmt.frac_bits), hi * _p2(-fmt.frac_bits)
            v = torch.clamp(v.detach(), lim_lo, lim_hi) + (v - v.detach())  # exact forward
        return v

    @property
    def weighted_layers(self) -> list[str]:
        """Names of the Conv2D / Dense layers, in order."""
        return list(self._index)

    def reset_parameters(self, seed: int) -> None:
        """Torch's default init (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights and biases)."""
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for name in self._index:
                w, b = self.weight(name), self.bias(name)
                fan_in = int(np.prod(w.shape[1:]))
                bound = 1.0 / math.sqrt(fan_in)
                w.copy_((torch.rand(w.shape, generator=g) * 2 - 1) * bound)
                b.copy_((torch.rand(b.shape, generator=g) * 2 - 1) * bound)

    # -- plan ---------------------------------------------------------------
    def set_plan(self, plan: Plan) -> None:
        """Use ``plan`` for ``quant=True`` (checked by fxp's own compiler)."""
        from fxp.sim.compile import compile_plan

        for lp in plan.layers:
            if not lp.float_layer and lp.weight is not None and lp.weight.is_per_channel:
                raise PlanError(f"fxp train quantizes a weight in one format; layer {lp.name!r} "
                                f"has {len(lp.weight.channel_formats)} per-channel weight "
                                f"formats (container {lp.weight.fmt})")
            if not lp.float_layer and lp.weight is not None and lp.requant is not RequantScheme.POW2:
                raise PlanError(f"fxp train reproduces power-of-two plans; layer {lp.name!r} uses "
                                f"requant {lp.requant.value!r}")
        if not plan.input.is_pow2:
            raise PlanError("fxp train reproduces power-of-two plans; the plan input is affine")
        model = compile_plan(self.to_graph(), plan)
        self._steps = {s.name: s for s in model.steps}
        for s in model.steps:
            specs = [*s.in_specs, s.out_spec]
            if any(sp is not None and not sp.is_pow2 for sp in specs):
                raise PlanError(f"fxp train reproduces power-of-two plans; layer {s.name!r} is "
                                "affine")
            lp = s.plan
            if lp is not None and not lp.float_layer and lp.rounding is RoundingMode.STOCHASTIC:
                raise PlanError(f"layer {s.name!r}: stochastic rounding cannot be reproduced")
        self.plan = plan
        producer = model.graph.producer(self.logits_tensor)
        self.logits_spec = self._steps[producer.name].out_spec

    # -- graph views ----------------------------------------------------------
    def _codes_np(self, name: str):
        """(weight codes, bias codes, weight fmt, bias fmt) of an integer layer, numpy int64."""
        from fxp.sim.values import quantize_spec

        step = self._steps[name]
        lp = step.plan
        with torch.no_grad():
            w = self.effective_weight(name, lp.weight.fmt).cpu().numpy().astype(np.float64)
        b = self.bias(name).detach().cpu().numpy().astype(np.float64)
        wc, _ = quantize_spec(w, lp.weight)
        bspec = lp.bias or TensorSpec(step.acc_fmt)
        bc, _ = quantize_spec(b, bspec)
        return wc, bc, lp.weight.fmt, bspec.fmt

    def to_graph(self, *, quantized: bool = False) -> Graph:
        """The graph with the current weights (float32; projected where a layer has a projection).

        ``quantized=True`` (needs a plan) writes each integer layer's weights and
        bias as the exact values of their codes, so that fxp re-quantizes them
        to the same codes (checked; :class:`PlanError` if a value is not
        representable in float32).
        """
        if quantized and self.plan is None:
            raise PlanError("to_graph(quantized=True) needs a plan")
        nodes = []
        for node in self.graph.nodes:
            if node.name in self._index:
                with torch.no_grad():
                    w = self.effective_weight(node.name).cpu().numpy().astype(np.float32)
                b = self.bias(node.name).detach().cpu().numpy().astype(np.float32)
                lp = self.plan.layer(node.name) if quantized else None
                if lp is not None and not lp.float_layer:
                    wc, bc, wf, bf = self._codes_np(node.name)
                    w = _exact_f32(wc, wf, f"{node.name}.weight")
                    b = _exact_f32(bc, bf, f"{node.name}.bias")
                node = replace(node, weight=w, bias=b)
            nodes.append(node)
        g = self.graph
        return Graph(nodes=tuple(nodes), inputs=g.inputs, input_shapes=g.input_shapes,
                     outputs=g.outputs, metadata=dict(g.metadata), name=g.name)

    # -- forward --------------------------------------------------------------
    def forward(self, x, quant: bool = True):
        """Logits of a batch ``x`` (preprocessed floats): fake-quantized float64 or float32."""
        if not torch.is_tensor(x):
            x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        if not quant:
            return self._forward_float(x.float())
        if self.plan is None:
            raise PlanError("quant=True needs a plan (FxpNet.set_plan)")
        return self._forward_quant(x)

    def _forward_float(self, h):
        for node in self.graph.nodes:
            if isinstance(node, Softmax):
                break
            h = self._apply_float(node, h)
            if node.output == self.logits_tensor:
                break
        return h

    def _apply_float(self, node, h):
        if isinstance(node, (Conv2D, Dense)):
            w = self.weight(node.name)
            if self.projection(node.name) is not None:
                w = self.effective_weight(node.name).to(torch.float32)
            if isinstance(node, Conv2D):
                return _act(self._conv(node, h, w, self.bias(node.name)), node.fused_activation)
            if self.dropout and self.training:
                h = F.dropout(h, self.dropout, True)
            return _act(F.linear(h, w, self.bias(node.name)), node.fused_activation)
        if isinstance(node, MaxPool2D):
            return self._maxpool(node, h)
        if isinstance(node, Flatten):
            return h.reshape(h.shape[0], -1)
        if isinstance(node, Reshape):
            return h.reshape((h.shape[0], *node.shape))  # per-sample shape
        if isinstance(node, ReLU):
            return torch.relu(h)
        raise AssertionError(node)  # pragma: no cover

    @staticmethod
    def _conv(node, h, w, b):
        padding, explicit = _pad_arg(tuple(node.pads))
        if explicit is not None:
            h = F.pad(h, explicit)
        return F.conv2d(h, w, b, stride=tuple(node.strides), padding=padding,
                        dilation=tuple(node.dilations), groups=node.groups)

    @staticmethod
    def _maxpool(node, h):
        padding, explicit = _pad_arg(tuple(node.pads))
        if explicit is not None:
            h = F.pad(h, explicit, value=-math.inf)
        return F.max_pool2d(h, tuple(node.kernel), tuple(node.strides), padding)

    def _forward_quant(self, x):
        plan = self.plan
        x = x.to(torch.float32).to(torch.float64)
        spec = plan.input
        h = _value(fake_codes(x, spec.fmt, "half_even", "saturate"), spec.fmt)
        for node in self.graph.nodes:
            if isinstance(node, Softmax):
                break
            step = self._steps[node.name]
            h, spec = self._apply_quant(node, step, h, spec)
            if node.output == self.logits_tensor:
                break
        return h

    def _apply_quant(self, node, step, h, spec):
        """One step on values ``h`` coded by ``spec`` (None: float32 values)."""
        lp = step.plan
        out_spec = step.out_spec
        if isinstance(node, (Conv2D, Dense)):
            if lp.float_layer:
                return self._float_layer(node, h, out_spec), out_spec
            return self._int_layer(node, step, h, spec), out_spec
        if out_spec is None or (lp is not None and lp.float_layer):  # float region
            y = self._apply_float(node, h.to(torch.float32)).to(torch.float64)
            if out_spec is not None:
                y = _value(fake_codes(y, out_spec.fmt), out_spec.fmt)
            return y, out_spec
        if isinstance(node, (MaxPool2D, Flatten, Reshape)):
            return self._apply_float(node, h), out_spec
        if isinstance(node, ReLU):
            lo, hi = step.act_bounds
            t = h * _p2(spec.fmt.frac_bits)
            return _value(torch.clamp(t, float(lo), float(hi)), spec.fmt), out_spec
        raise AssertionError(node)  # pragma: no cover

    def _float_layer(self, node, h, out_spec):
        x32 = h.to(torch.float32).to(torch.float64)  # fxp's to_float: float32 view
        w = self.effective_weight(node.name)
        b = self.bias(node.name).to(torch.float64)
        if isinstance(node, Conv2D):
            acc = self._conv(node, x32, w, b)
        else:
            if self.dropout and self.training:
                x32 = F.dropout(x32, self.dropout, True)
            acc = F.linear(x32.reshape(x32.shape[0], -1), w, b)
        y = _act(acc.to(torch.float32), node.fused_activation).to(torch.float64)
        if out_spec is not None:
            y = _value(fake_codes(y, out_spec.fmt), out_spec.fmt)
        return y

    def _int_layer(self, node, step, h, src):
        lp = step.plan
        in_spec = step.in_specs[0]
        fin = in_spec.fmt
        if src is None:  # float input: quantize_spec, half to even, saturating
            xc = fake_codes(h.to(torch.float32).to(torch.float64), fin)
        elif src != in_spec:  # pow2 cast with the layer's rounding, saturating
            t = h * _p2(fin.frac_bits)
            if fin.frac_bits < src.fmt.frac_bits:
                t = ste_round(t, lp.rounding)
            xc = overflow_codes(t, fin, "saturate")
        else:
            xc = h * _p2(fin.frac_bits)
        if self.dropout and self.training and isinstance(node, Dense):
            # dropout scales kept codes by 1/(1-p): not integer; training-only, so the
            # dropped-out forward is not the engine's (eval/export are unaffected)
            xc = F.dropout(xc, self.dropout, True)
        wf = lp.weight.fmt
        wc = fake_codes(self.effective_weight(node.name, wf), wf)
        bspec = lp.bias or TensorSpec(step.acc_fmt)
        bc = fake_codes(self.bias(node.name).to(torch.float64), bspec.fmt)
        with torch.no_grad():
            xmax = float(max(abs(fin.min_code), abs(fin.max_code)))
            per = wc.detach().abs().reshape(wc.shape[0], -1).sum(1) * xmax + bc.detach().abs()
            bound = float(per.max())
        if bound >= EXACT_LIMIT:
            raise PlanError(f"layer {node.name!r}: worst-case accumulator {bound:.3g} >= 2**52; "
                            "its integer sums cannot be formed exactly in float64 (narrow the "
                            "weight or input format)")
        acc_fmt = step.acc_fmt
        if lp.acc_overflow is not OverflowMode.WRAP and bound > acc_fmt.max_code:
            raise PlanError(f"layer {node.name!r}: a {lp.acc_overflow.value} accumulator that "
                            f"can overflow (worst case {bound:.3g} > {acc_fmt.max_code}) depends "
                            "on the summation order; use acc_overflow='wrap' or a wider "
                            "accumulator")
        if isinstance(node, Conv2D):
            acc = self._conv(node, xc, wc, bc)
        else:
            acc = F.linear(xc.reshape(xc.shape[0], -1), wc, bc)
        if bound > acc_fmt.max_code:
            acc = overflow_codes(acc, acc_fmt, lp.acc_overflow)
        out = step.out_spec.fmt
        shift = acc_fmt.frac_bits - out.frac_bits
        t = acc * _p2(-shift)
        y = ste_round(t, lp.rounding) if shift > 0 else t
        if step.act_bounds is not None:
            lo, hi = step.act_bounds
            y = torch.clamp(y, min=float(lo))
            if hi < out.max_code:
                y = torch.clamp(y, max=float(hi))
        y = overflow_codes(y, out, lp.output_overflow)
        return _value(y, out)

    # -- inference helpers ------------------------------------------------------
    @torch.no_grad()
    def predict(self, x, *, quant: bool = True, batch_size: int = 500):
        """``(top-1 predictions int64, logits float64)`` as numpy arrays, eval mode."""
        was = self.training
        self.eval()
        preds, logits = [], []
        try:
            for i in range(0, len(x), batch_size):
                out = self(x[i:i + batch_size], quant=quant).to(torch.float64)
                logits.append(out.reshape(out.shape[0], -1).numpy())
        finally:
            self.train(was)
        lg = np.concatenate(logits)
        preds = lg.argmax(axis=1)
        return preds, lg

    def logit_codes(self, logits: np.ndarray) -> np.ndarray | None:
        """Integer codes of fake-quantized logits (None when the logits layer is float)."""
        if self.logits_spec is None:
            return None
        return np.ldexp(logits, self.logits_spec.fmt.frac_bits).astype(np.int64)


def _exact_f32(codes: np.ndarray, fmt: QFormat, what: str):
    """float32 values of ``codes`` that fxp re-quantizes to the same codes."""
    from fxp.ops.fixed import quantize

    v = np.ldexp(codes.astype(np.float64), -fmt.frac_bits)
    v32 = v.astype(np.float32)
    back, _ = quantize(v32.astype(np.float64), fmt, "half_even", "saturate")
    if not np.array_equal(back, codes):
        bad = int(np.flatnonzero(back.ravel() != codes.ravel())[0])
        raise PlanError(f"{what}: code {int(codes.ravel()[bad])} of {fmt} has no float32 value "
                        "that quantizes back to it; the export would not be exact")
    return v32
