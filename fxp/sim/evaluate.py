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
  against the float model's same tensor (cumulative error up to that layer);
* a first row ``"(input)"`` for the graph input: the saturations of quantizing
  the float inputs into the plan's input coding, and that coding's SQNR; the
  report's totals (:attr:`SimulationReport.total_output_saturations`) include it.

Memory: the float reference and the integer engine run in lockstep, layer by
layer, and every statistic is accumulated as its tensor is produced; a tensor
is freed after its last use, so only the live tensors of one batch are held
(:func:`fxp.sim.integer.run_integer`).  Before running, the batch is lowered
so that ``batch * largest tensor * 8 bytes * LIVE_COPIES`` fits
:data:`MEMORY_BUDGET_BYTES` (a warning says so), and a model one sample of
which does not fit is refused with a :class:`~fxp.errors.DataError`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from fxp.errors import DataError, FxpWarning
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan
from fxp.sim.compile import CompiledModel, compile_plan
from fxp.sim.float_ref import _check_input, run_node
from fxp.sim.integer import INPUT_COUNTER, LayerCounters, logits_tensor, run_integer
from fxp.sim.sqnr_error import sample_powers, sqnr_standard_error_db
from fxp.sim.values import to_float

__all__ = ["INPUT_ROW", "LIVE_COPIES", "MEMORY_BUDGET_BYTES", "LayerRow", "SimulationReport",
           "build_report", "check_labels", "simulate", "sqnr_db"]

INPUT_ROW = INPUT_COUNTER
"""Name of the per-layer row of the graph input (``"(input)"``, op ``"Input"``)."""
MEMORY_BUDGET_BYTES = 2 << 30
"""Memory one batch of :func:`simulate` may take (2 GiB; see the module docstring)."""
LIVE_COPIES = 6
"""Copies of the largest tensor assumed live at once (float and int64 inputs and outputs,
kernel temporaries), at 8 bytes an element."""


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
    output_sqnr_se_db: float = math.nan
    """Standard error (dB) of ``output_sqnr_db`` over these samples, as independent draws
    (:func:`fxp.sim.sqnr_error.sqnr_standard_error_db`); nan below two samples."""
    input_saturations: int = 0
    """Input values the plan's input coding saturated (also the ``"(input)"`` row)."""
    total_acc_overflows: int = 0
    """Accumulator overflow events over every layer."""
    total_output_saturations: int = 0
    """Saturated values over every row, the input included."""
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


