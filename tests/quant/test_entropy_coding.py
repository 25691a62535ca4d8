"""Canonical Huffman and stdlib coders over quantized codes (seed 001: real compressed sizes)."""

from __future__ import annotations

import lzma
import zlib

import numpy as np
import pytest

from fxp.errors import FormatError
from fxp.quant.entropy import entropy_bits
from fxp.quant.entropy_coding import (
    code_bytes,
    huffman_decode,
    huffman_encode,
    huffman_lengths,
    stdlib_sizes,
)


def _laplace_codes(n=5000, scale=2.0, seed=0):
    return np.round(np.random.default_rng(seed).laplace(0, scale, n)).astype(np.int64)


def test_dyadic_histogram_gets_its_optimal_lengths():
    # p = 1/2, 1/4, 1/8, 1/8: the optimal prefix code has lengths -log2 p exactly
    assert huffman_lengths({5: 8, -3: 4, 0: 2, 7: 2}) == {5: 1, -3: 2, 0: 3, 7: 3}


def test_lengths_satisfy_kraft_with_equality():
    c = _laplace_codes()
    s, n = np.unique(c, return_counts=True)
    ln = huffman_lengths(dict(zip(s.tolist(), n.tolist())))
    assert sum(2.0 ** -v for v in ln.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roundtrip_and_size_between_entropy_and_entropy_plus_one(seed):
    c = _laplace_codes(seed=seed)
    stream = huffman_encode(c)
    assert np.array_equal(huffman_decode(stream), c)
    k = len(np.unique(c))
    payload_bits = 8 * (len(stream) - 8 - 5 * k)
    h = entropy_bits(c)
    assert c.size * h <= payload_bits < c.size * (h + 1) + 8


def test_constant_tensor_costs_one_bit_per_weight():
    c = np.zeros(80, np.int64)
    stream = huffman_encode(c)
    assert len(stream) == 8 + 5 + 10
    assert np.array_equal(huffman_decode(stream), c)


def test_code_bytes_picks_the_narrowest_type_and_stdlib_sizes_are_real_streams():
    assert len(code_bytes([-128, 127])) == 2
    assert len(code_bytes([-129, 0])) == 4
    assert len(code_bytes([1 << 20])) == 4
    c = _laplace_codes()
    raw = code_bytes(c)
    assert np.array_equal(np.frombuffer(raw, np.int8), c)
    s = stdlib_sizes(c)
    assert s["raw"] == c.size
    assert s["zlib"] == len(zlib.compress(raw, 9)) and s["lzma"] == len(lzma.compress(raw, preset=9))
    # no coder beats the zeroth-order bound by much on i.i.d. codes (a few bytes of slack)
    assert min(s["zlib"], s["lzma"]) * 8 >= 0.98 * c.size * entropy_bits(c)


def test_bad_inputs_raise_one_line_format_errors():
    with pytest.raises(FormatError, match="non-empty integer"):
        huffman_encode(np.array([0.5, 1.0]))
    with pytest.raises(FormatError, match="non-empty integer"):
        huffman_encode(np.array([], np.int64))
    with pytest.raises(FormatError, match="int32"):
        huffman_encode([1 << 40])
    with pytest.raises(FormatError, match="truncated"):
        huffman_decode(b"\x01")
    with pytest.raises(FormatError, match="header says"):
        huffman_decode(huffman_encode([0, 1, 2, 3])[:-1])
    with pytest.raises(FormatError, match="> 0"):
        huffman_lengths({0: 0, 1: 3})
