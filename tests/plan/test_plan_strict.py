"""Strict plan files (issue 24): JSON types, ranges, hostile files, per-channel axis.

Every wrong value is one PlanError line naming the file, the layer and the key;
nothing is coerced (``"false"`` is not true, ``1.5`` is not 1, ``"32"`` is not
32); hostile files (non-UTF-8, 100,000 nested brackets, 50,000 layers) are
refused quickly; and a per-channel ``axis`` is honoured or refused, never
ignored.
"""

from __future__ import annotations

import copy
import json
import time

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.errors import FormatError, PlanError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten
from fxp.plan import io as plan_io
from fxp.plan import LayerPlan, Plan, TensorSpec, load_plan, plan_from_dict, plan_to_dict
from fxp.sim.compile import compile_plan

GOOD = {"schema": "fxp.plan", "schema_version": 1, "name": "p",
        "input": {"format": "fixed<8,3>"},
        "layers": [{"name": "c1", "weight": {"format": "fixed<8,1>"},
                    "output": {"format": "ufixed<8,2>"}, "acc_bits": 32,
                    "acc_overflow": "wrap", "rounding": "half_up",
                    "output_overflow": "saturate", "requant": "pow2"},
                   {"name": "d1", "weight": {"format": "int8", "scales": [0.01, 0.02, 0.03],
                                             "zero_point": 0, "axis": 0},
                    "output": {"format": "int8", "scales": [0.05], "zero_point": -3},
                    "requant": "double"}]}


def _layer(key, value, layer=0):
    d = copy.deepcopy(GOOD)
    d["layers"][layer][key] = value
    return d


def _spec(key, value, tensor="weight", layer=1):
    d = copy.deepcopy(GOOD)
    d["layers"][layer][tensor][key] = value
    return d


def test_the_good_plan_loads():
    plan = plan_from_dict(GOOD, "good.json")
    assert plan.layer("d1").weight.scales == pytest.approx((0.01, 0.02, 0.03))
    assert plan.layer("d1").weight.axis == 0 and plan.layer("d1").output.zero_point == -3
    assert plan_from_dict(json.loads(json.dumps(plan_to_dict(plan)))) == plan


# 16 wrong-typed values: each gave a traceback or a silent coercion before
WRONG_TYPES = [
    (_layer("float", "false"), "layer 'c1': 'float' must be a JSON boolean (true or false), "
                               "got string 'false'"),
    (_layer("float", 0), "'float' must be a JSON boolean (true or false), got integer 0"),
    (_layer("acc_bits", "32"), "layer 'c1': 'acc_bits' must be an integer in 1..64, got "
                               "string '32'"),
    (_layer("acc_bits", 32.0), "'acc_bits' must be an integer in 1..64, got number 32.0"),
    (_layer("acc_bits", True), "'acc_bits' must be an integer in 1..64, got boolean True"),
    (_layer("rounding", 5), "layer 'c1': 'rounding' must be a string, got integer 5"),
    (_layer("acc_overflow", ["wrap"]), "'acc_overflow' must be a string, got a list of 1 item"),
    (_layer("requant", {"x": 1}), "'requant' must be a string, got an object with 1 key"),
    (_layer("weight", "fixed<8,1>"), "layer 'c1' weight: expected an object with a 'format' "
                                     "key, got string 'fixed<8,1>'"),
    (_layer("name", 7), "layers[0]: 'name' must be a string, got integer 7"),
    (_spec("zero_point", 1.5), "layer 'd1' weight: 'zero_point' must be an integer, got "
                               "number 1.5"),
    (_spec("scales", ["0.01", 0.02, 0.03]), "layer 'd1' weight: scales[0] must be a number, "
                                            "got string '0.01'"),
    (_spec("scales", 0.01), "'scales' must be a non-empty list of numbers, got number 0.01"),
    (_spec("axis", "0"), "layer 'd1' weight: 'axis' must be an integer in 0..3, got string '0'"),
    (_spec("format", 8, tensor="output"), "layer 'd1' output: 'format' must be a string, got "
                                          "integer 8"),
    (dict(GOOD, layers={"c1": {}}), "'layers' must be a list of layer objects, got an object"),
]


