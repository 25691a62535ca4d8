"""The optimizer's noise table (:func:`fxp.opt.noise.measure_noise`) on a Dask cluster, bit for bit.

:func:`measure_noise_dist` runs the same three steps as the in-process
:func:`~fxp.opt.noise.measure_noise`, from the same functions of
:mod:`fxp.opt.noise`:

1. **Ranges** (``method="minmax"``): the float32 range scan over the
   calibration samples, one task per batch of
   :data:`~fxp.opt.noise.RANGE_BATCH` samples (the in-process batches).  Each
   returns the batch's ``(min, max)`` per activation; they are combined with
   Python ``min``/``max`` **in batch order**, the in-process loop's exact
   sequence (so even a NaN ends up where it would in-process).  Other range
   methods (``percentile``, ``mse``) need every calibration value at once:
   :func:`~fxp.plan.ptq.calibrate` runs in this process, as in-process.
2. **Cells**: one task per (tensor, width) pair runs
   :func:`fxp.opt.noise._cell` (quantize that tensor alone, the float32
   fake-quant pass downstream of it, the logits' SQNR; for
   ``weight_method="sqnr"`` the whole clip search of that width) on all the
   measured samples.  A cell is not split over samples, so its SQNR is the
   very float the in-process loop computes: no partial sums are combined.
3. **Assembly** (:func:`fxp.opt.noise._assemble`): the cells are placed by
   their (tensor, width) index, whatever order they finished in, and Lin's law
   is fitted per tensor in this process.

What travels: the graph (weights included), the calibration samples and,
after step 1, the ranges are scattered to every worker **once**
(``broadcast=True``); each worker runs the float32 reference pass over the
measured samples once and keeps it for all the cells it runs.  Tasks carry
only indices; a cell returns its SQNR, its format string and its logits'
error vector (``n_measure x logits`` float32, kept for the interaction terms;
``None`` when the table would exceed :data:`~fxp.opt.noise.MAX_ERROR_ELEMENTS`).

Bit-identity assumes every machine computes the same float32 matrix
products as this one: the same numpy/OpenBLAS build picking the same kernel
(``DYNAMIC_ARCH`` builds choose by CPU; ``OPENBLAS_CORETYPE`` pins it).  A
worker that dies loses its running tasks, which the scheduler reruns
elsewhere: each task is a pure function of its indices.
"""

from __future__ import annotations

import threading

import numpy as np

from fxp.errors import ClusterError
from fxp.ir.graph import Graph
from fxp.opt.noise import (
    DEFAULT_WIDTHS,
    RANGE_BATCH,
    NoiseTable,
    _assemble,
    _batch_minmax,
    _cell,
    _check_args,
    _combine_minmax,
    _FakeQuant,
    _reduce,
    keeps_errors,
    measure_noise,
)

__all__ = ["NoiseJob", "measure_noise_dist"]


class NoiseJob:
    """What each worker holds once: graph, calibration samples, settings, its float pass.

    The float32 reference pass (a :class:`fxp.opt.noise._FakeQuant` over the
    first ``n_measure`` samples) is built on a worker's first task and kept
    there; it never travels (``__getstate__`` drops it).

    Parameters
    ----------
    graph : Graph
    x : array [N, ...] float32
        All calibration samples (the range scan reads them all).
    n_measure : int
        Samples the SQNR is measured on (the first ones).
    rounding : str
        Rounding of layer outputs.
    """

    def __init__(self, graph: Graph, x: np.ndarray, n_measure: int, rounding: str) -> None:
        self.graph, self.x, self.n_measure, self.rounding = graph, x, int(n_measure), rounding
        self._fq: _FakeQuant | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fq": None, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def fake_quant(self) -> _FakeQuant:
        """The float32 pass over the measured samples (built once per process)."""
        with self._lock:
            if self._fq is None:
                self._fq = _FakeQuant(self.graph, self.x[:self.n_measure], self.rounding)
            return self._fq


def _reference_task(job: NoiseJob) -> np.ndarray:
    fq = job.fake_quant()
    return fq.base[fq.logits]


