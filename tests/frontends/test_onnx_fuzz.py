"""Seeded mutation fuzzing of both ONNX importers (issue 24, item 8).

Six valid models (a float CNN at opset 10, a Gemm, a QOperator CNN, three
random models from :func:`tests.builders.random_model`) get 300 seeded
mutations -- wrong dtypes, attribute types and values, NaN/Inf, missing
inputs, cycles, empty names, huge dims, external data, deleted, duplicated or
retyped nodes, other opsets and outputs, corrupted or truncated bytes -- and
each is loaded by ``load_onnx`` and ``load_qoperator``.  A few seconds.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fxp.errors import FxpError
from fxp.frontends.onnx_import import load_onnx
from fxp.frontends.onnx_qoperator import load_qoperator
from fxp.ir.passes import canonicalize
from tests.builders import (
    OnnxBuilder, batchnorm, clip, conv, dense, flatten, pool, random_model,
)
from tests.frontends.test_onnx_untrusted import _gemm_model, _qoperator_model

_ATTR_VALUES = (0, 1, -1, 2 ** 40, 1.5, float("nan"), float("inf"), "0", "SAME_UPPER",
                [1, 2], [0, 0, 0, 0], [2 ** 20] * 4, [-1, -1], [1.0, 2.0])
_ATTR_NAMES = ("alpha", "beta", "transB", "group", "pads", "strides", "kernel_shape", "axis",
               "epsilon", "min", "max", "perm", "auto_pad", "dilations", "ceil_mode")
_OPS = ("Conv", "Gemm", "MatMul", "Add", "MaxPool", "AveragePool", "Relu", "Clip",
        "BatchNormalization", "Softmax", "Dropout", "Identity", "Constant", "Concat", "Flatten",
        "Reshape", "Transpose", "QLinearConv", "QGemm", "QLinearMatMul", "DequantizeLinear")


def _pick(r: np.random.Generator, seq):
    return seq[int(r.integers(len(seq)))]


def _mutate(m: onnx.ModelProto, r: np.random.Generator) -> None:
    """One random defect: dtype, attribute type/value, NaN/Inf, missing input, cycle, empty
    name, huge dims, external data, node deletion/duplication/retyping, opset, outputs."""
    g, kind = m.graph, int(r.integers(13))
    if not g.node:
        return
    node = _pick(r, g.node)
    init = _pick(r, g.initializer) if g.initializer else None
    if kind == 0 and init is not None:
        init.data_type = int(r.integers(0, 18))
    elif kind == 1:
        name = _pick(r, [a.name for a in node.attribute] or list(_ATTR_NAMES))
        keep = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend(keep)
        node.attribute.append(helper.make_attribute(name, _pick(r, _ATTR_VALUES)))
    elif kind == 2 and init is not None and init.data_type in (1, 11) and init.raw_data \
            and len(init.raw_data) == np.prod(init.dims) * (4 if init.data_type == 1 else 8):
        with np.errstate(over="ignore"):
            arr = numpy_helper.to_array(init).astype(_pick(r, [np.float32, np.float64]))
            arr.flat[int(r.integers(arr.size))] = _pick(r, [np.nan, np.inf, 3e38, -1e300])
        init.CopyFrom(numpy_helper.from_array(arr, init.name))
    elif kind == 3 and node.input:
        node.input[int(r.integers(len(node.input)))] = _pick(r, ["", "ghost"])
    elif kind == 4 and node.input:
        other = _pick(r, g.node)  # cycle or self-loop
        node.input[0] = other.output[0] if other.output else "y"
    elif kind == 5:
        node.name = ""
        if node.output and r.random() < 0.5:
            node.output[0] = ""
    elif kind == 6 and init is not None:
        del init.dims[:]
        init.dims.extend(_pick(r, [[2 ** 40], [2 ** 33, 2 ** 31], [0, 2 ** 62], [-3]]))
    elif kind == 7:
        d = g.input[0].type.tensor_type.shape.dim
        d[int(r.integers(len(d)))].dim_value = _pick(r, [2 ** 40, 2 ** 62, 0, -5])
    elif kind == 8 and init is not None:
        init.ClearField("raw_data")
        init.data_location = TensorProto.EXTERNAL
        init.external_data.add(key="location", value=_pick(r, ["../w.bin", "/etc/passwd",
                                                               "w.bin", "a\0b"]))
    elif kind == 9:
        g.node.remove(node) if r.random() < 0.5 else g.node.append(type(node)(**{}))
    elif kind == 10:
        node.op_type = _pick(r, _OPS)
    elif kind == 11:
        m.opset_import[0].version = int(r.integers(1, 26))
    elif kind == 12:
        g.output[0].name = _pick(r, ["x", g.node[0].output[0] if g.node[0].output else "",
                                     "nope"])


def _fuzz_bases() -> list[onnx.ModelProto]:
    b = OnnxBuilder((2, 6, 6), opset=10)
    y = batchnorm(b, conv(b, "x", 3))
    y = pool(b, clip(b, y, 0.0, 6.0), "MaxPool")
    y = b.node("Transpose", [b.node("Dropout", [y], None)], None, perm=[0, 1, 2, 3])
    y = b.node("Softmax", [dense(b, flatten(b, y, "reshape0"), 4)], None, axis=1)
    return [b.model(y), _gemm_model(), _qoperator_model(),
            *(random_model(s)[0] for s in range(3))]


def test_fuzzed_models_import_or_raise_an_fxp_error(tmp_path) -> None:
    """Invariant, over 300 seeded mutations (1-2 defects each, or corrupted bytes) of six
    valid models, each loaded by both importers from a folder holding a ``w.bin``: the
    outcome is a graph or an FxpError with a one-line message.  An imported float graph
    canonicalizes, has finite float32 weights and one output written by its last node."""
    r = np.random.default_rng(2024)
    (tmp_path / "w.bin").write_bytes(bytes(4096))
    bases = _fuzz_bases()
    outcomes: dict[str, int] = {}
    for i in range(300):
        m = onnx.ModelProto()
        m.CopyFrom(bases[i % len(bases)])
        if r.random() < 0.15:
            data = bytearray(m.SerializeToString())
            for _ in range(int(r.integers(1, 6))):
                data[int(r.integers(len(data)))] = int(r.integers(256))
            src: onnx.ModelProto | bytes = bytes(data[:int(r.integers(len(data) // 2,
                                                                      len(data) + 1))])
        else:
            for _ in range(int(r.integers(1, 3))):
                _mutate(m, r)
            src = m
        for loader in (load_onnx, load_qoperator):
            try:
                out = loader(src, base_dir=str(tmp_path))
            except FxpError as e:
                assert "\n" not in str(e), (i, str(e))
                key = type(e).__name__
            else:
                key = "ok"
                if loader is load_onnx:
                    c = canonicalize(out)
                    assert c.producer(c.outputs[0]) is c.nodes[-1] and len(c.outputs) == 1
                    for n in c.nodes:
                        for w in (getattr(n, "weight", None), getattr(n, "bias", None)):
                            assert w is None or (w.dtype == np.float32 and np.isfinite(w).all())
            outcomes[key] = outcomes.get(key, 0) + 1
    assert outcomes.get("ok", 0) >= 20 and outcomes.get("ModelImportError", 0) >= 100, outcomes
