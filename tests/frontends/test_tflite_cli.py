"""``.tflite`` from the CLI and the workflow: no ``--plan`` (the file's quantization is the plan)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tflite", reason="the .tflite reader needs the 'tflite' package")

from fxp import workflow as fw  # noqa: E402
from fxp.cli import main  # noqa: E402
from fxp.frontends.tflite import load_tflite  # noqa: E402
from fxp.plan.io import plan_to_dict  # noqa: E402

MODEL = Path(__file__).resolve().parents[2] / "models" / "tflite" / "mnist_cnn_int16x8.tflite"


def test_load_model_embeds_the_readers_plan():
    """workflow.load_model reads a .tflite and carries the reader's plan (int16x8: acc 64);
    preprocessing keys only from the file's fxp.preprocess.* metadata entries."""
    graph = fw.load_model(MODEL)
    _, plan = load_tflite(MODEL)
    assert plan_to_dict(fw.model_plan(graph, None, str(MODEL))) == plan_to_dict(plan)
    pre = {k for k in graph.metadata if k.startswith("fxp.preprocess.")}
    assert pre == {"fxp.preprocess.scale", "fxp.preprocess.mean", "fxp.preprocess.std",
                   "fxp.preprocess.layout"}
    assert [lp.acc_bits for lp in plan.layers if lp.weight is not None] == [64, 64, 64]


def test_cli_inspect_and_simulate_tflite_without_plan(capsys):
    """``fxp inspect m.tflite`` lists the operators; ``fxp simulate m.tflite --data`` runs
    without --plan and reports every layer."""
    assert main(["inspect", str(MODEL)]) in (0, None)
    out = capsys.readouterr().out
    for name in ("op0_conv_2d", "op1_max_pool_2d", "op5_fully_connected"):
        assert name in out
    assert main(["simulate", str(MODEL), "--data", "mnist5k", "--limit", "20"]) in (0, None)
    out = capsys.readouterr().out
    assert "op5_fully_connected" in out and "Dense" in out


@pytest.mark.parametrize("name", ["mnist_cnn_int8", "mnist_cnn_int16x8"])
def test_committed_tflite_files_carry_their_preprocessing(name, capsys):
    """``fxp.preprocess.*`` flatbuffer metadata (models/tflite/add_metadata.py) reaches the data.

    Without it the raw pixels saturate the int8 input and top-1 collapses; with it the
    simulated accuracy on mnist5k is that of the float model the files were made from.
    """
    import json

    path = MODEL.parent / f"{name}.tflite"
    graph = fw.load_model(path)
    assert graph.metadata["fxp.preprocess.mean"] == "0.1307"
    assert main(["simulate", str(path), "--data", "mnist5k", "--limit", "300", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["fixed_top1"] > 0.95 and rep["agreement"] > 0.97
    assert rep["input_saturations"] < 300 * 784 // 100
