"""hls4ml's ONNX frontend computes fxp's integers (issue 15, last item).

The SmallCNN of ``test_hls4ml_csim.py`` is exported to ONNX, cleaned with
qonnx as hls4ml requires, and converted by hls4ml's ONNX frontend with hls4ml's
own config (``config_from_onnx_model``) patched by fxp
(:func:`fxp.export.hls4ml_onnx.hls4ml_onnx_project`).  hls4ml builds
``Transpose_0`` (qonnx's channels-last input), ``Conv2D_Conv_0``, ``Relu_0``,
``MaxPool_0``, ``Flatten_0``, ``Dense_MatMul_0`` (the ONNX ``MatMul`` with its
bias ``Add`` fused) and ``Softmax_0``; the C simulation is compiled with g++
and every traced layer with an fxp counterpart is compared with fxp's integer
engine, element by element, under the uniform 8-bit plan and the saturating
hls4ml-order plan (91,600 values each; the mixed 30 dB plan gives 0 differing
too, left out of CI for time: a C simulation compiles in ~20 s).  Controls: hls4ml's stock config
differs; the patched config given to hls4ml alone leaves the fused Dense's
result at hls4ml's inferred type (the check names it); the config reads back
into the same plan (``fxp plan --from-hls4ml``).
Skips without torch, hls4ml or qonnx; the C simulations also need g++.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import shutil
import sys
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
hls4ml = pytest.importorskip("hls4ml")
pytest.importorskip("qonnx")

from fxp.cli import main
from fxp.errors import FormatError, MissingDependencyError, ModelImportError, PlanError
from fxp.export.hls4ml import patch_hls4ml_config
from fxp.export.hls4ml_onnx import (
    check_hls4ml_types,
    clean_onnx_model,
    hls4ml_onnx_project,
    onnx_layers,
)
from fxp.export.hls4ml_types import hls4ml_slots, hls_type
from fxp.frontends.onnx_import import load_onnx
from fxp.ir.passes import canonicalize
from fxp.plan.from_hls4ml import plan_from_hls4ml
from fxp.plan.io import load_plan
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer
from fxp.sim.values import to_float
from tests.export.test_hls4ml_csim import SmallCNN, _plans

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None,
                               reason="needs g++ for hls4ml's C simulation")
TRACED = ["Transpose_0", "Relu_0", "MaxPool_0", "Dense_MatMul_0", "Softmax_0"]
# input, ReLU output, pooled tensor, logits, softmax: values per input
PER_INPUT = 2 * 8 * 8 + 4 * 8 * 8 + 4 * 4 * 4 + 5 + 5
FC = "/fc1/Gemm"


@pytest.fixture(scope="module")
def onnx_cnn(tmp_path_factory):
    torch.manual_seed(0)
    net = SmallCNN().eval()
    path = tmp_path_factory.mktemp("onnx_cnn") / "cnn.onnx"
    torch.onnx.export(net, (torch.zeros(1, 2, 8, 8),), str(path), dynamo=False,
                      input_names=["x"])
    graph = canonicalize(load_onnx(path))
    x = np.random.default_rng(0).normal(size=(200, 2, 8, 8)).astype(np.float32)
    return path, graph, x, _plans(graph, x)


@pytest.fixture(scope="module")
def base(onnx_cnn):
    """hls4ml's own config for the qonnx-cleaned model."""
    with contextlib.redirect_stdout(io.StringIO()):
        return hls4ml.utils.config_from_onnx_model(clean_onnx_model(onnx_cnn[0]),
                                                   granularity="name", backend="Vivado")


def _differ(trace, layers, run) -> dict[str, tuple[int, int]]:
    """``{hls4ml layer: (differing, compared)}`` for each traced layer with an fxp tensor."""
    out = {}
    for lay in layers:
        if lay.slot.tensor is None or lay.built not in trace:
            continue
        ref = to_float(run.values[lay.slot.tensor])
        if ref.ndim == 4:
            ref = ref.transpose(0, 2, 3, 1)  # hls4ml is channels-last
        got = np.asarray(trace[lay.built]).reshape(ref.shape)
        out[lay.built] = (int(np.count_nonzero(got != ref)), ref.size)
    return out


