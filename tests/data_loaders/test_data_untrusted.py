"""Data files from untrusted sources: npz and IDX contents, sizes, limits (issue 24).

Every bad file is one DataError naming the file and the array; nothing is
unpickled; and a file that inflates to far more than ``--limit`` needs is read
only as far as the limit (checked with tracemalloc against the array size).
"""

from __future__ import annotations

import gzip
import tracemalloc
import zipfile

import numpy as np
import pytest

from fxp.data import load_dataset, npz
from fxp.data.idx import encode_idx, read_idx
from fxp.errors import DataError

X = np.arange(4 * 16, dtype=np.uint8).reshape(4, 1, 4, 4)
Y = np.array([0, 1, 2, 1])


def _save(tmp_path, **arrays):
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    return p


def _load(p, **kw):
    return load_dataset(f"npz:{p}", **kw)


# 26 bad npz contents: each one DataError (a traceback before the fix), naming the file and array
BAD_NPZ = [
    ({"x": X.astype(object), "y": Y}, "array 'x': dtype '|O' is not allowed"),
    ({"x": X.astype(str), "y": Y}, "array 'x': dtype '<U3' is not allowed"),
    ({"x": X.astype(np.complex64), "y": Y}, "array 'x': dtype '<c8' is not allowed"),
    ({"x": X.astype("datetime64[s]"), "y": Y}, "array 'x': dtype '<M8[s]' is not allowed"),
    ({"x": np.zeros(4, [("a", "f4")]), "y": Y}, "array 'x': dtype"),
    ({"x": X, "y": Y.astype(object)}, "array 'y': dtype '|O' is not allowed"),
    ({"x": X, "y": Y.astype(str)}, "array 'y': dtype '<U21' is not allowed"),
    ({"x": X, "y": Y.astype(np.complex128)}, "array 'y': dtype '<c16' is not allowed"),
    ({"x": X, "y": Y.astype(bool)}, "array 'y': dtype '|b1' is not allowed"),
    ({"x": X.reshape(-1), "y": Y}, "array 'x': has shape (64,) (1-D); images must be"),
    ({"x": np.float32(3), "y": Y}, "array 'x': has shape () (0-D)"),
    ({"x": X[None, None], "y": Y}, "(6-D); images must be"),
    ({"x": X, "y": np.zeros((4, 2), int)}, "array 'y' must be [N] or [N, 1] labels"),
    ({"x": X, "y": np.zeros((4, 1, 1), int)}, "array 'y': has shape (4, 1, 1) (3-D)"),
    ({"x": X, "y": Y[:3]}, "4 images but 3 labels"),
    ({"y": Y}, "lacks array(s) ['x']"),
    ({"x": X}, "lacks array(s) ['y']"),
    ({"x": X.astype(np.float32) * np.array([1, np.nan, 1, 1], np.float32)[:, None, None, None],
      "y": Y}, "array 'x' holds NaN/Inf pixel values (first in image 1"),
    ({"x": np.full((4, 1, 4, 4), np.inf), "y": Y}, "NaN/Inf pixel values (first in image 0"),
    ({"x": X, "y": np.array([0, 1, np.nan, 1])}, "array 'y' holds label nan at index 2"),
    ({"x": X, "y": np.array([0, 1.5, 2, 1])}, "array 'y' holds label 1.5 at index 1"),
    ({"x": X, "y": Y, "num_classes": [3, 4]}, "array 'num_classes' must hold one number"),
    ({"x": X, "y": Y, "num_classes": 2.5}, "array 'num_classes' must be a whole number"),
    ({"x": X, "y": Y, "num_classes": 0}, "array 'num_classes' must be a whole number"),
    ({"x": X, "y": Y, "pixel_max": np.nan}, "array 'pixel_max' must be a finite number > 0"),
    ({"x": np.zeros((4, 0)), "y": Y}, "flat images of 0 pixels are not square"),
]


