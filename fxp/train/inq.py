"""Incremental Network Quantization (seed 002, after Zhou et al. 2017), exported bit-exactly.

Per layer with weights ``W`` and ``b`` bits (:mod:`fxp.quant.pow2`, seed eq. 1-3):
``n1 = ceil(log2(4/3 max|W|))`` (fixed from the float model), ``n2 = n1 + 1 -
2**(b-1)``, and a weight is quantized to the nearest of ``{0, +-2**n2 .. +-2**n1}``.
The schedule :data:`~fxp.quant.pow2.INQ_SCHEDULE` = {50%, 75%, 87.5%, 100%}
freezes, at the start of each stage, the largest-magnitude free weights
(:func:`~fxp.quant.pow2.inq_partition`) at their power-of-two values; the other
weights are retrained for ``epochs`` epochs with the frozen ones' gradients
masked (and their values re-imposed after every optimizer step, so momentum
and weight decay cannot move them).  After the 100% stage every weight is
``0`` or ``+-2**n``.

Fixed-point form.  Every level is exact in the weight format with
``frac_bits = -n2`` and ``int_bits = n1 + 2`` (sign included), i.e.
``n1 - n2 + 2`` bits: 5 bits at b=3, 9 at b=4, 17 at b=5, 33 at b=6.  Wider
formats would leave float64's exact range (and any 64-bit datapath), so the
format is capped at ``max_weight_bits`` (default 33): for b=7 and 8 the
levels below ``2**(n1-31)`` (under 5e-10 of the largest weight) round to 0;
``inq_formats`` reports the effective ``n2``.  Biases stay in the
accumulator format (``acc_bits``, default 64), activations in power-of-two
formats of ``act_bits`` bits from calibration; the whole retraining runs the
fake-quantized forward pass of that plan, so the exported model + plan
simulate exactly the trained network.
"""

from __future__ import annotations

import time

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FxpError
from fxp.ir.graph import Graph
from fxp.plan.io import plan_from_dict, plan_to_dict
from fxp.plan.plan import Plan, TensorSpec
from fxp.plan.ptq import ptq_pow2
from fxp.quant.pow2 import INQ_SCHEDULE, Pow2, inq_partition
from fxp.train import require_torch
from fxp.train.fake_quant import FxpNet
from fxp.train.loop import (
    Checkpointer, TrainConfig, TrainResult, accuracy, epoch_row, make_optimizer, run_epoch,
    setup_torch,
)

torch = require_torch()

__all__ = ["inq_formats", "inq_plan", "inq_quantize", "train_inq"]


def inq_formats(weights: dict[str, np.ndarray], bits: int, *, max_weight_bits: int = 33
                ) -> dict[str, dict]:
    """Per layer ``{"n1", "n2", "n2_eff", "format"}``: the INQ levels and their exact format."""
    if not 2 <= bits <= 24:
        raise FxpError(f"INQ bits must be in 2..24, got {bits}")
    out = {}
    for name, w in weights.items():
        p = Pow2("ceil").fit(np.asarray(w, np.float64), bits)
        n1, n2 = p["n1"], p["n2"]
        n2e = max(n2, n1 + 2 - max_weight_bits)
        fmt = QFormat(n1 - n2e + 2, n1 + 2, True)
        out[name] = {"n1": n1, "n2": n2, "n2_eff": n2e, "format": str(fmt), "fmt": fmt}
    return out


def inq_quantize(w: np.ndarray, info: dict) -> np.ndarray:
    """Seed eq. 3 with the layer's fixed ``n1`` and effective ``n2`` (float64 values)."""
    q = Pow2("ceil")
    p = {"bits": 0, "n1": info["n1"], "n2": info["n2_eff"]}
    return q.decode(q.encode(np.asarray(w, np.float64), p), p)


def inq_plan(graph: Graph, calib_x: np.ndarray, formats: dict[str, dict], *, act_bits: int = 8,
             input_bits: int | None = None, rounding: str = "half_up", acc_bits: int = 64,
             bits: int | None = None) -> Plan:
    """Activation formats from calibration (:func:`ptq_pow2`), INQ weight formats, wide acc."""
    plan = ptq_pow2(graph, calib_x, weight_bits=8, act_bits=act_bits, input_bits=input_bits,
                    acc_bits=acc_bits, rounding=rounding,
                    name=f"inq-w{bits if bits is not None else 'pow2'}a{act_bits}")
    for name, info in formats.items():
        plan = plan.replace_layer(name, weight=TensorSpec(info["fmt"]))
    return plan


