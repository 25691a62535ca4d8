"""QONNX import against qonnx's own executor (``qonnx.core.onnx_exec.execute_onnx``).

Models are built with ``onnx.helper`` + ``qonnx.util.basic.qonnx_make_model``;
fxp's integer codes must equal qonnx's float-carried values scaled back
(``value / scale + zero_point``) on every element of every quantized tensor,
200 random inputs per model.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
qonnx = pytest.importorskip("qonnx")

from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as nh
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from fxp.errors import ModelImportError, UnsupportedOpError
from fxp.frontends.qonnx import is_qonnx_model, load_qonnx
from fxp.frontends.qonnx_ops import QONNX_ROUNDING
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer

D = "qonnx.custom_op.general"
N = 200


class _Net:
    """A tiny QONNX model under construction (nodes + initializers)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []

    def const(self, name: str, v) -> str:
        self.inits.append(nh.from_array(np.asarray(v, np.float32), name))
        return name

    def quant(self, x: str, out: str, scale, bits, *, signed=1, narrow=0, mode="ROUND", zp=0.0):
        ins = [x, self.const(out + "_s", scale), self.const(out + "_z", zp),
               self.const(out + "_b", bits)]
        self.nodes.append(oh.make_node("Quant", ins, [out], domain=D, name="Q_" + out,
                                       signed=signed, narrow=narrow, rounding_mode=mode))
        return out

    def bipolar(self, x: str, out: str, scale=1.0):
        self.nodes.append(oh.make_node("BipolarQuant", [x, self.const(out + "_s", scale)], [out],
                                       domain=D, name="B_" + out))
        return out

    def op(self, op: str, ins, out: str, **attrs):
        self.nodes.append(oh.make_node(op, list(ins), [out], name=op + "_" + out, **attrs))
        return out

    def model(self, in_shape, out: str, out_shape):
        g = oh.make_graph(self.nodes, "g", [oh.make_tensor_value_info("x", TP.FLOAT,
                                                                      [N, *in_shape])],
                          [oh.make_tensor_value_info(out, TP.FLOAT, [N, *out_shape])],
                          self.inits)
        return qonnx_make_model(g, opset_imports=[oh.make_opsetid("", 13),
                                                  oh.make_opsetid(D, 1)])


def _pow2(rng, n, lo=1, hi=4):
    return 2.0 ** -rng.integers(lo, hi, n)


def _cnn(seed, wbits, abits, *, per_channel, signed_act, narrow, mode, matmul=False):
    """Quant -> Conv -> Relu -> Quant -> MaxPool -> Flatten -> Quant(W) Gemm/MatMul -> Quant."""
    n = _Net(seed)
    r = n.rng
    x = n.quant("x", "xq", 2.0 ** -3, abits, signed=1, mode=mode)
    s1 = _pow2(r, 4).reshape(4, 1, 1, 1) if per_channel else 2.0 ** -2
    w1 = n.quant(n.const("W1", r.normal(0, 0.6, (4, 2, 3, 3))), "W1q", s1, wbits, narrow=narrow)
    b1 = n.const("B1", r.integers(-8, 8, 4) * 2.0 ** -5)
    c1 = n.op("Conv", [x, w1, b1], "c1", pads=[1, 1, 1, 1])
    r1 = n.op("Relu", [c1], "r1")
    q1 = n.quant(r1, "r1q", 2.0 ** -2, abits, signed=signed_act, narrow=narrow and signed_act,
                 mode=mode)
    p1 = n.op("MaxPool", [q1], "p1", kernel_shape=[2, 2], strides=[2, 2])
    f1 = n.op("Flatten", [p1], "f1")
    if matmul:
        s2 = _pow2(r, 5).reshape(1, 5) if per_channel else 2.0 ** -3
        w2 = n.quant(n.const("W2", r.normal(0, 0.4, (36, 5))), "W2q", s2, wbits, narrow=narrow)
        y = n.op("MatMul", [f1, w2], "mm")
    else:
        s2 = _pow2(r, 5).reshape(5, 1) if per_channel else 2.0 ** -3
        w2 = n.quant(n.const("W2", r.normal(0, 0.4, (5, 36))), "W2q", s2, wbits, narrow=narrow)
        y = n.op("Gemm", [f1, w2, n.const("B2", r.integers(-4, 4, 5) * 2.0 ** -4)], "fc",
                 transB=1)
    yq = n.quant(y, "yq", 2.0 ** -3, 8, mode=mode)
    return n.model([2, 6, 6], yq, [5]), {"xq": "x", "r1q": "r1", "yq": y}


