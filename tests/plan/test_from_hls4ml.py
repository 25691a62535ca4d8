"""``fxp plan --from-hls4ml``: an hls4ml config read back into a plan (issue 15)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from fxp.cli import main
from fxp.core.format import QFormat
from fxp.errors import FormatError, PlanError
from fxp.export.hls4ml import hls4ml_config, patch_hls4ml_config
from fxp.ir.nodes import Conv2D, Dense
from fxp.plan.from_hls4ml import load_hls4ml_config, parse_hls4ml_type, plan_from_hls4ml
from fxp.plan.io import load_plan
from fxp.plan.plan import LayerPlan, TensorSpec
from fxp.plan.ptq import ptq_pow2
from fxp.plan.softmax import SoftmaxTable
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer
from fxp.sim.values import to_float
from tests.export.test_hls4ml_config import torch_like_graph

SM = "/sm/Softmax"
# a config with Model defaults only (hls4ml's precedence: Model var, then Model default),
# each type one fxp can compute exactly: weights RND_CONV,SAT; accum/bias with F_x + F_w
MODEL_ONLY = {"Model": {"Precision": {"default": "fixed<24,12,RND_CONV,SAT>",
                                      "weight": "fixed<8,2,RND_CONV,SAT>",
                                      "bias": "fixed<30,12,RND_CONV,SAT>",
                                      "accum": "fixed<30,12,TRN,SAT>"},
                        "ReuseFactor": 1, "Strategy": "Latency"}}


@pytest.fixture(scope="module")
def gx():
    g = torch_like_graph()
    return g, np.random.default_rng(1).normal(size=(64, 2, 8, 8)).astype(np.float32)


def _sat_softmax_plan(g, x):
    """hls4ml accumulation order with a saturating 14-bit accumulator, a table softmax and
    the input converted as an ap_fixed without modes (truncate, wrap)."""
    plan = ptq_pow2(g, x, acc_bits=14, acc_overflow="saturate", name="sat")
    for lp in plan.layers:
        plan = plan.replace_layer(lp.name, acc_order="hls4ml")
    sp = SoftmaxTable(strategy="latency", table_size=256,
                      exp_table_t="ap_ufixed<10,1,AP_RND,AP_SAT>",
                      inv_table_t="ap_ufixed<12,4,AP_RND_CONV,AP_SAT>")
    sm = LayerPlan(SM, output=TensorSpec(QFormat(10, 2)), rounding="half_up",
                   output_overflow="saturate", softmax=sp)
    return replace(plan, layers=(*plan.layers, sm), input_rounding="floor",
                   input_overflow="wrap")


def test_round_trip_of_the_ptq_8bit_plan(gx, tmp_path):
    g, x = gx
    plan = ptq_pow2(g, x, name="ptq8")
    cfg = hls4ml_config(g, plan)
    assert plan_from_hls4ml(g, cfg, name="ptq8") == plan
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    assert plan_from_hls4ml(g, load_hls4ml_config(path), name="ptq8") == plan
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(cfg))
    assert plan_from_hls4ml(g, load_hls4ml_config(path), name="ptq8") == plan


def test_round_trip_of_an_acc_order_softmax_plan(gx):
    g, x = gx
    plan = _sat_softmax_plan(g, x)
    model = compile_plan(g, plan)
    counters = {}
    run_integer(model, x, counters)
    assert sum(c.acc_overflows for c in counters.values()) > 0  # the order matters here
    back = plan_from_hls4ml(g, hls4ml_config(g, plan), name="sat")
    assert back == plan
    # hls4ml's own names (qonnx style), matched in graph order after patching
    own = {"Model": {"Precision": {"default": "fixed<16,6>"}},
           "LayerName": {n: {"Precision": dict.fromkeys(k, "auto")} for n, k in [
               ("in0", ["result"]), ("Conv_0", ["result", "weight", "bias", "accum"]),
               ("Relu_0", ["result", "table"]), ("MaxPool_0", ["result", "accum"]),
               ("Flatten_0", ["result"]), ("Gemm_0", ["result", "weight", "bias", "accum"]),
               ("Softmax_0", ["result", "exp_table", "inv_table"])]}}
    patched = patch_hls4ml_config(g, plan, own)
    assert patched["LayerName"]["Relu_0"]["Precision"]["table"] == "auto"  # unused by a ReLU
    assert plan_from_hls4ml(g, patched, name="sat") == plan


def test_model_defaults_only_give_hls4mls_defaults(gx):
    g, _ = gx
    plan = plan_from_hls4ml(g, MODEL_ONLY)
    prec = {k: QFormat.parse(v.split(",RND")[0].split(",TRN")[0] + ">")
            for k, v in MODEL_ONLY["Model"]["Precision"].items()}
    assert plan.input.fmt == prec["default"]
    assert (plan.input_rounding.value, plan.input_overflow.value) == ("half_even", "saturate")
    weighted = [lp for lp in plan.layers if lp.weight is not None]
    assert [lp.name for lp in weighted] == ["/conv1/Conv", "/features/features.3/Gemm"]
    for lp in weighted:
        assert lp.weight.fmt == prec["weight"] and lp.output.fmt == prec["default"]
        frac = prec["default"].frac_bits + prec["weight"].frac_bits
        assert lp.acc_bits == prec["accum"].int_bits + frac  # the accum type, F_x + F_w
        assert lp.acc_overflow.value == "saturate" and lp.acc_order == "hls4ml"
        assert lp.bias is None and prec["bias"].frac_bits == frac  # bias = accumulator format
    sm = plan.layer(SM)  # no entry: hls4ml's table softmax with its own table defaults;
    # its accum_t comes from get_precision like any accum (checked against hls4ml below)
    assert sm.softmax == SoftmaxTable(accum_t=parse_hls4ml_type(
        MODEL_ONLY["Model"]["Precision"]["accum"], "accum"))
    assert sm.output.fmt == prec["default"]
    compile_plan(g, plan)
    # hls4ml's stock default (fixed<16,6> everywhere): tests/plan/test_from_hls4ml_defaults.py
    with pytest.raises(PlanError, match=r"^hls4ml Model Precision 'default' \(for 'x' "
                                        r"result\) is 'auto'"):  # a string: the default
        plan_from_hls4ml(g, {"Model": {"Precision": "auto"}})


def _cfg(**layers):
    return {"Model": MODEL_ONLY["Model"], "LayerName": layers}


@pytest.mark.parametrize(("cfg", "needle"), [
    (_cfg(conv1={"Precision": {"weight": "auto"}}),
     r"hls4ml layer 'conv1' Precision 'weight' .* is 'auto'"),
    (_cfg(conv1={"Precision": {"accum": "ufixed<20,12,TRN,WRAP>"}}),
     r"layer 'conv1' accum 'ufixed<20,12,TRN,WRAP>': fxp's accumulator is signed"),
    (_cfg(conv1={"Precision": {"accum": "fixed<4,-20,TRN,WRAP>"}}),
     r"^layer 'conv1' accum 'fixed<4,-20,TRN,WRAP>': bits"),
    (_cfg(conv1={"Precision": {"result": "fixed<24,12,RND,WRAP>"}},
          relu1={"Precision": {"result": "fixed<16,12,TRN,WRAP>"}}),
     r"layer 'conv1' result 'fixed<24,12,RND,WRAP>' and ReLU 'relu1' 'fixed<16,12,TRN,WRAP>': "
     r"the ReLU drops fraction bits with another rounding"),
    (_cfg(pool1={"Precision": {"result": "fixed<8,4>"}}),
     r"hls4ml layer 'pool1' result 'fixed<8,4,TRN,WRAP>': fxp passes .* unchanged"),
    (_cfg(pool1={"Precision": {"accum": "fixed<8,4>"}}), r"'pool1' accum .* cannot hold"),
    (_cfg(sm={"Precision": {"exp_table": "fixed<10,2>"}}),
     r"'sm' Precision 'exp_table' .* uses the layer key 'exp_table_t'"),
    (_cfg(sm={"Precision": {"result": "fixed<8,1>"}, "TableSize": 1000}), r"'sm': .*table_size"),
    (_cfg(conv1={"Precision": {"weight": "float"}}), r"expected an ap_fixed type.* 'float'"),
    (_cfg(nonesuch={"Precision": {}}), r"LayerName \['nonesuch'\] match no layer"),
    ({**_cfg(), "LayerType": {"Dense": {"Precision": "fixed<8,2>"}}}, r"'LayerType' entries"),
    ({"LayerName": []}, r"'LayerName' must be an object"),
    ({"LayerName": {}}, r"no 'result' precision and no Model default"),
])
def test_bad_configs_are_one_line_plan_errors(gx, cfg, needle):
    g, _ = gx
    with pytest.raises(PlanError, match=needle) as err:
        plan_from_hls4ml(g, cfg)
    assert "\n" not in str(err.value)


def test_parse_and_load_errors(tmp_path):
    t = parse_hls4ml_type("ap_ufixed<8,0,AP_RND,AP_SAT_SYM>", "x")
    assert t.fmt == QFormat(8, 0, False) and t.overflow.value == "saturate_symmetric"
    with pytest.raises(PlanError, match="x: saturation bits 2"):
        parse_hls4ml_type("fixed<8,3,RND,SAT,2>", "x")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(FormatError, match=r"bad.json' is not valid JSON/YAML"):
        load_hls4ml_config(bad)
    bad.write_text("[1]")
    with pytest.raises(FormatError, match="expected an object .* got list"):
        load_hls4ml_config(bad)
    pytest.importorskip("yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n  b")
    with pytest.raises(FormatError, match=r"bad.yaml' is not valid JSON/YAML: ") as err:
        load_hls4ml_config(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(FormatError, match="cannot read it"):
        load_hls4ml_config(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def torch_cnn(tmp_path_factory):
    """The csim test's small CNN as torch module, ONNX file and fxp graph."""
    torch = pytest.importorskip("torch")
    from fxp.frontends.onnx_import import load_onnx
    from fxp.ir.passes import canonicalize
    from tests.export.test_hls4ml_csim import SmallCNN

    torch.manual_seed(0)
    net = SmallCNN().eval()
    path = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    torch.onnx.export(net, (torch.zeros(1, 2, 8, 8),), str(path), dynamo=False,
                      input_names=["x"])
    x = np.random.default_rng(0).normal(size=(100, 2, 8, 8)).astype(np.float32)
    return net, path, canonicalize(load_onnx(path)), x


