"""fxp's QLinear ops against onnxruntime itself: one-node models, every element compared.

Each test builds one-node ONNX models with ``onnx.helper`` (domain
``com.microsoft`` for the QLinear ops), runs ``onnxruntime.InferenceSession``
on the CPU provider with default session options (unless a level is named) and
counts the elements where fxp's codes differ; every count must be 0 (the
counts are in the failure message).  Inputs: all 65,536 code pairs for
QLinearAdd, all 256 codes for the lookup-table ops, random and extreme codes
for Concat and the pools; scales drawn at random and tie-prone (equal or
power-of-two related).  Fixed parameter sets found by search are regression
cases: for them the unfused float32 formula (Add) or the unfused / exact
logistic (Sigmoid) disagrees with onnxruntime, so these tests can tell.
"""

from __future__ import annotations

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.kernels import spec_qlinear as spec
from fxp.ops.qlinear import (
    qdq_add,
    qlinear_add,
    qlinear_concat,
    qlinear_leaky_relu,
    qlinear_sigmoid,
)
from fxp.ops.qlinear_pool import qlinear_avgpool, qlinear_global_avgpool

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper

F32 = np.float32
FMTS = {"int8": (QFormat.integer(8), np.int8, TensorProto.INT8),
        "uint8": (QFormat.integer(8, signed=False), np.uint8, TensorProto.UINT8)}

# (signed, a_scale, a_zp, b_scale, b_zp, y_scale, y_zp): the unfused fixed part
# zC - (rA*zA + rB*zB) disagrees with onnxruntime somewhere on these.
ADD_REGRESSION = [
    (True, "0x1.4ca344p-5", 101, "0x1.1d57bp-10", 35, "0x1.6878ecp-8", -87),
    (False, "0x1.138316p-3", 223, "0x1.eb237p-10", 91, "0x1.957b2ap-9", 193),
    (True, "0x1.dfdf68p-7", -99, "0x1.6907eap-6", -1, "0x1.2f3086p-8", 36),
    (False, "0x1.5b78f2p-8", 232, "0x1.cb691ap-10", 101, "0x1.20fe7ep-8", 27),
]
# (signed, x_scale, x_zp, y_scale, y_zp): the logistic without FMAs, and the exact
# sigmoid, each give one table entry onnxruntime does not.
SIGMOID_REGRESSION = [
    (True, "0x1.778106p-1", 69, "0x1p-8", -128),
    (True, "0x1.02452ep-3", -56, "0x1.2b2f18p-13", 39),
    (True, "0x1.1ad9f6p-4", -45, "0x1p-8", -128),
    (False, "0x1.438542p-3", 105, "0x1.e49ecap-12", 17),
    (False, "0x1.e68de8p-5", 134, "0x1p-8", 0),
]


