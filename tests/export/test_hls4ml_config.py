"""hls4ml configs from plans: names per frontend, every layer typed, patching (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fxp.errors import FormatError, PlanError
from fxp.export.golden import export_hls4ml_tb
from fxp.export.hls4ml import hls4ml_config, hls4ml_layer_name, patch_hls4ml_config
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten, MaxPool2D, Softmax
from fxp.plan.ptq import ptq_pow2
from fxp.sim.compile import compile_plan
from fxp.sim.integer import logits_tensor, run_integer
from fxp.sim.values import to_float


def torch_like_graph() -> Graph:
    """The node and tensor names torch's ONNX exporter writes for a small CNN."""
    rng = np.random.default_rng(0)
    f = np.float32
    nodes = (Conv2D(name="/conv1/Conv", inputs=("x.1",), outputs=("/relu1/Relu_output_0",),
                    weight=rng.normal(0, .5, (4, 2, 3, 3)).astype(f),
                    bias=rng.normal(0, .1, 4).astype(f), pads=(1, 1, 1, 1),
                    fused_activation="relu"),
             MaxPool2D(name="/pool1/MaxPool", inputs=("/relu1/Relu_output_0",),
                       outputs=("p",), kernel=(2, 2), strides=(2, 2)),
             Flatten(name="/flat/Flatten", inputs=("p",), outputs=("f",)),
             Dense(name="/features/features.3/Gemm", inputs=("f",), outputs=("y",),
                   weight=rng.normal(0, .3, (5, 64)).astype(f), bias=rng.normal(0, .1, 5).astype(f)),
             Softmax(name="/sm/Softmax", inputs=("y",), outputs=("out",)))
    return Graph(nodes=nodes, inputs=("x.1",), outputs=("out",),
                 input_shapes={"x.1": (None, 2, 8, 8)})


@pytest.fixture(scope="module")
def gp():
    g = torch_like_graph()
    x = np.random.default_rng(1).normal(size=(32, 2, 8, 8)).astype(np.float32)
    return g, ptq_pow2(g, x), x


def test_names_map_to_what_each_frontend_uses():
    assert hls4ml_layer_name("/conv1/Conv", "pytorch") == "conv1"
    assert hls4ml_layer_name("/features/features.0/Conv", "pytorch") == "features_0"
    assert hls4ml_layer_name("x.1", "pytorch", "input") == "x"
    assert hls4ml_layer_name("input.1", "onnx", "input", "InputLayer") == "input_1"
    assert hls4ml_layer_name("0conv", "onnx", "layer", "Conv") == "conv0conv"
    with pytest.raises(PlanError, match=r"layer '/conv1/Conv' is not a C\+\+ identifier for "
                                        r"hls4ml's onnx frontend \(mapped to '/conv1/Conv'"):
        hls4ml_layer_name("/conv1/Conv", "onnx")
    with pytest.raises(PlanError, match="frontend must be one of"):
        hls4ml_layer_name("a", "keras")


def test_every_layer_hls4ml_builds_has_types_with_modes(gp):
    g, plan, _ = gp
    cfg = hls4ml_config(g, plan)
    assert list(cfg["LayerName"]) == ["x", "conv1", "relu1", "pool1", "flat", "features_3", "sm"]
    assert cfg["InputShape"] == [2, 8, 8] and cfg["Model"]["ChannelsLastConversion"] == "full"
    layers = cfg["LayerName"]
    step = {s.name: s for s in compile_plan(g, plan).steps}
    conv = plan.layer("/conv1/Conv")
    w = conv.weight.fmt
    assert layers["conv1"]["Precision"]["weight"] == f"fixed<{w.bits},{w.int_bits},RND_CONV,SAT>"
    acc = step["/conv1/Conv"].acc_fmt
    assert layers["conv1"]["Precision"]["accum"] == f"fixed<{acc.bits},{acc.int_bits},TRN,WRAP>"
    out = conv.output.fmt
    assert layers["relu1"]["Precision"]["result"].startswith(
        f"{'' if out.signed else 'u'}fixed<{out.bits},{out.int_bits},")
    for name in ("pool1", "flat"):
        assert layers[name]["Precision"]["result"].split(",")[:2] == \
            layers["relu1"]["Precision"]["result"].split(",")[:2]
    assert layers["x"]["Precision"]["result"].endswith(",RND_CONV,SAT>")
    json.dumps(cfg)  # JSON-ready
    onnx_names = None
    with pytest.raises(PlanError, match="for hls4ml's onnx frontend"):
        onnx_names = hls4ml_config(g, plan, frontend="onnx")
    assert onnx_names is None


def test_patch_fills_hls4mls_own_entries_and_refuses_a_mismatch(gp):
    g, plan, _ = gp
    own = {"Model": {"Precision": {"default": "fixed<16,6>"}},
           "LayerName": {n: {"Precision": dict.fromkeys(k, "auto")} for n, k in [
               ("in0", ["result"]), ("Conv_0", ["result", "weight", "bias", "accum"]),
               ("Relu_0", ["result", "table"]), ("MaxPool_0", ["result", "accum"]),
               ("Flatten_0", ["result"]), ("Gemm_0", ["result", "weight", "bias", "accum"]),
               ("Softmax_0", ["result", "exp_table", "inv_table"])]}}
    patched = patch_hls4ml_config(g, plan, own)
    mine = hls4ml_config(g, plan)
    for (a, pa), (b, pb) in zip(patched["LayerName"].items(), mine["LayerName"].items(),
                                strict=True):
        if b != "sm":
            assert {k: v for k, v in pa["Precision"].items() if k != "table"} \
                == pb["Precision"], (a, b)
    assert own["LayerName"]["Conv_0"]["Precision"]["weight"] == "auto"  # a copy
    del own["LayerName"]["Relu_0"]
    with pytest.raises(FormatError, match=r"hls4ml config has 6 layers .* fxp's graph makes 7"):
        patch_hls4ml_config(g, plan, own)
    own["LayerName"]["Extra"] = {"Precision": {"result": "auto"}}
    with pytest.raises(FormatError, match=r"hls4ml layer 'MaxPool_0' looks like a pool layer; "
                                          r"fxp's next layer '/conv1/Conv' is a relu"):
        patch_hls4ml_config(g, plan, own)


def test_hls4ml_testbench_files(gp, tmp_path):
    g, plan, x = gp
    out = export_hls4ml_tb(g, plan, x[:4], tmp_path / "tb", logits=True)
    rows = (out / "tb_input_features.dat").read_text().splitlines()
    assert len(rows) == 4
    back = np.array([[float(v) for v in r.split()] for r in rows], np.float32)
    assert np.array_equal(back, x[:4].reshape(4, -1))
    model = compile_plan(g, plan)
    run = run_integer(model, x[:4], keep=True)
    want = to_float(run.values[logits_tensor(model)])
    preds = [[float(v) for v in r.split()]
             for r in (out / "tb_output_predictions.dat").read_text().splitlines()]
    assert np.array_equal(np.array(preds, np.float32), want)
