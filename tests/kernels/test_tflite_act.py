"""TFLM integer LOGISTIC, TANH, HARD_SWISH: Numba kernel == numpy spec == Python-int oracle.

300+ hypothesis examples each, over TFLM's whole range of input scales (int8:
left shifts 0..30 and the radius shortcut; int16: the power-of-two and the
general multiplier paths; HARD_SWISH: relu-ish exponents on both sides of 0),
extreme codes and zero points, both rounding schemes.  The TFLM interpreter
itself is the oracle of ``tests/frontends/test_tflite_activations.py``
(``models/tflite/activations_*``, 1,000 digits).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import FormatError
from fxp.kernels import spec_tflite_act as spec
from fxp.ops.tflite_act import (
    tflite_act_params,
    tflite_hard_swish,
    tflite_hard_swish_params,
    tflite_logistic,
    tflite_tanh,
)
from tests import oracles_tflite_act as orc
from tests.oracles_tflite_softmax import FP

INT8, INT16 = QFormat.integer(8, True), QFormat.integer(16, True)
N = 300
TABLE = spec.SIGMOID_TABLE_UINT16.tolist()

f32s = st.floats(2.0 ** -26, 8.0, allow_nan=False, width=32)
scales8 = st.one_of(f32s, st.sampled_from([1 / 16, 0.1, 1 / 256, 2.0 ** -28, 1.0, 7.99]))
codes8 = st.lists(st.one_of(st.integers(-128, 127), st.sampled_from([-128, -127, 0, 127])),
                  min_size=1, max_size=40)


def _f(v) -> float:
    return float(np.float32(v))


@pytest.mark.parametrize("is_tanh", [False, True], ids=["logistic", "tanh"])
@settings(max_examples=N, deadline=None)
@given(codes8, st.integers(-128, 127), scales8, st.sampled_from(["double", "single"]))
def test_int8_kernel_equals_spec_equals_oracle(is_tanh, x, zp, scale, scheme) -> None:
    """Every code equals the oracle's; kernel and spec count the same clamps."""
    fn = tflite_tanh if is_tanh else tflite_logistic
    x = np.array(x, np.int64)
    kw = {"x_scale": scale, "x_zero_point": zp, "fmt": INT8, "scheme": scheme}
    if orc.prepare_int8(_f(scale))[1] > (30 if scheme == "single" else 31):
        with pytest.raises(FormatError, match=r"gives the left shift 31, outside \[0, 30\]"):
            fn(x, **kw)  # single-rounding MBQM takes shifts up to 30 (scale >= 8)
        return
    got, n_got = fn(x, **kw)
    ref, n_ref = fn(x, backend="numpy", **kw)
    want = [orc.logistic_tanh_int8(int(v), zp, _f(scale), scheme == "single", is_tanh) for v in x]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref, want)
    assert n_got == n_ref
    m, shift, radius = orc.prepare_int8(_f(scale))
    assert tflite_act_params("tanh" if is_tanh else "logistic", scale, INT8, scheme=scheme) == \
        (m, shift, radius)


scales16 = st.one_of(st.floats(2.0 ** -20, 2.5, allow_nan=False, width=32),
                     st.sampled_from([2.0 ** -12, 2.0 ** -11, 2.0 ** -13, 2.0 ** -15,
                                      2.0 ** -12 * 1.0004, 1 / 3000, 2.5]))
codes16 = st.lists(st.one_of(st.integers(-32768, 32767),
                             st.sampled_from([-32768, -32767, -1, 0, 1, 32767])),
                   min_size=1, max_size=40)


@pytest.mark.parametrize("is_tanh", [False, True], ids=["logistic", "tanh"])
@settings(max_examples=N, deadline=None)
@given(codes16, scales16)
def test_int16_kernel_equals_spec_equals_oracle(is_tanh, x, scale) -> None:
    """int16 (zero point 0): the power-of-two and the general multiplier path."""
    fn = tflite_tanh if is_tanh else tflite_logistic
    x = np.array(x, np.int64)
    got, n = fn(x, x_scale=scale, x_zero_point=0, fmt=INT16)
    ref, _ = fn(x, x_scale=scale, x_zero_point=0, fmt=INT16, backend="numpy")
    want = [orc.lut_int16(int(v), _f(scale), is_tanh, TABLE) for v in x]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref, want)
    assert n == 0 and got.min() >= -32768 and got.max() <= 32767
    assert tflite_act_params("tanh" if is_tanh else "logistic", scale, INT16) == \
        orc.prepare_int16(_f(scale), is_tanh)


hs_scales = st.one_of(st.floats(2.0 ** -12, 2.0, allow_nan=False, width=32),
                      st.sampled_from([0.1, 0.05, 1 / 256, 0.02]))


