"""Training through weight projections: the driver shared by ternary, binary and clustered training.

A *projection* (:class:`WeightProjection`, a ``torch.nn.Module``) maps a
layer's float shadow weight ``W`` to the weight the layer computes with --
``alpha * t`` with ``t`` ternary (:mod:`fxp.train.ternary`), ``alpha * sign(W)``,
or ``centroids[index]`` (:mod:`fxp.train.cluster`).  It is attached to the
:class:`~fxp.train.fake_quant.FxpNet` with
:meth:`~fxp.train.fake_quant.FxpNet.set_projection`, so the fake-quantized
forward pass, the checkpoints (its parameters and buffers are in the state
dict) and the export all see the projected weights.

Plan.  Activations take power-of-two formats of ``act_bits`` bits calibrated
by :func:`fxp.plan.ptq.ptq_pow2` on the *projected* float network (biases in
the ``acc_bits`` accumulator format, ``rounding`` for the requantization);
each projected layer's weight format comes from its projection
(:meth:`WeightProjection.weight_format`): by default the signed
``scale_bits``-bit format with the most fraction bits that holds the largest
projected magnitude (:func:`scale_format`), so a layer scale ``alpha`` becomes
the integer ``k = round(alpha * 2**F) <= 2**(scale_bits-1) - 1`` and the
codes of a ternary layer are ``{-k, 0, k}``.  The projected values then go
through the plan's weight fake-quantization like any weight (after the
symmetric clamp of :mod:`fxp.train.fake_quant`), so what the torch model
computes is exactly what the exported ONNX + plan computes.  With
``refit=True`` (default) the weight formats are re-chosen from the current
projected weights at the start of every epoch (a scale that grows keeps its
``scale_bits`` significant bits); within an epoch a level that outgrows its
format is clamped to ``+-max_code * 2**-F``.  The last epoch trains with the
plan that is exported.

Determinism and resume follow :mod:`fxp.train.loop`: one checkpoint per epoch
(parameters -- shadow weights, biases and projection state --, optimizer,
plan, history); the projections are rebuilt from the pretrained weights with
the same deterministic fit before the checkpoint is loaded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FxpError
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan, TensorSpec
from fxp.plan.ptq import ptq_pow2
from fxp.train import require_torch
from fxp.train.fake_quant import FxpNet
from fxp.train.loop import (
    Checkpointer, TrainConfig, TrainResult, accuracy, end_epoch, resume_epochs, run_epoch,
    setup_torch,
)

torch = require_torch()
from torch import nn  # noqa: E402

__all__ = ["WeightProjection", "layer_summary", "projected_plan", "refit_formats", "scale_format",
           "straight_through", "train_projected"]


def scale_format(max_level: float, scale_bits: int = 8) -> QFormat:
    """Signed ``scale_bits``-bit format with the most fraction bits ``F`` such that
    ``max_level * 2**F <= 2**(scale_bits-1) - 1`` (``F = 0`` for a zero tensor).

    >>> scale_format(0.3, 8)          # 0.3 * 2**8 = 76.8 <= 127 < 153.6
    QFormat(bits=8, int_bits=0, signed=True)
    """
    if not 2 <= int(scale_bits) <= 32:
        raise FxpError(f"scale_bits must be in 2..32, got {scale_bits}")
    top = (1 << (int(scale_bits) - 1)) - 1
    m = float(max_level)
    if not (math.isfinite(m) and m > 0):
        return QFormat.from_frac(scale_bits, 0)
    f = math.floor(math.log2(top / m))
    while math.ldexp(m, f) > top:
        f -= 1
    while math.ldexp(m, f + 1) <= top:
        f += 1
    return QFormat.from_frac(scale_bits, f)


def straight_through(w, values, mask=None):
    """``values`` (float64) in the forward pass, exactly; gradient ``1`` (or ``mask``) to ``w``.

    Written ``values + (w - w.detach())``: the added term is exactly zero, so
    the forward value is ``values`` bit for bit (``w + (values - w).detach()``
    would round).
    """
    w64 = w.to(torch.float64)
    d = w64 - w64.detach()
    if mask is not None:
        d = d * mask.to(torch.float64)
    return values.to(torch.float64) + d


class WeightProjection(nn.Module):
    """Base class: ``forward(w)`` -> the layer's weight (float64, ``w``'s shape).

    Subclasses set ``freeze_raw = True`` when the shadow weight is not trained
    (clustering trains its own parameters), override :meth:`after_step` to
    act on the shadow weight after each optimizer step (BinaryConnect's
    clipping), :meth:`weight_format` when the levels are exact in a fixed
    format, and :meth:`describe` for the summary.
    """

    freeze_raw = False
    code_bits = 0
    """Bits per weight of the stored index / level code (2 ternary, 1 binary, b clusters)."""

    def weight_format(self, w, scale_bits: int) -> QFormat:
        """Default: :func:`scale_format` of the largest projected magnitude."""
        with torch.no_grad():
            m = float(self(w).abs().max()) if w.numel() else 0.0
        return scale_format(m, scale_bits)

    def after_step(self, w) -> None:
        """Called with the shadow weight after every optimizer step (default: nothing)."""

    def describe(self, w) -> dict:
        """JSON-able facts about the projection of ``w`` (default: none)."""
        return {}


def refit_formats(net: FxpNet, plan: Plan, scale_bits: int) -> Plan:
    """``plan`` with each projected layer's weight spec re-chosen by its projection."""
    for name in net.weighted_layers:
        proj = net.projection(name)
        if proj is not None:
            fmt = proj.weight_format(net.weight(name), scale_bits)
            plan = plan.replace_layer(name, weight=TensorSpec(fmt))
    return plan


