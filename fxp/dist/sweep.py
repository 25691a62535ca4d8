"""The weight-quantizer sweep (:func:`fxp.quant.sweep.sweep`) on a Dask cluster, bit for bit.

Each (quantizer, width) point of the sweep is one task: it quantizes every
Conv2D/Dense weight (:func:`~fxp.quant.sweep.quantize_graph`), measures the
rate (:func:`~fxp.quant.entropy.compressed_size`) and the float reference's
top-1/top-5 accuracy (:func:`~fxp.quant.sweep.accuracy`, the same batches)
on all the images, exactly the loop body of the in-process sweep; the float
model's accuracy is one more task.  Nothing is summed across tasks: each
point's numbers are computed whole by one task, then the rows are put back in
the in-process order (quantizer, then width) and the drops (float minus
point, in this process) and the best point per quantizer are derived as
:func:`~fxp.quant.sweep.sweep` derives them.

What travels: the graph and the images with their labels are scattered to
every worker once (``broadcast=True``); tasks carry a quantizer and a width
and return six numbers.  Bit-identity assumes every worker computes the same
float32 matrix products as this process (same numpy/OpenBLAS kernel; see
:mod:`fxp.dist.noise`).
"""

from __future__ import annotations

from fxp.errors import ClusterError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense
from fxp.quant.entropy import compressed_size
from fxp.quant.sweep import (
    SweepResult,
    SweepRow,
    accuracy,
    quantize_graph,
    sweep,
    sweep_inputs,
)

__all__ = ["best_points", "sweep_dist"]


def _float_task(ctx: tuple, batch_size: int) -> tuple[float, float]:
    graph, x, y = ctx
    return accuracy(graph, x, y, batch_size=batch_size)


def _point_task(ctx: tuple, q, b: int | None, per_channel: bool, batch_size: int) -> tuple:
    """Rate and accuracy of one (quantizer, width) point, as the in-process loop computes them."""
    graph, x, y = ctx
    qg, tensors = quantize_graph(graph, q, b, per_channel=per_channel)
    size = compressed_size(tensors.values())
    a1, a5 = accuracy(qg, x, y, batch_size=batch_size)
    return size.entropy, size.bits_per_weight, size.total_bits / 8, size.ratio, a1, a5


def best_points(jobs, rows, tolerance: float) -> dict[str, SweepRow | None]:
    """Per quantizer, the lowest-entropy row within ``tolerance`` (fraction) of float accuracy.

    The rule of :func:`fxp.quant.sweep.sweep` (ties: fewer bits; ``1e-12``
    slack for float rounding of the accuracies).
    """
    best: dict[str, SweepRow | None] = {}
    for q, _ in jobs:
        ok = [r for r in rows if r.quantizer == q.name
              and r.drop_top1 <= tolerance + 1e-12 and r.drop_top5 <= tolerance + 1e-12]
        best[q.name] = min(ok, key=lambda r: (r.entropy, r.bits)) if ok else None
    return best


def sweep_dist(graph: Graph, data, quantizers, bits_range="2-16", *, client=None,
               tolerance: float = 0.01, per_channel: bool = False, batch_size: int = 256,
               progress: bool = False) -> SweepResult:
    """:func:`~fxp.quant.sweep.sweep` with each point a task on ``client``'s cluster.

    Parameters
    ----------
    client : distributed.Client, optional
        ``None``: :func:`~fxp.quant.sweep.sweep` in this process.
    progress : bool
        Show a progress bar of the points done across the cluster.

    The other parameters and the result are those of
    :func:`~fxp.quant.sweep.sweep` (entropy in bits/weight, sizes in bytes,
    accuracies and ``tolerance`` as fractions); the result is equal field for
    field.

    Raises
    ------
    DataError
        As :func:`~fxp.quant.sweep.sweep`.
    ClusterError
        A task was lost for good (its workers kept dying).
    """
    if client is None:
        return sweep(graph, data, quantizers, bits_range, tolerance=tolerance,
                     per_channel=per_channel, batch_size=batch_size, progress=progress)
    x, y, jobs = sweep_inputs(data, quantizers, bits_range)
    distributed = __import__("distributed")
    [ctx] = client.scatter([(graph, x, y)], broadcast=True, hash=False)
    f_fut = client.submit(_float_task, ctx, batch_size, pure=False)
    points = [client.submit(_point_task, ctx, q, b, per_channel, batch_size, pure=False)
              for q, b in jobs]
    try:
        if progress:
            from tqdm import tqdm

            for _ in tqdm(distributed.as_completed(points), total=len(points), desc="sweep",
                          unit="point", disable=None):
                pass
        f1, f5 = client.gather(f_fut)
        results = client.gather(points)
    except distributed.KilledWorker as exc:
        raise ClusterError(f"a sweep task killed its workers too often and was given up: "
                           f"{str(exc)[:200]}") from None
    finally:
        client.cancel([ctx, f_fut, *points])
    rows = []
    for (q, b), (entropy, bpw, size_bytes, ratio, a1, a5) in zip(jobs, results, strict=True):
        bits = b if b is not None else q.fixed_bits
        rows.append(SweepRow(q.name, int(bits), entropy, bpw, size_bytes, ratio, a1, a5,
                             f1 - a1, f5 - a5))
    n_w = sum(int(n.weight.size) for n in graph.nodes if isinstance(n, (Conv2D, Dense)))
    return SweepResult(graph.name, str(getattr(data, "name", "data")), int(x.shape[0]), n_w,
                       f1, f5, float(tolerance), tuple(rows), best_points(jobs, rows, tolerance))
