"""Power-of-two (INQ), ternary (TWN, Hwang & Sung) and binary weights."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fxp.errors import FormatError
from fxp.quant import get
from fxp.quant.pow2 import INQ_SCHEDULE, Pow2, inq_partition, inq_step, pow2, pow2_shifts
from fxp.quant.ternary import HwangSung, binary, hwang_sung, twn

TENSORS = arrays(np.float64, st.integers(1, 40),
                 elements=st.floats(-100, 100, allow_nan=False, allow_infinity=False))


@given(TENSORS, st.integers(1, 8), st.sampled_from(["ceil", "floor"]))
def test_pow2_outputs_are_powers_of_two_in_range(w, bits, rule) -> None:
    """Every output is 0 or +-2**n with n2 <= n <= n1; n1, n2 follow eq. 1-2; codes fit."""
    qt = Pow2(rule)(w, bits)
    n1, n2 = qt.params["n1"], qt.params["n2"]
    m = float(np.max(np.abs(w)))
    if m > 0 and rule == "ceil":   # n1 = ceil(log2(4/3 max|W|)), checked in exact rationals
        x = Fraction(4, 3) * Fraction(m)
        assert Fraction(2) ** (n1 - 1) < x <= Fraction(2) ** n1
    assert n2 == n1 + 1 - 2 ** (bits - 1)
    nz = qt.values[qt.values != 0]
    f, e = np.frexp(np.abs(nz))
    assert np.all(f == 0.5) and np.all((e - 1 >= n2) & (e - 1 <= n1))
    assert np.all(np.abs(qt.codes) <= 2 ** (bits - 1))
    np.testing.assert_array_equal(np.sign(qt.values), np.sign(qt.codes))
    again = Pow2(rule).apply(qt.values, qt)
    np.testing.assert_array_equal(again.codes, qt.codes)
    s, sh = pow2_shifts(qt)
    np.testing.assert_array_equal(s * np.ldexp(1.0, -sh), qt.values)


def test_pow2_nearest_power_and_midpoint_tie() -> None:
    """0.75 * 2**n (the midpoint of 2**(n-1) and 2**n) goes up; just below goes down."""
    below = math.nextafter(0.75, 0)
    qt = pow2([0.75, below, -1.4999, 1.5, 2.0], bits=4)
    assert qt.params["n1"] == 2 and qt.params["n2"] == -5
    assert qt.values.tolist() == [1.0, 0.5, -1.0, 2.0, 2.0]
    assert pow2([3.0 * 2 ** -10, 1.0], bits=2).values.tolist() == [0.0, 1.0]
    assert pow2([0.9], bits=2, n1_rule="floor").params["n1"] == 0


def test_inq_partition_nested_counts() -> None:
    w = np.array([0.1, -0.9, 0.5, 0.5, -0.05, 0.3, 0.7, -0.2])
    masks = [inq_partition(w, f) for f in INQ_SCHEDULE]
    assert [int(m.sum()) for m in masks] == [4, 6, 7, 8]
    assert all(np.all(a <= b) for a, b in zip(masks, masks[1:], strict=False))
    assert masks[0].tolist() == [False, True, True, True, False, False, True, False]
    w2, m = inq_step(w, 0.5, 3)
    np.testing.assert_array_equal(w2[~m], w[~m])
    assert set(np.abs(w2[m]).tolist()) <= {1.0, 0.5, 0.25, 0.125, 0.0}
    with pytest.raises(FormatError, match="fraction must lie"):
        inq_partition(w, 1.5)


def test_twn_golden_and_ternary_codes() -> None:
    """Delta = 0.7 mean|W|, |w| = Delta -> 0, alpha = mean of kept |w|."""
    w = np.array([1.0, -1.0, 0.35, 0.0, -0.1])      # mean|w| = 0.49, Delta = 0.343
    qt = twn(w)
    assert qt.codes.tolist() == [1, -1, 1, 0, 0]
    assert qt.params["alpha"] == pytest.approx(2.35 / 3)
    assert twn([0.7, -1.3]).codes.tolist() == [0, -1]      # mean 1, Delta = 0.7 = |w|: dropped
    assert twn(np.zeros(3)).params["alpha"] == 0.0


@given(TENSORS, st.integers(2, 5))
def test_hwang_sung_refinement_never_worse_than_grid(w, bits) -> None:
    """The least-squares refinement ends at a local optimum no worse than the best grid step."""
    qt = hwang_sung(w, bits)
    lmax = 2 ** (bits - 1) - 1
    assert np.all(np.abs(qt.codes) <= lmax)
    sse = float(np.sum((w - qt.values) ** 2))
    m = np.max(np.abs(w))
    if m > 0:
        grid = 2 * m / lmax * np.arange(1, 201) / 200
        best = min(float(np.sum((w - HwangSung().decode(
            HwangSung().encode(w, {"step": d, "qmax": lmax}), {"step": d}) ) ** 2)) for d in grid)
        assert sse <= best + 1e-12 * float(np.sum(w * w))
    again = HwangSung().apply(qt.values, qt)
    np.testing.assert_array_equal(again.codes, qt.codes)


def test_binary_sign_zero_is_plus_one_and_alpha_mean_abs() -> None:
    qt = binary([[0.5, 0.0, -1.5], [2.0, -2.0, 0.0]], axis=0)
    assert qt.codes.tolist() == [[1, 1, -1], [1, -1, 1]]
    np.testing.assert_allclose(qt.params["alpha"], [2 / 3, 4 / 3])
    assert get("binary").fixed_bits == 1 and get("ternary").fixed_bits == 2
