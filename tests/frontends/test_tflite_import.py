"""The ``.tflite`` reader against TFLite Micro, every tensor of every operator.

Oracle: the ``tflite-micro`` interpreter (``tests/tflm_oracle.py``; test extra
``tflite``), run on the first 1,000 ``mnist5k`` digits.  For every operator of
the three committed models (``models/tflite/``, int8 and int16x8) the fxp
engine runs the operator's IR nodes alone on TFLM's own input codes for it
(so a difference is that operator's, never an upstream one) and its output
codes are compared with TFLM's, element for element.  All six models also
run end to end from the input codes, which is where the two-input ADD (int8,
and TFLM's int16 ADD of ``residual_mean_int16x8``: left shift 15,
:mod:`fxp.kernels.spec_tflite`) is checked: 14,548,000 elements per
``residual_mean`` model, 0 differing.

Operators whose engine semantics are not implemented yet go into ``PENDING``
as ``xfail`` (``strict=False``); none is left.  SOFTMAX, int8 and int16x8, is
TFLM's integer kernel (:mod:`fxp.kernels.spec_tflite_softmax`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite", reason="the .tflite reader needs the 'tflite' package")

from fxp.core.format import QFormat  # noqa: E402
from fxp.errors import ModelImportError, UnsupportedOpError  # noqa: E402
from fxp.frontends.tflite import (  # noqa: E402
    OPS_KEY, load_tflite, tflite_tensor_map, to_tflite_layout,
)
from fxp.ir.graph import Graph  # noqa: E402
from fxp.plan.plan import Plan, TensorSpec  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "models" / "tflite"
N_INPUTS = 1000
MEAN, STD = 0.1307, 0.3081

# TFLite operators of each committed model, in order (what the reader must find)
OPS = {
    "mnist_cnn": ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "MAX_POOL_2D", "RESHAPE",
                  "FULLY_CONNECTED"],
    "dw_avgpool": ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "DEPTHWISE_CONV_2D",
                   "CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED"],
    "residual_mean": ["CONV_2D", "CONV_2D", "CONV_2D", "ADD", "CONV_2D", "MEAN",
                      "FULLY_CONNECTED", "SOFTMAX"],
}
# Operators whose engine semantics are still missing (measured on the 1,000 digits).
# Turned green (0 differing of all, issue 16 part L) and kept as plain tests: the int16x8
# CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED (int64 MBQM with a 16-bit multiplier; the
# int32 path had missed e.g. 740,314 of 21,632,000 outputs of mnist_cnn_int16x8 op 0),
# int16 AVERAGE_POOL_2D and MEAN, and int8 MEAN (LiteRT's mean.h had missed 1,441 of
# 24,000: TFLM folds 1/(H*W) into the multiplier, fxp.kernels.spec_tflite).
# SOFTMAX (int8 and int16x8) is TFLM's integer kernel (fxp.kernels.spec_tflite_softmax).
PENDING: dict[tuple[str, int], str] = {}
# end to end: TFLite tensors downstream of a pending operator
E2E_PENDING: dict[str, dict[int, str]] = {}


def _path(name: str) -> Path:
    return MODELS / f"{name}.tflite"


# --------------------------------------------------------------------------- the reader
@pytest.mark.parametrize("model", sorted(OPS))
@pytest.mark.parametrize("kind", ["int8", "int16x8"])
def test_reader_structure(model: str, kind: str) -> None:
    """Every operator is read, in order; weights are NCHW; every layer's plan is affine."""
    graph, plan = load_tflite(_path(f"{model}_{kind}"))
    ops = json.loads(graph.metadata[OPS_KEY])
    assert [o[1] for o in ops] == OPS[model]
    assert plan.input.fmt.bits == (8 if kind == "int8" else 16)
    assert graph.input_shapes[graph.inputs[0]] == (None, 1, 28, 28)
    for lp in plan.layers:
        assert lp.requant.value == "double"
        if lp.weight is not None:
            assert lp.weight.fmt.bits == 8 and lp.weight.zero_point == 0
            assert lp.acc_bits == (32 if kind == "int8" else 64)
    tmap = tflite_tensor_map(graph)
    assert {o[4] for o in ops} <= set(tmap)


def _flatbuffer_codes(path: Path, tensor: int) -> np.ndarray:
    import tflite

    data = path.read_bytes()
    m = tflite.Model.GetRootAsModel(data, 0)
    t = m.Subgraphs(0).Tensors(tensor)
    raw = m.Buffers(t.Buffer()).DataAsNumpy().tobytes()
    return np.frombuffer(raw, np.int8).reshape(t.ShapeAsNumpy())


