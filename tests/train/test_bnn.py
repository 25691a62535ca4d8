"""``fxp train bnn``: binary weights and activations, exported for the popcount path.

A tiny run (300 ``mnist5k`` images, 1 epoch, torch CPU) through the CLI, then
``fxp simulate`` on the exported ONNX: the binary layers run XNOR-popcount
(the per-layer table says so), and the predictions equal (i) torch's own
(``train_result.json``: 0 mismatches) and (ii) onnxruntime's on the exported
file, whose integer logits fxp reproduces exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("mlxtend")

from fxp.cli import main


@pytest.mark.needs_torch
def test_train_bnn_exports_a_popcount_model(tmp_path, capsys):
    out = tmp_path / "bnn"
    assert main(["train", "bnn", "mnist_cnn", "--data", "mnist5k", "--limit", "300",
                 "--eval-limit", "200", "--epochs", "1", "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["binary_layers"] == ["conv2", "fc1"]
    assert res["fxp_simulation"]["mismatches"] == 0
    assert json.loads((out / "train_result.json").read_text())["n_eval"] == 200

    assert main(["simulate", str(out / "bnn.onnx"), "--data", "mnist5k", "--limit", "200",
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    ops = {r["name"]: r["op"] for r in rep["layers"]}
    assert [k for k, v in ops.items() if v.endswith("xnor-popcount")] == ["conv2", "fc1"]
    assert rep["output_sqnr_db"] == "inf"  # integer logits equal the float view's

    from fxp import workflow as fw
    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer
    from fxp.sim.values import to_float

    graph = fw.load_model(str(out / "bnn.onnx"))
    x = fw.load_data("mnist5k", graph, limit=200).x.astype(np.float32)
    want = ort.InferenceSession(str(out / "bnn.onnx"),
                                providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    got = to_float(run_integer(compile_plan(graph, fw.embedded_plan(graph)), x, {}, keep=True)
                   .values[graph.outputs[0]])
    assert np.array_equal(got, want.astype(np.float64))
    assert np.all(want == np.round(want))


def test_train_bnn_refuses_other_bits(tmp_path):
    from fxp import workflow as fw
    from fxp.errors import PlanError

    with pytest.raises(PlanError, match="bnn weights and activations have 1 bit; got --bits 2"):
        fw.train_model("bnn", "mnist_cnn", "mnist5k", bits=2, out=tmp_path)


def test_train_bnn_refuses_options_it_does_not_use(tmp_path):
    from fxp import workflow as fw
    from fxp.errors import PlanError

    with pytest.raises(PlanError, match=r"bnn trains .*\['act_bits', 'scratch'\] do not apply"):
        fw.train_model("bnn", "mnist_cnn", "mnist5k", act_bits=4, scratch=True, out=tmp_path)