def _compare(model, pairs, x, scale_of):
    """Import, run, compare codes of each ``{qonnx tensor: fxp tensor}`` pair; 0 differ."""
    graph, plan = load_qonnx(model)
    run = run_integer(compile_plan(graph, plan), x, keep=True)
    ctx = execute_onnx(ModelWrapper(model).transform(InferShapes()), {"x": x},
                       return_full_exec_context=True)
    for q_name, f_name in pairs.items():
        v = run.values[f_name]
        spec = v.spec if f_name != graph.inputs[0] else plan.input
        want = np.asarray(ctx[q_name], np.float64) / scale_of(q_name, spec) + spec.zero_point
        assert np.array_equal(want, np.round(want)), q_name
        bad = int(np.count_nonzero(v.codes != want))
        assert bad == 0, f"{q_name}: {bad} of {want.size} codes differ"
    return graph, plan


def _scale(_name, spec):
    return float(spec.scale_array()[0])


CASES = [  # wbits, abits, per_channel, signed_act, narrow, mode, matmul
    (4, 4, False, False, False, "ROUND", False),
    (4, 4, True, True, True, "ROUND", True),
    (2, 2, False, True, False, "FLOOR", False),
    (2, 2, True, False, False, "CEIL", True),
    (4, 2, True, True, False, "HALF_UP", False),
    (2, 4, False, True, True, "HALF_DOWN", False),
    (4, 4, True, True, False, "UP", True),
    (4, 4, False, False, False, "DOWN", False),
]


@pytest.mark.parametrize("case", CASES, ids=[f"w{c[0]}a{c[1]}-{c[5]}" + ("-pc" if c[2] else "")
                                             for c in CASES])
def test_cnn_codes_equal_qonnx(case):
    """Every quantized tensor's codes equal qonnx's float values / scale (0 differ, 200 inputs)."""
    wb, ab, pc, sa, nr, mode, mm = case
    model, pairs = _cnn(sum(map(hash, map(str, case))) % 1000, wb, ab, per_channel=pc,
                        signed_act=sa, narrow=nr, mode=mode, matmul=mm)
    x = np.random.default_rng(1).normal(0, 1.2, (N, 2, 6, 6)).astype(np.float32)
    x[:4] = np.round(x[:4] * 16) / 16 + 1 / 32  # exact ties of the input quantizer
    _, plan = _compare(model, pairs, x, _scale)
    lp = plan.layer("Conv_c1")
    assert lp.rounding is QONNX_ROUNDING[mode]
    assert lp.output.fmt.bits == ab and lp.output.fmt.signed == bool(sa)
    assert lp.output_overflow.value == ("saturate_symmetric" if nr and sa else "saturate")


def test_float_output_is_the_exact_accumulator():
    """Without a final Quant, the last layer writes qonnx's exact float value as codes."""
    n = _Net(3)
    x = n.quant("x", "xq", 2.0 ** -2, 4)
    w = n.quant(n.const("W", n.rng.normal(0, 1, (3, 8))), "Wq", 2.0 ** -1, 3)
    y = n.op("Gemm", [x, w], "y", transB=1)
    model = n.model([8], y, [3])
    x = np.random.default_rng(2).normal(0, 2, (N, 8)).astype(np.float32)
    _, plan = _compare(model, {y: y}, x, _scale)
    assert plan.layer("Gemm_y").output.fmt.frac_bits == 3


