"""IDX reader/writer: round trips and clear errors on bad files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fxp.data.idx import IDX_DTYPES, decode_idx, encode_idx, read_idx, write_idx
from fxp.errors import DataError


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("suffix", [".idx", ".gz"])
def test_round_trip_every_dtype(tmp_path, dtype, suffix):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    p = write_idx(tmp_path / f"a{suffix}", a)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    b = read_idx(p)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_header_layout_is_big_endian():
    blob = encode_idx(np.array([1, 256], dtype=np.int32))
    assert blob == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 0])


def test_gzip_detected_by_content_not_name(tmp_path):
    p = tmp_path / "labels.bin"
    p.write_bytes(gzip.compress(encode_idx(np.array([3, 1, 4], np.uint8))))
    assert read_idx(p).tolist() == [3, 1, 4]


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(st.sampled_from([np.uint8, np.int16, np.float32]),
                  hnp.array_shapes(min_dims=1, max_dims=4, max_side=5)))
def test_encode_decode_inverse(a):
    b = decode_idx(encode_idx(a))
    np.testing.assert_array_equal(a, b)


def _bad(tmp_path, blob, name="bad.idx"):
    p = tmp_path / name
    p.write_bytes(blob)
    with pytest.raises(DataError) as err:
        read_idx(p)
    assert str(p) in str(err.value)
    return str(err.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="not found") as err:
        read_idx(tmp_path / "nope.gz")
    assert "nope.gz" in str(err.value)


def test_bad_magic(tmp_path):
    assert "magic" in _bad(tmp_path, b"\x01\x02\x08\x01" + b"\0" * 8)


def test_unknown_type_code(tmp_path):
    assert "type code 0x07" in _bad(tmp_path, bytes([0, 0, 7, 1, 0, 0, 0, 1, 5]))


def test_too_short(tmp_path):
    assert "4-byte header" in _bad(tmp_path, b"\0\0")


def test_truncated_header(tmp_path):
    assert "truncated IDX header" in _bad(tmp_path, bytes([0, 0, 8, 3, 0, 0, 0, 2]))


def test_truncated_data(tmp_path):
    blob = encode_idx(np.zeros((4, 3, 3), np.uint8))
    msg = _bad(tmp_path, blob[:-5])
    assert "truncated IDX data" in msg and "(4, 3, 3)" in msg


def test_trailing_bytes(tmp_path):
    assert "trailing" in _bad(tmp_path, encode_idx(np.zeros(3, np.uint8)) + b"xx")


def test_truncated_gzip(tmp_path):
    blob = gzip.compress(encode_idx(np.arange(1000, dtype=np.int32)))
    assert "gzip" in _bad(tmp_path, blob[: len(blob) // 2], name="t.gz")


def test_zero_dims_rejected(tmp_path):
    assert "dimensions" in _bad(tmp_path, bytes([0, 0, 8, 0]))


def test_encode_rejects_unsupported_dtype():
    with pytest.raises(DataError, match="no IDX type code"):
        encode_idx(np.zeros(2, np.complex64))
    assert set(IDX_DTYPES) == {0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E}
