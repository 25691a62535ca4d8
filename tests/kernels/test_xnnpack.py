"""XNNPACK's qs8 ADD, MEAN and clamp bounds: Numba == numpy spec == Fraction oracle.

The oracle (``tests/oracles_runtime.py``) emulates every float32 operation of
XNNPACK's C code exactly with ``Fraction`` (one round-to-nearest-even per
operation) and does the integer part with Python ints.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.errors import FormatError, PlanError
from fxp.kernels import spec_xnnpack as spec
from fxp.ops.xnnpack import xnnpack_act_bounds, xnnpack_add, xnnpack_add_params, xnnpack_mean_hw
from tests import oracles_runtime as O

N = 300
codes = st.integers(-128, 127)
scales = st.floats(2.0 ** -12, 2.0 ** 2, width=32)


@st.composite
def _add_cases(draw):
    sa, sb = draw(scales), draw(scales)
    lo = max(float(sa), float(sb)) / 2.0 ** 7.5  # keep both ratios inside [2**-10, 2**8)
    hi = min(float(sa), float(sb)) * 2.0 ** 9.5
    sy = float(np.float32(draw(st.floats(lo, hi))))
    n = draw(st.integers(1, 12))
    a = [draw(codes) for _ in range(n)]
    b = [draw(codes) for _ in range(n)]
    return a, b, sa, draw(codes), sb, draw(codes), sy, draw(codes)


@settings(max_examples=N)
@given(_add_cases())
def test_add_matches_oracle(case):
    """Element by element, the ADD equals the oracle; Numba equals the numpy spec."""
    a, b, sa, za, sb, zb, sy, zy = case
    kw = {"a_scale": sa, "a_zero_point": za, "b_scale": sb, "b_zero_point": zb, "y_scale": sy,
              "y_zero_point": zy}
    try:
        spec.add_params(np.float32(sa), za, np.float32(sb), zb, np.float32(sy))
    except ValueError:  # float32 division put a ratio just outside the range
        with pytest.raises(FormatError, match=r"outside XNNPACK's \[2\*\*-10, 2\*\*8\)"):
            xnnpack_add(np.array(a), np.array(b), **kw)
        return
    got = xnnpack_add(np.array(a), np.array(b), **kw)
    assert np.array_equal(got, xnnpack_add(np.array(a), np.array(b), backend="numpy", **kw))
    want = [O.xnnpack_add(x, y, sa, za, sb, zb, sy, zy) for x, y in zip(a, b, strict=True)]
    assert got.tolist() == want


def test_add_hand_case_and_refusal():
    """Ratios 0.5 and 0.25: shift 21, multipliers 2**20 and 2**19, bias 2**20 (the
    rounding): 10*0.5 + 4*0.25 = 6, -3*0.5 + 1 = -0.5 -> 0 (ties toward +inf)."""
    assert xnnpack_add_params(0.5, 0, 0.25, 0, 1.0) == (1 << 20, 1 << 20, 1 << 19, 21)
    got = xnnpack_add(np.array([10, -3]), np.array([4, 4]), a_scale=0.5, a_zero_point=0,
                      b_scale=0.25, b_zero_point=0, y_scale=1.0, y_zero_point=0)
    assert got.tolist() == [6, 0]
    assert xnnpack_add_params(1.0, 0, 1.0, 0, 1024.0)[3] == 30  # ratio 2**-10: accepted
    with pytest.raises(FormatError, match=r"xnnpack_add: scale ratio 0\.00048828125 is outside"):
        xnnpack_add_params(1.0, 0, 1.0, 0, 2048.0)
    with pytest.raises(FormatError, match=r"one shape"):
        xnnpack_add(np.zeros(2, np.int64), np.zeros(3, np.int64), a_scale=1, a_zero_point=0,
                    b_scale=1, b_zero_point=0, y_scale=1, y_zero_point=0)


@st.composite
def _mean_cases(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    x = np.array([[[[draw(codes) for _ in range(w)] for _ in range(h)]
                   for _ in range(draw(st.integers(1, 3)))]])
    return x, draw(scales), draw(codes), draw(scales), draw(codes)


@settings(max_examples=N)
@given(_mean_cases())
def test_mean_matches_oracle(case):
    """Per channel, the MEAN over H and W equals the oracle; Numba equals the numpy spec."""
    x, sx, zx, sy, zy = case
    kw = {"x_scale": sx, "x_zero_point": zx, "y_scale": sy, "y_zero_point": zy}
    got = xnnpack_mean_hw(x, **kw)
    assert np.array_equal(got, xnnpack_mean_hw(x, backend="numpy", **kw))
    want = [O.xnnpack_mean(x[0, c].ravel().tolist(), sx, zx, sy, zy) for c in range(x.shape[1])]
    assert got.ravel().tolist() == want


@settings(max_examples=N)
@given(st.floats(-20.0, 20.0, width=32), scales, codes)
def test_clamp_bound_matches_oracle(value, scale, zp):
    """``xnn_qs8_quantize``: ``lrintf(clamp(f32(f32(v / s) + zp), -128, 127))``."""
    want = O.round_even(max(Fraction(-128), min(Fraction(127), O.f32(
        O.f32(Fraction(value) / Fraction(scale)) + zp))))
    assert spec.quantize_bound(value, scale, zp) == want


def test_act_bounds_of_nodes():
    """ReLU -> (zero point, 127); RELU6 -> XNNPACK's rounding of 6/s + zp; no activation ->
    None; a non-int8 output is refused."""
    from fxp.core.format import QFormat
    from fxp.ir.nodes import Clip, ReLU
    from fxp.plan.plan import TensorSpec

    out = TensorSpec(QFormat.integer(8), (0.05,), -128)
    relu = ReLU(name="r", inputs=("x",), outputs=("r",))
    six = Clip(name="c", inputs=("x",), outputs=("c",), min_value=0.0, max_value=6.0)
    assert xnnpack_act_bounds(relu, out) == (-128, 127)
    assert xnnpack_act_bounds(six, out) == (-128, spec.quantize_bound(6.0, 0.05, -128)) \
        == (-128, -8)
    with pytest.raises(PlanError, match=r"layer 'r': XNNPACK's int8 kernels need"):
        xnnpack_act_bounds(relu, TensorSpec(QFormat.integer(16), (0.05,), 0))
