"""Binary (XNOR-popcount) layers in the plan, the compiler and the integer executor.

(a) A small network with a binary convolution and a binary dense layer
between fixed-point layers runs through ``compile_plan`` + ``run_integer``;
an independent reference recomputes every tensor: fixed layers with the
whole-network oracle of ``test_integer_engine`` (Python ints and Fractions),
binary layers with numpy on +-1 data -- ``sign`` of the input codes' real
values (``sign(0) = +1``), a float64 convolution of the +-1 tensors (exact:
small integers) with explicit padding by the pad value, alpha as the exact
mean ``|W[c]|`` rounded by the oracle, the ``"scale"`` output rounded and
fitted with ``oracles.round_fraction`` / ``oracles.fit``, the ``"threshold"``
output as the sign of the exact rational ``alpha*dot + b``.  Codes of every
tensor must be equal, for all three pad conventions and all three output
transforms.  (b) JSON round trip.  (c) Plan errors.  (d) The CLI.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from fractions import Fraction

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.errors import BinaryInputWarning, PlanError, UnsupportedOpError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten, MaxPool2D
from fxp.plan.io import plan_from_dict, plan_to_dict
from fxp.plan.plan import LayerPlan, Plan, TensorSpec
from fxp.plan.ptq import ptq_pow2
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer
from tests import oracles
from tests import oracles_layers as OL
from tests.sim.test_integer_engine import _q, _requant
from tests.strategies import DETERMINISTIC, OVERFLOW

GEOMETRIES = [  # c2: strides, dilations, pads
    ((1, 1), (1, 1), (1, 1, 1, 1)),
    ((2, 2), (1, 1), (1, 0, 1, 1)),
    ((1, 1), (2, 2), (2, 2, 2, 2)),
]


def _out(size, k, s, d, pb, pe):
    return (size + pb + pe - ((k - 1) * d + 1)) // s + 1


def binary_graph(seed: int, geometry, c2_bias: bool = True, c2_act=None) -> Graph:
    """conv (fixed, no ReLU) -> maxpool -> binary conv -> padded maxpool -> flatten -> binary
    dense -> dense (fixed)."""
    rng = np.random.default_rng(seed)
    f = np.float32
    strides, dil, pads = geometry
    ho = _out(3, 3, strides[0], dil[0], pads[0], pads[2])
    wo = _out(3, 3, strides[1], dil[1], pads[1], pads[3])
    w2 = rng.normal(0, .5, (4, 5, 3, 3)).astype(f)
    w2[0, 0, 0, 0] = 0.0  # sign(0) = +1 for weights too
    nodes = (
        Conv2D(name="c1", inputs=("x",), outputs=("h1",),
               weight=rng.normal(0, .5, (5, 2, 3, 3)).astype(f),
               bias=rng.normal(-.6, .1, 5).astype(f), pads=(1, 1, 1, 1)),
        MaxPool2D(name="p1", inputs=("h1",), outputs=("h2",), kernel=(2, 2), strides=(2, 2)),
        Conv2D(name="c2", inputs=("h2",), outputs=("h3",), weight=w2,
               bias=rng.normal(0, .5, 4).astype(f) if c2_bias else None, strides=strides,
               dilations=dil, pads=pads, fused_activation=c2_act),
        MaxPool2D(name="p2", inputs=("h3",), outputs=("h4",), kernel=(2, 2), strides=(1, 1),
                  pads=(1, 1, 0, 0)),
        Flatten(name="fl", inputs=("h4",), outputs=("h5",)),
        Dense(name="bd", inputs=("h5",), outputs=("h6",),
              weight=rng.normal(0, .3, (6, 4 * ho * wo)).astype(f),
              bias=rng.normal(0, .5, 6).astype(f)),
        Dense(name="d2", inputs=("h6",), outputs=("y",), weight=rng.normal(0, .3, (5, 6)).astype(f),
              bias=rng.normal(0, .1, 5).astype(f)),
    )
    return Graph(nodes=nodes, inputs=("x",), input_shapes={"x": (None, 2, 6, 6)}, outputs=("y",))


# ----------------------------------------------------------------------------- the reference
def _sign(a: np.ndarray) -> np.ndarray:
    return np.where(a < 0, -1.0, 1.0)


def ref_binary(node, lp: LayerPlan, codes: np.ndarray, zero_point: int) -> np.ndarray:
    """A binary layer on numpy +-1 data; returns int64 output codes."""
    h = _sign(codes.astype(np.float64) - zero_point)  # sign of the real values, sign(0) = +1
    w = node.weight.astype(np.float64)
    sw = _sign(w)
    co = w.shape[0]
    if isinstance(node, Conv2D):
        t, left, b, r = node.pads
        pv = lp.pad_value if lp.pad_value is not None else 0
        hp = np.pad(h, ((0, 0), (0, 0), (t, b), (left, r)), constant_values=float(pv))
        (sh, sw_), (dh, dw) = node.strides, node.dilations
        kh, kw = w.shape[2:]
        ho = (hp.shape[2] - ((kh - 1) * dh + 1)) // sh + 1
        wo = (hp.shape[3] - ((kw - 1) * dw + 1)) // sw_ + 1
        dot = np.zeros((h.shape[0], co, ho, wo))
        for oy in range(ho):
            for ox in range(wo):
                win = hp[:, :, oy * sh:oy * sh + (kh - 1) * dh + 1:dh,
                         ox * sw_:ox * sw_ + (kw - 1) * dw + 1:dw]
                dot[:, :, oy, ox] = np.einsum("nckl,ockl->no", win, sw)
    else:
        dot = h.reshape(h.shape[0], -1) @ sw.T
    dot = np.rint(dot).astype(np.int64)
    shape = dot.shape
    if lp.alpha is not None:
        fa = lp.alpha.fmt.frac_bits
        alpha = []
        for c in range(co):
            mean = sum(Fraction(float(v)) for v in np.abs(w[c]).ravel()) / w[c].size
            alpha.append(oracles.fit(oracles.round_fraction(mean * 2 ** fa, "half_even"),
                                     lp.alpha.fmt.bits, lp.alpha.fmt.signed,
                                     *oracles.bounds(lp.alpha.fmt, "saturate"), "saturate")[0])
    else:
        fa, alpha = 0, [1] * co
    bias = node.bias if node.bias is not None else np.zeros(co)
    d = dot.reshape(shape[0], co, -1)
    out = np.zeros_like(d)
    if lp.binary_output == "threshold":
        for n, c, i in itertools.product(*map(range, d.shape)):
            v = Fraction(alpha[c] * int(d[n, c, i]), 2 ** fa) + Fraction(float(bias[c]))
            out[n, c, i] = 1 if v >= 0 else -1
        return out.reshape(shape)
    of = lp.output.fmt
    if lp.binary_output == "dot":
        fa, alpha, bias = 0, [1] * co, np.zeros(co)
    fb = max(fa, of.frac_bits)
    bcodes = _q(bias, QFormat.from_frac(lp.acc_bits, fb)) if node.bias is not None else [0] * co
    lo, hi = oracles.bounds(of, lp.output_overflow.value)
    for n, c, i in itertools.product(*map(range, d.shape)):
        y = Fraction(alpha[c] * int(d[n, c, i]), 2 ** fa) + Fraction(bcodes[c], 2 ** fb)
        v = oracles.round_fraction(y * 2 ** of.frac_bits, lp.rounding.value)
        if node.fused_activation == "relu":
            v = max(v, max(of.min_code, 0))
        out[n, c, i] = oracles.fit(v, of.bits, of.signed, lo, hi, lp.output_overflow.value)[0]
    return out.reshape(shape)


def reference(graph: Graph, plan: Plan, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor's codes (int64 arrays)."""
    xs = np.asarray(x, np.float64)
    vals = {"x": np.array(_q(xs.ravel(), plan.input.fmt), np.int64).reshape(xs.shape)}
    spec = {"x": plan.input}
    for node in graph.nodes:
        lp = plan.layer(node.name)
        src = node.inputs[0]
        if isinstance(node, (Conv2D, Dense)) and lp.weight.is_binary:
            vals[node.output] = ref_binary(node, lp, vals[src], spec[src].zero_point)
            spec[node.output] = lp.output
        elif isinstance(node, (Conv2D, Dense)):
            sin = spec[src]
            acc_frac = sin.fmt.frac_bits + lp.weight.fmt.frac_bits
            accf = QFormat.from_frac(lp.acc_bits, acc_frac)
            w = np.array(_q(node.weight.ravel(), lp.weight.fmt), dtype=object) \
                .reshape(node.weight.shape)
            b = _q(node.bias if node.bias is not None else np.zeros(w.shape[0]), accf)
            lo, hi = oracles.bounds(accf, lp.acc_overflow.value)
            xin = vals[src].tolist()
            if isinstance(node, Conv2D):
                acc, _, _ = OL.conv2d(xin, w.tolist(), b, 0, [0] * w.shape[0], node.strides,
                                      node.pads, node.dilations, node.groups, lp.acc_bits, True,
                                      lo, hi, lp.acc_overflow.value)
            else:
                acc, _, _ = OL.dense(xin, w.tolist(), b, 0, [0] * w.shape[0], lp.acc_bits, True,
                                     lo, hi, lp.acc_overflow.value)
            arr = np.array(acc, dtype=object)
            relu = node.fused_activation == "relu"
            out = [_requant(a, acc_frac, lp, relu)[0] for a in arr.ravel()]
            vals[node.output] = np.array(out, np.int64).reshape(arr.shape)
            spec[node.output] = lp.output
        elif isinstance(node, MaxPool2D):  # padding never wins: pad far below any code
            vals[node.output] = np.array(OL.maxpool2d(vals[src].tolist(), -10**9, node.kernel,
                                                      node.strides, node.pads, (1, 1)), np.int64)
            spec[node.output] = spec[src]
        elif isinstance(node, Flatten):
            vals[node.output] = vals[src].reshape(vals[src].shape[0], -1)
            spec[node.output] = spec[src]
    return vals


