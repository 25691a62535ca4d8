"""Hardware targets and budgets end to end: optimize_bits and `fxp plan --target ... --max-*`
on mnist_cnn (random images, small calibration), checked on the returned plans themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fxp.cli import main

cp = pytest.importorskip("cvxpy")
pytestmark = pytest.mark.skipif("HIGHS" not in cp.installed_solvers(), reason="no HiGHS")

N, CALIB = 48, 24


@pytest.fixture(scope="module")
def setup():
    from fxp import workflow as fw
    from fxp.opt.noise import measure_noise

    g = fw.load_model("mnist_cnn")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (N, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, N)
    from fxp.opt.splits import split_data

    nt = measure_noise(g, x[split_data(N, CALIB).indices("calibration")], n_measure=CALIB)
    return g, x, y, nt


def _opt(setup, target_db, **kw):
    from fxp.opt import optimize_bits

    g, x, y, nt = setup
    kw.setdefault("tolerance_db", 0.5)  # 12 held-out random images: allow 0.5 dB, explicitly
    return optimize_bits(g, (x, y), target_db, calib=CALIB, noise_table=nt, **kw)


def test_mcu_plan_uses_kernel_widths_and_meets_flash_and_ram(setup):
    """Weights in {4, 8}, activations in {8, 16}, every layer a supported kernel pair, and the
    plan's own flash and TFLM arena head (fxp.report.mcu) within the budgets."""
    from fxp.report.mcu import plan_resources

    g, _, _, nt = setup
    kinds = {t.name: t.kind for t in nt.tensors}
    res = _opt(setup, 30.0, target="mcu", budgets={"ram": 30_000, "flash": 40_000})
    assert res.success, res.message
    assert all(b in ((4, 8) if kinds[n] == "weight" else (8, 16)) for n, b in res.widths.items())
    real = plan_resources(g, res.plan)
    assert real.head_bytes <= 30_000 and real.flash_bytes <= 40_000
    assert res.hardware["mcu"]["ram_bytes"] == real.head_bytes
    assert res.hardware["mcu"]["cycles"] is not None  # every layer has a kernel
    assert res.measured_sqnr_db >= 29.5
    # the best SQNR takes 16-bit activations; a 27,040-byte arena (relu1 21,632 + pool1 5,408
    # bytes at 8 bits) leaves relu1 at 8 bits, the smaller activations may stay at 16
    wide = _opt(setup, None, target="mcu", budgets={"flash": 10**9})
    assert wide.widths["relu1"] == 16
    tight = _opt(setup, None, target="mcu", budgets={"ram": 27_040})
    # the MILP maximises the additive model's SQNR: the tighter budget lowers it
    assert tight.widths["relu1"] == 8 and \
        tight.predicted_additive_db < wide.predicted_additive_db
    assert plan_resources(g, tight.plan).head_bytes <= 27_040


def test_fpga_dsp_budget_binds_and_holds(setup):
    """Minimising LUTs pushes products into DSPs; a DSP budget caps them (checked on the
    widths by the hand rules of fxp.opt.hardware)."""
    free = _opt(setup, 30.0, target="fpga", cost="lut")
    assert free.hardware["fpga"]["dsp"] > 0
    cap = free.hardware["fpga"]["dsp"] // 2
    res = _opt(setup, 30.0, target="fpga", cost="lut", budgets={"dsp": cap})
    assert res.success, res.message
    assert res.hardware["fpga"]["dsp"] <= cap
    assert res.hardware["fpga"]["lut"] >= free.hardware["fpga"]["lut"]  # the budget costs LUTs
    assert res.cost == res.hardware["fpga"]["lut"]