@pytest.mark.parametrize(("d", "message"), WRONG_TYPES, ids=[str(i) for i in range(16)])
def test_wrong_types_are_one_plan_error(d, message):
    with pytest.raises(PlanError) as err:
        plan_from_dict(d, "f.json")
    msg = str(err.value)
    assert msg.startswith("f.json: ") and message in msg and "\n" not in msg


@pytest.mark.parametrize(("d", "message"), [
    (_layer("acc_bits", 0), "acc_bits=0 must be an int in 1..64"),
    (_layer("pad_value", 2), "pad_value=2 must be an int in -1..1"),
    (_spec("scales", [0.01, -1, 0.03]), "scales must be finite and > 0, got scales[1] = -1"),
    (_spec("scales", [1e39, 1, 1]), "scales must be finite and > 0 in float32"),
    (_spec("scales", []), "'scales' must be a non-empty list of numbers, got a list of 0"),
    (_spec("zero_point", 300, tensor="output"), "zero_point=300 is outside fixed<8,8>"),
    (_spec("axis", -1), "axis=-1 must be an int in 0..3"),
    (_spec("colour", "red"), "unknown keys ['colour']"),
    (dict(GOOD, schema_version=True), "schema_version True is not supported"),
    (dict(GOOD, schema_version="1"), "schema_version '1' is not supported"),
    (dict(GOOD, extra=1), "unknown top-level keys ['extra']"),
    (_layer("rounding", ""), "layer 'c1': unknown RoundingMode ''"),
    (_layer("requant", ""), "layer 'c1': unknown requant scheme ''"),
    (dict(GOOD, name=["p"]), "'name' must be a string"),
    (_spec("format", "fixed<" + "9" * 5000 + ",3>"), "'format' is a string of 5009 characters"),
    (_spec("format", "fixed<99999999,3>"), "has a 8-digit number"),
    ({**GOOD, "layers": [GOOD["layers"][0], GOOD["layers"][0]]}, "listed twice in the plan: "
                                                                 "['c1']"),
])
def test_values_out_of_range(d, message):
    with pytest.raises(PlanError) as err:
        plan_from_dict(d, "f.json")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_false_is_not_a_float_layer():
    """Regression: ``"float": "false"`` made the layer float (``bool("false")``)."""
    assert plan_from_dict(_layer("float", False)).layer("c1").float_layer is False
    assert plan_from_dict(_layer("float", True)).layer("c1").float_layer is True


def test_python_api_does_not_coerce():
    """TensorSpec / LayerPlan refuse what the JSON reader refuses (1.5 was rounded to 1)."""
    fmt = QFormat.integer(8)
    with pytest.raises(PlanError, match="zero_point must be an integer, got 1.5"):
        TensorSpec(fmt, (0.1,), 1.5)
    with pytest.raises(PlanError, match="scales\\[0\\] must be a number, got '0.1'"):
        TensorSpec(fmt, ("0.1",), 0)
    with pytest.raises(PlanError, match="axis must be an integer, got '0'"):
        TensorSpec(fmt, (0.1, 0.2), 0, "0")
    with pytest.raises(PlanError, match="float_layer must be a bool, got 'false'"):
        LayerPlan("c1", float_layer="false")
    assert TensorSpec(fmt, (0.1,), np.int64(3)).zero_point == 3


def test_format_strings_with_thousands_of_digits():
    """Regression: int() of a 5,000-digit width raised Python's ValueError, not FormatError."""
    for text in ("fixed<" + "9" * 5000 + ",3>", "fixed<8," + "1" * 4400 + ">",
                 "Q" + "7" * 300, "int" + "8" * 20, "fixed<9999999,3>"):
        t0 = time.perf_counter()
        with pytest.raises(FormatError) as err:
            QFormat.parse(text)
        assert time.perf_counter() - t0 < 0.05 and "\n" not in str(err.value)
        assert len(str(err.value)) < 300


# ----------------------------------------------------------------------------- files
def _file(tmp_path, blob: bytes):
    p = tmp_path / "plan.json"
    p.write_bytes(blob)
    return p


