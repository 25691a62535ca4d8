"""The CLI in-process: happy paths, --json shapes, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fxp.cli import main


def test_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "format" in out and "quantize" in out and "examples:" in out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: fxp" in capsys.readouterr().out


def test_format_json(capsys):
    assert main(["format", "Q0.15", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "fixed<16,1>" and info["qmn"] == "Q0.15"
    assert info["min_code"] == -32768 and info["lsb"] == "1/32768"


def test_quantize_json(capsys):
    assert main(["quantize", "fixed<8,4>", "0.3", "-1.7", "9.0", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["codes"] == [5, -27, 127] and info["n_overflow"] == 1


@pytest.mark.parametrize(("argv", "needle"), [
    (["format", "fixed<0,3>"], "bits=0 is outside 1..64"),
    (["format", "float16"], "cannot parse format 'float16'"),
    (["quantize", "fixed<8,4>", "nan"], "non-finite value nan at flat index 0"),
    (["quantize", "fixed<8,4>", "1", "--rounding", "HALF_UP"], "ambiguous RoundingMode"),
    (["quantize", "fixed<8,4>", "1", "--rounding", "stochastic"], "explicit integer seed"),
])
def test_errors_are_one_line_with_exit_code_2(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_debug_shows_the_traceback():
    from fxp.errors import FormatError

    with pytest.raises(FormatError):
        main(["--debug", "format", "fixed<0,3>"])


def test_python_dash_m_fxp_runs():
    res = subprocess.run([sys.executable, "-m", "fxp", "format", "int8"], capture_output=True,
                         text=True, check=True)
    assert "fixed<8,8>" in res.stdout


# ----------------------------------------------------------------------------- model commands
def _npz(tmp_path, n=48):
    import numpy as np

    rng = np.random.default_rng(0)
    p = tmp_path / "data.npz"
    np.savez(p, x=rng.integers(0, 256, (n, 1, 28, 28)).astype(np.float32),
             y=rng.integers(0, 10, n))
    return f"npz:{p}"


def test_inspect_json(capsys):
    assert main(["inspect", "mnist_cnn", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sum(r["params"] for r in info["layers"]) == 34826
    conv1 = info["layers"][0]
    assert conv1["op"] == "Conv2D" and conv1["output_shape"] == [32, 26, 26]


def test_plan_simulate_export_round_trip(tmp_path, capsys):
    data = _npz(tmp_path)
    plan = tmp_path / "plan.json"
    assert main(["plan", "mnist_cnn", "--data", data, "--bits", "6", "--out", str(plan)]) == 0
    capsys.readouterr()
    assert main(["simulate", "mnist_cnn", "--plan", str(plan), "--data", data, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n"] == 48 and 0 <= rep["fixed_top1"] <= 1
    assert {r["name"] for r in rep["layers"]} >= {"conv1", "conv2", "fc1"}
    assert main(["simulate", "mnist_cnn", "--plan", str(plan), "--data", data, "--exact"]) == 0
    assert "SQNR" in capsys.readouterr().out
    out = tmp_path / "golden"
    assert main(["export", "golden", "mnist_cnn", "--plan", str(plan), "--data", data, "-n", "2",
                 "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert any(t["producer"] == "conv1" for t in manifest["tensors"])


@pytest.mark.parametrize(("argv", "needle"), [
    (["inspect", "no_such_model"], "no_such_model"),
    (["simulate", "mnist_cnn", "--plan", "/nonexistent/plan.json", "--data", "mnist5k",
      "--limit", "8"], "cannot read plan file"),
    (["plan", "mnist_cnn", "--data", "npz:/nonexistent.npz"], "nonexistent.npz"),
    (["plan", "mnist_cnn", "--data", "bogus-data"], "bogus-data"),
])
def test_model_command_errors_are_one_line(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_report_writes_markdown_and_figures(tmp_path, capsys):
    data = _npz(tmp_path, n=32)
    plan = tmp_path / "plan.json"
    assert main(["plan", "mnist_cnn", "--data", data, "--out", str(plan)]) == 0
    out = tmp_path / "rep"
    assert main(["report", "mnist_cnn", "--plan", str(plan), "--data", data, "--out", str(out),
                 "--json"]) == 0
    md = (out / "report.md").read_text()
    assert "| conv1 | Conv2D |" in md and "![confusion](confusion.png)" in md
    for fig in ("bits.png", "sqnr.png", "overflow.png", "confusion.png", "weights.png"):
        assert (out / fig).stat().st_size > 1000
    assert json.loads((out / "report.json").read_text())["n"] == 32


def test_bench_json(tmp_path, capsys):
    data = _npz(tmp_path, n=16)
    assert main(["bench", "mnist_cnn", "--data", data, "--batch-size", "8", "--min-time", "0.05",
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    engines = {r["engine"]: r for r in info["rows"]}
    assert engines["fxp float reference (numpy)"]["vs_float_reference"] == 1
    assert all(r["images_per_s"] > 0 for r in info["rows"])