def test_accumulators_are_the_proven_bound_or_saturate(setup):
    """Each layer's accumulator is the narrowest width that cannot overflow
    (fxp.ops.layers.required_acc_bits on its weight codes, input format and bias); with
    acc_saturate they are narrowed to it, saturating, and the SQNR is measured on that plan."""
    from fxp.core.modes import OverflowMode
    from fxp.ops.layers import required_acc_bits
    from fxp.sim.compile import compile_plan
    from fxp.sim.evaluate import simulate

    g, x, y, _ = setup
    res = _opt(setup, 30.0, target="fpga")
    model = compile_plan(g, res.plan)
    for step in model.steps:
        if step.plan is None or step.w_codes is None:
            continue
        need = required_acc_bits(step.w_codes, 0, step.in_specs[0].fmt, 0, step.b_codes)
        assert step.plan.acc_bits == need == res.acc_proven_bits[step.name]
    sat = _opt(setup, 30.0, target="fpga", acc_saturate=14)
    narrowed = 0
    for lp in sat.plan.layers:
        if lp.float_layer:
            continue
        assert lp.acc_bits == min(14, sat.acc_proven_bits[lp.name])
        if sat.acc_proven_bits[lp.name] > 14:
            narrowed += 1
            assert lp.acc_overflow is OverflowMode.SATURATE
    assert narrowed >= 1
    ho = sat.splits["held_out"]
    rep = simulate(g, sat.plan, x[ho["start"]:ho["stop"]], y[ho["start"]:ho["stop"]])
    assert sat.measured_sqnr_db == pytest.approx(rep.output_sqnr_db)


def test_max_sqnr_under_budgets_without_target(setup):
    res = _opt(setup, None, target="mcu", budgets={"flash": 30_000})
    assert res.target_sqnr_db is None and res.hardware["mcu"]["flash_bytes"] <= 30_000
    tighter = _opt(setup, None, target="mcu", budgets={"flash": 20_000})
    assert tighter.predicted_additive_db <= res.predicted_additive_db  # the MILP objective


# ------------------------------------------------------------------ CLI
def _npz(tmp_path, setup):
    _, x, y, _ = setup
    p = tmp_path / "data.npz"
    np.savez(p, x=x, y=y)
    return ["--data", f"npz:{p}", "--calib", str(CALIB)]


def test_cli_plan_fpga_max_dsp_end_to_end(tmp_path, capsys, setup):
    data = _npz(tmp_path, setup)
    rc = main(["plan", "mnist_cnn", *data, "--target-sqnr", "30", "--target", "fpga",
               "--cost", "lut", "--max-dsp", "2000", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["success"], out["message"]
    assert out["target"] == "fpga" and out["budgets"] == {"dsp": 2000}
    assert out["hardware"]["fpga"]["dsp"] <= 2000
    assert {"flash_bytes", "ram_bytes", "cycles"} <= set(out["hardware"]["mcu"])
    rc = main(["plan", "mnist_cnn", *data, "--target-sqnr", "30", "--target", "mcu",
               "--reuse-factor", "16", "--acc-saturate", "24"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "FPGA (DSP48E2):" in text and "MCU: flash" in text
    assert "accumulators saturate at 24 bits" in text


def test_cli_infeasible_budgets_are_one_line(tmp_path, capsys, setup):
    data = _npz(tmp_path, setup)
    rc = main(["plan", "mnist_cnn", *data, "--target-sqnr", "30", "--target", "fpga",
               "--max-dsp", "0", "--max-lut", "1000"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert ("cannot all be met together; dropping any one of dsp <= 0 DSP slices (--max-dsp), "
            "lut <= 1,000 LUTs (--max-lut) makes a plan possible") in err
    rc = main(["plan", "mnist_cnn", *data, "--target", "mcu", "--max-ram", "100"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "ram <= 100 bytes (--max-ram) cannot be met by any allowed widths" in err


def test_cli_hardware_options_need_an_optimized_plan(tmp_path, capsys, setup):
    data = _npz(tmp_path, setup)
    assert main(["plan", "mnist_cnn", *data, "--target", "mcu", "--acc-saturate", "20"]) == 2
    assert ("--target, --acc-saturate apply to optimized plans: give --target-sqnr, "
            "--max-accuracy-drop or a --max-* budget") in capsys.readouterr().err


def test_cli_bad_cost_file_is_one_line(tmp_path, capsys, setup):
    data = _npz(tmp_path, setup)
    bad = tmp_path / "c.json"
    bad.write_text('{"schema": "fxp.hw_costs/1"}')
    rc = main(["plan", "mnist_cnn", *data, "--target-sqnr", "30", "--cost-file", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and "c.json'" in err and "notes is missing" in err
