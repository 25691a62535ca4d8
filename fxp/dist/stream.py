"""Data sources read in chunks, on whichever machine runs the chunk.

A source has ``n`` samples of shape ``sample_shape`` and ``read(start, stop)``
returns the preprocessed float32 samples ``[start, stop)``.  Three kinds:

* :class:`ArraySource`: an array already in memory (it travels to each worker
  once, scattered by :func:`fxp.dist.simulate.simulate_source`);
* :class:`NpySource`: a ``.npy`` file of raw NCHW pixels, opened as a memmap on
  each worker (only the path travels: the file must be readable at that path
  on every machine, e.g. on shared storage) and normalized chunk by chunk
  with the model's :class:`~fxp.data.preprocess.Preprocess`;
* :class:`CallableSource`: ``fn(start, stop)`` returning preprocessed samples
  (any reader: a folder of images, a database); ``fn`` must be picklable (a
  module-level function) and importable on the workers.

Preprocessing is elementwise, so normalizing a chunk gives the same float32
values as normalizing the whole set at once (what ``fxp simulate --data``
does in memory).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from fxp.errors import DataError

__all__ = ["ArraySource", "CallableSource", "NpySource", "as_source"]


class ArraySource:
    """Preprocessed samples held in memory."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = np.asarray(x)
        if self.x.ndim == 0:
            raise DataError(f"data must have a sample axis, got a scalar {self.x!r:.200}")
        self.n = int(self.x.shape[0])
        self.sample_shape = tuple(self.x.shape[1:])

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.x[start:stop]


class NpySource:
    """Raw pixels in a ``.npy`` file, memory-mapped and normalized per chunk.

    Parameters
    ----------
    path : path-like
        A ``.npy`` array ``[N, C, H, W]`` (any numeric dtype).
    preprocess : Preprocess, optional
        Applied to each chunk (:meth:`~fxp.data.preprocess.Preprocess.apply`);
        ``None`` reads the values as they are (already preprocessed).
    """

    def __init__(self, path, preprocess=None) -> None:
        self.path = str(path)
        self.preprocess = preprocess
        self._x = None
        x = self._open()
        self.n = int(x.shape[0])
        self.sample_shape = tuple(x.shape[1:])
        if preprocess is not None and preprocess.layout == "NHWC" and x.ndim == 4:
            c, h, w = self.sample_shape
            self.sample_shape = (h, w, c)

    def _open(self) -> np.ndarray:
        if self._x is None:
            try:
                x = np.load(self.path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot memory-map {self.path[:200]!r}: {str(exc)[:200]}") \
                    from None
            if x.ndim == 0 or x.dtype.kind not in "iuf":
                raise DataError(f"{self.path[:200]!r}: expected a numeric array with a sample "
                                f"axis, got dtype {x.dtype} shape {x.shape}")
            self._x = x
        return self._x

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_x": None}  # the path travels, not the mapping

    def read(self, start: int, stop: int) -> np.ndarray:
        chunk = np.asarray(self._open()[start:stop])
        if self.preprocess is None:
            return chunk
        return self.preprocess.apply(chunk).astype(np.float32)


class CallableSource:
    """Samples from ``fn(start, stop)``; checked to have ``stop - start`` rows of ``sample_shape``."""

    def __init__(self, fn: Callable[[int, int], np.ndarray], n: int,
                 sample_shape: tuple[int, ...]) -> None:
        if not callable(fn):
            raise DataError(f"a callable source needs a function, got {fn!r:.200}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise DataError(f"a callable source needs a sample count >= 0, got {n!r:.200}")
        self.fn, self.n, self.sample_shape = fn, int(n), tuple(int(d) for d in sample_shape)

    def read(self, start: int, stop: int) -> np.ndarray:
        x = np.asarray(self.fn(start, stop))
        want = (stop - start, *self.sample_shape)
        if x.shape != want:
            name = getattr(self.fn, "__qualname__", repr(self.fn))
            raise DataError(f"source {name[:200]!r} returned shape {x.shape} for samples "
                            f"[{start}, {stop}), expected {want}")
        return x


def as_source(data) -> ArraySource | NpySource | CallableSource:
    """``data`` as a source: a source as is, a ``.npy`` path memory-mapped, else an array."""
    if isinstance(data, (ArraySource, NpySource, CallableSource)):
        return data
    if isinstance(data, (str, Path)):
        return NpySource(data)
    return ArraySource(data)

