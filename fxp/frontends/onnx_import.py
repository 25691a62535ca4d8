"""Import an ONNX model into a :class:`~fxp.ir.graph.Graph`.

The import is defensive: the file is size-checked and parsed with
``ModelProto.ParseFromString`` inside ``try`` (``onnx.checker`` is never run
in-process on untrusted bytes), then our own Python checks run before any
native onnx code sees the model: ir_version and opset range, one float input
with fixed non-batch dims, every initializer decoded and checked
(:mod:`fxp.frontends.onnx_tensors`), every node converted by a handler that
validates its attributes (:mod:`fxp.frontends.onnx_ops`).  Only then is
``onnx.shape_inference`` run, to cross-check the shapes we inferred.

Untrusted files.  Every attribute is read with its declared type
(:mod:`fxp.frontends.onnx_attrs`), every float tensor, float attribute and
folded product (Gemm ``alpha * B``, bias sums, BatchNorm folding) must be
finite in float32, every tensor's per-sample size and every layer's MAC
count stay under :data:`MAX_SAMPLE_ELEMENTS` / :data:`MAX_LAYER_MACS`, and the
graph has exactly one output, fed by every node.  Whatever a malformed file
holds, the outcome is a graph or an :class:`~fxp.errors.FxpError` whose
message is one line naming the file and the node or tensor.

onnx is imported lazily, inside :func:`load_onnx`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from fxp.errors import FxpError, GraphError, MissingDependencyError, ModelImportError
from fxp.frontends.onnx_context import MAX_LAYER_MACS, MAX_SAMPLE_ELEMENTS, ImportContext
from fxp.frontends.onnx_ops import get_handler
from fxp.frontends.onnx_tensors import tensor_to_array
from fxp.ir.graph import Graph

__all__ = ["MAX_LAYER_MACS", "MAX_MODEL_BYTES", "MAX_SAMPLE_ELEMENTS", "MIN_OPSET",
           "load_onnx"]

MAX_MODEL_BYTES = (1 << 31) - 1
"""Largest model file parsed (the protobuf limit, 2 GiB)."""

MIN_OPSET = 7
"""Oldest default-domain opset accepted; the newest is the installed onnx's."""

_FLOAT = 1  # TensorProto.FLOAT


def _graph_context(g: Any, consts: dict[str, Any], opset: int, folder: str | None
                   ) -> tuple[str, Any, tuple[str, ...], ImportContext]:
    """The single graph input (name, shape), the output names and a fresh ImportContext."""
    name, shape, batch = _single_input(g, consts)
    uses: dict[str, int] = {}
    for node in g.node:
        for t in node.input:
            if t:
                uses[t] = uses.get(t, 0) + 1
    outputs = tuple(o.name for o in g.output)
    ctx = ImportContext(opset, consts, uses, set(outputs), folder)
    ctx.shapes[name] = shape
    ctx.batch = batch
    return name, shape, outputs, ctx


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - onnx is a hard dependency
        raise MissingDependencyError("load_onnx needs the 'onnx' package: "
                                     "pip install onnx") from e
    return onnx


