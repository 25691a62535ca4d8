"""Batch splitting: one batch run as contiguous sub-batches on worker threads.

The engine's integers are per sample (no operation mixes samples and plans
refuse stochastic rounding), so running images ``[a, b)`` of a batch on their
own gives exactly their rows of the whole batch's result.  For batches of at
least ``MIN_PER_WORKER`` images per worker, :func:`fxp.sim.integer.run_integer`
splits the batch, when numba runs its ``workqueue`` threading layer
(:mod:`fxp.kernels._jit`; under OpenMP the batch runs whole through the
parallel kernels, faster), over ``numba.get_num_threads()`` workers (set it with
``NUMBA_NUM_THREADS`` or ``numba.set_num_threads``); each worker runs its
sub-batch through every layer with serial kernels
(:func:`fxp.kernels._jit.serial_kernels`) and single-threaded BLAS, so the
workers never compete with kernel or BLAS thread pools (OpenBLAS's threads
keep spinning after each call, taking cores from the numba kernels that run
between GEMMs), and each worker keeps its sub-batch's tensors in its own cache.

Counters are merged in sub-batch order: counts and per-channel counts add,
the observed peak is the maximum, and ``blas_batches`` counts the whole call
once, so they equal the unsplit run's wherever the layer's path does not
depend on the batch size.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["MIN_PER_WORKER", "merge_counters", "run_split", "workers_for"]

MIN_PER_WORKER = 8
"""Fewest images a worker gets; smaller batches run on the calling thread."""
_POOL: list = []
_POOL_LOCK = threading.Lock()


def workers_for(n_images: int) -> int:
    """How many workers a batch of ``n_images`` is split over (1: not split).  Only under
    numba's ``workqueue`` layer (:data:`fxp.kernels._jit.LAYER`): under OpenMP or TBB the
    batch runs whole through the parallel kernels."""
    import numba

    from fxp.kernels._jit import LAYER

    if LAYER != "workqueue":
        return 1
    return max(1, min(numba.get_num_threads(), n_images // MIN_PER_WORKER))


def _pool(workers: int) -> ThreadPoolExecutor:
    with _POOL_LOCK:
        if not _POOL or _POOL[0]._max_workers < workers:
            if _POOL:
                _POOL.pop().shutdown(wait=False)
            _POOL.append(ThreadPoolExecutor(workers, thread_name_prefix="fxp-batch"))
        return _POOL[0]


def _in_worker(fn, *args):
    from fxp.kernels._jit import serial_kernels

    with serial_kernels():
        return fn(*args)


def run_split(fn, x: np.ndarray, workers: int) -> list:
    """``[fn(x[a:b], counters) for each sub-batch]`` on ``workers`` threads, in order.

    ``fn(x_part, counters)`` returns the list of the graph's output arrays;
    the result is ``(outputs concatenated per graph output, per-part counters)``.
    """
    from fxp.sim.fast import single_blas

    bounds = np.linspace(0, len(x), workers + 1).astype(int)
    parts = [({}, x[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    with single_blas():
        futures = [_pool(workers).submit(_in_worker, fn, xp, c) for c, xp in parts]
        outs = [f.result() for f in futures]
    merged = [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]
    return merged, [c for c, _ in parts]


def merge_counters(into: dict, parts: list[dict]) -> None:
    """Add the per-part counters of one split call to ``into`` (see the module docstring)."""
    from fxp.sim.integer import LayerCounters

    for name in dict.fromkeys(k for p in parts for k in p):
        t = into.setdefault(name, LayerCounters())
        cs = [p[name] for p in parts if name in p]
        t.acc_overflows += sum(c.acc_overflows for c in cs)
        t.output_saturations += sum(c.output_saturations for c in cs)
        t.max_abs_acc = max([t.max_abs_acc] + [c.max_abs_acc for c in cs])
        t.blas_batches += max(c.blas_batches for c in cs)
        per = [c.acc_overflow_per_channel for c in cs if c.acc_overflow_per_channel is not None]
        if per:
            total = np.sum(per, axis=0)
            t.acc_overflow_per_channel = total if t.acc_overflow_per_channel is None \
                else t.acc_overflow_per_channel + total
