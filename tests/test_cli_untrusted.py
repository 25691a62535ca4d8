"""The CLI against bad numbers, bad paths and failing writers (issue 24).

Every bad value is refused, never replaced: argparse types with ranges make a
bad number a one-line usage error (exit 2), the library refuses the same values
through the Python API, and whatever a handler raises (FxpError, OSError,
MemoryError) is one line on stderr with exit 2, without a traceback.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from fxp import workflow as fw
from fxp.cli import main
from fxp.cli_args import run_handler
from fxp.errors import DataError, FxpError, PlanError
from tests.builders import OnnxBuilder, conv, dense, flatten


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 1x8x8 conv+relu -> dense(10) ONNX model, 24 samples of npz data and an 8-bit plan."""
    d = tmp_path_factory.mktemp("tiny")
    b = OnnxBuilder((1, 8, 8), rng=np.random.default_rng(3))
    h = b.node("Relu", [conv(b, "x", 2)], None)
    m = b.model(dense(b, flatten(b, h), 10), metadata={"fxp.preprocess.scale": "1/255"})
    onnx.save(m, str(d / "tiny.onnx"))
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", x=rng.integers(0, 256, (24, 1, 8, 8)).astype(np.uint8),
             y=rng.integers(0, 10, 24))
    paths = {"model": str(d / "tiny.onnx"), "data": f"npz:{d / 'data.npz'}",
             "plan": str(d / "plan.json"), "dir": d}
    assert main(["plan", paths["model"], "--data", paths["data"], "--out", paths["plan"]]) == 0
    return paths


def _fails_cleanly(capsys, argv, needle: str = "", code: int = 2) -> str:
    """Run ``fxp argv``; assert exit ``code``, one line on stderr holding ``needle``."""
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse usage errors
        got = exc.code
    err = capsys.readouterr().err
    assert got == code, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err
    return err


# ----------------------------------------------------------------------------- bad numbers
BAD_NUMBERS = [
    ("plan", ["--weight-bits", "0"], "--weight-bits"),
    ("plan", ["--act-bits", "65"], "--act-bits"),
    ("plan", ["--bits", "8.5"], "--bits"),
    ("plan", ["--acc-bits", "0"], "--acc-bits"),
    ("plan", ["--calib", "-1"], "--calib"),
    ("plan", ["--calib", "0"], "--calib"),
    ("plan", ["--limit", "0"], "--limit"),
    ("plan", ["--min-bits", "0", "--target-sqnr", "30"], "--min-bits"),
    ("plan", ["--max-bits", "100", "--target-sqnr", "30"], "--max-bits"),
    ("plan", ["--alpha-bits", "-1"], "--alpha-bits"),
    ("plan", ["--alpha-bits", "64"], "--alpha-bits"),
    ("plan", ["--target-sqnr", "nan"], "--target-sqnr"),
    ("plan", ["--target-sqnr", "inf"], "--target-sqnr"),
    ("plan", ["--max-accuracy-drop", "-1"], "--max-accuracy-drop"),
    ("plan", ["--limit", "1" * 40], "--limit"),
    ("simulate", ["--batch-size", "0"], "--batch-size"),
    ("simulate", ["--limit", "-5"], "--limit"),
    ("report", ["--batch-size", "-1", "--out", "r"], "--batch-size"),
    ("deploy", ["--quantizer", "kmeans", "--bits", "0", "--out", "o"], "--bits"),
    ("deploy", ["--quantizer", "kmeans", "--bits", "3", "--store-bits", "1", "--out", "o"],
     "--store-bits"),
    ("deploy", ["--quantizer", "kmeans", "--bits", "3", "--calib", "0", "--out", "o"], "--calib"),
    ("bench", ["--min-time", "0"], "--min-time"),
    ("bench", ["--min-time", "nan"], "--min-time"),
    ("sweep", ["--tolerance", "nan"], "--tolerance"),
    ("sweep", ["--tolerance", "-1"], "--tolerance"),
    ("sweep", ["--bits", "1-99999999999"], "--bits"),
    ("sweep", ["--bits", "0-4"], "--bits"),
    ("train", ["--epochs", "-1", "--out", "o"], "--epochs"),
    ("train", ["--lr", "-1e-3", "--out", "o"], "--lr"),
    ("train", ["--lr", "nan", "--out", "o"], "--lr"),
    ("train", ["--dropout", "1", "--out", "o"], "--dropout"),
    ("train", ["--batch-size", "0", "--out", "o"], "--batch-size"),
    ("train", ["--seed", "-1", "--out", "o"], "--seed"),
]


@pytest.mark.parametrize(("cmd", "extra", "option"), BAD_NUMBERS,
                         ids=[f"{c}{''.join(e[:2])}" for c, e, _ in BAD_NUMBERS])