CASES = list(itertools.product((0, 1, -1), ("scale", "dot", "threshold"), (0, 1)))


@pytest.mark.parametrize(("pad_value", "c2_out", "variant"), CASES)
def test_binary_layers_equal_the_reference(pad_value, c2_out, variant):
    _check_case(pad_value, c2_out, variant)


def _check_case(pad_value: int, c2_out: str, variant: int) -> int:
    """Run one case against the reference; returns the number of zero codes at c2's input."""
    seed = 100 * (pad_value + 1) + 10 * ("scale", "dot", "threshold").index(c2_out) + variant
    rng = np.random.default_rng(seed)
    geometry = GEOMETRIES[seed % len(GEOMETRIES)]
    act = "relu" if c2_out != "threshold" and variant == 1 else None
    g = binary_graph(seed, geometry, c2_bias=c2_out != "dot", c2_act=act)
    calib = rng.normal(0, 1, (16, 2, 6, 6)).astype(np.float32)
    rounding = DETERMINISTIC[seed % len(DETERMINISTIC)]
    out_ovf = OVERFLOW[seed % len(OVERFLOW)]
    # bd reads c2's ReLU output: a constant +1 after sign(), which ptq_pow2 warns about
    with pytest.warns(BinaryInputWarning, match="'bd'") if act else contextlib.nullcontext():
        plan = ptq_pow2(g, calib, weight_bits=6, act_bits=5, rounding=rounding,
                        output_overflow=out_ovf, binary_layers=("c2", "bd"),
                        alpha_bits=None if variant else 8, binary_output=c2_out,
                        pad_value=pad_value)
    bd_out = "threshold" if variant else "scale"
    plan = plan.replace_layer("bd", binary_output=bd_out,
                              output=None if bd_out == "threshold" else TensorSpec.pow2(6, 2),
                              alpha=None if bd_out == "threshold" or c2_out == "dot"
                              else TensorSpec.pow2(8, 9, signed=False))
    assert plan.layer("c2").pad_value == pad_value
    x = rng.normal(0, 1.2, (3, 2, 6, 6)).astype(np.float32)
    model = compile_plan(g, plan)
    counters = {}
    run = run_integer(model, x, counters, keep=True)
    want = reference(g, plan, x)
    for t in ("h1", "h2", "h3", "h4", "h5", "h6", "y"):
        got = run.values[t].codes
        assert got.tolist() == want[t].tolist(), t
    assert run.values["h3"].spec.is_binary == (c2_out == "threshold")
    assert run.values["h6"].spec.is_binary == (bd_out == "threshold")
    for name in ("c2", "bd"):
        assert counters[name].acc_overflows == 0
        step = next(s for s in model.steps if s.name == name)
        assert 0 < counters[name].max_abs_acc <= max(step.bound)
    assert np.any(want["h2"] < 0) and np.any(want["h2"] >= 0)  # sign() sees both signs
    return int(np.sum(want["h2"] == 0))


