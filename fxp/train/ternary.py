"""Ternary and binary weight training (seed 003), exported bit-exactly.

Every method fine-tunes a pretrained float model: each Conv2D / Dense layer
keeps float *shadow* weights ``W`` (the parameters the optimizer updates) and
computes with their projection ``W_q`` (:mod:`fxp.train.project`); the
gradient of the loss with respect to ``W_q`` is passed straight through to
``W`` ("the forward and back-propagation is carried out using the quantized
weights, but the parameter update is still applied to the floating-point
weights", seed 003 section III-A.2).  Biases are trained in float and
quantized to the accumulator format; activations use ``act_bits``-bit
power-of-two formats (seed 003's papers keep float activations).

* **TWN** (Li, Zhang & Liu 2016, "Ternary weight networks"; seed 003 section
  III-B.2, eq. 5-9), recomputed from ``W`` in every forward pass, per layer:
  ``Delta = 0.7 * mean|W|`` (the normal approximation of eq. 9),
  ``t_i = sign(w_i)`` where ``|w_i| > Delta`` else 0 (eq. 5; ``|w_i| = Delta``
  -> 0), ``alpha = mean of |w_i| over |w_i| > Delta`` (eq. 8),
  ``W_q = alpha * t``.  Computed by :class:`fxp.quant.ternary.TWN` itself.
* **Hwang & Sung** (2014; seed 003 section III-A.2): an ``M = 2**bits - 1``
  level uniform quantizer (``L = 2**(bits-1) - 1``; ternary at ``bits=2``)
  ``W_q = Delta * Q(W; Delta)``, ``Q`` = nearest level ``k``, ``|k| <= L``,
  ties toward zero.  ``Delta`` is chosen on the *pretrained* weights and kept
  fixed while the weights are retrained, always as stored: rounded to
  ``scale_bits`` bits (``Delta = d * 2**-F``, ``d`` an integer
  ``<= 2**(scale_bits-1) - 1``).  ``step_search="network"`` (default, the
  seed's three steps): one network-wide L2-optimal ``Delta_init``, then each
  layer's step searched in order on the float network's output error over the
  first ``calib`` training images (:func:`fxp.quant.step_search.search_steps`;
  grid ``2**(k/8) * Delta``, ``k = -24..24``); ``"layer"``: the same search
  started from each layer's own L2-optimal step; ``None``: no search, each
  layer's L2-optimal step of :class:`fxp.quant.ternary.HwangSung` (grid search
  + Lloyd-Max refinement of ``||W - Delta Q(W; Delta)||**2``), fxp's earlier
  behaviour.  The search runs the float reference with float activations (the
  seed quantizes only the weights); the retraining uses ``act_bits``.
* **BinaryConnect** (Courbariaux, Bengio & David 2015), deterministic, with
  XNOR-Net's scale (seed 003 eq. 2): ``W_q = alpha * sign(W)``, ``sign(0) =
  +1`` (:func:`fxp.quant.binary.binarize`), ``alpha = mean|W|`` per layer,
  recomputed every forward pass.  Backward: the hard-tanh straight-through
  estimator of seed 003 eq. 4 (gradient cancelled where ``|w| > 1``), and, as
  in BinaryConnect's Algorithm 1, the shadow weights are clipped to ``[-1, 1]``
  after every optimizer step (so the cancellation only acts through the clip;
  the pretrained weights here are all well inside ``[-1, 1]``).

What the hardware stores.  A ternary layer: a 2-bit code ``t`` per weight and
one per-layer scale ``k = round(alpha * 2**F)``, an integer below
``2**(scale_bits-1)`` (8 bits by default), with ``F`` fixed by the plan
(:func:`fxp.train.project.scale_format`; re-chosen each epoch while
training).  The plan's weight format is ``fixed<scale_bits, scale_bits-F>``
and the exported weight codes are exactly ``{-k, 0, k}``; the integer engine
multiplies the input codes by them, i.e. computes ``k * sum_i t_i x_i``
exactly.  Binary: a 1-bit code and ``k`` (codes ``{-k, k}``).  Hwang & Sung:
a ``bits``-bit level code ``q`` and the step ``d``; codes ``q * d`` in the
narrowest signed format holding ``L * d`` (8 bits for ternary).
"""

from __future__ import annotations

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FxpError
from fxp.ir.graph import Graph
from fxp.quant.binary import binarize
from fxp.quant.step_search import search_steps
from fxp.quant.ternary import TWN, Binary, HwangSung
from fxp.train import require_torch
from fxp.train.loop import TrainConfig, TrainResult
from fxp.train.project import WeightProjection, scale_format, straight_through, train_projected

torch = require_torch()

__all__ = ["BinaryConnectProjection", "HwangSungProjection", "TWNProjection", "stored_step",
           "train_binaryconnect", "train_hwang_sung", "train_twn"]

