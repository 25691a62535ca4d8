"""Read a quantized TensorFlow Lite flatbuffer into a float :class:`Graph` plus an affine :class:`Plan`.

:func:`load_tflite` reads full-integer ``.tflite`` models (int8, and int16x8:
16-bit activations with 8-bit weights) through the ``tflite`` package (the
generated flatbuffer schema; test extra ``tflite``) and returns, like the
ONNX importers, ``(Graph, Plan)``:

* a :class:`~fxp.ir.graph.Graph` in fxp's NCHW layout whose weights and
  biases are the dequantized integer tensors (``float32(scale * code)``);
* a :class:`~fxp.plan.plan.Plan` with the model's float32 scales and zero
  points as affine :class:`~fxp.plan.plan.TensorSpec` s, per-channel weight
  scales on axis 0, ``requant="double"`` (gemmlowp double rounding, as TFLite
  Micro's reference kernels), wrapping int32 accumulators (int8) or 64-bit
  ones (int16x8), and pools rounding half away from zero.  ``runtime=``
  picks another runtime's arithmetic per operator (LiteRT reference or
  optimized kernels, XNNPACK, CMSIS-NN; :mod:`fxp.frontends.tflite_runtime`).

Supported operators (``tflite_ops``): ``CONV_2D``, ``DEPTHWISE_CONV_2D``
(``Conv2D`` with ``groups = Cin``), ``FULLY_CONNECTED`` (``Dense``),
``MAX_POOL_2D``, ``AVERAGE_POOL_2D`` (``count_include_pad=False``, as TFLite's
SAME padding), ``MEAN`` over H and W (``GlobalAvgPool``, then ``Flatten``
without ``keep_dims``), ``ADD``, ``CONCATENATION``, ``RESHAPE`` (to flatten
an image or between vectors), ``SOFTMAX`` (beta 1), ``RELU`` / ``RELU6`` with
unchanged quantization, ``LOGISTIC``, ``TANH``, ``HARD_SWISH`` (``Sigmoid``,
``Tanh``, ``HardSwish``: TFLite Micro's integer kernels), ``MUL`` (with
broadcasting), ``PAD`` of H and W (``Pad``), ``QUANTIZE`` (between integer
types a ``Requantize``; of a float32 graph input, the plan's input spec),
``DEQUANTIZE`` into the float32 graph output (see
:mod:`fxp.frontends.tflite_ops_extra`), and the fused activations NONE, RELU,
RELU6 and RELU_N1_TO_1 (a ``fused_activation`` on Conv2D/Dense, a ReLU/Clip
node after the other operators).  Every other operator is refused with one
:class:`~fxp.errors.UnsupportedOpError` listing them all by operator index and
name.

Layout.  TFLite stores images NHWC, fxp NCHW: the graph input ``[1, H, W, C]``
becomes ``[N, C, H, W]`` (fxp's data loaders give NCHW, so feed them as they
are; a model of ``[1, F]`` takes ``[N, F]``).  Feed the *dequantized* input,
``scale * (code - zero_point)``, or the float values the model was calibrated
on: the plan's input spec quantizes them (half to even).  Conv weights
``[O, kh, kw, I]`` become ``[O, I, kh, kw]``, depthwise ``[1, kh, kw, C*m]``
becomes ``[C*m, 1, kh, kw]``.  A ``RESHAPE`` that flattens an image
``[1, H, W, C] -> [1, H*W*C]`` becomes ``Flatten`` (C, H, W order) and the
columns of the ``FULLY_CONNECTED`` layers reading it are permuted from
(H, W, C) to (C, H, W) order: the same products, so the same integers.

Tensor map.  ``graph.metadata["fxp.tflite.tensors"]`` (JSON, see
:func:`tflite_tensor_map`) maps each TFLite activation tensor index to the IR
tensor holding its codes and the layout that relates them;
:func:`to_tflite_layout` converts IR codes to TFLite's layout.
``graph.metadata["fxp.tflite.ops"]`` lists, per TFLite operator, the IR nodes
implementing it, its activation input tensors and its output tensor.

The engine runs every operator listed, bit for bit as TFLite Micro (or the
chosen runtime) computes it.  An int8 model's plan can be widened to a mix of
int8 and int16x8 layers (:mod:`fxp.plan.tflite_int16`, chosen by
``fxp plan m.tflite --target-sqnr``).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FxpError, GraphError, MissingDependencyError, ModelImportError
from fxp.ir.graph import Graph
from fxp.plan.plan import LayerPlan, Plan, TensorSpec

__all__ = ["MAX_TFLITE_BYTES", "OPS_KEY", "TENSORS_KEY", "load_tflite", "tflite_tensor_map",
           "to_tflite_layout"]

MAX_TFLITE_BYTES = (1 << 31) - 1
"""Largest ``.tflite`` file read (flatbuffers address 2 GiB)."""
TENSORS_KEY = "fxp.tflite.tensors"
"""Graph metadata key: JSON ``{tflite tensor index: [IR tensor, layout]}``."""
OPS_KEY = "fxp.tflite.ops"
"""Graph metadata key: JSON ``[[op index, op name, [IR nodes], [input tensors], output]]``."""

# TensorType codes of the schema (tflite.TensorType)
FLOAT32, INT32, INT64, INT16, INT8 = 0, 2, 4, 7, 9
_DTYPES = {FLOAT32: np.dtype("<f4"), INT32: np.dtype("<i4"), INT64: np.dtype("<i8"),
           INT16: np.dtype("<i2"), INT8: np.dtype("i1")}
_ACT_TYPES = {INT8: QFormat.integer(8, True), INT16: QFormat.integer(16, True)}


def _import_tflite() -> Any:
    try:
        import tflite
    except ImportError:
        raise MissingDependencyError("reading .tflite files needs the 'tflite' package (the "
                                     "flatbuffer schema): pip install 'fxp[tflite]'") from None
    return tflite


# --------------------------------------------------------------------------- public API
def _preprocess_metadata(model) -> dict[str, str]:
    """``fxp.preprocess.*`` entries of the flatbuffer's ``metadata`` (name -> UTF-8 buffer).

    A ``.tflite`` file carries no preprocessing of its own; a file that names
    it this way (e.g. written by fxp) gets it into the graph metadata like an
    ONNX model's ``metadata_props``.  Other metadata entries are ignored.
    """
    out = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        name = (entry.Name() or b"").decode("utf-8", "replace")
        if name.startswith("fxp.preprocess.") and entry.Buffer() < model.BuffersLength():
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            data = raw.tobytes() if hasattr(raw, "tobytes") else b""
            out[name[:80]] = data.decode("utf-8", "replace")[:200]
    return out


def load_tflite(source: str | os.PathLike | bytes, runtime: str = "tflm", *,
                max_bytes: int = MAX_TFLITE_BYTES) -> tuple[Graph, Plan]:
    """Read a full-integer ``.tflite`` model into ``(Graph, Plan)`` (see the module docstring).

    Parameters
    ----------
    source : path or bytes
        The flatbuffer (file identifier ``TFL3``), one subgraph, one input, one output.
    runtime : str
        Whose integers the plan reproduces: ``"tflm"`` (TFLite Micro's
        reference kernels, the default), ``"litert-ref"``, ``"litert-opt"``,
        ``"xnnpack"`` or ``"cmsis-nn"`` (:mod:`fxp.frontends.tflite_runtime`).
        The plan name ends in ``@<runtime>``.
    max_bytes : int
        Refuse files larger than this.

    Returns
    -------
    (Graph, Plan)

    Raises
    ------
    ModelImportError
        Unreadable or malformed file, a tensor or quantization the reader
        cannot express (the message names the operator and tensor).
    UnsupportedOpError
        Operators outside the supported set, all listed by index and name.
    MissingDependencyError
        The ``tflite`` package is not installed.
    PlanError
        An unknown ``runtime`` (the message lists the profiles).
    """
    from fxp.frontends.tflite_runtime import apply_runtime, get_runtime

    profile = get_runtime(runtime)
    tflite = _import_tflite()
    data, label = _read(source, max_bytes)
    try:
        return apply_runtime(*_convert(tflite, data), profile)
    except FxpError as e:
        raise type(e)(f"{label}: {e}") from None
    except (IndexError, TypeError, ValueError, AttributeError, struct.error) as e:  # bad offsets
        raise ModelImportError(f"{label}: malformed TFLite flatbuffer: {type(e).__name__}: "
                               f"{str(e)[:200]!r}") from None


def tflite_tensor_map(graph: Graph) -> dict[int, tuple[str, str]]:
    """``{tflite tensor index: (IR tensor, layout)}`` recorded by :func:`load_tflite`.

    Layouts: ``"nhwc"`` (TFLite ``[N, H, W, C]`` = IR ``[N, C, H, W]``),
    ``"same"``, or ``"chw:C,H,W"`` (an IR vector flattened in C, H, W order
    holding TFLite's vector flattened in H, W, C order).
    """
    raw = graph.metadata.get(TENSORS_KEY)
    if raw is None:
        raise GraphError(f"graph {graph.name!r} was not read by load_tflite (no "
                         f"{TENSORS_KEY!r} metadata)")
    return {int(k): (v[0], v[1]) for k, v in json.loads(raw).items()}


def to_tflite_layout(codes: np.ndarray, layout: str) -> np.ndarray:
    """IR codes ``[N, ...]`` rearranged into TFLite's layout (see :func:`tflite_tensor_map`)."""
    a = np.asarray(codes)
    if layout == "same":
        return a
    if layout == "nhwc":
        if a.ndim != 4:
            raise GraphError(f"layout 'nhwc' needs a 4-D tensor, got shape {a.shape}")
        return np.transpose(a, (0, 2, 3, 1))
    if layout.startswith("chw:"):
        c, h, w = (int(v) for v in layout[4:].split(","))
        return np.transpose(a.reshape(a.shape[0], c, h, w), (0, 2, 3, 1)).reshape(a.shape[0], -1)
    raise GraphError(f"unknown TFLite layout {layout[:40]!r}")


# --------------------------------------------------------------------------- reading
def _read(source: Any, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), "<bytes>"
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        label = path if str(path).isprintable() else repr(path)
        try:
            size = os.path.getsize(path)
            if size > max_bytes:
                raise ModelImportError(f"{label}: file is {size} bytes, above the limit "
                                       f"{max_bytes}")
            with open(path, "rb") as f:
                data = f.read()
        except (OSError, ValueError) as e:
            raise ModelImportError(f"{label}: cannot read model file: {e}") from None
    else:
        raise TypeError(f"load_tflite expects a path or bytes, got {type(source).__name__}")
    if len(data) > max_bytes:
        raise ModelImportError(f"{label}: model is {len(data)} bytes, above the limit {max_bytes}")
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelImportError(f"{label}: not a TFLite flatbuffer (file identifier "
                               f"{data[4:8]!r}, expected b'TFL3')")
    return data, label


class TfliteContext:
    """Conversion state: the flatbuffer, the IR being built and the plan entries."""

    def __init__(self, tflite: Any, data: bytes) -> None:
        self.tfl = tflite
        self.data = data
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() != 1:
            raise ModelImportError(f"{self.model.SubgraphsLength()} subgraphs; only single-"
                                   f"subgraph models are supported")
        self.sg = self.model.Subgraphs(0)
        self.names = {v: k for k, v in vars(tflite.BuiltinOperator).items()
                      if not k.startswith("_")}
        self.ir: dict[int, str] = {}          # tflite tensor -> IR tensor
        self.layout: dict[int, str] = {}      # tflite tensor -> layout
        self.spec: dict[int, TensorSpec] = {}  # tflite tensor -> spec
        self.nodes: list = []
        self.layers: list[LayerPlan] = []
        self.bias_codes: dict[str, list[int]] = {}
        self.ops: list = []

    # tensors -------------------------------------------------------------------------
    def tensor(self, t: int) -> Any:
        if not 0 <= t < self.sg.TensorsLength():
            raise ModelImportError(f"tensor index {t} outside 0..{self.sg.TensorsLength() - 1}")
        return self.sg.Tensors(t)

    def tname(self, t: int) -> str:
        return (self.tensor(t).Name() or b"").decode("utf-8", "replace")[:120]

    def shape(self, t: int) -> tuple[int, ...]:
        arr = self.tensor(t).ShapeAsNumpy()
        return tuple(int(d) for d in arr) if isinstance(arr, np.ndarray) else ()

    def const(self, t: int, where: str) -> np.ndarray | None:
        """The data of constant tensor ``t`` (None when it has no buffer data)."""
        ten = self.tensor(t)
        buf = self.model.Buffers(ten.Buffer())
        if buf.DataLength() > 0:
            raw = buf.DataAsNumpy().tobytes()
        elif buf.Offset() > 1:
            raw = self.data[buf.Offset():buf.Offset() + buf.Size()]
        else:
            return None
        dtype = _DTYPES.get(ten.Type())
        if dtype is None:
            raise ModelImportError(f"{where}: constant tensor {t} ({self.tname(t)!r}) has "
                                   f"unsupported type code {ten.Type()}")
        shape = self.shape(t)
        if len(raw) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise ModelImportError(f"{where}: tensor {t} ({self.tname(t)!r}) holds {len(raw)} "
                                   f"bytes, shape {shape} of {dtype} needs "
                                   f"{int(np.prod(shape)) * dtype.itemsize}")
        return np.frombuffer(raw, dtype).reshape(shape).copy()

    def quant(self, t: int, where: str) -> tuple[np.ndarray, np.ndarray, int]:
        """(float32 scales, int64 zero points, quantized dimension) of tensor ``t``."""
        q = self.tensor(t).Quantization()
        if q is None or q.ScaleLength() == 0:
            raise ModelImportError(f"{where}: tensor {t} ({self.tname(t)!r}) is not quantized "
                                   f"(no scale); only full-integer models are supported")
        s = np.asarray(q.ScaleAsNumpy(), np.float32)
        z = np.asarray(q.ZeroPointAsNumpy(), np.int64) if q.ZeroPointLength() else \
            np.zeros(s.size, np.int64)
        if z.size != s.size or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ModelImportError(f"{where}: tensor {t} ({self.tname(t)!r}) has scales "
                                   f"{s.tolist()[:8]} and zero points {z.tolist()[:8]}; need "
                                   f"as many finite scales > 0 as zero points")
        return s, z, int(q.QuantizedDimension())

    def act_spec(self, t: int, where: str) -> TensorSpec:
        fmt = _ACT_TYPES.get(self.tensor(t).Type())
        if fmt is None:
            raise ModelImportError(f"{where}: activation tensor {t} ({self.tname(t)!r}) has "
                                   f"type code {self.tensor(t).Type()}; int8 and int16 are "
                                   f"supported")
        s, z, _ = self.quant(t, where)
        if s.size != 1:
            raise ModelImportError(f"{where}: activation tensor {t} ({self.tname(t)!r}) has "
                                   f"{s.size} scales; activations take one")
        return TensorSpec(fmt, (float(s[0]),), int(z[0]))

    def activation(self, t: int, where: str) -> str:
        """IR name of activation tensor ``t`` (produced earlier or the graph input)."""
        if t not in self.ir:
            raise ModelImportError(f"{where}: input tensor {t} ({self.tname(t)!r}) is neither "
                                   f"the graph input nor produced by an earlier operator")
        return self.ir[t]

    def define(self, t: int, ir_name: str, layout: str, where: str) -> None:
        if t in self.ir:
            raise ModelImportError(f"{where}: tensor {t} ({self.tname(t)!r}) is written twice")
        self.ir[t], self.layout[t] = ir_name, layout
        self.spec[t] = self.act_spec(t, where)


def _convert(tflite: Any, data: bytes) -> tuple[Graph, Plan]:
    from fxp.frontends.tflite_ops import HANDLERS, convert_op  # handlers import this module

    ctx = TfliteContext(tflite, data)
    sg = ctx.sg
    ins, outs = list(sg.InputsAsNumpy()), list(sg.OutputsAsNumpy())
    if len(ins) != 1 or len(outs) != 1:
        raise ModelImportError(f"the model has {len(ins)} inputs and {len(outs)} outputs; one "
                               f"of each is supported")
    names, unsupported = [], []
    for i in range(sg.OperatorsLength()):
        code = ctx.model.OperatorCodes(sg.Operators(i).OpcodeIndex())
        op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = ctx.names.get(op, f"BUILTIN_{op}")
        if name == "CUSTOM":
            name = f"CUSTOM {(code.CustomCode() or b'').decode('utf-8', 'replace')[:60]!r}"
        names.append(name)
        if name not in HANDLERS:
            unsupported.append(f"{i} {name}")
    if unsupported:
        from fxp.errors import UnsupportedOpError

        raise UnsupportedOpError(f"{len(unsupported)} unsupported operators (index name): "
                                 f"{', '.join(unsupported)[:400]}")
    t_in = int(ins[0])
    shape = ctx.shape(t_in)
    in_name = ctx.tname(t_in) or "input"
    if len(shape) == 4:
        ir_shape, layout = (None, shape[3], shape[1], shape[2]), "nhwc"
    elif len(shape) == 2:
        ir_shape, layout = (None, shape[1]), "same"
    else:
        raise ModelImportError(f"graph input {in_name!r} has shape {shape}; [1, H, W, C] or "
                               f"[1, F] is supported")
    if ctx.tensor(t_in).Type() == FLOAT32:  # its QUANTIZE sets the plan's input (tflite_ops_extra)
        ctx.ir[t_in], ctx.layout[t_in] = in_name, layout
    else:
        ctx.define(t_in, in_name, layout, f"graph input {in_name!r}")
    for i, name in enumerate(names):
        convert_op(ctx, i, name)
    if t_in not in ctx.spec:
        raise ModelImportError(f"float32 graph input {in_name!r} is not read by a QUANTIZE")
    t_out = int(outs[0])
    if t_out not in ctx.ir:
        raise ModelImportError(f"graph output tensor {t_out} ({ctx.tname(t_out)!r}) is not "
                               f"produced by any operator")
    meta = {TENSORS_KEY: json.dumps({str(t): [ctx.ir[t], ctx.layout[t]] for t in ctx.ir},
                                    sort_keys=True),
            OPS_KEY: json.dumps(ctx.ops)}
    if ctx.bias_codes:
        from fxp.sim.compile import BIAS_CODES_KEY

        meta[BIAS_CODES_KEY] = json.dumps(ctx.bias_codes, sort_keys=True)
    if ctx.tensor(t_in).Type() == FLOAT32:  # TFLM's QUANTIZE divides in float32
        from fxp.sim.compile import INPUT_ARITHMETIC_KEY

        meta[INPUT_ARITHMETIC_KEY] = "float32"
    meta.update(_preprocess_metadata(ctx.model))
    desc = ctx.model.Description()
    meta["fxp.tflite.description"] = (desc or b"").decode("utf-8", "replace")[:200]
    try:
        graph = Graph(nodes=tuple(ctx.nodes), inputs=(in_name,), input_shapes={in_name: ir_shape},
                      outputs=(ctx.ir[t_out],), metadata=meta, name="tflite")
    except GraphError as e:
        raise ModelImportError(str(e)) from None
    _check_shapes(ctx, graph)
    kind = "int16x8" if ctx.spec[t_in].fmt.bits == 16 else "int8"
    # TFLM's QUANTIZE of a float input: float32 quotient, TfLiteRound (half away from zero)
    rounding = "half_away" if ctx.tensor(t_in).Type() == FLOAT32 else "half_even"
    plan = Plan(input=ctx.spec[t_in], layers=tuple(ctx.layers), name=f"tflite-{kind}",
                input_rounding=rounding)
    return graph, plan


def _check_shapes(ctx: TfliteContext, graph: Graph) -> None:
    """Every IR tensor must have its TFLite tensor's shape (in the IR layout, batch free)."""
    for t, name in ctx.ir.items():
        want = ctx.shape(t)
        if ctx.layout[t] == "nhwc" and len(want) == 4:
            want = (want[0], want[3], want[1], want[2])
        got = graph.shapes[name]
        if tuple(got[1:]) != tuple(want[1:]):
            raise ModelImportError(f"tensor {t} ({ctx.tname(t)!r}): the IR computes shape "
                                   f"{got[1:]}, the model declares {tuple(want[1:])}")
