"""Training (fxp.train): fake quantization is bit-exact with the integer engine, and
retrained models exported as ONNX + plan simulate to the torch predictions on every image.

Small: a tiny CNN on sklearn ``digits`` (8x8), a few hundred steps in all.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from fxp import workflow as fw  # noqa: E402
from fxp.core.format import QFormat  # noqa: E402
from fxp.core.modes import RoundingMode  # noqa: E402
from fxp.ops.fixed import cast  # noqa: E402
from fxp.plan.io import load_plan  # noqa: E402
from fxp.plan.ptq import ptq_pow2  # noqa: E402
from fxp.sim.compile import compile_plan  # noqa: E402
from fxp.sim.integer import run_integer  # noqa: E402
from fxp.train.export import export_trained, graph_to_onnx  # noqa: E402
from fxp.train.fake_quant import FxpNet, round_exact  # noqa: E402
from fxp.train.inq import train_inq  # noqa: E402
from fxp.train.loop import TrainConfig  # noqa: E402
from fxp.train.qat import train_qat  # noqa: E402

from tests.train.conftest import N_TRAIN  # noqa: E402


def _eval(d):
    return fw.Data(d.x[N_TRAIN:], d.y[N_TRAIN:], "digits[1400:]")


def _check_export(res, tmp_path, name, d):
    """Export, re-import with fxp, simulate: same predictions and same integer logits."""
    exp = export_trained(res.net, tmp_path, name)
    graph = fw.load_model(exp.onnx_path)
    plan = load_plan(exp.plan_path)
    ev = _eval(d)
    rep = fw.run_simulation(graph, plan, ev, keep_predictions=True)
    assert np.array_equal(rep.fixed_predictions, res.eval_predictions)  # 100% agreement
    assert rep.fixed_top1 == pytest.approx(res.eval_top1)
    run = run_integer(compile_plan(graph, plan), ev.x, keep=True)
    v = run.values[res.net.logits_tensor]
    codes = res.net.logit_codes(res.eval_logits)
    if codes is None:  # float logits layer: equal float32 values
        np.testing.assert_array_equal(v.data, res.eval_logits.astype(np.float32))
    else:
        np.testing.assert_array_equal(v.codes, codes)
    return exp, graph, plan


# -- the fake-quant forward pass against the integer engine ---------------------------

@pytest.mark.parametrize("mode", [m for m in RoundingMode if m is not RoundingMode.STOCHASTIC])
def test_round_exact_matches_fxp_cast(mode):
    rng = np.random.default_rng(1)
    acc = np.concatenate([rng.integers(-2**40, 2**40, 4000), np.arange(-40, 41)])
    for shift in (1, 2, 5, 13):
        want, _ = cast(acc, QFormat.from_frac(64, shift), QFormat.from_frac(64, 0), mode,
                       "saturate")
        t = torch.from_numpy(acc.astype(np.float64)) * 2.0 ** -shift
        got = round_exact(t, mode).numpy().astype(np.int64)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bits,rounding,granularity", [
    (8, "half_up", "whole"), (4, "half_even", "whole"), (3, "floor", "whole"),
    (6, "half_away", "conv"), (5, "half_down", "dense")])
def test_fake_quant_equals_integer_engine(digits, float_graph, bits, rounding, granularity):
    _, d = digits
    plan = ptq_pow2(float_graph, d.x[:256], weight_bits=bits, act_bits=bits,
                    rounding=rounding, granularity=granularity)
    net = FxpNet(float_graph, plan)
    pred, logits = net.predict(d.x)
    run = run_integer(compile_plan(float_graph, plan), d.x, keep=True)
    v = run.values[net.logits_tensor]
    if granularity == "conv":  # float fc layer: float32 logits
        np.testing.assert_array_equal(v.data, logits.astype(np.float32))
    else:
        np.testing.assert_array_equal(v.codes, net.logit_codes(logits))


def test_fake_quant_equals_engine_on_zoo_mnist_cnn():
    try:
        g = fw.load_model("mnist_cnn")
        d = fw.load_data("mnist5k", g, limit=300)
    except Exception as e:  # noqa: BLE001 - zoo or data missing on this machine
        pytest.skip(f"mnist_cnn / mnist5k unavailable: {e}")
    plan = fw.make_plan(g, d, bits=8)
    net = FxpNet(g, plan)
    _, logits = net.predict(d.x)
    run = run_integer(compile_plan(g, plan), d.x, keep=True)
    np.testing.assert_array_equal(run.values[net.logits_tensor].codes, net.logit_codes(logits))


# -- QAT -----------------------------------------------------------------------------------

def test_qat_int8_finetune_export_is_exact(digits, float_graph, tmp_path):
    _, d = digits
    res = train_qat(float_graph, d.x[:N_TRAIN], d.y[:N_TRAIN], bits=8,
                    config=TrainConfig(epochs=3, lr=3e-4, batch_size=32),
                    eval_x=d.x[N_TRAIN:], eval_y=d.y[N_TRAIN:])
    assert res.eval_top1 > 0.85
    assert len(res.history) == 3
    _, graph, plan = _check_export(res, tmp_path, "q8", d)
    assert plan.layer("conv1").weight.fmt.bits == 8
    assert graph.metadata["fxp.preprocess.scale"] == "0.0625"  # preprocessing kept


def test_qat_4bit_export_is_exact(digits, float_graph, tmp_path):
    _, d = digits
    res = train_qat(float_graph, d.x[:N_TRAIN], d.y[:N_TRAIN], bits=4, rounding="half_even",
                    config=TrainConfig(epochs=3, lr=1e-3, batch_size=32),
                    eval_x=d.x[N_TRAIN:], eval_y=d.y[N_TRAIN:])
    assert res.eval_top1 > 0.5
    _, _, plan = _check_export(res, tmp_path, "q4", d)
    assert {lp.weight.fmt.bits for lp in plan.layers} == {4}
    assert plan.layers[0].output.fmt.bits == 4


@pytest.mark.parametrize("granularity", ["conv", "dense"])
def test_qat_conv_only_dense_only(digits, float_graph, tmp_path, granularity):
    _, d = digits
    res = train_qat(float_graph, d.x[:N_TRAIN], d.y[:N_TRAIN], bits=8, granularity=granularity,
                    config=TrainConfig(epochs=1, lr=3e-4, batch_size=64),
                    eval_x=d.x[N_TRAIN:], eval_y=d.y[N_TRAIN:])
    _, _, plan = _check_export(res, tmp_path, f"q8{granularity}", d)
    floats = {lp.name for lp in plan.layers if lp.float_layer}
    assert floats == ({"fc1"} if granularity == "conv" else {"conv1", "conv2"})


def test_qat_from_scratch_recalibrates_and_exports_exactly(digits, tmp_path):
    g, d = digits
    res = train_qat(g, d.x[:N_TRAIN], d.y[:N_TRAIN], bits=8, scratch=True,
                    config=TrainConfig(epochs=3, lr=3e-3, batch_size=32, seed=3),
                    eval_x=d.x[N_TRAIN:], eval_y=d.y[N_TRAIN:])
    assert res.eval_top1 > 0.6
    _check_export(res, tmp_path, "scratch", d)


# -- INQ ---------------------------------------------------------------------------------

def test_inq_4bit_pow2_weights_export_is_exact(digits, float_graph, tmp_path):
    _, d = digits
    res = train_inq(float_graph, d.x[:N_TRAIN], d.y[:N_TRAIN], bits=4,
                    config=TrainConfig(epochs=1, lr=3e-4, batch_size=32),
                    eval_x=d.x[N_TRAIN:], eval_y=d.y[N_TRAIN:])
    assert [h["frozen"] for h in res.history] == [0.5, 0.75, 0.875]
    assert res.eval_top1 > 0.8
    exp, graph, plan = _check_export(res, tmp_path, "inq4", d)
    for node in graph.nodes:
        if node.name not in res.extra["formats"]:
            continue
        info = res.extra["formats"][node.name]
        assert info["n1"] - info["n2"] == 7 and info["n2_eff"] == info["n2"]  # 2**(4-1) levels
        w = node.weight.astype(np.float64)
        nz = np.abs(w[w != 0])
        e = np.log2(nz)
        assert np.array_equal(e, np.round(e))  # exactly +-2**n
        assert e.min() >= info["n2"] and e.max() <= info["n1"]
        fmt = plan.layer(node.name).weight.fmt
        assert fmt.frac_bits == -info["n2"] and fmt.bits == 9


def test_inq_wide_bits_cap_the_format(digits, float_graph):
    from fxp.train.inq import inq_formats

    net = FxpNet(float_graph)
    w = {n: net.weight(n).detach().numpy() for n in net.weighted_layers}
    f6 = inq_formats(w, 6)
    assert all(v["n2_eff"] == v["n2"] and v["fmt"].bits == 33 for v in f6.values())
    f8 = inq_formats(w, 8)
    assert all(v["n2_eff"] > v["n2"] and v["fmt"].bits == 33 for v in f8.values())


# -- workflow / CLI: resume, errors, no torch import ------------------------------------------

def _onnx(tmp_path, graph):
    import onnx

    p = tmp_path / "digits_cnn.onnx"
    onnx.save(graph_to_onnx(graph), str(p))
    return p


def test_train_model_resumes_to_the_same_weights(digits, float_graph, tmp_path):
    model = _onnx(tmp_path, float_graph)
    kw = dict(bits=8, seed=1, limit=600, steps_per_epoch=5, batch_size=32, verify=False)
    fw.train_model("qat", model, "digits", out=tmp_path / "a", epochs=2, **kw)
    fw.train_model("qat", model, "digits", out=tmp_path / "b", epochs=1, **kw)
    res = fw.train_model("qat", model, "digits", out=tmp_path / "b", epochs=2, **kw)
    assert [h["epoch"] for h in res["history"]] == [1, 2]
    ga = fw.load_model(tmp_path / "a" / "digits_cnn-qat-w8.onnx")
    gb = fw.load_model(tmp_path / "b" / "digits_cnn-qat-w8.onnx")
    for na, nb in zip(ga.nodes, gb.nodes, strict=True):
        if hasattr(na, "weight"):
            np.testing.assert_array_equal(na.weight, nb.weight)
            np.testing.assert_array_equal(na.bias, nb.bias)


def test_cli_train_inq(digits, float_graph, tmp_path, capsys):
    from fxp.cli import main

    model = _onnx(tmp_path, float_graph)
    rc = main(["train", "inq", str(model), "--data", "digits", "--bits", "3", "--epochs", "1",
               "--limit", "400", "--out", str(tmp_path / "inq")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "agreement with torch 1.0000" in out
    assert (tmp_path / "inq" / "checkpoint.pt").exists()
    assert (tmp_path / "inq" / "digits_cnn-inq-w3.plan.json").exists()


def test_missing_torch_is_one_clear_error(monkeypatch, capsys, tmp_path):
    from fxp.cli import main
    from fxp.errors import MissingDependencyError
    from fxp.train import require_torch

    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install torch==2\.13\.0 before the "
                                                     r"train extra"):
        require_torch()
    rc = main(["train", "qat", "mnist_cnn", "--data", "digits", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "pip install torch==2.13.0 before the train extra" in err
    assert len(err.strip().splitlines()) == 1


def test_import_fxp_does_not_import_torch():
    code = ("import sys, fxp, fxp.workflow, fxp.cli, fxp.train, fxp.train.arch, fxp.train.export; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
