"""The README's main job end to end on a tiny model, in seconds.

A small ONNX CNN (conv+relu, max-pool, conv+relu, flatten, gemm, softmax) and an npz data set
go through the same commands as ``make demo``: inspect, plan --target-sqnr, simulate, report,
export golden / hls4ml / c.
"""

from __future__ import annotations

import json

import numpy as np
import onnx

from fxp.cli import main
from tests.builders import OnnxBuilder, conv, dense, flatten, pool


def _tiny_model(path):
    b = OnnxBuilder((1, 12, 12), rng=np.random.default_rng(0))
    h = b.node("Relu", [conv(b, "x", 4)], None)
    h = pool(b, h, "MaxPool")
    h = b.node("Relu", [conv(b, h, 6, pads=(0, 0, 0, 0))], None)
    logits = dense(b, flatten(b, h), 3)
    out = b.node("Softmax", [logits], None, axis=1)
    model = b.model(out, metadata={"fxp.preprocess.scale": "1"})
    onnx.save(model, str(path))


def test_main_job_on_a_tiny_model(tmp_path, capsys):
    model = tmp_path / "tiny.onnx"
    _tiny_model(model)
    rng = np.random.default_rng(1)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.normal(0, 1, (300, 1, 12, 12)).astype(np.float32), y=rng.integers(0, 3, 300))
    d = f"npz:{data}"
    plan = tmp_path / "plan.json"
    assert main(["inspect", str(model)]) == 0
    assert main(["plan", str(model), "--data", d, "--target-sqnr", "25", "--calib", "150",
                 "--out", str(plan)]) == 0
    assert main(["simulate", str(model), "--plan", str(plan), "--data", d, "--json"]) == 0
    out = capsys.readouterr().out
    rep = json.loads(out[out.index("{"):])
    assert rep["n"] == 300 and rep["output_sqnr_db"] > 20
    assert main(["report", str(model), "--plan", str(plan), "--data", d, "--out",
                 str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.md").exists()
    for what, dest in (("hls4ml", "h.json"), ("c", "m.h")):
        assert main(["export", what, str(model), "--plan", str(plan), "--out",
                     str(tmp_path / dest)]) == 0
    assert main(["export", "golden", str(model), "--plan", str(plan), "--data", d, "-n", "2",
                 "--out", str(tmp_path / "g")]) == 0
    assert json.loads((tmp_path / "g" / "manifest.json").read_text())["n"] == 2
