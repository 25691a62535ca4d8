"""LiteRT's optimized int8 ADD and keep-dims MEAN (x86): compositions checked against oracles.

Both are built from the requantization kernel of :mod:`fxp.ops.runtime_requant`
(itself pinned to its oracle); here the whole operator is compared, element by
element, with a transcription in Python ints (``tests/oracles_runtime.py``):
ADD's NEON blocks of 16 elements (input shift folded into one rounding, int16
narrowing) and scalar tail, MEAN's float32 Prepare (emulated with
``Fraction``) and its 16-channel ruy / gemmlowp split.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core import intmath
from fxp.errors import FormatError
from fxp.ops.litert import litert_add, litert_mean_hw_keepdims, litert_neon_mask
from fxp.ops.tflite import tflite_add_params
from tests import oracles_runtime as O

N = 300
codes = st.integers(-128, 127)
scales = st.floats(2.0 ** -10, 2.0, width=32)


def _wrap(v: int, bits: int) -> int:
    return (v + 2 ** (bits - 1)) % 2 ** bits - 2 ** (bits - 1)


def _add_oracle(x: int, y: int, neon: bool, params, za: int, zb: int, zy: int) -> int:
    m1, e1, m2, e2, mo, eo = params

    def stage(v, m, e):
        if not neon:
            return O.mbqm_double(v << 20, m, e)
        k = 20 + e
        return O.mbqm_double(v << k if k >= 0 else v >> -k, m, 0)

    r = O.mbqm_double(_wrap(stage(x - za, m1, e1) + stage(y - zb, m2, e2), 32), mo, eo)
    if neon:
        return max(-128, min(127, _wrap(_wrap(r, 16) + zy, 16)))
    return max(-128, min(127, r + zy))


@st.composite
def _add_cases(draw):
    shape = draw(st.sampled_from([(2, 3), (1, 17), (1, 3, 2, 3), (2, 2, 3, 4), (1, 33)]))
    n = int(np.prod(shape))
    a = np.array([draw(codes) for _ in range(n)]).reshape(shape)
    b = np.array([draw(codes) for _ in range(n)]).reshape(shape)
    sa, sb = draw(scales), draw(scales)
    sy = float(np.float32(draw(st.floats(max(float(sa), float(sb)) / 2 ** 8,
                                         max(float(sa), float(sb)) * 2 ** 4))))
    return a, b, sa, draw(codes), sb, draw(codes), sy, draw(codes)


@settings(max_examples=N)
@given(_add_cases())
def test_add_matches_oracle(case):
    """Each element: the NEON transcription inside whole blocks of 16 (NHWC order per
    sample), TFLite's scalar ADD outside."""
    a, b, sa, za, sb, zb, sy, zy = case
    try:
        params = tflite_add_params(sa, sb, sy)
    except FormatError:
        return  # an output scale TFLite refuses too
    got, _ = litert_add(a, b, a_scale=sa, a_zero_point=za, b_scale=sb, b_zero_point=zb,
                        y_scale=sy, y_zero_point=zy)
    mask = litert_neon_mask(a.shape)
    want = [_add_oracle(int(x), int(y), bool(m), params, za, zb, zy)
            for x, y, m in zip(a.ravel(), b.ravel(), mask.ravel(), strict=True)]
    assert got.ravel().tolist() == want


def test_neon_mask_follows_tflite_layout():
    """An NCHW tensor of 3 channels, 2x3 pixels (18 elements per sample): TFLite's NHWC
    order puts the first 16 in the NEON block; the last two are channels 1 and 2 of the
    last pixel."""
    mask = litert_neon_mask((2, 3, 2, 3))
    assert mask.shape == (2, 3, 2, 3) and int((~mask[0]).sum()) == 2
    assert not mask[0, 1, 1, 2] and not mask[0, 2, 1, 2] and mask[0, 0, 1, 2]
    assert litert_neon_mask((1, 20))[0].tolist() == [True] * 16 + [False] * 4


@st.composite
def _mean_cases(draw):
    c, h, w = draw(st.integers(1, 40)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    x = np.array([draw(codes) for _ in range(c * h * w)]).reshape(1, c, h, w)
    return x, draw(scales), draw(codes), draw(scales), draw(codes)


@settings(max_examples=N)
@given(_mean_cases())
def test_mean_keepdims_matches_oracle(case):
    """``optimized_integer_ops::Mean``: float32 bias and scale (emulated exactly), then
    ruy's rounding for whole blocks of 16 channels and gemmlowp's for the rest."""
    x, sx, zx, sy, zy = case
    c, n = x.shape[1], x.shape[2] * x.shape[3]
    t = O.f32(O.f32(Fraction(zx) * Fraction(sx)) / Fraction(sy))
    t = O.f32(t + Fraction(1, 2)) if t > 0 else O.f32(t - Fraction(1, 2))
    bias = zy - int(t)  # C truncation toward zero
    real = O.f32(Fraction(sx) / O.f32(n * Fraction(sy)))
    try:
        m, shift = intmath.quantize_multiplier(float(real))
    except FormatError:
        return
    if not -31 <= shift <= 31:
        with pytest.raises(FormatError, match=r"outside \[-31, 31\]"):
            litert_mean_hw_keepdims(x, x_scale=sx, x_zero_point=zx, y_scale=sy,
                                    y_zero_point=zy)
        return
    got, _ = litert_mean_hw_keepdims(x, x_scale=sx, x_zero_point=zx, y_scale=sy,
                                     y_zero_point=zy)
    want = []
    for ch in range(c):
        s = int(x[0, ch].sum())
        fn = O.mbqm_ruy if ch < c // 16 * 16 else O.mbqm_double
        want.append(max(-128, min(127, fn(s, m, shift) + bias)))
    assert got.ravel().tolist() == want
