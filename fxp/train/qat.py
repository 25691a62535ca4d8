"""Quantization-aware training with fxp semantics (seed 000: 'quant', 'quant_weights', ...).

The plan is an ordinary fxp power-of-two plan (:func:`fxp.plan.ptq.ptq_pow2`
on calibration data); training runs :class:`~fxp.train.fake_quant.FxpNet`
with ``quant=True``, so the loss is computed on exactly the logits that
``fxp simulate`` produces for the exported model.

* fine-tuning (``scratch=False``, seed 000 'quant_weights' and the
  ``quant_conv2d`` / ``quant_dense`` variants with ``granularity="conv"`` /
  ``"dense"``: the other layers stay float): the plan is calibrated once on
  the float model and kept;
* from scratch (``scratch=True``, seed 000 'quant'): weights start from
  torch's default init and the plan is re-calibrated from the current float
  weights at the start of every epoch (the formats follow the ranges as they
  grow); the last epoch trains with the plan that is exported.
"""

from __future__ import annotations

import time

import numpy as np

from fxp.errors import FxpError
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan
from fxp.plan.ptq import ptq_pow2
from fxp.train.fake_quant import FxpNet
from fxp.train.loop import (
    Checkpointer, TrainConfig, TrainResult, accuracy, end_epoch, epoch_row, make_optimizer,
    resume_epochs, run_epoch, setup_torch,
)

__all__ = ["qat_plan", "train_float", "train_qat"]


def qat_plan(graph: Graph, calib_x: np.ndarray, *, bits: int = 8, act_bits: int | None = None,
             input_bits: int | None = None, granularity: str = "whole",
             rounding: str = "half_up", acc_bits: int = 32, method: str = "minmax") -> Plan:
    """The power-of-two plan QAT trains with (:func:`fxp.plan.ptq.ptq_pow2`)."""
    ab = act_bits or bits
    return ptq_pow2(graph, calib_x, weight_bits=bits, act_bits=ab, input_bits=input_bits,
                    acc_bits=acc_bits, granularity=granularity, method=method, rounding=rounding,
                    name=f"qat-{granularity}-w{bits}a{ab}")


def train_qat(graph: Graph, x: np.ndarray, y: np.ndarray, *, bits: int = 8,
              act_bits: int | None = None, input_bits: int | None = None,
              granularity: str = "whole", scratch: bool = False, rounding: str = "half_up",
              acc_bits: int = 32, calib: int = 512, config: TrainConfig = TrainConfig(),
              eval_x: np.ndarray | None = None, eval_y: np.ndarray | None = None,
              out_dir=None, identity: dict | None = None, log=None) -> TrainResult:
    """QAT of ``graph`` on preprocessed ``x, y``; returns the trained net and its plan.

    ``out_dir`` enables per-epoch checkpoints and resuming; ``log`` is called
    with one dict per epoch.  Evaluation (``eval_x``; default the training
    data) uses the fake-quantized forward pass.
    """
    if config.epochs < 0:
        raise FxpError("epochs must be >= 0")
    setup_torch(config)
    cfg = config
    eval_x = x if eval_x is None else eval_x
    eval_y = y if eval_y is None else eval_y
    net = FxpNet(graph, dropout=cfg.dropout)
    if scratch:
        net.reset_parameters(cfg.seed)
    cx = x[:calib]
    kw = dict(bits=bits, act_bits=act_bits, input_bits=input_bits, granularity=granularity,
              rounding=rounding, acc_bits=acc_bits)
    ident = {"method": "qat", "bits": bits, "act_bits": act_bits, "granularity": granularity,
             "scratch": scratch, "rounding": rounding, "seed": cfg.seed, **(identity or {})}
    ck = Checkpointer(out_dir, ident)
    plan, opt, start, history = resume_epochs(net, ck, cfg,
                                              lambda: qat_plan(net.to_graph(), cx, **kw))
    t0 = time.perf_counter()
    for ep in range(start, cfg.epochs):
        if scratch:
            plan = qat_plan(net.to_graph(), cx, **kw)
            net.set_plan(plan)
        loss = run_epoch(net, opt, x, y, cfg, ep, quant=True,
                         desc=f"qat epoch {ep + 1}/{cfg.epochs}")
        end_epoch(net, opt, ck, plan, history, ep, loss, t0, eval_x, eval_y, cfg, log)
    acc, pred, logits = accuracy(net, eval_x, eval_y)
    return TrainResult(net, plan, history, acc, pred, logits)


def train_float(graph: Graph, x: np.ndarray, y: np.ndarray, *, config: TrainConfig = TrainConfig(),
                scratch: bool = True, eval_x=None, eval_y=None, log=None) -> TrainResult:
    """Plain float32 training (the baseline QAT fine-tunes and INQ quantizes); no checkpoints.

    Returns a :class:`TrainResult` whose ``net.to_graph()`` is the trained float graph.
    """
    setup_torch(config)
    net = FxpNet(graph, dropout=config.dropout)
    if scratch:
        net.reset_parameters(config.seed)
    opt = make_optimizer(net.parameters(), config)
    history: list[dict] = []
    t0 = time.perf_counter()
    for ep in range(config.epochs):
        loss = run_epoch(net, opt, x, y, config, ep, quant=False,
                         desc=f"float epoch {ep + 1}/{config.epochs}")
        acc = None
        if eval_x is not None:
            acc, _, _ = accuracy(net, eval_x, eval_y, quant=False)
        row = epoch_row(ep + 1, loss, acc, t0)
        history.append(row)
        if log is not None:
            log(row)
    res = TrainResult(net, None, history)
    if eval_x is not None:
        res.eval_top1, res.eval_predictions, res.eval_logits = accuracy(net, eval_x, eval_y,
                                                                        quant=False)
    return res
