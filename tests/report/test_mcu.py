"""MCU resources (fxp.report.mcu) against TFLite Micro and independent counts.

Oracles:

* the ``tflite-micro`` interpreter (test extra ``tflite``): its
  ``RecordingMicroAllocator`` prints the arena's head (the greedy planner's
  ``GetMaximumMemorySize``), tail and total after ``AllocateTensors``; the
  planner's figure must equal the head, on the six committed models and on
  random float32 FULLY_CONNECTED / CONCATENATION graphs built here with the
  schema's object API (random sizes and lifetimes, many equal sizes);
* the ``tflite`` package: the bytes of every constant buffer of a file;
* the graph's own weight counts and shapes for fxp plans.

Measured (tflite-micro 0.dev20261023182759, x86-64 host build), head / total arena bytes,
fxp's head equal on each: mnist_cnn int8 27,040 / 29,856, int16x8 54,080 / 56,896;
dw_avgpool int8 7,840 / 10,752, int16x8 15,680 / 18,592; residual_mean int8 9,408 / 12,560,
int16x8 18,816 / 24,048; activations int8 3,920 / 7,328, int16x8 10,800 / 14,336 (floatio
variants: 3,920 / 7,504 and 10,800 / 14,512).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tflite", reason="reading .tflite files needs the 'tflite' package")

from fxp.errors import ModelImportError
from fxp.report.mcu import (
    model_resources,
    packed_bytes,
    plan_resources,
    tflite_resources,
)

MODELS = Path(__file__).resolve().parents[2] / "models" / "tflite"
FILES = sorted(p.name for p in MODELS.glob("*.tflite"))


def tflm_arena(model: bytes) -> dict[str, int]:
    """``{"total", "head", "tail"}`` bytes TFLM's RecordingMicroAllocator reports (its
    ``PrintAllocations`` writes to the C stderr, captured here at the descriptor)."""
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    ip = runtime.Interpreter.from_bytes(bytes(model), arena_size=1 << 22)
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            ip.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode()
    found = dict(re.findall(r"Arena allocation (\w+) (\d+) bytes", text))
    requested = re.search(r"'Persistent buffer data' used \d+ bytes .*?requested (\d+)", text)
    assert set(found) == {"total", "head", "tail"}, text[:400]
    return {**{k: int(v) for k, v in found.items()}, "persistent_requested": int(requested[1])}


# ----------------------------------------------------------------- the committed models
@pytest.mark.parametrize("name", FILES)
def test_head_equals_tflm(name):
    """The planner's head equals TFLM's arena head byte for byte; head + the modelled
    persistent arrays is a lower bound of TFLM's whole arena, and those arrays are part of
    what the kernels requested as persistent buffers."""
    data = (MODELS / name).read_bytes()
    res = tflite_resources(data)
    tflm = tflm_arena(data)
    assert res.head_bytes == tflm["head"], (res.head_bytes, tflm)
    assert res.head_bytes <= res.arena_lower_bound_bytes <= tflm["total"]
    assert 0 < res.persistent_bytes <= tflm["persistent_requested"]
    assert res.notes == ()


def test_mean_scratch_buffers_counted():
    """residual_mean's MEAN requests three scratch buffers (int32 accumulator per output, 4 x
    input rank, 4 x axes), each in the MEAN's scope only."""
    res = tflite_resources(MODELS / "residual_mean_int8.tflite")
    scratch = [b for b in res.arena.buffers if b.name.startswith("scratch")]
    assert [(b.size, b.first, b.last) for b in scratch] == [(96, 6, 6), (16, 6, 6), (16, 6, 6)]


def _buffer_bytes(path: Path) -> tuple[int, dict[int, int]]:
    """Sum of the data of every buffer a constant tensor uses (each buffer once), read with
    the tflite package; and {tensor: scale count} of the constant tensors."""
    import tflite

    m = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    sg = m.Subgraphs(0)
    used = {sg.Tensors(t).Buffer() for t in range(sg.TensorsLength())}
    total = sum(m.Buffers(b).DataLength() for b in used)
    scales = {t: sg.Tensors(t).Quantization().ScaleLength() for t in range(sg.TensorsLength())
              if m.Buffers(sg.Tensors(t).Buffer()).DataLength() and sg.Tensors(t).Quantization()}
    return total, scales


