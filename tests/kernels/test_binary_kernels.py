"""Binary XNOR-popcount kernels: packed == unpacked +-1 integers == float64, exactly.

Invariants, on every example:

* pack/unpack round-trips; word ``c // 64`` bit ``c % 64`` is set iff element
  ``c`` is -1 (bit 0 = +1); tail bits are 0;
* ``binary_conv2d_int`` equals the Python-int +-1 convolution
  (:func:`tests.oracles_binary.conv2d_pm1`) and a float64 convolution on the
  same +-1 data, for every padding convention (0, +1, -1), strides,
  dilations, asymmetric pads, channel counts around word boundaries
  (1, 31, 32, 33, 63, 64, 65, 130), with exact zeros in the pre-sign input
  (``sign(0) = +1``); K per position equals the oracle's count and
  ``|dot| <= K``, ``dot = K mod 2``;
* ``binary_dense_int`` equals the +-1 dot product; the parallel build equals
  the serial one.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fxp.errors import FormatError
from fxp.kernels import binary as kb
from fxp.ops import binary as ob
from fxp.quant.binary import binarize
from tests import oracles_binary as ref

WORD_EDGES = [1, 31, 32, 33, 63, 64, 65, 130]
CHANNELS = st.one_of(st.sampled_from(WORD_EDGES), st.integers(1, 130))
PADS = (0, 1, -1)


PRESIGN = np.array([-2.5, -1.0, -0.0, 0.0, 0.5, 3.0])


def _presign(draw, shape) -> np.ndarray:
    """Real pre-sign values with exact zeros (and -0.0): a drawn seed and zero share.

    Seeded numpy draws keep large tensors cheap to generate; hypothesis still
    chooses (and shrinks) the seed, the share of zeros and the shapes.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    p_zero = draw(st.sampled_from([0.0, 0.2, 0.5, 1.0]))
    rng = np.random.default_rng(seed)
    vals = rng.choice(PRESIGN, size=shape)
    return np.where(rng.random(shape) < p_zero, rng.choice([0.0, -0.0], size=shape), vals)


@st.composite
def conv_cases(draw):
    c = draw(CHANNELS)
    big = c > 33
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    span_h, span_w = (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1
    top = 1 if big else 2
    h = draw(st.integers(max(1, span_h - pads[0] - pads[2]), span_h + top))
    w_ = draw(st.integers(max(1, span_w - pads[1] - pads[3]), span_w + top))
    n, co = (1 if big else draw(st.integers(1, 2))), draw(st.integers(1, 3))
    x = _presign(draw, (n, c, h, w_))
    w = _presign(draw, (co, c, kh, kw))
    return x, w, draw(st.sampled_from(PADS)), strides, pads, dil


@settings(max_examples=450)
@given(conv_cases())
@example((np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), 0, (1, 1), (1, 1, 1, 1), (1, 1)))
@example((np.zeros((1, 130, 2, 2)), -np.ones((2, 130, 3, 3)), -1, (1, 1), (1, 1, 1, 1), (1, 1)))
def test_conv_equals_pm1_reference_and_float64(case):
    """popcount conv == Python-int +-1 conv == float64 conv; K matches; parity holds."""
    x_real, w_real, pad_value, strides, pads, dil = case
    x, w = binarize(x_real), binarize(w_real)
    assert np.all(x[x_real == 0] == 1)  # sign(0) = +1, also -0.0
    dot, kmap = ob.binary_conv2d_int(x, w, pad_value=pad_value, strides=strides, pads=pads,
                                     dilations=dil)
    want, want_k = ref.conv2d_pm1(x.tolist(), w.tolist(), pad_value, strides, pads, dil)
    assert dot.dtype == np.int64
    assert dot.tolist() == want
    assert kmap.tolist() == want_k
    f64 = ref.conv2d_float64(np.where(x_real >= 0, 1, -1), np.where(w_real >= 0, 1, -1),
                             pad_value, strides, pads, dil)
    assert np.array_equal(dot, f64.astype(np.int64)) and np.array_equal(dot, f64)
    assert np.all(np.abs(dot) <= kmap) and np.all((dot - kmap) % 2 == 0)
    # pre-packed operands give the same integers
    again, _ = ob.binary_conv2d_int(ob.pack_conv_input(x), ob.pack_conv_weights(w),
                                    pad_value=pad_value, strides=strides, pads=pads,
                                    dilations=dil)
    assert np.array_equal(again, dot)


@settings(max_examples=250)
@given(st.data())
@example(None)
def test_dense_equals_pm1_reference(data):
    """popcount dense == Python-int dot == float64 matmul; K = In."""
    if data is None:  # channel tail: 65 features, one bit in the second word
        x_real, w_real = -np.ones((2, 65)), np.ones((3, 65))
    else:
        n_in = data.draw(CHANNELS | st.integers(131, 300))
        n, out = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
        x_real = _presign(data.draw, (n, n_in))
        w_real = _presign(data.draw, (out, n_in))
    x, w = binarize(x_real), binarize(w_real)
    dot, k = ob.binary_dense_int(x, w)
    assert k == x.shape[1]
    assert dot.tolist() == ref.dense_pm1(x.tolist(), w.tolist())
    assert np.array_equal(dot, (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int64))


