"""hls4ml's own stock config, predicted bit for bit (issue 15).

``config_from_pytorch_model(granularity="model")`` gives one type for
everything, ``ap_fixed<16,6>`` (truncate, wrap): the input is truncated and
wrapped, weights and biases are truncated and wrapped (after hls4ml prints them
with 10 decimal places into its weight headers), every ``<16,6> x <16,6>``
product (20 fraction bits) is truncated to the accumulator's 10, the
accumulator wraps, and the layer's result and the ReLU's are two wrapping
casts.  ``plan_from_hls4ml`` turns that into a plan (``acc_frac_bits``,
``weight_rounding`` ..., ``result``, ``param_decimals``) and hls4ml's compiled C
simulation must equal fxp's engine on every traced value.
"""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.plan.from_hls4ml import plan_from_hls4ml
from fxp.sim.compile import compile_plan
from fxp.sim.compile_pow2 import decimal_text_values
from fxp.sim.integer import run_integer
from fxp.sim.values import to_float
from tests.plan.test_from_hls4ml import torch_cnn  # noqa: F401  (fixture)

STOCK = {"Model": {"Precision": {"default": "fixed<16,6>"}, "ReuseFactor": 1,
                   "Strategy": "Latency"}}
# a tiny negative weight prints as -0.0000000000 with 10 places: hls4ml's truncation gives
# code 0, exact truncation -1 (no float32 lies within 0.5e-10 of a nonzero multiple of 2**-10)
TINY_NEG = float(np.float32(-1e-12))


def test_stock_default_plan_fields(torch_cnn):  # noqa: F811
    _, _, g, _ = torch_cnn
    plan = plan_from_hls4ml(g, STOCK)
    f = QFormat(16, 6)
    assert plan.input.fmt == f
    assert (plan.input_rounding.value, plan.input_overflow.value) == ("floor", "wrap")
    conv, fc = (lp for lp in plan.layers if lp.weight is not None)
    for lp in (conv, fc):
        assert (lp.weight.fmt, lp.weight_rounding.value, lp.weight_overflow.value) == (
            f, "floor", "wrap")
        assert (lp.acc_bits, lp.acc_frac_bits, lp.acc_rounding.value) == (16, 10, "floor")
        assert lp.bias is None and lp.acc_overflow.value == "wrap"
        assert lp.output.fmt == f and lp.output_overflow.value == "wrap"
    # conv1's result type and relu1's are two wrapping casts: not fusable exactly
    assert conv.result is not None and conv.result.fmt == f
    assert conv.result_overflow.value == "wrap" and fc.result is None
    steps = {s.name: s for s in compile_plan(g, plan).steps}
    assert steps[conv.name].product_shift == 10 and steps[fc.name].product_shift == 10


def test_decimal_text_is_what_hls4ml_writes():
    v = np.array([TINY_NEG, 0.1, 2.0 ** -10, 1 / 3])
    text = decimal_text_values(v, 10)
    assert text.tolist() == [float(f"{x:.10f}") for x in v.tolist()]
    assert text[0] == 0.0 and text[2] == v[2] and text[3] == 0.3333333333
    assert decimal_text_values(v, -3)[2] == 0.0


# narrow per-layer types: conv1's result wraps before the ReLU casts it again (rounding
# away 2 more fraction bits), saturating accumulators that round every product
NARROW = {"x": {"Precision": {"result": "fixed<10,4,RND_CONV,SAT>"}},
          "conv1": {"Precision": {"accum": "fixed<18,7,RND,SAT>", "result": "fixed<8,3,RND,WRAP>",
                                  "weight": "fixed<8,1,TRN_ZERO,SAT>"}},
          "relu1": {"Precision": {"result": "ufixed<6,3,RND,SAT>"}},
          "pool1": {"Precision": {"result": "ufixed<6,3>", "accum": "ufixed<6,3>"}},
          "flat": {"Precision": {"result": "ufixed<6,3>"}},
          "fc1": {"Precision": {"weight": "fixed<6,1,RND_CONV,SAT>", "bias": "fixed<8,3>",
                                "accum": "fixed<14,6,RND_INF,WRAP>",
                                "result": "fixed<12,6,RND_ZERO,SAT>"}}}


def _csim(hls4ml, net, cfg, out_dir, xs):
    hm = hls4ml.converters.convert_from_pytorch_model(
        net, hls_config=cfg, output_dir=str(out_dir), backend="Vivado", io_type="io_parallel")
    hm.compile()
    return hm, hm.trace(xs)[1]