def load_onnx(source: str | os.PathLike | bytes | Any, *, base_dir: str | None = None,
              max_bytes: int = MAX_MODEL_BYTES) -> Graph:
    """Read an ONNX model (float32 CNN/MLP) into an fxp :class:`Graph`.

    Parameters
    ----------
    source : path, bytes or onnx.ModelProto
        The model.  A path's folder is where external data is looked up.
    base_dir : str, optional
        Folder for external data when ``source`` is bytes or a ModelProto
        (overrides the path's folder).  External data must stay inside it.
    max_bytes : int
        Refuse serialized models larger than this many bytes.

    Returns
    -------
    Graph
        Nodes as imported (BatchNorm, Dropout, Identity kept; run
        :func:`fxp.ir.passes.canonicalize` to fold and fuse).  Batch is free;
        ``metadata`` holds the model's ``metadata_props``.

    Raises
    ------
    ModelImportError
        Unreadable, empty, truncated or corrupt file (non-UTF-8 strings
        included); unsupported ir_version or opset; no or several inputs or
        outputs, an output the last node does not write, nodes not feeding it;
        symbolic non-batch dims; missing, malformed or non-finite initializers
        (float64 beyond float32 included); attributes of the wrong type or
        range; non-finite float attributes or folded values (Gemm
        ``alpha * B``, bias sums, BatchNorm folding); a tensor above
        :data:`MAX_SAMPLE_ELEMENTS` per sample or a layer above
        :data:`MAX_LAYER_MACS`; Clip bounds given in the form the opset does
        not define; external data escaping the model folder; dangling tensors.
        The message is one line naming the file and the node or tensor.
    UnsupportedOpError
        An op, domain or attribute value outside the supported subset; the
        message names the node, its op_type and the supported op types.
    """
    return read_and_convert(source, _convert, base_dir=base_dir, max_bytes=max_bytes)


def read_and_convert(source: Any, convert: Any, *, base_dir: str | None, max_bytes: int) -> Any:
    """Read ``source`` defensively and run ``convert(onnx, model, folder)`` on it.

    The one entry path of every ONNX importer: errors are prefixed with the
    file's label, and ``base_dir`` overrides the folder for external data.
    """
    onnx = _import_onnx()
    model, label, folder = _read(onnx, source, max_bytes)
    if base_dir is not None:
        folder = base_dir
    try:
        return convert(onnx, model, folder)
    except FxpError as e:
        raise type(e)(f"{label}: {e}") from None


def convert_nodes(ctx: ImportContext, g: Any, convert: Callable[[Any], None],
                  defined: Callable[[str], bool]) -> None:
    """Run ``convert(node)`` on every node of ``g`` in order, with ``ctx.node_name`` set.

    Nodes without a name get ``{op_type}_{index}``; names are made unique.  A
    node writing an already ``defined`` tensor (duplicate name or cycle) is
    refused; a :class:`GraphError` from an IR node constructor becomes a
    :class:`ModelImportError` (the message already names the node).
    """
    seen: set[str] = set()
    for i, node in enumerate(g.node):
        node_name = node.name or f"{node.op_type}_{i}"
        while node_name in seen:
            node_name = f"{node_name}_{i}"
        seen.add(node_name)
        ctx.node_name = node_name
        if not node.output or not node.output[0]:
            raise ctx.fail(node, "has no output", ModelImportError)
        for t in node.output:
            if t and (t in ctx.shapes or defined(t)):
                raise ctx.fail(node, f"output {t[:200]!r} is already defined (duplicate "
                                     f"tensor name or cycle)", ModelImportError)
        try:
            convert(node)
        except GraphError as e:
            raise ModelImportError(str(e)) from None


def check_output_count(outputs: Any) -> None:
    """Refuse a graph with other than one output (names of ``outputs`` in the message)."""
    if len(outputs) != 1:
        names = [getattr(t, "name", t)[:200] for t in list(outputs)[:8]]
        raise ModelImportError(f"graph has {len(outputs)} outputs {names}; fxp supports "
                               f"exactly one (remove the extra outputs)")


def check_single_output(graph: Graph) -> None:
    """Refuse several graph outputs, the input as output, and nodes not feeding the output.

    fxp's engine, planner and exporters follow one output tensor; with every
    node feeding it, it is the last node's tensor.
    """
    check_output_count(graph.outputs)
    out = graph.outputs[0]
    if out in graph.inputs:
        raise ModelImportError(f"graph output {out[:200]!r} is the graph input; no node "
                               f"computes it")
    needed, live = {out}, set()
    for node in reversed(graph.nodes):
        if node.output in needed:
            live.add(node.name)
            needed.update(node.inputs)
    dead = [n for n in graph.nodes if n.name not in live]
    if dead:
        more = f" (and {len(dead) - 1} more)" if len(dead) > 1 else ""
        raise ModelImportError(f"node {dead[0].name[:200]!r} ({dead[0].op_type}){more} does "
                               f"not feed the graph output {out[:200]!r}; fxp needs the output "
                               f"to be the last node's tensor, with every node feeding it")


