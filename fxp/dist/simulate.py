""":func:`fxp.sim.evaluate.simulate` over batches spread on a Dask cluster, bit for bit.

The data are cut into the same batches as the in-process run (``batch_size``,
lowered to the memory budget the same way).  Each task runs
``batches_per_task`` consecutive batches and returns, *per batch*, the signal
and error powers of every tensor (each a float64 ``np.sum`` over that batch,
exactly what the in-process loop adds), its float and fixed logits, and its
own :class:`~fxp.sim.integer.LayerCounters`.

Combining is exact and independent of which worker ran what, or when:

* signal/error powers are added **in batch order**, starting from ``0.0``,
  one float per batch: the same additions in the same order as
  :func:`~fxp.sim.evaluate.simulate`, hence the same floats;
* counters are integers (sums; ``max_abs_acc`` a maximum; per-channel
  overflow counts int64 sums), so any order gives the same values;
* logits are concatenated in batch order.

The simulator has no stochastic rounding, so no random stream needs splitting.
The compiled model and the data source are scattered to every worker once
(``broadcast=True``); tasks carry only ``(start, stop)``.  A worker that dies
mid-run loses its running tasks, which the scheduler reruns elsewhere (up to
Dask's ``distributed.scheduler.allowed-failures``); since each task is a pure
function of its batch range, the answer is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fxp.errors import ClusterError, DataError
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan
from fxp.sim.compile import CompiledModel, compile_plan
from fxp.sim.evaluate import (
    SimulationReport,
    _batch_for_memory,
    _run_batch,
    build_report,
    check_labels,
)
from fxp.sim.integer import LayerCounters, logits_tensor

from .stream import as_source

__all__ = ["ChunkResult", "merge_counters", "run_chunk", "simulate_source"]


@dataclass
class ChunkResult:
    """What one task returns: per-batch partial sums, logits and the chunk's counters."""

    start: int
    sig: list[dict[str, float]] = field(default_factory=list)
    err: list[dict[str, float]] = field(default_factory=list)
    f_scores: list[np.ndarray] = field(default_factory=list)
    q_scores: list[np.ndarray] = field(default_factory=list)
    counters: dict[str, LayerCounters] = field(default_factory=dict)


def _tensors(model: CompiledModel) -> list[str]:
    """The tensors whose SQNR :func:`~fxp.sim.evaluate.simulate` reports (its key order)."""
    gin = model.graph.inputs[0]
    return list(dict.fromkeys([gin] + [s.node.output for s in model.steps
                                       if s.out_spec is not None] + [logits_tensor(model)]))


def run_chunk(model: CompiledModel, source, start: int, stop: int, batch_size: int,
              method: str = "auto") -> ChunkResult:
    """Batches ``[start, stop)`` of ``source`` in steps of ``batch_size`` (one task)."""
    logits = logits_tensor(model)
    keys = _tensors(model)
    out = ChunkResult(start=start)
    for s in range(start, stop, batch_size):
        sig, err = dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 0.0)
        xb = source.read(s, min(s + batch_size, stop))
        f, q = _run_batch(model, xb, out.counters, method, sig, err, logits)
        out.sig.append(sig)
        out.err.append(err)
        out.f_scores.append(f)
        out.q_scores.append(q)
    return out


def merge_counters(total: dict[str, LayerCounters], part: dict[str, LayerCounters]) -> None:
    """Add the counters ``part`` into ``total`` (integers: order does not matter)."""
    for name, c in part.items():
        t = total.setdefault(name, LayerCounters())
        t.acc_overflows += c.acc_overflows
        t.output_saturations += c.output_saturations
        t.max_abs_acc = max(t.max_abs_acc, c.max_abs_acc)
        t.blas_batches += c.blas_batches
        if c.acc_overflow_per_channel is not None:
            per = np.asarray(c.acc_overflow_per_channel, np.int64)
            t.acc_overflow_per_channel = per.copy() if t.acc_overflow_per_channel is None \
                else t.acc_overflow_per_channel + per


