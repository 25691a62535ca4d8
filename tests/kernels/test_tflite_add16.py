"""TFLite Micro int16 ADD (int16x8 models): Numba kernel == numpy spec == Python-int oracle.

The definition (TFLM ``micro/kernels/add_common.cc`` ``CalculateOpDataAdd`` with
``left_shift = 15``; ``micro/kernels/add.cc`` -> ``reference/add.h``
``AddGeneralParamScale`` -> ``AddElementwise``) is restated below with Python
ints: gemmlowp's ``MultiplyByQuantizedMultiplierSmallerThanOneExp`` transcribed
in :func:`tests.oracles_runtime.mbqm_double`, ``QuantizeMultiplier`` by frexp in
:func:`tests.oracles_qlinear.quantize_multiplier`.  300 hypothesis examples
with tie-prone scales, extreme int16 codes, every fused activation and both
rounding schemes.  The whole int16x8 model against the TFLM interpreter is
``tests/frontends/test_tflite_import.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import FormatError
from fxp.ops.tflite import tflite_add, tflite_add_params
from tests import oracles_qlinear as orc
from tests.oracles import mbqm_single
from tests.oracles_runtime import mbqm_double
from tests.strategies_qlinear import activations, related_scale, scales, schemes

N = 300
INT16 = QFormat.integer(16)
CODES = st.one_of(st.integers(-32768, 32767), st.sampled_from([-32768, -32767, -1, 0, 1, 32767]))


def _oracle_params(s1, s2, so, single: bool) -> list[int]:
    f1, f2, fo = float(np.float32(s1)), float(np.float32(s2)), float(np.float32(so))
    twice = 2.0 * max(f1, f2)
    return [v for r in (f1 / twice, f2 / twice, twice / (2.0 ** 15 * fo))
            for v in orc.quantize_multiplier(r, single)]


def _oracle_add(x: int, y: int, params, lo: int, hi: int, single: bool) -> tuple[int, int]:
    """``AddElementwise`` for one int16 pair, zero points 0: ``(code, 1 if clamped)``."""
    def mult(v, m, e):
        return mbqm_single(v, m, e)[0] if single else mbqm_double(v, m, e)

    m1, e1, m2, e2, mo, eo = params
    raw_sum = mult(x * (1 << 15), m1, e1) + mult(y * (1 << 15), m2, e2)
    assert -(1 << 31) <= raw_sum < (1 << 31)  # TFLite's int32 holds it (zero points 0)
    code, clamped = orc.fit(mult(raw_sum, mo, eo), lo, hi)
    return code, int(clamped)


@st.composite
def int16_add_cases(draw):
    n = draw(st.integers(1, 24))
    a = np.array(draw(st.lists(CODES, min_size=n, max_size=n)), np.int64)
    b = np.array(draw(st.lists(CODES, min_size=n, max_size=n)), np.int64)
    sa = draw(scales(-16, 0))
    sb = draw(related_scale(sa))
    so = draw(st.one_of(related_scale(max(sa, sb)), scales(-16, 0)))
    return a, b, sa, sb, so


@settings(max_examples=N)
@given(int16_add_cases(), activations(), schemes())
def test_tflite_add_int16_matches_oracle(case, activation, scheme):
    """int16 ADD: the six Prepare integers (left shift 15), then every element (two multiplier
    stages, the int32 sum, the output stage, the activation clamp) equals the oracle, and
    the Numba kernel equals the numpy spec, codes and event count."""
    a, b, sa, sb, so = case
    single = scheme == "single"
    want_params = _oracle_params(sa, sb, so, single)
    kw = {"a_scale": sa, "a_zero_point": 0, "b_scale": sb, "b_zero_point": 0, "y_scale": so,
          "y_zero_point": 0, "fmt": INT16, "activation": activation, "scheme": scheme}
    f1, f2, fo = (float(np.float32(v)) for v in (sa, sb, so))
    if 2.0 * max(f1, f2) / (2.0 ** 15 * fo) >= 1.0:  # add.cc Prepare refuses
        with pytest.raises(FormatError, match="must lie in"):
            tflite_add(a, b, **kw)
        return
    assert list(tflite_add_params(sa, sb, so, scheme=scheme, bits=16)) == want_params
    got = tflite_add(a, b, backend="numba", **kw)
    ref = tflite_add(a, b, backend="numpy", **kw)
    assert np.array_equal(got[0], ref[0]) and got[1] == ref[1]
    lo, hi = orc.tflite_activation(activation, so, 0, INT16.min_code, INT16.max_code)
    want = [_oracle_add(int(x), int(y), want_params, lo, hi, single)
            for x, y in zip(a, b, strict=True)]
    assert got[0].tolist() == [c for c, _ in want]
    assert got[1] == sum(n for _, n in want)


def test_tflite_add_int16_golden():
    """Equal scales 2**-10: M_i = 2**30 (1/2), M_out = 2**30 with shift -13
    (2**-9 / (2**15 * 2**-10) = 2**-14), so the output is a + b exactly, saturated at
    int16 (two clamp events); under the int8 left shift 20 the output shift differs."""
    s = np.float32(2.0 ** -10)
    kw = {"a_scale": s, "a_zero_point": 0, "b_scale": s, "b_zero_point": 0, "y_scale": s,
          "y_zero_point": 0, "fmt": INT16}
    assert tflite_add_params(s, s, s, bits=16) == (1 << 30, 0, 1 << 30, 0, 1 << 30, -13)
    assert tflite_add_params(s, s, s, bits=8)[5] == -18
    for backend in ("numba", "numpy"):
        codes, n = tflite_add(np.array([1, -5, 30000, -32768]), np.array([2, 3, 30000, -1]),
                              backend=backend, **kw)
        assert codes.tolist() == [3, -2, 32767, -32768] and n == 2


def test_tflite_add_int16_rounds_half_away():
    """b's scale is a quarter of a's: the input stages are exact (``a * 2**14``,
    ``b * 2**12``), the output stage (M_out = 2**30, shift -13) gives ``a + b / 4`` with
    ``RoundingDivideByPOT`` rounding ties away from zero (b = 2 -> 1, b = -2 -> -1,
    b = 6 -> 2) and quarters down (b = 1 -> 0)."""
    sa, sb = np.float32(2.0 ** -8), np.float32(2.0 ** -10)
    kw = {"a_scale": sa, "a_zero_point": 0, "b_scale": sb, "b_zero_point": 0, "y_scale": sa,
          "y_zero_point": 0, "fmt": INT16}
    p = tflite_add_params(sa, sb, sa, bits=16)
    assert p == (1 << 30, 0, 1 << 30, -2, 1 << 30, -13)
    codes, _ = tflite_add(np.array([0, 0, 0, 0, 100]), np.array([2, -2, 1, 6, 0]), **kw)
    assert codes.tolist() == [1, -1, 0, 2, 100]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"fmt": QFormat.integer(16, signed=False)}, r"16-bit ADD takes int16 codes"),
    ({"a_zero_point": 3}, r"zero points 0 for int16, got a_zero_point=3"),
    ({"y_zero_point": -1}, r"zero points 0 for int16, .*y_zero_point=-1"),
    ({"fmt": QFormat.integer(12)}, r"integer format of \(8, 16\) bits"),
])
def test_tflite_add_int16_refuses(kwargs, match):
    """Each refusal is one FormatError line naming the offending value."""
    kw = {"a_scale": 0.01, "a_zero_point": 0, "b_scale": 0.02, "b_zero_point": 0, "y_scale": 0.03,
          "y_zero_point": 0, "fmt": INT16} | kwargs
    with pytest.raises(FormatError, match=match) as info:
        tflite_add(np.zeros(3, np.int64), np.zeros(3, np.int64), **kw)
    assert "\n" not in str(info.value)


def test_tflite_add_params_refuses_bits():
    with pytest.raises(FormatError, match=r"bits must be 8 or 16, got 4"):
        tflite_add_params(0.1, 0.1, 0.1, bits=4)
