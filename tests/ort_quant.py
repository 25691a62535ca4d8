"""onnxruntime static quantization as an oracle: quantize float models, read every tensor.

A test helper (not package code) for issue 14, "fxp's integers equal onnxruntime's,
every intermediate tensor, on real quantized models":

* :func:`quantize` runs ``onnxruntime.quantization.quantize_static`` (MinMax
  calibration) on a float ONNX model, optionally after ``quant_pre_process``;
* :data:`CONFIGS` are the configurations to prove, ``{QOperator, QDQ} x
  {per-tensor, per-channel} x {U8S8, S8S8} x {symmetric, asymmetric weights}``
  plus four more (preprocessed; symmetric activations), with readable pytest ids;
* :func:`ort_intermediates` returns every integer tensor of the quantized graph
  as onnxruntime computes it in a plain session, after checking that exposing
  them did not change the final outputs;
* :func:`op_inventory` and :func:`qdq_patterns` list what the importer must support;
* :func:`torchvision_onnx` exports torchvision's ``resnet18`` / ``mobilenet_v2``
  (random weights) for timing and scale tests (:data:`needs_torchvision`).

Which optimization level for the intermediates, and why
-------------------------------------------------------
The reference is what users run: a default ``InferenceSession`` on the CPU
provider, i.e. ``ORT_ENABLE_ALL``.  At that level onnxruntime rewrites QDQ
graphs: ``DQ -> Conv -> Q`` becomes one QLinearConv, ``DQ, DQ -> Add -> Q`` a
QLinearAdd, likewise AveragePool, GlobalAveragePool and Gemm (QGemm);
``Relu`` / ``Clip`` before a Q are dropped; and the fused integer kernels round
differently from the graph as written (float32 Conv of dequantized values, then
QuantizeLinear).  A QDQ graph run at ``ORT_DISABLE_ALL`` therefore gives other
integers than users get (hundreds of differing logits on 200 images), and
making the float output of a compute node (the Conv before its Q) a graph
output stops the fusion that would consume it.  (Exposing a DequantizeLinear
output does not: onnxruntime duplicates the DQ.)  So the all-outputs session keeps
the default level and exposes only the **integer** node outputs (every
QuantizeLinear output and every quantized operator's output: int8 / uint8 /
int32): the fused nodes keep those names, so the fusions and their integers are
the plain session's (the layout pass then adds Transposes back to NCHW for the
exposed tensors, which move bytes only).  Float tensors are left out for the same
reason in QOperator graphs: a BatchNormalization -> Relu (or Clip) island
between a DequantizeLinear and a QuantizeLinear loses its Relu->Q fusion when
the Relu output is exposed.  The claim is checked on every call: the final
outputs of the plain session and of the all-outputs session must be
bit-identical, and both optimized graphs (dumped with ``optimized_model_filepath``)
must hold the same operators, layout Transposes aside, else :class:`AssertionError`.

One session option differs from the defaults, :data:`ORACLE_SESSION_CONFIG`
``{"session.qdqisint8allowed": "1"}``.  On x86 its default ("0") makes a
QDQ graph with **int8 activations** (S8S8) a hybrid: ``QDQS8ToU8Transformer``
turns the Q->DQ pairs whose tensor has one reader into uint8 (zero point
+128) and fuses their consumers into QLinear ops, while the tensors read by two
nodes (a residual input) stay int8 and their consumers run as float32 Conv / Add
/ AveragePool; exposing a tensor as an output changes which pairs are
converted.  That is not a well-defined integer pipeline.  With the option set,
every S8S8 QDQ node group is fused exactly as U8S8 ones are (and as ARM builds
do by default).  For U8S8 QDQ and all QOperator graphs the option changes
nothing (``tests/frontends/test_ort_quant_harness.py`` checks this: same bits
as a session with default options).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

__all__ = [
    "CONFIGS", "ORACLE_SESSION_CONFIG", "QuantConfig", "needs_torchvision", "op_inventory",
    "ort_intermediates", "ort_run", "probe", "qdq_patterns", "quantize", "same_bits",
    "torchvision_onnx",
]

_FORMATS = ("QDQ", "QOperator")
_ACTIVATIONS = ("uint8", "int8")
_INTEGER_TYPES = (2, 3, 4, 5, 6, 7, 12, 13)  # onnx.TensorProto (u)int8/16/32/64


@dataclass(frozen=True)
class QuantConfig:
    """One ``quantize_static`` configuration (int8 weights, MinMax calibration).

    Attributes
    ----------
    fmt : {"QDQ", "QOperator"}
        ``QuantFormat``.
    per_channel : bool
        Per-output-channel weight scales.
    activation : {"uint8", "int8"}
        Activation type (``QuantType.QUInt8`` = U8S8, ``QInt8`` = S8S8).
    weight_symmetric : bool
        ``extra_options["WeightSymmetric"]``.  When false, per-tensor weights get
        a nonzero zero point in both formats and per-channel weights one per
        channel in QOperator, but per-channel QDQ weights stay symmetric (zero
        point 0; onnxruntime 1.32).
    activation_symmetric : bool
        ``extra_options["ActivationSymmetric"]``.
    preprocess : bool
        Run ``quant_pre_process`` first.
    """

    fmt: str
    per_channel: bool
    activation: str
    weight_symmetric: bool
    activation_symmetric: bool = False
    preprocess: bool = False

    @property
    def id(self) -> str:
        """Readable pytest id, e.g. ``qdq-pc-u8s8-wsym``."""
        parts = ["qdq" if self.fmt == "QDQ" else "qop", "pc" if self.per_channel else "pt",
                 "u8s8" if self.activation == "uint8" else "s8s8",
                 "wsym" if self.weight_symmetric else "wasym"]
        if self.activation_symmetric:
            parts.append("actsym")
        if self.preprocess:
            parts.append("pre")
        return "-".join(parts)

    def kwargs(self) -> dict:
        """Keyword arguments of :func:`quantize`."""
        return {"fmt": self.fmt, "per_channel": self.per_channel, "activation": self.activation,
                "weight_symmetric": self.weight_symmetric,
                "activation_symmetric": self.activation_symmetric, "preprocess": self.preprocess}


#: The 16 grid configurations, then two with ``quant_pre_process`` and two S8S8 with
#: symmetric activations (zero point 0, as int8 accelerators want): 20 in all.
CONFIGS: list[QuantConfig] = [
    QuantConfig(fmt, pc, act, wsym)
    for fmt in _FORMATS for pc in (False, True) for act in _ACTIVATIONS for wsym in (True, False)
] + [QuantConfig("QDQ", True, "uint8", True, preprocess=True),
     QuantConfig("QOperator", True, "int8", True, preprocess=True),
     QuantConfig("QDQ", True, "int8", True, activation_symmetric=True),
     QuantConfig("QOperator", False, "int8", True, activation_symmetric=True)]


def _model_bytes(model) -> bytes:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        return Path(model).read_bytes()
    return model.SerializeToString()  # an onnx.ModelProto


def quantize(model, calib_x: np.ndarray, *, fmt: str = "QDQ", per_channel: bool = False,
             activation: str = "uint8", weight_symmetric: bool = True,
             activation_symmetric: bool = False, preprocess: bool = False,
             reduce_range: bool = False, op_types: list[str] | None = None,
             batch: int = 16) -> bytes:
    """Quantize a float model with ``onnxruntime.quantization.quantize_static``.

    Parameters
    ----------
    model : path, bytes or onnx.ModelProto
        The float model (one input).
    calib_x : ndarray
        Preprocessed calibration inputs ``[N, ...]`` (float32), fed ``batch`` at a time.
    fmt : {"QDQ", "QOperator"}
        ``QuantFormat``.
    per_channel : bool
        Per-channel weight scales.
    activation : {"uint8", "int8"}
        ``QuantType.QUInt8`` (U8S8) or ``QuantType.QInt8`` (S8S8) activations;
        weights are always ``QuantType.QInt8``.
    weight_symmetric, activation_symmetric : bool
        ``extra_options`` ``WeightSymmetric`` / ``ActivationSymmetric``.
    preprocess : bool
        Run ``quant_pre_process`` (symbolic shape inference, onnxruntime basic
        optimizations: BatchNormalization folded into Conv, Constants folded) first.
    reduce_range : bool
        7-bit weights (keeps u8s8 ``VPMADDUBSW`` pair sums below 2**15 on CPUs
        without VNNI).
    op_types : list of str, optional
        ``op_types_to_quantize`` (default: every op type onnxruntime can quantize).
    batch : int
        Calibration batch size.

    Returns
    -------
    bytes
        The serialized quantized model.

    Raises
    ------
    ValueError
        ``fmt`` or ``activation`` is not one of the names above.
    """
    from onnxruntime import quantization as q

    if fmt not in _FORMATS:
        raise ValueError(f"quantize: fmt must be one of {_FORMATS}, got {fmt!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"quantize: activation must be one of {_ACTIVATIONS}, got {activation!r}")
    import onnx

    data = _model_bytes(model)
    input_name = onnx.load_from_string(data).graph.input[0].name
    calib = np.ascontiguousarray(calib_x, np.float32)

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{input_name: calib[i:i + batch]} for i in range(0, len(calib), batch)])

        def get_next(self):
            return next(self._it, None)

    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # ORT's "please run pre-processing" advice
    try:
        with tempfile.TemporaryDirectory(prefix="fxp-ortq-") as tmp:
            src = Path(tmp) / "float.onnx"
            src.write_bytes(data)
            if preprocess:
                pre = Path(tmp) / "pre.onnx"
                q.shape_inference.quant_pre_process(str(src), str(pre))
                src = pre
            out = Path(tmp) / "quant.onnx"
            q.quantize_static(
                str(src), str(out), Reader(),
                quant_format=q.QuantFormat.QDQ if fmt == "QDQ" else q.QuantFormat.QOperator,
                per_channel=per_channel, reduce_range=reduce_range,
                activation_type=q.QuantType.QUInt8 if activation == "uint8" else q.QuantType.QInt8,
                weight_type=q.QuantType.QInt8, op_types_to_quantize=op_types,
                extra_options={"WeightSymmetric": weight_symmetric,
                               "ActivationSymmetric": activation_symmetric})
            return out.read_bytes()
    finally:
        root_logger.setLevel(level)


# --------------------------------------------------------------------------- running
#: Session config entries of every oracle session (see the module docstring).
ORACLE_SESSION_CONFIG: dict[str, str] = {"session.qdqisint8allowed": "1"}


def _session(model_bytes: bytes, *, default: bool = False, dump: str | None = None):
    """CPU session: default ``SessionOptions`` plus :data:`ORACLE_SESSION_CONFIG` (unless
    ``default``); ``dump`` saves the optimized graph there (warnings silenced)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    for key, value in ({} if default else ORACLE_SESSION_CONFIG).items():
        so.add_session_config_entry(key, value)
    if dump is not None:
        so.optimized_model_filepath = dump
        so.log_severity_level = 3  # "optimized model may be hardware specific"
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def _optimized_ops(path: str) -> Counter:
    """``domain:op_type`` counts of a dumped optimized graph, layout Transposes left out."""
    import onnx

    return Counter(f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in onnx.load(path).graph.node
                   if n.op_type != "Transpose")


