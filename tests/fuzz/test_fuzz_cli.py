"""The CLI on bad files and bad option combinations: exit code 2, one line on stderr (issue 22).

Each case crosses a command with one damaged input (model, plan, data, output
path or option); the command must refuse it with exit code 2 and exactly one
line on stderr, never a traceback.  The cases are built from small tables, so
each failure names its command line.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import onnx
import pytest

from fxp.cli import main
from tests.builders import OnnxBuilder, conv, dense, flatten


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A good tiny model, plan and data, and a directory of damaged ones."""
    d = tmp_path_factory.mktemp("cli_fuzz")
    b = OnnxBuilder((1, 8, 8), rng=np.random.default_rng(3))
    m = b.model(dense(b, flatten(b, b.node("Relu", [conv(b, "x", 2)], None)), 10))
    onnx.save(m, str(d / "good.onnx"))
    rng = np.random.default_rng(0)
    np.savez(d / "good.npz", x=rng.integers(0, 256, (12, 1, 8, 8)).astype(np.uint8),
             y=rng.integers(0, 10, 12))
    assert main(["plan", str(d / "good.onnx"), "--data", f"npz:{d / 'good.npz'}",
                 "--out", str(d / "good.json")]) == 0
    good = m.SerializeToString()
    bad_models = {
        "missing": d / "nope.onnx",
        "empty": d / "empty.onnx",
        "truncated": d / "trunc.onnx",
        "text": d / "text.onnx",
        "folder": d / "folder.onnx",
        "random_tflite": d / "random.tflite",
        "nan_weight": d / "nan.onnx",
    }
    bad_models["empty"].write_bytes(b"")
    bad_models["truncated"].write_bytes(good[: len(good) // 2])
    bad_models["text"].write_text("not a model\n")
    bad_models["folder"].mkdir()
    bad_models["random_tflite"].write_bytes(rng.integers(0, 256, 600, dtype=np.uint8).tobytes())
    nan = onnx.load(str(d / "good.onnx"))
    w = onnx.numpy_helper.to_array(nan.graph.initializer[0]).copy()
    w.reshape(-1)[0] = np.nan
    nan.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(w, nan.graph.initializer[0].name))
    onnx.save(nan, str(bad_models["nan_weight"]))
    plan = json.loads((d / "good.json").read_text())
    bad_plans = {"missing": d / "nope.json", "empty": d / "empty.json",
                 "not_json": d / "bad.json", "list": d / "list.json",
                 "bits0": d / "bits0.json", "unknown_layer": d / "unknown.json"}
    bad_plans["empty"].write_text("")
    bad_plans["not_json"].write_text("{plan: 1")
    bad_plans["list"].write_text("[]")
    p0 = json.loads(json.dumps(plan))
    p0["layers"][0]["weight"]["fmt"] = "fixed<0,0>"
    bad_plans["bits0"].write_text(json.dumps(p0))
    p1 = json.loads(json.dumps(plan))
    p1["layers"][0]["name"] = "no_such_layer"
    bad_plans["unknown_layer"].write_text(json.dumps(p1))
    bad_data = {"unknown": "no-such-set", "missing": f"npz:{d / 'nope.npz'}",
                "random": f"npz:{d / 'random.npz'}", "nan": f"npz:{d / 'nan.npz'}",
                "labels": f"npz:{d / 'labels.npz'}", "shape": f"npz:{d / 'shape.npz'}"}
    (d / "random.npz").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    np.savez(d / "nan.npz", x=np.full((4, 1, 8, 8), np.nan, np.float32), y=np.zeros(4, int))
    np.savez(d / "labels.npz", x=np.zeros((4, 1, 8, 8), np.uint8), y=np.array([99, 1, 0, 2]))
    np.savez(d / "shape.npz", x=np.zeros((4, 1, 9, 9), np.uint8), y=np.zeros(4, int))
    return {"dir": d, "model": str(d / "good.onnx"), "plan": str(d / "good.json"),
            "data": f"npz:{d / 'good.npz'}", "bad_models": bad_models, "bad_plans": bad_plans,
            "bad_data": bad_data}


def _refused(capsys, argv) -> None:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, f"{' '.join(map(str, argv))} -> exit {code}: {err}"
    assert err.count("\n") == 1 and "Traceback" not in err, (argv, err)


def _commands(f, model, plan, data, out):
    """Each command with the given model / plan / data (``None``: the good one)."""
    m, p, dt = model or f["model"], plan or f["plan"], data or f["data"]
    o = f["dir"] / out
    return [
        ["inspect", m],
        ["plan", m, "--data", dt, "--out", o / "p.json"],
        ["plan", m, "--data", dt, "--target-sqnr", "20", "--out", o / "q.json"],
        ["simulate", m, "--plan", p, "--data", dt],
        ["report", m, "--plan", p, "--data", dt, "--out", o / "report"],
        ["export", "golden", m, "--plan", p, "--data", dt, "-n", "2", "--out", o / "golden"],
        ["export", "c", m, "--plan", p, "--out", o / "m.h"],
        ["export", "hls4ml", m, "--plan", p, "--out", o / "h.json"],
    ]


@pytest.mark.parametrize("kind", ["bad_models", "bad_plans", "bad_data"])
def test_cli_refuses_damaged_inputs(files, capsys, kind: str) -> None:
    """Every command that reads the damaged input refuses it: exit 2, one stderr line."""
    n, failures = 0, []
    for name, bad in files[kind].items():
        args = {"bad_models": {"model": str(bad)}, "bad_plans": {"plan": str(bad)},
                "bad_data": {"data": bad}}[kind]
        for argv in _commands(files, out=f"{kind}_{name}", **{k: None for k in
                              ("model", "plan", "data") if k not in args}, **args):
            reads = {"bad_models": True, "bad_plans": "--plan" in argv,
                     "bad_data": "--data" in argv}[kind]
            if not reads:
                continue
            try:
                _refused(capsys, argv)
            except AssertionError as exc:
                failures.append(str(exc)[:300])
            n += 1
    assert not failures, failures
    assert n >= 20


BAD_OPTIONS = [
    ["--bits", "0"], ["--bits", "x"], ["--target-sqnr", "nan"], ["--limit", "-1"],
    ["--calib", "0"], ["--scheme", "bogus"], ["--rounding", "sideways"],
    ["--target-sqnr", "20", "--max-accuracy-drop", "1"], ["--granularity", "pixel"],
    ["--binary", "no_such_layer"], ["--acc-bits", "65"], ["--weight-bits", "-3"],
]


@pytest.mark.parametrize("opts", BAD_OPTIONS, ids=lambda o: " ".join(o))
def test_cli_refuses_bad_plan_options(files, capsys, opts) -> None:
    _refused(capsys, ["plan", files["model"], "--data", files["data"], *opts,
                      "--out", files["dir"] / "opt.json"])


@pytest.mark.parametrize(("cmd", "opts"), list(itertools.product(
    ["simulate", "report"], [["--batch-size", "0"], ["--limit", "0"], ["--method", "quantum"],
                             ["--runtime", "tflm"]])), ids=str)
def test_cli_refuses_bad_run_options(files, capsys, cmd, opts) -> None:
    out = ["--out", files["dir"] / f"r_{cmd}_{opts[0]}"] if cmd == "report" else []
    _refused(capsys, [cmd, files["model"], "--plan", files["plan"], "--data", files["data"],
                      *opts, *out])


def test_cli_refuses_outputs_it_cannot_write(files, capsys) -> None:
    blocker = files["dir"] / "a_file"
    blocker.write_text("x")
    for argv in (["plan", files["model"], "--data", files["data"], "--out", blocker / "p.json"],
                 ["export", "c", files["model"], "--plan", files["plan"], "--out",
                  blocker / "m.h"],
                 ["report", files["model"], "--plan", files["plan"], "--data", files["data"],
                  "--out", blocker]):
        _refused(capsys, argv)