STEP_SEARCH = ("network", "layer", None)
"""``step_search`` values of :func:`train_hwang_sung` (module docstring)."""


def _np(w) -> np.ndarray:
    return w.detach().cpu().numpy().astype(np.float64)


class TWNProjection(WeightProjection):
    """TWN (module docstring): ``alpha * t`` from :class:`fxp.quant.ternary.TWN`, STE backward."""

    code_bits = 2

    def __init__(self, factor: float = 0.7) -> None:
        super().__init__()
        self.q = TWN(factor)

    def params(self, w) -> dict:
        """``{"threshold": Delta, "alpha": alpha, "bits": 2}`` of shadow weight ``w``."""
        return self.q.fit(_np(w), 2)

    def forward(self, w):
        a = _np(w)
        p = self.q.fit(a, 2)
        v = self.q.decode(self.q.encode(a, p), p)
        return straight_through(w, torch.from_numpy(v))

    def describe(self, w) -> dict:
        a = _np(w)
        p = self.q.fit(a, 2)
        return {"threshold": p["threshold"], "alpha": p["alpha"],
                "zero_fraction": float(np.mean(self.q.encode(a, p) == 0))}


class BinaryConnectProjection(WeightProjection):
    """Deterministic BinaryConnect with ``alpha = mean|W|`` (module docstring)."""

    code_bits = 1

    def __init__(self, clip: float = 1.0) -> None:
        super().__init__()
        self.clip = float(clip)

    def forward(self, w):
        a = _np(w)
        v = Binary().fit(a, 1)["alpha"] * binarize(a).astype(np.float64)
        return straight_through(w, torch.from_numpy(v), mask=w.detach().abs() <= self.clip)

    def after_step(self, w) -> None:
        w.clamp_(-self.clip, self.clip)

    def describe(self, w) -> dict:
        return {"alpha": Binary().fit(_np(w), 1)["alpha"], "clip": self.clip}


def _step_code(step: float, scale_bits: int) -> tuple[int, int]:
    frac = scale_format(step, scale_bits).frac_bits
    return max(1, int(np.rint(np.ldexp(step, frac)))), frac


def stored_step(step: float, scale_bits: int = 8) -> float:
    """``step`` as stored: ``d * 2**-F``, ``d <= 2**(scale_bits-1) - 1`` (weight units).

    Idempotent: a stored step is stored unchanged.
    """
    d, frac = _step_code(float(step), scale_bits)
    return float(np.ldexp(float(d), -frac))


class HwangSungProjection(WeightProjection):
    """Hwang & Sung's fixed-step uniform quantizer (module docstring); exact weight format.

    Parameters
    ----------
    w0 : array
        The pretrained weights (the L2-optimal step is fitted on them).
    bits : int
        2..8: ``2**bits - 1`` levels.
    scale_bits : int
        Bits of the stored step ``d`` (``Delta = d * 2**-F``).
    step : float, optional
        The step to use (weight units, e.g. from the output-error search);
        default the L2-optimal step of ``w0``.  Stored as ``d * 2**-F``.
    """

    def __init__(self, w0: np.ndarray, bits: int = 2, scale_bits: int = 8,
                 step: float | None = None) -> None:
        super().__init__()
        if not 2 <= int(bits) <= 8:
            raise FxpError(f"Hwang & Sung bits must be in 2..8, got {bits}")
        p = HwangSung().fit(np.asarray(w0, np.float64), int(bits))
        self.code_bits = int(bits)
        self.qmax = int(p["qmax"])
        self.l2_step = float(p["step"])
        if step is not None and not (np.isfinite(step) and step > 0):
            raise FxpError(f"Hwang & Sung step must be a finite number > 0, got {step!r}")
        self.fitted_step = self.l2_step if step is None else float(step)
        d, frac = _step_code(self.fitted_step, scale_bits)
        self.register_buffer("step_code", torch.tensor(d, dtype=torch.int64))
        self.register_buffer("frac_bits", torch.tensor(frac, dtype=torch.int64))

    @property
    def step(self) -> float:
        """``Delta = d * 2**-F`` (exact in float64)."""
        return float(np.ldexp(float(self.step_code), -int(self.frac_bits)))

    def _params(self) -> dict:
        return {"step": self.step, "qmax": self.qmax}

    def forward(self, w):
        q = HwangSung()
        v = q.decode(q.encode(_np(w), self._params()), self._params())  # k * d * 2**-F: exact
        return straight_through(w, torch.from_numpy(v))

    def weight_format(self, w, scale_bits: int) -> QFormat:
        """The narrowest signed format holding every level ``k * d`` (``|k| <= L``) exactly."""
        top = self.qmax * int(self.step_code)
        return QFormat.from_frac(top.bit_length() + 1, int(self.frac_bits))

    def describe(self, w) -> dict:
        codes = HwangSung().encode(_np(w), self._params())
        return {"levels": 2 * self.qmax + 1, "l2_step": self.l2_step,
                "fitted_step": self.fitted_step, "step": self.step,
                "step_code": int(self.step_code), "zero_fraction": float(np.mean(codes == 0))}