def test_exact_zeros_reach_the_binarization():
    """Anti-degeneracy: across the cases above, codes 0 (sign +1) do occur at c2's input."""
    assert sum(_check_case(pv, "scale", 0) for pv in (0, 1, -1)) > 0


def test_binarizing_exact_zero_gives_plus_one():
    """Anti-degeneracy for sign(0): a zero code into a binary dense layer counts as +1."""
    g = Graph(nodes=(Dense(name="bd", inputs=("x",), outputs=("y",),
                           weight=np.array([[1, 1, 1, -1]], np.float32), bias=None),),
              inputs=("x",), input_shapes={"x": (None, 4)}, outputs=("y",))
    plan = Plan(input=TensorSpec.pow2(8, 4),
                layers=(LayerPlan("bd", weight=TensorSpec.binary(), binary_output="dot",
                                  output=TensorSpec.pow2(8, 0)),))
    x = np.array([[0.0, -0.01, 0.5, -0.0]], np.float32)  # codes 0, 0, 8, 0 -> +1 +1 +1 +1
    assert run_integer(compile_plan(g, plan), x).output.tolist() == [[2.0]]


# ----------------------------------------------------------------------------- (b) JSON
def test_binary_plan_json_round_trip():
    g = binary_graph(5, GEOMETRIES[0])
    calib = np.random.default_rng(6).normal(0, 1, (8, 2, 6, 6)).astype(np.float32)
    plan = ptq_pow2(g, calib, binary_layers=("c2", "bd"), binary_output="threshold",
                    pad_value=-1)
    d = plan_to_dict(plan)
    back = plan_from_dict(json.loads(json.dumps(d)))
    assert back == plan
    c2 = next(ld for ld in d["layers"] if ld["name"] == "c2")
    assert c2["weight"] == {"format": "binary"} and c2["output"] == {"format": "binary"}
    assert c2["pad_value"] == -1 and c2["binary_output"] == "threshold"
    c1 = next(ld for ld in d["layers"] if ld["name"] == "c1")
    assert not {"pad_value", "binary_output", "alpha"} & set(c1)  # old layers unchanged
    plan2 = plan.replace_layer("c2", binary_output="scale", output=TensorSpec.pow2(8, 4),
                               alpha=TensorSpec.pow2(8, 9, signed=False))
    assert plan_from_dict(json.loads(json.dumps(plan_to_dict(plan2)))) == plan2
    with pytest.raises(PlanError, match="binary tensor takes no"):
        plan_from_dict({**d, "input": {"format": "binary", "scales": [1.0]}})