@pytest.mark.parametrize(("arrays", "needle"), BAD_NPZ, ids=[str(i) for i in range(len(BAD_NPZ))])
def test_bad_npz_contents_are_one_data_error(tmp_path, arrays, needle):
    p = _save(tmp_path, **arrays)
    with pytest.raises(DataError) as err:
        _load(p)
    msg = str(err.value)
    assert needle in msg and str(p) in msg and "\n" not in msg


def test_object_arrays_are_never_unpickled(tmp_path, monkeypatch):
    """allow_pickle is never on: the pickle inside an object member is not even opened."""
    import pickle

    p = _save(tmp_path, x=X.astype(object), y=Y)
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    with pytest.raises(DataError, match="dtype '|O' is not allowed"):
        _load(p)


def test_good_npz_still_loads_and_limit_reads_a_prefix(tmp_path):
    p = _save(tmp_path, x=X, y=Y, num_classes=5, pixel_max=200.0, extra=np.zeros(3))
    ds = _load(p)
    np.testing.assert_array_equal(ds.x, X.astype(np.float32))
    assert ds.num_classes == 5 and ds.pixel_max == 200.0
    head = _load(p, limit=2)
    np.testing.assert_array_equal(head.x, X[:2].astype(np.float32))
    np.testing.assert_array_equal(head.y, Y[:2])
    big_endian = _save(tmp_path, x=X.astype(">f4"), y=Y.astype(">i8"))
    np.testing.assert_array_equal(_load(big_endian).y, Y)


def test_npz_header_that_lies_about_its_size(tmp_path):
    """A member whose header declares more (or less) data than it holds is refused."""
    good = _save(tmp_path, x=X, y=Y)
    with zipfile.ZipFile(good) as z:
        blob = z.read("x.npy")
    lying = blob.replace(b"(4, 1, 4, 4)", b"(9, 1, 4, 4)")
    p = tmp_path / "lie.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", lying)
        z.writestr("y.npy", zipfile.ZipFile(good).read("y.npy"))
    with pytest.raises(DataError, match=r"array 'x': header declares shape \(9, 1, 4, 4\)"):
        _load(p)