def test_reader_weights_match_flatbuffer_codes() -> None:
    """Re-quantized IR weights give the file's int8 codes after the NHWC -> NCHW transposes:
    conv ``[O,kh,kw,I] -> [O,I,kh,kw]``, depthwise ``[1,kh,kw,C] -> [C,1,kh,kw]``."""
    path = _path("dw_avgpool_int8")
    graph, plan = load_tflite(path)
    conv, dw = graph.layer("op0_conv_2d"), graph.layer("op1_depthwise_conv_2d")
    for node, tensor, perm in ((conv, 11, (0, 3, 1, 2)), (dw, 9, None)):
        codes = _flatbuffer_codes(path, tensor).astype(np.int64)
        want = np.transpose(codes, perm) if perm else np.transpose(codes[0], (2, 0, 1))[:, None]
        s = np.asarray(plan.layer(node.name).weight.scales).reshape(-1, 1, 1, 1)
        np.testing.assert_array_equal(np.rint(node.weight / s), want)
    assert dw.groups == 8 and conv.pads == (1, 1, 1, 1) and dw.pads == (0, 0, 1, 1)


def test_reader_lists_every_unsupported_operator() -> None:
    """Two unknown operators are named together, by index and name, in one error."""
    data = bytearray(_path("mnist_cnn_int8").read_bytes())
    import tflite

    m = tflite.Model.GetRootAsModel(bytes(data), 0)
    ops = [m.OperatorCodes(j) for j in range(m.OperatorCodesLength())]
    # patch the builtin code bytes of MAX_POOL_2D (17) to L2_POOL_2D (12) in place
    patched = 0
    for code in ops:
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == 17:
            for field, size in ((4, 1), (10, 4)):  # deprecated_builtin_code:int8, builtin_code
                pos = code._tab.Offset(field)
                if pos:
                    at = code._tab.Pos + pos
                    data[at:at + size] = (12).to_bytes(size, "little")
                    patched += 1
    assert patched
    with pytest.raises(UnsupportedOpError,
                       match=r"2 unsupported operators .*1 L2_POOL_2D, 3 L2_POOL_2D"):
        load_tflite(bytes(data))


def test_reader_refuses_non_tflite(tmp_path: Path) -> None:
    """Not a flatbuffer, a missing file, a truncated one, a wrong source type: one-line errors."""
    with pytest.raises(ModelImportError, match=r"not a TFLite flatbuffer .*TFL3"):
        load_tflite(b"\x00" * 64)
    with pytest.raises(ModelImportError, match=r"missing\.tflite: cannot read model file"):
        load_tflite(tmp_path / "missing.tflite")
    data = _path("mnist_cnn_int8").read_bytes()
    with pytest.raises(ModelImportError, match=r"<bytes>: "):
        load_tflite(data[:200])
    with pytest.raises(ModelImportError, match=r"above the limit 100"):
        load_tflite(data, max_bytes=100)
    with pytest.raises(TypeError, match=r"path or bytes, got int"):
        load_tflite(3)


# --------------------------------------------------------------------------- against TFLM
def _input_codes(plan: Plan) -> np.ndarray:
    """The first N_INPUTS mnist5k digits, preprocessed and quantized (half even, saturated)."""
    from fxp.data import load_dataset

    raw = load_dataset("mnist5k", limit=N_INPUTS).x.astype(np.float64)
    x = (raw / 255.0 - MEAN) / STD
    s, z, f = plan.input.scales[0], plan.input.zero_point, plan.input.fmt
    return np.clip(np.rint(x / s) + z, f.min_code, f.max_code).astype(np.int64)


_CACHE: dict[str, tuple] = {}


def _oracle(name: str) -> tuple[Graph, Plan, np.ndarray, dict[int, np.ndarray]]:
    if name not in _CACHE:
        pytest.importorskip("tflite_micro", reason="the oracle needs tflite-micro")
        from tests.tflm_oracle import run_tflm

        graph, plan = load_tflite(_path(name))
        codes = _input_codes(plan)
        dtype = np.int8 if plan.input.fmt.bits == 8 else np.int16
        tflm = run_tflm(_path(name).read_bytes(),
                        np.transpose(codes, (0, 2, 3, 1)).astype(dtype))
        _CACHE[name] = (graph, plan, codes, tflm)
    return _CACHE[name]


def _act_spec(path: Path, tensor: int) -> TensorSpec:
    """The quantization of activation ``tensor`` read straight from the flatbuffer."""
    import tflite

    t = tflite.Model.GetRootAsModel(path.read_bytes(), 0).Subgraphs(0).Tensors(tensor)
    q = t.Quantization()
    bits = {9: 8, 7: 16}[t.Type()]
    return TensorSpec(QFormat.integer(bits, True), (float(q.Scale(0)),), int(q.ZeroPoint(0)))


