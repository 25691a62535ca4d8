"""``assert_bit_exact``: passes on identical codes, and a failure says where, what and why."""

from __future__ import annotations

import numpy as np
import pytest

from fxp import QFormat
from fxp.testing import assert_bit_exact


def _message(*args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        assert_bit_exact(*args, **kwargs)
    return str(info.value)


def test_identical_codes_pass_in_any_container():
    assert_bit_exact([[1, -2], [3, 4]], np.array([[1, -2], [3, 4]], np.int8))
    assert_bit_exact(np.arange(5, dtype=np.uint64), list(range(5)))
    assert_bit_exact([1 << 70, -(1 << 70)], np.array([1 << 70, -(1 << 70)], dtype=object))
    assert_bit_exact(7, np.int64(7))
    assert_bit_exact(np.array([1.0, -2.0]), [1, -2])  # integral floats are accepted
    assert_bit_exact(np.zeros((0, 3), np.int64), [[]] * 0 or np.zeros((0, 3), np.int32))


def test_report_names_the_first_difference_count_formats_and_inputs():
    fmt = QFormat(8, 3)
    expected = np.array([[1, 2, 3], [4, -3, 6]])
    actual = np.array([[1, 2, 3], [4, -2, 7]])
    text = _message(expected, actual, fmt=fmt, what="conv",
                    inputs={"acc": np.array([[10, 20, 30], [40, -97, 60]]), "shift": 5,
                            "table": [1, 2, 3]})
    assert text.splitlines() == [
        "conv: 2 of 6 elements differ; first at index (1, 1):",
        "  expected: -3 (0xfd) = -0.09375 in fixed<8,3>",
        "  actual:   -2 (0xfe) = -0.0625 in fixed<8,3>",
        "  inputs at (1, 1): acc=-97 (0x9f), shift=5 (0x05), table=[1, 2, 3]",
        "  next differences: (1, 2): 6 != 7",
    ]


def test_hex_follows_the_format_width_and_flags_codes_outside_it():
    text = _message([-1], [40000], fmt=QFormat(12, 12))
    assert "expected: -1 (0xfff) = -1.0 in fixed<12,12>" in text
    assert "actual:   40000 (0x9c40) -- outside fixed<12,12> [-2048, 2047]" in text
    # two formats: expected in one, actual in the other
    text = _message([5], [6], fmt=(QFormat(8, 8), QFormat(16, 8)))
    assert "expected: 5 (0x05) = 5.0 in fixed<8,8>" in text
    assert "actual:   6 (0x0006) = 0.0234375 in fixed<16,8>" in text
    # no format: the narrowest of 8/16/32/64 bits that holds both codes
    text = _message([-(1 << 20)], [3])
    assert "expected: -1048576 (0xfff00000)" in text and "actual:   3 (0x00000003)" in text


def test_big_integers_and_callable_inputs():
    text = _message([1 << 70, 0], [1 << 70, 1],
                    inputs=lambda idx: {"window": [[idx[0], 9]], "n": len(idx)})
    assert "1 of 2 elements differ; first at index (1,)" in text
    assert "inputs at (1,): window=[[1, 9]], n=1 (0x01)" in text


def test_many_differences_are_summarised():
    text = _message(np.zeros(100, np.int64), np.ones(100, np.int64))
    assert text.startswith("100 of 100 elements differ; first at index (0,)")
    assert text.endswith("(4,): 0 != 1 ...")


def test_shape_and_type_problems_are_reported():
    assert "shapes differ: expected (2, 2), actual (4,)" in _message([[1, 2], [3, 4]],
                                                                     [1, 2, 3, 4])
    assert "actual holds a non-integer value 0.5 at index (1,)" in _message([1, 2], [1.0, 0.5])
    assert "expected holds 'a' (str) at index (0,)" in _message(np.array(["a"], dtype=object),
                                                                [1])
    assert "not an array of integer codes" in _message(["x"], [1])