@pytest.mark.parametrize("name", FILES)
def test_flash_equals_buffer_bytes(name):
    """Weights + biases + other constants (from shapes and types) equal the bytes of the
    file's constant buffers; per-channel parameters are 4 + 8 bytes per stored scale; the
    file holds all of it."""
    res = tflite_resources(MODELS / name)
    total, scales = _buffer_bytes(MODELS / name)
    d = res.to_dict()
    assert d["weight_bytes"] + d["bias_bytes"] + d["other_bytes"] == total
    assert d["quant_bytes"] == 12 * sum(scales.values())
    assert d["file_bytes"] == (MODELS / name).stat().st_size > d["flash_bytes"]


def test_per_channel_arena_arrays():
    """TFLM's Prepare allocates an int32 multiplier and an int32 shift per output channel
    (CONV_2D: filter dim 0, FULLY_CONNECTED per-channel: its scales) in the tail."""
    from fxp import workflow as fw

    path = MODELS / "mnist_cnn_int8.tflite"
    graph = fw.load_model(path)
    res = tflite_resources(path, graph)
    out_ch = {n.name: n.weight.shape[0] for n in graph.nodes if getattr(n, "weight", None)
              is not None}
    assert {r.name: r.arena_param_bytes for r in res.layers if r.arena_param_bytes} == \
        {k: 8 * v for k, v in out_ch.items()}
    assert res.persistent_bytes == 8 * sum(out_ch.values())


def test_int16_softmax_tables():
    """An int16 SOFTMAX allocates two 513-entry int16 tables in the tail; int8 none."""
    r16 = tflite_resources(MODELS / "residual_mean_int16x8.tflite")
    r8 = tflite_resources(MODELS / "residual_mean_int8.tflite")
    assert [r.arena_param_bytes for r in r16.layers if r.op == "SOFTMAX"] == [2052]
    assert [r.arena_param_bytes for r in r8.layers if r.op == "SOFTMAX"] == [0]


