"""Numba number-system kernels: parallel == serial == numpy spec on large arrays,
and stochastic rounding is reproducible and unbiased."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.kernels._jit import PARALLEL_MIN_ELEMENTS
from fxp.ops import fixed
from tests.strategies import OVERFLOW, ROUNDING

N_BIG = PARALLEL_MIN_ELEMENTS + 12345


@pytest.fixture(scope="module")
def big_codes():
    rng = np.random.default_rng(20261123)
    return rng.integers(-(2**40), 2**40, N_BIG)


@pytest.mark.parametrize("rmode", ROUNDING)
@pytest.mark.parametrize("omode", OVERFLOW)
def test_parallel_cast_equals_spec(big_codes, rmode, omode):
    """Above the parallel threshold the kernel runs threaded; it must equal the spec."""
    src, dst = QFormat(42, 12), QFormat(12, 2)
    got = fixed.cast(big_codes, src, dst, rmode, omode, seed=11)
    want = intmath.cast(big_codes, src, dst, rmode, omode, seed=11)
    assert np.array_equal(got[0], want[0]) and got[1] == want[1]


@pytest.mark.parametrize("rmode", ["half_even", "stochastic", "floor"])
def test_parallel_quantize_equals_spec(rmode):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(N_BIG) * 3.0
    fmt = QFormat(8, 3)
    got = fixed.quantize(x, fmt, rmode, "saturate", seed=3)
    want = intmath.quantize(x, fmt, rmode, "saturate", seed=3)
    assert np.array_equal(got[0], want[0]) and got[1] == want[1]


def test_parallel_multiplier_and_float32_requant_equal_spec():
    rng = np.random.default_rng(6)
    acc = rng.integers(-(2**31), 2**31, N_BIG)
    out = QFormat.integer(8)
    for scheme in ("double", "single"):
        got = fixed.requantize_multiplier(acc, 1583594044, -9, out, zero_point=3, scheme=scheme)
        want = intmath.requantize_multiplier(acc, 1583594044, -9, out, zero_point=3, scheme=scheme)
        assert np.array_equal(got[0], want[0]) and got[1] == want[1]
    got = fixed.requantize_float32(acc, 1.3e-7, out, zero_point=-5)
    want = intmath.requantize_float32(acc, 1.3e-7, out, zero_point=-5)
    assert np.array_equal(got[0], want[0]) and got[1] == want[1]


def test_parallel_accumulate_equals_spec():
    rng = np.random.default_rng(7)
    p = rng.integers(-(2**14), 2**14, (PARALLEL_MIN_ELEMENTS // 8 + 7, 9))
    for omode in OVERFLOW:
        got = fixed.accumulate(p, QFormat.integer(16), omode)
        want = intmath.accumulate(p, QFormat.integer(16), omode)
        assert np.array_equal(got[0], want[0]) and got[1] == want[1]


_THREADS_SCRIPT = """
import numpy as np, numba, sys
numba.set_num_threads(int(sys.argv[1]))
from fxp.ops import fixed
from fxp import QFormat
x = np.random.default_rng(1).standard_normal(200000)
c, n = fixed.quantize(x, QFormat(6, 2), "stochastic", "saturate", seed=99)
print(int(np.bitwise_xor.reduce(c * np.arange(1, c.size + 1))), n)
"""


def test_stochastic_result_does_not_depend_on_thread_count():
    outs = {subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(t)], check=True,
                           capture_output=True, text=True).stdout for t in (1, 2)}
    assert len(outs) == 1, outs


def test_stochastic_rounding_is_seeded_and_offset_consistent():
    x = np.arange(-500, 500)
    a, _ = fixed.requantize_pow2(x, 3, QFormat.integer(16), "stochastic", seed=1)
    b, _ = fixed.requantize_pow2(x, 3, QFormat.integer(16), "stochastic", seed=1)
    c, _ = fixed.requantize_pow2(x, 3, QFormat.integer(16), "stochastic", seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # processing in two batches with index_offset gives the same codes as one call
    h1, _ = fixed.requantize_pow2(x[:300], 3, QFormat.integer(16), "stochastic", seed=1)
    h2, _ = fixed.requantize_pow2(x[300:], 3, QFormat.integer(16), "stochastic", seed=1,
                                  index_offset=300)
    assert np.array_equal(np.concatenate([h1, h2]), a)
    lo, hi = np.floor(x / 8), np.ceil(x / 8)
    assert np.all((a == lo) | (a == hi))
    assert np.array_equal(a[x % 8 == 0], x[x % 8 == 0] // 8)  # exact values never move


@pytest.mark.parametrize(("num", "shift"), [(5, 3), (1, 4), (-3, 2), (7, 3), (1, 1)])
def test_stochastic_rounding_is_unbiased(num, shift):
    """P(round up) = discarded fraction: binomial test at 6 sigma over 50,000 draws."""
    n = 50_000
    got, _ = fixed.requantize_pow2(np.full(n, num), shift, QFormat.integer(16), "stochastic",
                                   seed=12345)
    p = (num % (1 << shift)) / (1 << shift)
    ups = int(np.count_nonzero(got == (num >> shift) + 1))
    assert abs(ups - n * p) <= 6 * math.sqrt(n * p * (1 - p)) + 1


def test_stochastic_needs_a_seed():
    with pytest.raises(ValueError, match="explicit integer seed"):
        fixed.quantize([0.3], QFormat(8, 4), "stochastic")
    with pytest.raises(ValueError, match="explicit integer seed"):
        fixed.cast([3], QFormat(8, 4), QFormat(8, 6), "stochastic", backend="numpy")