@settings(max_examples=150)
@given(st.data())
def test_pack_roundtrip_and_bit_convention(data):
    """unpack(pack(x)) == x; bit c%64 of word c//64 is 1 iff -1; tail bits 0."""
    c = data.draw(CHANNELS)
    rows = data.draw(st.integers(1, 3))
    x = binarize(_presign(data.draw, (rows, c)))
    p = ob.pack_bits(x)
    assert p.words.shape == (rows, -(-c // 64)) and p.words.dtype == np.uint64
    assert [[int(v) for v in r] for r in p.words] == [ref.pack_row(r) for r in x.tolist()]
    assert np.array_equal(ob.unpack_bits(p), x)
    if c % 64:
        assert np.all(p.words[:, -1] >> np.uint64(c % 64) == 0)


@settings(max_examples=150)
@given(st.integers(0, (1 << 64) - 1))
@example(0)
@example((1 << 64) - 1)
@example(1 << 63)
def test_popcount_intrinsic_and_swar(v):
    """POPCNT intrinsic == SWAR bit trick == Python's bin count."""
    u = np.uint64(v)
    assert kb.popcount(u) == kb.popcount_swar(u) == bin(v).count("1")


def test_p15_corner_example():
    """3x3 all-+1 kernel over all-+1 input, pad 1: corner 4 (zero pad), 9 (+1), -1 (-1)."""
    x, w = np.ones((1, 1, 3, 3), np.int64), np.ones((1, 1, 3, 3), np.int64)
    got = {pv: ob.binary_conv2d_int(x, w, pad_value=pv, pads=(1, 1, 1, 1))[0][0, 0]
           for pv in PADS}
    assert got[0].tolist() == [[4, 6, 4], [6, 9, 6], [4, 6, 4]]
    assert got[1].tolist() == [[9] * 3] * 3  # a naive bit-0 padding gives this: wrong for 0
    assert got[-1].tolist() == [[-1, 3, -1], [3, 9, 3], [-1, 3, -1]]


@pytest.mark.parametrize("c", [64, 130])
def test_parallel_build_equals_serial(c):
    rng = np.random.default_rng(c)
    x = np.where(rng.random((2, c, 9, 7)) < 0.5, -1, 1)
    w = np.where(rng.random((5, c, 3, 3)) < 0.5, -1, 1)
    xp, wp = ob.pack_conv_input(x), ob.pack_conv_weights(w)
    for pv in PADS:
        pad_words = np.zeros(wp.words.shape[-1], np.uint64)
        if pv == -1:
            pad_words[:] = np.uint64((1 << 64) - 1)
            pad_words[-1] = np.uint64((1 << (c % 64 or 64)) - 1)
        args = (xp.words, wp.words, c, pv, pad_words, 2, 1, 1, 2, 1, 2, 5, 7)
        serial = kb.binary_conv2d_dot.serial(*args)
        assert np.array_equal(kb.binary_conv2d_dot.parallel(*args), serial)
        want, _ = ob.binary_conv2d_int(x, w, pad_value=pv, strides=(2, 1), pads=(1, 2, 1, 2),
                                       dilations=(1, 2))
        assert np.array_equal(serial, want)
    xd = ob.pack_bits(x.reshape(2, -1))
    wd = ob.pack_bits(np.where(rng.random((7, xd.n_bits)) < 0.5, -1, 1))
    d = kb.binary_dense_dot.parallel(xd.words, wd.words, xd.n_bits)
    assert np.array_equal(d, kb.binary_dense_dot.serial(xd.words, wd.words, xd.n_bits))
    assert np.array_equal(d, x.reshape(2, -1) @ ob.unpack_bits(wd).T.astype(np.int64))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"pad_value": 2}, "pad_value must be 0"),
    ({"pad_value": True}, "pad_value must be 0"),
    ({"pad_value": 0.0}, "pad_value must be 0"),
    ({"pad_value": None}, "pad_value must be 0"),
])
def test_conv_rejects_bad_pad_value(kwargs, match):
    one = np.ones((1, 1, 3, 3), np.int64)
    with pytest.raises(FormatError, match=match):
        ob.binary_conv2d_int(one, one, **kwargs)


def test_pad_value_is_required():
    one = np.ones((1, 1, 3, 3), np.int64)
    with pytest.raises(TypeError, match="pad_value"):
        ob.binary_conv2d_int(one, one)


def test_rejects_non_pm1_inputs_and_mismatches():
    one = np.ones((1, 2, 3, 3), np.int64)
    with pytest.raises(FormatError, match="only -1 and \\+1, got 0"):
        ob.binary_conv2d_int(one * 0, one, pad_value=0)
    with pytest.raises(FormatError, match="integer array of \\+-1"):
        ob.binary_conv2d_int(one.astype(float), one, pad_value=0)
    with pytest.raises(FormatError, match="x has 2 channels but w expects 1"):
        ob.binary_conv2d_int(one, one[:, :1], pad_value=0)
    with pytest.raises(FormatError, match="does not fit"):
        ob.binary_conv2d_int(one[:, :, :2, :2], one, pad_value=0)
    with pytest.raises(FormatError, match="4 dimensions"):
        ob.binary_conv2d_int(one[0], one, pad_value=0)
    with pytest.raises(FormatError, match="x has 3 features but w expects 2"):
        ob.binary_dense_int(np.ones((1, 3), np.int64), np.ones((1, 2), np.int64))
    with pytest.raises(FormatError, match="expected 'nhwc'"):
        ob.binary_conv2d_int(ob.pack_conv_weights(one), one, pad_value=0)
    with pytest.raises(FormatError, match="packed words must be uint64"):
        ob.unpack_bits(ob.PackedBits(np.zeros((1, 2), np.uint64), 3))
    with pytest.raises(FormatError, match="at least one axis"):
        ob.pack_bits(np.int64(1))
