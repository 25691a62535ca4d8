"""QONNX export (``fxp.export.qonnx``): back through fxp's importer and through qonnx itself.

Two independent checks of one property, "the exported model computes the
plan's integers": (a) ``load_qonnx`` of the export gives the same plan entries
and the same integer codes; (b) ``qonnx.core.onnx_exec.execute_onnx`` runs the
export and its float-carried values divided by the scale equal fxp's integer
engine's codes, on every element of every layer output (0 differing).
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("qonnx")

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes

from fxp.errors import PlanError, UnsupportedOpError
from fxp.export.qonnx import QONNX_DOMAIN, export_qonnx, qonnx_model
from fxp.frontends.onnx_import import load_onnx
from fxp.frontends.qonnx import load_qonnx
from fxp.frontends.qonnx_ops import QONNX_ROUNDING
from fxp.plan.plan import LayerPlan, TensorSpec
from fxp.plan.ptq import ptq_pow2
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer
from tests.builders import OnnxBuilder, conv, dense, flatten, pool

N = 64


def _small(relu1: bool = True, relu2: bool = True, avg: bool = False):
    """Conv [-> Relu] -> MaxPool -> Conv [-> Relu] -> MaxPool -> Flatten -> Gemm (float)."""
    b = OnnxBuilder((2, 8, 8), rng=np.random.default_rng(0))
    h = conv(b, "x", 4)
    h = pool(b, b.node("Relu", [h], None) if relu1 else h, "MaxPool")
    h = conv(b, h, 6)
    h = b.node("Relu", [h], None) if relu2 else h
    h = pool(b, h, "AveragePool" if avg else "MaxPool")
    return load_onnx(b.model(dense(b, flatten(b, h), 5)))


@pytest.fixture(scope="module")
def small():
    g = _small()
    x = np.random.default_rng(1).normal(0, 1, (N, 2, 8, 8)).astype(np.float32)
    x[:2] = np.round(x[:2] * 8) / 8 + 1 / 16  # ties of the input quantizer
    return g, x


def _qonnx_codes(graph, plan, x):
    """``{fxp tensor: (fxp codes, qonnx values / scale)}`` for every integer layer output."""
    model = qonnx_model(graph, plan, batch=len(x))
    ctx = execute_onnx(ModelWrapper(model).transform(InferShapes()), {"x": x},
                       return_full_exec_context=True)
    cm = compile_plan(graph, plan)
    run = run_integer(cm, x, keep=True)
    out = {}
    for step in cm.steps:
        spec = step.out_spec
        if spec is None or step.node.output not in ctx:
            continue
        got = np.asarray(ctx[step.node.output], np.float64) / spec.scale_array()[0]
        out[step.node.output] = (run.values[step.node.output].codes, got)
    return model, out


def _assert_same_codes(pairs, min_tensors):
    assert len(pairs) >= min_tensors
    for t, (codes, got) in pairs.items():
        assert np.array_equal(got, np.round(got)), f"{t}: qonnx values off the grid"
        bad = int(np.count_nonzero(codes != got))
        assert bad == 0, f"{t}: {bad} of {codes.size} codes differ from qonnx"


@pytest.mark.parametrize("bits", [4, 8])
def test_round_trip_same_plan_and_codes(small, bits):
    """export -> load_qonnx: every layer entry equal, every layer output's codes equal."""
    g, x = small
    plan = ptq_pow2(g, x, weight_bits=bits, act_bits=bits, rounding="half_even")
    g2, p2 = load_qonnx(qonnx_model(g, plan))
    assert p2.input == plan.input and p2.input_rounding == plan.input_rounding
    assert [lp.name for lp in p2.layers] == [lp.name for lp in plan.layers]
    for lp in plan.layers:
        assert p2.layer(lp.name) == lp, lp.name
    cm1, cm2 = compile_plan(g, plan), compile_plan(g2, p2)
    r1, r2 = run_integer(cm1, x, keep=True), run_integer(cm2, x, keep=True)
    outs2 = {s.node.name: s.node.output for s in cm2.steps}
    for step in cm1.steps:
        if step.plan is not None:
            a, b = r1.values[step.node.output], r2.values[outs2[step.node.name]]
            assert a.spec == b.spec and np.array_equal(a.codes, b.codes), step.node.name


