"""Argument checks shared by the validated integer layers (:mod:`fxp.ops.layers` and friends).

Each helper turns user input into what the kernels take (contiguous int64
codes, tuples of ints, window sizes) or raises :class:`~fxp.errors.FormatError`
/ :class:`~fxp.errors.HeadroomError` naming the argument and the value.
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.errors import FormatError, HeadroomError

I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


def _backend(name: str) -> str:
    if name not in ("numba", "numpy"):
        raise FormatError(f"backend must be 'numba' or 'numpy', got {name!r}")
    return name


def _codes(x, what: str, ndim: int | None = None) -> np.ndarray:
    a = np.ascontiguousarray(intmath._as_codes(x, what))
    if ndim is not None and a.ndim != ndim:
        raise FormatError(f"{what} must have {ndim} dimensions, got shape {a.shape}")
    return a


def _ints(v, n: int, what: str, lo: int) -> tuple[int, ...]:
    t = tuple(int(i) for i in np.atleast_1d(np.asarray(v)).tolist())
    if len(t) == 1 and n > 1:
        t = t * n
    if len(t) != n or any(i < lo for i in t):
        raise FormatError(f"{what} must be {n} integers >= {lo}, got {v!r}")
    return t


def _int64(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not I64_MIN <= v <= I64_MAX:
        raise FormatError(f"{what} must be an int64 integer, got {v!r}")
    return int(v)


def _span(a: np.ndarray) -> tuple[int, int]:
    return (int(a.min()), int(a.max())) if a.size else (0, 0)


def _max_abs_diff(lo: int, hi: int, zp_lo: int, zp_hi: int, what: str) -> int:
    m = max(abs(lo - zp_hi), abs(hi - zp_lo))
    if m > I64_MAX:
        raise HeadroomError(f"{what} minus its zero point reaches {m}, beyond int64")
    return m


def _out_size(size, k, stride, dilation, pb, pe, what) -> int:
    o = (size + pb + pe - ((k - 1) * dilation + 1)) // stride + 1
    if o < 1:
        raise FormatError(f"{what}: window {k} (dilation {dilation}) does not fit the padded "
                          f"input of size {size + pb + pe}")
    return o


def _window(x, kernel, strides, pads, dilations, what):
    k = _ints(kernel, 2, "kernel", 1)
    s, d = _ints(strides, 2, "strides", 1), _ints(dilations, 2, "dilations", 1)
    p = _ints(pads, 4, "pads (top, left, bottom, right)", 0)
    ho = _out_size(x.shape[2], k[0], s[0], d[0], p[0], p[2], what)
    wo = _out_size(x.shape[3], k[1], s[1], d[1], p[1], p[3], what)
    return k, s, p, d, ho, wo


def _seed(seed) -> np.uint64:
    return np.uint64(0 if seed is None else int(seed) % (1 << 64))