def test_bad_numbers_are_one_line_usage_errors(capsys, cmd, extra, option):
    """A bad number exits 2 before anything runs, naming the option (never defaulted)."""
    head = {"plan": ["plan", "m", "--data", "d"], "simulate": ["simulate", "m", "--plan", "p",
                                                                "--data", "d"],
            "report": ["report", "m", "--plan", "p", "--data", "d"],
            "deploy": ["deploy", "m", "--data", "d"], "bench": ["bench", "m"],
            "sweep": ["sweep", "m", "--data", "d"], "train": ["train", "qat", "m", "--data", "d"]}
    err = _fails_cleanly(capsys, head[cmd] + extra, f"argument {option}")
    assert err.startswith(f"fxp {cmd}: error:")


def test_export_golden_n_zero_and_quantize_seed(capsys):
    _fails_cleanly(capsys, ["export", "golden", "m", "--plan", "p", "--data", "d", "-n", "0",
                            "--out", "o"], "argument -n")
    _fails_cleanly(capsys, ["quantize", "fixed<8,3>", "1", "--seed", "-2"], "argument --seed")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"weight_bits": 0}, "weight_bits must be an integer 1..64, got '0'"),
    ({"act_bits": 0}, "act_bits must be an integer 1..64"),
    ({"bits": 0}, "bits must be an integer 1..64"),
    ({"acc_bits": 65}, "acc_bits must be an integer 1..64"),
    ({"calib": -1}, "calib .* must be an integer >= 1, got '-1'"),
    ({"calib": 0}, "calib .* must be an integer >= 1"),
    ({"bits": 8.0}, "bits must be an integer"),
    ({"alpha_bits": 0}, "alpha_bits must be an integer 1..63"),
    ({"scheme": "double", "weight_bits": 4}, "separate weight/activation bits are for pow2"),
])
def test_make_plan_refuses_what_the_cli_refuses(tiny, kwargs, match):
    """The Python API checks the same values (0 is not 'use the default')."""
    graph = fw.load_model(tiny["model"])
    data = fw.load_data(tiny["data"], graph)
    with pytest.raises(PlanError, match=match):
        fw.make_plan(graph, data, **kwargs)


def test_explicit_weight_and_act_bits_are_used(tiny):
    """Each explicit width is used as given (0 is refused above, not read as "default")."""
    graph = fw.load_model(tiny["model"])
    data = fw.load_data(tiny["data"], graph)
    plan = fw.make_plan(graph, data, bits=8, weight_bits=3, act_bits=5)
    assert {lp.weight.fmt.bits for lp in plan.layers} == {3}
    assert {lp.output.fmt.bits for lp in plan.layers} == {5}


def test_library_refuses_bad_batch_limit_and_widths(tiny):
    graph = fw.load_model(tiny["model"])
    data = fw.load_data(tiny["data"], graph)
    plan = fw.make_plan(graph, data)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(DataError, match="batch_size must be a positive integer"):
            fw.run_simulation(graph, plan, data, batch_size=bad)
    with pytest.raises(DataError, match="limit must be a positive integer"):
        fw.load_data(tiny["data"], graph, limit=0)
    with pytest.raises(PlanError, match="max accuracy drop must be a finite number"):
        fw.optimize_for_accuracy(graph, data, float("nan"))
    with pytest.raises(PlanError, match=r"tolerance .* must be a finite number in \[0, 1\]"):
        fw.sweep_quantizers(graph, data, tolerance=float("nan"))
    with pytest.raises(PlanError, match="bits must be widths in 1..32"):
        fw.sweep_quantizers(graph, data, bits="1-99999999999")


def test_optimizer_refuses_widths_outside_the_measured_range():
    """Regression: min_bits=0 / max_bits=100 were narrowed to 2..16 silently."""
    from types import SimpleNamespace

    from fxp.opt.solve import _allowed

    table = SimpleNamespace(tensors=[SimpleNamespace(name="conv1.weight")],
                            widths=tuple(range(2, 17)))
    assert _allowed(table, 4, 6, None) == [[4, 5, 6]]
    with pytest.raises(PlanError, match=r"min_bits=0 for 'conv1.weight' is outside .* 2..16"):
        _allowed(table, 0, None, None)
    with pytest.raises(PlanError, match=r"max_bits=100 .* outside the measured widths 2..16"):
        _allowed(table, None, 100, None)


# ----------------------------------------------------------------------------- the boundary
def _args(command="plan", debug=False):
    from argparse import Namespace

    return Namespace(command=command, debug=debug)


@pytest.mark.parametrize(("exc", "needle", "code"), [
    (PlanError("layer 'c1':\nbad\r\nvalue"), "fxp plan: error: layer 'c1': bad value", 2),
    (FileNotFoundError(2, "No such file or directory", "/x/y.onnx"),
     "cannot access '/x/y.onnx': No such file or directory", 2),
    (OSError(36, "File name too long", "a" * 5000), "File name too long", 2),
    (PermissionError(13, "Permission denied"), "Permission denied", 2),
    (MemoryError(), "out of memory while running fxp plan", 2),
    (KeyboardInterrupt(), "fxp plan: interrupted", 130),
])
def test_run_handler_turns_every_failure_into_one_line(capsys, exc, needle, code):
    def handler(args):
        raise exc

    assert run_handler(handler, _args(), "fxp plan") == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and len(err) < 600