def projected_plan(net: FxpNet, calib_x: np.ndarray, *, act_bits: int = 8, scale_bits: int = 8,
                   input_bits: int | None = None, rounding: str = "half_up", acc_bits: int = 32,
                   name: str | None = None) -> Plan:
    """Activations from calibration of the projected float network, projected weight formats.

    Layers without a projection keep ptq_pow2's 8-bit weight formats.
    """
    plan = ptq_pow2(net.to_graph(), calib_x, weight_bits=8, act_bits=act_bits,
                    input_bits=input_bits, acc_bits=acc_bits, rounding=rounding, name=name)
    return refit_formats(net, plan, scale_bits)


def layer_summary(net: FxpNet) -> dict:
    """Per projected layer: weight format, distinct weight codes (count, and values if <= 16)."""
    out = {}
    for name in net.weighted_layers:
        proj = net.projection(name)
        if proj is None:
            continue
        wc = net._codes_np(name)[0]
        u = np.unique(wc)
        row = {"format": str(net.plan.layer(name).weight.fmt), "code_bits": proj.code_bits,
               "distinct_codes": int(u.size), **proj.describe(net.weight(name))}
        if u.size <= 16:
            row["codes"] = [int(c) for c in u]
        out[name] = row
    return out


def train_projected(graph: Graph, x: np.ndarray, y: np.ndarray,
                    make_projection: Callable[[str, np.ndarray], WeightProjection], *,
                    identity: dict, act_bits: int = 8, scale_bits: int = 8,
                    input_bits: int | None = None, rounding: str = "half_up", acc_bits: int = 32,
                    calib: int = 512, layers=None, refit: bool = True,
                    config: TrainConfig = TrainConfig(), eval_x=None, eval_y=None, out_dir=None,
                    log=None, desc: str = "train") -> TrainResult:
    """Fine-tune ``graph`` with ``make_projection(name, w0)`` on each layer (module docstring).

    ``layers``: names of the projected layers (default every Conv2D / Dense);
    ``identity`` identifies the run in its checkpoint (method and its options).
    """
    if config.epochs < 0:
        raise FxpError("epochs must be >= 0")
    setup_torch(config)
    cfg = config
    eval_x = x if eval_x is None else eval_x
    eval_y = y if eval_y is None else eval_y
    net = FxpNet(graph, dropout=cfg.dropout)
    names = net.weighted_layers if layers is None else list(layers)
    unknown = sorted(set(names) - set(net.weighted_layers))
    if unknown:
        raise FxpError(f"unknown layers {unknown}; layers with weights: {net.weighted_layers}")
    for n in names:
        proj = make_projection(n, net.weight(n).detach().numpy().astype(np.float64))
        net.set_projection(n, proj)
        if proj.freeze_raw:
            net.weight(n).requires_grad_(False)
    ident = {**identity, "act_bits": act_bits, "scale_bits": scale_bits, "rounding": rounding,
             "acc_bits": acc_bits, "layers": names, "refit": refit, "seed": cfg.seed}
    ck = Checkpointer(out_dir, ident)
    plan, opt, start, history = resume_epochs(
        net, ck, cfg, lambda: projected_plan(
            net, x[:calib], act_bits=act_bits, scale_bits=scale_bits, input_bits=input_bits,
            rounding=rounding, acc_bits=acc_bits,
            name=f"{identity.get('method', 'projected')}-a{act_bits}"))

    def after_step():
        with torch.no_grad():
            for n in names:
                net.projection(n).after_step(net.weight(n))

    t0 = time.perf_counter()
    for ep in range(start, cfg.epochs):
        if refit:
            plan = refit_formats(net, plan, scale_bits)
            net.set_plan(plan)
        loss = run_epoch(net, opt, x, y, cfg, ep, quant=True, after_step=after_step,
                         desc=f"{desc} epoch {ep + 1}/{cfg.epochs}")
        end_epoch(net, opt, ck, plan, history, ep, loss, t0, eval_x, eval_y, cfg, log)
    acc, pred, logits = accuracy(net, eval_x, eval_y)
    return TrainResult(net, plan, history, acc, pred, logits, {"layers": layer_summary(net)})