def check_labels(y: np.ndarray, n_classes: int, where: str = "labels") -> np.ndarray:
    """``y`` as int64 class indices in ``[0, n_classes)``; DataError naming the first bad one.

    A label the model cannot predict (``y < 0`` or ``y >= n_classes``, the
    number of logits) would silently count as a miss, so it is refused.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind != "f" or not np.all(np.isfinite(y) & (y == np.round(y))):
            raise DataError(f"{where}: labels must be integers, got dtype {y.dtype}")
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where}: label {y[i].item()!r} at index {i} is outside the model's "
                        f"{n_classes} classes [0, {n_classes}) ({int(bad.sum())} such labels)")
    return y.astype(np.int64)


def _batch_for_memory(g: Graph, batch_size: int) -> int:
    """``batch_size``, lowered so one batch fits :data:`MEMORY_BUDGET_BYTES`."""
    sizes = {t: math.prod(s[1:]) for t, s in g.shapes.items()}
    big = max(sizes, key=sizes.get)
    per_sample = sizes[big] * 8 * LIVE_COPIES
    fits = MEMORY_BUDGET_BYTES // per_sample
    if fits < 1:
        raise DataError(f"tensor {big!r} has {sizes[big]:,} elements per sample: one sample "
                        f"needs about {per_sample / 2**30:.1f} GiB, more than the "
                        f"{MEMORY_BUDGET_BYTES / 2**30:.1f} GiB simulation budget")
    if batch_size > fits:
        warnings.warn(f"batch of {batch_size} lowered to {fits}: tensor {big!r} has "
                      f"{sizes[big]:,} elements per sample and a batch may take "
                      f"{MEMORY_BUDGET_BYTES / 2**30:.1f} GiB", FxpWarning, stacklevel=3)
        return int(fits)
    return batch_size


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
        Preprocessed float inputs [N, ...] and int labels [N] in
        ``[0, number of logits)``.
    batch_size : int
        Images per batch (>= 1; memory is bounded by one batch, and the batch
        is lowered to fit :data:`MEMORY_BUDGET_BYTES`).
    method : {"auto", "loop"}
        ``"loop"`` observes every partial sum (exact accumulator statistics);
        ``"auto"`` may take the proven-exact float path for speed.
    per_channel : bool
        Also report accumulator overflow events per output channel.

    Raises
    ------
    DataError
        Empty data, labels of the wrong shape or outside the model's classes,
        a bad ``batch_size``, or a model one sample of which exceeds the budget.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 0 or x.shape[0] == 0:
        raise DataError("the evaluation set is empty")
    if y.shape != (x.shape[0],):
        raise DataError(f"labels must have shape ({x.shape[0]},), got {y.shape}")
    model = plan if isinstance(plan, CompiledModel) else compile_plan(graph, plan)
    g = model.graph
    logits = logits_tensor(model)
    y = check_labels(y, math.prod(g.shapes[logits][1:]), f"data {data_name!r}")
    batch_size = _batch_for_memory(g, int(batch_size))
    gin = g.inputs[0]
    tensors = [gin] + [s.node.output for s in model.steps if s.out_spec is not None]
    sig = dict.fromkeys(tensors + [logits], 0.0)
    err = dict.fromkeys(tensors + [logits], 0.0)
    counters: dict[str, LayerCounters] = {}
    f_scores, q_scores = [], []
    starts = range(0, x.shape[0], batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="simulate", unit="batch", disable=None)
    for s in starts:
        f, q = _run_batch(model, x[s:s + batch_size], counters, method, sig, err, logits)
        f_scores.append(f)
        q_scores.append(q)
    return build_report(model, y, counters, sig, err, f_scores, q_scores,
                        model_name=model_name, data_name=data_name,
                        keep_predictions=keep_predictions, per_channel=per_channel)


def build_report(model: CompiledModel, y: np.ndarray, counters: dict[str, LayerCounters],
                 sig: dict[str, float], err: dict[str, float], f_scores: list[np.ndarray],
                 q_scores: list[np.ndarray], *, model_name: str = "model",
                 data_name: str = "data", keep_predictions: bool = False,
                 per_channel: bool = False) -> SimulationReport:
    """The :class:`SimulationReport` of accumulated statistics (the end of :func:`simulate`).

    ``counters``, ``sig`` / ``err`` (signal and error power per tensor) and the
    per-batch float / fixed logits ``f_scores`` / ``q_scores`` (in sample order)
    are what :func:`simulate` accumulates over its batches; ``y`` are the
    checked labels.  :mod:`fxp.dist.simulate` builds the same report from
    partial sums computed on a cluster.
    """
    logits = logits_tensor(model)
    gin = model.graph.inputs[0]
    fs, qs = np.concatenate(f_scores), np.concatenate(q_scores)
    fp, qp = fs.argmax(axis=1), qs.argmax(axis=1)
    se_db = sqnr_standard_error_db(*sample_powers(fs, qs))
    c_in = counters.get(INPUT_COUNTER, LayerCounters())
    rows = [LayerRow(name=INPUT_ROW, op="Input", weight=None, output=_fmt(model.plan.input),
                     acc_bits=None, acc_overflows=0, output_saturations=c_in.output_saturations,
                     max_abs_acc=None, acc_bits_observed=None, acc_bits_worst_case=None,
                     sqnr_db=sqnr_db(sig[gin], err[gin]))]
    for step in model.steps:
        c = counters.get(step.name, LayerCounters())
        lp = step.plan
        weighted = step.w_codes is not None
        observed = c.max_abs_acc.bit_length() + 1 if weighted and c.blas_batches == 0 else None
        t = step.node.output
        rows.append(LayerRow(
            name=step.name, op=type(step.node).__name__ + (" xnor-popcount" if step.is_binary
                                                             else ""),
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
        model=model_name, plan=model.plan.name, data=data_name, n=int(y.shape[0]),
        float_top1=float(np.mean(fp == y)), fixed_top1=float(np.mean(qp == y)),
        float_top5=float(np.mean(_topk(fs, y, 5))), fixed_top5=float(np.mean(_topk(qs, y, 5))),
        agreement=float(np.mean(fp == qp)), output_sqnr_db=sqnr_db(sig[logits], err[logits]),
        output_sqnr_se_db=se_db, layers=rows, input_saturations=c_in.output_saturations,
        total_acc_overflows=sum(r.acc_overflows for r in rows),
        total_output_saturations=sum(r.output_saturations for r in rows),
        fixed_predictions=qp if keep_predictions else None,
        float_predictions=fp if keep_predictions else None)


def _run_batch(model: CompiledModel, xb: np.ndarray, counters: dict[str, LayerCounters],
               method: str, sig: dict, err: dict, logits: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch through the float reference and the integer engine in lockstep.

    The float value of each tensor is computed (as :func:`~fxp.sim.float_ref.run_float`
    does, node by node) when the integer engine produces it; its signal and
    error powers are added to ``sig`` / ``err`` and both copies are dropped
    after their last use.  Returns the float and fixed logits ``[n, classes]``.
    """
    g = model.graph
    gin = g.inputs[0]
    n = xb.shape[0]
    fenv = {gin: _check_input(gin, xb, g.input_shapes[gin])}
    last_use = {t: i for i, st in enumerate(model.steps) for t in st.node.inputs}
    index = {st.node.output: i for i, st in enumerate(model.steps)}
    scores: dict[str, np.ndarray] = {}

    def observe(t: str, value) -> None:
        if t != gin:
            node = model.steps[index[t]].node
            fenv[t] = run_node(node, *(fenv[i] for i in node.inputs))
        if t in sig:
            r = np.asarray(fenv[t], np.float64)
            q = to_float(value, t).astype(np.float64)
            sig[t] += float(np.sum(r * r))
            err[t] += float(np.sum((q - r) ** 2))
        if t == logits:
            scores["f"] = np.asarray(fenv[t], np.float64).reshape(n, -1)
            scores["q"] = to_float(value).astype(np.float64).reshape(n, -1)
        if t != gin:
            for i in set(model.steps[index[t]].node.inputs):
                if last_use[i] == index[t]:
                    del fenv[i]

    run_integer(model, xb, counters, method=method, on_value=observe)
    return scores["f"], scores["q"]