@needs_gxx
@pytest.mark.parametrize("key", ["uniform", "sat"])  # "mixed" too, locally: 0 differ
def test_onnx_frontend_csim_equals_fxp_engine(onnx_cnn, tmp_path, key):
    path, g, x, plans = onnx_cnn
    plan = plans[key]
    counters = {}
    run = run_integer(compile_plan(g, plan), x, counters, keep=True, method="loop")
    # hls4ml's trace writes and compiles the C simulation itself (with tracing)
    hm, layers = hls4ml_onnx_project(path, g, plan, tmp_path / key, write=False, trace=True)
    assert [lay.built for lay in layers] == ["global_in", "Transpose_0", "Conv2D_Conv_0",
                                             "Relu_0", "MaxPool_0", "Flatten_0",
                                             "Dense_MatMul_0", "Softmax_0"]
    xs = np.ascontiguousarray(x)
    _, trace = hm.trace(xs)
    counts = _differ(trace, layers, run)
    assert list(counts) == TRACED, counts
    assert sum(t for _, t in counts.values()) == len(x) * PER_INPUT  # 91,600 values
    assert {n: d for n, (d, _) in counts.items()} == dict.fromkeys(TRACED, 0), counts
    probs = to_float(run.values[g.outputs[0]])
    assert np.array_equal(np.asarray(hm.predict(xs)).reshape(probs.shape), probs)
    if key == "sat":  # the fused Dense saturates: its bias-first order is what matches
        assert counters[FC].acc_overflows > 0
        other = run_integer(compile_plan(g, plan.replace_layer(FC, acc_order="fxp")), x,
                            keep=True)
        assert _differ(trace, layers, other)["Dense_MatMul_0"][0] > 0


@needs_gxx
def test_stock_onnx_config_differs(onnx_cnn, base, tmp_path):
    """Negative control: hls4ml's own config (``auto`` and ``fixed<16,6>``) is not the plan."""
    path, g, x, plans = onnx_cnn
    plan = plans["uniform"]
    cfg = copy.deepcopy(base)
    for entry in cfg["LayerName"].values():
        entry["Trace"] = True
    with contextlib.redirect_stdout(io.StringIO()):
        hm = hls4ml.converters.convert_from_onnx_model(
            clean_onnx_model(path), hls_config=cfg, output_dir=str(tmp_path / "stock"),
            backend="Vivado", io_type="io_parallel")
        _, trace = hm.trace(np.ascontiguousarray(x))  # writes and compiles
    layers = onnx_layers(patch_hls4ml_config(g, plan, base), hls4ml_slots(compile_plan(g, plan)))
    with pytest.raises(FormatError, match=r"'global_in' result_t is fixed<16,6"):
        check_hls4ml_types(hm, layers)
    counts = _differ(trace, layers, run_integer(compile_plan(g, plan), x, keep=True))
    assert list(counts) == TRACED
    assert all(counts[n][0] > 0 for n in ("Transpose_0", "Relu_0", "Dense_MatMul_0")), counts


def test_patched_config_alone_leaves_the_fused_dense_result_inferred(onnx_cnn, base, tmp_path):
    """hls4ml fuses the bias Add only into an ``auto`` MatMul result and then infers that
    type: without fxp's step the Dense is unrounded (the check names it); with an explicit
    result hls4ml keeps the Add as an ApplyAlpha layer (the check names that too)."""
    path, g, _, plans = onnx_cnn
    plan = plans["sat"]
    cfg = patch_hls4ml_config(g, plan, base)
    layers = onnx_layers(cfg, hls4ml_slots(compile_plan(g, plan)))
    fc = plan.layer(FC)
    dense_t = hls_type(fc.output.fmt, fc.rounding, fc.output_overflow)  # fixed<8,2,RND,SAT>
    assert cfg["LayerName"]["MatMul_0"]["Precision"]["result"] == "auto"
    assert cfg["LayerName"]["Add_0"]["Precision"]["result"] == dense_t

    def convert(c, name):
        with contextlib.redirect_stdout(io.StringIO()):
            return hls4ml.converters.convert_from_onnx_model(
                clean_onnx_model(path), hls_config=copy.deepcopy(c),
                output_dir=str(tmp_path / name), backend="Vivado", io_type="io_parallel")

    with pytest.raises(FormatError, match=r"'Dense_MatMul_0' result_t is fixed<\d+,\d+,TRN,"
                                          r"WRAP,0>, fxp's plan needs " + re.escape(dense_t[:-1])):
        check_hls4ml_types(convert(cfg, "as_is"), layers)
    explicit = copy.deepcopy(cfg)
    explicit["LayerName"]["MatMul_0"]["Precision"]["result"] = dense_t
    with pytest.raises(FormatError, match=r"built layers \['bn_Add_0 \(ApplyAlpha\)'\]"):
        check_hls4ml_types(convert(explicit, "unfused"), layers)
    with pytest.raises(PlanError, match=f"'MatMul_0' result is {re.escape(repr(dense_t))}: "
                                        "hls4ml then keeps its bias 'Add_0'"):
        plan_from_hls4ml(g, explicit)


