"""Evaluate a plan on a data set: accuracy, SQNR and per-layer accounting.

:func:`simulate` streams the data in batches through both the float reference
and the integer executor (memory stays bounded by one batch), and returns a
:class:`SimulationReport`:

* top-1 / top-5 accuracy of float and fixed point, and top-1 agreement;
* output SQNR in dB, ``10*log10(sum(ref**2) / sum((fixed - ref)**2))`` on the
  logits (the input of a final Softmax, else the output);
* per layer: accumulator overflow events, output saturations, the largest
  |partial sum| observed, the worst-case accumulator bits proven at compile
  time and the bits actually needed, and the SQNR of that layer's output
  against the float model's same tensor (cumulative error up to that layer).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from fxp.errors import DataError
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan
from fxp.sim.compile import CompiledModel, compile_plan
from fxp.sim.float_ref import run_float
from fxp.sim.integer import LayerCounters, logits_tensor, run_integer
from fxp.sim.values import to_float

__all__ = ["LayerRow", "SimulationReport", "sqnr_db", "simulate"]


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """``10*log10(signal / noise)`` in dB; ``inf`` for zero noise, ``-inf`` for zero signal."""
    if noise_power == 0:
        return math.inf
    if signal_power == 0:
        return -math.inf
    return 10.0 * math.log10(signal_power / noise_power)


@dataclass
class LayerRow:
    """One line of the per-layer table (see the module docstring)."""

    name: str
    op: str
    weight: str | None
    output: str | None
    acc_bits: int | None
    acc_overflows: int
    output_saturations: int
    max_abs_acc: int | None
    acc_bits_observed: int | None
    acc_bits_worst_case: int | None
    sqnr_db: float | None
    acc_overflow_per_channel: list[int] | None = None


@dataclass
class SimulationReport:
    """Result of :func:`simulate`; ``to_dict()`` is what ``--json`` prints."""

    model: str
    plan: str
    data: str
    n: int
    float_top1: float
    fixed_top1: float
    float_top5: float
    fixed_top5: float
    agreement: float
    output_sqnr_db: float
    layers: list[LayerRow] = field(default_factory=list)
    fixed_predictions: np.ndarray | None = field(default=None, repr=False)
    float_predictions: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("fixed_predictions")
        d.pop("float_predictions")
        for k, v in list(d.items()):
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = str(v)
        for row in d["layers"]:
            if isinstance(row["sqnr_db"], float) and not math.isfinite(row["sqnr_db"]):
                row["sqnr_db"] = str(row["sqnr_db"])
        return d


def _topk(scores: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (top == y[:, None]).any(axis=1)


def _fmt(spec) -> str | None:
    if spec is None:
        return None
    if spec.is_binary:
        return "binary"
    if spec.is_shift:
        return f"shift {spec.fmt}"
    if spec.is_pow2:
        return str(spec.fmt)
    kind = "per-channel" if len(spec.scales) > 1 else f"scale {spec.scales[0]:.6g}"
    return f"{spec.fmt} {kind} zp {spec.zero_point}"


def simulate(graph: Graph, plan: Plan | CompiledModel, x: np.ndarray, y: np.ndarray, *,
             batch_size: int = 256, model_name: str = "model", data_name: str = "data",
             progress: bool = False, keep_predictions: bool = False,
             method: str = "auto", per_channel: bool = False) -> SimulationReport:
    """Run float and fixed point on preprocessed inputs ``x`` with labels ``y``.

    Parameters
    ----------
    graph : Graph
        The (float) model.
    plan : Plan or CompiledModel
        Per-layer arithmetic (compiled once here when a Plan is given).
    x, y : arrays
        Preprocessed float inputs [N, ...] and int labels [N].
    batch_size : int
        Images per batch (memory is bounded by one batch).
    method : {"auto", "loop"}
        ``"loop"`` observes every partial sum (exact accumulator statistics);
        ``"auto"`` may take the proven-exact float path for speed.
    per_channel : bool
        Also report accumulator overflow events per output channel.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape[0] == 0:
        raise DataError("the evaluation set is empty")
    if y.shape != (x.shape[0],):
        raise DataError(f"labels must have shape ({x.shape[0]},), got {y.shape}")
    model = plan if isinstance(plan, CompiledModel) else compile_plan(graph, plan)
    g = model.graph
    logits = logits_tensor(model)
    tensors = [s.node.output for s in model.steps if s.out_spec is not None]
    sig = dict.fromkeys(tensors + [logits], 0.0)
    err = dict.fromkeys(tensors + [logits], 0.0)
    counters: dict[str, LayerCounters] = {}
    f_scores, q_scores = [], []
    starts = range(0, x.shape[0], batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="simulate", unit="batch", disable=None)
    for s in starts:
        xb = x[s:s + batch_size]
        ref = run_float(g, xb, taps=True)
        run = run_integer(model, xb, counters, keep=True, method=method)
        for t in sig:
            r = np.asarray(ref[t], np.float64)
            q = to_float(run.values[t], t).astype(np.float64)
            sig[t] += float(np.sum(r * r))
            err[t] += float(np.sum((q - r) ** 2))
        f_scores.append(np.asarray(ref[logits], np.float64).reshape(len(xb), -1))
        q_scores.append(to_float(run.values[logits]).astype(np.float64).reshape(len(xb), -1))
    fs, qs = np.concatenate(f_scores), np.concatenate(q_scores)
    fp, qp = fs.argmax(axis=1), qs.argmax(axis=1)
    rows = []
    for step in model.steps:
        c = counters.get(step.name, LayerCounters())
        lp = step.plan
        weighted = step.w_codes is not None
        observed = c.max_abs_acc.bit_length() + 1 if weighted and c.blas_batches == 0 else None
        t = step.node.output
        rows.append(LayerRow(
            name=step.name, op=type(step.node).__name__,
            weight=_fmt(lp.weight) if lp is not None and weighted else None,
            output=_fmt(step.out_spec) if step.out_spec is not None else "float",
            acc_bits=lp.acc_bits if weighted else None, acc_overflows=c.acc_overflows,
            output_saturations=c.output_saturations,
            max_abs_acc=c.max_abs_acc if observed is not None else None,
            acc_bits_observed=observed, acc_bits_worst_case=step.worst_case_bits,
            sqnr_db=sqnr_db(sig[t], err[t]) if t in sig else None,
            acc_overflow_per_channel=(c.acc_overflow_per_channel.tolist()
                                      if per_channel and c.acc_overflow_per_channel is not None
                                      else None)))
    return SimulationReport(
        model=model_name, plan=model.plan.name, data=data_name, n=int(x.shape[0]),
        float_top1=float(np.mean(fp == y)), fixed_top1=float(np.mean(qp == y)),
        float_top5=float(np.mean(_topk(fs, y, 5))), fixed_top5=float(np.mean(_topk(qs, y, 5))),
        agreement=float(np.mean(fp == qp)), output_sqnr_db=sqnr_db(sig[logits], err[logits]),
        layers=rows, fixed_predictions=qp if keep_predictions else None,
        float_predictions=fp if keep_predictions else None)