# ----------------------------------------------------------------- random graphs vs TFLM
def build_model(in_width: int, ops: list[tuple[str, list[int], int]]) -> bytes:
    """A float32 .tflite: tensor 0 ``[1, in_width]``; op k is ``("fc", [src], width)``
    (FULLY_CONNECTED with zero weights, no bias), ``("cat", srcs, 0)`` (CONCATENATION on
    axis 1) or ``("mean", [src], 0)`` (MEAN over axis 1, kept: two scratch buffers) of
    earlier activations; the last op's output is the graph output."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    m = s.ModelT()
    m.version, m.buffers, tensors = 3, [s.BufferT()], []
    codes = []
    for op in (s.BuiltinOperator.FULLY_CONNECTED, s.BuiltinOperator.CONCATENATION,
               s.BuiltinOperator.MEAN):
        c = s.OperatorCodeT()
        c.builtinCode = c.deprecatedBuiltinCode = op
        c.version = 1
        codes.append(c)
    m.operatorCodes = codes

    def tensor(shape: list[int], data: np.ndarray | None = None) -> int:
        t, b = s.TensorT(), s.BufferT()
        t.shape, t.type = shape, s.TensorType.FLOAT32
        if data is not None:
            t.type = s.TensorType.INT32 if data.dtype == np.int32 else t.type
            b.data = np.frombuffer(data.astype("<i4" if data.dtype == np.int32 else "<f4")
                                   .tobytes(), np.uint8)
        m.buffers.append(b)
        t.buffer = len(m.buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    acts, widths, operators = [tensor([1, in_width])], [in_width], []
    for kind, srcs, width in ops:
        op = s.OperatorT()
        if kind == "fc":
            w = tensor([width, widths[srcs[0]]], np.zeros((width, widths[srcs[0]])))
            op.opcodeIndex, op.inputs = 0, [acts[srcs[0]], w, -1]
            op.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
            op.builtinOptions = s.FullyConnectedOptionsT()
        elif kind == "mean":
            width = 1
            axis = tensor([1], np.array([1], np.int32))
            op.opcodeIndex, op.inputs = 2, [acts[srcs[0]], axis]
            op.builtinOptionsType = s.BuiltinOptions.ReducerOptions
            op.builtinOptions = s.ReducerOptionsT()
            op.builtinOptions.keepDims = True
        else:
            width = sum(widths[i] for i in srcs)
            op.opcodeIndex, op.inputs = 1, [acts[i] for i in srcs]
            op.builtinOptionsType = s.BuiltinOptions.ConcatenationOptions
            op.builtinOptions = s.ConcatenationOptionsT()
            op.builtinOptions.axis = 1
        acts.append(tensor([1, width]))
        widths.append(width)
        op.outputs = [acts[-1]]
        operators.append(op)
    sg = s.SubGraphT()
    sg.tensors, sg.operators, sg.inputs, sg.outputs = tensors, operators, [acts[0]], [acts[-1]]
    m.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@st.composite
def random_graphs(draw):
    n = draw(st.integers(1, 9))
    ops = []
    for k in range(n):
        kind = draw(st.sampled_from(["fc", "fc", "cat", "cat", "mean"]))
        if kind == "fc":
            ops.append(("fc", [draw(st.integers(0, k))], draw(st.integers(1, 40))))
        elif kind == "mean":
            ops.append(("mean", [draw(st.integers(0, k))], 0))
        else:
            ops.append(("cat", draw(st.lists(st.integers(0, k), min_size=1, max_size=3)), 0))
    return draw(st.integers(1, 40)), ops


@settings(max_examples=300)
@given(random_graphs())
def test_random_graphs_head_equals_tflm(graph):
    """On random graphs (dangling tensors, reused inputs, scratch buffers, many equal
    16-byte-rounded sizes: the order of equal sizes decides the plan) the head equals TFLM's."""
    pytest.importorskip("tflite_micro")
    data = build_model(*graph)
    res = tflite_resources(data)
    assert res.head_bytes == tflm_arena(data)["head"]
    assert res.persistent_bytes == 0  # float FC/CONCATENATION keep no per-channel arrays


def test_tie_order_regression():
    """Found by the random test with equal sizes taken in increasing index order: that order
    gives 368 bytes here, TFLM (equal sizes highest index first) gives 400, and so does fxp."""
    ops = [("fc", [0], 27), ("fc", [0], 8), ("fc", [1], 27), ("cat", [0], 0), ("fc", [2], 32),
           ("cat", [5], 0), ("fc", [3], 17)]
    data = build_model(20, ops)
    assert tflite_resources(data).head_bytes == 400
    if _has_tflm():
        assert tflm_arena(data)["head"] == 400


def _has_tflm() -> bool:
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------- fxp plans
def test_ir_planner_on_tflite_graph_matches_tflm():
    """For models whose IR tensors are TFLite's (mnist_cnn, dw_avgpool int8), the planner over
    the IR tensors with the plan's byte widths gives TFLM's head too."""
    from fxp import workflow as fw

    for name in ("mnist_cnn_int8.tflite", "dw_avgpool_int8.tflite"):
        graph = fw.load_model(MODELS / name)
        res = plan_resources(graph, fw.embedded_plan(graph))
        assert res.head_bytes == tflm_arena((MODELS / name).read_bytes())["head"]


