"""ruy / gemmlowp / LiteRT-float64 requantization: Numba == numpy spec == oracle.

The oracles (``tests/oracles_runtime.py``) restate each runtime's rounding with
Python ints and ``Fraction``: ruy rounds both stages half up; gemmlowp (and
CMSIS-NN's default build, transcribed separately and shown equal) rounds the
high multiply half up and the division half away from zero; LiteRT's
reference FULLY_CONNECTED rounds ``double(acc) * scale`` (one IEEE double
rounding, emulated exactly) half away from zero.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core import intmath
from fxp.errors import FormatError, HeadroomError, PlanError
from fxp.kernels.spec_runtime_requant import float64_scales, litert_block_variants
from fxp.ops.runtime_requant import requantize_runtime_per_channel
from tests import oracles_runtime as O

N = 300
I32 = (-(1 << 31), (1 << 31) - 1)


@st.composite
def _cases(draw):
    """Per channel a variant, ``(M, shift)`` and int32 accumulators; half of the channels
    take ``M = 2**30`` and small values, so both rounding stages meet exact ties."""
    channels = draw(st.integers(1, 3))
    variants = [draw(st.sampled_from(["ruy", "double"])) for _ in range(channels)]
    ms, shifts = [], []
    n = draw(st.integers(1, 4))
    acc = np.empty((n, channels, 2), np.int64)
    for c in range(channels):
        ties = draw(st.booleans())
        ms.append(1 << 30 if ties else draw(st.one_of(st.integers(1 << 30, (1 << 31) - 1),
                                                      st.integers(0, (1 << 31) - 1))))
        shifts.append(draw(st.integers(-8, 1) if ties else st.integers(-31, 31)))
        values = st.integers(-5000, 5000) if ties else st.one_of(st.integers(*I32),
                                                                  st.integers(-5000, 5000))
        for i in range(n * 2):
            acc[i // 2, c, i % 2] = draw(values)
    return acc, variants, ms, shifts, draw(st.integers(-5, 5))


@settings(max_examples=N)
@given(_cases())
def test_multiplier_variants_match_oracle(case):
    """Per channel, element by element, each variant equals its Python-int oracle; the
    Numba kernel equals the numpy spec (values and the left-shift wrap count)."""
    acc, variants, ms, shifts, zp = case
    got = requantize_runtime_per_channel(acc, variants, ms, shifts, axis=1, zero_point=zp)
    ref = requantize_runtime_per_channel(acc, variants, ms, shifts, axis=1, zero_point=zp,
                                         backend="numpy")
    assert np.array_equal(got[0], ref[0]) and got[1] == ref[1]
    fn = {"ruy": O.mbqm_ruy, "double": O.mbqm_double}
    want = [[[fn[variants[c]](int(acc[i, c, k]), ms[c], shifts[c]) + zp
              for k in range(acc.shape[2])] for c in range(acc.shape[1])]
            for i in range(acc.shape[0])]
    assert got[0].tolist() == want
    wraps = sum(1 for i in range(acc.shape[0]) for c in range(acc.shape[1])
                for k in range(acc.shape[2])
                if (int(acc[i, c, k]) << max(shifts[c], 0)) != O._wrap32(
                    int(acc[i, c, k]) << max(shifts[c], 0)))
    assert got[1] == wraps


@settings(max_examples=N)
@given(st.integers(*I32), st.integers(0, (1 << 31) - 1), st.integers(-31, 31),
       st.integers(-8, 0), st.integers(-3000, 3000))
def test_cmsis_nn_default_requantize_equals_gemmlowp(x, m, shift, tie_shift, small):
    """CMSIS-NN's ``arm_nn_requantize`` without ``CMSIS_NN_USE_SINGLE_ROUNDING`` gives
    gemmlowp's integers for every int32 ``x``, ``M`` in ``[0, 2**31)``, shift in [-31, 31]
    (its high multiply ties up as gemmlowp's nudge-and-truncate does; its division is
    RoundingDivideByPOT): why the ``cmsis-nn`` profile is ``double``.  ``M = 2**30`` with
    small ``x`` exercises the ties of both stages."""
    assert O.mbqm_cmsis(x, m, shift) == O.mbqm_double(x, m, shift)
    assert O.mbqm_cmsis(small, 1 << 30, tie_shift) == O.mbqm_double(small, 1 << 30, tie_shift)
    got, _ = requantize_runtime_per_channel(np.array([[x, small]]), "double", [m, 1 << 30],
                                            [shift, tie_shift])
    assert got.tolist() == [[O.mbqm_cmsis(x, m, shift), O.mbqm_cmsis(small, 1 << 30,
                                                                      tie_shift)]]


def test_double_variant_equals_gemmlowp():
    """``"double"`` is fxp's TFLite MBQM (:func:`intmath.multiply_by_quantized_multiplier`)."""
    rng = np.random.default_rng(0)
    acc = rng.integers(-(1 << 24), 1 << 24, (1, 1, 5000))
    for m, e in ((1 << 30, -7), (1518500250, -12), (2000000000, 3)):
        got, _ = requantize_runtime_per_channel(acc, "double", [m], [e])
        assert np.array_equal(got, intmath.multiply_by_quantized_multiplier(acc, m, e)[0])


