"""Data sets for calibration and evaluation, loaded from one spec string.

>>> from fxp.data import parse_spec
>>> parse_spec("npz:calib.npz")
('npz', ('calib.npz',))

Typical use::

    ds = load_dataset("mnist5k", limit=512)
    pre = read_model_preprocess("models/mnist_cnn/mnist_cnn.onnx")
    for x, y in ds.batches(256, preprocess=pre):
        ...
"""

from __future__ import annotations

from fxp.data.dataset import Dataset, iter_batches
from fxp.data.idx import read_idx, write_idx
from fxp.data.preprocess import METADATA_PREFIX, Preprocess, read_model_preprocess
from fxp.data.spec import DATASET_NAMES, SPEC_HELP, load_dataset, parse_spec

__all__ = [
    "DATASET_NAMES",
    "METADATA_PREFIX",
    "SPEC_HELP",
    "Dataset",
    "Preprocess",
    "default_preprocess",
    "iter_batches",
    "load_dataset",
    "parse_spec",
    "read_idx",
    "read_model_preprocess",
    "write_idx",
]


def default_preprocess(dataset: Dataset) -> Preprocess:
    """Scale raw pixels to ``[0, 1]`` (``scale = 1 / dataset.pixel_max``), no mean/std."""
    return Preprocess(scale=1.0 / dataset.pixel_max)
