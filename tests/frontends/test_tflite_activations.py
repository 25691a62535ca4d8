"""LOGISTIC, TANH, HARD_SWISH, MUL, PAD, QUANTIZE, DEQUANTIZE against TFLite Micro, every tensor.

Oracle: the ``tflite-micro`` interpreter (``tests/tflm_oracle.py``) on the first
1,000 ``mnist5k`` digits, as in ``tests/frontends/test_tflite_import.py`` (whose
helpers are reused).  Models (``models/tflite/make_tflite.py``): ``activations``
-- CONV_2D, PAD, HARD_SWISH (int8; int16x8: SiLU = LOGISTIC + MUL), CONV_2D, a
squeeze-excite gate (MEAN, CONV_2D, LOGISTIC, broadcast MUL), TANH, an
integer QUANTIZE (requantization before CONCATENATION), RESHAPE,
FULLY_CONNECTED -- with int8 / int16 input and output, and ``activations_floatio``:
the same nets with float32 input and output (a QUANTIZE of the input, a
DEQUANTIZE of the output).

Per operator the engine runs the operator's IR steps alone on TFLM's own input
codes for it (one-input operators as a sub-graph, MUL and CONCATENATION step by
step), and end to end every tensor is compared from the model input.  Every
comparison is element for element: 0 differing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tflite", reason="the .tflite reader needs the 'tflite' package")

from fxp.frontends.tflite import OPS_KEY, load_tflite, tflite_tensor_map, to_tflite_layout
from fxp.ir import nodes as ir
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan
from fxp.sim.values import IntValue, quantize_spec, to_float
from tests.frontends.test_tflite_import import (
    MEAN,
    N_INPUTS,
    STD,
    _act_spec,
    _oracle,
    _path,
    _run_op,
)

_TAIL = ["CONV_2D", "MEAN", "CONV_2D", "LOGISTIC", "MUL", "TANH", "QUANTIZE", "CONCATENATION",
         "RESHAPE", "FULLY_CONNECTED"]
OPS = {
    "activations_int8": ["CONV_2D", "PAD", "HARD_SWISH", *_TAIL],
    "activations_int16x8": ["CONV_2D", "PAD", "LOGISTIC", "MUL", *_TAIL],
}
OPS["activations_floatio_int8"] = ["QUANTIZE", *OPS["activations_int8"], "DEQUANTIZE"]
OPS["activations_floatio_int16x8"] = ["QUANTIZE", *OPS["activations_int16x8"], "DEQUANTIZE"]
FIXED = {("Sigmoid", 8): (1 / 256, -128), ("Tanh", 8): (1 / 128, 0),
         ("Sigmoid", 16): (2.0 ** -15, 0), ("Tanh", 16): (2.0 ** -15, 0)}

_FLOAT_CACHE: dict[str, tuple] = {}


def _digits() -> np.ndarray:
    """The first N_INPUTS digits, preprocessed in float32 as the Keras models were fed."""
    from fxp.data import load_dataset

    raw = load_dataset("mnist5k", limit=N_INPUTS).x.astype(np.float32)
    return ((raw / np.float32(255.0) - np.float32(MEAN)) / np.float32(STD)).astype(np.float32)


def _model(name: str) -> tuple[Graph, Plan, np.ndarray, dict[int, np.ndarray]]:
    """(graph, plan, engine input, TFLM tensors): integer models reuse ``_oracle`` (codes
    in), float-I/O models are fed the float32 digits."""
    if "floatio" not in name:
        graph, plan, codes, tflm = _oracle(name)
        return graph, plan, (codes - plan.input.zero_point) * np.float64(plan.input.scales[0]), \
            tflm
    if name not in _FLOAT_CACHE:
        pytest.importorskip("tflite_micro", reason="the oracle needs tflite-micro")
        from tests.tflm_oracle import run_tflm

        graph, plan = load_tflite(_path(name))
        x = _digits()
        tflm = run_tflm(_path(name).read_bytes(), np.transpose(x, (0, 2, 3, 1)))
        _FLOAT_CACHE[name] = (graph, plan, x, tflm)
    return _FLOAT_CACHE[name]


def _to_ir(codes: np.ndarray, layout: str) -> np.ndarray:
    """TFLite-layout codes -> the IR layout (inverse of ``to_tflite_layout``)."""
    codes = codes.astype(np.int64)
    if layout == "nhwc":
        return np.transpose(codes, (0, 3, 1, 2))
    if layout.startswith("chw:"):
        c, h, w = (int(v) for v in layout[4:].split(","))
        return np.transpose(codes.reshape(-1, h, w, c), (0, 3, 1, 2)).reshape(-1, c * h * w)
    return codes


# --------------------------------------------------------------------------- the reader
@pytest.mark.parametrize("name", sorted(OPS))
def test_reader_structure(name: str) -> None:
    """Operators in order; LOGISTIC / TANH outputs carry TFLite's fixed codings; a float input
    QUANTIZE is the plan input, a DEQUANTIZE leaves the codes as the graph output."""
    graph, plan = load_tflite(_path(name))
    ops = json.loads(graph.metadata[OPS_KEY])
    assert [o[1] for o in ops] == OPS[name]
    bits = 16 if "int16" in name else 8
    assert plan.input.fmt.bits == bits and graph.input_shapes[graph.inputs[0]] == (None, 1, 28, 28)
    for node in graph.nodes:
        lp = plan.layer(node.name)
        if (type(node).__name__, bits) in FIXED:
            s, zp = FIXED[(type(node).__name__, bits)]
            assert np.float32(lp.output.scales[0]) == np.float32(s) and lp.output.zero_point == zp
        if isinstance(node, ir.Pad):
            assert node.pads == (1, 1, 1, 1) and lp is None
    tmap = tflite_tensor_map(graph)
    if "floatio" in name:
        q, dq = ops[0], ops[-1]
        assert q[2] == [] and dq[2] == [] and tmap[q[4]][0] == graph.inputs[0]
        assert plan.input == _act_spec(_path(name), q[4])
        assert graph.outputs == (tmap[dq[3][0]][0],)
        assert graph.metadata["fxp.sim.input_arithmetic"] == "float32"


# --------------------------------------------------------------------------- per operator
def _run_steps(graph: Graph, plan: Plan, record: list, tflm: dict) -> np.ndarray:
    """Run an operator's compiled steps (any number of inputs) on TFLM's input codes."""
    from fxp.sim.compile import compile_plan

    _, _, node_names, ins, out_t = record
    tmap = tflite_tensor_map(graph)
    steps = {s.name: s for s in compile_plan(graph, plan).steps}
    vals = {tmap[t][0]: _to_ir(tflm[t], tmap[t][1]) for t in ins}
    for n in node_names:
        step = steps[n]
        assert step.op is not None, n
        vals[step.node.output], _ = step.op([vals[t] for t in step.node.inputs])
    return to_tflite_layout(vals[steps[node_names[-1]].node.output], tmap[out_t][1])


def _op_params() -> list:
    return [pytest.param(name, i, op, id=f"{name}-{i}-{op}")
            for name, ops in OPS.items() for i, op in enumerate(ops)]


@pytest.mark.parametrize(("name", "index", "op"), _op_params())
def test_operator_matches_tflm(name: str, index: int, op: str) -> None:
    """0 differing elements between the engine's output and TFLM's, per operator, on TFLM's
    own input codes for it, over 1,000 digits."""
    graph, plan, x, tflm = _model(name)
    record = json.loads(graph.metadata[OPS_KEY])[index]
    assert record[1] == op
    want = tflm[record[4]]
    if op == "QUANTIZE" and not record[2]:  # float input: the plan's input spec
        got, _ = quantize_spec(x, plan.input, arithmetic="float32")
        got = to_tflite_layout(got, "nhwc")
    elif op == "DEQUANTIZE":  # the engine's float view of the output codes (float32)
        spec = _act_spec(_path(name), record[3][0])
        got = to_float(IntValue(tflm[record[3][0]].astype(np.int64), spec))
        assert got.dtype == want.dtype == np.float32
    elif len(record[3]) == 1:
        got = _run_op(graph, plan, record, tflm, _path(name))
    else:
        got = _run_steps(graph, plan, record, tflm)
    assert got.shape == want.shape
    if want.dtype.kind != "f":
        want = want.astype(np.int64)
    assert int(np.count_nonzero(got != want)) == 0


# --------------------------------------------------------------------------- end to end
def _end_to_end(name: str) -> dict[int, tuple[int, int]]:
    """(differing, compared) elements per TFLite tensor, the engine run from the input."""
    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer

    graph, plan, x, tflm = _model(name)
    run = run_integer(compile_plan(graph, plan), x, keep=True)
    ops = json.loads(graph.metadata[OPS_KEY])
    out = {}
    for t, (ir_name, layout) in tflite_tensor_map(graph).items():
        want = tflm[t]
        if want.dtype.kind == "f":  # the float input (fed as is) or the DEQUANTIZE output
            got = run.output if t == ops[-1][4] else to_tflite_layout(x, layout)
        else:
            got = to_tflite_layout(run.values[ir_name].codes, layout)
            want = want.astype(np.int64)
        assert got.shape == want.shape, t
        out[t] = (int(np.count_nonzero(got != want)), int(want.size))
    assert len(out) == len(OPS[name]) + 1  # every operator output and the input
    return out


@pytest.mark.parametrize("name", sorted(OPS))
def test_end_to_end_every_tensor_matches_tflm(name: str) -> None:
    """From the model input, every tensor of the engine equals TFLM's (integer codes; the
    float32 output of DEQUANTIZE bit for bit): 0 differing elements over 1,000 digits."""
    diffs = _end_to_end(name)
    assert {t: d for t, (d, _) in diffs.items()} == dict.fromkeys(diffs, 0)
    assert sum(n for _, n in diffs.values()) > 10_000_000


def test_float_input_quantize_ties_round_half_away_as_tflm() -> None:
    """TFLM's QUANTIZE rounds the float32 quotient ``x / scale`` half away from zero; the
    plan's input says so (``input_rounding``), so inputs exactly on a tie (2.5 and -2.5
    steps) get TFLM's codes through the engine -- and half to even would not."""
    from dataclasses import replace

    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer

    pytest.importorskip("tflite_micro", reason="the oracle needs tflite-micro")
    from tests.tflm_oracle import run_tflm

    name = "activations_floatio_int8"
    graph, plan = load_tflite(_path(name))
    assert plan.input_rounding.value == "half_away"
    s, zp = np.float32(plan.input.scales[0]), plan.input.zero_point
    x = np.zeros((1, 1, 28, 28), np.float32)
    x[0, 0, 0, :4] = (np.float32(2.5) * s, np.float32(-2.5) * s, np.float32(3.5) * s,
                      np.float32(-0.5) * s)
    assert [float(v / s) for v in x[0, 0, 0, :4]] == [2.5, -2.5, 3.5, -0.5]
    tflm = run_tflm(_path(name).read_bytes(), np.transpose(x, (0, 2, 3, 1)))
    q = json.loads(graph.metadata[OPS_KEY])[0]
    want = tflm[q[4]][0, 0, :, 0]
    assert want[:4].tolist() == [zp + 3, zp - 3, zp + 4, zp - 1]  # half away from zero
    for p, same in ((plan, True), (replace(plan, input_rounding="half_even"), False)):
        run = run_integer(compile_plan(graph, p), x, keep=True)
        ours = run.values[graph.inputs[0]].codes[0, 0, 0]
        assert np.array_equal(ours, want) is same