def _read(onnx: Any, source: Any, max_bytes: int) -> tuple[Any, str, str | None]:
    if isinstance(source, onnx.ModelProto):
        try:
            _check_strings(source, "model")
        except ModelImportError as e:
            raise ModelImportError(f"<ModelProto>: {e}") from None
        return source, "<ModelProto>", None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label, folder = bytes(source), "<bytes>", None
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        label = path if str(path).isprintable() else repr(path)
        folder = os.path.dirname(os.path.abspath(path))
        try:
            size = os.path.getsize(path)
            if size > max_bytes:
                raise ModelImportError(f"{label}: file is {size} bytes, above the limit "
                                       f"{max_bytes}")
            with open(path, "rb") as f:
                data = f.read()
        except (OSError, ValueError) as e:  # ValueError: a NUL in the path
            raise ModelImportError(f"{label}: cannot read model file: {e}") from None
    else:
        raise TypeError(f"load_onnx expects a path, bytes or onnx.ModelProto, got "
                        f"{type(source).__name__}")
    if not data:
        raise ModelImportError(f"{label}: not a valid ONNX ModelProto: the file is empty")
    if len(data) > max_bytes:
        raise ModelImportError(f"{label}: model is {len(data)} bytes, above the limit "
                               f"{max_bytes}")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelImportError(f"{label}: not a valid ONNX ModelProto (corrupt or truncated "
                               f"file): {type(e).__name__}: {_one_line(str(e))}") from None
    try:
        _check_strings(model, "model")
    except ModelImportError as e:
        raise ModelImportError(f"{label}: {e}") from None
    return model, label, folder


