"""Binarized ONNX models (Where / Sign activations) -> XNOR-popcount plans, exactly.

(a) Small models built with ``onnx.helper`` (every pattern variant: Sub/Add,
Mul with negative gains, GreaterOrEqual / Greater, flipped Where, Sign; fixed
and binary layers, per-channel weight magnitudes, zero padding) give the same
outputs in fxp's integer engine as in onnxruntime, 0 differing elements, and
the popcount layers are the binary ones.  (b) Refusals name the node.
(c) The trained ``models/bnn/bnn_mnist.onnx`` through ``load_model`` and the
CLI: the same predictions as a torch re-implementation of the file's network
(float64 Conv/Linear on its initializers, the thresholds as ``torch.where``)
on all 5,000 ``mnist5k`` images, and the per-layer table marks conv2, conv3
and fc1 ``xnor-popcount``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper

from fxp.errors import ModelImportError, UnsupportedOpError
from fxp.frontends.onnx_binary import load_binarized
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer
from fxp.sim.values import to_float

BNN = Path(__file__).resolve().parents[2] / "models" / "bnn" / "bnn_mnist.onnx"


def _model(nodes, inits, shape=(2, 6, 6), out=4):
    g = helper.make_graph(nodes, "t",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out])],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k)
                           for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _sign_nodes(src, name, kind, inits, t=None, d=None):
    """A sign pattern after tensor ``src``; returns (nodes, output name)."""
    nodes, cur = [], src
    if t is not None:
        inits[f"{name}.t"] = t
        op = "Sub" if kind != "add" else "Add"
        nodes.append(helper.make_node(op, [cur, f"{name}.t"], [f"{name}.c"]))
        cur = f"{name}.c"
    if d is not None:
        inits[f"{name}.d"] = d
        nodes.append(helper.make_node("Mul", [cur, f"{name}.d"], [f"{name}.o"]))
        cur = f"{name}.o"
    if kind == "sign":
        nodes.append(helper.make_node("Sign", [cur], [f"{name}.s"]))
        return nodes, f"{name}.s"
    inits.update(zero=0.0, one=1.0, minus=-1.0)
    cmp = "Greater" if kind == "gt_flip" else "GreaterOrEqual"
    pair = ["minus", "one"] if kind == "gt_flip" else ["one", "minus"]
    nodes += [helper.make_node(cmp, [cur, "zero"], [f"{name}.u"]),
              helper.make_node("Where", [f"{name}.u", *pair], [f"{name}.s"])]
    return nodes, f"{name}.s"


def _net(seed: int, kinds=("ge", "add", "gt_flip")):
    """conv (int weights) -> sign -> maxpool -> binary conv pad 1 -> sign -> flatten ->
    binary gemm (+-a[c]) -> sign -> gemm (int weights, bias) -> y."""
    rng = np.random.default_rng(seed)
    inits = {"w1": rng.integers(-3, 4, (3, 2, 3, 3)), "b1": rng.integers(-4, 5, 3),
             "w2": rng.choice([-1.0, 1.0], (5, 3, 3, 3)),
             "w3": rng.choice([-1.0, 1.0], (6, 20)) * rng.choice([0.5, 1.5, 3.0], (6, 1)),
             "w4": rng.integers(-9, 10, (4, 6)), "b4": rng.integers(-20, 21, 4) / 4}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], name="c1")]
    s, h = _sign_nodes("h1", "c1", kinds[0], inits, t=rng.normal(0, 4, (3, 1, 1)),
                       d=rng.choice([-2.0, 0.5], (3, 1, 1)))
    nodes += s + [helper.make_node("MaxPool", [h], ["p1"], kernel_shape=[2, 2], strides=[2, 2])]
    nodes.append(helper.make_node("Conv", ["p1", "w2"], ["h2"], name="c2", pads=[1, 1, 1, 1]))
    s, h = _sign_nodes("h2", "c2", kinds[1], inits, t=rng.integers(-3, 4, (5, 1, 1)) + 0.5)
    nodes += s + [helper.make_node("Flatten", [h], ["f"], axis=1)]
    nodes.append(helper.make_node("Gemm", ["f", "w3"], ["h3"], name="g3", transB=1))
    s, h = _sign_nodes("h3", "g3", kinds[2], inits, t=rng.normal(0, 3, 6),
                       d=rng.choice([-1.0, 1.0], 6))
    nodes += s + [helper.make_node("Gemm", [h, "w4", "b4"], ["y"], name="g4", transB=1)]
    return _model(nodes, inits)


def _compare(model, n=64, seed=0):
    """fxp integer engine vs onnxruntime on integer inputs; returns the plan."""
    graph, plan = load_binarized(model)
    x = np.random.default_rng(seed).integers(-20, 21, (n, 2, 6, 6)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    run = run_integer(compile_plan(graph, plan), x, {}, keep=True)
    got = to_float(run.values[graph.outputs[0]])
    assert np.array_equal(got, want.astype(np.float64)), np.abs(got - want).max()
    return plan


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kinds", [("ge", "add", "gt_flip"), ("gt_flip", "ge", "ge")])
def test_patterns_equal_onnxruntime(seed, kinds):
    """Every output element equals onnxruntime's; the +-1-input layers are popcount layers."""
    plan = _compare(_net(seed, kinds), seed=seed)
    assert [lp.name for lp in plan.layers if lp.is_binary] == ["c2", "g3"]
    assert plan.layer("c2").pad_value == 0
    assert plan.layer("c2").binary_output == plan.layer("g3").binary_output == "threshold"
    assert not plan.layer("c1").is_binary and not plan.layer("g4").is_binary