# --------------------------------------------------------------------------- refusals
def _patched(name: str, old: bytes, new: bytes) -> bytes:
    data = _path(name).read_bytes()
    assert data.count(old) == 1
    return data.replace(old, new)


def test_reader_refuses_channel_padding() -> None:
    """A PAD of the channel axis is listed with the operator's index."""
    from fxp.errors import UnsupportedOpError

    old = np.array([[0, 0], [1, 1], [1, 1], [0, 0]], "<i4").tobytes()
    new = np.array([[0, 0], [1, 1], [1, 1], [0, 1]], "<i4").tobytes()
    with pytest.raises(UnsupportedOpError, match=r"operator 1 \(PAD\): paddings .*H and W"):
        load_tflite(_patched("activations_int8", old, new))


def _patch_vector(data: bytes, table, field: int, k: int, value: int) -> bytes:
    """``data`` with element ``k`` of the int32 vector ``field`` (vtable offset) of a
    flatbuffer table (an Operator's inputs = 6; a SubGraph's outputs = 8) set to ``value``."""
    pos = table._tab.Vector(table._tab.Offset(field)) + 4 * k
    out = bytearray(data)
    out[pos:pos + 4] = int(value).to_bytes(4, "little", signed=True)
    return bytes(out)


def _ops(data: bytes):
    import tflite

    sg = tflite.Model.GetRootAsModel(data, 0).Subgraphs(0)
    return sg, [sg.Operators(i) for i in range(sg.OperatorsLength())]