@settings(max_examples=N + 100, deadline=None)  # ~1 in 6 scale pairs is a refusal
@given(codes8, st.integers(-128, 127), st.integers(-128, 127), hs_scales, hs_scales,
       st.sampled_from(["double", "single"]))
def test_hard_swish_kernel_equals_spec_equals_oracle(x, zi, zo, si, so, scheme) -> None:
    """Scales that TFLM refuses (output exponent > 0) or the int16 kernel cannot shift are
    refused with FormatError; every other case equals the oracle code for code."""
    x = np.array(x, np.int64)
    kw = {"x_scale": si, "x_zero_point": zi, "y_scale": so, "y_zero_point": zo, "fmt": INT8,
          "scheme": scheme}
    params = orc.prepare_hard_swish(_f(si), _f(so), scheme == "single")
    if params[3] > 0 or params[3] < -15 or not -15 <= params[1] <= 31:
        with pytest.raises(FormatError, match=r"tflite_hard_swish: TFLite HARD_SWISH: .*exponent"):
            tflite_hard_swish(x, **kw)
        return
    got, n_got = tflite_hard_swish(x, **kw)
    ref, n_ref = tflite_hard_swish(x, backend="numpy", **kw)
    want = [orc.hard_swish_int8(int(v), zi, zo, _f(si), _f(so), scheme == "single") for v in x]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref, want)
    assert n_got == n_ref
    assert tflite_hard_swish_params(si, so, scheme=scheme) == params


@settings(max_examples=N, deadline=None)
@given(st.integers(-(1 << 31) + 1, (1 << 31) - 1))
def test_gemmlowp_logistic_and_tanh_match_oracle(raw: int) -> None:
    """Q4.27 raw inputs over the whole int32 range: vectorized spec, scalar jit and the
    generic re-derivation agree, and the results are the functions (gemmlowp: ~1e-6)."""
    from fxp.kernels import tflite_act as K

    a = FP(raw, 4)
    lg, th = orc.logistic(a).raw, orc.tanh(a).raw
    assert int(spec.gemmlowp_logistic(np.array([raw]))[0]) == lg == int(K.gemmlowp_logistic(raw))
    assert int(spec.gemmlowp_tanh(np.array([raw]))[0]) == th == int(K.gemmlowp_tanh(raw))
    v = raw / 2 ** 27
    assert abs(lg / 2 ** 31 - 1 / (1 + np.exp(-v))) < 2e-6
    assert abs(th / 2 ** 31 - np.tanh(v)) < 2e-6


def test_sigmoid_table_is_the_sigmoid() -> None:
    """The copied ``sigmoid_table_uint16``: non-decreasing, each entry within 1.6 of
    ``65536 * sigmoid(i / 24)`` (a typo would show)."""
    t = spec.SIGMOID_TABLE_UINT16
    assert t.size == 256 and np.all(np.diff(t) >= 0) and t[0] == 32768 and t[-1] == 65535
    want = 65536 / (1 + np.exp(-np.arange(256) / 24))
    assert np.abs(t - want).max() < 1.6


def test_outputs_are_close_to_the_float_functions() -> None:
    """Independent of gemmlowp and the table: within 1 code (int8) / 3 codes (int16) of the
    rounded float function, over every input code."""
    x8 = np.arange(-128, 128)
    for scale in (0.02, 0.1, 0.5):
        real = (x8 - 5) * np.float64(np.float32(scale))
        lg, _ = tflite_logistic(x8, x_scale=scale, x_zero_point=5, fmt=INT8)
        th, _ = tflite_tanh(x8, x_scale=scale, x_zero_point=5, fmt=INT8)
        assert np.abs(lg - np.clip(np.rint(256 / (1 + np.exp(-real))) - 128, -128, 127)).max() <= 1
        assert np.abs(th - np.clip(np.rint(128 * np.tanh(real)), -128, 127)).max() <= 1
    x16 = np.arange(-32768, 32768)
    for scale in (2.0 ** -12, 3e-4, 1e-3):
        real = x16 * np.float64(np.float32(scale))
        lg, _ = tflite_logistic(x16, x_scale=scale, x_zero_point=0, fmt=INT16)
        th, _ = tflite_tanh(x16, x_scale=scale, x_zero_point=0, fmt=INT16)
        assert np.abs(lg - np.minimum(np.rint(32768 / (1 + np.exp(-real))), 32767)).max() <= 3
        assert np.abs(th - np.clip(np.rint(32768 * np.tanh(real)), -32768, 32767)).max() <= 3
    hs, _ = tflite_hard_swish(x8, x_scale=0.05, x_zero_point=-10, y_scale=0.04,
                              y_zero_point=-100, fmt=INT8)
    r = (x8 + 10) * np.float64(np.float32(0.05))
    want = np.clip(np.rint(r * np.clip(r + 3, 0, 6) / 6 / np.float32(0.04)) - 100, -128, 127)
    assert np.abs(hs - want).max() <= 1


