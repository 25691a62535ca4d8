"""The engine's Tanh, HardSwish, Pad, Requantize steps, the TFLite Sigmoid, and int16 Mul.

Each step is compiled by :func:`fxp.sim.compile.compile_plan` (dispatch in
:mod:`fxp.sim.residual` to :mod:`fxp.sim.residual_tflite` /
:mod:`fxp.sim.residual_mul`) and checked against the Python-int oracles
(``tests/oracles_tflite_act.py``, the TFLM ``Requantize`` and ``MulElementwise``
written here in ints) or exact float64 references; the refusals name the node.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import PlanError, UnsupportedOpError
from fxp.ir.graph import Graph
from fxp.ir.nodes import HardSwish, Mul, Pad, Requantize, Sigmoid, Tanh
from fxp.kernels import spec_tflite_act as spec
from fxp.plan.plan import LayerPlan, Plan, TensorSpec
from fxp.sim.compile import compile_plan
from fxp.sim.float_ref import run_float
from fxp.sim.integer import run_integer
from tests import oracles_tflite_act as orc

INT8, INT16 = QFormat.integer(8, True), QFormat.integer(16, True)
N = 60


def sp(fmt, s, zp=0) -> TensorSpec:
    return TensorSpec(fmt, (float(np.float32(s)),), int(zp))


def run(nodes, layers, in_spec, codes, out="y", inputs=("x",)):
    """Compile and run a one-input graph on exact float inputs for ``codes``."""
    g = Graph(nodes=tuple(nodes), inputs=inputs, input_shapes={"x": (None, *codes.shape[1:])},
              outputs=(out,))
    model = compile_plan(g, Plan(input=in_spec, layers=tuple(layers)))
    if in_spec.is_pow2:
        x = np.ldexp(codes.astype(np.float64), -in_spec.fmt.frac_bits)
    else:
        x = (codes - in_spec.zero_point) * np.float64(in_spec.scales[0])
    res = run_integer(model, x.astype(np.float32), keep=True)
    assert np.array_equal(res.values["x"].codes, codes)
    return res.values


def unary(cls):
    return cls(name="a", inputs=("x",), outputs=("y",))


def codes(fmt, shape=(2, 3, 4, 5), seed=0):
    c = np.random.default_rng(seed).integers(fmt.min_code, fmt.max_code + 1, shape)
    c.flat[:3] = fmt.min_code, fmt.max_code, 0
    return c.astype(np.int64)


# --------------------------------------------------------------------------- activations
@settings(max_examples=N, deadline=None)
@given(st.sampled_from([Sigmoid, Tanh]), st.floats(2.0 ** -10, 2.0, width=32),
       st.integers(-128, 127), st.sampled_from(["double", "single"]), st.integers(0, 99))
def test_int8_sigmoid_tanh_step_equals_oracle(cls, s_in, zp, scheme, seed):
    """Sigmoid / Tanh under a TFLite scheme run TFLM's int8 LOGISTIC / TANH."""
    tanh = cls is Tanh
    out = sp(INT8, 1 / 128, 0) if tanh else sp(INT8, 1 / 256, -128)
    c = codes(INT8, seed=seed)
    vals = run([unary(cls)], [LayerPlan("a", output=out, requant=scheme)], sp(INT8, s_in, zp), c)
    want = [orc.logistic_tanh_int8(int(v), zp, float(np.float32(s_in)), scheme == "single", tanh)
            for v in c.ravel()]
    np.testing.assert_array_equal(vals["y"].codes.ravel(), want)
    assert vals["y"].spec == out


@settings(max_examples=N, deadline=None)
@given(st.sampled_from([Sigmoid, Tanh]), st.floats(2.0 ** -16, 1.0, width=32),
       st.integers(0, 99))
def test_int16_sigmoid_tanh_step_equals_oracle(cls, s_in, seed):
    c = codes(INT16, seed=seed)
    out = sp(INT16, 2.0 ** -15)
    vals = run([unary(cls)], [LayerPlan("a", output=out, requant="double")], sp(INT16, s_in), c)
    want = [orc.lut_int16(int(v), float(np.float32(s_in)), cls is Tanh,
                          spec.SIGMOID_TABLE_UINT16.tolist()) for v in c.ravel()]
    np.testing.assert_array_equal(vals["y"].codes.ravel(), want)


def test_hard_swish_step_equals_oracle():
    c = codes(INT8)
    s_in, zi, s_out, zo = 0.05, -10, 0.04, -100
    vals = run([unary(HardSwish)], [LayerPlan("a", output=sp(INT8, s_out, zo), requant="double")],
               sp(INT8, s_in, zi), c)
    want = [orc.hard_swish_int8(int(v), zi, zo, float(np.float32(s_in)), float(np.float32(s_out)),
                                False) for v in c.ravel()]
    np.testing.assert_array_equal(vals["y"].codes.ravel(), want)