def test_unrelated_huge_member_is_never_read(tmp_path):
    p = tmp_path / "d.npz"
    np.savez_compressed(p, x=X, y=Y, junk=np.zeros(20_000_000, np.uint8))
    tracemalloc.start()
    try:
        ds = _load(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(ds) == 4 and peak < 5_000_000


def test_npz_limit_decompresses_only_the_prefix(tmp_path):
    """Regression: a member inflating to 39 MB was read whole before --limit applied."""
    n = 50_000
    p = tmp_path / "big.npz"
    np.savez_compressed(p, x=np.zeros((n, 1, 28, 28), np.uint8), y=np.zeros(n, np.int64))
    assert p.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        ds = _load(p, limit=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(ds) == 3 and ds.x.shape == (3, 1, 28, 28)
    assert peak < 2_000_000, peak  # the whole x is 39 MB


def test_npz_size_cap(tmp_path, monkeypatch):
    p = _save(tmp_path, x=np.zeros((100, 1, 8, 8), np.uint8), y=np.zeros(100, int))
    monkeypatch.setattr(npz, "MAX_ARRAY_BYTES", 6000)
    with pytest.raises(DataError, match=r"array 'x': 6,400 elements \(shape \(100, 1, 8, 8\)\) "
                                        r"take 50.0 KiB as float64, more than the 5.9 KiB cap"):
        _load(p)
    assert len(_load(p, limit=10)) == 10  # 640 elements x 8 bytes fit the cap


# ----------------------------------------------------------------------------- IDX
def _gz(tmp_path, array, name="a.gz"):
    p = tmp_path / name
    p.write_bytes(gzip.compress(encode_idx(array)))
    return p


def test_gzip_idx_limit_streams_only_the_prefix(tmp_path):
    """Regression: a gzip IDX inflating to 47 MB was read whole before --limit applied."""
    a = np.zeros((60_000, 28, 28), np.uint8)
    a[:5] = np.arange(5, dtype=np.uint8)[:, None, None]
    p = _gz(tmp_path, a)
    tracemalloc.start()
    try:
        head = read_idx(p, limit=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(head, a[:5])
    assert peak < 2_000_000, peak


def test_idx_pair_limit_and_declared_counts(tmp_path):
    ip = _gz(tmp_path, np.arange(6 * 9, dtype=np.uint8).reshape(6, 3, 3), "i.gz")
    lp = _gz(tmp_path, np.array([0, 1, 2, 0, 1, 2], np.uint8), "l.gz")
    ds = load_dataset(f"idx:{ip},{lp}", limit=4)
    assert len(ds) == 4 and ds.y.tolist() == [0, 1, 2, 0]
    short = _gz(tmp_path, np.array([0, 1, 2, 0, 1], np.uint8), "s.gz")
    with pytest.raises(DataError, match="has 6 images but .* has 5 labels"):
        load_dataset(f"idx:{ip},{short}", limit=2)  # declared counts, not the prefix


def test_raw_idx_declared_size_is_checked_against_the_file(tmp_path):
    """A raw IDX header claiming 4 billion rows is refused from the file size, unread."""
    p = tmp_path / "huge.idx"
    p.write_bytes(bytes([0, 0, 8, 2]) + (2**32 - 1).to_bytes(4, "big") + (784).to_bytes(4, "big")
                  + b"\0" * 100)
    with pytest.raises(DataError, match="truncated IDX data: shape .4294967295, 784."):
        read_idx(p)


def test_gzip_idx_cap_and_lying_header(tmp_path, monkeypatch):
    p = tmp_path / "lie.gz"
    p.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + (10**8).to_bytes(4, "big") + b"\0" * 10))
    with pytest.raises(DataError, match=r"100,000,000 elements .* take 762.9 MiB as float64, "
                                        r"more than the 1.0 MiB cap"):
        monkeypatch.setattr(npz, "MAX_ARRAY_BYTES", 2**20)
        read_idx(p)
    monkeypatch.undo()
    with pytest.raises(DataError, match="truncated IDX data"):
        read_idx(p)  # under the cap: 10 bytes where 100 million were declared
    assert read_idx(p, limit=4).tolist() == [0, 0, 0, 0]


def test_gzip_trailing_bytes_are_not_inflated(tmp_path):
    p = tmp_path / "t.gz"
    p.write_bytes(gzip.compress(encode_idx(np.zeros(3, np.uint8)) + b"\0" * 10_000_000))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="unexpected trailing bytes"):
            read_idx(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


# ----------------------------------------------------------------------------- model classes
def test_labels_must_fit_the_model(tmp_path):
    """Regression: y >= number of logits (or y < 0) ran with top-1 0.0 instead of failing."""
    from fxp import workflow as fw
    from fxp.ir.graph import Graph
    from fxp.ir.nodes import Dense, Flatten

    g = Graph(nodes=(Flatten(name="fl", inputs=("x",), outputs=("f",)),
                     Dense(name="fc", inputs=("f",), outputs=("y",),
                           weight=np.ones((3, 16), np.float32), bias=None)),
              inputs=("x",), input_shapes={"x": (None, 1, 4, 4)}, outputs=("y",))
    assert fw.num_classes(g) == 3
    p = _save(tmp_path, x=X, y=np.array([0, 2, 3, 1]))
    with pytest.raises(DataError, match=r"label 3 at index 2 is outside the model's 3 classes"):
        fw.load_data(f"npz:{p}", g)
    assert len(fw.load_data(f"npz:{p}", g, limit=2).y) == 2  # the bad label is not read
    from fxp.plan.ptq import ptq_pow2
    from fxp.sim.evaluate import simulate

    x = X.astype(np.float32) / 255
    plan = ptq_pow2(g, x)
    with pytest.raises(DataError, match=r"label -1 at index 1 is outside"):
        simulate(g, plan, x, np.array([0, -1, 2, 1]))