@pytest.mark.parametrize("bits", [4, 8])
def test_qonnx_executor_gives_plan_codes(small, bits):
    """qonnx's execute_onnx on the export: values / scale == fxp's codes (0 differ)."""
    g, x = small
    plan = ptq_pow2(g, x, weight_bits=bits, act_bits=bits, rounding="half_even")
    model, pairs = _qonnx_codes(g, plan, x)
    _assert_same_codes(pairs, 5)
    ops = [(n.domain, n.op_type) for n in model.graph.node]
    assert ops.count((QONNX_DOMAIN, "Quant")) == 1 + 2 * 3  # input, 3 weights, 3 outputs


MODES = ["half_even", "ceil", "floor", "away", "to_zero", "half_away", "half_to_zero"]


@pytest.mark.parametrize("mode", MODES)
def test_rounding_modes_and_narrow(small, mode):
    """Each fxp rounding qonnx names, on every layer, with narrow (symmetric) signed output."""
    g, x = small
    plan = ptq_pow2(g, x, weight_bits=4, act_bits=4, rounding=mode,
                    output_overflow="saturate_symmetric")
    model, pairs = _qonnx_codes(g, plan, x)
    _assert_same_codes(pairs, 5)
    quants = [n for n in model.graph.node if n.op_type == "Quant"]
    modes = {a.s.decode() for n in quants for a in n.attribute if a.name == "rounding_mode"}
    assert {QONNX_ROUNDING[m] for m in modes} == {plan.layers[0].rounding, plan.input_rounding}
    last = next(n for n in quants if n.output[0] == g.outputs[0])
    assert {a.name: a.i for a in last.attribute}["narrow"] == 1
    _, p2 = load_qonnx(model)
    assert p2.layers[-1].output_overflow.value == "saturate_symmetric"


def test_half_up_only_where_outputs_are_nonnegative(small):
    """half_up equals qonnx's HALF_UP after a ReLU; on a signed output it is refused."""
    g, x = small
    plan = ptq_pow2(g, x, weight_bits=4, act_bits=4, rounding="half_up")
    with pytest.raises(PlanError, match=r"layer 'gemm\d+' \(Dense\) output: rounding 'half_up' "
                                        r"\(ties toward \+inf\) on a signed output"):
        qonnx_model(g, plan)
    last = plan.layers[-1].name
    plan = plan.replace_layer(last, rounding="half_away")
    model, pairs = _qonnx_codes(g, plan, x)
    _assert_same_codes(pairs, 5)
    _, p2 = load_qonnx(model)
    assert p2.layers[0].rounding.value == "half_away"  # the same integers after the ReLU


def test_binary_layers_against_qonnx():
    """Binary conv (threshold output) then binary dense (alpha, scale output): 0 differ."""
    g = _small(relu1=False, relu2=False)
    x = np.random.default_rng(2).normal(0, 1, (N, 2, 8, 8)).astype(np.float32)
    names = [n.name for n in compile_plan(g, ptq_pow2(g, x, weight_bits=4)).graph.nodes]
    c2, fc = names[2], names[-1]
    plan = ptq_pow2(g, x, weight_bits=4, act_bits=6, rounding="half_even",
                    binary_layers=(c2, fc), alpha_bits=8, pad_value=0)
    plan = plan.replace_layer(c2, binary_output="threshold", output=None, alpha=None)
    model, pairs = _qonnx_codes(g, plan, x)
    _assert_same_codes(pairs, 5)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("BipolarQuant") == 4  # conv input, conv weight, its output, fc weight
    assert plan.layer(fc).alpha is not None and plan.layer(c2).binary_output == "threshold"