@pytest.mark.parametrize(("cls", "fmt_in", "out", "scheme", "err", "match"), [
    (Tanh, sp(INT8, 0.1, 3), sp(INT8, 1 / 256, -128), "double", PlanError,
     r"'a' \(Tanh\): TFLite int8 TANH writes codes of scale 0.0078125 and zero point 0"),
    (Sigmoid, sp(INT16, 0.001, 2), sp(INT16, 2.0 ** -15), "double", PlanError,
     r"'a' \(Sigmoid\): TFLite's int16 LOGISTIC needs input zero point 0, got 2"),
    (HardSwish, sp(INT16, 0.001), sp(INT16, 0.001), "single", UnsupportedOpError,
     r"'a' \(HardSwish\): TFLite Micro has no int16 HARD_SWISH"),
    (Tanh, sp(INT8, 0.1, 3), sp(INT8, 1 / 128), "float32", UnsupportedOpError,
     r"'a' \(Tanh\): no onnxruntime integer kernel"),
    (Tanh, sp(INT8, 0.1, 3), sp(INT16, 2.0 ** -15), "double", PlanError,
     r"'a' \(Tanh\): TFLite's kernel takes int8 or int16 codes in and out, got"),
    (Sigmoid, sp(INT8, 2.0 ** -30, 3), sp(INT8, 1 / 256, -128), "double", PlanError,
     r"'a' \(Sigmoid\): tflite_logistic: .*left shift -2"),
    (Tanh, sp(INT8, 0.1, 3), TensorSpec.pow2(8, 7), "double", PlanError,
     r"'a' \(Tanh\): input .* and output .* must both be power-of-two or both affine"),
    (Tanh, sp(INT8, 0.1, 3), None, "double", PlanError,
     r"'a' \(Tanh\) has no integer output coding"),
])
def test_activation_refusals_name_the_node(cls, fmt_in, out, scheme, err, match):
    g = Graph(nodes=(unary(cls),), inputs=("x",), input_shapes={"x": (None, 4)}, outputs=("y",))
    with pytest.raises(err, match=match):
        compile_plan(g, Plan(input=fmt_in, layers=(LayerPlan("a", output=out, requant=scheme),)))


@pytest.mark.parametrize("cls", [Tanh, HardSwish])
def test_pow2_tanh_hard_swish_round_float64_once(cls):
    """Power-of-two Tanh / HardSwish: the float64 function of the exact input, rounded once
    (half even) into the plan's output, saturated."""
    c = np.arange(-128, 128).reshape(1, 1, 16, 16)
    out = TensorSpec.pow2(8, 5)
    vals = run([unary(cls)], [LayerPlan("a", output=out, rounding="half_even")],
               TensorSpec.pow2(8, 4), c)
    v = c / 16.0
    real = np.tanh(v) if cls is Tanh else v * np.clip(v + 3, 0, 6) / 6
    np.testing.assert_array_equal(vals["y"].codes, np.clip(np.rint(real * 32), -128, 127))


# --------------------------------------------------------------------------- Pad
@pytest.mark.parametrize("in_spec", [sp(INT8, 0.1, -7), TensorSpec.pow2(8, 4), sp(INT16, 1e-3)])
def test_pad_fills_the_code_of_zero(in_spec):
    """Pad writes real 0 (the zero point; 0 for power-of-two codes) and keeps the coding;
    the float reference pads with 0.0 around the same places."""
    c = codes(in_spec.fmt, (2, 3, 4, 5))
    node = Pad(name="a", inputs=("x",), outputs=("y",), pads=(1, 2, 0, 3))
    vals = run([node], [], in_spec, c)
    zero = 0 if in_spec.is_pow2 else in_spec.zero_point
    want = np.pad(c, ((0, 0), (0, 0), (1, 0), (2, 3)), constant_values=zero)
    np.testing.assert_array_equal(vals["y"].codes, want)
    assert vals["y"].spec == in_spec and vals["y"].codes.shape == (2, 3, 5, 10)
    g = Graph(nodes=(node,), inputs=("x",), input_shapes={"x": (None, 3, 4, 5)}, outputs=("y",))
    f = run_float(g, np.ones((1, 3, 4, 5), np.float32))
    assert f.shape == (1, 3, 5, 10) and f.sum() == 60 and f[0, 0, 0, 0] == 0