def _session(nodes, inputs, consts, out_type, level=None, path=None):
    graph = helper.make_graph(
        nodes, "one_node", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info("y", out_type, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if level is not None:
        so.graph_optimization_level = level
    if path is not None:
        so.optimized_model_filepath = str(path)
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def _qlinear(op, feeds: dict, consts: dict, order, dtype, ttype, **attrs):
    """Run one com.microsoft node; ``order`` lists its input names."""
    node = helper.make_node(op, order, ["y"], domain="com.microsoft", **attrs)
    inputs = [(k, ttype, v.shape) for k, v in feeds.items()]
    sess = _session([node], inputs, consts, ttype)
    return sess.run(None, {k: v.astype(dtype) for k, v in feeds.items()})[0].astype(np.int64)


def _q(dtype, s, z):
    return np.array(s, F32), np.array(z, dtype)


def _rng_params(rng, fmt, n):
    """n random (scales, zps) triples, half of them tie-prone."""
    out = []
    for i in range(n):
        sy = F32(np.exp(rng.uniform(-7, -2)))
        if i % 2:
            sa, sb = F32(sy * 2.0 ** rng.integers(-2, 3)), F32(sy * rng.integers(1, 9) / 4)
        else:
            sa, sb = (F32(np.exp(rng.uniform(-7, -2))) for _ in range(2))
        za, zb, zy = (int(rng.integers(fmt.min_code, fmt.max_code + 1)) for _ in range(3))
        out.append((sa, za, sb, zb, sy, zy))
    return out


def _unfused_add(a, b, sa, za, sb, zb, sy, zy, lo, hi):
    ra, rb = F32(F32(sa) / F32(sy)), F32(F32(sb) / F32(sy))
    fixed = F32(F32(zy) - F32(F32(ra * F32(za)) + F32(rb * F32(zb))))
    r = spec.fma_f32(a.astype(F32), ra, spec.fma_f32(b.astype(F32), rb, fixed))
    return np.clip(spec.cvtps_epi32(r), lo, hi)


@pytest.mark.parametrize("tname", ["int8", "uint8"])
def test_qlinear_add_all_code_pairs(tname):
    """QLinearAdd on all 65,536 (a, b) pairs for 12 random parameter sets and the
    regression sets: 0 differing elements; the unfused formula fails a regression set."""
    fmt, dtype, ttype = FMTS[tname]
    rng = np.random.default_rng(1 if fmt.signed else 2)
    params = _rng_params(rng, fmt, 12)
    regress = [(F32(float.fromhex(p[1])), p[2], F32(float.fromhex(p[3])), p[4],
                F32(float.fromhex(p[5])), p[6]) for p in ADD_REGRESSION if p[0] == fmt.signed]
    grid = np.arange(fmt.min_code, fmt.max_code + 1)
    a, b = np.repeat(grid, grid.size), np.tile(grid, grid.size)
    diffs, unfused_diffs = [], []
    for sa, za, sb, zb, sy, zy in params + regress:
        (ssa, zza), (ssb, zzb), (ssy, zzy) = _q(dtype, sa, za), _q(dtype, sb, zb), _q(dtype, sy, zy)
        got = _qlinear("QLinearAdd", {"a": a, "b": b}, {"sa": ssa, "za": zza, "sb": ssb, "zb": zzb,
                                                        "sy": ssy, "zy": zzy},
                       ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], dtype, ttype)
        mine, _ = qlinear_add(a, b, a_scale=sa, a_zero_point=za, b_scale=sb, b_zero_point=zb,
                              y_scale=sy, y_zero_point=zy, fmt=fmt)
        diffs.append(int(np.count_nonzero(mine != got)))
        unfused_diffs.append(int(np.count_nonzero(
            _unfused_add(a, b, sa, za, sb, zb, sy, zy, fmt.min_code, fmt.max_code) != got)))
    assert diffs == [0] * len(diffs), f"differing elements per parameter set: {diffs}"
    assert all(d > 0 for d in unfused_diffs[len(params):]), unfused_diffs


@pytest.mark.parametrize("tname", ["int8", "uint8"])
def test_qdq_add_default_fuses_unfused_runs_float(tname, tmp_path):
    """DQ -> Add -> Q: at the default level onnxruntime rewrites it to QLinearAdd (checked
    in the optimized model) and equals qlinear_add; with optimizations off it runs in float
    and equals qdq_add.  0 differing elements over all code pairs, 6 parameter sets."""
    fmt, dtype, ttype = FMTS[tname]
    grid = np.arange(fmt.min_code, fmt.max_code + 1)
    a, b = np.repeat(grid, grid.size), np.tile(grid, grid.size)
    nodes = [helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["da"]),
             helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["db"]),
             helper.make_node("Add", ["da", "db"], ["f"]),
             helper.make_node("QuantizeLinear", ["f", "sy", "zy"], ["y"])]
    diffs = {}
    for i, (sa, za, sb, zb, sy, zy) in enumerate(_rng_params(np.random.default_rng(3), fmt, 6)):
        consts = dict(zip(["sa", "za"], _q(dtype, sa, za), strict=True))
        consts |= dict(zip(["sb", "zb"], _q(dtype, sb, zb), strict=True))
        consts |= dict(zip(["sy", "zy"], _q(dtype, sy, zy), strict=True))
        feeds = {"a": a.astype(dtype), "b": b.astype(dtype)}
        kw = {"a_scale": sa, "a_zero_point": za, "b_scale": sb, "b_zero_point": zb, "y_scale": sy,
              "y_zero_point": zy, "fmt": fmt}
        inputs = [("a", ttype, a.shape), ("b", ttype, b.shape)]
        path = tmp_path / f"opt{i}.onnx"
        fused = _session(nodes, inputs, consts, ttype, path=path).run(None, feeds)[0]
        assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["QLinearAdd"]
        diffs[f"fused{i}"] = int(np.count_nonzero(qlinear_add(a, b, **kw)[0] != fused))
        plain = _session(nodes, inputs, consts, ttype,
                         level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL).run(None, feeds)[0]
        diffs[f"float{i}"] = int(np.count_nonzero(qdq_add(a, b, **kw)[0] != plain))
    assert set(diffs.values()) == {0}, diffs


def _exact_sigmoid_table(sx, zx, sy, zy, signed, lo, hi):
    v = spec.dequantize_table(sx, zx, signed).astype(np.float64)
    return spec.quantize_linear((1 / (1 + np.exp(-v))).astype(F32), sy, zy, lo, hi)[0]