def test_old_plan_json_loads_unchanged():
    d = {"schema": "fxp.plan", "schema_version": 1, "name": "old",
         "input": {"format": "fixed<8,3>"},
         "layers": [{"name": "c1", "weight": {"format": "fixed<8,1>"},
                     "output": {"format": "fixed<8,4>"}, "acc_bits": 32, "acc_overflow": "wrap",
                     "rounding": "half_up", "output_overflow": "saturate", "requant": "pow2"}]}
    plan = plan_from_dict(d)
    lp = plan.layer("c1")
    assert not lp.is_binary and lp.pad_value is None and lp.binary_output is None
    assert plan_to_dict(plan) == d


# ----------------------------------------------------------------------------- (c) errors
def _one_conv(**kw) -> Graph:
    rng = np.random.default_rng(0)
    node = Conv2D(name="bc", inputs=("x",), outputs=("y",), weight=kw.pop(
        "weight", rng.normal(0, 1, (4, 4, 3, 3)).astype(np.float32)), bias=None, **kw)
    return Graph(nodes=(node,), inputs=("x",), input_shapes={"x": (None, 4, 5, 5)},
                 outputs=("y",))


def _bplan(**kw) -> Plan:
    kw.setdefault("output", TensorSpec.pow2(8, 2))
    return Plan(input=TensorSpec.pow2(8, 4),
                layers=(LayerPlan("bc", weight=TensorSpec.binary(), **kw),))


def test_missing_pad_value_names_the_layer():
    with pytest.raises(PlanError, match="'bc'.*pad_value"):
        compile_plan(_one_conv(pads=(1, 1, 1, 1)), _bplan())
    compile_plan(_one_conv(pads=(0, 0, 0, 0)), _bplan())  # no pads: no pad_value needed
    compile_plan(_one_conv(pads=(1, 1, 1, 1)), _bplan(pad_value=1))


def test_binary_conv_with_groups_is_unsupported():
    w = np.random.default_rng(1).normal(0, 1, (4, 2, 3, 3)).astype(np.float32)
    with pytest.raises(UnsupportedOpError, match="groups=2"):
        compile_plan(_one_conv(weight=w, groups=2), _bplan())


def test_threshold_after_relu_is_refused():
    with pytest.raises(PlanError, match="threshold.*relu"):
        compile_plan(_one_conv(fused_activation="relu"), _bplan(binary_output="threshold",
                                                                output=None))


