"""mu-law and minifloats: cells, idempotence, and half == numpy float16 bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fxp.errors import FormatError
from fxp.quant import get
from fxp.quant.companding import MuLaw
from fxp.quant.minifloat import Minifloat, auto_split, get_preset

FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
SMALL = arrays(np.float64, st.integers(1, 30),
               elements=st.floats(-10, 10, allow_nan=False, allow_infinity=False))
HALF_EDGES = [65504.0, 65519.99, 65520.0, 1e300, -0.0, 2.0 ** -25, 2.0 ** -25 * 1.0000001,
              3 * 2.0 ** -26, 2.0 ** -24, 2.0 ** -14 - 2.0 ** -25, 1 + 2.0 ** -11,
              1 + 3 * 2.0 ** -11, 5e-324, -65520.0, 2049.0, 2051.0]


@settings(max_examples=400)
@given(FINITE)
@example(65520.0)
@example(2.0 ** -25)
@example(1 + 2.0 ** -11)
def test_half_equals_numpy_float16(x) -> None:
    """minifloat:half == np.float16: the value (sign of zero included) and the bit pattern."""
    qt = get("minifloat:half")(np.array([x]))
    with np.errstate(over="ignore"):
        ref = np.array([x]).astype(np.float16)
    assert int(qt.codes[0]) == int(ref.view(np.uint16)[0])
    got, want = float(qt.values[0]), float(ref[0])
    assert got == want and math.copysign(1, got) == math.copysign(1, want)


def test_half_edges_vectorised() -> None:
    w = np.array(HALF_EDGES)
    qt = get("minifloat:half")(w)
    with np.errstate(over="ignore"):
        ref = w.astype(np.float16)
    np.testing.assert_array_equal(qt.codes, ref.view(np.uint16))
    np.testing.assert_array_equal(qt.values, ref.astype(np.float64))


def test_ocp_fp8_presets() -> None:
    """OCP FP8: E4M3 max 448 (saturating, S.1111.111 NaN), min subnormal 2**-9; E5M2 max 57344."""
    e4 = get("minifloat:e4m3")
    q = e4(np.array([448.0, 464.0, 1e6, -500.0, 2.0 ** -9, 2.0 ** -10, 0.3]))
    assert q.values.tolist() == [448.0, 448.0, 448.0, -448.0, 2.0 ** -9, 0.0, 0.3125]
    assert q.codes.tolist()[:2] == [0x7E, 0x7E] and q.codes[3] == 0xFE
    assert np.isnan(e4.decode(np.array([0x7F]), e4.fit(np.ones(1), 8)))[0]
    assert len(q.codebook) == 253    # 2 * 126 nonzero finite magnitudes + 0 (-0 == 0)
    e5 = get("minifloat:e5m2")
    q = e5(np.array([57344.0, 61439.0, 61440.0, 2.0 ** -16]))
    assert q.values.tolist() == [57344.0, 57344.0, math.inf, 2.0 ** -16]
    assert q.codes.tolist()[2] == 0x7C
    with pytest.raises(FormatError, match="no infinities"):
        Minifloat(4, 3, ieee=False, overflow="inf")


@given(SMALL, st.integers(3, 16))
def test_scaled_minifloat_in_format_and_idempotent(w, bits) -> None:
    """Width-generic minifloat: codes are (1+p+q)-bit patterns, finite, and apply(X-hat) is X-hat."""
    q = get("minifloat")
    qt = q(w, bits)
    assert np.all((qt.codes >= 0) & (qt.codes < (1 << bits)))
    assert np.all(np.isfinite(qt.values))
    m = np.max(np.abs(w))
    if m > 0:   # relative error at most half a mantissa ulp for normal values
        p, mq = auto_split(bits)
        big = np.abs(w) >= m * 2.0 ** (2 - (1 << (p - 1)))
        assert np.all(np.abs(w - qt.values)[big] <= np.abs(w)[big] * 2.0 ** -(mq + 1) * (1 + 1e-12))
    again = q.apply(qt.values, qt)
    np.testing.assert_array_equal(again.codes, qt.codes)


@given(SMALL, st.integers(2, 12), st.sampled_from([4.0, 255.0, 2.0 ** 16, 2.0 ** 24]))
def test_mulaw_cells_and_idempotence(w, bits, mu) -> None:
    """|code| <= qmax; x lies in its code's companded cell; apply(X-hat) changes nothing."""
    q = MuLaw(mu)
    qt = q(w, bits)
    p = qt.params
    assert np.all(np.abs(qt.codes) <= p["qmax"])
    y = np.log1p(mu * np.abs(w) / p["xmax"]) / math.log1p(mu) * p["qmax"]
    assert np.all(np.abs(y - np.abs(qt.codes)) <= 0.5 + 1e-9)
    again = q.apply(qt.values, qt)
    np.testing.assert_array_equal(again.codes, qt.codes)


def test_mulaw_errors_and_specs() -> None:
    assert get("mulaw:2^8").mu == 256.0 and get("mulaw").mu == 255.0
    with pytest.raises(FormatError, match="mu must lie"):
        get("mulaw:2")
    with pytest.raises(FormatError, match="unknown minifloat"):
        get("minifloat:e4m3x")
    with pytest.raises(FormatError, match="fixed width of 16 bits"):
        get_preset("half")([1.0], 8)


@settings(max_examples=200)
@given(st.floats(allow_nan=False, allow_infinity=False, width=32),
       st.floats(allow_nan=False, allow_infinity=False, width=16))
def test_bf16_and_e5m2_equal_bit_truncation_with_rne(x32, x16) -> None:
    """bf16 of a float32 and e5m2 of a float16 are their top bits rounded to nearest even."""
    u = int(np.array([x32], np.float32).view(np.uint32)[0])
    want = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    assert int(get("minifloat:bf16")(np.array([x32], np.float64)).codes[0]) == want
    h = int(np.array([x16], np.float16).view(np.uint16)[0])
    want = ((h + 0x7F + ((h >> 8) & 1)) >> 8) & 0xFF
    assert int(get("minifloat:e5m2")(np.array([x16], np.float64)).codes[0]) == want


def test_no_subnormals_rounds_to_zero_or_min_normal() -> None:
    """Without subnormals |x| < 2**emin goes to the nearer of 0 and 2**emin, ties to 0."""
    q = Minifloat(5, 10, bias=15, subnormals=False, overflow="inf")
    t = 2.0 ** -14
    assert q(np.array([t * 0.5, t * 0.51, t * 0.49, -t * 0.9])).values.tolist() == \
        [0.0, t, 0.0, -t]