def ort_run(model_bytes: bytes, x: np.ndarray, *, default: bool = False) -> dict[str, np.ndarray]:
    """Graph outputs of a plain session (CPU provider, default level ``ORT_ENABLE_ALL``).

    ``default=True`` uses exactly the default ``SessionOptions``; otherwise
    :data:`ORACLE_SESSION_CONFIG` is added (the same bits except for S8S8 QDQ graphs).
    """
    sess = _session(model_bytes, default=default)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))


def _node_outputs(model) -> dict[str, int]:
    """Every node output -> its onnx elem_type from ONNX shape inference (0: unknown).

    Types stay unknown for contrib (``com.microsoft``) ops, which only QOperator
    graphs hold; exposing those outputs is safe (see the module docstring).
    """
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.value_info, *inferred.graph.output]}
    return {name: types.get(name, 0) for node in model.graph.node for name in node.output if name}


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bytes (so ``-0.0 != 0.0`` and NaNs compare by payload)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def probe(model_bytes: bytes, x: np.ndarray,
          names: list[str]) -> tuple[dict[str, np.ndarray], Counter, Counter]:
    """Run ``model_bytes`` with ``names`` added as graph outputs (no check).

    Returns
    -------
    outputs : dict of str to ndarray
        Every graph output of the probe session, by name.
    ops_plain, ops_probe : Counter
        ``domain:op_type`` counts of onnxruntime's optimized graph (layout
        Transposes left out) without and with the extra outputs.
    """
    import onnx

    model = onnx.load_from_string(model_bytes)
    types = _node_outputs(model)
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have:  # typed where ONNX shape inference knows the type
            elem = types.get(name, 0)
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None)
                                      if elem else onnx.ValueInfoProto(name=name))
            have.add(name)
    with tempfile.TemporaryDirectory(prefix="fxp-ortopt-") as tmp:
        _session(model_bytes, dump=f"{tmp}/plain.onnx")
        sess = _session(model.SerializeToString(), dump=f"{tmp}/probe.onnx")
        ops_plain = _optimized_ops(f"{tmp}/plain.onnx")
        ops_probe = _optimized_ops(f"{tmp}/probe.onnx")
    out_names = [o.name for o in sess.get_outputs()]
    got = dict(zip(out_names, sess.run(None, {sess.get_inputs()[0].name: x})))
    return got, ops_plain, ops_probe


