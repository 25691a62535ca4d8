"""fxp's integer primitives on the onnx package's own backend node test vectors (anchor G6).

The installed ``onnx`` wheel ships the backend *case generators*
(``onnx.backend.test.case.node``) but not the generated ``data/node/*/*.pb``
files; ``collect_testcases()`` builds the very models, inputs and expected
outputs that ``backend-test-tools generate-data`` writes to those files, so
they are used here (when a ``data/node`` folder is present the ``.pb`` files
are read instead, with ``onnx.numpy_helper``).

Each vector runs through fxp's own primitives, never through onnx or
onnxruntime:

* QLinearConv: :func:`fxp.ops.layers.conv2d_int` (zero-point padding, P14) +
  :func:`requantize_float32_per_channel` with ``float32(float32(s_x*s_w)/s_y)``;
* QLinearMatMul 2-D and 3-D (batched): :func:`dense_int` + the same requant;
* ConvInteger / MatMulInteger: :func:`conv2d_int` / :func:`dense_int` with
  zero points, int32 accumulator;
* QuantizeLinear: :func:`fxp.sim.values.quantize_linear_f32`;
* DequantizeLinear: :func:`fxp.sim.values.to_float` on affine codes.

Every output element must be equal (floats bit for bit).  Variants fxp does
not model are skipped with their names: float8 / int4 / int2 / float4
element types, blocked quantization, float16 scales, and the
DynamicQuantizeLinear op (not in the brief's list).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.ops import layers as L
from fxp.plan.plan import TensorSpec
from fxp.sim.values import IntValue, quantize_linear_f32, to_float

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

FAMILIES = ("test_qlinearconv", "test_qlinearmatmul_2D", "test_qlinearmatmul_3D",
            "test_convinteger", "test_matmulinteger", "test_quantizelinear",
            "test_dequantizelinear")
_FMT = {np.dtype("int8"): QFormat.integer(8), np.dtype("uint8"): QFormat.integer(8, False),
        np.dtype("int16"): QFormat.integer(16), np.dtype("uint16"): QFormat.integer(16, False)}


def _from_pb_files(root: Path):
    cases = []
    for d in sorted(root.iterdir()):
        if not d.name.startswith(FAMILIES):
            continue
        model = onnx.load(str(d / "model.onnx"))
        sets = []
        for ds in sorted(d.glob("test_data_set_*")):
            def read(prefix):
                out = []
                for f in sorted(ds.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1])):
                    t = onnx.TensorProto()
                    t.ParseFromString(f.read_bytes())
                    out.append(t)
                return out
            sets.append((read("input"), read("output")))
        cases.append((d.name, model, sets))
    return cases


def _collect():
    data = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
    if data.is_dir() and any(data.glob("test_qlinearconv")):
        return _from_pb_files(data), "pb files"
    from onnx.backend.test.case import node as case_node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = case_node.collect_testcases(None)
    sel = [(c.name, c.model, c.data_sets) for c in cases if c.name.startswith(FAMILIES)
           and not c.name.endswith("_expanded")]
    return sel, "case generators"


CASES, SOURCE = _collect()


def _array(v):
    """numpy array from an ndarray or a TensorProto (None for types numpy cannot hold)."""
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, onnx.TensorProto):
        if v.data_type not in (1, 2, 3, 4, 5, 6, 10):  # float, u8, i8, u16, i16, i32, f16
            return None
        return numpy_helper.to_array(v)
    return np.asarray(v)


def _skip_reason(name: str, node, inputs, outputs) -> str | None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if any(a is None for a in (*inputs, *outputs)):
        return ("element type outside int8/uint8/int16/uint16/int32/float "
                "(float8, int4, int2, float4)")
    if attrs.get("block_size"):
        return "blocked quantization"
    if any(a.dtype == np.float16 for a in (*inputs, *outputs)):
        return "float16 scales/outputs (fxp models float32 scale arithmetic)"
    if attrs.get("output_dtype"):
        return "output_dtype attribute"
    return None


def _f32_scales(sx, sw, sy, n):
    return np.broadcast_to((np.float32(sx) * np.asarray(sw, np.float32).reshape(-1))
                           / np.float32(sy), (n,)).astype(np.float32)


def _qlinearconv(node, ins):
    x, sx, zx, w, sw, zw, sy, zy = ins[:8]
    b = ins[8].astype(np.int64) if len(ins) > 8 else None
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    pads = a.get("pads", [0, 0, 0, 0])
    zw = np.asarray(zw).reshape(-1).astype(np.int64)
    acc, _ = L.conv2d_int(x.astype(np.int64), w.astype(np.int64), b,
                          x_zero_point=int(np.asarray(zx).reshape(-1)[0]),
                          w_zero_point=zw if zw.size > 1 else int(zw[0]),
                          strides=a.get("strides", [1, 1]), dilations=a.get("dilations", [1, 1]),
                          pads=(pads[0], pads[1], pads[2], pads[3]), groups=a.get("group", 1),
                          method="loop")
    fmt = _FMT[ins[7].dtype]
    y, _ = L.requantize_float32_per_channel(acc, _f32_scales(sx, sw, sy, w.shape[0]), fmt,
                                            axis=1, zero_point=int(np.asarray(zy).reshape(-1)[0]))
    return [y]


def _qlinearmatmul(node, ins):
    a, sa, za, b, sb, zb, sy, zy = ins
    fmt = _FMT[zy.dtype]
    a3 = a.reshape((-1,) + a.shape[-2:]) if a.ndim == 3 else a[None]
    b3 = b.reshape((-1,) + b.shape[-2:]) if b.ndim == 3 else b[None]
    outs = []
    for i in range(a3.shape[0]):
        acc, _ = L.dense_int(a3[i].astype(np.int64), b3[i % b3.shape[0]].T.astype(np.int64),
                             x_zero_point=int(za.reshape(-1)[0]),
                             w_zero_point=int(zb.reshape(-1)[0]), method="loop")
        y, _ = L.requantize_float32_per_channel(acc, _f32_scales(sa, sb, sy, acc.shape[1]), fmt,
                                                axis=1, zero_point=int(zy.reshape(-1)[0]))
        outs.append(y)
    y = np.stack(outs)
    return [y.reshape(a.shape[:-1] + (b.shape[-1],))]


def _convinteger(node, ins):
    x, w = ins[0], ins[1]
    zx = int(ins[2].reshape(-1)[0]) if len(ins) > 2 else 0
    zw = ins[3].reshape(-1).astype(np.int64) if len(ins) > 3 else np.zeros(1, np.int64)
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    pads = a.get("pads", [0, 0, 0, 0])
    acc, _ = L.conv2d_int(x.astype(np.int64), w.astype(np.int64), x_zero_point=zx,
                          w_zero_point=zw if zw.size > 1 else int(zw[0]),
                          strides=a.get("strides", [1, 1]), dilations=a.get("dilations", [1, 1]),
                          pads=pads, groups=a.get("group", 1), acc_bits=32, method="loop")
    return [acc]


def _matmulinteger(node, ins):
    a, b = ins[0], ins[1]
    za = int(ins[2].reshape(-1)[0]) if len(ins) > 2 else 0
    zb = ins[3].reshape(-1).astype(np.int64) if len(ins) > 3 else np.zeros(1, np.int64)
    acc, _ = L.dense_int(a.astype(np.int64), b.T.astype(np.int64), x_zero_point=za,
                         w_zero_point=zb if zb.size > 1 else int(zb[0]), acc_bits=32,
                         method="loop")
    return [acc]


def _quantizelinear(node, ins):
    x, s = ins[0], ins[1]
    z = ins[2] if len(ins) > 2 else np.uint8(0)
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    codes, _ = quantize_linear_f32(x, s, z, _FMT[np.asarray(z).dtype], axis=a.get("axis", 1))
    return [codes]


def _dequantizelinear(node, ins):
    x, s = ins[0], ins[1]
    z = ins[2] if len(ins) > 2 else np.zeros((), x.dtype)
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    fmt = _FMT[x.dtype]
    s, z = np.asarray(s).reshape(-1), np.asarray(z).reshape(-1)
    if s.size == 1:
        return [to_float(IntValue(x.astype(np.int64), TensorSpec(fmt, (float(s[0]),),
                                                                 int(z[0]))))]
    axis = a.get("axis", 1) % x.ndim
    out = np.empty(x.shape, np.float32)
    for c in range(x.shape[axis]):
        sl = [slice(None)] * x.ndim
        sl[axis] = c
        spec = TensorSpec(fmt, (float(s[c]),), int(z[c if z.size > 1 else 0]))
        out[tuple(sl)] = to_float(IntValue(x[tuple(sl)].astype(np.int64), spec))
    return [out]


RUNNERS = {"QLinearConv": _qlinearconv, "QLinearMatMul": _qlinearmatmul,
           "ConvInteger": _convinteger, "MatMulInteger": _matmulinteger,
           "QuantizeLinear": _quantizelinear, "DequantizeLinear": _dequantizelinear}


def _prepared():
    run, skipped = [], []
    for name, model, sets in CASES:
        node = model.graph.node[0]
        if len(model.graph.node) != 1 or node.op_type not in RUNNERS:
            skipped.append((name, f"op {node.op_type} (multi-node or not an integer primitive)"))
            continue
        for k, (ins, outs) in enumerate(sets):
            ins_a, outs_a = [_array(v) for v in ins], [_array(v) for v in outs]
            reason = _skip_reason(name, node, ins_a, outs_a)
            if reason:
                skipped.append((name, reason))
            else:
                run.append((f"{name}[{k}]", node, ins_a, outs_a))
    return run, skipped


RUN, SKIPPED = _prepared()


def test_vectors_were_found():
    assert len(RUN) >= 15, [r[0] for r in RUN]
    names = {r[0].split("[")[0] for r in RUN}
    for must in ("test_qlinearconv", "test_qlinearmatmul_2D_uint8_float32",
                 "test_qlinearmatmul_3D_int8_float32", "test_convinteger_with_padding",
                 "test_matmulinteger", "test_quantizelinear_axis", "test_dequantizelinear_axis",
                 "test_quantizelinear_int16"):
        assert must in names


def test_skipped_variants_are_listed():
    """The variants fxp does not model, with their reasons (printed with -s / -rA)."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in SKIPPED:
        by_reason.setdefault(reason, []).append(name)
    for reason, names in sorted(by_reason.items()):
        print(f"skipped ({reason}): {', '.join(sorted(names))}")
    allowed = ("element type", "blocked", "float16", "output_dtype", "op ")
    assert all(r.startswith(allowed) for r in by_reason), by_reason


@pytest.mark.parametrize("case", RUN, ids=[r[0] for r in RUN])
def test_backend_vector_bit_exact(case, record_property):
    name, node, ins, outs = case
    got = RUNNERS[node.op_type](node, ins)
    assert len(got) == len(outs)
    n = 0
    for g, want in zip(got, outs):
        g = np.asarray(g)
        assert g.shape == want.shape, (name, g.shape, want.shape)
        if want.dtype.kind == "f":
            same = np.asarray(g, want.dtype).view(np.uint8) == want.view(np.uint8)
            assert same.all(), (name, g, want)
        else:
            assert np.array_equal(g.astype(np.int64), want.astype(np.int64)), (name, g, want)
        n += want.size
    record_property("elements", n)
    record_property("source", SOURCE)


if os.environ.get("FXP_LIST_VECTORS"):  # pragma: no cover - manual inspection
    print(SOURCE, [r[0] for r in RUN], SKIPPED)