def _one_line(text: str, limit: int = 300) -> str:
    """``text`` with line breaks escaped, cut to ``limit`` characters."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + "..."


def _check_strings(msg: Any, path: str) -> None:
    """Refuse string fields holding non-UTF-8 bytes (protobuf returns them as ``bytes``)."""
    for field, value in msg.ListFields():
        if field.type == field.TYPE_STRING:
            for v in [value] if isinstance(value, (str, bytes)) else value:
                if not isinstance(v, str):
                    raise ModelImportError(f"{path}.{field.name} is not valid UTF-8: "
                                           f"{bytes(v)[:60]!r}")
        elif field.type == field.TYPE_MESSAGE:
            for v in [value] if hasattr(value, "ListFields") else value:
                _check_strings(v, f"{path}.{field.name}")


def _convert(onnx: Any, model: Any, folder: str | None) -> Graph:
    if not 3 <= model.ir_version <= onnx.IR_VERSION:
        raise ModelImportError(f"ir_version {model.ir_version} is outside the supported "
                               f"range 3..{onnx.IR_VERSION} (truncated or not an ONNX file?)")
    opset = _default_opset(onnx, model)
    g = model.graph
    if not g.node:
        raise ModelImportError("graph has no nodes (empty graph)")
    if not g.output:
        raise ModelImportError("graph has no outputs")
    consts: dict[str, Any] = {}
    for t in g.initializer:
        if t.name in consts:
            raise ModelImportError(f"initializer {t.name!r} is defined twice")
        consts[t.name] = tensor_to_array(t, folder)
    if g.sparse_initializer:
        raise ModelImportError("sparse initializers are not supported")
    name, shape, outputs, ctx = _graph_context(g, consts, opset, folder)
    convert_nodes(ctx, g, lambda node: get_handler(ctx, node)(ctx, node),
                  lambda t: t in consts)
    check_output_count(outputs)
    kind = g.output[0].type.WhichOneof("value")
    elem = g.output[0].type.tensor_type.elem_type
    if kind not in (None, "tensor_type") or elem not in (0, _FLOAT):
        what = f"a {kind}" if kind != "tensor_type" else f"a tensor of elem_type {elem}"
        raise ModelImportError(f"graph output {outputs[0][:200]!r} is declared as {what}; fxp "
                               f"computes a float32 tensor")
    for t in outputs:
        if t not in ctx.shapes:
            what = "a constant" if t in consts else "not produced by any node"
            raise ModelImportError(f"graph output {t!r} is {what}")
    meta = {p.key: p.value for p in model.metadata_props}
    try:
        graph = Graph(nodes=tuple(ctx.nodes), inputs=(name,), input_shapes={name: shape},
                      outputs=outputs, metadata=meta, name=g.name or "graph")
    except GraphError as e:
        raise ModelImportError(str(e)) from None
    check_single_output(graph)
    _cross_check(onnx, model, graph)
    return graph


def _default_opset(onnx: Any, model: Any) -> int:
    versions = {o.domain: o.version for o in model.opset_import}
    opset = versions.get("", versions.get("ai.onnx"))
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        raise ModelImportError(f"model imports no default-domain opset; domains: "
                               f"{sorted(versions)}")
    if not MIN_OPSET <= opset <= newest:
        raise ModelImportError(f"opset {opset} is outside the supported range "
                               f"{MIN_OPSET}..{newest}")
    return int(opset)


def _single_input(g: Any, consts: dict[str, Any]) -> tuple[str, tuple, int | None]:
    """The one non-initializer graph input, its shape (batch ``None``), its declared batch."""
    inputs = [v for v in g.input if v.name not in consts]
    if len(inputs) != 1:
        raise ModelImportError(f"model has {len(inputs)} inputs "
                               f"{[v.name for v in inputs]}; fxp supports exactly one")
    v = inputs[0]
    tt = v.type.tensor_type
    if not v.type.HasField("tensor_type") or tt.elem_type != _FLOAT:
        raise ModelImportError(f"input {v.name!r} must be a float32 tensor "
                               f"(elem_type {tt.elem_type})")
    if not tt.HasField("shape") or len(tt.shape.dim) < 2:
        raise ModelImportError(f"input {v.name!r} needs a known shape of rank >= 2 "
                               f"([N, C, H, W] or [N, F])")
    dims: list[int | None] = [None]
    for i, d in enumerate(tt.shape.dim[1:], 1):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
            continue
        what = f"symbolic {d.dim_param!r}" if d.HasField("dim_param") else (
            f"{d.dim_value}" if d.HasField("dim_value") else "unknown")
        raise ModelImportError(f"input {v.name!r} dim {i} is {what}; only the batch dim "
                               f"(0) may be dynamic, channel/spatial dims must be fixed "
                               f"positive integers")
    size = math.prod(dims[1:])
    if size > MAX_SAMPLE_ELEMENTS:
        raise ModelImportError(f"input {v.name!r} has shape {dims[1:]} per sample, "
                               f"{size} elements, above the limit MAX_SAMPLE_ELEMENTS = "
                               f"{MAX_SAMPLE_ELEMENTS}")
    d0 = tt.shape.dim[0]
    batch = int(d0.dim_value) if d0.HasField("dim_value") and d0.dim_value > 0 else None
    return v.name, tuple(dims), batch


def _cross_check(onnx: Any, model: Any, graph: Graph) -> None:
    """Compare our shapes with ``onnx.shape_inference`` (non-batch dims, where known)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as e:  # InferenceError and friends from the native code
        raise ModelImportError(f"ONNX shape inference failed: {type(e).__name__}: "
                               f"{_one_line(str(e))}") from None
    infos = list(inferred.graph.value_info) + list(inferred.graph.output)
    for v in infos:
        ours = graph.shapes.get(v.name)
        if ours is None or not v.type.tensor_type.HasField("shape"):
            continue
        dims = v.type.tensor_type.shape.dim
        theirs = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        if len(theirs) != len(ours) or any(
                t is not None and o is not None and t != o
                for t, o in zip(theirs[1:], ours[1:])):
            raise ModelImportError(f"tensor {v.name!r}: fxp infers shape {ours}, ONNX shape "
                                   f"inference says {theirs}")
