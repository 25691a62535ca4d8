"""Tiny ONNX model builders for tests (``onnx.helper`` style), plus an ORT runner.

:class:`OnnxBuilder` appends nodes and initializers and tracks the static
shape of every activation (batch excluded), so random generators can keep
models valid.  :func:`random_model` draws one small random CNN or MLP.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class OnnxBuilder:
    """Append-only ONNX graph builder with per-sample shape tracking.

    Parameters
    ----------
    shape : tuple of int
        Per-sample input shape (``(C, H, W)`` or ``(F,)``).
    batch : int or str
        Input batch dim: an int or a symbolic name.
    opset : int
    """

    def __init__(self, shape: tuple[int, ...], *, batch: int | str = "N", opset: int = 17,
                 rng: np.random.Generator | None = None) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shapes: dict[str, tuple[int, ...]] = {"x": tuple(shape)}
        self.input_dims = [batch, *shape]
        self.opset = opset
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._n = 0

    def fresh(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def init(self, array: np.ndarray, stem: str = "w") -> str:
        name = self.fresh(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, *shape: int, scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        s = scale if scale is not None else 1.0 / math.sqrt(max(fan_in, 1))
        return self.init(self.rng.normal(0.0, s, shape).astype(np.float32))

    def node(self, op_type: str, inputs: list[str], shape: tuple[int, ...] | None,
             n_outputs: int = 1, **attrs: Any) -> str:
        """Add a node; ``shape`` is the per-sample output shape (None: same as input 0)."""
        name = self.fresh(op_type.lower())
        outs = [f"{name}_out"] + [f"{name}_out{i}" for i in range(1, n_outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        self.shapes[outs[0]] = self.shapes[inputs[0]] if shape is None else tuple(shape)
        return outs[0]

    def model(self, outputs: list[str] | str, metadata: dict[str, str] | None = None,
              ir_version: int = 8) -> onnx.ModelProto:
        outputs = [outputs] if isinstance(outputs, str) else outputs
        graph = helper.make_graph(
            self.nodes, "test",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, self.input_dims)],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = ir_version
        for k, v in (metadata or {}).items():
            m.metadata_props.add(key=k, value=v)
        return m


def run_ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """First output of ``model`` on ``x`` with onnxruntime (CPU, no graph optimizations)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def assert_close_to_ort(got: np.ndarray, ref: np.ndarray) -> None:
    """The round-trip tolerance: rtol 1e-5, atol 1e-5 x the largest |ref| (float32)."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert got.dtype == np.float32
    atol = 1e-5 * max(float(np.abs(ref).max()), 1e-3)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=atol)


# ----------------------------------------------------------------- layers
def conv(b: OnnxBuilder, x: str, cout: int | None = None, *, kernel: tuple[int, int] = (3, 3),
         strides: tuple[int, int] = (1, 1), pads: tuple[int, ...] | None = (1, 1, 1, 1),
         dilations: tuple[int, int] = (1, 1), group: int = 1, bias: bool = True,
         auto_pad: str | None = None) -> str:
    c, h, w = b.shapes[x]
    cout = c if cout is None else cout
    inputs = [x, b.weight(cout, c // group, *kernel)]
    if bias:
        inputs.append(b.init(b.rng.normal(0, 0.1, cout).astype(np.float32), "b"))
    attrs: dict[str, Any] = {"kernel_shape": list(kernel), "strides": list(strides),
                             "dilations": list(dilations), "group": group}
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        attrs["auto_pad"] = auto_pad
        oh, ow = -(-h // strides[0]), -(-w // strides[1])
    else:
        p = (0, 0, 0, 0) if auto_pad == "VALID" or pads is None else pads
        if auto_pad == "VALID":
            attrs["auto_pad"] = "VALID"
        else:
            attrs["pads"] = list(p)
        oh = (h + p[0] + p[2] - (kernel[0] - 1) * dilations[0] - 1) // strides[0] + 1
        ow = (w + p[1] + p[3] - (kernel[1] - 1) * dilations[1] - 1) // strides[1] + 1
    return b.node("Conv", inputs, (cout, oh, ow), **attrs)


def pool(b: OnnxBuilder, x: str, op: str, *, kernel: tuple[int, int] = (2, 2),
         strides: tuple[int, int] = (2, 2), pads: tuple[int, ...] = (0, 0, 0, 0),
         auto_pad: str | None = None, **attrs: Any) -> str:
    c, h, w = b.shapes[x]
    attrs.update(kernel_shape=list(kernel), strides=list(strides))
    if auto_pad:
        attrs["auto_pad"] = auto_pad
        oh, ow = -(-h // strides[0]), -(-w // strides[1])
    else:
        attrs["pads"] = list(pads)
        oh = (h + pads[0] + pads[2] - kernel[0]) // strides[0] + 1
        ow = (w + pads[1] + pads[3] - kernel[1]) // strides[1] + 1
    return b.node(op, [x], (c, oh, ow), **attrs)


def batchnorm(b: OnnxBuilder, x: str) -> str:
    c = b.shapes[x][0]
    r = b.rng
    ins = [x, b.init(r.uniform(0.5, 1.5, c).astype(np.float32)),
           b.init(r.normal(0, 0.2, c).astype(np.float32)),
           b.init(r.normal(0, 0.2, c).astype(np.float32)),
           b.init(r.uniform(0.5, 2.0, c).astype(np.float32))]
    return b.node("BatchNormalization", ins, None, epsilon=1e-3)


def clip(b: OnnxBuilder, x: str, lo: float | None, hi: float | None) -> str:
    if b.opset < 11:
        attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        return b.node("Clip", [x], None, **attrs)
    ins = [x, "" if lo is None else b.init(np.float32(lo), "lo"),
           "" if hi is None else b.init(np.float32(hi), "hi")]
    while ins[-1] == "":
        ins.pop()
    return b.node("Clip", ins, None)


def dense(b: OnnxBuilder, x: str, out: int, *, style: str = "gemm") -> str:
    (k,) = b.shapes[x]
    r = b.rng
    if style == "matmul":
        y = b.node("MatMul", [x, b.weight(k, out, scale=1 / math.sqrt(k))], (out,))
        return b.node("Add", [y, b.init(r.normal(0, 0.1, out).astype(np.float32))], None)
    trans_b = int(r.integers(0, 2))
    w = b.weight(out, k, scale=1 / math.sqrt(k)) if trans_b else \
        b.weight(k, out, scale=1 / math.sqrt(k))
    c = r.normal(0, 0.1, (1, out) if r.random() < 0.5 else (out,)).astype(np.float32)
    return b.node("Gemm", [x, w, b.init(c)], (out,), transB=trans_b,
                  alpha=float(r.uniform(0.5, 1.5)), beta=float(r.uniform(0.5, 1.5)))


def flatten(b: OnnxBuilder, x: str, style: str = "flatten") -> str:
    size = int(np.prod(b.shapes[x]))
    if style == "flatten":
        return b.node("Flatten", [x], (size,), axis=1)
    target = {"reshape0": [0, -1], "reshape1": [1, -1], "reshape_k": [-1, size]}[style]
    return b.node("Reshape", [x, b.init(np.array(target, np.int64), "shape")], (size,))


# ------------------------------------------------------------ random models
def _random_conv(b: OnnxBuilder, x: str) -> str:
    r = b.rng
    c, h, w = b.shapes[x]
    kind = r.choice(["plain", "plain", "depthwise", "grouped"])
    group, cout = 1, int(r.integers(1, 6))
    if kind == "depthwise":
        group, cout = c, c * int(r.integers(1, 3))
    elif kind == "grouped" and c > 1:
        group = int(r.choice([g for g in range(1, c + 1) if c % g == 0]))
        cout = group * int(r.integers(1, 3))
    kernel = (int(r.integers(1, 4)), int(r.integers(1, 4)))
    strides = (int(r.integers(1, 3)), int(r.integers(1, 3)))
    dilations = (int(r.integers(1, 3)), int(r.integers(1, 3))) if r.random() < 0.3 else (1, 1)
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    auto_pad = r.choice(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
    if dilations != (1, 1) and auto_pad.startswith("SAME"):
        auto_pad = "NOTSET"  # onnxruntime refuses SAME with dilation; so does fxp
    pads = tuple(int(v) for v in r.integers(0, 3, 4))  # asymmetric in general
    if auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    if auto_pad in ("NOTSET", "VALID") and (h + pads[0] + pads[2] < span[0]
                                            or w + pads[1] + pads[3] < span[1]):
        return x
    return conv(b, x, cout, kernel=kernel, strides=strides, pads=pads, dilations=dilations,
                group=group, bias=bool(r.random() < 0.7),
                auto_pad=None if auto_pad == "NOTSET" else auto_pad)


def _random_pool(b: OnnxBuilder, x: str) -> str:
    r = b.rng
    c, h, w = b.shapes[x]
    kernel = (int(r.integers(1, min(h, 3) + 1)), int(r.integers(1, min(w, 3) + 1)))
    strides = (int(r.integers(1, 3)), int(r.integers(1, 3)))
    pads = tuple(int(r.integers(0, kernel[i % 2])) for i in range(4))
    op = "MaxPool" if r.random() < 0.5 else "AveragePool"
    attrs: dict[str, Any] = {}
    if op == "AveragePool":
        attrs["count_include_pad"] = int(r.integers(0, 2))
    same = r.random() < 0.15 and kernel[0] >= strides[0] and kernel[1] >= strides[1]
    auto_pad = str(r.choice(["SAME_UPPER", "SAME_LOWER"])) if same else None
    return pool(b, x, op, kernel=kernel, strides=strides, pads=pads, auto_pad=auto_pad,
                **attrs)


def _random_block(b: OnnxBuilder, x: str) -> str:
    r = b.rng
    choice = r.choice(["conv", "conv", "bn", "relu", "clip", "pool", "residual", "concat",
                       "dropout"])
    if choice == "conv":
        return _random_conv(b, x)
    if choice == "bn":
        return batchnorm(b, x)
    if choice == "relu":
        return b.node("Relu", [x], None)
    if choice == "clip":
        lo = None if r.random() < 0.2 else float(r.uniform(-1, 0))
        hi = None if lo is not None and r.random() < 0.2 else float(r.uniform(0.1, 2))
        return clip(b, x, lo, hi)
    if choice == "pool":
        return _random_pool(b, x)
    if choice == "residual":
        k = int(r.choice([1, 3]))
        y = conv(b, x, kernel=(k, k), pads=(k // 2,) * 4)
        y = b.node("Relu", [y], None) if r.random() < 0.5 else y
        return b.node("Add", [x, y] if r.random() < 0.5 else [y, x], None)
    if choice == "concat":
        c, h, w = b.shapes[x]
        y1 = conv(b, x, int(r.integers(1, 4)), kernel=(1, 1), pads=(0, 0, 0, 0))
        y2 = conv(b, x, int(r.integers(1, 4)), kernel=(3, 3), pads=(1, 1, 1, 1))
        ins = [y1, y2, x] if r.random() < 0.5 else [y1, y2]
        channels = sum(b.shapes[t][0] for t in ins)
        return b.node("Concat", ins, (channels, h, w), axis=int(r.choice([1, -3])))
    return b.node(str(r.choice(["Dropout", "Identity"])), [x], None)


def random_model(seed: int) -> tuple[onnx.ModelProto, np.ndarray]:
    """One random small CNN (or MLP) and an input batch for it.

    Covers conv stride/pad/asymmetric pad/SAME/VALID/dilation/groups/depthwise,
    max/avg pools (count_include_pad both ways), BN, ReLU, Clip (opset 10
    attributes and opset 13 inputs), residual Add, Concat, Dropout/Identity,
    Flatten/Reshape/no-op Transpose, Gemm and MatMul+Add heads, Softmax.
    """
    rng = np.random.default_rng(seed)
    opset = int(rng.choice([10, 13, 17]))
    head_flat = str(rng.choice(["flatten", "reshape0", "reshape1", "reshape_k", "transpose"]))
    batch = 1 if head_flat == "reshape1" else int(rng.integers(1, 4))
    if rng.random() < 0.1:  # MLP
        b = OnnxBuilder((int(rng.integers(2, 12)),), batch="N", opset=opset, rng=rng)
        y = dense(b, "x", int(rng.integers(2, 9)), style=str(rng.choice(["gemm", "matmul"])))
        y = b.node("Relu", [y], None)
        y = dense(b, y, int(rng.integers(2, 6)), style=str(rng.choice(["gemm", "matmul"])))
    else:
        shape = (int(rng.integers(1, 5)), int(rng.integers(4, 11)), int(rng.integers(4, 11)))
        b = OnnxBuilder(shape, batch="N" if rng.random() < 0.7 else batch, opset=opset, rng=rng)
        y = "x"
        for _ in range(int(rng.integers(1, 5))):
            y = _random_block(b, y)
        if rng.random() < 0.6:
            y = b.node("GlobalAveragePool", [y], (b.shapes[y][0], 1, 1))
        if head_flat == "transpose" and b.shapes[y][1:] == (1, 1):
            c = b.shapes[y][0]
            y = b.node("Transpose", [y], (1, 1, c), perm=[0, 2, 3, 1])
            y = flatten(b, y)
        else:
            y = flatten(b, y, "flatten" if head_flat == "transpose" else head_flat)
        if rng.random() < 0.8:
            y = dense(b, y, int(rng.integers(2, 8)), style=str(rng.choice(["gemm", "matmul"])))
    if rng.random() < 0.5:
        y = b.node("Softmax", [y], None, axis=1 if opset < 13 else -1)
    x = rng.normal(0, 1, (batch, *b.shapes["x"])).astype(np.float32)
    return b.model(y), x
