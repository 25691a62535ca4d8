"""The :class:`Dataset` container and batch iteration.

A dataset holds *raw* pixels (e.g. 0..255 for MNIST) as float32 NCHW and
int64 labels; preprocessing (scale/mean/std) is a separate
:class:`~fxp.data.preprocess.Preprocess` applied per batch.

>>> import numpy as np
>>> ds = Dataset(np.zeros((5, 1, 2, 2), np.float32), np.arange(5) % 2, name="toy", num_classes=2)
>>> len(ds), ds.image_shape
(5, (1, 2, 2))
>>> [x.shape[0] for x, _ in iter_batches(ds, 2)]
[2, 2, 1]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fxp.errors import DataError

if TYPE_CHECKING:
    from fxp.data.preprocess import Preprocess

__all__ = ["Dataset", "iter_batches"]


@dataclass(frozen=True)
class Dataset:
    """A labelled image set, validated on construction.

    Parameters
    ----------
    x : numpy.ndarray
        Raw images, shape ``[N, C, H, W]``; converted to read-only float32.
    y : numpy.ndarray
        Labels, shape ``[N]``, integers in ``[0, num_classes)``; converted to
        read-only int64.
    name : str
        Short name (the spec it was loaded from).
    num_classes : int
        Number of classes.
    source : str
        Where the data came from (files, package), for reports.
    pixel_max : float
        Largest possible raw pixel value (255 for MNIST, 16 for sklearn
        digits); the default preprocessing scales by ``1 / pixel_max``.

    Raises
    ------
    DataError
        Wrong shapes, empty set, mismatched counts, NaN/Inf pixels, labels out
        of range.
    """

    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    name: str
    num_classes: int
    source: str = ""
    pixel_max: float = 255.0

    def __post_init__(self) -> None:
        where = self.name or "dataset"
        x = np.asarray(self.x)
        y = np.asarray(self.y)
        if x.ndim != 4:
            raise DataError(f"{where}: images must be NCHW (4-D), got shape {x.shape}")
        if y.ndim != 1:
            raise DataError(f"{where}: labels must be 1-D, got shape {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise DataError(
                f"{where}: {x.shape[0]} images but {y.shape[0]} labels (counts must match)"
            )
        if x.shape[0] == 0:
            raise DataError(f"{where}: the data set is empty")
        if min(x.shape[1:]) == 0:
            raise DataError(f"{where}: images have an empty dimension: shape {x.shape}")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DataError(f"{where}: images must be real numbers, got dtype {x.dtype}")
        integral = np.issubdtype(y.dtype, np.integer) or (
            np.issubdtype(y.dtype, np.floating) and bool(np.all(np.isfinite(y) & (y == np.round(y))))
        )
        if not integral:
            raise DataError(f"{where}: labels must be integers, got dtype {y.dtype}")
        xf = np.array(x, dtype=np.float32)
        bad = ~np.isfinite(xf)
        if bad.any():
            first = int(np.argwhere(bad.reshape(len(xf), -1).any(axis=1))[0, 0])
            raise DataError(
                f"{where}: {int(bad.sum())} NaN/Inf pixel values (first in image {first})"
            )
        yi = y.astype(np.int64)
        if int(self.num_classes) < 1:
            raise DataError(f"{where}: num_classes must be >= 1, got {self.num_classes}")
        out = (yi < 0) | (yi >= int(self.num_classes))
        if out.any():
            i = int(np.argmax(out))
            raise DataError(
                f"{where}: label {int(yi[i])} at index {i} is out of range "
                f"[0, {int(self.num_classes)}) ({int(out.sum())} labels out of range)"
            )
        if not (np.isfinite(self.pixel_max) and self.pixel_max > 0):
            raise DataError(f"{where}: pixel_max must be a positive number, got {self.pixel_max}")
        xf.setflags(write=False)
        yi.setflags(write=False)
        object.__setattr__(self, "x", xf)
        object.__setattr__(self, "y", yi)
        object.__setattr__(self, "num_classes", int(self.num_classes))
        object.__setattr__(self, "pixel_max", float(self.pixel_max))

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(int(d) for d in self.x.shape[1:])  # type: ignore[return-value]

    def head(self, limit: int | None) -> Dataset:
        """Return the first ``limit`` samples (all when ``None``).

        Raises
        ------
        DataError
            ``limit`` is not a positive integer.
        """
        if limit is None or limit >= len(self):
            return self
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise DataError(f"{self.name}: limit must be a positive integer, got {limit!r}")
        return Dataset(
            self.x[:limit], self.y[:limit], name=self.name, num_classes=self.num_classes,
            source=f"{self.source} (first {int(limit)})", pixel_max=self.pixel_max,
        )

    def batches(
        self, batch_size: int, *, preprocess: Preprocess | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Iterate over ``(x, y)`` batches; see :func:`iter_batches`."""
        return iter_batches(self, batch_size, preprocess=preprocess)


def iter_batches(
    dataset: Dataset, batch_size: int, *, preprocess: Preprocess | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield consecutive ``(x, y)`` batches in dataset order.

    Parameters
    ----------
    dataset : Dataset
        The data.
    batch_size : int
        Samples per batch (the last batch may be smaller).
    preprocess : Preprocess, optional
        Applied to each batch of raw pixels; ``None`` yields raw pixels.

    Yields
    ------
    x : numpy.ndarray
        float32 batch (NCHW, or as ``preprocess.layout`` says).
    y : numpy.ndarray
        int64 labels.
    """
    if (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1):
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    for start in range(0, len(dataset), int(batch_size)):
        x = dataset.x[start : start + batch_size]
        y = dataset.y[start : start + batch_size]
        yield (preprocess.apply(x) if preprocess is not None else x), y