# 11 hostile files: each raised RecursionError / UnicodeDecodeError / ValueError before
HOSTILE = [
    (b"[" * 100_000, "nested too deeply"),
    (b'{"a":' * 100_000, "nested too deeply"),
    (b'{"name": "\xff\xfe"}', "is not UTF-8 text (byte 10"),
    ("{\"name\": \"caf\u00e9\"}".encode("latin-1"), "is not UTF-8 text"),
    (b"\xef\xbb\xbf{}", "not valid JSON"),
    (b'{"schema_version": 1' + b"1" * 5000 + b"}", "Exceeds the limit"),
    (b'{"schema_version": NaN}', "NaN is not a finite number"),
    (b'{"schema_version": -Infinity}', "-Infinity is not a finite number"),
    (b'{"schema_version": 1, "schema_version": 1}', "duplicate key 'schema_version'"),
    (b"", "not valid JSON"),
    (b"\0" * 100, "not valid JSON"),
]


@pytest.mark.parametrize(("blob", "message"), HOSTILE, ids=[str(i) for i in range(11)])
def test_hostile_files_are_one_plan_error(tmp_path, blob, message):
    p = _file(tmp_path, blob)
    with pytest.raises(PlanError) as err:
        load_plan(p)
    msg = str(err.value)
    assert message in msg and "plan.json" in msg and "\n" not in msg and len(msg) < 400


def test_file_size_bound(tmp_path, monkeypatch):
    p = _file(tmp_path, json.dumps(GOOD).encode())
    assert load_plan(p).name == "p"
    monkeypatch.setattr(plan_io, "MAX_PLAN_BYTES", 100)
    with pytest.raises(PlanError, match="is larger than 100 bytes; refusing to read it"):
        load_plan(p)


def test_unreadable_paths(tmp_path):
    with pytest.raises(PlanError, match="cannot read plan file .*: File name too long"):
        load_plan(tmp_path / ("p" * 5000))
    with pytest.raises(PlanError, match="cannot read plan file .*: Is a directory"):
        load_plan(tmp_path)


def test_fifty_thousand_layers_are_linear(tmp_path):
    """Regression: the duplicate check was quadratic (30+ s to refuse 50,000 layers)."""
    layer = {"weight": {"format": "fixed<8,1>"}, "output": {"format": "fixed<8,3>"}}
    layers = [dict(layer, name=f"l{i}") for i in range(50_000)]
    layers.append(dict(layer, name="l123"))
    p = _file(tmp_path, json.dumps(dict(GOOD, layers=layers)).encode())
    t0 = time.perf_counter()
    with pytest.raises(PlanError, match=r"layers listed twice in the plan: \['l123'\]"):
        load_plan(p)
    assert time.perf_counter() - t0 < 15
    names = [LayerPlan(f"l{i}") for i in range(50_000)]
    t0 = time.perf_counter()
    plan = Plan(TensorSpec(QFormat(8, 3)), tuple(names))
    assert plan.layer("l49999") is names[-1] and plan.layer("nope") is None
    assert time.perf_counter() - t0 < 2


# ----------------------------------------------------------------------------- against a model
def _graph():
    rng = np.random.default_rng(0)
    f = np.float32
    return Graph(nodes=(
        Conv2D(name="c1", inputs=("x",), outputs=("h",), weight=rng.normal(0, .5, (3, 2, 3, 3))
               .astype(f), bias=rng.normal(0, .1, 3).astype(f), pads=(1, 1, 1, 1)),
        Flatten(name="fl", inputs=("h",), outputs=("hf",)),
        Dense(name="d1", inputs=("hf",), outputs=("y",), weight=rng.normal(0, .2, (4, 48))
              .astype(f), bias=None)),
        inputs=("x",), input_shapes={"x": (None, 2, 4, 4)}, outputs=("y",))


def _affine_plan(w_axis=0, in_scales=(0.05,), bias=None):
    i8 = QFormat.integer(8)
    w = TensorSpec(i8, (0.004, 0.008, 0.002), 0, w_axis)
    lp = LayerPlan("c1", weight=w, output=TensorSpec(i8, (0.05,), 0), bias=bias,
                   requant="double", rounding="half_even")
    d = LayerPlan("d1", weight=TensorSpec(i8, (0.01,), 0), output=TensorSpec(i8, (0.1,), 0),
                  requant="double", rounding="half_even")
    return Plan(TensorSpec(i8, in_scales, 0, 1 if len(in_scales) > 1 else None), (lp, d))