def test_reader_refuses_mul_by_a_constant() -> None:
    from fxp.errors import UnsupportedOpError

    data = _path("activations_int8").read_bytes()
    _, ops = _ops(data)
    weights = int(ops[0].InputsAsNumpy()[1])  # conv1's weight tensor
    assert OPS["activations_int8"][7] == "MUL"
    bad = _patch_vector(data, ops[7], 6, 1, weights)  # MUL(x, gate) -> MUL(x, weights)
    with pytest.raises(UnsupportedOpError, match=r"operator 7 \(MUL\): MUL by the constant"):
        load_tflite(bad)


def test_reader_refuses_float_tensors_inside_the_graph() -> None:
    """A DEQUANTIZE that is not the graph output, a float input read by a non-QUANTIZE."""
    from fxp.errors import UnsupportedOpError

    data = _path("activations_floatio_int8").read_bytes()
    sg, ops = _ops(data)
    fc_out = int(ops[13].OutputsAsNumpy()[0])
    with pytest.raises(UnsupportedOpError, match=r"operator 14 \(DEQUANTIZE\): DEQUANTIZE is "
                                                 r"supported only into the float32 graph output"):
        load_tflite(_patch_vector(data, sg, 8, 0, fc_out))  # graph output = the FC codes
    f_in = int(sg.InputsAsNumpy()[0])
    with pytest.raises(UnsupportedOpError, match=r"operator 0 \(QUANTIZE\): a float QUANTIZE "
                                                 r"input must be the graph input read by this"):
        load_tflite(_patch_vector(data, ops[1], 6, 0, f_in))  # conv1 reads the float input
