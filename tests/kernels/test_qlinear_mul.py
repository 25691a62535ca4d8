"""Elementwise Mul kernels (issue 14): onnxruntime QLinearMul / QDQ Mul, TFLite MUL,
fxp's power-of-two Mul.

* Hypothesis (>= 300 examples each): the Numba kernel and the numpy spec equal the
  ``Fraction`` oracles of ``tests/oracles_qlinear_mul.py`` element by element,
  saturation counts included; output scales are drawn so that ``sA*sB/sC`` is often
  dyadic (exact ties, rounded half to even) or tiny (saturation).
* onnxruntime (one ``QLinearMul`` node, com.microsoft): all 65,536 code pairs for
  int8 and uint8 under five scale sets (ties, saturation), each operand alone as a one-element
  tensor (onnxruntime's operand swap), and an SE-style broadcast.
* The engine step (:mod:`fxp.sim.residual_mul`) under ``pow2`` / ``double`` /
  ``single`` against the oracles.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import FormatError, PlanError
from fxp.ir.nodes import Mul
from fxp.ops.qlinear import qdq_mul, qlinear_mul
from fxp.plan.plan import LayerPlan, RequantScheme, TensorSpec
from fxp.sim.residual_mul import compile_mul
from tests import oracles_qlinear_mul as O
from tests.strategies_qlinear import code_arrays, qformats, scales, zero_points

N = 300
F = np.float32


@st.composite
def mul_cases(draw):
    fmt = draw(qformats())
    sa, sb = draw(scales(-10, 0)), draw(scales(-10, 0))
    kind = draw(st.integers(0, 3))
    base = float(F(sa) * F(sb))
    if kind == 0:  # dyadic ratio: exact ties
        sy = F(base * 2.0 ** draw(st.integers(-6, 2)))
    elif kind == 1:  # tiny output scale: saturation
        sy = F(base / draw(st.integers(50, 5000)))
    else:
        sy = draw(scales(-14, 0))
    za, zb, zy = (draw(zero_points(fmt)) for _ in range(3))
    n = draw(st.integers(1, 12))
    shape = draw(st.sampled_from([((n,), (n,)), ((n,), (1,)), ((1,), (n,)), ((2, n), (2, 1)),
                                  ((1, n), (3, 1))]))
    return (fmt, draw(code_arrays(fmt, shape[0], za)), draw(code_arrays(fmt, shape[1], zb)),
            F(sa), za, F(sb), zb, F(sy), zy)


def _expect(oracle, a, b, *args):
    a2, b2 = np.broadcast_arrays(a, b)
    out = [oracle(int(x), int(y), *args) for x, y in zip(a2.ravel(), b2.ravel())]
    return np.array([o[0] for o in out]).reshape(a2.shape), sum(int(o[1]) for o in out)


def _kw(fmt, sa, za, sb, zb, sy, zy):
    return {"a_scale": sa, "a_zero_point": za, "b_scale": sb, "b_zero_point": zb,
            "y_scale": sy, "y_zero_point": zy, "fmt": fmt}


@settings(max_examples=N, deadline=None)
@given(mul_cases())
def test_qlinear_mul_equals_oracle(case):
    fmt, a, b, sa, za, sb, zb, sy, zy = case
    want, n = _expect(O.qlinear_mul, a, b, sa, za, sb, zb, sy, zy, fmt.min_code, fmt.max_code)
    for backend in ("numba", "numpy"):
        got, k = qlinear_mul(a, b, backend=backend, **_kw(fmt, sa, za, sb, zb, sy, zy))
        np.testing.assert_array_equal(got, want)
        assert k == n


@settings(max_examples=N, deadline=None)
@given(mul_cases())
def test_qdq_mul_equals_oracle(case):
    fmt, a, b, sa, za, sb, zb, sy, zy = case
    want, n = _expect(O.qdq_mul, a, b, sa, za, sb, zb, sy, zy, fmt.min_code, fmt.max_code)
    for backend in ("numba", "numpy"):
        got, k = qdq_mul(a, b, backend=backend, **_kw(fmt, sa, za, sb, zb, sy, zy))
        np.testing.assert_array_equal(got, want)
        assert k == n


def _spec(s, z, fmt):
    return TensorSpec(fmt, scales=(float(s),), zero_point=int(z))


@settings(max_examples=N, deadline=None)
@given(mul_cases(), st.sampled_from(["double", "single"]))
def test_tflite_mul_step_equals_oracle(case, scheme):
    fmt, a, b, sa, za, sb, zb, sy, zy = case
    node = Mul(name="m", inputs=("a", "b"), outputs=("y",))
    lp = LayerPlan("m", output=_spec(sy, zy, fmt), requant=RequantScheme.from_string(scheme))
    try:
        step = compile_mul(node, lp, (_spec(sa, za, fmt), _spec(sb, zb, fmt)))
    except PlanError as e:  # shift outside TFLite's range: refused at Prepare
        assert "outside TFLite's range" in str(e)
        return
    want, n = _expect(O.tflite_mul, a, b, sa, za, sb, zb, sy, zy, fmt.min_code, fmt.max_code,
                      scheme == "single")
    got, k = step.op([np.asarray(a, np.int64), np.asarray(b, np.int64)])
    np.testing.assert_array_equal(got, want)
    assert k >= n


@settings(max_examples=N, deadline=None)
@given(st.integers(2, 12), st.integers(2, 12), st.integers(0, 6), st.integers(0, 6),
       st.integers(-4, 10), st.data())
def test_pow2_mul_step_equals_oracle(ba, bb, fa, fb, fy, data):
    fa_, fb_ = QFormat.from_frac(ba, min(fa, ba)), QFormat.from_frac(bb, min(fb, bb))
    fy_ = QFormat.from_frac(8, fy)
    a = data.draw(code_arrays(fa_, (5,)))
    b = data.draw(code_arrays(fb_, (1,)))
    node = Mul(name="m", inputs=("a", "b"), outputs=("y",))
    lp = LayerPlan("m", output=TensorSpec(fy_), rounding="half_up", output_overflow="saturate")
    step = compile_mul(node, lp, (TensorSpec(fa_), TensorSpec(fb_)))
    got, k = step.op([a, b])
    out = [O.pow2_mul(int(x), fa_.frac_bits, int(b[0]), fb_.frac_bits, fy, fy_.min_code,
                      fy_.max_code) for x in a]
    np.testing.assert_array_equal(got, [o[0] for o in out])
    assert k == sum(o[1] for o in out)
    exact = compile_mul(node, None, (TensorSpec(fa_), TensorSpec(fb_)))  # no plan: exact
    p, _ = exact.op([a, b])
    assert exact.out_spec.fmt.frac_bits == fa_.frac_bits + fb_.frac_bits
    np.testing.assert_array_equal(p, a * b)


def test_errors_name_the_problem():
    i8 = QFormat.integer(8)
    with pytest.raises(FormatError, match="do not broadcast"):
        qlinear_mul(np.zeros(3, int), np.zeros(2, int), **_kw(i8, 0.1, 0, 0.1, 0, 0.1, 0))
    with pytest.raises(FormatError, match="ratio"):
        qlinear_mul([1], [1], **_kw(i8, 1e-30, 0, 1e-30, 0, 1e30, 0))
    node = Mul(name="m", inputs=("a", "b"), outputs=("y",))
    a = _spec(0.1, 0, i8)
    with pytest.raises(PlanError, match="'m'.*mixes"):
        compile_mul(node, None, (a, TensorSpec(QFormat.from_frac(8, 4))))
    with pytest.raises(PlanError, match="'m'.*output spec"):
        compile_mul(node, None, (a, a))
    with pytest.raises(PlanError, match="'m'.*at most 63"):
        compile_mul(node, None, (TensorSpec(QFormat.from_frac(40, 4)),) * 2)


# --------------------------------------------------------------------------- onnxruntime
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _ort_mul(dt, sa, za, sb, zb, sy, zy, a, b):
    from onnx import TensorProto as TP
    from onnx import helper

    tp = TP.INT8 if dt == np.int8 else TP.UINT8
    inits = [helper.make_tensor(n, TP.FLOAT, [], [float(v)]) for n, v in
             (("sa", sa), ("sb", sb), ("sy", sy))]
    inits += [helper.make_tensor(n, tp, [], [int(v)]) for n, v in (("za", za), ("zb", zb),
                                                                     ("zy", zy))]
    node = helper.make_node("QLinearMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"],
                            domain="com.microsoft")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", tp, a.shape),
                                        helper.make_tensor_value_info("b", tp, b.shape)],
                          [helper.make_tensor_value_info("y", tp, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid("com.microsoft", 1)])
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"a": a.astype(dt), "b": b.astype(dt)})[0].astype(np.int64)


# (sA, sB, sC / (sA*sB)): 1/m ratios, a dyadic one (ties), a small output scale
SCALE_SETS = [(0.1, 0.1, 1.0), (1 / 3, 0.2, 7.0), (0.7, 1 / 3, 6.0), (0.0625, 0.5, 0.125),
              (0.0123, 0.0371, 40.0)]


@pytest.mark.parametrize("signed", [True, False], ids=["int8", "uint8"])
@pytest.mark.parametrize("k", range(len(SCALE_SETS)))
def test_all_code_pairs_equal_onnxruntime(signed, k):
    fmt = QFormat.integer(8, signed=signed)
    dt = np.int8 if signed else np.uint8
    lo, hi = fmt.min_code, fmt.max_code
    rng = np.random.default_rng(k)
    sa, sb, m = SCALE_SETS[k]
    sa, sb = F(sa), F(sb)
    sy = F(float(sa * sb) * m)
    za, zb, zy = (int(rng.integers(lo, hi + 1)) for _ in range(3))
    codes = np.arange(lo, hi + 1)
    a, b = (v.ravel() for v in np.meshgrid(codes, codes, indexing="ij"))
    kw = _kw(fmt, sa, za, sb, zb, sy, zy)
    want = _ort_mul(dt, sa, za, sb, zb, sy, zy, a, b)
    got, _ = qlinear_mul(a, b, **kw)
    np.testing.assert_array_equal(got, want)
    # one-element operands (onnxruntime swaps a one-element A into MLAS's scalar B)
    for c in codes[::15]:
        one = np.array([c])
        np.testing.assert_array_equal(qlinear_mul(one, b, **kw)[0],
                                      _ort_mul(dt, sa, za, sb, zb, sy, zy, one, b))
        np.testing.assert_array_equal(qlinear_mul(a, one, **kw)[0],
                                      _ort_mul(dt, sa, za, sb, zb, sy, zy, a, one))


def test_se_broadcast_equals_onnxruntime():
    fmt = QFormat.integer(8, signed=False)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (2, 5, 4, 3))
    g = rng.integers(0, 256, (2, 5, 1, 1))
    args = (F(0.05), 3, F(1 / 255), 0, F(0.04), 7)
    want = _ort_mul(np.uint8, *args, x, g)
    got, _ = qlinear_mul(x, g, **_kw(fmt, *args))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(qlinear_mul(g, x, **_kw(fmt, *args))[0],
                                  _ort_mul(np.uint8, *args, g, x))