def test_cli_plan_from_hls4ml(torch_cnn, tmp_path, capsys):
    _, path, g, x = torch_cnn
    plan = ptq_pow2(g, x, name="hls4ml")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(hls4ml_config(g, plan)))
    out = tmp_path / "plan.json"
    assert main(["plan", str(path), "--from-hls4ml", str(cfg), "--out", str(out)]) == 0
    assert load_plan(out) == plan
    cfg.write_text(json.dumps({"Model": {"Precision": "auto"}}))
    assert main(["plan", str(path), "--from-hls4ml", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is 'auto'" in err
    assert main(["plan", str(path), "--from-hls4ml", str(cfg), "--target-sqnr", "30"]) == 2
    assert "takes no --target-sqnr" in capsys.readouterr().err


def test_model_only_config_types_are_what_hls4ml_resolves_and_csim_agrees(torch_cnn, tmp_path):
    """hls4ml builds the model from the Model-only config; every type fxp predicted is the
    one hls4ml resolved, and its compiled C simulation equals fxp's engine."""
    pytest.importorskip("hls4ml")
    import hls4ml

    net, _, g, x = torch_cnn
    plan = plan_from_hls4ml(g, MODEL_ONLY)
    cfg = hls4ml.utils.config_from_pytorch_model(net, (2, 8, 8), granularity="model",
                                                 backend="Vivado")
    assert "LayerName" not in cfg  # Model defaults only
    named = hls4ml.utils.config_from_pytorch_model(net, (2, 8, 8), granularity="name",
                                                   backend="Vivado")
    with pytest.raises(PlanError, match=r"^hls4ml layer 'x' Precision 'result' .* is 'auto' "
                                        r"\(hls4ml infers it"):
        plan_from_hls4ml(g, named)  # hls4ml's per-layer config: 'auto' types, refused
    cfg["Model"]["Precision"] = dict(MODEL_ONLY["Model"]["Precision"])
    assert plan_from_hls4ml(g, cfg) == plan
    hm = hls4ml.converters.convert_from_pytorch_model(
        net, hls_config=cfg, output_dir=str(tmp_path / "prj"), backend="Vivado",
        io_type="io_parallel")
    layers = {lay.name: lay for lay in hm.get_layers()}
    weighted = {lp.name: lp for lp in plan.layers if lp.weight is not None}
    for node in g.nodes:
        if isinstance(node, (Conv2D, Dense)):
            lay = layers[node.name.split("/")[-2].replace(".", "_")]
            lp = weighted[node.name]
            w = parse_hls4ml_type(str(lay.get_attr("weight_t").precision), "w")
            assert (w.fmt, w.rounding.value, w.overflow.value) == (lp.weight.fmt, "half_even",
                                                                    "saturate")
            acc = parse_hls4ml_type(str(lay.get_attr("accum_t").precision), "acc")
            assert acc.overflow is lp.acc_overflow
            assert acc.fmt.int_bits + lp.weight.fmt.frac_bits + plan.input.fmt.frac_bits \
                == lp.acc_bits  # every layer input is in the Model default here
    sm = next(lay for lay in layers.values() if lay.class_name == "Softmax")
    sp = plan.layer(SM).softmax
    for key in ("exp_table_t", "inv_table_t", "inv_inp_t", "accum_t"):
        assert parse_hls4ml_type(str(sm.get_attr(key).precision), key) == getattr(sp, key)
    assert sm.get_attr("table_size") == sp.table_size
    if shutil.which("g++") is None:
        pytest.skip("needs g++ for hls4ml's C simulation")
    # trace every layer: entries without Precision, so the types still come from Model
    names = ["x", "conv1", "relu1", "pool1", "flat", "fc1", "sm"]
    cfg["LayerName"] = {n: {"Trace": True} for n in names}
    assert plan_from_hls4ml(g, cfg) == plan
    hm = hls4ml.converters.convert_from_pytorch_model(
        net, hls_config=cfg, output_dir=str(tmp_path / "traced"), backend="Vivado",
        io_type="io_parallel")
    hm.compile()
    xs = np.ascontiguousarray(x * 4)  # logits large enough for the softmax to vary
    _, trace = hm.trace(xs)
    model = compile_plan(g, plan)
    run = run_integer(model, xs, keep=True)
    tensors = {"relu1": g.nodes[0].outputs[0], "pool1": g.nodes[1].outputs[0],
               "fc1": g.nodes[3].outputs[0], "sm": g.outputs[0]}
    assert [type(n).__name__ for n in g.nodes] == ["Conv2D", "MaxPool2D", "Flatten", "Dense",
                                                   "Softmax"]
    for name, tensor in tensors.items():
        ref = to_float(run.values[tensor])
        ref = ref.transpose(0, 2, 3, 1) if ref.ndim == 4 else ref  # hls4ml is channels-last
        got = np.asarray(trace[name]).reshape(ref.shape)
        assert int(np.count_nonzero(got != ref)) == 0, name
    probs = to_float(run.values[g.outputs[0]])
    assert len(np.unique(probs)) > 20  # the softmax output is not constant
    assert np.array_equal(np.asarray(hm.predict(xs)).reshape(probs.shape), probs)
    # the comparison can fail: truncating conv1's result instead of rounding it changes
    # the logits hls4ml computed
    other = run_integer(compile_plan(g, plan.replace_layer(g.nodes[0].name, rounding="floor")),
                        xs, keep=True).values[tensors["fc1"]]
    assert int(np.count_nonzero(to_float(other) != np.asarray(trace["fc1"]).reshape(
        other.codes.shape))) > 0
