"""Uniform family (seed 001, Table 4): code range, error bound, idempotence, sigma identities."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fxp.core.format import QFormat
from fxp.errors import FormatError
from fxp.quant import get
from fxp.quant.uniform import DeadZone, Midrise, Midtread, deadzone, midrise, midtread, pow2_step

FLOATS = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)
TENSORS = arrays(np.float64, st.integers(1, 40), elements=FLOATS).filter(
    lambda w: not 0 < np.abs(w).max() < 1e-290)  # tiny tensors raise: see test below
BITS = st.integers(2, 12)
STEPS = st.one_of(st.sampled_from([None, "max", "pow2"]),
                  st.floats(1e-3, 1e2, allow_nan=False, allow_infinity=False))
SIGMAS = st.sampled_from([0.0, 0.1, 0.25, 0.4, 0.5, 0.7, 1.0])


@settings(max_examples=150)
@given(TENSORS, BITS, STEPS)
def test_sigma_0_and_half_reproduce_midrise_and_midtread_exactly(w, bits, step) -> None:
    """deadzone(sigma=0) == midrise and deadzone(sigma=1/2) == midtread, codes and values, same Delta."""
    for dz, ref in ((DeadZone(0.0), Midrise()), (DeadZone(0.5), Midtread())):
        a, b = dz(w, bits, step=step), ref(w, bits, step=step)
        assert a.params["step"] == b.params["step"]
        np.testing.assert_array_equal(a.codes, b.codes)
        np.testing.assert_array_equal(a.values, b.values)


@settings(max_examples=150)
@given(TENSORS, BITS, STEPS, SIGMAS)
def test_codes_in_range_error_bounded_and_idempotent(w, bits, step, sigma) -> None:
    """|code| <= qmax; in range |X - X-hat| <= max(sigma, 1/2) Delta; apply(X-hat) changes nothing."""
    q = DeadZone(sigma)
    qt = q(w, bits, step=step)
    d, qmax = qt.params["step"], qt.params["qmax"]
    assert qt.codes.dtype == np.int64 and np.all(np.abs(qt.codes) <= qmax)
    inside = np.abs(w) <= qmax * d
    err = np.abs(w - qt.values)[inside]
    assert np.all(err <= max(sigma, 0.5) * d * (1 + 1e-12) + 1e-300)
    again = q.apply(qt.values, qt)
    np.testing.assert_array_equal(again.codes, qt.codes)
    np.testing.assert_array_equal(again.values, qt.values)


@given(TENSORS, BITS)
def test_midtread_and_midrise_error_half_step_with_default_step(w, bits) -> None:
    """Default Delta = max|W|/qmax covers every weight: error <= Delta/2 everywhere."""
    for q in (Midtread(), Midrise()):
        qt = q(w, bits)
        assert np.all(np.abs(w - qt.values) <= qt.params["step"] / 2 * (1 + 1e-12))


@given(TENSORS, BITS)
def test_pow2_step_midtread_is_a_fixed_point_tensor(w, bits) -> None:
    """With a power-of-two step, codes are codes of qt.fmt: values == codes * 2**-frac exactly."""
    qt = midtread(w, bits, step_mode="pow2")
    if np.max(np.abs(w)) == 0 or not 2.0 ** -1000 < qt.params["step"] < 2.0 ** 1000:
        return  # (steps beyond QFormat's int_bits range take the float path, fmt None)
    fmt = qt.fmt
    assert isinstance(fmt, QFormat) and fmt.bits == bits
    assert np.all((qt.codes >= fmt.min_code) & (qt.codes <= fmt.max_code))
    np.testing.assert_array_equal(qt.values, np.ldexp(qt.codes.astype(np.float64), -fmt.frac_bits))


def test_tie_rule_golden() -> None:
    """Ties |X|/Delta = k + 1/2 go toward zero; the dead zone includes |X| = sigma Delta."""
    w = np.array([0.25, 0.5, 0.75, -0.25, -0.75, 1.25])
    assert midtread(w, 4, step=0.5).codes.tolist() == [0, 1, 1, 0, -1, 2]
    assert midrise(w, 4, step=0.5).codes.tolist() == [1, 1, 2, -1, -2, 3]
    assert midrise([0.0, -0.0], 4, step=0.5).values.tolist() == [0.0, 0.0]
    q = deadzone([0.2, 0.21, -0.7], 0.4, 4, step=0.5)
    assert q.codes.tolist() == [0, 1, -1]
    np.testing.assert_allclose(q.values, [0.0, 0.45, -0.45])


def test_clipping_and_per_channel() -> None:
    w = np.array([[1.0, -0.5, 0.25], [10.0, 5.0, -2.5]])
    qt = midtread(w, 3, axis=0)
    assert qt.codes.tolist() == [[3, -1, 1], [3, 1, -1]]          # per-row step max/3, ties to 0
    np.testing.assert_allclose(qt.params["step"], [1 / 3, 10 / 3])
    assert midtread([5.0], 3, step=1.0).codes.tolist() == [3]      # clipped to qmax
    assert pow2_step(1.0, 3) == 0.5 and pow2_step(1.5, 3) == 0.5 and pow2_step(1.6, 3) == 1.0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"step": -1.0}, "step must be finite"), ({"step": "big"}, "step must be"),
])
def test_errors(kwargs, match) -> None:
    with pytest.raises(FormatError, match=match):
        midtread([1.0], 4, **kwargs)
    with pytest.raises(FormatError, match="sigma must lie"):
        DeadZone(1.5)
    with pytest.raises(FormatError, match="bits must be an integer in 2"):
        midtread([1.0], 1)
    with pytest.raises(FormatError, match="non-finite"):
        midtread([1.0, np.nan], 4)
    with pytest.raises(FormatError, match="sigma must be a number"):
        get("deadzone:abc")


def test_tiny_steps_are_refused():
    """A step below 2**-1000 would reconstruct into subnormal floats (not exact)."""
    with pytest.raises(FormatError, match="below 2\\*\\*-1000"):
        midrise(np.array([5e-324]), 2)