@pytest.mark.parametrize("key", ["uniform", "mixed", "sat"])
def test_onnx_config_round_trip(onnx_cnn, base, key):
    """Every hls4ml entry gets a type (no 'auto' but the MatMul's), and reads back."""
    _, g, _, plans = onnx_cnn
    cfg = patch_hls4ml_config(g, plans[key], base)
    autos = [(n, v) for n, e in cfg["LayerName"].items()
             for v, t in e["Precision"].items() if t == "auto"]
    assert autos == [("MatMul_0", "result")]
    assert set(cfg["LayerName"]) == set(base["LayerName"])
    assert cfg["LayerName"]["Conv_0_param0"]["Precision"]["result"] == \
        cfg["LayerName"]["Conv_0"]["Precision"]["weight"]
    assert plan_from_hls4ml(g, cfg, name=plans[key].name) == plans[key]


def test_cli_plan_from_an_onnx_config(onnx_cnn, base, tmp_path, capsys):
    path, g, _, plans = onnx_cnn
    plan = replace(plans["sat"], name="hls4ml")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(patch_hls4ml_config(g, plan, base)))
    out = tmp_path / "plan.json"
    assert main(["plan", str(path), "--from-hls4ml", str(cfg), "--out", str(out)]) == 0
    assert load_plan(out) == plan
    bad = patch_hls4ml_config(g, plan, base)
    bad["LayerName"]["Add_0"]["Precision"]["bias"] = "fixed<12,2,RND_CONV,SAT>"
    cfg.write_text(json.dumps(bad))
    capsys.readouterr()
    assert main(["plan", str(path), "--from-hls4ml", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'Add_0' bias 'fixed<12,2,RND_CONV,SAT>' differs" in err


def _without(cfg, key):
    out = copy.deepcopy(cfg)
    del out["LayerName"][key]
    return out


def _with(cfg, key, entry):
    out = copy.deepcopy(cfg)
    out["LayerName"][key] = entry
    return out


@pytest.mark.parametrize("edit, match", [
    (lambda c: _with(c, "/conv1/Conv", {"Precision": {}}),
     r"entry '/conv1/Conv' is no node fxp's hls4ml export maps"),
    (lambda c: _with(c, "BatchNormalization_0", {"Precision": {}}),
     r"entry 'BatchNormalization_0' is no node"),
    (lambda c: _with(c, "Add_1", {"Precision": {}}),
     r"'Add_1' is an Add that is no bias of the MatMul before it"),
    (lambda c: _without(c, "Softmax_0"), r"no layer for fxp's \['/sm/Softmax'\]"),
    (lambda c: _without(c, "Conv_0"),
     r"'Relu_0' is a Relu; fxp's next layer '/conv1/Conv' is a Conv2D"),
    (lambda c: _with(c, "Softmax_1", {"Precision": {}}),
     r"'Softmax_1' \(Softmax\) has no counterpart"),
    (lambda c: _with(c, "Relu_0_param0", {"Precision": {}}),
     r"'Relu_0_param0': Relu 'Relu_0' has no constant input 0"),
])
def test_onnx_config_errors(onnx_cnn, base, edit, match):
    _, g, _, plans = onnx_cnn
    with pytest.raises(FormatError, match=match):
        patch_hls4ml_config(g, plans["uniform"], edit(base))
    with pytest.raises(PlanError, match=match):
        plan_from_hls4ml(g, edit(patch_hls4ml_config(g, plans["uniform"], base)))


def test_missing_or_failing_qonnx(monkeypatch, tmp_path):
    bad = tmp_path / "not_a_model.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ModelImportError, match=r"qonnx cannot clean '.*not_a_model.onnx' for "
                                               "hls4ml's ONNX frontend"):
        clean_onnx_model(str(bad))
    monkeypatch.setitem(sys.modules, "qonnx.core.modelwrapper", None)
    with pytest.raises(MissingDependencyError, match=r"needs qonnx .*pip install qonnx==1.0.0"):
        clean_onnx_model(str(bad))