def ort_intermediates(model_bytes: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every integer tensor of a quantized model, as onnxruntime computes it for users.

    Parameters
    ----------
    model_bytes : bytes
        A quantized model (from :func:`quantize`).
    x : ndarray
        One input batch.

    Returns
    -------
    dict of str to ndarray
        Tensor name -> value for every integer node output (int8 / uint8 /
        int32 codes keep their dtype) and every graph output.  Float node
        outputs are left out (see the module docstring).

    Raises
    ------
    AssertionError
        Exposing the tensors changed onnxruntime's optimized graph (op types
        and counts, layout Transposes aside), or the all-outputs session's final
        outputs differ from the plain session's (bit for bit).
    """
    import onnx

    model = onnx.load_from_string(model_bytes)
    final = [o.name for o in model.graph.output]
    # unknown types (0) are contrib-op outputs, in QOperator graphs only: safe to expose
    names = [n for n, elem in _node_outputs(model).items() if elem in (0, *_INTEGER_TYPES)]
    got, ops_plain, ops_probe = probe(model_bytes, x, names)
    if ops_plain != ops_probe:
        diff = {k: (ops_plain[k], ops_probe[k]) for k in ops_plain | ops_probe
                if ops_plain[k] != ops_probe[k]}
        raise AssertionError(f"ort_intermediates: exposing the tensors changed onnxruntime's "
                             f"optimized graph (op: plain count, all-outputs count): "
                             f"{str(diff)[:300]}")
    got = {k: v for k, v in got.items() if k in final or np.asarray(v).dtype.kind in "iu"}
    plain = ort_run(model_bytes, x)
    for name in final:
        a, b = np.asarray(got[name]), np.asarray(plain[name])
        if not same_bits(a, b):
            n = int(np.count_nonzero(a != b)) if a.shape == b.shape else -1
            raise AssertionError(f"ort_intermediates: final output {name!r} of the all-outputs "
                                 f"session differs from the plain session in {n} of {b.size} "
                                 f"elements")
    return got


# --------------------------------------------------------------------------- what is inside
def op_inventory(model_bytes: bytes) -> Counter:
    """``Counter`` of ``"domain:op_type"`` (``ai.onnx`` for the default domain) over all nodes.

    >>> import onnx
    >>> from onnx import helper
    >>> g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [], [])
    >>> dict(op_inventory(helper.make_model(g).SerializeToString()))
    {'ai.onnx:Relu': 1}
    """
    import onnx

    model = onnx.load_from_string(model_bytes)
    return Counter(f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in model.graph.node)


def qdq_patterns(model_bytes: bytes) -> Counter:
    """How each compute node sits between (De)QuantizeLinear and other nodes.

    One string per node other than QuantizeLinear, DequantizeLinear and
    Constant: ``"producers->op_type->consumers"``.  Producers of the
    non-constant inputs: ``DQ`` (a DequantizeLinear of an activation), ``DQw``
    (a DequantizeLinear of an initializer: weights, bias), ``Q`` (a
    QuantizeLinear), ``in`` (the graph input), else the producer's op type.
    Consumers (sorted, unique): ``Q``, ``DQ``, ``out`` (a graph output), else
    their op types.

    >>> from onnx import TensorProto, helper
    >>> g = helper.make_graph(
    ...     [helper.make_node("DequantizeLinear", ["xq", "s"], ["x"]),
    ...      helper.make_node("Relu", ["x"], ["r"]),
    ...      helper.make_node("QuantizeLinear", ["r", "s"], ["y"])], "g",
    ...     [helper.make_tensor_value_info("xq", TensorProto.UINT8, [1])],
    ...     [helper.make_tensor_value_info("y", TensorProto.UINT8, [1])],
    ...     [helper.make_tensor("s", TensorProto.FLOAT, [], [1.0])])
    >>> dict(qdq_patterns(helper.make_model(g).SerializeToString()))
    {'DQ->Relu->Q': 1}
    """
    import onnx

    model = onnx.load_from_string(model_bytes)
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name for t in model.graph.initializer}
    outs = {o.name for o in model.graph.output}
    short = {"QuantizeLinear": "Q", "DequantizeLinear": "DQ"}
    pats: Counter = Counter()
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant"):
            continue
        ins = []
        for i in n.input:
            p = producer.get(i)
            if not i or i in inits or (p is not None and p.op_type == "Constant"):
                continue
            if p is None:
                ins.append("in")
            elif p.op_type == "DequantizeLinear" and p.input[0] in inits:
                ins.append("DQw")
            else:
                ins.append(short.get(p.op_type, p.op_type))
        after = {short.get(c.op_type, c.op_type) for o in n.output for c in consumers.get(o, [])}
        after |= {"out" for o in n.output if o in outs}
        pats[f"{','.join(ins)}->{n.op_type}->{','.join(sorted(after))}"] += 1
    return pats


# --------------------------------------------------------------------------- torchvision
_TV_LIB = None


def _import_torchvision():
    """``import torchvision``, working around a C++ ops library that cannot load.

    The PyPI wheel ``torchvision==0.28.0`` is the CUDA build (``0.28.0+cu130``):
    its ``_C.so`` links ``libtorch_cuda.so`` and does not load next to
    ``torch 2.13.0+cpu``, and ``import torchvision`` then fails with
    ``RuntimeError: operator torchvision::nms does not exist`` because
    ``torchvision/_meta_registrations.py`` registers fake kernels for
    ``torchvision::nms`` and ``::qnms`` unconditionally.  The classification
    models need no C++ op, so after that exact failure the two schemas are
    defined (no kernels) and the import is retried.  Any other failure propagates.
    """
    import sys

    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        import torch

        for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[mod]
        global _TV_LIB  # the schemas live as long as this Library object
        _TV_LIB = torch.library.Library("torchvision", "DEF")
        _TV_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision
    return torchvision


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


#: pytest mark: skip unless torch and torchvision are installed (checked without
#: importing them; :func:`torchvision_onnx` skips if the import then fails).  Install:
#: ``pip install --no-deps torchvision==0.28.0`` next to ``torch==2.13.0``.
needs_torchvision = pytest.mark.skipif(not (_installed("torch") and _installed("torchvision")),
                                       reason="needs torch and torchvision")


def _initializer_identities_to_initializers(model) -> None:
    """Replace each ``Identity(initializer)`` node by an initializer of its output name.

    The TorchScript exporter routes some (deduplicated) weights through Identity
    nodes; ``quantize_static`` needs every Conv/Gemm weight and bias to be an
    initializer (else ``AttributeError: 'NoneType' object has no attribute
    'data_type'`` in ``quantize_bias_static``).
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            arr = numpy_helper.to_array(inits[node.input[0]])
            model.graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    used = {i for n in model.graph.node for i in n.input}
    live = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)