@pytest.mark.parametrize("tname", ["int8", "uint8"])
def test_qlinear_sigmoid_and_leaky_relu_all_codes(tname):
    """QLinearSigmoid and QLinearLeakyRelu on all 256 codes, 30 random (scale, zp) pairs
    (a third with y_scale 1/256, zp at the bottom: the quantizer's sigmoid choice), 5
    alphas each, and the Sigmoid regression sets (where an exact sigmoid is wrong)."""
    fmt, dtype, ttype = FMTS[tname]
    lo, hi = fmt.min_code, fmt.max_code
    rng = np.random.default_rng(4 if fmt.signed else 5)
    x = np.arange(256, dtype=np.uint8).view(dtype).astype(np.int64)
    cases = [(F32(float.fromhex(p[1])), p[2], F32(float.fromhex(p[3])), p[4])
             for p in SIGMOID_REGRESSION if p[0] == fmt.signed]
    for i in range(30):
        sy, zy = ((F32(1 / 256), lo) if i % 3 == 0 else
                  (F32(np.exp(rng.uniform(-9, -3))), int(rng.integers(lo, hi + 1))))
        cases.append((F32(np.exp(rng.uniform(-8, 1))), int(rng.integers(lo, hi + 1)), sy, zy))
    diffs, exact_diffs = [], []
    for k, (sx, zx, sy, zy) in enumerate(cases):
        (qsx, qzx), (qsy, qzy) = _q(dtype, sx, zx), _q(dtype, sy, zy)
        consts = {"sx": qsx, "zx": qzx, "sy": qsy, "zy": qzy}
        order = ["x", "sx", "zx", "sy", "zy"]
        quant = {"x_scale": sx, "x_zero_point": zx, "y_scale": sy, "y_zero_point": zy, "fmt": fmt}
        got = _qlinear("QLinearSigmoid", {"x": x}, consts, order, dtype, ttype)
        diffs.append(int(np.count_nonzero(qlinear_sigmoid(x, **quant)[0] != got)))
        exact = _exact_sigmoid_table(sx, zx, sy, zy, fmt.signed, lo, hi)
        exact_diffs.append(int(np.count_nonzero(exact[x & 255] != got)))
        alpha = float(F32([0.01, 0.1, 0.2, 0.3333, rng.uniform(-1, 1)][k % 5]))
        got = _qlinear("QLinearLeakyRelu", {"x": x}, consts, order, dtype, ttype, alpha=alpha)
        diffs.append(int(np.count_nonzero(qlinear_leaky_relu(x, alpha=alpha, **quant)[0]
                                          != got)))
    assert diffs == [0] * len(diffs), f"differing elements per table: {diffs}"
    n_reg = sum(p[0] == fmt.signed for p in SIGMOID_REGRESSION)
    assert all(d > 0 for d in exact_diffs[:n_reg]), exact_diffs[:n_reg]


@pytest.mark.parametrize("tname", ["int8", "uint8"])
def test_qlinear_concat(tname):
    """QLinearConcat along axis 1 of three inputs (one already in the output quantization,
    copied), 20 random parameter sets with extreme codes: 0 differing elements."""
    fmt, dtype, ttype = FMTS[tname]
    lo, hi = fmt.min_code, fmt.max_code
    rng = np.random.default_rng(6 if fmt.signed else 7)
    diffs = []
    for _ in range(20):
        sy, zy = F32(np.exp(rng.uniform(-7, -1))), int(rng.integers(lo, hi + 1))
        scales = [F32(np.exp(rng.uniform(-8, 0))), sy, F32(sy * 2.0 ** rng.integers(-2, 3))]
        zps = [int(rng.integers(lo, hi + 1)), zy, int(rng.integers(lo, hi + 1))]
        xs = [rng.choice([lo, lo + 1, hi - 1, hi, 0, *range(lo, hi + 1, 7)], (2, c, 3, 4))
              for c in (64, 2, 3)]
        xs[0].reshape(-1)[:256] = np.arange(lo, hi + 1)
        consts = dict(zip(["sy", "zy"], _q(dtype, sy, zy), strict=True))
        order, feeds = ["sy", "zy"], {}
        for i, (s, z) in enumerate(zip(scales, zps, strict=True)):
            consts[f"s{i}"], consts[f"z{i}"] = _q(dtype, s, z)
            feeds[f"x{i}"] = xs[i]
            order += [f"x{i}", f"s{i}", f"z{i}"]
        got = _qlinear("QLinearConcat", feeds, consts, order, dtype, ttype, axis=1)
        mine, _ = qlinear_concat(xs, scales=scales, zero_points=zps, y_scale=sy,
                                 y_zero_point=zy, axis=1, fmt=fmt)
        diffs.append(int(np.count_nonzero(mine != got)))
    assert diffs == [0] * 20, f"differing elements per case: {diffs}"