def test_pad_refusals():
    g = Graph(nodes=(Pad(name="a", inputs=("x",), outputs=("y",), pads=(1, 1, 1, 1), value=1.5),),
              inputs=("x",), input_shapes={"x": (None, 1, 2, 2)}, outputs=("y",))
    with pytest.raises(UnsupportedOpError, match=r"'a' \(Pad\): only zero padding"):
        compile_plan(g, Plan(input=sp(INT8, 0.1)))
    g0 = Graph(nodes=(Pad(name="a", inputs=("x",), outputs=("y",), pads=(1, 1, 1, 1)),),
               inputs=("x",), input_shapes={"x": (None, 1, 2, 2)}, outputs=("y",))
    with pytest.raises(PlanError, match=r"'a' \(Pad\) keeps its input's coding"):
        compile_plan(g0, Plan(input=sp(INT8, 0.1), layers=(LayerPlan("a", output=sp(INT8, .2)),)))
    from fxp.errors import GraphError

    with pytest.raises(GraphError, match=r"pads must be 4 integers >= 0"):
        Pad(name="a", inputs=("x",), outputs=("y",), pads=(1, -1, 0, 0))


# --------------------------------------------------------------------------- Requantize
def requant_oracle(x, s_in, zi, s_out, zo, fmt, single):
    m, e = orc.quantize_multiplier(float(np.float32(s_in)) / float(np.float32(s_out)), single)
    return max(fmt.min_code, min(fmt.max_code, orc.mbqm(x - zi, m, e, single) + zo))


@settings(max_examples=N, deadline=None)
@given(st.sampled_from([(INT8, INT8), (INT8, INT16), (INT16, INT8), (INT16, INT16)]),
       st.floats(2.0 ** -12, 1.0, width=32), st.floats(2.0 ** -12, 1.0, width=32),
       st.sampled_from(["double", "single"]), st.integers(0, 99))
def test_requantize_is_tflm_requantize(fmts, s_in, s_out, scheme, seed):
    """TFLite QUANTIZE between integer types: ``zo + MBQM(x - zi, QuantizeMultiplier(
    s_in / s_out))`` clamped, for every int8 / int16 pair."""
    fi, fo = fmts
    zi, zo = (-5, 9) if fi.bits == 8 and fo.bits == 8 else (0, 0)
    c = codes(fi, seed=seed)
    out = sp(fo, s_out, zo)
    vals = run([unary(Requantize)], [LayerPlan("a", output=out, requant=scheme)], sp(fi, s_in, zi),
               c)
    want = [requant_oracle(int(v), s_in, zi, s_out, zo, fo, scheme == "single")
            for v in c.ravel()]
    np.testing.assert_array_equal(vals["y"].codes.ravel(), want)


def test_requantize_float32_pow2_and_identity():
    """float32: onnxruntime's DequantizeLinear + QuantizeLinear (exact here); pow2: a cast;
    no plan output: the codes unchanged; the float reference is the identity."""
    c = codes(INT8)
    s_in, s_out = np.float32(0.1), np.float32(0.3)
    vals = run([unary(Requantize)], [LayerPlan("a", output=sp(INT8, s_out, 4), requant="float32")],
               sp(INT8, s_in, -3), c)
    real = [Fraction(float(np.float32(float(s_in) * (int(v) + 3)))) / Fraction(float(s_out))
            for v in c.ravel()]
    want = [min(127, max(-128, round(q) + 4)) for q in real]  # round: half to even
    np.testing.assert_array_equal(vals["y"].codes.ravel(), want)
    vals = run([unary(Requantize)], [LayerPlan("a", output=TensorSpec.pow2(8, 2),
                                               rounding="half_even")], TensorSpec.pow2(8, 4), c)
    np.testing.assert_array_equal(vals["y"].codes, np.clip(np.rint(c / 4), -128, 127))
    vals = run([unary(Requantize)], [], sp(INT8, s_in, -3), c)
    np.testing.assert_array_equal(vals["y"].codes, c)
    g = Graph(nodes=(unary(Requantize),), inputs=("x",), input_shapes={"x": (None, 3)},
              outputs=("y",))
    x = np.array([[0.1, -2.5, 7.0]], np.float32)
    np.testing.assert_array_equal(run_float(g, x), x)


# --------------------------------------------------------------------------- Mul int16
def mul_oracle(a, b, sa, sb, sy, zy, fmt, single):
    real = float(Fraction(float(np.float32(sa))) * Fraction(float(np.float32(sb)))
                 / Fraction(float(np.float32(sy))))
    m, e = orc.quantize_multiplier(real, single)
    return max(fmt.min_code, min(fmt.max_code, orc.mbqm(a * b, m, e, single) + zy))