def test_affine_scales_and_zero_point():
    """Non power-of-two scales and a zero point map to affine specs (float32 requant)."""
    n = _Net(4)
    x = n.quant("x", "xq", 0.75 * 2 ** -3, 8, signed=0, zp=128.0)
    w = n.quant(n.const("W", n.rng.normal(0, 1, (4, 6))), "Wq",
                np.array([0.625, 0.375, 0.75, 0.5]).reshape(4, 1) * 0.25, 4)
    y = n.op("Gemm", [x, w], "g", transB=1)
    y = n.quant(y, "yq", 0.75 * 2 ** -6, 8, signed=0, zp=100.0)
    model = n.model([6], y, [4])
    x = np.random.default_rng(5).normal(0, 3, (N, 6)).astype(np.float32)
    _, plan = load_qonnx(model)
    assert plan.input.zero_point == 128 and plan.input.scales == (0.75 * 2 ** -3,)
    assert plan.layer("Gemm_g").weight.axis == 0 and plan.layer("Gemm_g").requant.value == \
        "float32"
    _compare(model, {"xq": "x", "yq": "g"}, x, _scale)


def test_binary_layers_popcount():
    """BipolarQuant activations + weights: XNOR-popcount layers, threshold then scale outputs."""
    n = _Net(6)
    x = n.bipolar("x", "xb", 1.0)
    w1 = n.bipolar(n.const("W1", n.rng.normal(0, 1, (6, 2, 3, 3))), "W1b", 2.0 ** -1)
    c1 = n.op("Conv", [x, w1, n.const("B1", n.rng.integers(-4, 4, 6) * 0.5)], "c1",
              pads=[1, 1, 1, 1])
    h = n.bipolar(c1, "c1b", 0.5)
    p = n.op("MaxPool", [h], "p", kernel_shape=[2, 2], strides=[2, 2])
    f = n.op("Flatten", [p], "f")
    w2 = n.bipolar(n.const("W2", n.rng.normal(0, 1, (4, 24))), "W2b",
                   np.array([1, 0.5, 0.25, 2.0]).reshape(4, 1))
    y = n.op("Gemm", [f, w2], "y", transB=1)
    y = n.quant(y, "yq", 2.0 ** -2, 8, mode="FLOOR")
    model = n.model([2, 4, 4], y, [4])
    x = np.random.default_rng(7).normal(0, 1, (N, 2, 4, 4)).astype(np.float32)
    x[0, 0, 0, :2] = [0.0, -0.0]  # sign(0) = +1 in both
    graph, plan = load_qonnx(model)
    l1, l2 = plan.layer("Conv_c1"), plan.layer("Gemm_y")
    assert l1.is_binary and l1.binary_output == "threshold" and l1.pad_value == 0
    assert l2.is_binary and l2.binary_output == "scale" and l2.alpha is not None
    run = run_integer(compile_plan(graph, plan), x, keep=True)
    ctx = execute_onnx(ModelWrapper(model).transform(InferShapes()), {"x": x},
                       return_full_exec_context=True)
    assert np.array_equal(run.values["c1"].codes, ctx["c1b"] / 0.5)
    assert np.array_equal(run.values["y"].codes, ctx["yq"] * 4)


def test_is_qonnx_model():
    model, _ = _cnn(0, 4, 4, per_channel=False, signed_act=False, narrow=False, mode="ROUND")
    assert is_qonnx_model(model)
    plain = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    assert not is_qonnx_model(plain)


def _single(quant_kw=None, wq_kw=None, extra=None):
    n = _Net(9)
    x = n.quant("x", "xq", 2.0 ** -2, 4, **(quant_kw or {}))
    w = n.quant(n.const("W", n.rng.normal(0, 1, (3, 8))), "Wq", 2.0 ** -1, 3, **(wq_kw or {}))
    y = n.op("Gemm", [x, w], "y", transB=1)
    if extra:
        y = extra(n, y)
    return n.model([8], y, [3])