@st.composite
def _float_cases(draw):
    f32 = st.floats(2.0 ** -20, 1.0, width=32)
    sx, sy = draw(f32), draw(f32)
    sws = [draw(f32) for _ in range(draw(st.integers(1, 3)))]
    acc = [draw(st.one_of(st.integers(-(1 << 40), 1 << 40), st.integers(-3000, 3000)))
           for _ in range(4 * len(sws))]
    return sx, sws, sy, np.array(acc, np.int64).reshape(4, len(sws))


@settings(max_examples=N)
@given(_float_cases())
def test_float64_variant_matches_fraction_oracle(case):
    """LiteRT's reference FC: ``scale = f64(f64(s_x * s_w) / s_y)``, ``round(f64(acc * scale))``
    half away from zero; outside int32 -> INT32_MIN, counted.  Exact, with Fractions."""
    sx, sws, sy, acc = case
    scales = float64_scales(sx, sws, sy)
    assert [Fraction(float(v)) for v in scales] == [
        O.f64(O.f64(Fraction(sx) * Fraction(sw)) / Fraction(sy)) for sw in sws]
    got = requantize_runtime_per_channel(acc, "float64", scales=scales, zero_point=3)
    ref = requantize_runtime_per_channel(acc, "float64", scales=scales, zero_point=3,
                                         backend="numpy")
    assert np.array_equal(got[0], ref[0]) and got[1] == ref[1]
    want, outside = [], 0
    for row in acc.tolist():
        out = []
        for c, a in enumerate(row):
            r = O.round_away(O.f64(Fraction(a) * Fraction(float(scales[c]))))
            if not I32[0] <= r <= I32[1]:
                r, outside = I32[0], outside + 1
            out.append(r + 3)
        want.append(out)
    assert got[0].tolist() == want and got[1] == outside


def test_hand_ties():
    """x = +-3 with M = 2**30, shift -1 (x / 4): h = 2 and -1 (the high multiply's ties go up
    in both), then h / 2: ruy rounds -0.5 up to 0, gemmlowp away to -1.  float64 rounds
    +-2.5 away from zero."""
    acc = np.array([[3, -3, -1]])
    assert requantize_runtime_per_channel(acc, "ruy", [1 << 30] * 3, [-1] * 3)[0].tolist() \
        == [[1, 0, 0]]
    assert requantize_runtime_per_channel(acc, "double", [1 << 30] * 3, [-1] * 3)[0].tolist() \
        == [[1, -1, 0]]
    assert requantize_runtime_per_channel(np.array([[5, -5]]), "float64",
                                          scales=[0.5, 0.5])[0].tolist() == [[3, -3]]


