"""Export a retrained model: ONNX whose weights are exactly the quantized values, plus a Plan.

:func:`graph_to_onnx` writes a chain graph (Conv / Gemm with a separate Relu
or Clip, MaxPool, Flatten, Reshape, Softmax; opset 17, symbolic batch ``N``)
with ``onnx.helper``, as ``models/archs.py`` does, keeping the graph's
metadata (``fxp.preprocess.*`` and the rest).  This module needs only numpy
and onnx; :func:`export_trained` takes an :class:`~fxp.train.fake_quant.FxpNet`.

The written file round-trips: ``fxp.workflow.load_model(path)`` gives back the
same canonical graph (same node names, weights bit for bit), so the plan's
layer names apply unchanged, and :func:`verify_export` checks that
``fxp.workflow.run_simulation`` reproduces the torch fake-quantized predictions.

File names built from a model name (which comes from the ONNX file) are safe
stems (:func:`fxp.export.names.file_stems`: no separator, no ``..``, no
control character, at most 80 characters), and every file is written
atomically through :mod:`fxp.fileio` (:class:`~fxp.errors.OutputError` if it
cannot be).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fxp.errors import UnsupportedOpError
from fxp.export.names import file_stems
from fxp.fileio import ensure_dir, write_text, write_with
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Reshape, Softmax

__all__ = ["ExportResult", "export_trained", "graph_to_onnx", "verify_export"]


def _activation_node(helper, act, src: str, dst: str, name: str, inits: list):
    if act == "relu":
        return helper.make_node("Relu", [src], [dst], name=name)
    from onnx import numpy_helper

    lo, hi = act
    ins = [src]
    for tag, v in (("min", lo), ("max", hi)):
        if v is None or not np.isfinite(v):
            ins.append("")
        else:
            inits.append(numpy_helper.from_array(np.asarray(v, np.float32), f"{name}.{tag}"))
            ins.append(f"{name}.{tag}")
    while ins and ins[-1] == "":
        ins.pop()
    return helper.make_node("Clip", ins, [dst], name=name)


def graph_to_onnx(graph: Graph, *, doc: str = "", producer: str = "fxp-train"):
    """ONNX ``ModelProto`` (opset 17) of a canonical chain graph, metadata kept."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    for node in graph.nodes:
        src, dst = node.inputs[0], node.output
        act = getattr(node, "fused_activation", None)
        pre = f"{node.name}.preact" if act is not None else dst
        if isinstance(node, (Conv2D, Dense)):
            inits.append(numpy_helper.from_array(np.asarray(node.weight, np.float32),
                                                 f"{node.name}.weight"))
            ins = [src, f"{node.name}.weight"]
            if node.bias is not None:
                inits.append(numpy_helper.from_array(np.asarray(node.bias, np.float32),
                                                     f"{node.name}.bias"))
                ins.append(f"{node.name}.bias")
            if isinstance(node, Conv2D):
                nodes.append(helper.make_node(
                    "Conv", ins, [pre], name=node.name, kernel_shape=list(node.weight.shape[2:]),
                    pads=list(node.pads), strides=list(node.strides),
                    dilations=list(node.dilations), group=int(node.groups)))
            else:
                nodes.append(helper.make_node("Gemm", ins, [pre], name=node.name, transB=1))
            if act is not None:
                nodes.append(_activation_node(helper, act, pre, dst, f"{node.name}.act", inits))
        elif isinstance(node, MaxPool2D):
            nodes.append(helper.make_node("MaxPool", [src], [dst], name=node.name,
                                          kernel_shape=list(node.kernel),
                                          strides=list(node.strides), pads=list(node.pads)))
        elif isinstance(node, Flatten):
            nodes.append(helper.make_node("Flatten", [src], [dst], name=node.name, axis=1))
        elif isinstance(node, ReLU):
            nodes.append(helper.make_node("Relu", [src], [dst], name=node.name))
        elif isinstance(node, Reshape):
            shape = np.asarray([0, *node.shape], np.int64)  # per-sample shape
            inits.append(numpy_helper.from_array(shape, f"{node.name}.shape"))
            nodes.append(helper.make_node("Reshape", [src, f"{node.name}.shape"], [dst],
                                          name=node.name))
        elif isinstance(node, Softmax):
            nodes.append(helper.make_node("Softmax", [src], [dst], name=node.name,
                                          axis=int(node.axis)))
        else:
            raise UnsupportedOpError(f"cannot export node {node.name!r} ({node.op_type})")
    gin, gout = graph.inputs[0], graph.outputs[0]
    in_shape = ["N", *graph.input_shapes[gin][1:]]
    out_shape = ["N", *graph.shapes[gout][1:]]
    g = helper.make_graph(
        nodes, graph.name,
        [helper.make_tensor_value_info(gin, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(gout, TensorProto.FLOAT, out_shape)],
        initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name=producer, producer_version="1", doc_string=doc)
    model.ir_version = 8
    helper.set_model_props(model, {str(k): str(v) for k, v in graph.metadata.items()})
    onnx.checker.check_model(model, full_check=True)
    return model


@dataclass(frozen=True)
class ExportResult:
    """Where an export went."""

    onnx_path: Path
    plan_path: Path


def export_trained(net, out_dir: str | Path, name: str, *, metadata: dict | None = None,
                   doc: str = "") -> ExportResult:
    """Write ``NAME.onnx`` (quantized weights, exact) and ``NAME.plan.json`` into ``out_dir``.

    ``NAME`` is ``name`` made a safe file name stem (module docstring); the
    returned :class:`ExportResult` holds the paths written.
    """
    import onnx

    from fxp.plan.io import save_plan

    out = ensure_dir(out_dir)
    name = file_stems([name])[name]
    graph = net.to_graph(quantized=True)
    meta = {**dict(graph.metadata), **{k: str(v) for k, v in (metadata or {}).items()}}
    graph = Graph(nodes=graph.nodes, inputs=graph.inputs, input_shapes=graph.input_shapes,
                  outputs=graph.outputs, metadata=meta, name=graph.name)
    model = graph_to_onnx(graph, doc=doc)
    onnx_path = write_with(out / f"{name}.onnx", lambda tmp: onnx.save(model, str(tmp)))
    plan_path = save_plan(net.plan, out / f"{name}.plan.json")
    return ExportResult(onnx_path, Path(plan_path))


def verify_export(result: ExportResult, data, torch_predictions: np.ndarray, *,
                  batch_size: int = 256) -> dict:
    """Simulate the exported files with fxp and compare with the torch predictions.

    ``data`` is a :class:`fxp.workflow.Data`.  Returns a dict with the fxp
    fixed-point and float accuracies and ``agreement`` (fraction of images
    whose fxp top-1 prediction equals ``torch_predictions``; 1.0 is expected).
    """
    from fxp import workflow as fw
    from fxp.plan.io import load_plan

    graph = fw.load_model(result.onnx_path)
    plan = load_plan(result.plan_path)
    rep = fw.run_simulation(graph, plan, data, batch_size=batch_size, keep_predictions=True)
    agree = float(np.mean(rep.fixed_predictions == np.asarray(torch_predictions)))
    return {"n": rep.n, "fixed_top1": rep.fixed_top1, "float_top1": rep.float_top1,
            "agreement_with_torch": agree,
            "mismatches": int(np.sum(rep.fixed_predictions != np.asarray(torch_predictions)))}


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON atomically (:func:`fxp.fileio.write_text`)."""
    return write_text(path, json.dumps(obj, indent=1, default=str) + "\n")