def test_debug_reraises():
    def handler(args):
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError):
        run_handler(handler, _args(debug=True), "fxp plan", debug=True)


def test_multi_line_fxp_error_prints_one_line(capsys, monkeypatch):
    """Regression: a message with newlines spanned several stderr lines."""
    import fxp.cli as cli

    def boom(args):
        raise FxpError("first\nsecond\nthird")

    monkeypatch.setattr(cli, "_cmd_format", boom)
    _fails_cleanly(capsys, ["format", "int8"], "first second third")


# ----------------------------------------------------------------------------- bad paths
def test_unwritable_out_for_every_writer(tiny, capsys):
    """--out under a regular file (NotADirectoryError even as root): one line, exit 2.

    The folder is checked before any slow work (the optimizer, training)."""
    blocker = tiny["dir"] / "file.txt"
    blocker.write_text("x")
    bad = str(blocker / "sub")
    m, d, p = tiny["model"], tiny["data"], tiny["plan"]
    for argv in (["plan", m, "--data", d, "--out", f"{bad}/plan.json"],
                 ["plan", m, "--data", d, "--json", "--out", f"{bad}/plan.json"],
                 ["plan", m, "--data", d, "--target-sqnr", "30", "--out", f"{bad}/plan.json"],
                 ["plan", m, "--data", d, "--out", str(tiny["dir"])],  # a folder, not a file
                 ["train", "qat", m, "--data", d, "--epochs", "1", "--out", bad],
                 ["deploy", m, "--data", d, "--quantizer", "kmeans", "--bits", "2",
                  "--calib", "8", "--out", bad],
                 ["report", m, "--plan", p, "--data", d, "--out", bad],
                 ["export", "golden", m, "--plan", p, "--data", d, "-n", "2", "--out", bad],
                 ["export", "hls4ml", m, "--plan", p, "--out", f"{bad}/h.json"],
                 ["export", "c", m, "--plan", p, "--out", f"{bad}/m.h"]):
        err = _fails_cleanly(capsys, argv)
        assert "file.txt" in err or "is a folder" in err, (argv, err)


@pytest.mark.parametrize("which", ["model", "plan", "npz", "idx", "out"])
def test_names_too_long_are_one_line(tiny, capsys, which):
    """5,000-character paths (ENAMETOOLONG) for inputs and outputs: one line, exit 2."""
    long = str(tiny["dir"] / ("n" * 5000))
    m, d, p = tiny["model"], tiny["data"], tiny["plan"]
    argv = {"model": ["simulate", long, "--plan", p, "--data", d],
            "plan": ["simulate", m, "--plan", long, "--data", d],
            "npz": ["simulate", m, "--plan", p, "--data", f"npz:{long}"],
            "idx": ["simulate", m, "--plan", p, "--data", f"idx:{long},{long}"],
            "out": ["plan", m, "--data", d, "--out", long]}[which]
    err = _fails_cleanly(capsys, argv)
    assert "nnnn" in err and len(err) < 700


def test_bad_plan_file_through_the_cli(tiny, capsys):
    bad = tiny["dir"] / "bad.json"
    d = json.loads((tiny["dir"] / "plan.json").read_text())
    d["layers"][0]["float"] = "false"
    bad.write_text(json.dumps(d))
    _fails_cleanly(capsys, ["simulate", tiny["model"], "--plan", str(bad), "--data",
                            tiny["data"]], "'float' must be a JSON boolean")
    bad.write_bytes(b"[" * 100_000)
    _fails_cleanly(capsys, ["simulate", tiny["model"], "--plan", str(bad), "--data",
                            tiny["data"]], "nested too deeply")


def test_labels_outside_the_model_classes(tiny, capsys):
    """Regression: label 12 on a 10-logit model ran with top-1 counted as a miss."""
    x = np.zeros((5, 1, 8, 8), np.uint8)
    p = tiny["dir"] / "labels.npz"
    np.savez(p, x=x, y=np.array([1, 2, 12, 3, 40]))
    _fails_cleanly(capsys, ["simulate", tiny["model"], "--plan", tiny["plan"], "--data",
                            f"npz:{p}"], "label 12 at index 2 is outside the model's 10 classes")


def test_simulate_reports_the_input_row(tiny, capsys):
    assert main(["simulate", tiny["model"], "--plan", tiny["plan"], "--data", tiny["data"],
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["layers"][0]["name"] == "(input)" and rep["layers"][0]["op"] == "Input"
    assert rep["total_output_saturations"] == sum(r["output_saturations"] for r in rep["layers"])