@pytest.mark.parametrize(("make", "needle"), [
    (lambda: TensorSpec(QFormat.integer(8), kind="binary"), "binary tensor holds"),
    (lambda: TensorSpec(QFormat.integer(8), kind="ternary"), "kind must be one of"),
    (lambda: LayerPlan("l", weight=TensorSpec.pow2(8, 4), pad_value=0), "binary layers only"),
    (lambda: LayerPlan("l", weight=TensorSpec.pow2(8, 4), output=TensorSpec.binary()),
     "binary output needs a binary layer"),
    (lambda: LayerPlan("l", weight=TensorSpec.binary(), pad_value=2), "pad_value must be"),
    (lambda: LayerPlan("l", weight=TensorSpec.binary(), binary_output="sign"), "binary_output"),
    (lambda: LayerPlan("l", weight=TensorSpec.binary(), binary_output="threshold",
                       output=TensorSpec.pow2(8, 4)), "writes a binary output"),
    (lambda: LayerPlan("l", weight=TensorSpec.binary(), output=TensorSpec.binary()),
     "non-binary"),
    (lambda: LayerPlan("l", weight=TensorSpec.binary(), binary_output="dot",
                       alpha=TensorSpec.pow2(8, 8)), "alpha is used by"),
    (lambda: LayerPlan("l", weight=TensorSpec.binary(), input=TensorSpec.pow2(8, 4)),
     "binarizes its input"),
    (lambda: LayerPlan("l", weight=TensorSpec.binary(), float_layer=True), "float layer"),
    (lambda: Plan(input=TensorSpec.binary()), "graph input cannot be binary"),
])
def test_invalid_binary_combinations(make, needle):
    with pytest.raises(PlanError, match=needle):
        make()


def test_dot_output_with_bias_and_narrow_accumulator_are_refused():
    rng = np.random.default_rng(2)
    g = _one_conv()
    node = g.nodes[0]
    from dataclasses import replace

    gb = Graph(nodes=(replace(node, bias=rng.normal(0, 1, 4).astype(np.float32)),),
               inputs=("x",), input_shapes={"x": (None, 4, 5, 5)}, outputs=("y",))
    with pytest.raises(PlanError, match="has a bias"):
        compile_plan(gb, _bplan(binary_output="dot"))
    with pytest.raises(PlanError, match="acc_bits=6 cannot hold"):  # K = 36 needs 7 bits
        compile_plan(g, _bplan(acc_bits=6))


# ----------------------------------------------------------------------------- (d) CLI
def test_cli_plan_binary_then_simulate(tmp_path, capsys):
    from fxp.cli import main
    from tests.test_cli import _npz

    data = _npz(tmp_path, n=16)
    out = tmp_path / "bin.json"
    assert main(["plan", "mnist_cnn", "--data", data, "--binary", "conv2", "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "binary" in text
    saved = json.loads(out.read_text())
    c2 = next(ld for ld in saved["layers"] if ld["name"] == "conv2")
    assert c2["weight"] == {"format": "binary"} and "alpha" in c2
    assert main(["simulate", "mnist_cnn", "--plan", str(out), "--data", data, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in rep["layers"]}
    assert rows["conv2"]["weight"] == "binary" and rows["conv1"]["weight"] != "binary"
    assert rows["conv2"]["acc_overflows"] == 0 and rows["conv2"]["acc_bits_worst_case"] == 10
    assert main(["simulate", "mnist_cnn", "--plan", str(out), "--data", data]) == 0
    assert "binary" in capsys.readouterr().out
    assert main(["plan", "mnist_cnn", "--data", data, "--binary", "nope"]) == 2
    assert "unknown binary layer names ['nope']" in capsys.readouterr().err


def test_cli_binary_after_relu_warns_once(tmp_path, capsys):
    """mnist_cnn's conv2 reads a ReLU output: sign() is constant +1, one warning line on stderr;
    conv1 reads the normalized image (both signs): no warning."""
    from fxp.cli import main

    for layer, warns in (("conv2", True), ("conv1", False)):
        assert main(["plan", "mnist_cnn", "--data", "mnist5k", "--limit", "64", "--binary",
                     layer, "--out", str(tmp_path / f"{layer}.json")]) == 0
        err = capsys.readouterr().err.strip().splitlines()
        hits = [e for e in err if "warning" in e]
        if warns:
            assert len(hits) == 1 and hits[0].startswith("fxp plan: warning: binary layer "
                                                          "'conv2': its input") \
                and "constant +1" in hits[0]
        else:
            assert hits == []