def _train(graph, x, y, make, ident, desc, **kw) -> TrainResult:
    identity = {**ident, **(kw.pop("identity", None) or {})}
    return train_projected(graph, x, y, make, identity=identity, desc=desc, **kw)


def train_twn(graph: Graph, x: np.ndarray, y: np.ndarray, *, bits: int = 2, act_bits: int = 8,
              scale_bits: int = 8, factor: float = 0.7, config: TrainConfig = TrainConfig(),
              eval_x=None, eval_y=None, out_dir=None, identity: dict | None = None, log=None,
              **plan_kw) -> TrainResult:
    """TWN fine-tuning of a pretrained ``graph`` (module docstring); ``bits`` must be 2.

    ``plan_kw``: ``input_bits``, ``rounding``, ``acc_bits``, ``calib``, ``layers``,
    ``refit`` of :func:`fxp.train.project.train_projected`.
    """
    if bits != 2:
        raise FxpError(f"TWN weights are ternary (2 bits); got bits={bits}")
    return _train(graph, x, y, lambda n, w: TWNProjection(factor),
                  {"method": "twn", "bits": 2, "factor": factor}, "twn", act_bits=act_bits,
                  scale_bits=scale_bits, config=config, eval_x=eval_x, eval_y=eval_y,
                  out_dir=out_dir, identity=identity, log=log, **plan_kw)


def train_hwang_sung(graph: Graph, x: np.ndarray, y: np.ndarray, *, bits: int = 2,
                     act_bits: int = 8, scale_bits: int = 8, step_search: str | None = "network",
                     config: TrainConfig = TrainConfig(), eval_x=None, eval_y=None,
                     out_dir=None, identity: dict | None = None, log=None,
                     **plan_kw) -> TrainResult:
    """Hwang & Sung retraining with ``2**bits - 1`` levels (ternary at ``bits=2``).

    ``step_search``: ``"network"`` (the seed's network-wide initial step and
    per-layer output-error search), ``"layer"`` (the search from per-layer L2
    steps) or ``None`` (per-layer L2 steps, no search); see the module
    docstring.  The search uses the first ``calib`` (default 512) images of
    ``x`` and the projected ``layers``; its steps and output errors (squared
    L2 error of the graph output per image, float network) are in
    ``result.extra["step_search"]``.
    """
    if not 2 <= bits <= 8:
        raise FxpError(f"Hwang & Sung bits must be in 2..8, got {bits}")
    if step_search not in STEP_SEARCH:
        raise FxpError(f"step_search must be one of {list(STEP_SEARCH)}, got {step_search!r}")
    steps: dict = {}
    found = None
    if step_search is not None:
        found = search_steps(graph, x[:plan_kw.get("calib", 512)], bits=bits, init=step_search,
                             layers=plan_kw.get("layers"),
                             snap=lambda s: stored_step(s, scale_bits))
        steps = found.steps
    res = _train(graph, x, y, lambda n, w: HwangSungProjection(w, bits, scale_bits, steps.get(n)),
                 {"method": "hwang-sung", "bits": bits, "step_search": step_search},
                 f"hwang-sung w{bits}", act_bits=act_bits, scale_bits=scale_bits, config=config,
                 eval_x=eval_x, eval_y=eval_y, out_dir=out_dir, identity=identity, log=log,
                 **plan_kw)
    res.extra["step_search"] = {"mode": step_search,
                                **(found.summary() if found is not None else {})}
    return res


def train_binaryconnect(graph: Graph, x: np.ndarray, y: np.ndarray, *, bits: int = 1,
                        act_bits: int = 8, scale_bits: int = 8, clip: float = 1.0,
                        config: TrainConfig = TrainConfig(), eval_x=None, eval_y=None,
                        out_dir=None, identity: dict | None = None, log=None,
                        **plan_kw) -> TrainResult:
    """Deterministic BinaryConnect fine-tuning (module docstring); ``bits`` must be 1."""
    if bits != 1:
        raise FxpError(f"BinaryConnect weights are binary (1 bit); got bits={bits}")
    return _train(graph, x, y, lambda n, w: BinaryConnectProjection(clip),
                  {"method": "binaryconnect", "bits": 1, "clip": clip}, "binaryconnect",
                  act_bits=act_bits, scale_bits=scale_bits, config=config, eval_x=eval_x,
                  eval_y=eval_y, out_dir=out_dir, identity=identity, log=log, **plan_kw)