@pytest.mark.parametrize("tname", ["int8", "uint8"])
def test_qlinear_avgpool_and_global(tname):
    """QLinearAveragePool (kernels 1-3, strides 1-2, pads below the kernel, both
    count_include_pad, 1 in 5 covering the whole image) and QLinearGlobalAveragePool, 60
    cases with y_scale tied to x_scale (ties), a quarter of them above 512 elements (where
    onnxruntime dequantizes through a lookup table): 0 differing elements."""
    fmt, dtype, ttype = FMTS[tname]
    lo, hi = fmt.min_code, fmt.max_code
    rng = np.random.default_rng(8 if fmt.signed else 9)
    diffs = []
    for t in range(60):
        kh, kw = (int(v) for v in rng.integers(1, 4, 2))
        strides = [int(v) for v in rng.integers(1, 3, 2)]
        pads = [int(rng.integers(0, k)) for k in (kh, kw, kh, kw)]
        h = int(rng.integers(max(1, kh - pads[0] - pads[2]), 9))
        w = int(rng.integers(max(1, kw - pads[1] - pads[3]), 9))
        if t % 5 == 0:
            kh, kw, pads = h, w, [0, 0, 0, 0]
        x = rng.integers(lo, hi + 1, (2, 3 if t % 4 else 24, h, w))  # > 512: ORT's table path
        if t % 3 == 0:
            x = rng.choice([lo, lo + 1, hi, 0], x.shape)
        sx = F32(np.exp(rng.uniform(-6, -1)))
        sy = F32(sx * [1, 0.5, 2, 0.75, rng.uniform(0.3, 3)][t % 5])
        zx, zy = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
        consts = dict(zip(["sx", "zx", "sy", "zy"], [*_q(dtype, sx, zx), *_q(dtype, sy, zy)],
                          strict=True))
        order = ["x", "sx", "zx", "sy", "zy"]
        quant = {"x_scale": sx, "x_zero_point": zx, "y_scale": sy, "y_zero_point": zy, "fmt": fmt}
        cip = t % 2
        got = _qlinear("QLinearAveragePool", {"x": x}, consts, order, dtype, ttype,
                       kernel_shape=[kh, kw], strides=strides, pads=pads, count_include_pad=cip)
        mine, _ = qlinear_avgpool(x, (kh, kw), strides=strides, pads=pads,
                                  count_include_pad=bool(cip), **quant)
        diffs.append(int(np.count_nonzero(mine != got)))
        got = _qlinear("QLinearGlobalAveragePool", {"x": x}, consts, order, dtype, ttype)
        diffs.append(int(np.count_nonzero(qlinear_global_avgpool(x, **quant)[0] != got)))
    assert diffs == [0] * len(diffs), f"differing elements per model: {diffs}"


@pytest.mark.parametrize("tname", ["int8", "uint8"])
def test_qlinear_add_one_element_operand(tname):
    """Broadcast of a one-element operand, on code pairs where the operand order changes
    the FMA result: a one-element ``a`` (alone or against 40 codes of ``b``) follows the
    swapped formula, a one-element ``b`` the plain one; 0 differing elements."""
    fmt, dtype, ttype = FMTS[tname]
    lo, hi = fmt.min_code, fmt.max_code
    rng = np.random.default_rng(10 if fmt.signed else 11)
    grid = np.arange(lo, hi + 1)
    a_all, b_all = np.repeat(grid, grid.size), np.tile(grid, grid.size)
    order = ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"]
    diffs, checked = [], 0
    for sa, za, sb, zb, sy, zy in _rng_params(rng, fmt, 40):
        plain = spec.qlinear_add(a_all, b_all, sa, za, sb, zb, sy, zy, lo, hi)[0]
        swapped = spec.qlinear_add(b_all, a_all, sb, zb, sa, za, sy, zy, lo, hi)[0]
        consts = dict(zip(["sa", "za", "sb", "zb", "sy", "zy"],
                          [*_q(dtype, sa, za), *_q(dtype, sb, zb), *_q(dtype, sy, zy)],
                          strict=True))
        kw = {"a_scale": sa, "a_zero_point": za, "b_scale": sb, "b_zero_point": zb, "y_scale": sy,
              "y_zero_point": zy, "fmt": fmt}
        for i in np.flatnonzero(plain != swapped)[:2]:
            others = rng.integers(lo, hi + 1, 39)
            for a, b in ((a_all[i:i + 1], b_all[i:i + 1]),
                         (a_all[i:i + 1], np.concatenate([b_all[i:i + 1], others])),
                         (np.concatenate([a_all[i:i + 1], others]), b_all[i:i + 1])):
                got = _qlinear("QLinearAdd", {"a": a, "b": b}, consts, order, dtype, ttype)
                diffs.append(int(np.count_nonzero(qlinear_add(a, b, **kw)[0] != got)))
            checked += 1
    assert checked >= 6, checked
    assert diffs == [0] * len(diffs), f"differing elements per model: {diffs}"