def test_binary_first_layer_reads_the_input_sign():
    """A binary first layer after a floor input: BipolarQuant(x) (the sign floor keeps), 0 differ."""
    from dataclasses import replace

    g = _small(relu1=False, relu2=False)
    x = np.random.default_rng(3).normal(0, 1, (N, 2, 8, 8)).astype(np.float32)
    c1 = compile_plan(g, ptq_pow2(g, x, weight_bits=4)).graph.nodes[0].name
    plan = ptq_pow2(g, x, weight_bits=4, act_bits=6, rounding="half_even", binary_layers=(c1,),
                    pad_value=0)
    model, pairs = _qonnx_codes(g, replace(plan, input_rounding="floor"), x)
    _assert_same_codes(pairs, 5)
    first = model.graph.node[0]
    assert (first.op_type, first.input[0]) == ("BipolarQuant", "x")
    _, pairs = _qonnx_codes(g, plan, x)  # half_even: Quant then BipolarQuant of the codes
    _assert_same_codes(pairs, 5)


def test_cli_export_qonnx(tmp_path, small, capsys):
    """``fxp export qonnx MODEL --plan P --out q.onnx`` writes a file load_qonnx reads back."""
    from fxp.cli import main
    from fxp.plan.io import save_plan

    g, x = small
    b = OnnxBuilder((2, 8, 8), rng=np.random.default_rng(0))
    h = pool(b, b.node("Relu", [conv(b, "x", 4)], None), "MaxPool")
    onnx.save(b.model(dense(b, flatten(b, h), 3)), str(tmp_path / "m.onnx"))
    g = load_onnx(str(tmp_path / "m.onnx"))
    plan = ptq_pow2(g, x, weight_bits=5, act_bits=6, rounding="floor")
    save_plan(plan, tmp_path / "p.json")
    out = tmp_path / "q.onnx"
    assert main(["export", "qonnx", str(tmp_path / "m.onnx"), "--plan", str(tmp_path / "p.json"),
                 "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    _, p2 = load_qonnx(str(out))
    assert [p2.layer(lp.name) for lp in plan.layers] == list(plan.layers)
    plan = plan.replace_layer(plan.layers[0].name, output_overflow="wrap")
    save_plan(plan, tmp_path / "w.json")
    assert main(["export", "qonnx", str(tmp_path / "m.onnx"), "--plan", str(tmp_path / "w.json"),
                 "--out", str(tmp_path / "w.onnx")]) == 2
    assert "output: overflow 'wrap'" in capsys.readouterr().err
    assert not (tmp_path / "w.onnx").exists()


def _refusal_cases(g, plan):
    first, last = plan.layers[0].name, plan.layers[-1].name
    lp0 = plan.layers[0]
    return [
        (plan.replace_layer(first, output_overflow="wrap"),
         rf"layer '{first}' \(Conv2D\) output: overflow 'wrap'"),
        (plan.replace_layer(last, acc_bits=10),
         rf"layer '{last}' \(Dense\): acc_bits=10 \(wrap\) can overflow"),
        (plan.replace_layer(first, acc_frac_bits=lp0.weight.fmt.frac_bits
                            + plan.input.fmt.frac_bits - 2, bias=None),
         rf"layer '{first}' \(Conv2D\): acc_frac_bits=\d+ rounds each product"),
        (plan.replace_layer(first, input=TensorSpec.pow2(8, 4)),
         rf"layer '{first}' \(Conv2D\): the 'input' cast"),
        (plan.replace_layer(last, float_layer=True),
         rf"layer '{last}' \(Dense\): float_layer"),
        (plan.replace_layer(first, weight=TensorSpec.per_channel(["fixed<4,1>", "fixed<5,1>",
                                                                  "fixed<4,0>", "fixed<4,1>"])),
         rf"layer '{first}' \(Conv2D\): per-channel weight formats of widths \[4, 5\]"),
        (plan.replace_layer(first, result=TensorSpec.pow2(12, 6, False)),
         rf"layer '{first}' \(Conv2D\): a separate 'result' format"),
    ]


def test_refusals_name_layer_and_field(small):
    """Each plan field QONNX cannot express is one PlanError naming the layer and the field."""
    g, x = small
    plan = ptq_pow2(g, x, weight_bits=4, act_bits=4, rounding="half_even")
    for bad, match in _refusal_cases(g, plan):
        compile_plan(g, bad)  # a valid plan for fxp
        with pytest.raises(PlanError, match=match):
            qonnx_model(g, bad)


@pytest.mark.parametrize("scheme", ["double", "float32"])
def test_refuses_affine_requantization(small, scheme):
    """TFLite's double rounding and onnxruntime's float32 requantization name the layer."""
    from fxp.plan.ptq import ptq_affine

    g, x = small
    plan = ptq_affine(g, x, scheme=scheme)
    first = plan.layers[0].name
    with pytest.raises(PlanError, match=rf"layer '{first}' \(Conv2D\): requant '{scheme}'; "
                                        r"QONNX requantizes by dividing by a scale"):
        qonnx_model(g, plan)


def test_refuses_ops_clips_and_padded_binary(small):
    g, x = small
    avg = _small(avg=True)
    with pytest.raises(UnsupportedOpError, match=r"node 'averagepool\d+': AvgPool2D has no "
                                                 r"QONNX export"):
        qonnx_model(avg, ptq_pow2(avg, x, weight_bits=4, act_bits=4, rounding="half_even"))
    plan = ptq_pow2(g, x, weight_bits=4, act_bits=4, rounding="half_even")
    cg = compile_plan(g, plan).graph
    clipped = cg.with_nodes([n.__class__(**{**n.__dict__, "fused_activation": (0.0, 1.5)})
                             if n.name == plan.layers[0].name else n for n in cg.nodes])
    with pytest.raises(PlanError, match=r"fused_activation \(0\.0, 1\.5\); the QONNX export "
                                        r"writes ReLU only"):
        qonnx_model(clipped, plan)
    g3 = _small(relu1=False, relu2=False)
    c2 = compile_plan(g3, ptq_pow2(g3, x, weight_bits=4)).graph.nodes[2].name
    bplan = ptq_pow2(g3, x, weight_bits=4, act_bits=4, rounding="half_even",
                     binary_layers=(c2,), pad_value=1)
    with pytest.raises(PlanError, match=rf"layer '{c2}' \(Conv2D\): pad_value=1"):
        qonnx_model(g3, bplan)
    if "beta" in LayerPlan.__dataclass_fields__:  # XNOR-Net's input scaling
        bplan = bplan.replace_layer(c2, pad_value=0, beta=TensorSpec.pow2(8, 4))
        compile_plan(g3, bplan)
        with pytest.raises(PlanError, match=rf"layer '{c2}' \(Conv2D\): beta \(fixed<8,4>\)"):
            qonnx_model(g3, bplan)
    with pytest.raises(PlanError, match=r"batch must be an integer >= 1, got 0"):
        qonnx_model(g, plan, batch=0)


def test_export_file_and_mnist_cnn(tmp_path):
    """mnist_cnn with an 8-bit pow2 plan: written file, qonnx's output codes equal fxp's."""
    from fxp import workflow as fw

    graph = fw.load_model("mnist_cnn")
    data = fw.load_data("mnist5k", graph, limit=300)
    plan = ptq_pow2(graph, data.x[:200], weight_bits=8, act_bits=8, rounding="half_even")
    path = export_qonnx(graph, plan, tmp_path / "m.onnx", batch=100)
    model = onnx.load(str(path))
    x = data.x[200:300].astype(np.float32)
    ctx = execute_onnx(ModelWrapper(model).transform(InferShapes()),
                       {model.graph.input[0].name: x}, return_full_exec_context=True)
    cm = compile_plan(graph, plan)
    run = run_integer(cm, x, keep=True)
    for step in cm.steps:
        if step.plan is not None:
            t = step.node.output
            want = np.asarray(ctx[t], np.float64) / step.out_spec.scale_array()[0]
            assert int(np.count_nonzero(run.values[t].codes != want)) == 0, t
    _, p2 = load_qonnx(model)
    assert [p2.layer(lp.name) for lp in plan.layers] == list(plan.layers)
