"""The rate-distortion sweep on a tiny graph, and the CLI subcommand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fxp.ir import nodes as ir
from fxp.cli import main
from fxp.errors import DataError, FormatError
from fxp.ir.graph import Graph
from fxp.quant.sweep import parse_bits, quantize_graph, sweep

RNG = np.random.default_rng(11)


def _tiny() -> tuple[Graph, np.ndarray, np.ndarray]:
    nodes = (ir.Conv2D(name="c", inputs=("x",), outputs=("a",), weight=RNG.laplace(
                 scale=0.3, size=(4, 1, 3, 3)), bias=np.zeros(4), fused_activation="relu"),
             ir.Flatten(name="f", inputs=("a",), outputs=("b",)),
             ir.Dense(name="fc", inputs=("b",), outputs=("y",),
                      weight=RNG.laplace(scale=0.1, size=(6, 64))))
    g = Graph(nodes=nodes, inputs=("x",), input_shapes={"x": (None, 1, 6, 6)}, outputs=("y",))
    x = RNG.normal(size=(40, 1, 6, 6)).astype(np.float32)
    from fxp.sim.float_ref import run_float

    return g, x, np.argmax(run_float(g, x), axis=1)   # labels = float predictions: 100 %


def test_small_sweep_rows_best_and_monotone_rate() -> None:
    g, x, y = _tiny()
    res = sweep(g, (x, y), "midtread,deadzone:0.4,pow2,kmeans,twn,minifloat:e4m3", "2,4,8")
    assert res.float_top1 == 1.0 and res.n_weights == 36 + 384
    names = [(r.quantizer, r.bits) for r in res.rows]
    assert ("twn", 2) in names and ("minifloat:e4m3", 8) in names      # fixed widths run once
    assert sum(1 for n in names if n[0] == "midtread") == 3
    mt = [r for r in res.rows if r.quantizer == "midtread"]
    assert mt[0].entropy < mt[1].entropy < mt[2].entropy <= 8
    assert mt[2].top1 >= 0.9
    best = res.best["midtread"]
    assert best is not None and best.drop_top1 <= 0.01 and best.drop_top5 <= 0.01
    assert all(r.entropy >= best.entropy for r in mt if r.drop_top1 <= 0.01)
    d = res.to_dict()
    assert json.dumps(d) and d["best"]["midtread"]["bits"] == best.bits


def test_quantize_graph_replaces_weights_only() -> None:
    g, _, _ = _tiny()
    qg, tensors = quantize_graph(g, "pow2", 3, per_channel=True)
    assert set(tensors) == {"c", "fc"}
    w = qg.layer("c").weight
    f, _ = np.frexp(np.abs(w[w != 0]))
    assert np.all(f == 0.5)
    np.testing.assert_array_equal(qg.layer("c").bias, g.layer("c").bias)
    assert g.layer("c").weight is not w


def test_parse_bits_and_errors() -> None:
    assert parse_bits("2-4,8") == [2, 3, 4, 8] and parse_bits([3, 3]) == [3]
    with pytest.raises(FormatError, match="bits must look like"):
        parse_bits("a-b")
    with pytest.raises(FormatError, match="1..32"):
        parse_bits("0-3")
    g, x, y = _tiny()
    with pytest.raises(DataError, match="as many labels"):
        sweep(g, (x, y[:3]), "midtread", "4")


def test_cli_sweep_json(tmp_path, capsys) -> None:
    p = tmp_path / "data.npz"
    np.savez(p, x=RNG.integers(0, 256, (12, 1, 28, 28)).astype(np.float32),
             y=RNG.integers(0, 10, 12))
    argv = ["sweep", "mnist_cnn", "--data", f"npz:{p}", "--quantizers", "midtread,twn",
            "--bits", "3-4"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["rows"]) == 3 and set(out["best"]) == {"midtread", "twn"}
    assert main(argv) == 0
    assert "Table 6" in capsys.readouterr().out
    assert main([*argv[:4], "--quantizers", "nope"]) == 2
    assert "unknown quantizer 'nope'" in capsys.readouterr().err