def test_sign_accepted_where_it_cannot_be_zero():
    """Sign after c2 whose thresholds are half-integers: never 0, so sign(0) never matters."""
    plan = _compare(_net(5, ("ge", "sign", "ge")))
    assert plan.layer("c2").is_binary


def test_sign_that_can_return_zero_is_refused():
    m = _net(1, ("sign", "ge", "ge"))  # c1: Sub(T) with T a float, but Mul by d; T integer:
    for t in m.graph.initializer:
        if t.name == "c1.t":
            t.CopyFrom(numpy_helper.from_array(np.full((3, 1, 1), 2.0, np.float32), "c1.t"))
    with pytest.raises(UnsupportedOpError, match=r"'c1': Sign after this layer can return 0 "
                                                 r"\(channel 0.*Where\(x >= 0, 1, -1\)"):
        load_binarized(m)


def test_where_outside_a_pattern_is_refused():
    inits = {"w": np.ones((4, 72)), "zero": 0.0, "one": 1.0, "minus": -1.0}
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("GreaterOrEqual", ["f", "zero"], ["u"]),
             helper.make_node("Where", ["u", "one", "minus"], ["s"], name="lonely"),
             helper.make_node("Gemm", ["s", "w"], ["y"], transB=1)]
    with pytest.raises(UnsupportedOpError, match=r"'lonely' \(Where\): only a sign activation "
                                                 r"right after a Conv/Gemm"):
        load_binarized(_model(nodes, inits))


def test_weights_off_every_power_of_two_grid_are_refused():
    m = _net(2)
    for t in m.graph.initializer:
        if t.name == "w1":
            t.CopyFrom(numpy_helper.from_array(np.full((3, 2, 3, 3), 0.1, np.float32), "w1"))
    with pytest.raises(ModelImportError, match=r"'c1': weights are exact only as 25-bit codes"):
        load_binarized(m)


def test_other_ops_are_refused_with_the_node():
    bad = _net(3)
    bad.graph.node.append(helper.make_node("Sigmoid", ["y"], ["z"], name="sig"))
    bad.graph.output[0].name = "z"
    with pytest.raises(UnsupportedOpError, match=r"'sig' \(Sigmoid\): a binarized model may "
                                                 r"hold"):
        load_binarized(bad)


# ------------------------------------------------------------------ the trained BNN
def _torch_logits(x: np.ndarray) -> np.ndarray:
    """The file's network in torch float64 (independent of fxp): Conv/Gemm on the
    initializers, Sub/Mul/GreaterOrEqual/Where as torch.where, MaxPool, Flatten."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    m = onnx.load(str(BNN))
    p = {t.name: torch.from_numpy(numpy_helper.to_array(t).astype(np.float64))
         for t in m.graph.initializer}

    def sign(h, name):
        up = (h - p[f"{name}.threshold"]) * p[f"{name}.direction"] >= 0
        return torch.where(up, 1.0, -1.0).to(torch.float64)

    h = torch.from_numpy(x.astype(np.float64))
    h = F.max_pool2d(sign(F.conv2d(h, p["conv1.weight"]), "conv1"), 2)
    h = F.max_pool2d(sign(F.conv2d(h, p["conv2.weight"]), "conv2"), 2)
    h = sign(F.conv2d(h, p["conv3.weight"], padding=1), "conv3").flatten(1)
    h = sign(h @ p["fc1.weight"].T, "fc1")
    return (h @ p["fc2.weight"].T + p["fc2.bias"]).numpy()


@pytest.mark.slow
@pytest.mark.needs_torch
@pytest.mark.skipif(not BNN.is_file(), reason="models/bnn/bnn_mnist.onnx not present")
def test_trained_bnn_matches_torch_on_all_of_mnist5k():
    from fxp import workflow as fw
    from fxp.sim.evaluate import simulate

    graph = fw.load_model(str(BNN))
    plan = fw.embedded_plan(graph)
    data = fw.load_data("mnist5k", graph)
    assert len(data.y) == 5000
    want = _torch_logits(data.x)
    rep = simulate(graph, plan, data.x, data.y, keep_predictions=True)
    assert np.array_equal(rep.fixed_predictions, want.argmax(1))
    assert rep.fixed_top1 == pytest.approx(float((want.argmax(1) == data.y).mean()))
    assert rep.output_sqnr_db == float("inf")  # integer logits equal the float view's
    ops = {r.name: r.op for r in rep.layers}
    assert [k for k, v in ops.items() if v.endswith("xnor-popcount")] == ["conv2", "conv3", "fc1"]
    assert rep.total_acc_overflows == 0 and rep.total_output_saturations == 0


def test_trained_bnn_through_the_cli(capsys):
    if not BNN.is_file():
        pytest.skip("models/bnn/bnn_mnist.onnx not present")
    from fxp.cli import main

    assert main(["simulate", str(BNN), "--data", "mnist5k", "--limit", "200", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["plan"] == "binarized-onnx" and rep["n"] == 200
    rows = {r["name"]: r for r in rep["layers"]}
    for name in ("conv2", "conv3", "fc1"):
        assert rows[name]["op"].endswith("xnor-popcount") and rows[name]["weight"] == "binary"
    assert rows["conv1"]["weight"] == "fixed<9,9>" and rep["agreement"] == 1.0
