"""Dataset validation, limits and batch iteration."""

from __future__ import annotations

import numpy as np
import pytest

from fxp.data import Dataset, Preprocess, default_preprocess, iter_batches
from fxp.errors import DataError


def make(n=7, c=1, h=4, w=4, classes=3, **kw):
    x = np.arange(n * c * h * w, dtype=np.float64).reshape(n, c, h, w) % 256
    return Dataset(x, np.arange(n) % classes, name="toy", num_classes=classes, **kw)


def test_converts_and_freezes():
    ds = make()
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert len(ds) == 7 and ds.image_shape == (1, 4, 4)
    with pytest.raises(ValueError):
        ds.x[0, 0, 0, 0] = 1.0
    with pytest.raises(AttributeError):
        ds.name = "other"  # type: ignore[misc]


def test_integral_float_labels_accepted():
    ds = Dataset(np.zeros((2, 1, 2, 2)), np.array([0.0, 1.0]), name="f", num_classes=2)
    assert ds.y.tolist() == [0, 1]


@pytest.mark.parametrize("x, y, classes, match", [
    (np.zeros((3, 4, 4)), np.zeros(3, int), 2, "NCHW"),
    (np.zeros((3, 1, 4, 4)), np.zeros((3, 1), int), 2, "1-D"),
    (np.zeros((3, 1, 4, 4)), np.zeros(2, int), 2, "3 images but 2 labels"),
    (np.zeros((0, 1, 4, 4)), np.zeros(0, int), 2, "empty"),
    (np.zeros((2, 1, 0, 4)), np.zeros(2, int), 2, "empty dimension"),
    (np.zeros((2, 1, 4, 4)), np.array([0, 2]), 2, r"label 2 at index 1 is out of range \[0, 2\)"),
    (np.zeros((2, 1, 4, 4)), np.array([-1, 0]), 2, "label -1 at index 0"),
    (np.zeros((2, 1, 4, 4)), np.array([0.5, 1.0]), 2, "integers"),
    (np.zeros((2, 1, 4, 4)), np.zeros(2, int), 0, "num_classes"),
    (np.array(["a", "b"]).reshape(2, 1, 1, 1), np.zeros(2, int), 2, "real numbers"),
])
def test_validation_errors(x, y, classes, match):
    with pytest.raises(DataError, match=match):
        Dataset(x, y, name="bad", num_classes=classes)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels(bad):
    x = np.zeros((3, 1, 2, 2))
    x[2, 0, 1, 1] = bad
    with pytest.raises(DataError, match="NaN/Inf pixel values .first in image 2"):
        Dataset(x, np.zeros(3, int), name="nan", num_classes=1)


def test_pixel_max_validated():
    with pytest.raises(DataError, match="pixel_max"):
        make(pixel_max=0.0)
    assert default_preprocess(make(pixel_max=16.0)).scale == 1 / 16


def test_head():
    ds = make()
    assert ds.head(None) is ds and ds.head(100) is ds
    h = ds.head(3)
    assert len(h) == 3 and h.y.tolist() == [0, 1, 2] and "first 3" in h.source
    for bad in (0, -1, 1.5, True):
        with pytest.raises(DataError, match="limit"):
            ds.head(bad)


def test_batches_cover_everything_in_order():
    ds = make(n=7)
    got = list(iter_batches(ds, 3))
    assert [len(y) for _, y in got] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), ds.x)
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), ds.y)


def test_batches_apply_preprocess():
    ds = make(n=4)
    pre = Preprocess(scale=1 / 255, mean=0.5, std=0.25, layout="NHWC")
    (x, _), = list(ds.batches(10, preprocess=pre))
    np.testing.assert_allclose(x, pre.apply(ds.x))
    assert x.shape == (4, 4, 4, 1)


@pytest.mark.parametrize("bad", [0, -2, 2.0, None])
def test_bad_batch_size(bad):
    with pytest.raises(DataError, match="batch_size"):
        next(iter_batches(make(), bad))
