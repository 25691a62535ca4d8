"""TFLM integer SOFTMAX: Numba kernel == numpy spec == Python-int oracle (int8 and int16).

300 hypothesis examples each, drawn with input scales across TFLM's whole
range (int8: left shifts 0..26 and the multiplier cap), rows with ties,
extreme codes and (int8) elements below ``diff_min``.  The TFLM interpreter
itself is the oracle of ``tests/frontends/test_tflite_import.py``
(``residual_mean_int8`` / ``residual_mean_int16x8`` operator 7, 1,000 digits).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import FormatError, PlanError
from fxp.kernels import spec_tflite_softmax as spec
from fxp.ops.tflite_softmax import tflite_softmax, tflite_softmax_params
from tests import oracles_tflite_softmax as orc

INT8 = QFormat.integer(8, True)
INT16 = QFormat.integer(16, True)
N = 300

scales = st.one_of(st.floats(2.0 ** -25, 64.0, allow_nan=False, width=32),
                   st.sampled_from([1 / 16, 0.1, 1 / 256, 2.0 ** -25, 1.0, 100.0]))
codes = st.integers(-128, 127)


@st.composite
def cases(draw):
    rows = draw(st.integers(1, 3))
    n = draw(st.integers(1, 12))
    pool = draw(st.lists(codes, min_size=1, max_size=4))  # few values: ties
    x = draw(st.lists(st.lists(st.one_of(codes, st.sampled_from(pool)), min_size=n,
                               max_size=n), min_size=rows, max_size=rows))
    return np.array(x, np.int64), draw(scales), draw(st.sampled_from([1.0, 0.5, 2.0]))


@settings(max_examples=N, deadline=None)
@given(cases())
def test_kernel_equals_spec_equals_oracle(case) -> None:
    x, scale, beta = case
    got, n_got = tflite_softmax(x, x_scale=scale, beta=beta, fmt=INT8)
    ref, n_ref = tflite_softmax(x, x_scale=scale, beta=beta, fmt=INT8, backend="numpy")
    s32, b32 = float(np.float32(scale)), float(np.float32(beta))
    want = np.array([orc.softmax_row([int(v) for v in row], b32, s32) for row in x])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref, want)
    assert n_got == n_ref
    assert tflite_softmax_params(scale, beta) == orc.prepare(b32, s32)


@settings(max_examples=N, deadline=None)
@given(st.integers(-(31 << 26), 0))
def test_exp_on_negative_values_matches_oracle(raw: int) -> None:
    """Q5.26 inputs over the whole range: the vectorized and the scalar exp equal the
    generic re-derivation."""
    from fxp.kernels.tflite_softmax import exp_on_negative5

    want = orc.exp_on_negative_values(orc.FP(raw, 5)).raw
    assert int(spec.exp_on_negative(np.array([raw]))[0]) == want
    assert int(exp_on_negative5(np.int64(raw))) == want
    assert abs(want / 2 ** 31 - np.exp(raw / 2 ** 26)) < 1e-6  # and it is exp (gemmlowp: ~3e-7)


@settings(max_examples=N, deadline=None)
@given(st.integers(0, (1 << 31) - 1))
def test_reciprocal_matches_oracle(raw: int) -> None:
    from fxp.kernels.tflite_softmax import one_over_one_plus_x

    want = orc.one_over_one_plus_x(orc.FP(raw, 0)).raw
    assert int(spec.one_over_one_plus_x(np.array([raw]))[0]) == want
    assert int(one_over_one_plus_x(np.int64(raw))) == want
    assert abs(want / 2 ** 31 - 1 / (1 + raw / 2 ** 31)) < 1e-6


def test_softmax_is_close_to_float_softmax() -> None:
    """Independent of gemmlowp: within one code of round(256 * softmax) - 128."""
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (200, 10))
    got, _ = tflite_softmax(x, x_scale=0.07, fmt=INT8)
    xf = x * np.float64(np.float32(0.07))
    p = np.exp(xf - xf.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert np.abs(got - np.clip(np.rint(p * 256) - 128, -128, 127)).max() <= 1


def test_one_hot_clamps_to_127_and_counts() -> None:
    """A row whose other elements fall below diff_min: 1.0 is code 128, clamped to 127."""
    got, n = tflite_softmax(np.array([[127, -128, -128]]), x_scale=1.0, fmt=INT8)
    assert got.tolist() == [[127, -128, -128]] and n == 1
    ref, n_ref = tflite_softmax(np.array([[127, -128, -128]]), x_scale=1.0, fmt=INT8,
                                backend="numpy")
    assert ref.tolist() == got.tolist() and n_ref == 1


def test_refusals() -> None:
    x = np.zeros((1, 3), np.int64)
    with pytest.raises(FormatError, match=r"tflite_softmax: fmt must be int8 or int16"):
        tflite_softmax(x, x_scale=0.1, fmt=QFormat.integer(16, False))
    with pytest.raises(FormatError, match=r"tflite_softmax: x: "):
        tflite_softmax(x + 200, x_scale=0.1, fmt=INT8)
    with pytest.raises(FormatError, match=r"x must be \[N, n\]"):
        tflite_softmax(np.zeros((1, 600), np.int64), x_scale=0.1, fmt=INT8)
    with pytest.raises(FormatError, match=r"below 1 \(left shift -1\)"):
        tflite_softmax(x, x_scale=2.0 ** -28, fmt=INT8)
    with pytest.raises(FormatError, match=r"beta must be a finite number > 0"):
        tflite_softmax(x, x_scale=0.1, beta=0.0, fmt=INT8)
    with pytest.raises(FormatError, match=r"backend must be"):
        tflite_softmax(x, x_scale=0.1, fmt=INT8, backend="cuda")


def test_engine_refuses_wrong_output_coding() -> None:
    """A final Softmax planned as TFLM int8 with an output other than 1/256, -128."""
    from fxp.ir.graph import Graph
    from fxp.ir.nodes import Softmax
    from fxp.plan.plan import LayerPlan, Plan, TensorSpec
    from fxp.sim.compile import compile_plan

    node = Softmax(name="sm", inputs=("x",), outputs=("sm",), axis=1)
    graph = Graph(nodes=(node,), inputs=("x",), input_shapes={"x": (None, 10)},
                  outputs=("sm",))
    inp = TensorSpec(INT8, (0.1,), 3)
    for out in (TensorSpec(INT8, (1 / 128,), -128), TensorSpec(INT8, (1 / 256,), 0)):
        plan = Plan(input=inp, layers=(LayerPlan("sm", output=out, requant="double"),))
        with pytest.raises(PlanError, match=r"Softmax 'sm': .*scale 1/256 and zero\s+point -128"):
            compile_plan(graph, plan)
    good = Plan(input=inp, layers=(LayerPlan("sm", output=TensorSpec(INT8, (1 / 256,), -128),
                                             requant="double"),))
    from fxp.sim.integer import run_integer

    x = np.random.default_rng(1).integers(-128, 128, (4, 10))
    run = run_integer(compile_plan(graph, good), (x - 3) * np.float64(np.float32(0.1)),
                      keep=True)
    want = np.array([orc.softmax_row([int(v) for v in r], 1.0, float(np.float32(0.1)))
                     for r in x])
    np.testing.assert_array_equal(run.values["sm"].codes, want)


@st.composite
def cases16(draw):
    rows = draw(st.integers(1, 3))
    n = draw(st.integers(1, 12))
    c16 = st.integers(-32768, 32767)
    pool = draw(st.lists(c16, min_size=1, max_size=4))
    x = draw(st.lists(st.lists(st.one_of(c16, st.sampled_from(pool)), min_size=n, max_size=n),
                      min_size=rows, max_size=rows))
    scale = draw(st.one_of(st.floats(2.0 ** -23, 1.0, width=32),
                           st.sampled_from([10 / 65535, 1 / 4096, 0.0017839452])))
    return np.array(x, np.int64), scale, draw(st.sampled_from([1.0, 0.5, 2.0]))


@settings(max_examples=N, deadline=None)
@given(cases16())
def test_int16_kernel_equals_spec_equals_oracle(case) -> None:
    x, scale, beta = case
    got, n_got = tflite_softmax(x, x_scale=scale, beta=beta, fmt=INT16)
    ref, n_ref = tflite_softmax(x, x_scale=scale, beta=beta, fmt=INT16, backend="numpy")
    s32, b32 = float(np.float32(scale)), float(np.float32(beta))
    want = np.array([orc.softmax_row_int16([int(v) for v in row], b32, s32) for row in x])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref, want)
    assert n_got == n_ref


def test_int16_luts_match_oracle_and_functions() -> None:
    """The spec's LUTs equal the oracle's, and each entry is the function within 2 codes."""
    exp_lut, recip_lut = spec.gen_lut_int16("exp"), spec.gen_lut_int16("recip")
    assert exp_lut.tolist() == orc.EXP_LUT and recip_lut.tolist() == orc.RECIP_LUT
    grid = np.arange(513) / 512
    np.testing.assert_allclose(exp_lut, np.minimum(np.exp(-10 + 10 * grid) * 32768, 32767),
                               atol=2)
    np.testing.assert_allclose(recip_lut, np.minimum(32768 / (1 + grid), 32767), atol=2)
    with pytest.raises(FormatError, match=r"'exp' or 'recip', got 'log'"):
        spec.gen_lut_int16("log")


def test_int16_exp_lut_with_the_platform_expf() -> None:
    """TFLM calls libm's ``expf``; the spec takes the correctly rounded exp: same table here."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("m")
    if name is None:
        pytest.skip("no C math library to compare with")
    libm = ctypes.CDLL(name)
    libm.expf.restype, libm.expf.argtypes = ctypes.c_float, [ctypes.c_float]
    lut = orc.gen_lut(lambda v: float(libm.expf(v)), -10.0, 0.0)
    assert lut == spec.gen_lut_int16("exp").tolist()