@settings(max_examples=N, deadline=None)
@given(st.floats(2.0 ** -14, 2.0 ** -6, width=32), st.floats(2.0 ** -14, 2.0 ** -6, width=32),
       st.floats(2.0 ** -14, 2.0 ** -6, width=32), st.sampled_from(["double", "single"]),
       st.integers(0, 99))
def test_int16_mul_is_tflm_mul(sa, sb, sy, scheme, seed):
    """TFLM's int16 MUL (zero points 0): ``MBQM(a * b, QuantizeMultiplier(double(s_a) *
    double(s_b) / double(s_y)))`` clamped to int16, with broadcasting."""
    a = codes(INT16, (2, 3, 4, 4), seed)
    b = codes(INT16, (2, 3, 1, 1), seed + 1)
    from fxp.sim.residual_mul import compile_mul

    node = Mul(name="m", inputs=("x", "g"), outputs=("y",))
    step = compile_mul(node, LayerPlan("m", output=sp(INT16, sy), requant=scheme),
                       (sp(INT16, sa), sp(INT16, sb)))
    got, _ = step.op([a, b])
    bb = np.broadcast_to(b, a.shape)
    want = [mul_oracle(int(x), int(y), sa, sb, sy, 0, INT16, scheme == "single")
            for x, y in zip(a.ravel(), bb.ravel())]
    np.testing.assert_array_equal(got.ravel(), want)


def test_mul_multiplier_is_tflm_double_ratio():
    """Regression: TFLM forms ``s_a * s_b / s_y`` in double (mul_common.cc), LiteRT's mul.cc
    in float32; with the float32 ratio 25 of 1,800,000 and 169 of 784,000 int16 MUL outputs
    of models/tflite/activations_int16x8 differed from TFLM.  Here: scales whose two
    multipliers differ, and a product whose output they round apart."""
    from fxp.kernels.spec_qlinear import qlinear_mul_ratio
    from fxp.sim.residual_mul import compile_mul, tflite_mul_params

    sa, sb, sy = (np.float32(v) for v in (9.132385e-05, 3.0517578e-05, 7.441456e-05))
    exact = float(sa) * float(sb) / float(sy)
    assert tflite_mul_params(sa, sb, sy, "double") == orc.quantize_multiplier(exact)
    f32 = orc.quantize_multiplier(float(qlinear_mul_ratio(sa, sb, sy)))
    assert f32 != orc.quantize_multiplier(exact)
    node = Mul(name="m", inputs=("a", "b"), outputs=("y",))
    step = compile_mul(node, LayerPlan("m", output=sp(INT16, sy), requant="double"),
                       (sp(INT16, sa), sp(INT16, sb)))
    a = np.arange(-32768, 32768, 7, dtype=np.int64)
    b = np.full_like(a, 32767)
    got, _ = step.op([a, b])
    m, e = orc.quantize_multiplier(exact)
    want = np.array([orc.mbqm(int(x) * 32767, m, e, False) for x in a])
    lite = np.array([orc.mbqm(int(x) * 32767, *f32, False) for x in a])
    np.testing.assert_array_equal(got, np.clip(want, -32768, 32767))
    assert np.count_nonzero(np.clip(lite, -32768, 32767) != got) > 0


def test_int16_mul_refuses_zero_points():
    from fxp.sim.residual_mul import compile_mul

    node = Mul(name="m", inputs=("a", "b"), outputs=("y",))
    with pytest.raises(PlanError, match=r"'m' \(Mul\): TFLite's int16 MUL needs zero points 0"):
        compile_mul(node, LayerPlan("m", output=sp(INT16, 0.1), requant="double"),
                    (sp(INT16, 0.1, 3), sp(INT16, 0.1)))
    with pytest.raises(PlanError, match=r"'m' \(Mul\): the runtime kernel takes one 8-bit"):
        compile_mul(node, LayerPlan("m", output=sp(INT16, 0.1), requant="float32"),
                    (sp(INT16, 0.1), sp(INT16, 0.1)))


# --------------------------------------------------------------------------- float reference
def test_float_reference_of_the_new_nodes():
    """Tanh is float64 tanh rounded to float32; HardSwish is TFLite's float32 formula."""
    x = np.linspace(-5, 5, 41, dtype=np.float32).reshape(1, 41)
    for cls, want in ((Tanh, np.tanh(x.astype(np.float64)).astype(np.float32)),
                      (HardSwish, x * np.minimum(np.float32(6), np.maximum(np.float32(0),
                                                                            x + np.float32(3)))
                       / np.float32(6))):
        g = Graph(nodes=(unary(cls),), inputs=("x",), input_shapes={"x": (None, 41)},
                  outputs=("y",))
        np.testing.assert_array_equal(run_float(g, x), want)