def _ranges(n: int, batch_size: int, batches_per_task: int) -> list[tuple[int, int]]:
    step = batch_size * batches_per_task
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def _run_on_cluster(client, model, source, ranges, batch_size, method, progress):
    distributed = __import__("distributed")
    [model_f, source_f] = client.scatter([model, source], broadcast=True, hash=False)
    futures = [client.submit(run_chunk, model_f, source_f, a, b, batch_size, method,
                             pure=False) for a, b in ranges]
    try:
        if progress:
            from tqdm import tqdm

            for _ in tqdm(distributed.as_completed(futures), total=len(futures),
                          desc="simulate", unit="task", disable=None):
                pass
        return client.gather(futures)
    except distributed.KilledWorker as exc:
        raise ClusterError(f"a simulation task killed its workers too often and was given up: "
                           f"{str(exc)[:200]}") from None
    finally:
        client.cancel(futures + [model_f, source_f])


def simulate_source(graph: Graph, plan: Plan | CompiledModel, data, y: np.ndarray, *,
                    client=None, batch_size: int = 256, batches_per_task: int = 1,
                    model_name: str = "model", data_name: str = "data",
                    progress: bool = False, keep_predictions: bool = False,
                    method: str = "auto", per_channel: bool = False) -> SimulationReport:
    """:func:`~fxp.sim.evaluate.simulate` of ``data`` on ``client``'s cluster (or in-process).

    Parameters
    ----------
    data : array, path of a ``.npy`` file, or a source of :mod:`fxp.dist.stream`
        Preprocessed inputs ``[N, ...]`` (a ``.npy`` path is memory-mapped as is).
    y : array
        Int labels ``[N]`` (held by the caller; they do not travel).
    client : distributed.Client, optional
        ``None`` runs the same chunks one after another in this process.
    batches_per_task : int
        Consecutive batches per task (fewer, larger tasks for small batches).

    Other parameters are those of :func:`~fxp.sim.evaluate.simulate`, and the
    report is identical to its report, bit for bit (module docstring).

    Raises
    ------
    DataError
        As :func:`~fxp.sim.evaluate.simulate`; also a bad ``batches_per_task``.
    ClusterError
        A task was lost for good (its workers kept dying).
    """
    for name, v in (("batch_size", batch_size), ("batches_per_task", batches_per_task)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise DataError(f"{name} must be a positive integer, got {v!r}")
    source = as_source(data)
    y = np.asarray(y)
    if source.n == 0:
        raise DataError("the evaluation set is empty")
    if y.shape != (source.n,):
        raise DataError(f"labels must have shape ({source.n},), got {y.shape}")
    model = plan if isinstance(plan, CompiledModel) else compile_plan(graph, plan)
    y = check_labels(y, math.prod(model.graph.shapes[logits_tensor(model)][1:]),
                     f"data {data_name!r}")
    batch_size = _batch_for_memory(model.graph, int(batch_size))
    ranges = _ranges(source.n, batch_size, int(batches_per_task))
    if client is None:
        chunks = [run_chunk(model, source, a, b, batch_size, method) for a, b in ranges]
    else:
        chunks = _run_on_cluster(client, model, source, ranges, batch_size, method, progress)
    keys = _tensors(model)
    sig, err = dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 0.0)
    counters: dict[str, LayerCounters] = {}
    f_scores, q_scores = [], []
    for chunk in sorted(chunks, key=lambda c: c.start):  # batch order: the documented order
        for bs, be in zip(chunk.sig, chunk.err):
            for t in keys:
                sig[t] += bs[t]
                err[t] += be[t]
        f_scores += chunk.f_scores
        q_scores += chunk.q_scores
        merge_counters(counters, chunk.counters)
    return build_report(model, y, counters, sig, err, f_scores, q_scores,
                        model_name=model_name, data_name=data_name,
                        keep_predictions=keep_predictions, per_channel=per_channel)