def test_affine_plan_flash_counts():
    """An affine (double) plan: int8 weights 1 byte each, int32 biases one per output channel,
    one int32 multiplier + int8 exponent per output channel."""
    from fxp import workflow as fw

    graph = fw.load_model(MODELS / "mnist_cnn_int8.tflite")
    res = plan_resources(graph, fw.embedded_plan(graph))
    nodes = {n.name: n for n in graph.nodes}
    weighted = [r for r in res.layers if r.weight_bytes]
    assert {r.name for r in weighted} == {n for n, v in nodes.items()
                                         if getattr(v, "weight", None) is not None}
    for r in weighted:
        w = nodes[r.name].weight
        assert (r.weight_bytes, r.bias_bytes, r.quant_bytes) == (w.size, 4 * w.shape[0],
                                                                 5 * w.shape[0])


def test_pow2_plan_packing_and_activation_widths():
    """A mixed power-of-two plan: 4-bit weights packed two per byte, 2-bit stored as int4,
    12-bit in int16; 16-bit activations take 2 bytes in the arena; a binary layer's
    weights one bit each."""
    from fxp import workflow as fw
    from fxp.plan.ptq import ptq_pow2

    graph = fw.load_model("mnist_cnn")
    x = np.random.default_rng(0).normal(size=(8, 1, 28, 28)).astype(np.float32)
    plan = ptq_pow2(graph, x, layer_weight_bits={"conv1": 4, "conv2": 2, "fc1": 12},
                    layer_act_bits={"conv1": 16})
    res = plan_resources(graph, plan)
    w = {n.name: n.weight.size for n in graph.nodes if getattr(n, "weight", None) is not None}
    got = {r.name: r.weight_bytes for r in res.layers if r.weight_bytes}
    assert got == {"conv1": -(-w["conv1"] // 2), "conv2": -(-w["conv2"] // 2),
                   "fc1": 2 * w["fc1"]}
    assert sum(r.quant_bytes for r in res.layers) == 0  # power-of-two shifts: no constants
    conv1 = next(n for n in graph.nodes if n.name == "conv1").output
    size = next(b.size for b in res.arena.buffers if b.name == conv1)
    assert size == 2 * int(np.prod(graph.shapes[conv1][1:]))
    from fxp.errors import BinaryInputWarning

    with pytest.warns(BinaryInputWarning, match="'conv2'"):  # conv2 reads a ReLU output
        binary = plan_resources(graph, ptq_pow2(graph, x, binary_layers=("conv2",)))
    assert next(r.weight_bytes for r in binary.layers if r.name == "conv2") == w["conv2"] // 8


@pytest.mark.parametrize(("n", "bits", "want"), [(1, 1, 1), (8, 1, 1), (9, 1, 2), (3, 2, 2),
                                                 (7, 4, 4), (7, 5, 7), (7, 8, 7), (7, 9, 14),
                                                 (7, 16, 14), (7, 17, 28), (7, 33, 56)])
def test_packed_bytes(n, bits, want):
    assert packed_bytes(n, bits) == want


# ----------------------------------------------------------------- entry points and CLI
def test_float_model_and_uncompilable_plan_give_reasons():
    from fxp import workflow as fw
    from fxp.plan.plan import LayerPlan, Plan

    graph = fw.load_model("mnist_cnn")
    res, reason = model_resources(graph, None)
    assert res is None and "float model" in reason
    plan = Plan(input=fw.embedded_plan(fw.load_model(MODELS / "mnist_cnn_int8.tflite")).input,
                layers=(LayerPlan("nope"),))
    res, reason = model_resources(graph, plan)
    assert res is None and "does not compile" in reason and "'nope'" in reason


def _repacked(data: bytes, edit) -> bytes:
    """``data`` unpacked with the schema's object API, changed by ``edit(model)``, repacked."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(m)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_bad_files_are_refused():
    pytest.importorskip("tflite_micro")
    data = (MODELS / "mnist_cnn_int8.tflite").read_bytes()
    with pytest.raises(ModelImportError, match=r"<bytes>: not a TFLite flatbuffer .*b'TFL3'"):
        tflite_resources(b"\x00" * 16)
    with pytest.raises(ModelImportError, match=r"missing.tflite'.*cannot read model file"):
        tflite_resources(MODELS / "missing.tflite")
    with pytest.raises(ModelImportError, match="<bytes>: malformed TFLite flatbuffer: error"):
        tflite_resources(data[:200])
    two = _repacked(data, lambda m: m.subgraphs.append(m.subgraphs[0]))
    with pytest.raises(ModelImportError, match="2 subgraphs; one is supported"):
        tflite_resources(two)

    def to_string(m):
        m.subgraphs[0].tensors[0].type = 5  # STRING

    with pytest.raises(ModelImportError, match=r"tensor 0 \('serving_default_image:0'\) has "
                                               r"type code 5, which has no byte size"):
        tflite_resources(_repacked(data, to_string))


def test_notes_for_what_is_not_modelled(monkeypatch):
    """An operator whose kernel requests scratch buffers fxp does not model, and an offline
    memory plan, are named in the notes; a file above the size limit is refused."""
    pytest.importorskip("tflite_micro")
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    import fxp.report.mcu_tflite as mt

    data = (MODELS / "mnist_cnn_int8.tflite").read_bytes()

    def edit(m):
        op = m.subgraphs[0].operators[4]  # RESHAPE
        code = m.operatorCodes[op.opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.MIRROR_PAD
        meta = s.MetadataT()
        meta.name, meta.buffer = "OfflineMemoryAllocation", 0
        m.metadata = [*(m.metadata or []), meta]

    notes = tflite_resources(_repacked(data, edit)).notes
    assert len(notes) == 2
    assert notes[0].startswith("op4 MIRROR_PAD: kernel scratch buffers not modelled")
    assert "offline memory plan" in notes[1]
    monkeypatch.setattr(mt, "MAX_TFLITE_BYTES", 1000)
    with pytest.raises(ModelImportError, match=r"file is 41096 bytes, above the limit 1000"):
        tflite_resources(MODELS / "mnist_cnn_int8.tflite")


def test_cli_inspect_json_and_text(capsys):
    from fxp.cli import main

    path = str(MODELS / "mnist_cnn_int8.tflite")
    assert main(["inspect", path, "--json"]) == 0
    mcu = json.loads(capsys.readouterr().out)["mcu"]
    assert mcu["source"] == "tflite"
    assert mcu["arena_head_bytes"] == tflite_resources(path).head_bytes
    assert mcu["flash_bytes"] == sum(r["flash_bytes"] for r in mcu["layers"])
    assert main(["inspect", path]) == 0
    text = capsys.readouterr().out
    assert "peak activation RAM (TFLM greedy arena head" in text
    assert f"{mcu['arena_head_bytes']:,} bytes" in text


def test_cli_simulate_reports_mcu(capsys, tmp_path):
    """``fxp simulate`` adds the resources: the .tflite's own with no --plan, the plan's over
    IR tensors with one (a 4-bit pow2 plan's weights packed two per byte)."""
    from fxp import workflow as fw
    from fxp.cli import main
    from fxp.plan.io import save_plan
    from fxp.plan.ptq import ptq_pow2

    x = np.random.default_rng(1).uniform(size=(2, 1, 28, 28)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    data = f"npz:{tmp_path / 'd.npz'}"
    path = str(MODELS / "mnist_cnn_int8.tflite")
    assert main(["simulate", path, "--data", data]) == 0
    text = capsys.readouterr().out
    assert "MCU resources (TFLite Micro, this .tflite)" in text
    assert "arena head, 7 buffers, 16-byte aligned) 27,040 bytes" in text
    graph = fw.load_model("mnist_cnn")
    save_plan(ptq_pow2(graph, x, weight_bits=4), tmp_path / "p.json")
    assert main(["simulate", "mnist_cnn", "--plan", str(tmp_path / "p.json"), "--data", data,
                 "--json"]) == 0
    mcu = json.loads(capsys.readouterr().out)["mcu"]
    assert mcu["source"] == "plan"
    w = [n.weight.size for n in graph.nodes if getattr(n, "weight", None) is not None]
    assert mcu["weight_bytes"] == sum(-(-n // 2) for n in w) == 288 // 2 + 18432 // 2 + 16000 // 2
