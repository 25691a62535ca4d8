"""QONNX ``Trunc`` (and the ``MultiThreshold`` refusal) against qonnx's own executor.

``Trunc_v2`` (opset 2) after a layer's ``Quant`` is read as one quantizer of
the layer's output; its codes must equal ``execute_onnx``'s float values /
output_scale on every element of 200 random inputs.  What fxp cannot
represent exactly is refused naming the node.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
qonnx = pytest.importorskip("qonnx")

from onnx import helper as oh

from fxp.errors import ModelImportError, UnsupportedOpError
from fxp.frontends.qonnx import load_qonnx
from fxp.frontends.qonnx_ops import QONNX_ROUNDING
from tests.frontends.test_qonnx_import import D, N, _compare, _Net, _scale


def _trunc(n: _Net, x: str, out: str, s, in_bw, *, os=None, out_bw, mode="FLOOR", signed=1,
           narrow=0, zp=0.0):
    ins = [x, n.const(out + "_s", s), n.const(out + "_z", zp), n.const(out + "_ib", in_bw)]
    if os is not None:
        ins.append(n.const(out + "_os", os))
    ins.append(n.const(out + "_ob", out_bw))
    attrs = {"rounding_mode": mode} if os is None else \
        {"rounding_mode": mode, "signed": signed, "narrow": narrow}
    n.nodes.append(oh.make_node("Trunc", ins, [out], domain=D, name="T_" + out, **attrs))
    return out


def _conv_front(seed: int, relu: bool):
    """``(net, rng, output)`` of x -Quant-> Conv(4x2x3x3, 4-bit) -[Relu]-> (both test nets)."""
    n = _Net(seed)
    r = n.rng
    x = n.quant("x", "xq", 2.0 ** -3, 4, signed=1)
    w1 = n.quant(n.const("W1", r.normal(0, 0.6, (4, 2, 3, 3))), "W1q", 2.0 ** -2, 4)
    b1 = n.const("B1", r.integers(-8, 8, 4) * 2.0 ** -5)
    c1 = n.op("Conv", [x, w1, b1], "c1", pads=[1, 1, 1, 1])
    return n, r, n.op("Relu", [c1], "r1") if relu else c1


def _net(seed, *, qbits=8, signed=0, narrow=0, qmode="ROUND", tshift=3, out_bw=5, tmode="FLOOR",
         relu=True, v1=False, qfrac=5, cut=False):
    """x -Quant-> Conv -[Relu]-> Quant(2**-qfrac) -> Trunc -> MaxPool -> Flatten -> Gemm -> Quant."""
    n, r, a1 = _conv_front(seed, relu)
    q1 = n.quant(a1, "q1", 2.0 ** -qfrac, qbits, signed=signed, narrow=narrow, mode=qmode)
    if v1:
        t1 = _trunc(n, q1, "t1", 2.0 ** -qfrac, qbits, out_bw=qbits - tshift, mode=tmode)
    else:
        t1 = _trunc(n, q1, "t1", 2.0 ** -qfrac, qbits, os=2.0 ** (tshift - qfrac), out_bw=out_bw,
                    mode=tmode, signed=signed, narrow=narrow)
    p1 = n.op("MaxPool", [q1 if cut else t1], "p1", kernel_shape=[2, 2], strides=[2, 2])
    f1 = n.op("Flatten", [p1], "f1")
    w2 = n.quant(n.const("W2", r.normal(0, 0.4, (5, 36))), "W2q", 2.0 ** -3, 4)
    y = n.op("Gemm", [f1, w2, n.const("B2", r.integers(-4, 4, 5) * 2.0 ** -6)], "fc", transB=1)
    yq = n.quant(y, "yq", 2.0 ** -3, 8)
    m = n.model([2, 6, 6], yq, [5])
    del m.opset_import[:]
    m.opset_import.extend([oh.make_opsetid("", 13), oh.make_opsetid(D, 1 if v1 else 2)])
    return m, {"xq": "x", "t1": a1, "yq": y}


def _x(seed):
    return np.random.default_rng(seed).normal(0, 1.2, (N, 2, 6, 6)).astype(np.float32)


CASES = [  # qbits, signed, narrow, tshift, out_bw, tmode, relu
    (8, 0, 0, 3, 5, "FLOOR", True),
    (8, 1, 0, 3, 5, "FLOOR", False),
    (8, 1, 1, 2, 6, "DOWN", False),
    (6, 1, 0, 2, 3, "FLOOR", False),  # out_bw clips harder than the Quant
    (8, 1, 0, 3, 5, "CEIL", False),
    (8, 0, 0, 1, 7, "FLOOR", True),
]


@pytest.mark.parametrize("case", CASES, ids=[f"q{c[0]}s{c[1]}n{c[2]}-t{c[3]}o{c[4]}-{c[5]}"
                                             for c in CASES])
def test_trunc_v2_codes_equal_qonnx(case):
    """Trunc codes (and the downstream layer's) equal qonnx's values / scale: 0 of 200 differ."""
    qb, sg, nr, ts, ob, tm, relu = case
    model, pairs = _net(sum(case[:5]) + 7, qbits=qb, signed=sg, narrow=nr, tshift=ts,
                        out_bw=ob, tmode=tm, relu=relu)
    _, plan = _compare(model, pairs, _x(ts * 10 + ob), _scale)
    conv = plan.layers[0]
    assert conv.rounding == QONNX_ROUNDING[tm]  # the Trunc's rounding, not the Quant's ROUND
    assert conv.output.fmt.frac_bits == 5 - ts  # the Trunc's output_scale 2**(ts - 5)


def test_trunc_v1_identity_is_read_and_exact():
    """A Trunc_v1 dropping no bits is the identity on the Quant's codes (qonnx agrees)."""
    model, pairs = _net(3, tshift=0, v1=True)
    _, plan = _compare(model, pairs, _x(3), _scale)
    assert plan.layers[0].output.fmt.frac_bits == 5


def test_trunc_v1_dropping_bits_is_refused():
    model, _ = _net(4, tshift=2, v1=True)
    with pytest.raises(UnsupportedOpError, match=r"'T_t1'.*Trunc_v1.*2\*\*2"):
        load_qonnx(model)


def test_trunc_after_a_rounding_quant_is_refused():
    """Accumulator on 2**-5, Quant grid 2**-4: Quant rounds, then Trunc floors (two roundings)."""
    model, _ = _net(5, qfrac=4)
    with pytest.raises(ModelImportError, match=r"'T_t1'.*5 fraction bits.*rounding twice"):
        load_qonnx(model)


def test_trunc_round_mode_range_beyond_format_is_refused():
    """Unsigned 8-bit codes / 8 rounded half-even reach 32, not a 5-bit range [0, 31]."""
    model, _ = _net(6, tmode="ROUND", out_bw=6)
    with pytest.raises(ModelImportError, match=r"'T_t1'.*\[0, 32\]"):
        load_qonnx(model)


def test_trunc_output_scale_not_pow2_multiple_is_refused():
    model, _ = _net(7)
    for t in model.graph.initializer:
        if t.name == "t1_os":
            t.CopyFrom(onnx.numpy_helper.from_array(np.float32([0.3]), "t1_os"))
    with pytest.raises(ModelImportError, match=r"'T_t1'.*output scale \[0\.3"):
        load_qonnx(model)


def test_trunc_of_a_tensor_also_read_elsewhere_is_refused():
    """The Quant's output read by the Trunc and by MaxPool: two codings of one tensor."""
    model, _ = _net(8, cut=True)
    extra = oh.make_node("Identity", ["t1"], ["t1_unused"], name="keep")
    model.graph.node.append(extra)
    with pytest.raises(ModelImportError, match=r"'T_t1'.*read by this Trunc only"):
        load_qonnx(model)


def _mt(n: _Net, x: str, out: str, th, *, scale, bias=0.0, **attrs):
    n.nodes.append(oh.make_node("MultiThreshold", [x, n.const(out + "_th", th)], [out], domain=D,
                                name="MT_" + out, out_dtype="UINT4", out_scale=float(scale),
                                out_bias=float(bias), **attrs))
    return out


def _mt_net(seed, *, per_channel=True, relu=True, bits=3, d=2.0 ** -2, t0_lo=1, fc_mt=True):
    """x -Quant-> Conv -[Relu]-> MultiThreshold -> MaxPool -> Flatten -> Gemm -> MT or Quant."""
    n, r, a1 = _conv_front(seed, relu)
    t = (1 << bits) - 1
    t0 = r.integers(t0_lo, 24, (4 if per_channel else 1, 1)) * 2.0 ** -5
    m1 = _mt(n, a1, "m1", t0 + np.arange(t) * d, scale=d)
    p1 = n.op("MaxPool", [m1], "p1", kernel_shape=[2, 2], strides=[2, 2])
    f1 = n.op("Flatten", [p1], "f1")
    w2 = n.quant(n.const("W2", r.normal(0, 0.4, (5, 36))), "W2q", 2.0 ** -3, 4)
    y = n.op("Gemm", [f1, w2, n.const("B2", r.integers(-4, 4, 5) * 2.0 ** -6)], "fc", transB=1)
    if fc_mt:
        yq = _mt(n, y, "yq", (np.arange(15)[None, :] + 1) * 2.0 ** -3, scale=2.0 ** -3)
    else:
        yq = n.quant(y, "yq", 2.0 ** -3, 8)
    return n.model([2, 6, 6], yq, [5]), {"xq": "x", "m1": a1, "yq": y}


MT_CASES = [(True, True, 3), (False, False, 3), (True, False, 2), (False, True, 1)]


@pytest.mark.parametrize("case", MT_CASES, ids=[f"pc{int(c[0])}-relu{int(c[1])}-b{c[2]}"
                                                for c in MT_CASES])
def test_multithreshold_codes_equal_qonnx(case):
    """Evenly spaced thresholds read as a FLOOR requantization: 0 of 200 inputs' codes differ."""
    pc, relu, bits = case
    model, pairs = _mt_net(11 + bits + 2 * pc + relu, per_channel=pc, relu=relu, bits=bits,
                           fc_mt=pc)
    _, plan = _compare(model, pairs, _x(bits), _scale)
    assert str(plan.layers[0].rounding.value) == "floor"
    assert plan.layers[0].output.fmt.bits == bits and not plan.layers[0].output.fmt.signed


def test_multithreshold_uneven_or_scaled_is_refused():
    model, _ = _mt_net(20)
    th = next(t for t in model.graph.initializer if t.name == "m1_th")
    v = onnx.numpy_helper.to_array(th).copy()
    v[0, 3] += 2.0 ** -5
    th.CopyFrom(onnx.numpy_helper.from_array(v, "m1_th"))
    with pytest.raises(ModelImportError, match=r"'MT_m1'.*not evenly spaced"):
        load_qonnx(model)
    model, _ = _mt_net(21)
    node = next(nd for nd in model.graph.node if nd.name == "MT_m1")
    next(a for a in node.attribute if a.name == "out_scale").f = 1.0
    with pytest.raises(ModelImportError, match=r"'MT_m1'.*out_scale 1\.0"):
        load_qonnx(model)


def test_multithreshold_count_range_and_sign_refused():
    """Six thresholds (count 0..6, no unsigned format) and a first threshold <= 0."""
    n = _Net(22)
    x = n.quant("x", "xq", 2.0 ** -3, 4)
    w = n.quant(n.const("W", n.rng.normal(0, 1, (3, 3))), "Wq", 2.0 ** -1, 3)
    y = n.op("MatMul", [x, w], "mm")
    _mt(n, y, "m", (np.arange(6)[None, :] + 1) * 0.5, scale=0.5)
    with pytest.raises(ModelImportError, match=r"'MT_m'.*6 thresholds"):
        load_qonnx(n.model([3], "m", [3]))
    model, _ = _mt_net(23, t0_lo=-3, per_channel=False)
    th = next(t for t in model.graph.initializer if t.name == "m1_th")
    v = onnx.numpy_helper.to_array(th).copy()
    v -= v[0, 0]
    th.CopyFrom(onnx.numpy_helper.from_array(v, "m1_th"))
    with pytest.raises(ModelImportError, match=r"'MT_m1'.*must be > 0"):
        load_qonnx(model)


def _input_net(kind):
    n = _Net(30)
    x = "x"
    if kind == "trunc":
        x = _trunc(n, n.quant("x", "xq", 2.0 ** -3, 6), "t", 2.0 ** -3, 6, os=2.0 ** -1,
                   out_bw=4)
    elif kind == "mt":
        x = _mt(n, "x", "m", (np.arange(7)[None, :] + 1) * 0.25, scale=0.25)
    elif kind == "mt_trunc":
        x = _mt(n, "x", "m", (np.arange(7)[None, :] + 1) * 0.25, scale=0.25)
        x = _trunc(n, x, "t", 0.25, 3, os=0.5, out_bw=2)
    w = n.quant(n.const("W", n.rng.normal(0, 1, (3, 3))), "Wq", 2.0 ** -1, 3)
    y = n.quant(n.op("MatMul", [x, w], "mm"), "yq", 2.0 ** -2, 8)
    m = n.model([3], y, [3])
    m.opset_import[1].version = 2
    return m


@pytest.mark.parametrize("kind, pattern", [
    ("trunc", r"'T_t' \(Trunc\): truncates the graph input"),
    ("mt", r"'MT_m'.*thresholds the graph input"),
    ("mt_trunc", r"'T_t'.*must be the output of a multi-bit Quant"),
])
def test_trunc_and_multithreshold_of_the_graph_input_are_refused(kind, pattern):
    with pytest.raises(ModelImportError, match=pattern):
        load_qonnx(_input_net(kind))


def test_per_channel_thresholds_after_flatten_are_refused():
    """Per-channel thresholds on the flattened axis are not the layer's output channels."""
    model, pairs = _mt_net(31, fc_mt=True)
    th = next(t for t in model.graph.initializer if t.name == "yq_th")
    v = np.repeat(onnx.numpy_helper.to_array(th), 5, axis=0)
    v += 2.0 ** -4 * np.arange(5)[:, None]  # per-channel offsets of the 5 Gemm outputs: read
    th.CopyFrom(onnx.numpy_helper.from_array(v, "yq_th"))
    _compare(model, pairs, _x(31), _scale)  # 0 differing codes
    model, _ = _mt_net(32, fc_mt=True)
    node = next(nd for nd in model.graph.node if nd.name == "MT_m1")
    th = next(t for t in model.graph.initializer if t.name == node.input[1])
    v = onnx.numpy_helper.to_array(th)
    th.CopyFrom(onnx.numpy_helper.from_array(v[:1] + 2.0 ** -5 * np.arange(3)[:, None],
                                             th.name))  # 3 rows: not the 4 Conv channels
    with pytest.raises(ModelImportError, match=r"'MT_m1'.*3 per-channel thresholds.*4 output"):
        load_qonnx(model)
