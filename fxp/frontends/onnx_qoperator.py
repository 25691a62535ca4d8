"""Import an onnxruntime QOperator model as a float :class:`Graph` plus an affine :class:`Plan`.

``onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QOperator)``
writes integer operators whose arithmetic is fixed by onnxruntime's CPU
kernels (MLAS).  :func:`load_qoperator` turns such a model into

* a :class:`~fxp.ir.graph.Graph` of float ``Conv2D`` / ``Dense`` nodes whose
  weights and biases are the *dequantized* integer initializers
  (``float32(scale * (code - zero_point))``), and
* a :class:`~fxp.plan.plan.Plan` with affine :class:`TensorSpec` s carrying the
  model's exact float32 scales and zero points, ``acc_bits=32`` (wrap) and
  ``requant="float32"`` (``rint(float32(acc) * float32(float32(s_x * s_w) / s_y)) + zp``,
  saturated to int8/uint8: MLAS).

:func:`fxp.sim.compile.compile_plan` re-quantizes the float weights with the
plan's scales; the import runs that compilation once and requires it to give
back the model's integer weight codes, int32 bias codes and the requantization
scales onnxruntime derives, exactly (:class:`ModelImportError` naming the
initializer otherwise).

Supported operators (what ``quantize_static`` emits for CNN/MLP models):

==========================  ===============================================
``QuantizeLinear``          once, on the float graph input (-> ``Plan.input``)
``QLinearConv``             2-D, per-tensor or per-channel weights
``QGemm`` (com.microsoft)   what ORT emits for ``Gemm``; ``alpha == 1``,
                            ``transA == 0``, int32 bias ``C`` of shape (N,)
``QLinearMatMul``           2-D activations times a constant 2-D ``B``
``MaxPool``, ``Flatten``,   on int8/uint8 codes (codes pass through)
``Reshape``, ``Transpose``,
``Identity``
``DequantizeLinear``        before a graph output or a float ``Softmax``
``Softmax``                 float, as a graph output
``QLinearSoftmax``          imported as a float ``Softmax`` (a
                            :class:`~fxp.errors.PrecisionWarning` is issued:
                            onnxruntime computes it with an 8-bit lookup
                            table, fxp in float; the logits stay bit-exact)
==========================  ===============================================

Non-weighted QLinear ops (``QLinearAdd``, ``QLinearAveragePool``,
``QLinearGlobalAveragePool``, ``QLinearConcat``, ``QLinearSigmoid``,
``QLinearLeakyRelu``), int8 Relu/Clip, float islands and QDQ graphs are read
by the same importer (:func:`fxp.frontends.onnx_quantized.load_quantized`,
of which :func:`load_qoperator` is an alias); ``QLinearMul`` and other ops
are refused with :class:`~fxp.errors.UnsupportedOpError`, all of them at once.

Fused ReLU.  onnxruntime removes a ReLU after a quantized layer by giving the
layer an output range starting at 0; the QLinear kernels only saturate to
the int8/uint8 range.  When the output zero point is the lowest code, that
saturation *is* the ReLU, and the importer marks the IR node
``fused_activation="relu"`` so that the float graph means the same thing; its
integer clamp bounds are then the full code range (no extra clamp).

Input quantization.  onnxruntime's ``QuantizeLinear`` divides in float32
(``saturate(rint(float32(x) / float32(scale)) + zp)``), which differs from an
exact division for inputs within a float32 ulp of a tie.  The imported
graph's metadata ``fxp.sim.input_arithmetic = "float32"`` makes
:func:`~fxp.sim.compile.compile_plan` quantize the input that way;
:func:`quantize_linear_f32` is the same arithmetic as a function.

Bias codes.  Channels with tiny weight scales get int32 bias codes up to
2**31 (onnxruntime's quantizer only keeps them inside int32), which no
float32 bias holds exactly.  Those codes travel in the graph metadata
``fxp.sim.bias_codes`` and compile_plan checks them against the float bias.

Tensor names.  Every integer tensor of the graph carries the name of the
ONNX tensor holding its codes (``"conv1_quantized"``), except: the float
graph input stands for the ``QuantizeLinear`` output, and a graph output fed
by ``DequantizeLinear`` carries the output's float name.  The mapping ONNX
quantized name -> IR tensor is stored as JSON in
``graph.metadata["fxp.qoperator.tensors"]`` (see :func:`qoperator_tensor_map`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import GraphError, ModelImportError
from fxp.frontends.onnx_context import ImportContext
from fxp.frontends.onnx_import import MAX_MODEL_BYTES
from fxp.frontends.onnx_tensors import check_dims, tensor_to_array
from fxp.ir import nodes as ir
from fxp.ir.graph import Graph
from fxp.plan.plan import LayerPlan, Plan, TensorSpec
from fxp.sim.values import quantize_linear_f32

__all__ = ["TENSOR_MAP_KEY", "load_qoperator", "qoperator_tensor_map",
           "quantize_linear_f32"]

TENSOR_MAP_KEY = "fxp.qoperator.tensors"
"""Graph metadata key: JSON ``{onnx quantized tensor name: IR tensor name}``."""

_INT8, _UINT8 = 3, 2  # TensorProto.DataType
_QTYPES = {_INT8: (np.dtype("i1"), QFormat.integer(8, True)),
           _UINT8: (np.dtype("u1"), QFormat.integer(8, False))}
_MS = "com.microsoft"
_PASS_THROUGH = ("MaxPool", "Flatten", "Reshape", "Transpose", "Identity")


# --------------------------------------------------------------------------- public API
def load_qoperator(source: str | os.PathLike | bytes | Any, *, base_dir: str | None = None,
                   max_bytes: int = MAX_MODEL_BYTES) -> tuple[Graph, Plan]:
    """Alias of :func:`fxp.frontends.onnx_quantized.load_quantized` (QOperator and QDQ)."""
    from fxp.frontends.onnx_quantized import load_quantized

    return load_quantized(source, base_dir=base_dir, max_bytes=max_bytes)


def qoperator_tensor_map(graph: Graph) -> dict[str, str]:
    """``{onnx quantized tensor name: IR tensor name}`` recorded by the quantized importer."""
    raw = graph.metadata.get(TENSOR_MAP_KEY)
    if raw is None:
        raise GraphError(f"graph {graph.name!r} was not imported by load_quantized "
                         f"(no {TENSOR_MAP_KEY!r} metadata)")
    return dict(json.loads(raw))


# --------------------------------------------------------------------------- tensors
def _tensor(t: Any, folder: str | None) -> np.ndarray:
    """Decode an initializer; int8/uint8 here, everything else by ``tensor_to_array``."""
    if t.data_type not in _QTYPES:
        return tensor_to_array(t, folder)
    name = t.name[:200] or "<unnamed>"
    dtype = _QTYPES[t.data_type][0]
    dims = tuple(int(d) for d in t.dims)
    count = check_dims(name, dims)
    if t.data_location == 1:
        raise ModelImportError(f"tensor {name!r}: external data for int8/uint8 initializers is "
                               f"not supported")
    if t.raw_data:
        if len(t.raw_data) != count:
            raise ModelImportError(f"tensor {name!r}: raw_data has {len(t.raw_data)} bytes, "
                                   f"dims {dims} need {count}")
        return np.frombuffer(t.raw_data, dtype=dtype).reshape(dims).copy()
    if len(t.int32_data) != count:
        raise ModelImportError(f"tensor {name!r}: int32_data holds {len(t.int32_data)} values, "
                               f"dims {dims} need {count}")
    vals = np.asarray(t.int32_data, np.int64)
    info = np.iinfo(dtype)
    if vals.size and (vals.min() < info.min or vals.max() > info.max):
        raise ModelImportError(f"tensor {name!r}: int32_data outside the {dtype} range")
    return vals.astype(dtype).reshape(dims)


class _Q:
    """Conversion state on top of :class:`ImportContext`."""

    def __init__(self, ctx: ImportContext, graph_input: str) -> None:
        self.ctx = ctx
        self.graph_input = graph_input
        self.alias: dict[str, str] = {}            # ONNX tensor -> IR tensor
        self.spec: dict[str, TensorSpec | None] = {}  # IR tensor -> spec (None: float)
        self.layers: list[LayerPlan] = []
        self.expect: list[tuple[str, str, np.ndarray, np.ndarray | None, np.ndarray]] = []
        self.input_spec: TensorSpec | None = None
        self.tensor_map: dict[str, str] = {}
        self.readers: dict[str, list] = {}         # ONNX tensor -> ONNX nodes reading it
        self.deq: dict[str, str] = {}              # DequantizeLinear output -> IR int tensor
        self.island: dict[str, int] = {}           # float island output -> index in layers

    def ir_name(self, t: str) -> str:
        return self.alias.get(t, t)

    def renamed(self, node: Any) -> Any:
        """A copy of ``node`` whose inputs use IR tensor names."""
        n = type(node)()
        n.CopyFrom(node)
        for i, t in enumerate(n.input):
            if t in self.alias:
                n.input[i] = self.alias[t]
        return n

    def qinput(self, node: Any, i: int) -> tuple[str, TensorSpec]:
        """Quantized activation input ``i``: (IR name, spec)."""
        n = self.renamed(node)
        x = self.ctx.activation(n, i)
        s = self.spec.get(x)
        if s is None:
            raise self.ctx.fail(node, f"input {node.input[i]!r} is not an int8/uint8 tensor "
                                      f"produced by a quantized operator")
        return x, s

    def scale(self, node: Any, i: int, what: str, size: int | None = None) -> np.ndarray:
        arr = self.ctx.const(node, i, what)
        if arr.dtype != np.float32:
            raise self.ctx.fail(node, f"{what} {node.input[i]!r} must be float32, got "
                                      f"{arr.dtype}", ModelImportError)
        flat = arr.reshape(-1)
        if arr.ndim > 1 or flat.size == 0 or (size is None and flat.size != 1) or \
                (size is not None and flat.size not in (1, size)):
            want = "a scalar" if size is None else f"a scalar or {size} values"
            raise self.ctx.fail(node, f"{what} {node.input[i]!r} has shape {arr.shape}; "
                                      f"expected {want}")
        if not np.all(np.isfinite(flat)) or np.any(flat <= 0):
            raise self.ctx.fail(node, f"{what} {node.input[i]!r} must be finite and > 0, got "
                                      f"{flat.tolist()[:8]}", ModelImportError)
        return flat

    def zero_point(self, node: Any, i: int, what: str, size: int | None = None,
                   optional_type: int | None = None) -> tuple[np.ndarray, QFormat]:
        if optional_type is not None and (i >= len(node.input) or not node.input[i]):
            return np.zeros(1, np.int64), _QTYPES[optional_type][1]
        arr = self.ctx.const(node, i, what)
        fmt = {np.dtype("i1"): QFormat.integer(8, True),
               np.dtype("u1"): QFormat.integer(8, False)}.get(arr.dtype)
        if fmt is None:
            raise self.ctx.fail(node, f"{what} {node.input[i]!r} has type {arr.dtype}; only "
                                      f"int8 and uint8 are supported")
        flat = arr.reshape(-1).astype(np.int64)
        if arr.ndim > 1 or flat.size == 0 or (size is None and flat.size != 1) or \
                (size is not None and flat.size not in (1, size)):
            raise self.ctx.fail(node, f"{what} {node.input[i]!r} has shape {arr.shape}",
                                ModelImportError)
        return flat, fmt

    def act_spec(self, node: Any, si: int, zi: int, what: str) -> TensorSpec:
        s = self.scale(node, si, f"{what} scale")
        z, fmt = self.zero_point(node, zi, f"{what} zero point")
        return TensorSpec(fmt, (float(s[0]),), int(z[0]))

    def check_same(self, node: Any, got: TensorSpec, want: TensorSpec, tensor: str) -> None:
        if got != want:
            raise self.ctx.fail(node, f"quantization of {tensor!r} given here ({_desc(got)}) "
                                      f"differs from its producer's ({_desc(want)})",
                                ModelImportError)

    def emit(self, onnx_out: str, node: ir.Node, spec: TensorSpec | None) -> None:
        self.ctx.emit(node)
        self.spec[node.output] = spec
        if spec is not None:
            self.tensor_map[onnx_out] = node.output


def _desc(s: TensorSpec) -> str:
    return f"{s.fmt}, scale {s.scales}, zero point {s.zero_point}"
