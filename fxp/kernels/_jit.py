"""The single jit decorator of fxp (fastmath off, cached, nogil).

Each kernel is compiled twice from the same source: serial and parallel
(``prange``).  :class:`Kernel` picks the parallel build only for inputs of at
least ``PARALLEL_MIN_ELEMENTS`` elements, where threads pay for their start-up.
Integer results do not depend on which build ran or on the thread count.
Inside :func:`serial_kernels` (the executor's batch-splitting workers,
:mod:`fxp.sim.threads`) every kernel runs its serial build: the parallelism
is across sub-batches there.

The threading layer defaults to numba's OpenMP layer where it loads, else its
``workqueue`` layer (:data:`LAYER`); set ``NUMBA_THREADING_LAYER`` to choose
another.  Under OpenMP a big batch runs whole through the parallel kernels;
under ``workqueue`` (which must not be entered from two threads at once, and
whose threads sleep between launches) it is split over worker threads
(:func:`fxp.sim.threads.workers_for`).  Measured on 2 shared cores
(``benchmarks/bench_threading.py``, ``reports/engine_speed/threading_ab.log``):
the whole batch on OpenMP ran 1.14-1.22x the split on ``workqueue`` on
``mnist_cnn``, 1.41-1.65x on ``resnet_small`` and 0.98-1.02x on ``vgg7``.  GNU
OpenMP is not fork-safe: a child forked after a parallel kernel ran must not
run one (start processes with ``spawn``, or choose ``workqueue``).  Set
``NUMBA_DISABLE_JIT=1`` to run the kernels as plain Python (coverage).
"""

from __future__ import annotations

import contextlib
import os
import threading
import types

import numba

__all__ = ["LAYER", "PARALLEL_MIN_ELEMENTS", "Kernel", "jit", "jit_inline", "kernel", "prange",
           "serial_kernels"]



def _omp_loads() -> bool:
    try:
        from numba.np.ufunc import omppool  # noqa: F401  (loads the OpenMP runtime)
    except ImportError:
        return False
    return True


if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "omp" if _omp_loads() else "workqueue"
LAYER = numba.config.THREADING_LAYER
"""The threading layer numba was told to use (``NUMBA_THREADING_LAYER`` where set)."""

prange = numba.prange
PARALLEL_MIN_ELEMENTS = 1 << 16
_LOCAL = threading.local()


def in_serial() -> bool:
    """Whether this thread is inside :func:`serial_kernels`."""
    return getattr(_LOCAL, "serial", False)


@contextlib.contextmanager
def serial_kernels():
    """Within this context, on this thread, every :class:`Kernel` runs its serial build."""
    saved = getattr(_LOCAL, "serial", False)
    _LOCAL.serial = True
    try:
        yield
    finally:
        _LOCAL.serial = saved


def jit(fn):
    """Serial nopython function (also used for scalar helpers inlined into kernels)."""
    return numba.njit(cache=True, nogil=True, fastmath=False)(fn)


def jit_inline(fn):
    """Like :func:`jit`, inlined into its callers by numba (an inner loop that must vectorize)."""
    return numba.njit(cache=True, nogil=True, fastmath=False, inline="always")(fn)


class Kernel:
    """A kernel compiled serial and parallel; call ``k(n, *args)`` with the work size ``n``."""

    def __init__(self, fn) -> None:
        self.serial = numba.njit(cache=True, nogil=True, fastmath=False)(fn)
        # numba's disk-cache key ignores ``parallel=True``: give the parallel twin its own
        # qualified name so it never loads the serial machine code from the cache.
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel",
                                  fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_parallel"
        twin.__module__ = fn.__module__
        twin.__doc__ = fn.__doc__
        self.parallel = numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)(twin)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def build(self, n: int):
        """The build that runs work size ``n``: parallel from :data:`PARALLEL_MIN_ELEMENTS`
        on, outside :func:`serial_kernels`; else serial."""
        return self.parallel if n >= PARALLEL_MIN_ELEMENTS and not getattr(_LOCAL, "serial",
                                                                           False) \
            else self.serial

    def __call__(self, n: int, *args):
        return self.build(n)(*args)


def kernel(fn) -> Kernel:
    """Decorator: compile ``fn`` as a serial/parallel :class:`Kernel` pair."""
    return Kernel(fn)
