"""The integer engine's non-weighted steps against the runtime-exact ops and onnxruntime.

Single-node (or two-node) IR graphs are compiled with a hand-made plan under
each scheme and run by :func:`fxp.sim.integer.run_integer`; the graph input's
floats are built so that they quantize back to chosen codes.  Every output
must equal, element for element:

* ``float32``: the :mod:`fxp.ops.qlinear` / :mod:`fxp.ops.qlinear_pool` function
  on the same codes, and onnxruntime's own integers for one-node QLinear
  models (``com.microsoft``) and ``DequantizeLinear -> op -> QuantizeLinear``
  float islands;
* ``double`` / ``single``: the :mod:`fxp.ops.tflite` function, or the
  Python-int oracles of ``tests/oracles_qlinear.py`` (ReluX, concatenation
  with fixed-point scaling, PAD + VALID average pool);
* ``pow2`` Sigmoid / LeakyRelu: an exact Fraction oracle (LeakyRelu) or the
  float64 logistic rounded once (Sigmoid).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import FormatError, PlanError, UnsupportedOpError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Add, AvgPool2D, Clip, Concat, GlobalAvgPool, LeakyRelu, ReLU, Sigmoid
from fxp.ops import qlinear as Q
from fxp.ops import qlinear_pool as QP
from fxp.ops import tflite as T
from fxp.plan.plan import LayerPlan, Plan, TensorSpec
from fxp.sim.compile import compile_plan
from fxp.sim.float_ref import run_float
from fxp.sim.integer import run_integer
from tests import oracles
from tests import oracles_qlinear as OQ
from tests.strategies_qlinear import scales, zero_points

INT8, UINT8 = QFormat.integer(8), QFormat.integer(8, signed=False)
INF = float("inf")


def spec(fmt, s, zp) -> TensorSpec:
    return TensorSpec(fmt, (float(np.float32(s)),), int(zp))


def floats_for(codes, sp: TensorSpec) -> np.ndarray:
    """Float inputs that quantize (half even, float64 divide) exactly to ``codes``."""
    if sp.is_pow2:
        return np.ldexp(codes.astype(np.float64), -sp.fmt.frac_bits).astype(np.float32)
    return ((codes - sp.zero_point) * sp.scales[0]).astype(np.float32)


def run(nodes, layers, in_spec, codes, out="y"):
    """Compile and run; returns (every tensor's IntValue, counters)."""
    g = Graph(nodes=tuple(nodes), inputs=("x",), input_shapes={"x": (None, *codes.shape[1:])},
              outputs=(out,))
    model = compile_plan(g, Plan(input=in_spec, layers=tuple(layers)))
    counters = {}
    res = run_integer(model, floats_for(codes, in_spec), counters, keep=True)
    assert np.array_equal(res.values["x"].codes, codes)
    return res.values, counters


def lp(name, scheme, out=None, **kw) -> LayerPlan:
    return LayerPlan(name, output=out, requant=scheme, rounding="half_even", **kw)


def rq(name, src, dst) -> Clip:
    """An unbounded Clip: under a plan entry with another output spec, a pure requantization."""
    return Clip(name=name, inputs=(src,), outputs=(dst,), min_value=-INF, max_value=INF)


def codes_for(rng, fmt, shape):
    c = rng.integers(fmt.min_code, fmt.max_code + 1, shape)
    c.flat[:2] = fmt.min_code, fmt.max_code
    return c.astype(np.int64)


def relux_oracle(c, sin, sout, lo, hi, single):
    """TFLite ReluX in Python ints: zo + MBQM(x - zi, QuantizeMultiplier(si / so)), clamped."""
    m, e = OQ.quantize_multiplier(float(np.float32(sin.scales[0])) /
                                  float(np.float32(sout.scales[0])), single)
    act = "relu" if (lo, hi) == (0.0, INF) else "none"
    alo, ahi = OQ.tflite_activation(act, sout.scales[0], sout.zero_point, sout.fmt.min_code,
                                    sout.fmt.max_code)
    mult = oracles.mbqm_single if single else oracles.mbqm_double
    return np.array([OQ.fit(mult(int(v) - sin.zero_point, m, e)[0] + sout.zero_point,
                            alo, ahi)[0] for v in c.ravel()]).reshape(c.shape)


# --------------------------------------------------------------------------- Add
@settings(max_examples=60)
@given(fmt=st.sampled_from([INT8, UINT8]), scheme=st.sampled_from(["float32", "double", "single"]),
       data=st.data())
def test_add_equals_runtime_op(fmt, scheme, data):
    """Add of the input and a requantized copy equals qlinear_add / tflite_add on the same
    codes; the requantizing Clip equals the float island (float32) or TFLite ReluX."""
    sa, sb, sy = data.draw(scales(-8, 0)), data.draw(scales(-8, 0)), data.draw(scales(-8, 0))
    a, b, y = (spec(fmt, s, data.draw(zero_points(fmt))) for s in (sa, sb, sy))
    if scheme != "float32":
        try:
            T.tflite_add_params(sa, sb, sy, scheme=scheme)
            OQ.quantize_multiplier(float(sa) / float(sb))
        except FormatError:
            assume(False)
        assume(-31 <= math.frexp(float(np.float32(sa)) / float(np.float32(sb)))[1] <= 30)
    codes = codes_for(np.random.default_rng(data.draw(st.integers(0, 99))), fmt, (2, 3, 4, 4))
    nodes = [rq("rq", "x", "b"), Add(name="add", inputs=("x", "b"), outputs=("y",))]
    vals, counters = run(nodes, [lp("rq", scheme, b), lp("add", scheme, y)], a, codes)
    cb = vals["b"].codes
    if scheme == "float32":
        want_b = np.array([OQ.quantize_linear(OQ.dequantize(int(v), sa, a.zero_point), sb,
                                              b.zero_point, fmt.min_code, fmt.max_code)[0]
                           for v in codes.ravel()]).reshape(codes.shape)
        want, n = Q.qlinear_add(codes, cb, a_scale=sa, a_zero_point=a.zero_point, b_scale=sb,
                                b_zero_point=b.zero_point, y_scale=sy, y_zero_point=y.zero_point,
                                fmt=fmt)
    else:
        want_b = relux_oracle(codes, a, b, -INF, INF, scheme == "single")
        want, n = T.tflite_add(codes, cb, a_scale=sa, a_zero_point=a.zero_point, b_scale=sb,
                               b_zero_point=b.zero_point, y_scale=sy, y_zero_point=y.zero_point,
                               fmt=fmt, scheme=scheme)
    np.testing.assert_array_equal(cb, want_b)
    np.testing.assert_array_equal(vals["y"].codes, want)
    assert counters["add"].output_saturations == n


# --------------------------------------------------------------------------- Concat
@pytest.mark.parametrize("scheme", ["float32", "double", "single"])
@pytest.mark.parametrize("fmt", [INT8, UINT8])
def test_concat_requantizes_each_input(scheme, fmt):
    """Concat of [x, requant(x), x] into a third spec: qlinear_concat (float32) or TFLite's
    fixed-point-scaled concatenation (Python-int oracle); an input already in the output's
    spec is copied."""
    rng = np.random.default_rng(3)
    a, b = spec(fmt, 0.05, fmt.min_code + 100), spec(fmt, 0.031, fmt.min_code + 7)
    y = spec(fmt, 0.07, fmt.min_code + 120)
    codes = codes_for(rng, fmt, (2, 2, 3, 3))
    nodes = [rq("rq", "x", "b"), rq("rq2", "x", "c"),
             Concat(name="cat", inputs=("x", "b", "c"), outputs=("y",), axis=1)]
    vals, counters = run(nodes, [lp("rq", scheme, b), lp("rq2", scheme, y), lp("cat", scheme, y)],
                         a, codes)
    parts = [codes, vals["b"].codes, vals["c"].codes]
    if scheme == "float32":
        want, n = Q.qlinear_concat(parts, scales=[0.05, 0.031, 0.07],
                                   zero_points=[a.zero_point, b.zero_point, y.zero_point],
                                   y_scale=0.07, y_zero_point=y.zero_point, axis=1, fmt=fmt)
    else:
        out, n = [], 0
        for p, s in zip(parts, (a, b, y), strict=True):
            if s == y:
                out.append(p)
                continue
            m, e = OQ.quantize_multiplier(float(np.float32(s.scales[0])) / float(np.float32(0.07)),
                                          scheme == "single")
            mult = oracles.mbqm_single if scheme == "single" else oracles.mbqm_double
            fitted = [OQ.fit(mult(int(v) - s.zero_point, m, e)[0] + y.zero_point,
                             fmt.min_code, fmt.max_code) for v in p.ravel()]
            out.append(np.array([f[0] for f in fitted]).reshape(p.shape))
            n += sum(f[1] for f in fitted)
        want = np.concatenate(out, axis=1)
    np.testing.assert_array_equal(vals["y"].codes, want)
    assert counters["cat"].output_saturations == n
    np.testing.assert_array_equal(vals["y"].codes[:, 4:], vals["c"].codes)  # copied


# --------------------------------------------------------------------------- pools
POOLS = [((2, 2), (2, 2), (0, 0, 0, 0), False), ((3, 3), (2, 2), (1, 1, 1, 1), True),
         ((3, 3), (1, 1), (1, 0, 1, 2), False)]


@pytest.mark.parametrize("geom", POOLS)
@pytest.mark.parametrize("fmt", [INT8, UINT8])
def test_avgpool_float32_is_qlinear(fmt, geom):
    """AvgPool2D (plan output spec != input) equals qlinear_avgpool with the node's
    count_include_pad."""
    kernel, strides, pads, cip = geom
    x, y = spec(fmt, 0.04, fmt.min_code + 90), spec(fmt, 0.03, fmt.min_code + 11)
    codes = codes_for(np.random.default_rng(4), fmt, (2, 3, 7, 7))
    node = AvgPool2D(name="p", inputs=("x",), outputs=("y",), kernel=kernel, strides=strides,
                     pads=pads, count_include_pad=cip)
    vals, _ = run([node], [lp("p", "float32", y)], x, codes)
    want, _ = QP.qlinear_avgpool(codes, kernel, strides=strides, pads=pads, count_include_pad=cip,
                                 x_scale=0.04, x_zero_point=x.zero_point, y_scale=0.03,
                                 y_zero_point=y.zero_point, fmt=fmt)
    np.testing.assert_array_equal(vals["y"].codes, want)


@pytest.mark.parametrize("geom", POOLS)
@pytest.mark.parametrize("scheme", ["double", "single"])
def test_avgpool_tflite_raw_codes(scheme, geom):
    """TFLite AVERAGE_POOL_2D on raw codes, half away from zero; count_include_pad with
    padding is PAD(zero point) + VALID pool.  Python-int oracle per window."""
    kernel, strides, pads, cip = geom
    x = spec(INT8, 0.04, -37)
    codes = codes_for(np.random.default_rng(5), INT8, (2, 2, 7, 7))
    node = AvgPool2D(name="p", inputs=("x",), outputs=("y",), kernel=kernel, strides=strides,
                     pads=pads, count_include_pad=cip)
    vals, _ = run([node], [lp("p", scheme)], x, codes)
    h, w = codes.shape[2:]
    got = vals["y"].codes
    for n in range(codes.shape[0]):
        for c in range(codes.shape[1]):
            for oy, ox, taps, _ in OQ.windows(h, w, kernel, strides, pads):
                vs = [int(codes[n, c, i, j]) for i, j in taps]
                count = len(vs)
                if cip:
                    vs += [x.zero_point] * (kernel[0] * kernel[1] - len(vs))
                    count = kernel[0] * kernel[1]
                assert got[n, c, oy, ox] == OQ.c_div_half_away(sum(vs), count)


@pytest.mark.parametrize("scheme", ["float32", "double", "single"])
def test_global_avgpool_runtime_op(scheme):
    """GlobalAvgPool equals qlinear_global_avgpool / tflite_mean_hw."""
    x, y = spec(INT8, 0.04, -20), spec(INT8, 0.01, 5)
    codes = codes_for(np.random.default_rng(6), INT8, (3, 4, 5, 5))
    vals, counters = run([GlobalAvgPool(name="g", inputs=("x",), outputs=("y",))],
                         [lp("g", scheme, y)], x, codes)
    kw = dict(x_scale=0.04, x_zero_point=-20, y_scale=0.01, y_zero_point=5, fmt=INT8)
    want, n = (QP.qlinear_global_avgpool(codes, **kw) if scheme == "float32"
               else T.tflite_mean_hw(codes, scheme=scheme, **kw))
    np.testing.assert_array_equal(vals["y"].codes, want)
    assert counters["g"].output_saturations == n


def test_pow2_avgpool_unchanged():
    """Power-of-two pools keep fxp's exact divide of raw codes (zero point 0)."""
    from fxp.ops import layers as L

    codes = codes_for(np.random.default_rng(7), INT8, (1, 2, 5, 5))
    node = AvgPool2D(name="p", inputs=("x",), outputs=("y",), kernel=(3, 3), pads=(1, 1, 1, 1))
    vals, _ = run([node], [LayerPlan("p", rounding="half_even")], TensorSpec.pow2(8, 3), codes)
    np.testing.assert_array_equal(vals["y"].codes, L.avgpool2d_int(
        codes, (3, 3), "half_even", pads=(1, 1, 1, 1)))


# --------------------------------------------------------------------------- activations
@pytest.mark.parametrize("fmt", [INT8, UINT8])
@pytest.mark.parametrize("op", ["sigmoid", "leaky_relu"])
def test_table_ops_float32(op, fmt):
    """Sigmoid / LeakyRelu under float32 equal qlinear_sigmoid / qlinear_leaky_relu on all
    256 codes."""
    grid = np.arange(fmt.min_code, fmt.max_code + 1).reshape(1, 1, 16, 16)
    x, y = spec(fmt, 0.06, fmt.min_code + 130), spec(fmt, 1 / 256 if op == "sigmoid" else 0.05,
                                                      fmt.min_code + (0 if op == "sigmoid" else 99))
    kw = dict(x_scale=0.06, x_zero_point=x.zero_point, y_scale=y.scales[0],
              y_zero_point=y.zero_point, fmt=fmt)
    if op == "sigmoid":
        node, want = Sigmoid(name="s", inputs=("x",), outputs=("y",)), Q.qlinear_sigmoid(grid, **kw)
    else:
        node = LeakyRelu(name="s", inputs=("x",), outputs=("y",), alpha=0.3)
        want = Q.qlinear_leaky_relu(grid, alpha=0.3, **kw)
    vals, counters = run([node], [lp("s", "float32", y)], x, grid)
    np.testing.assert_array_equal(vals["y"].codes, want[0])
    assert counters["s"].output_saturations == want[1]


@pytest.mark.parametrize("scheme", ["float32", "double", "single"])
@pytest.mark.parametrize("bounds", [(0.0, INF), (-0.5, 1.25), (0.0, 6.0)])
def test_relu_clip_same_and_other_spec(scheme, bounds):
    """ReLU/Clip into the same spec clamp at the runtime's quantized bounds; into another
    spec they are onnxruntime's float island (float32) or TFLite ReluX."""
    lo, hi = bounds
    x, y = spec(INT8, 0.03, -9), spec(INT8, 0.021, 14)
    codes = np.arange(-128, 128).reshape(1, 1, 16, 16)
    mk = (lambda n, o: ReLU(name=n, inputs=("x",), outputs=(o,))) if bounds == (0.0, INF) \
        else (lambda n, o: Clip(name=n, inputs=("x",), outputs=(o,), min_value=lo, max_value=hi))
    for out in (x, y):
        vals, _ = run([mk("a", "y")], [lp("a", scheme, out)], x, codes)
        got = vals["y"].codes
        if scheme == "float32":
            want = [OQ.quantize_linear(min(max(OQ.dequantize(int(v), 0.03, -9), Fraction(lo)),
                                           Fraction(hi)) if hi < INF else
                                       max(OQ.dequantize(int(v), 0.03, -9), Fraction(lo)),
                                       out.scales[0], out.zero_point, -128, 127)[0]
                    for v in codes.ravel()]
            np.testing.assert_array_equal(got.ravel(), want)
        else:
            single = scheme == "single"
            lo_c = -128 if lo == -INF else max(-128, out.zero_point + _round_away(lo, out))
            hi_c = 127 if hi == INF else min(127, out.zero_point + _round_away(hi, out))
            want = np.clip(relux_oracle(codes, x, out, -INF, INF, single), lo_c, hi_c)
            np.testing.assert_array_equal(got, want)


def _round_away(v, sp):
    q = OQ.r32(Fraction(v) / OQ.f32(sp.scales[0]))
    return math.floor(abs(q) + Fraction(1, 2)) * (1 if q >= 0 else -1)


@settings(max_examples=40)
@given(frac_in=st.integers(0, 7), frac_out=st.integers(0, 7), alpha=st.floats(-2, 2),
       rounding=st.sampled_from(["half_even", "half_up", "floor", "half_away"]))
def test_pow2_leaky_relu_exact(frac_in, frac_out, alpha, rounding):
    """pow2 LeakyRelu: x * float32(alpha) rounded once into the output, saturated (Fractions)."""
    src, out = TensorSpec.pow2(8, frac_in), TensorSpec.pow2(8, frac_out)
    codes = np.arange(-128, 128).reshape(1, 1, 16, 16)
    node = LeakyRelu(name="l", inputs=("x",), outputs=("y",), alpha=alpha)
    vals, _ = run([node], [LayerPlan("l", output=out, rounding=rounding)], src, codes)
    a = Fraction(float(np.float32(alpha)))
    want = []
    for v in codes.ravel():
        real = Fraction(int(v), 2 ** frac_in) * (1 if v >= 0 else a)
        r = oracles.round_fraction(real * 2 ** frac_out, rounding)
        want.append(min(max(r, -128), 127))
    np.testing.assert_array_equal(vals["y"].codes.ravel(), want)


def test_pow2_sigmoid_rounds_float64_logistic():
    """pow2 Sigmoid: the float64 logistic of the exact input value, rounded once."""
    codes = np.arange(-128, 128).reshape(1, 1, 16, 16)
    node = Sigmoid(name="s", inputs=("x",), outputs=("y",))
    out = TensorSpec.pow2(8, 8, signed=False)
    vals, counters = run([node], [LayerPlan("s", output=out, rounding="half_even")],
                         TensorSpec.pow2(8, 4), codes)
    real = 1 / (1 + np.exp(-codes / 16.0))
    want = np.minimum(np.rint(real * 256), 255)
    np.testing.assert_array_equal(vals["y"].codes, want)
    assert counters["s"].output_saturations == int(np.count_nonzero(np.rint(real * 256) > 255))


# --------------------------------------------------------------------------- refusals
def _compile(nodes, layers, in_spec, shape=(1, 2, 4, 4), out="y"):
    g = Graph(nodes=tuple(nodes), inputs=("x",), input_shapes={"x": (None, *shape[1:])},
              outputs=(out,))
    return compile_plan(g, Plan(input=in_spec, layers=tuple(layers)))


A8 = spec(INT8, 0.05, 3)


@pytest.mark.parametrize(("nodes", "layers", "err", "match"), [
    ([rq("rq", "x", "b"), Add(name="add", inputs=("x", "b"), outputs=("y",))],
     [lp("rq", "float32", spec(INT8, 0.1, 0))], PlanError, r"'add'.*give it an output spec"),
    ([Sigmoid(name="s", inputs=("x",), outputs=("y",))], [lp("s", "double", A8)],
     PlanError, r"'s'.*int8 LOGISTIC writes codes of scale 0.00390625 and zero point -128"),
    ([LeakyRelu(name="s", inputs=("x",), outputs=("y",))], [lp("s", "double", A8)],
     UnsupportedOpError, r"'s'.*TFLite LeakyRelu is not implemented"),
    ([AvgPool2D(name="p", inputs=("x",), outputs=("y",), kernel=(2, 2))],
     [lp("p", "single", spec(INT8, 0.07, 3))], PlanError, r"'p'.*AVERAGE_POOL_2D"),
    ([AvgPool2D(name="p", inputs=("x",), outputs=("y",), kernel=(2, 2))], [], PlanError,
     r"'p'.*no plan entry"),
    ([GlobalAvgPool(name="g", inputs=("x",), outputs=("y",))], [lp("g", "pow2", A8)], PlanError,
     r"'g'.*requant 'pow2' needs power-of-two"),
    ([Sigmoid(name="s", inputs=("x",), outputs=("y",))], [lp("s", "float32", spec(INT8, 1.0, 0))
                                                          .with_(output=TensorSpec.pow2(8, 7))],
     PlanError, r"'s'.*affine per-tensor output"),
    ([rq("rq", "x", "b"), Add(name="add", inputs=("x", "b"), outputs=("y",))],
     [lp("rq", "float32", spec(UINT8, 0.1, 0)), lp("add", "float32", A8)], PlanError,
     r"'add'.*one 8-bit integer type"),
])
def test_refusals_name_the_node(nodes, layers, err, match):
    """Each refused plan raises a one-line error naming the node."""
    with pytest.raises(err, match=match):
        _compile(nodes, layers, A8)


def test_refusals_pow2_and_uint8_mean():
    """pow2 inputs refuse an affine requant; TFLite MEAN refuses uint8; pow2 Sigmoid needs an
    output spec."""
    gap = GlobalAvgPool(name="g", inputs=("x",), outputs=("y",))
    with pytest.raises(PlanError, match=r"'g'.*requant 'double' needs affine inputs"):
        _compile([gap], [lp("g", "double", A8)], TensorSpec.pow2(8, 4))
    u = spec(UINT8, 0.05, 3)
    with pytest.raises(PlanError, match=r"'g'.*MEAN takes int8"):
        _compile([gap], [lp("g", "double", u)], u)
    with pytest.raises(PlanError, match=r"'s'.*plan entry with an output spec"):
        _compile([Sigmoid(name="s", inputs=("x",), outputs=("y",))], [], TensorSpec.pow2(8, 4))


# --------------------------------------------------------------------------- onnxruntime
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _ort(nodes, x_codes, x_dtype, consts, y_type):
    from onnx import TensorProto, helper, numpy_helper

    xt = TensorProto.INT8 if x_dtype == np.int8 else TensorProto.UINT8
    g = helper.make_graph(nodes, "one", [helper.make_tensor_value_info("x", xt, x_codes.shape)],
                          [helper.make_tensor_value_info("y", y_type, None)],
                          initializer=[numpy_helper.from_array(np.asarray(v), k)
                                       for k, v in consts.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x_codes.astype(x_dtype)})[0].astype(np.int64)


@pytest.mark.parametrize("fmt", [INT8, UINT8])
def test_engine_equals_onnxruntime_qlinear(fmt):
    """Engine output == onnxruntime for one-node QLinearAdd (x + x at another scale),
    QLinearGlobalAveragePool, QLinearAveragePool and QLinearSigmoid."""
    from onnx import TensorProto, helper

    dt, tt = (np.int8, TensorProto.INT8) if fmt.signed else (np.uint8, TensorProto.UINT8)
    codes = codes_for(np.random.default_rng(8), fmt, (2, 3, 6, 6))
    x = spec(fmt, 0.043, fmt.min_code + 101)
    y = spec(fmt, 0.061, fmt.min_code + 77)
    q = {"sx": np.float32(0.043), "zx": np.array(x.zero_point, dt),
         "sy": np.float32(0.061), "zy": np.array(y.zero_point, dt)}
    ms = "com.microsoft"
    cases = [
        ([Add(name="n", inputs=("x", "x"), outputs=("y",))],
         helper.make_node("QLinearAdd", ["x", "sx", "zx", "x", "sx", "zx", "sy", "zy"], ["y"],
                          domain=ms)),
        ([GlobalAvgPool(name="n", inputs=("x",), outputs=("y",))],
         helper.make_node("QLinearGlobalAveragePool", ["x", "sx", "zx", "sy", "zy"], ["y"],
                          domain=ms, channels_last=0)),
        ([AvgPool2D(name="n", inputs=("x",), outputs=("y",), kernel=(3, 3), strides=(2, 2),
                    pads=(1, 1, 1, 1), count_include_pad=True)],
         helper.make_node("QLinearAveragePool", ["x", "sx", "zx", "sy", "zy"], ["y"], domain=ms,
                          kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                          count_include_pad=1)),
        ([Sigmoid(name="n", inputs=("x",), outputs=("y",))],
         helper.make_node("QLinearSigmoid", ["x", "sx", "zx", "sy", "zy"], ["y"], domain=ms)),
    ]
    for ir_nodes, onnx_node in cases:
        vals, _ = run(ir_nodes, [lp("n", "float32", y)], x, codes)
        want = _ort([onnx_node], codes, dt, q, tt)
        assert int(np.count_nonzero(vals["y"].codes != want)) == 0, onnx_node.op_type


@pytest.mark.parametrize("op", ["Relu", "Clip", "LeakyRelu"])
def test_float_island_equals_onnxruntime_qdq(op):
    """DequantizeLinear -> op -> QuantizeLinear in onnxruntime (no fusion) == the engine's
    ReLU/Clip into another spec (float32) and a float_layer LeakyRelu island."""
    from onnx import TensorProto, helper

    codes = np.arange(-128, 128).reshape(1, 1, 16, 16)
    x, y = spec(INT8, 0.043, 11), spec(INT8, 0.017, -30)
    q = {"sx": np.float32(0.043), "zx": np.int8(11), "sy": np.float32(0.017), "zy": np.int8(-30),
         "lo": np.float32(-0.7), "hi": np.float32(1.9)}
    mid = {"Relu": helper.make_node("Relu", ["d"], ["f"]),
           "Clip": helper.make_node("Clip", ["d", "lo", "hi"], ["f"]),
           "LeakyRelu": helper.make_node("LeakyRelu", ["d"], ["f"], alpha=0.15)}[op]
    nodes = [helper.make_node("DequantizeLinear", ["x", "sx", "zx"], ["d"]), mid,
             helper.make_node("QuantizeLinear", ["f", "sy", "zy"], ["y"])]
    want = _ort(nodes, codes, np.int8, q, TensorProto.INT8)
    ir_node = {"Relu": ReLU(name="n", inputs=("x",), outputs=("y",)),
               "Clip": Clip(name="n", inputs=("x",), outputs=("y",),
                            min_value=float(np.float32(-0.7)), max_value=float(np.float32(1.9))),
               "LeakyRelu": LeakyRelu(name="n", inputs=("x",), outputs=("y",), alpha=0.15)}[op]
    plan = lp("n", "float32", y, float_layer=op == "LeakyRelu")
    vals, _ = run([ir_node], [plan], x, codes)
    assert int(np.count_nonzero(vals["y"].codes != want)) == 0


def test_onnx_sigmoid_leaky_relu_import_and_float_reference():
    """ONNX Sigmoid / LeakyRelu import to the new IR nodes; the float reference matches
    onnxruntime within float32 tolerance; a non-float alpha attribute is refused."""
    from onnx import helper

    from fxp.errors import ModelImportError
    from fxp.frontends.onnx_import import load_onnx
    from tests.builders import OnnxBuilder, assert_close_to_ort, run_ort

    b = OnnxBuilder((2, 3, 3))
    s = b.node("Sigmoid", ["x"], None)
    y = b.node("LeakyRelu", [s], None, alpha=-0.4)
    model = b.model(y)
    g = load_onnx(model)
    assert [type(n).__name__ for n in g.nodes] == ["Sigmoid", "LeakyRelu"]
    assert g.nodes[1].alpha == pytest.approx(-0.4)
    xs = np.random.default_rng(9).normal(0, 3, (4, 2, 3, 3)).astype(np.float32)
    assert_close_to_ort(run_float(g, xs), run_ort(model, xs))
    bad = OnnxBuilder((2, 3, 3))
    bad.nodes.append(helper.make_node("LeakyRelu", ["x"], ["y"], name="lr", alpha=1))
    with pytest.raises(ModelImportError, match="alpha"):
        load_onnx(bad.model("y"))