def _range_task(job: NoiseJob, s0: int, acts: list[str]) -> list[tuple[float, float]]:
    return _batch_minmax(job.fake_quant(), job.x[s0:s0 + RANGE_BATCH], acts)


def _cell_task(job: NoiseJob, ranges: dict, i: int, j: int, t, b: int, method: str,
               percentile: float, weight_method: str, keep: bool):
    fq = job.fake_quant()
    nodes = {n.name: n for n in job.graph.nodes}
    s, fmt, logits = _cell(fq, nodes, t, b, ranges, method, percentile, job.rounding,
                           weight_method)
    return i, j, s, fmt, (logits - fq.base[fq.logits]).ravel() if keep else None


def _gather(client, futures: list, progress: bool, desc: str) -> list:
    """Results of ``futures`` in submission order (a tqdm bar counts finished tasks)."""
    distributed = __import__("distributed")
    try:
        if progress:
            from tqdm import tqdm

            for _ in tqdm(distributed.as_completed(futures), total=len(futures), desc=desc,
                          unit="task", disable=None):
                pass
        return client.gather(futures)
    except distributed.KilledWorker as exc:
        raise ClusterError(f"a noise-table task killed its workers too often and was given "
                           f"up: {str(exc)[:200]}") from None


def measure_noise_dist(graph: Graph, calib_x: np.ndarray, *, client=None,
                       widths=DEFAULT_WIDTHS, n_measure: int | None = 256,
                       method: str = "minmax", percentile: float = 99.99,
                       rounding: str = "half_up", tensors: list[str] | None = None,
                       weight_method: str = "minmax", progress: bool = False) -> NoiseTable:
    """:func:`~fxp.opt.noise.measure_noise` on ``client``'s cluster, the same table bit for bit.

    Parameters
    ----------
    client : distributed.Client, optional
        ``None``: :func:`~fxp.opt.noise.measure_noise` in this process.
    progress : bool
        Show a progress bar of the cells done across the cluster.

    The other parameters, the result and the errors are those of
    :func:`~fxp.opt.noise.measure_noise` (SQNR in dB, widths in bits); see the
    module docstring for how the work is split and combined.

    Raises
    ------
    ClusterError
        A task was lost for good (its workers kept dying).
    """
    if client is None:
        return measure_noise(graph, calib_x, widths=widths, n_measure=n_measure, method=method,
                             percentile=percentile, rounding=rounding, tensors=tensors,
                             weight_method=weight_method)
    widths, x, qts, acts = _check_args(graph, calib_x, widths, tensors, weight_method)
    n = x.shape[0] if not n_measure else min(int(n_measure), x.shape[0])
    job = client.scatter(NoiseJob(graph, x, n, rounding), broadcast=True, hash=False)
    futures = [job]
    try:
        ref_f = client.submit(_reference_task, job, pure=False)
        futures.append(ref_f)
        if method == "minmax":
            parts = [client.submit(_range_task, job, s0, acts, pure=False)
                     for s0 in range(0, x.shape[0], RANGE_BATCH)]
            futures += parts
            ranges = _combine_minmax(acts, _gather(client, parts, False, "ranges"))
        else:
            from fxp.plan.ptq import calibrate

            full = calibrate(graph, x, acts)
            ranges = {t: _reduce(v, method if t != graph.inputs[0] else "minmax")
                      for t, v in full.items()}
            del full
        ref = _gather(client, [ref_f], False, "reference")[0]
        keep = keeps_errors(len(qts), len(widths), ref.size)
        [ranges_f] = client.scatter([ranges], broadcast=True, hash=False)
        futures.append(ranges_f)
        cells = [client.submit(_cell_task, job, ranges_f, i, j, t, b, method, percentile,
                               weight_method, keep, pure=False)
                 for i, t in enumerate(qts) for j, b in enumerate(widths)]
        futures += cells
        done = _gather(client, cells, progress, "noise table")
    finally:
        client.cancel(futures)
    return _assemble(qts, widths, done, n, ref, rounding, method, weight_method, ranges,
                     graph)