def train_inq(graph: Graph, x: np.ndarray, y: np.ndarray, *, bits: int = 4, act_bits: int = 8,
              input_bits: int | None = None, rounding: str = "half_up", acc_bits: int = 64,
              max_weight_bits: int = 33, schedule=INQ_SCHEDULE, calib: int = 512,
              config: TrainConfig = TrainConfig(), eval_x=None, eval_y=None, out_dir=None,
              identity: dict | None = None, log=None) -> TrainResult:
    """INQ of a pretrained ``graph`` (module docstring); ``config.epochs`` per retrained stage."""
    if list(schedule) != sorted(schedule) or float(schedule[-1]) != 1.0:
        raise FxpError(f"INQ schedule must increase to 1.0, got {schedule}")
    setup_torch(config)
    cfg = config
    eval_x = x if eval_x is None else eval_x
    eval_y = y if eval_y is None else eval_y
    net = FxpNet(graph, dropout=cfg.dropout)
    names = net.weighted_layers
    ident = {"method": "inq", "bits": bits, "act_bits": act_bits, "rounding": rounding,
             "schedule": [float(s) for s in schedule], "epochs_per_stage": cfg.epochs,
             "seed": cfg.seed, **(identity or {})}
    ck = Checkpointer(out_dir, ident)
    state = ck.load()
    if state is not None:
        ck.restore(net, state["params"])
        formats = {k: {**v, "fmt": QFormat.parse(v["format"])} for k, v in state["formats"].items()}
        plan = plan_from_dict(state["plan"])
        masks = {k: torch.as_tensor(v) for k, v in state["masks"].items()}
        stage, done, history = int(state["stage"]), state["done"], list(state["history"])
    else:
        w0 = {n: net.weight(n).detach().numpy() for n in names}
        formats = inq_formats(w0, bits, max_weight_bits=max_weight_bits)
        plan = inq_plan(net.to_graph(), x[:calib], formats, act_bits=act_bits,
                        input_bits=input_bits, rounding=rounding, acc_bits=acc_bits, bits=bits)
        masks = {n: torch.zeros(net.weight(n).shape, dtype=torch.bool) for n in names}
        stage, done, history = 0, None, []
    net.set_plan(plan)
    frozen_vals: dict = {}

    def refresh_frozen():
        for n in names:
            q = inq_quantize(net.weight(n).detach().numpy(), formats[n])
            frozen_vals[n] = torch.from_numpy(q.astype(np.float32))

    def impose():
        with torch.no_grad():
            for n in names:
                w = net.weight(n)
                w.copy_(torch.where(masks[n], frozen_vals[n], w))

    hooks = [net.weight(n).register_hook(lambda g, n=n: g.masked_fill(masks[n], 0.0))
             for n in names]

    def save(opt):
        ck.save({"stage": stage, "done": done, "params": net.state_dict(),
                 "opt": opt.state_dict() if opt is not None else None, "plan": plan_to_dict(plan),
                 "masks": {k: v.clone() for k, v in masks.items()},
                 "formats": {k: {kk: vv for kk, vv in v.items() if kk != "fmt"}
                             for k, v in formats.items()}, "history": history})

    t0 = time.perf_counter()
    total_epochs = cfg.epochs * sum(1 for f in schedule if f < 1.0)
    try:
        while stage < len(schedule):
            frac = float(schedule[stage])
            opt_state = state.get("opt") if state is not None and done is not None else None
            if done is None:  # partition + quantize the newly frozen group
                with torch.no_grad():
                    for n in names:
                        w = net.weight(n).detach().numpy()
                        m = inq_partition(w, frac, masks[n].numpy())
                        masks[n] = torch.from_numpy(np.asarray(m, bool))
                refresh_frozen()
                impose()
                done = 0
                save(None)
            refresh_frozen()
            opt = make_optimizer(net.parameters(), cfg)
            if opt_state is not None:
                ck.restore(opt, opt_state, "optimizer state")
            state = None
            while frac < 1.0 and done < cfg.epochs:
                g_ep = stage * cfg.epochs + done
                loss = run_epoch(net, opt, x, y, cfg, g_ep, quant=True, after_step=impose,
                                 desc=f"inq {frac:.1%} epoch {done + 1}/{cfg.epochs}")
                done += 1
                acc = accuracy(net, eval_x, eval_y)[0] if cfg.eval_each_epoch else None
                row = epoch_row(g_ep + 1, loss, acc, t0, stage=stage, frozen=frac,
                                of_epochs=total_epochs)
                history.append(row)
                if log is not None:
                    log(row)
                save(opt)
            stage, done = stage + 1, None
        # every weight is frozen at a power of two: check, then report
        for n in names:
            w = net.weight(n).detach().numpy().astype(np.float64)
            if not (masks[n].all() and np.array_equal(w, inq_quantize(w, formats[n]))):
                raise FxpError(f"INQ: layer {n!r} did not end on its power-of-two levels")
        plan = plan.with_shift_weights(names)  # codes 0 or +-2**k: export shift-add layers
        net.set_plan(plan)
        save(None)
    finally:
        for h in hooks:
            h.remove()
    acc, pred, logits = accuracy(net, eval_x, eval_y)
    extra = {"formats": {k: {kk: vv for kk, vv in v.items() if kk != "fmt"}
                         for k, v in formats.items()}}
    return TrainResult(net, plan, history, acc, pred, logits, extra)
