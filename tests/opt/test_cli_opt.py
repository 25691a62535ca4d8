"""`fxp plan --target-sqnr` end to end on a small npz data set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fxp.cli import main

cp = pytest.importorskip("cvxpy")
pytestmark = pytest.mark.skipif("HIGHS" not in cp.installed_solvers(), reason="no HiGHS")


def _npz(tmp_path, n=64):
    rng = np.random.default_rng(0)
    p = tmp_path / "data.npz"
    np.savez(p, x=rng.integers(0, 256, (n, 1, 28, 28)).astype(np.float32),
             y=rng.integers(0, 10, n))
    return f"npz:{p}"


def test_plan_target_sqnr_table_and_plan_file(tmp_path, capsys):
    data = _npz(tmp_path)
    out = tmp_path / "opt.json"
    # 16 held-out random images against a plan measured at the target on 32: slack asked for
    rc = main(["plan", "mnist_cnn", "--data", data, "--target-sqnr", "25", "--calib", "32",
               "--max-bits", "12", "--tolerance-db", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "predicted SQNR" in text and "measured" in text and "conv2.weight" in text
    assert "dithered pairs: " in text and "past the pass budget" not in text
    assert out.exists()
    assert main(["simulate", "mnist_cnn", "--plan", str(out), "--data", data, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n"] == 64


def test_plan_target_sqnr_json(tmp_path, capsys):
    data = _npz(tmp_path)
    # 16 held-out random images: the 0.5 dB slack is asked for explicitly (no default slack)
    rc = main(["plan", "mnist_cnn", "--data", data, "--target-sqnr", "30", "--calib", "32",
               "--cost", "bitops", "--tolerance-db", "0.5", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["success"] and res["tolerance_db"] == 0.5
    assert res["interactions"] == "check"  # the default: checked after each solve
    dp = res["dithered_pairs"]  # mnist_cnn's pairs fit the pass budget
    assert dp["measured"] > 0 and dp["skipped"] == [] and 0 < dp["passes"] <= 4000
    assert res["measured_sqnr_db"] >= 29.5
    assert set(res["widths"]) >= {"input", "conv1.weight", "fc1.weight"}
    assert res["plan"]["layers"]


def test_plan_target_sqnr_errors(tmp_path, capsys):
    data = _npz(tmp_path, n=16)
    assert main(["plan", "mnist_cnn", "--data", data, "--target-sqnr", "30",
                 "--min-bits", "9", "--max-bits", "8"]) == 2
    assert "min_bits 9 > max_bits 8" in capsys.readouterr().err
    assert main(["plan", "mnist_cnn", "--data", data, "--target-sqnr", "200",
                 "--max-bits", "6"]) == 2
    assert "out of reach" in capsys.readouterr().err


def test_plan_interactions_milp_is_recorded_and_meets_its_own_model(tmp_path, capsys):
    """``--interactions milp`` solves the second-order MILP: the JSON and the text say so, and
    the plan's second-order prediction reaches the first solve's target (the MILP's row)."""
    data = _npz(tmp_path)
    rc = main(["plan", "mnist_cnn", "--data", data, "--target-sqnr", "25", "--calib", "32",
               "--max-bits", "12", "--interactions", "milp", "--calibration-check", "off",
               "--tolerance-db", "1", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["interactions"] == "milp" and res["calibration_sqnr_db"] is None
    first = res["solves"][0]
    assert first["internal_target_db"] is None or first["internal_target_db"] >= 25
    assert res["predicted_sqnr_db"] >= 25 - 1e-6
    rc = main(["plan", "mnist_cnn", "--data", data, "--target-sqnr", "25", "--calib", "32",
               "--max-bits", "12", "--interactions", "milp", "--margin-se", "1.5",
               "--calibration-check", "off", "--tolerance-db", "1"])
    assert rc == 0 and "pairwise interactions in the MILP, margin 1.5 standard errors" in \
        capsys.readouterr().out
    assert main(["plan", "mnist_cnn", "--data", data, "--interactions", "milp"]) == 2
    assert "--interactions" in capsys.readouterr().err


def test_plan_interactions_off_keeps_the_additive_model(tmp_path, capsys):
    """``--interactions off``: the JSON says "off", the prediction is the additive one and no
    pair term was measured."""
    data = _npz(tmp_path)
    rc = main(["plan", "mnist_cnn", "--data", data, "--target-sqnr", "25", "--calib", "32",
               "--max-bits", "12", "--interactions", "off", "--tolerance-db", "1", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["interactions"] == "off"
    assert res["predicted_sqnr_db"] == pytest.approx(res["predicted_additive_db"], abs=1e-9)


def test_plan_calibration_check_is_measured_and_reported(tmp_path, capsys):
    """By default each searched plan is measured on the calibration split: the JSON gives the
    kept plan's SQNR there (at least the target when one was found) and the solves that were
    measured; ``--calibration-check off`` measures nothing there; the option is refused on a
    plan that is not optimized."""
    data = _npz(tmp_path)
    args = ["plan", "mnist_cnn", "--data", data, "--target-sqnr", "25", "--calib", "32",
            "--max-bits", "12", "--tolerance-db", "2", "--json"]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["calibration_sqnr_db"] >= 25
    assert any("calibration_sqnr_db" in s for s in res["solves"])
    assert main(args + ["--calibration-check", "off"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["calibration_sqnr_db"] is None
    assert not any("calibration_sqnr_db" in s for s in res["solves"])
    assert main(["plan", "mnist_cnn", "--data", data, "--calibration-check", "off"]) == 2
    assert "--calibration-check" in capsys.readouterr().err


def test_plan_confidence_and_split_seed_options(tmp_path, capsys):
    """``--split-seed none`` cuts the data's own order (the calibration split is samples
    0..31, so the JSON's calibration SQNR is the engine's on exactly those), ``--confidence``
    is recorded and its margin holds on the kept plan; bad values are usage errors, and both
    options are refused on a plan that is not optimized."""
    from fxp import workflow as fw
    from fxp.opt.measured_goal import held_out_margin_db
    from fxp.plan.io import load_plan
    from fxp.sim.evaluate import simulate

    data = _npz(tmp_path)
    out = tmp_path / "p.json"
    args = ["plan", "mnist_cnn", "--data", data, "--target-sqnr", "25", "--calib", "32",
            "--max-bits", "12", "--tolerance-db", "3", "--json", "--out", str(out)]
    assert main(args + ["--split-seed", "none", "--confidence", "0.9"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["splits"]["seed"] is None and res["confidence"] == 0.9
    g = fw.load_model("mnist_cnn")
    d = fw.load_data(data, g)  # preprocessed as fxp plan reads it
    again = simulate(g, load_plan(out), d.x[:32], d.y[:32])
    assert res["calibration_sqnr_db"] == pytest.approx(again.output_sqnr_db, abs=1e-9)
    assert res["calibration_se_db"] == pytest.approx(again.output_sqnr_se_db, abs=1e-12)
    if res["calibration_sqnr_db"] >= 25:  # a plan met the raised goal: the margin holds
        margin = held_out_margin_db(res["calibration_se_db"], 32, res["n_eval"], 0.9)
        assert res["calibration_sqnr_db"] >= 25 + margin
    for bad in (["--confidence", "0.3"], ["--confidence", "1"], ["--split-seed", "-2"],
                ["--split-seed", "x"]):
        with pytest.raises(SystemExit) as e:
            main(args + bad)
        assert e.value.code == 2
        capsys.readouterr()
    for opt in (["--confidence", "0.9"], ["--split-seed", "3"]):
        assert main(["plan", "mnist_cnn", "--data", data] + opt) == 2
        assert opt[0] in capsys.readouterr().err


def test_plan_jumps_option(tmp_path, capsys):
    """``--jumps 0`` makes no prediction jump (no solve says so) and is otherwise the same
    search; the default's jump solves, if any, are measured on calibration and number at most
    MAX_JUMPS per goal; bad values are usage errors; the option is refused on a plan that is
    not optimized and with --per-channel-weights."""
    from fxp.opt.prediction_jump import MAX_JUMPS
    from fxp.opt.selection_check import RAISE_REASON

    data = _npz(tmp_path)
    args = ["plan", "mnist_cnn", "--data", data, "--target-sqnr", "25", "--calib", "32",
            "--max-bits", "12", "--tolerance-db", "3", "--json"]
    assert main(args + ["--jumps", "0"]) in (0, 1)
    off = json.loads(capsys.readouterr().out)
    assert not any(s["reason"].startswith("prediction jump") for s in off["solves"])
    assert main(args) in (0, 1)
    on = json.loads(capsys.readouterr().out)
    jumps = [s for s in on["solves"] if s["reason"].startswith("prediction jump")]
    goals = 1 + sum(s["reason"] == RAISE_REASON for s in on["solves"])
    assert len([s for s in jumps if "calibration_sqnr_db" in s]) <= MAX_JUMPS * goals
    assert all("calibration_sqnr_db" in s for s in jumps if s["widths"] is not None)
    for bad in (["--jumps", "-1"], ["--jumps", "x"], ["--jumps", "101"]):
        with pytest.raises(SystemExit) as e:
            main(args + bad)
        assert e.value.code == 2
        capsys.readouterr()
    assert main(["plan", "mnist_cnn", "--data", data, "--jumps", "2"]) == 2
    assert "--jumps" in capsys.readouterr().err
    assert main(["plan", "mnist_cnn", "--data", data, "--target-sqnr", "25",
                 "--per-channel-weights", "--jumps", "2"]) == 2
    assert "--jumps" in capsys.readouterr().err