def test_per_channel_axis_is_honoured():
    """Per-channel weight scales apply along axis 0: codes = round(w[c] / s[c]) clamped."""
    g = _graph()
    model = compile_plan(g, _affine_plan())
    w = g.nodes[0].weight.astype(np.float64)
    s = np.array([0.004, 0.008, 0.002], np.float32).astype(np.float64)
    want = np.clip(np.rint(w / s[:, None, None, None]), -128, 127).astype(np.int64)
    np.testing.assert_array_equal(model.steps[0].w_codes, want)


@pytest.mark.parametrize(("plan", "message"), [
    (lambda: _affine_plan(w_axis=1), "layer 'c1' weight: per-channel scales are applied along "
                                     "the output channels (axis 0); axis=1 is not supported"),
    (lambda: _affine_plan(in_scales=(0.05, 0.06)), "the plan input: activations take one "
                                                   "scale per tensor, got 2 (axis 1)"),
    (lambda: _affine_plan(bias=TensorSpec(QFormat.integer(32), (1e-4,), 0)),
     "layer 'c1': requant 'double' codes the bias itself"),
    (lambda: Plan(_affine_plan().input, _affine_plan().layers + (
        LayerPlan("fl", weight=TensorSpec(QFormat(8, 1))),)),
     "layer 'fl' (Flatten) has no weights; its plan entry's 'weight' spec would be ignored"),
    (lambda: Plan(_affine_plan().input, _affine_plan().layers + (
        LayerPlan("fl", output=TensorSpec(QFormat(8, 3))),)),
     "layer 'fl' (Flatten) keeps its input's coding (fixed<8,8>); its plan entry's output "
     "fixed<8,3> would be ignored"),
])
def test_per_channel_specs_the_executor_would_ignore_are_refused(plan, message):
    with pytest.raises(PlanError) as err:
        compile_plan(_graph(), plan())
    assert message in str(err.value)


def test_unknown_layer_names_are_one_short_line():
    base = _affine_plan()
    extra = tuple(LayerPlan(f"ghost\n{i}") for i in range(500))
    with pytest.raises(PlanError) as err:
        compile_plan(_graph(), Plan(base.input, base.layers + extra))
    msg = str(err.value)
    assert "\n" not in msg and "'ghost\\n0'" in msg and "and 490 more" in msg
    assert "model's 3 layers are ['c1', 'fl', 'd1']" in msg and len(msg) < 600


# ----------------------------------------------------------------------------- fuzz
def _mutate(rng: np.random.Generator, d: object, depth: int = 0) -> object:
    """One random change somewhere in ``d``: wrong types, huge numbers, NaN, nesting, deletions."""
    weird = [None, True, 0, -1, 1.5, float("nan"), float("inf"), 10**30, "", "x" * 300, "8",
             [], [[[]]], {}, {"format": "fixed<8,1>"}, "fixed<8,1>", "binary", "shift", -2**70]
    if isinstance(d, dict) and d and rng.random() < 0.8:
        key = list(d)[int(rng.integers(len(d)))]
        r = rng.random()
        if r < 0.15:
            return {k: v for k, v in d.items() if k != key}
        if r < 0.25:
            return {**d, "k" + str(int(rng.integers(10))): weird[int(rng.integers(len(weird)))]}
        if r < 0.6 or depth > 4:
            return {**d, key: weird[int(rng.integers(len(weird)))]}
        return {**d, key: _mutate(rng, d[key], depth + 1)}
    if isinstance(d, list) and d and rng.random() < 0.8:
        i = int(rng.integers(len(d)))
        out = list(d)
        r = rng.random()
        if r < 0.2:
            out.append(out[i])
        elif r < 0.3:
            out = [out] * 3
        else:
            out[i] = _mutate(rng, d[i], depth + 1) if r < 0.8 else weird[int(rng.integers(
                len(weird)))]
        return out
    return weird[int(rng.integers(len(weird)))]


def test_fuzzed_plans_are_a_plan_or_one_plan_error():
    """Seeded mutations of a valid plan: every outcome is a Plan or a one-line PlanError."""
    rng = np.random.default_rng(24)
    outcomes = {"plan": 0, "error": 0}
    for _ in range(600):
        d = GOOD
        for _ in range(int(rng.integers(1, 4))):
            d = _mutate(rng, d)
        try:
            plan_from_dict(d, "fuzz.json")
            outcomes["plan"] += 1
        except PlanError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 800, str(exc)
            outcomes["error"] += 1
    assert outcomes["plan"] > 10 and outcomes["error"] > 300