def test_litert_block_variants():
    """Whole blocks of ``block`` channels are ruy, the rest gemmlowp."""
    assert litert_block_variants(16, 8) == ("ruy",) * 16
    assert litert_block_variants(3, 8) == ("double",) * 3
    assert litert_block_variants(20, 16) == ("ruy",) * 16 + ("double",) * 4


def test_refuses_out_of_contract():
    """Unknown variant, a variant list of the wrong length, missing parameters, an int32
    overflow for multiplier variants, 2**53 for float64: one-line errors."""
    acc = np.zeros((1, 2), np.int64)
    with pytest.raises(FormatError, match=r"variant must be one of .* got 'rounded'"):
        requantize_runtime_per_channel(acc, "rounded", [1, 1], [0, 0])
    with pytest.raises(FormatError, match=r"one per channel \(2\)"):
        requantize_runtime_per_channel(acc, ["ruy"], [1, 1], [0, 0])
    with pytest.raises(FormatError, match=r"multipliers are required"):
        requantize_runtime_per_channel(acc, "ruy")
    with pytest.raises(FormatError, match=r"scales must be finite and > 0"):
        requantize_runtime_per_channel(acc, "float64", scales=[1.0, -1.0])
    with pytest.raises(HeadroomError, match=r"does not fit int32"):
        requantize_runtime_per_channel(np.array([[1 << 31, 0]]), "ruy", [1, 1], [0, 0])
    with pytest.raises(HeadroomError, match=r"2\*\*53"):
        requantize_runtime_per_channel(np.array([[1 << 53, 0]]), "float64", scales=[1, 1])


def _dense(requant, acc_bits=32):
    from fxp.core.format import QFormat
    from fxp.ir.graph import Graph
    from fxp.ir.nodes import Dense
    from fxp.plan.plan import LayerPlan, Plan, TensorSpec

    i8 = QFormat.integer(8)
    w = (np.arange(-6, 6).reshape(3, 4) * np.float32(0.0123)).astype(np.float32)
    node = Dense(name="fc", inputs=("x",), outputs=("fc",), weight=w, bias=None)
    graph = Graph(nodes=(node,), inputs=("x",), input_shapes={"x": (None, 4)}, outputs=("fc",))
    plan = Plan(input=TensorSpec(i8, (0.02,), -3),
                layers=(LayerPlan("fc", weight=TensorSpec(i8, (0.0123,), 0),
                                  output=TensorSpec(i8, (0.011,), 4), acc_bits=acc_bits,
                                  requant=requant),))
    return graph, plan, w


@pytest.mark.parametrize("requant", ["ruy", "float64"])
def test_engine_dense_under_runtime_schemes(requant):
    """A Dense layer with requant ``ruy`` / ``float64`` computes its oracle on
    every code pair; int64 accumulators are refused except for ``float64``."""
    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer

    graph, plan, w = _dense(requant)
    x_codes = np.random.default_rng(1).integers(-128, 128, (400, 4))
    run = run_integer(compile_plan(graph, plan), (x_codes + 3) * np.float64(np.float32(0.02)),
                      keep=True)
    acc = (x_codes + 3) @ np.rint(w / np.float32(0.0123)).astype(np.int64).T
    sx, sw, sy = (float(np.float32(v)) for v in (0.02, 0.0123, 0.011))
    if requant == "float64":
        scale = O.f64(O.f64(Fraction(sx) * Fraction(sw)) / Fraction(sy))
        want = [[O.round_away(O.f64(a * scale)) for a in row] for row in acc.tolist()]
    else:
        m, e = intmath.quantize_multiplier(sx * sw / sy)
        want = [[O.mbqm_ruy(a, m, e) for a in row] for row in acc.tolist()]
    want = np.clip(np.array(want) + 4, -128, 127)
    assert np.array_equal(run.values["fc"].codes, want)
    if requant != "float64":
        with pytest.raises(PlanError, match=r"acc_bits=64"):
            compile_plan(*_dense(requant, 64)[:2])
