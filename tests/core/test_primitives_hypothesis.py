"""Property tests of every integer primitive up to 64 bits.

Each test draws formats first and values inside them, runs the numpy
specification *and* the Numba kernel, and requires both to equal the
Python-int / Fraction oracle in ``tests/oracles.py`` -- codes and counts.
2,000 examples per primitive per CI run, plus explicit ``@example`` edges:
INT_MIN/INT_MAX, +-0.5/+-1.5/+-2.5 ties and the published disagreement vectors
(correctness-anchors P3-P5).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.ops import fixed
from tests import oracles
from tests.strategies import OVERFLOW, ROUNDING, code_lists, formats, int32s

N = 2000
BACKENDS = ("numpy", "numba")
SEEDS = st.integers(0, 2**64 - 1)


def _u(rmode, seed, n, offset=0):
    if rmode != "stochastic":
        return [None] * n
    return [oracles.splitmix64(seed, offset + i) for i in range(n)]


@st.composite
def cast_cases(draw):
    src = draw(formats())
    dst = draw(formats())
    return src, dst, draw(code_lists(src)), draw(st.sampled_from(ROUNDING)), \
        draw(st.sampled_from(OVERFLOW)), draw(SEEDS)


@settings(max_examples=N)
@given(cast_cases())
@example((QFormat(64, 64), QFormat(64, 63), [-(2**63), 2**63 - 1, 0], "half_even", "wrap", 0))
@example((QFormat(64, 64), QFormat(8, 8), [-(2**63), 2**63 - 1], "half_away", "saturate", 0))
@example((QFormat(8, 7), QFormat(8, 8), [5, -5, 3, -3, 1, -1], "half_up", "saturate", 0))
@example((QFormat(8, 7), QFormat(8, 8), [5, -5, 3, -3, 1, -1], "half_to_zero", "wrap", 0))
@example((QFormat(64, 0), QFormat(8, 8), [-(2**63)], "half_even", "saturate", 0))  # s = 64 tie
@example((QFormat(63, 0, False), QFormat(2, 70), [2**63 - 1], "stochastic", "wrap", 7))
def test_cast(case):
    src, dst, codes, rmode, omode, seed = case
    ref = [oracles.cast(c, src, dst, rmode, omode, u)
           for c, u in zip(codes, _u(rmode, seed, len(codes)), strict=True)]
    for backend in BACKENDS:
        got, n = fixed.cast(codes, src, dst, rmode, omode, seed=seed, backend=backend)
        assert got.tolist() == [r[0] for r in ref], backend
        assert n == sum(r[1] for r in ref), backend


TIES = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5]


@st.composite
def quantize_cases(draw):
    fmt = draw(formats())
    scale = 2.0 ** fmt.frac_bits if -1000 < fmt.frac_bits < 1000 else 1.0
    elems = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(TIES).map(lambda t: t / scale),  # exact ties in this format
        st.integers(fmt.min_code - 3, fmt.max_code + 3).map(lambda c: float(c) / scale),
    )
    values = draw(st.lists(elems, min_size=1, max_size=8))
    return fmt, values, draw(st.sampled_from(ROUNDING)), draw(st.sampled_from(OVERFLOW)), draw(SEEDS)


@settings(max_examples=N)
@given(quantize_cases())
@example((QFormat(8, 8), TIES, "half_even", "saturate", 0))
@example((QFormat(8, 8), TIES, "half_up", "saturate", 0))
@example((QFormat(8, 8), TIES, "half_down", "saturate", 0))
@example((QFormat(8, 8), TIES, "half_away", "saturate", 0))
@example((QFormat(8, 8), TIES, "half_to_zero", "saturate", 0))
@example((QFormat(10, 4), [8.99], "floor", "wrap", 0))  # hls4ml PR #68: -7.015625
@example((QFormat(10, 4), [8.99], "to_zero", "saturate", 0))  # 7.984375
@example((QFormat(8, 1), [0.49999999999999994, -5e-324, 5e-324, 1e308], "half_up", "wrap", 0))
def test_quantize(case):
    fmt, values, rmode, omode, seed = case
    ref = [oracles.quantize(x, fmt, rmode, omode, u)
           for x, u in zip(values, _u(rmode, seed, len(values)), strict=True)]
    for backend in BACKENDS:
        got, n = fixed.quantize(values, fmt, rmode, omode, seed=seed, backend=backend)
        assert got.tolist() == [r[0] for r in ref], backend
        assert n == sum(r[1] for r in ref), backend


def test_quantize_hls4ml_wrap_example():
    """8.99 in ap_fixed<10,4> with AP_TRN/AP_WRAP is -7.015625 (hls4ml PR #68)."""
    f = QFormat(10, 4)
    codes, n = fixed.quantize([8.99], f, "AP_TRN", "AP_WRAP")
    assert float(fixed.dequantize(codes, f)[0]) == -7.015625 and n == 1
    codes, _ = fixed.quantize([8.99], f, "AP_TRN_ZERO", "AP_SAT")
    assert float(fixed.dequantize(codes, f)[0]) == 7.984375


@st.composite
def pow2_cases(draw):
    acc = draw(formats(frac_range=(0, 0)))
    out = draw(formats(frac_range=(0, 0)))
    return acc, out, draw(code_lists(acc)), draw(st.integers(0, 64)), \
        draw(st.sampled_from(ROUNDING)), draw(st.sampled_from(OVERFLOW)), draw(SEEDS)


@settings(max_examples=N)
@given(pow2_cases())
@example((QFormat.integer(64), QFormat.integer(8), [-(2**63), 2**63 - 1, -5, 5], 64, "half_even",
          "saturate", 0))
@example((QFormat.integer(32), QFormat.integer(8), [-10, 10, -6, 6], 2, "half_away", "saturate", 0))
def test_requantize_pow2(case):
    acc, out, codes, shift, rmode, omode, seed = case
    ref = []
    for c, u in zip(codes, _u(rmode, seed, len(codes)), strict=True):
        lo, hi = oracles.bounds(out, omode)
        v = oracles.round_fraction(Fraction(c, 2**shift), rmode, u)
        ref.append(oracles.fit(v, out.bits, out.signed, lo, hi, omode))
    for backend in BACKENDS:
        got, n = fixed.requantize_pow2(codes, shift, out, rmode, omode, seed=seed, backend=backend)
        assert got.tolist() == [r[0] for r in ref] and n == sum(r[1] for r in ref), backend


MULTIPLIERS = st.one_of(st.integers(1 << 30, (1 << 31) - 1), st.integers(0, (1 << 31) - 1),
                        st.sampled_from([0, 1, 1 << 30, (1 << 31) - 1, 1583594044, 1527099593]))


@settings(max_examples=N)
@given(st.lists(int32s(), min_size=1, max_size=8), MULTIPLIERS, st.integers(-31, 31),
       st.sampled_from(["double", "single"]), st.integers(-128, 127))
@example([7984], 1583594044, -9, "double", 0)  # TF #25087: 12
@example([7984], 1583594044, -9, "single", 0)  # 11
@example([-49], (1 << 30) + 1, -1, "double", 0)  # -13
@example([-49], (1 << 30) + 1, -1, "single", 0)  # -12
@example([-2], 1 << 30, -1, "double", 0)  # tie -0.5 -> -1
@example([-2], 1 << 30, -1, "single", 0)  # tie -0.5 -> 0
@example([-(2**31), 2**31 - 1], (1 << 31) - 1, 0, "double", 0)
@example([-(2**31), 2**31 - 1, 3], (1 << 31) - 1, 4, "double", 0)  # left shift wraps
def test_requantize_multiplier(xs, m, exponent, scheme, zp):
    if scheme == "single" and exponent > 30:
        exponent = 30
    out = QFormat.integer(8)
    ref = []
    for x in xs:
        y, o1 = (oracles.mbqm_double if scheme == "double" else oracles.mbqm_single)(x, m, exponent)
        v, o2 = oracles.fit(y + zp, 8, True, -128, 127, "saturate")
        ref.append((v, o1 + o2))
    for backend in BACKENDS:
        got, n = fixed.requantize_multiplier(xs, m, exponent, out, zero_point=zp, scheme=scheme,
                                             backend=backend)
        assert got.tolist() == [r[0] for r in ref] and n == sum(r[1] for r in ref), backend


def test_published_double_single_vectors():
    """correctness-anchors P4: the two TFLite conventions differ on these inputs."""
    d, _ = intmath.multiply_by_quantized_multiplier([7984, -49, -2], 1583594044, -9, "double")
    assert d.tolist()[0] == 12
    s, _ = intmath.multiply_by_quantized_multiplier([7984], 1583594044, -9, "single")
    assert s.tolist() == [11]
    d, _ = intmath.multiply_by_quantized_multiplier([-49], (1 << 30) + 1, -1, "double")
    s, _ = intmath.multiply_by_quantized_multiplier([-49], (1 << 30) + 1, -1, "single")
    assert d.tolist() == [-13] and s.tolist() == [-12]
    # the exact tie -0.5: double rounds away (-1), single toward +inf (0)
    d, _ = intmath.multiply_by_quantized_multiplier([-2], 1 << 30, -1, "double")
    s, _ = intmath.multiply_by_quantized_multiplier([-2], 1 << 30, -1, "single")
    assert d.tolist() == [-1] and s.tolist() == [0]


@settings(max_examples=N)
@given(int32s(), int32s(), st.integers(0, 31))
@example(3, 1 << 30, 1)
@example(-3, 1 << 30, 1)
@example(-(2**31), -(2**31), 0)
@example(-5, 0, 1)
@example(-2, 0, 2)
def test_srdhm_and_rdbpot(a, b, e):
    assert intmath.saturating_rounding_doubling_high_mul([a], [b]).tolist() == [oracles.srdhm(a, b)]
    assert intmath.rounding_divide_by_pot([a], e).tolist() == [oracles.rdbpot(a, e)]


def test_srdhm_published_values():
    """P3: SRDHM ties go toward +inf; RDBPOT ties away from zero."""
    f = intmath.saturating_rounding_doubling_high_mul
    assert f([3, -3, -(2**31)], [1 << 30, 1 << 30, -(2**31)]).tolist() == [2, -1, 2**31 - 1]
    assert intmath.rounding_divide_by_pot([-5, 5], 1).tolist() == [-3, 3]
    assert intmath.rounding_divide_by_pot([-2], 2).tolist() == [-1]


F32_SCALES = st.floats(float(np.float32(1e-6)), 4.0, allow_nan=False, width=32)


@settings(max_examples=N)
@given(st.lists(st.one_of(int32s(), st.integers(-(2**26), 2**26)), min_size=1, max_size=8),
       F32_SCALES, st.integers(-128, 127), st.sampled_from([QFormat.integer(8),
       QFormat.integer(8, False), QFormat.integer(16)]))
@example([585], float(np.float32(0.05296124517917633) * np.float32(0.024093778803944588)
                      / np.float32(0.11484327912330627)), -126, QFormat.integer(8))
@example([16777217, -16777217, 1, -1, 3, -3], 0.5, 0, QFormat.integer(16))
def test_requantize_float32(accs, scale, zp, out):
    zp = min(max(zp, out.min_code), out.max_code)
    ref = [oracles.requant_float32(a, scale, zp, out.min_code, out.max_code) for a in accs]
    for backend in BACKENDS:
        got, n = fixed.requantize_float32(accs, scale, out, zero_point=zp, backend=backend)
        assert got.tolist() == [r[0] for r in ref] and n == sum(r[1] for r in ref), backend


def test_float32_requant_reproduces_tf_102943():
    """P5: float32 requantization gives -120 where both integer variants give -119."""
    s = (np.float32(0.05296124517917633) * np.float32(0.024093778803944588)
         / np.float32(0.11484327912330627))
    got, _ = fixed.requantize_float32([585], s, QFormat.integer(8), zero_point=-126)
    assert got.tolist() == [-120]
    m, e = intmath.quantize_multiplier(0.05296124517917633 * 0.024093778803944588
                                       / 0.11484327912330627)
    assert m == 1527099593
    for scheme in ("double", "single"):
        got, _ = fixed.requantize_multiplier([585], m, e, QFormat.integer(8), zero_point=-126,
                                             scheme=scheme)
        assert got.tolist() == [-119]


@st.composite
def accumulate_cases(draw):
    acc = draw(formats(frac_range=(0, 0)))
    pfmt = draw(formats(frac_range=(0, 0), max_bits=62))
    rows = draw(st.integers(1, 3))
    k = draw(st.integers(1, 10))
    prods = [[draw(st.integers(pfmt.min_code, pfmt.max_code)) for _ in range(k)] for _ in range(rows)]
    return acc, prods, draw(st.sampled_from(OVERFLOW))


@settings(max_examples=N)
@given(accumulate_cases())
@example((QFormat.integer(3), [[3, 3, -3], [-3, 3, 3]], "saturate"))
@example((QFormat.integer(64), [[2**62, 2**62, 2**62, -(2**62)]], "saturate"))
@example((QFormat.integer(64), [[2**62, 2**62, 2**62, -(2**62)]], "wrap"))
def test_accumulate(case):
    acc, prods, omode = case
    lo, hi = oracles.bounds(acc, omode)
    ref = [oracles.accumulate(row, acc.bits, acc.signed, lo, hi, omode) for row in prods]
    for backend in BACKENDS:
        got, n = fixed.accumulate(prods, acc, omode, backend=backend)
        assert got.tolist() == [r[0] for r in ref] and n == sum(r[1] for r in ref), backend


def test_saturating_accumulation_order_matters():
    """P8: [3,3,-3] gives 0 and [-3,3,3] gives 3 in a 3-bit saturating accumulator."""
    got, n = fixed.accumulate([[3, 3, -3], [-3, 3, 3]], QFormat.integer(3), "saturate")
    assert got.tolist() == [0, 3] and n == 1
    got, _ = fixed.accumulate([[3, 3, -3], [-3, 3, 3]], QFormat.integer(3), "wrap")
    assert got.tolist() == [3, 3]


@settings(max_examples=N)
@given(st.floats(2.0**-40, 2.0**40, allow_nan=False))
@example(1.0)
@example(0.5)
@example(0.0003)
@example(2.0**-32)
def test_quantize_multiplier_is_within_half_an_lsb(scale):
    """scale == M * 2**(e-31) within half a multiplier LSB; M in [2**30, 2**31)."""
    m, e = intmath.quantize_multiplier(scale)
    if e == 0 and m == 0:
        assert scale < 2.0**-31
        return
    assert (1 << 30) <= m < (1 << 31)
    err = abs(Fraction(m) * Fraction(2) ** (e - 31) - Fraction(scale))
    assert err <= Fraction(2) ** (e - 32)


def test_quantize_multiplier_edges():
    assert intmath.quantize_multiplier(2.0**-40) == (0, 0)
    assert intmath.quantize_multiplier(2.0**40) == (1 << 30, 41)
    assert intmath.quantize_multiplier(2.0**40, single_rounding=True) == ((1 << 31) - 1, 30)
    assert intmath.quantize_multiplier(1 - 2.0**-40) == (1 << 30, 1)  # rounds up to 2**31
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite and > 0"):
            intmath.quantize_multiplier(bad)