_TV_CACHE: dict[str, Path] = {}
_TV_DIR: list[Path] = []


def _tv_dir() -> Path:
    """One temporary folder per process, removed at exit."""
    if not _TV_DIR:
        import atexit
        import shutil

        _TV_DIR.append(Path(tempfile.mkdtemp(prefix="fxp-tv-")))
        atexit.register(shutil.rmtree, _TV_DIR[0], ignore_errors=True)
    return _TV_DIR[0]


def torchvision_onnx(name: str, *, seed: int = 0) -> bytes:
    """Float ONNX bytes of torchvision ``resnet18`` or ``mobilenet_v2`` (random weights).

    Built once per process with ``torch.manual_seed(seed)``, eval mode, input
    ``input`` ``[N, 3, 224, 224]`` (symbolic batch), output ``logits``, opset 17,
    TorchScript exporter with BatchNormalization folded, ``Identity`` nodes on
    weights replaced by initializers; cached as a file under a temporary folder
    removed at exit (about 45 MB for resnet18, 14 MB for mobilenet_v2).

    Raises
    ------
    ValueError
        ``name`` is neither ``"resnet18"`` nor ``"mobilenet_v2"``.
    pytest.skip.Exception
        torchvision is installed but does not import.
    """
    if name not in ("resnet18", "mobilenet_v2"):
        raise ValueError(f"torchvision_onnx: name must be 'resnet18' or 'mobilenet_v2', "
                         f"got {name!r}")
    key = f"{name}-{seed}"
    if key not in _TV_CACHE:
        import warnings

        import onnx
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's "failed to load _C / image.so"
            try:
                torchvision = _import_torchvision()
            except Exception as exc:  # noqa: BLE001 -- installed but unusable: skip, say why
                pytest.skip(f"torchvision does not import: {type(exc).__name__}: "
                            f"{str(exc)[:200]}")
        torch.manual_seed(seed)
        net = getattr(torchvision.models, name)(weights=None).eval()
        path = _tv_dir() / f"{key}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(net, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False,
                              opset_version=17, training=torch.onnx.TrainingMode.EVAL,
                              do_constant_folding=True, input_names=["input"],
                              output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        model = onnx.load(str(path))
        _initializer_identities_to_initializers(model)
        onnx.save(model, str(path))
        _TV_CACHE[key] = path
    return _TV_CACHE[key].read_bytes()
