"""Bad input to the number-system API: clear errors that name the value and the limit."""

from __future__ import annotations

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.errors import FormatError, FxpError, HeadroomError
from fxp.ops import fixed

F8 = QFormat(8, 4)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_quantize_rejects_non_finite(bad, backend):
    with pytest.raises(FormatError, match=r"non-finite value .* at flat index 2"):
        fixed.quantize([0.0, 1.0, bad], F8, backend=backend)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_cast_rejects_codes_outside_source(backend):
    with pytest.raises(FormatError, match=r"code 128 at flat index 1 is outside fixed<8,4>"):
        fixed.cast([1, 128], F8, QFormat(4, 2), backend=backend)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_shift_beyond_the_word(backend):
    with pytest.raises(FormatError, match="shift=65 is beyond the word: the limit is 64"):
        fixed.requantize_pow2([1], 65, F8, backend=backend)
    with pytest.raises(FormatError, match="shift=-1 must be >= 0"):
        fixed.requantize_pow2([1], -1, F8, backend=backend)
    with pytest.raises(FormatError, match="shift must be an integer"):
        fixed.requantize_pow2([1], 1.5, F8, backend=backend)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_multiplier_contract(backend):
    with pytest.raises(FormatError, match=r"multiplier=-1 must lie in \[0, 2\*\*31 - 1\]"):
        fixed.requantize_multiplier([1], -1, 0, F8, backend=backend)
    with pytest.raises(FormatError, match=r"exponent=31 must lie in \[-31, 30\]"):
        fixed.requantize_multiplier([1], 1 << 30, 31, F8, scheme="single", backend=backend)
    with pytest.raises(HeadroomError, match="value 2147483648 at flat index 0 does not fit int32"):
        fixed.requantize_multiplier([2**31], 1 << 30, 0, F8, backend=backend)
    with pytest.raises(FormatError, match="unknown multiplier scheme 'triple'"):
        fixed.requantize_multiplier([1], 1 << 30, 0, F8, scheme="triple", backend=backend)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), 1e60])
def test_float32_scale_must_be_positive_and_finite(scale, backend):
    with pytest.raises(FormatError, match="scale must be finite and > 0"):
        fixed.requantize_float32([1], scale, F8, backend=backend)


def test_dot_refuses_products_that_could_exceed_int64():
    with pytest.raises(HeadroomError, match="needs up to 65 bits"):
        fixed.dot([1], [1], QFormat.integer(33), QFormat.integer(32), QFormat.integer(64))


def test_dot_equals_python_ints():
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (5, 40))
    b = rng.integers(-128, 128, (5, 40))
    got, n = fixed.dot(a, b, QFormat.integer(8), QFormat.integer(8), QFormat.integer(32))
    want = [sum(int(x) * int(y) for x, y in zip(ra, rb, strict=True)) for ra, rb in zip(a, b, strict=True)]
    assert got.tolist() == want and n == 0


def test_unknown_backend_and_integer_input_checks():
    with pytest.raises(FormatError, match="backend must be one of"):
        fixed.cast([1], F8, F8, backend="cuda")
    with pytest.raises(FormatError, match="must be an integer array, got dtype float64"):
        fixed.cast(np.array([1.5]), F8, F8)
    with pytest.raises(HeadroomError, match="above int64 max"):
        fixed.accumulate(np.array([[2**63]], dtype=np.uint64), QFormat.integer(64))


def test_all_errors_share_one_base():
    for exc in (FormatError, HeadroomError):
        assert issubclass(exc, FxpError)