def _run_op(graph: Graph, plan: Plan, record: list, tflm: dict, path: Path) -> np.ndarray:
    """Run one TFLite operator's IR nodes on TFLM's input codes; its output in TFLite layout."""
    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer

    _, _, node_names, ins, _ = record
    tmap = tflite_tensor_map(graph)
    if len(ins) != 1:
        raise UnsupportedOpError(f"the engine runs one-input graphs; {record[1]} has {len(ins)}")
    src, layout = tmap[ins[0]]
    in_spec = _act_spec(path, ins[0])
    nodes = [graph.layer(n) for n in node_names]
    sub = Graph(nodes=tuple(nodes), inputs=(src,), input_shapes={src: graph.shapes[src]},
                outputs=(nodes[-1].output,), metadata=dict(graph.metadata))
    sub_plan = Plan(input=in_spec, layers=tuple(lp for n in node_names
                                                 if (lp := plan.layer(n)) is not None))
    x_codes = tflm[ins[0]].astype(np.int64)
    if layout == "nhwc":
        x_codes = np.transpose(x_codes, (0, 3, 1, 2))
    elif layout.startswith("chw:"):  # TFLite flattened H,W,C; the IR C,H,W
        c, h, w = (int(v) for v in layout[4:].split(","))
        x_codes = np.transpose(x_codes.reshape(-1, h, w, c), (0, 3, 1, 2)).reshape(-1, c * h * w)
    x = (x_codes - in_spec.zero_point) * np.float64(in_spec.scales[0])
    run = run_integer(compile_plan(sub, sub_plan), x, keep=True)
    np.testing.assert_array_equal(run.values[src].codes, x_codes)  # the input survived
    return to_tflite_layout(run.values[nodes[-1].output].codes, tmap[record[4]][1])


def _op_params() -> list:
    params = []
    for model, ops in OPS.items():
        for kind in ("int8", "int16x8"):
            name = f"{model}_{kind}"
            for i, op in enumerate(ops):
                if op == "ADD":  # two inputs: checked by the end-to-end test
                    continue
                reason = PENDING.get((name, i))
                marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
                params.append(pytest.param(name, i, op, marks=marks, id=f"{name}-{i}-{op}"))
    return params


@pytest.mark.parametrize(("name", "index", "op"), _op_params())
def test_operator_matches_tflm(name: str, index: int, op: str) -> None:
    """0 differing elements between the engine's output codes and TFLM's, per operator,
    on TFLM's own input codes for it, over 1,000 digits."""
    graph, plan, _, tflm = _oracle(name)
    record = json.loads(graph.metadata[OPS_KEY])[index]
    assert record[1] == op
    got = _run_op(graph, plan, record, tflm, _path(name))
    want = tflm[record[4]].astype(np.int64)
    assert got.shape == want.shape
    assert int(np.count_nonzero(got != want)) == 0


def _end_to_end(name: str) -> dict[int, int]:
    """Differing elements per TFLite tensor, the engine run from the input codes."""
    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer

    graph, plan, codes, tflm = _oracle(name)
    x = (codes - plan.input.zero_point) * np.float64(plan.input.scales[0])
    run = run_integer(compile_plan(graph, plan), x, keep=True)
    diffs = {}
    for t, (ir_name, layout) in tflite_tensor_map(graph).items():
        value = run.values[ir_name]
        if not hasattr(value, "codes"):  # a float tensor (softmax): nothing integer to compare
            diffs[t] = -1
            continue
        got = to_tflite_layout(value.codes, layout)
        diffs[t] = int(np.count_nonzero(got != tflm[t].astype(np.int64)))
    assert len(diffs) == len(OPS[name.rsplit("_", 1)[0]]) + 1  # every operator output + input
    return diffs


@pytest.mark.parametrize("name", ["mnist_cnn_int8", "dw_avgpool_int8", "residual_mean_int8",
                                  "mnist_cnn_int16x8", "dw_avgpool_int16x8",
                                  "residual_mean_int16x8"])
def test_end_to_end_every_tensor_matches_tflm(name: str) -> None:
    """From the input codes, every activation tensor of the engine equals TFLM's (0 differing
    elements over 1,000 digits), except the tensors listed in ``E2E_PENDING``."""
    pending = E2E_PENDING.get(name, {})
    diffs = {t: n for t, n in _end_to_end(name).items() if t not in pending}
    assert diffs == dict.fromkeys(diffs, 0)
