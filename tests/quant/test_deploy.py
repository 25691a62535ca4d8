"""Quantizer outputs run on the integer engine with exactly the stored levels."""

from __future__ import annotations

import numpy as np
import pytest

from fxp.ir.nodes import Conv2D, Dense
from fxp.quant.deploy import deploy_quantizer
from fxp.sim.compile import compile_plan
from fxp.sim.float_ref import run_float
from fxp.sim.integer import run_integer
from tests.sim.test_integer_engine import tiny_graph


@pytest.mark.parametrize(("quantizer", "bits"), [("kmeans", 3), ("hc:ward", 2),
                                                 ("deadzone:0.4", 3), ("pow2", 4),
                                                 ("minifloat", 6), ("mulaw:255", 4)])
def test_engine_uses_exactly_the_stored_levels(quantizer, bits):
    g = tiny_graph(9)
    x = np.random.default_rng(9).normal(size=(16, 2, 6, 6)).astype(np.float32)
    dep = deploy_quantizer(g, x, quantizer, bits)
    model = compile_plan(dep.graph, dep.plan)
    for step in model.steps:
        if step.w_codes is None:
            continue
        node = dep.graph.layer(step.name)
        assert isinstance(node, (Conv2D, Dense))
        wf = step.plan.weight.fmt
        # the integer weights the engine multiplies are the stored levels, exactly
        np.testing.assert_array_equal(np.ldexp(step.w_codes.astype(np.float64), -wf.frac_bits),
                                      node.weight.astype(np.float64))
        assert dep.levels[step.name] <= 2 ** bits + 1
    out = run_integer(model, x).output
    ref = run_float(dep.graph, x)
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.99


def test_deploy_cli_then_simulate(tmp_path, capsys):
    import json

    from fxp.cli import main

    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.integers(0, 256, (24, 1, 28, 28)).astype(np.float32),
             y=rng.integers(0, 10, 24))
    out = tmp_path / "dep"
    assert main(["deploy", "mnist_cnn", "--data", f"npz:{data}", "--quantizer", "kmeans",
                 "--bits", "3", "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert all(n <= 8 for n in info["levels"].values())
    assert main(["simulate", str(out / "model.onnx"), "--plan", str(out / "plan.json"),
                 "--data", f"npz:{data}", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n"] == 24 and rep["output_sqnr_db"] > 20