@pytest.mark.parametrize("kw, match", [
    ({"zp": 0.5}, r"node 'Q_xq' \(Quant\): zero point \[0\.5\] is not an integer"),
    ({"bits": 2.5}, r"node 'Q_xq' \(Quant\): bit width \[2\.5\] must be one integer"),
    ({"signed": 0, "narrow": 1}, r"node 'Q_xq' \(Quant\): unsigned narrow range \[0, 14\]"),
    ({"zp": 9.0}, r"zero point 9 is outside the code range \[-8, 7\]"),
])
def test_refuses_unrepresentable_quant(kw, match):
    """Each unrepresentable quantizer is one ModelImportError naming node and value."""
    bits = kw.pop("bits", None)
    model = _single(quant_kw=kw)
    if bits is not None:
        for t in model.graph.initializer:
            if t.name == "xq_b":
                t.CopyFrom(nh.from_array(np.float32(bits), "xq_b"))
    with pytest.raises(ModelImportError, match=match):
        load_qonnx(model)


def test_refuses_unknown_rounding_mode():
    with pytest.raises(UnsupportedOpError, match=r"rounding_mode 'SIDEWAYS'"):
        load_qonnx(_single(quant_kw={"mode": "SIDEWAYS"}))


def test_lists_every_unsupported_op():
    """Unsupported ops are listed with counts (Trunc and MultiThreshold are read now)."""
    def extra(n, y):
        t = n.op("Sigmoid", [y], "s")
        n.nodes.append(oh.make_node("Trunc", [t, "xq_s", "xq_z", "xq_b", "xq_b"], ["t"],
                                    domain=D, name="trunc"))
        n.nodes.append(oh.make_node("MultiThreshold", ["t", n.const("th", np.zeros((1, 1)))],
                                    ["m"], domain=D, name="mt"))
        return "m"
    with pytest.raises(UnsupportedOpError, match=r"1 nodes of 1 unsupported op types: "
                       r"Sigmoid x1 \(first 'Sigmoid_s'\)"):
        load_qonnx(_single(extra=extra))


def test_refuses_unquantized_layer_input():
    n = _Net(10)
    w = n.quant(n.const("W", n.rng.normal(0, 1, (3, 8))), "Wq", 2.0 ** -1, 3)
    y = n.op("Gemm", ["x", w], "y", transB=1)
    with pytest.raises(ModelImportError, match=r"graph input: tensor 'x' reaches 'Gemm_y' "
                                               r"\(Dense\) without a Quant"):
        load_qonnx(n.model([8], y, [3]))


def test_refuses_float_bias_off_grid_and_twice_quantized():
    def requant(n, y):
        n.quant(y, "a", 2.0 ** -2, 8)
        return n.quant("a", "b", 2.0 ** -3, 8)
    with pytest.raises(ModelImportError, match=r"node 'Q_b': tensor 'y' is quantized twice"):
        load_qonnx(_single(extra=requant))
    n = _Net(11)
    x = n.quant("x", "xq", 2.0 ** -2, 4)
    w = n.quant(n.const("W", n.rng.normal(0, 1, (3, 8))), "Wq", 2.0 ** -1, 3)
    y = n.op("Gemm", [x, w, n.const("B", [1e-30, 0.0, 0.5])], "y", transB=1)
    with pytest.raises(ModelImportError, match=r"layer 'Gemm_y': the exact accumulator needs "
                                               r"\d+ bits"):
        load_qonnx(n.model([8], y, [3]))


def test_affine_refuses_non_round_mode():
    n = _Net(12)
    x = n.quant("x", "xq", 0.3, 4)
    w = n.quant(n.const("W", n.rng.normal(0, 1, (3, 8))), "Wq", 0.5, 3)
    y = n.quant(n.op("Gemm", [x, w], "y", transB=1), "yq", 0.7, 8, mode="FLOOR")
    with pytest.raises(ModelImportError, match=r"node 'Q_yq' \(Quant\): rounding_mode 'FLOOR' "
                                               r"on an affine activation"):
        load_qonnx(n.model([8], y, [3]))


