"""The single jit decorator of fxp (fastmath off, cached, nogil).

Set ``NUMBA_DISABLE_JIT=1`` to run the kernels as plain Python (coverage).
"""

from __future__ import annotations

import numba

__all__ = ["jit", "pjit", "prange"]

prange = numba.prange


def jit(fn):
    """Serial nopython kernel."""
    return numba.njit(cache=True, nogil=True, fastmath=False)(fn)


def pjit(fn):
    """Parallel nopython kernel (``prange`` loops; integer reductions are exact)."""
    return numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)(fn)