def _differ(g, plan, trace, xs) -> dict[str, int]:
    run = run_integer(compile_plan(g, plan), xs, keep=True)
    tensors = {"relu1": g.nodes[0].outputs[0], "pool1": g.nodes[1].outputs[0],
               "fc1": g.nodes[3].outputs[0], "sm": g.outputs[0]}
    out = {}
    for name, tensor in tensors.items():
        ref = to_float(run.values[tensor])
        ref = ref.transpose(0, 2, 3, 1) if ref.ndim == 4 else ref  # hls4ml is channels-last
        out[name] = int(np.count_nonzero(np.asarray(trace[name]).reshape(ref.shape) != ref))
    return out


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ for hls4ml's C simulation")
def test_narrow_two_cast_config_csim_equals_fxp_engine(torch_cnn, tmp_path):  # noqa: F811
    hls4ml = pytest.importorskip("hls4ml")
    net, _, g, x = torch_cnn
    cfg = hls4ml.utils.config_from_pytorch_model(net, (2, 8, 8), granularity="model",
                                                 backend="Vivado")
    cfg["LayerName"] = {n: {**e, "Trace": True} for n, e in NARROW.items()}
    cfg["LayerName"]["sm"] = {"Trace": True}
    plan = plan_from_hls4ml(g, cfg)
    conv = plan.layers[0]
    assert conv.result is not None and conv.acc_frac_bits == 11 and conv.acc_order == "hls4ml"
    xs = np.ascontiguousarray(x * 3)
    _, trace = _csim(hls4ml, net, cfg, tmp_path / "narrow", xs)
    assert _differ(g, plan, trace, xs) == {"relu1": 0, "pool1": 0, "fc1": 0, "sm": 0}
    # the two casts matter here: fusing them (round, clamp, overflow once) differs
    fused = plan.replace_layer(conv.name, result=None, output_overflow="wrap")
    assert _differ(g, fused, trace, xs)["relu1"] > 0


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ for hls4ml's C simulation")
def test_stock_config_csim_equals_fxp_engine(torch_cnn, tmp_path):  # noqa: F811
    hls4ml = pytest.importorskip("hls4ml")
    torch = pytest.importorskip("torch")
    from fxp.frontends.onnx_import import load_onnx
    from fxp.ir.passes import canonicalize

    net0, _, _, x = torch_cnn
    net = copy.deepcopy(net0)
    with torch.no_grad():  # a weight whose decimal text crosses a truncation boundary
        net.conv1.weight[0, 0, 0, 0] = TINY_NEG
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(net, (torch.zeros(1, 2, 8, 8),), str(path), dynamo=False,
                      input_names=["x"])
    g = canonicalize(load_onnx(path))
    cfg = hls4ml.utils.config_from_pytorch_model(net, (2, 8, 8), granularity="model",
                                                 backend="Vivado")
    assert cfg["Model"]["Precision"] == {"default": "ap_fixed<16,6>"}  # hls4ml's stock default
    names = ["x", "conv1", "relu1", "pool1", "flat", "fc1", "sm"]
    cfg["LayerName"] = {n: {"Trace": True} for n in names}
    plan = plan_from_hls4ml(g, cfg)
    conv = plan.layers[0]
    assert conv.param_decimals  # set: the text changes that weight's code
    assert not plan.layers[1].param_decimals
    hm = hls4ml.converters.convert_from_pytorch_model(
        net, hls_config=cfg, output_dir=str(tmp_path / "prj"), backend="Vivado",
        io_type="io_parallel")
    hm.compile()
    xs = np.ascontiguousarray(x * 24)  # large enough for the <16,6> accumulators to wrap
    _, trace = hm.trace(xs)
    model = compile_plan(g, plan)
    counters = {}
    run = run_integer(model, xs, counters, keep=True)
    assert sum(c.acc_overflows for c in counters.values()) > 0  # wrapping is exercised
    tensors = {"relu1": g.nodes[0].outputs[0], "pool1": g.nodes[1].outputs[0],
               "fc1": g.nodes[3].outputs[0], "sm": g.outputs[0]}
    total = 0
    for name, tensor in tensors.items():
        ref = to_float(run.values[tensor])
        ref = ref.transpose(0, 2, 3, 1) if ref.ndim == 4 else ref  # hls4ml is channels-last
        got = np.asarray(trace[name]).reshape(ref.shape)
        assert int(np.count_nonzero(got != ref)) == 0, name
        total += ref.size
    assert total == len(xs) * (4 * 8 * 8 + 4 * 4 * 4 + 5 + 5)
    probs = to_float(run.values[g.outputs[0]])
    assert np.array_equal(np.asarray(hm.predict(xs)).reshape(probs.shape), probs)

    def relu1_differs(p) -> int:
        other = run_integer(compile_plan(g, p), xs, keep=True).values[tensors["relu1"]]
        want = np.asarray(trace["relu1"]).reshape(-1, 8, 8, 4).transpose(0, 3, 1, 2)
        return int(np.count_nonzero(to_float(other) != want))

    # each modelled step matters: truncated products, truncated weights, the weight text
    assert relu1_differs(plan.replace_layer(conv.name, acc_frac_bits=None)) > 0
    assert relu1_differs(plan.replace_layer(conv.name, weight_rounding="half_even")) > 0
    assert relu1_differs(plan.replace_layer(conv.name, param_decimals=False)) > 0


@pytest.mark.parametrize("layers", [{}, NARROW], ids=["stock", "narrow"])
def test_plans_with_the_new_fields_round_trip_through_hls4ml_config(torch_cnn, layers):  # noqa: F811
    from fxp.export.hls4ml import hls4ml_config

    _, _, g, _ = torch_cnn
    plan = plan_from_hls4ml(g, {**STOCK, "LayerName": layers})
    assert plan_from_hls4ml(g, hls4ml_config(g, plan)) == plan