def test_int8_ends_and_clamps() -> None:
    """Beyond the radius the output is -128 / 127; a LOGISTIC of 1.0 (code 128) is clamped
    to 127 and counted; the int8 zero point cancels."""
    got, n = tflite_logistic(np.array([-128, 127, 60, 70]), x_scale=0.1, x_zero_point=0,
                             fmt=INT8)
    # radius 120; 6.0: 256 * 0.99753 = 255.4 -> 127; 7.0: 255.77 -> 256 - 128 = 128 -> 127
    assert got.tolist() == [-128, 127, 127, 127] and n == 1
    a, _ = tflite_tanh(np.array([-100, 0, 100]), x_scale=0.01, x_zero_point=20, fmt=INT8)
    b, _ = tflite_tanh(np.array([-120, -20, 80]), x_scale=0.01, x_zero_point=0, fmt=INT8)
    assert a.tolist() == b.tolist() == [-107, -25, 85]  # round(128 tanh(-1.2, -0.2, 0.8))


def test_prepare_matches_tflm_worked_values() -> None:
    """Hand-checked Prepare results: s = 1/16 -> 2**23 (q 0.5, left shift 24, radius 120);
    int16 s = 2**-12 is TFLM's power-of-two case (multiplier 0), 2**-11 too for TANH only
    (LOGISTIC: 12288 s = 6 doubled 12 times); s = 1/3000: 4.096 doubled 12 times, truncated."""
    assert spec.input_params_int8(1 / 16) == (1 << 30, 24, 120)
    assert spec.input_params_int16(2.0 ** -12, tanh=False) == (0, 0)
    assert spec.input_params_int16(2.0 ** -11, tanh=True) == (0, 1)
    assert spec.input_params_int16(2.0 ** -11, tanh=False) == (6 << 12, 12)
    m, shift = spec.input_params_int16(1 / 3000, tanh=False)
    assert (m, shift) == (int(float(np.float32(1 / 3000)) * 12288 * 2 ** 12), 12) \
        and m == 16777


def test_refusals() -> None:
    x = np.zeros(3, np.int64)
    with pytest.raises(FormatError, match=r"tflite_logistic: fmt must be int8 or int16"):
        tflite_logistic(x, x_scale=0.1, x_zero_point=0, fmt=QFormat.integer(8, False))
    with pytest.raises(FormatError, match=r"tflite_tanh: x: "):
        tflite_tanh(x + 200, x_scale=0.1, x_zero_point=0, fmt=INT8)
    with pytest.raises(FormatError, match=r"left shift -1, outside \[0, 31\]"):
        tflite_logistic(x, x_scale=2.0 ** -29, x_zero_point=0, fmt=INT8)
    with pytest.raises(FormatError, match=r"left shift 31, outside \[0, 30\]"):
        tflite_logistic(x, x_scale=8.0, x_zero_point=0, fmt=INT8, scheme="single")
    with pytest.raises(FormatError, match=r"needs x_zero_point 0, got 3"):
        tflite_tanh(x, x_scale=1e-3, x_zero_point=3, fmt=INT16)
    with pytest.raises(FormatError, match=r"multiplier 36864.0, outside"):
        tflite_tanh(x, x_scale=3.0, x_zero_point=0, fmt=INT16)
    with pytest.raises(FormatError, match=r"tflite_hard_swish: fmt must be int8, got"):
        tflite_hard_swish(x, x_scale=0.1, x_zero_point=0, y_scale=0.1, y_zero_point=0,
                          fmt=INT16)
    with pytest.raises(FormatError, match=r"output multiplier exponent 2 \(ratio 2.0\)"):
        tflite_hard_swish(x, x_scale=1.0, x_zero_point=0, y_scale=2.0 ** -8, y_zero_point=0,
                          fmt=INT8)
    with pytest.raises(FormatError, match=r"kind must be 'logistic' or 'tanh', got 'relu'"):
        tflite_act_params("relu", 0.1, INT8)
    with pytest.raises(FormatError, match=r"unknown rounding scheme 'ceil'"):
        tflite_logistic(x, x_scale=0.1, x_zero_point=0, fmt=INT8, scheme="ceil")
    with pytest.raises(FormatError, match=r"backend must be"):
        tflite_logistic(x, x_scale=0.1, x_zero_point=0, fmt=INT8, backend="cuda")