def _brevitas_net(kind: str):
    """A small Brevitas CNN: ``"4bit"`` / ``"2bit"`` fixed-point, or ``"binary"`` (binary
    activations and weights of scale 1/8: a power of two, so qonnx's float32 executor is exact)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    pytest.importorskip("onnxoptimizer")
    import brevitas.nn as qnn
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        SignedBinaryActPerTensorConst,
        SignedBinaryWeightPerTensorConst,
        Uint8ActPerTensorFixedPoint,
    )

    torch.manual_seed(0)
    if kind == "binary":
        wb = {"weight_quant": SignedBinaryWeightPerTensorConst, "weight_scaling_const": 0.125,
              "bias": False}
        return torch.nn.Sequential(
            qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True),
            qnn.QuantConv2d(1, 8, 3, padding=1, **wb),
            qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True),
            torch.nn.MaxPool2d(2), torch.nn.Flatten(), qnn.QuantLinear(128, 10, **wb)).eval()
    bits = {"4bit": 4, "2bit": 2}[kind]
    wq = {"weight_quant": Int8WeightPerTensorFixedPoint, "weight_bit_width": bits, "bias": False}
    return torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=bits,
                          return_quant_tensor=True),
        qnn.QuantConv2d(1, 4, 3, padding=1, **wq),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=bits,
                      return_quant_tensor=True),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), qnn.QuantLinear(64, 10, **wq)).eval()


@pytest.mark.parametrize("kind", ["4bit", "2bit", "binary"])
def test_brevitas_cnn(tmp_path, kind):
    """Brevitas CNNs exported by ``export_qonnx`` (4-bit, 2-bit, binarized): output codes equal
    qonnx's (0 differ); the binarized one runs as XNOR-popcount layers."""
    net = _brevitas_net(kind)
    import torch
    from brevitas.export import export_qonnx

    x = np.random.default_rng(8).normal(0, 1, (N, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        net(torch.from_numpy(x))  # calibrates nothing (fixed-point scales); builds the graph
    path = tmp_path / "b.onnx"
    export_qonnx(net, torch.from_numpy(x), export_path=str(path))
    model = onnx.load(str(path))
    graph, plan = load_qonnx(model)
    ctx = execute_onnx(ModelWrapper(model).transform(InferShapes()),
                       {model.graph.input[0].name: x})
    ref = np.asarray(ctx[model.graph.output[0].name], np.float64)
    out = run_integer(compile_plan(graph, plan), x, keep=True).values[graph.outputs[0]]
    want = np.ldexp(ref, out.spec.fmt.frac_bits)
    assert np.array_equal(want, np.round(want))
    assert int(np.count_nonzero(out.codes != want)) == 0
    if kind == "binary":
        assert [lp.is_binary for lp in plan.layers] == [True, True]
    else:
        assert [lp.weight.fmt.bits for lp in plan.layers] == [{"4bit": 4, "2bit": 2}[kind]] * 2


def test_cli_inspect_and_simulate(tmp_path, capsys):
    """``fxp simulate q.onnx --data npz:...`` runs the embedded QONNX plan (load_model)."""
    from fxp.cli import main
    from fxp.workflow import embedded_plan, load_model

    model, _ = _cnn(0, 4, 4, per_channel=True, signed_act=False, narrow=False, mode="ROUND")
    path = tmp_path / "q.onnx"
    onnx.save(model, str(path))
    graph = load_model(path)
    assert embedded_plan(graph).layer("Conv_c1").weight.fmt.frac_bits >= 1
    x = np.random.default_rng(3).normal(0, 1, (20, 2, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(20, np.int64))
    assert main(["inspect", str(path)]) == 0
    assert main(["simulate", str(path), "--data", f"npz:{tmp_path / 'd.npz'}"]) == 0
    assert "Conv_c1" in capsys.readouterr().out
