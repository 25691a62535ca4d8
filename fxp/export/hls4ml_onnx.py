"""hls4ml's ONNX frontend under fxp's types, bit for bit (issue 15).

hls4ml 1.3.0 converts ONNX models that qonnx has cleaned
(:func:`clean_onnx_model`: ``cleanup_model``, ``ConvertToChannelsLastAndClean``,
``GemmToMatMul``, ``cleanup_model`` again, as hls4ml's own tests do).  Its
config (``hls4ml.utils.config_from_onnx_model(..., granularity="name")``)
then names every entry after qonnx's names, in this order: the input
(``global_in``), one ``Constant`` per initializer (``Conv_0_param0`` is the
first initializer input of node ``Conv_0``), then one entry per node
(``Transpose_0``, ``Conv_0``, ``Relu_0``, ``MaxPool_0``, ``Flatten_0``,
``MatMul_0``, ``Add_0``, ``Softmax_0``).  :func:`onnx_layers` matches those
entries to the layers of fxp's graph, in order (the graph fxp loads from the
*original* model), and :func:`patch_hls4ml_onnx_config` writes fxp's types
into every one of them:

* the input, each ``Transpose`` qonnx leaves (its ``result`` is the incoming
  format: codes pass unchanged), ReLU, max pooling, flatten and softmax get
  the types of :mod:`fxp.export.hls4ml_types`, as for the PyTorch frontend;
* a ``Conv`` gets ``weight``, ``bias``, ``accum`` and ``result`` (hls4ml
  builds ``Conv2D_Conv_0`` from it, copying its config);
* a ``MatMul`` and the ``Add`` of its bias are one fxp Dense.  hls4ml turns
  them into ``Dense_MatMul_0`` (without bias) and an ``ApplyAlpha``
  (``bn_Add_0``, ``x * 1 + bias``), and fuses the two only when the
  ``MatMul``'s ``result`` is ``"auto"``; its precision-inference pass then
  gives the Dense an exact, unrounded result type.  Unfused, the bias is added
  after the accumulator, which no fxp accumulation order reproduces once the
  accumulator saturates.  So the ``MatMul`` entry carries ``weight``,
  ``bias``, ``accum`` and ``result: "auto"``, and the Dense's ``result`` type
  (the output of the ONNX ``Add``) is written on the ``Add`` entry, from where
  :func:`hls4ml_onnx_project` sets it on the fused Dense after hls4ml's
  precision inference and before its backend passes.  Given to hls4ml alone,
  that config builds an exact but unrounded Dense result;
* each ``Constant`` gets its parameter's type (hls4ml builds constants
  without a type and takes the parameter types from the layer's entry; they
  are written for the reader).

Anything else -- an op fxp's hls4ml export has no mapping for, a residual
``Add``, an entry that is no qonnx name, a layer count that differs -- is a
one-line :class:`~fxp.errors.FormatError` naming the entry.  After converting,
:func:`check_hls4ml_types` compares every layer hls4ml built with fxp's
types, so nothing is silently left at hls4ml's defaults.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from fxp.errors import FormatError, MissingDependencyError, ModelImportError
from fxp.export.hls4ml_types import Slot, hls4ml_slots, transpose_slot
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan
from fxp.sim.compile import compile_plan

__all__ = ["OnnxLayer", "check_hls4ml_types", "clean_onnx_model", "hls4ml_onnx_project",
           "is_onnx_config", "onnx_layers", "onnx_slot_entries", "patch_hls4ml_onnx_config"]

QONNX_PIP = "pip install qonnx==1.0.0"
_NODE = re.compile(r"^([A-Za-z]+)_(\d+)$")
_PARAM = re.compile(r"^(.+)_param(\d+)$")
_DERIVED = ("Conv1D_", "Conv2D_", "Dense_", "bn_")  # hls4ml's copies of an entry while converting
_KINDS = {"Conv": "weighted", "MatMul": "weighted", "Relu": "relu", "MaxPool": "pool",
          "Flatten": "reshape", "Reshape": "reshape", "Softmax": "softmax",
          "Transpose": "transpose", "Add": "add"}
_ROLES = {("Conv", 0): "weight", ("Conv", 1): "bias", ("MatMul", 0): "weight",
          ("Add", 0): "bias", ("Reshape", 0): None}  # None: a shape, which hls4ml folds
_BUILT = {"Conv": "Conv2D_", "MatMul": "Dense_"}


@dataclass
class OnnxLayer:
    """One layer hls4ml's ONNX frontend builds, with the config entries that type it.

    ``key`` is the config entry of the node (``Conv_0``), ``built`` the name of
    the layer hls4ml makes of it (``Conv2D_Conv_0``), ``params`` the
    ``Constant`` entries by role (``weight``, ``bias``), ``bias_add`` the
    ``Add`` entry whose bias hls4ml fuses into a ``MatMul``'s Dense.
    """

    slot: Slot
    key: str
    built: str
    params: dict[str, str] = field(default_factory=dict)
    bias_add: str | None = None


def is_onnx_config(config: object) -> bool:
    """True for a config of hls4ml's ONNX frontend (qonnx names: ``global_in``, ``*_param0``)."""
    layers = config.get("LayerName") if isinstance(config, dict) else None
    if not isinstance(layers, dict) or not layers:
        return False
    keys = [str(k) for k in layers]
    return keys[0] == "global_in" or any(_PARAM.match(k) for k in keys)


def _parse(layers: dict) -> tuple[str, list[tuple[str, str]], dict[str, dict[int, str]]]:
    keys = [str(k) for k in layers]
    nodes, params = [], {}
    for key in keys[1:]:
        if key.startswith(_DERIVED) and key.split("_", 1)[1] in layers:
            continue  # hls4ml overwrites it with a copy of the node's entry
        m = _PARAM.match(key)
        if m:
            params.setdefault(m[1], {})[int(m[2])] = key
            continue
        m = _NODE.match(key)
        if m is None or m[1] not in _KINDS:
            raise FormatError(f"hls4ml ONNX config entry {key[:200]!r} is no node fxp's hls4ml "
                              f"export maps (qonnx names {sorted(_KINDS)} + '_N', or "
                              "'NODE_paramN'); clean the model with "
                              "fxp.export.hls4ml_onnx.clean_onnx_model")
        nodes.append((key, m[1]))
    return keys[0], nodes, params


def _roles(key: str, op: str, params: dict[int, str]) -> dict[str, str]:
    out = {}
    for i, name in sorted(params.items()):
        if (op, i) not in _ROLES:
            raise FormatError(f"hls4ml ONNX config entry {name[:200]!r}: {op} {key!r} has no "
                              f"constant input {i} in fxp's hls4ml export")
        if _ROLES[op, i] is not None:
            out[_ROLES[op, i]] = name
    return out


def onnx_layers(config: dict, slots: list[Slot]) -> list[OnnxLayer]:
    """The layers hls4ml's ONNX frontend builds for ``config``, matched to fxp's ``slots``.

    ``slots`` is :func:`~fxp.export.hls4ml_types.hls4ml_slots` of fxp's graph;
    each ``Transpose`` entry gets a :func:`~fxp.export.hls4ml_types.transpose_slot`.

    Raises
    ------
    FormatError
        An entry is no qonnx node or parameter name, an op has no mapping (a
        residual ``Add`` included), or the layers differ from fxp's (the
        message names both).
    """
    layers = config.get("LayerName") if isinstance(config, dict) else None
    if not isinstance(layers, dict) or not layers:
        raise FormatError("hls4ml config has no 'LayerName' object; generate it with "
                          "config_from_onnx_model(..., granularity='name')")
    inp, nodes, params = _parse(layers)
    out, prev, nxt, j = [OnnxLayer(slots[0], inp, inp)], slots[0], 1, 0
    while j < len(nodes):
        key, op = nodes[j]
        kind, ps = _KINDS[op], params.pop(key, {})
        if kind == "transpose":
            out.append(OnnxLayer(transpose_slot(key, prev), key, key, _roles(key, op, ps)))
            j += 1
            continue
        if kind == "add":
            raise FormatError(f"hls4ml ONNX layer {key!r} is an Add that is no bias of the "
                              "MatMul before it; fxp's hls4ml export has no residual add")
        if nxt >= len(slots):
            raise FormatError(f"hls4ml ONNX layer {key!r} ({op}) has no counterpart: fxp's "
                              f"graph makes {len(slots)} layers {[s.kind for s in slots]}")
        s = slots[nxt]
        if s.kind != kind or (kind == "weighted" and
                              s.node_class != {"Conv": "Conv2D", "MatMul": "Dense"}[op]):
            raise FormatError(f"hls4ml ONNX layer {key!r} is a {op}; fxp's next layer "
                              f"{s.fxp_name[:200]!r} is a {s.node_class or s.kind}")
        lay = OnnxLayer(s, key, _BUILT.get(op, "") + key, _roles(key, op, ps))
        if op == "MatMul" and j + 1 < len(nodes) and nodes[j + 1][1] == "Add" \
                and nodes[j + 1][0] in params:
            lay.bias_add = nodes[j + 1][0]
            lay.params.update(_roles(lay.bias_add, "Add", params.pop(lay.bias_add)))
            j += 1
        out.append(lay)
        prev, nxt, j = s, nxt + 1, j + 1
    if nxt != len(slots):
        raise FormatError(f"hls4ml ONNX config has no layer for fxp's "
                          f"{[s.fxp_name[:40] for s in slots[nxt:]][:6]}: not the same model?")
    if params:
        raise FormatError(f"hls4ml ONNX config constants {sorted(params)[:6]} feed no node "
                          "fxp's hls4ml export maps")
    return out


def _fused_entry(layers: dict, lay: OnnxLayer) -> dict:
    mm, add = _entry(layers, lay.key), _entry(layers, lay.bias_add)
    mp, ap = mm["Precision"], add["Precision"]
    if str(mp.get("result", mp.get("default"))).strip().lower() != "auto":
        raise FormatError(f"hls4ml ONNX layer {lay.key!r} result is "
                          f"{str(mp.get('result', mp.get('default')))[:60]!r}: hls4ml then keeps "
                          f"its bias {lay.bias_add!r} as a layer after that cast, which fxp does "
                          "not model; give it 'auto' and the Dense's result on the Add")
    if "result" not in ap:
        raise FormatError(f"hls4ml ONNX layer {lay.bias_add!r} (the bias of {lay.key!r}) has "
                          "no 'result' type: fxp reads the Dense's result type there")
    if "bias" in ap and "bias" in mp and ap["bias"] != mp["bias"]:
        raise FormatError(f"hls4ml ONNX layer {lay.bias_add!r} bias {str(ap['bias'])[:60]!r} "
                          f"differs from {lay.key!r} bias {str(mp['bias'])[:60]!r}, the one "
                          "hls4ml uses when it fuses them: give both the same type")
    return {**mm, "Precision": {**mp, "result": ap["result"]}}


def onnx_slot_entries(config: dict, slots: list[Slot]) -> list[tuple[str, dict]]:
    """``(entry key, entry)`` per fxp slot, as hls4ml reads them for its layers.

    Transposes and constants are left out (hls4ml gives a ``Transpose`` its
    input's type and a ``Constant`` none); a ``MatMul`` with a bias ``Add`` is
    one entry whose ``result`` is the ``Add``'s (its own must be ``"auto"``,
    else hls4ml does not fuse them).

    Raises
    ------
    FormatError
        From :func:`onnx_layers`, or a ``MatMul`` / bias ``Add`` pair as above.
    """
    matched = onnx_layers(config, slots)
    layers = copy.deepcopy(config["LayerName"])  # read, never changed
    return [(lay.key, _fused_entry(layers, lay) if lay.bias_add else _entry(layers, lay.key))
            for lay in matched if lay.slot.kind != "transpose"]


def _entry(layers: dict, key: str) -> dict:
    entry = layers[key]
    if not isinstance(entry, dict) or not isinstance(entry.setdefault("Precision", {}), dict):
        raise FormatError(f"hls4ml config LayerName {key[:200]!r}: expected an object with a "
                          "'Precision' object (a config from config_from_onnx_model)")
    return entry


def patch_hls4ml_onnx_config(graph: Graph, plan: Plan, config: dict) -> dict:
    """A copy of ``config_from_onnx_model``'s output with fxp's types in every entry.

    See the module docstring for what each entry gets (a ``MatMul``'s result
    is ``"auto"`` and its type sits on the bias ``Add``).  The model default
    is the input type.

    Raises
    ------
    FormatError
        From :func:`onnx_layers`.
    """
    slots = hls4ml_slots(compile_plan(graph, plan))
    out = copy.deepcopy(config)
    layers = out.get("LayerName")
    for lay in onnx_layers(out, slots):
        entry = _entry(layers, lay.key)
        prec = dict(lay.slot.precision)
        if lay.bias_add is not None:  # hls4ml fuses the Add only into an 'auto' result
            _entry(layers, lay.bias_add)["Precision"].update(result=prec["result"],
                                                             bias=prec["bias"])
            prec["result"] = "auto"
        entry["Precision"].update(prec)
        entry.update(lay.slot.extra)
        for role, key in lay.params.items():
            _entry(layers, key)["Precision"] = {"result": lay.slot.precision[role]}
    out.setdefault("Model", {})["Precision"] = {"default": slots[0].precision["result"]}
    return out


def clean_onnx_model(model):
    """``model`` (a path or ``onnx.ModelProto``) as a qonnx ``ModelWrapper`` hls4ml converts.

    Raises
    ------
    MissingDependencyError
        qonnx is not installed.
    ModelImportError
        qonnx cannot clean the model (the message names it and the cause).
    """
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
        from qonnx.transformation.gemm_to_matmul import GemmToMatMul
        from qonnx.util.cleanup import cleanup_model
    except ImportError as exc:
        raise MissingDependencyError(f"hls4ml's ONNX frontend needs qonnx ({exc}); install it "
                                     f"with {QONNX_PIP}") from None
    what = str(model)[:200] if isinstance(model, (str, Path)) else "ONNX model"
    try:
        mw = ModelWrapper(str(model) if isinstance(model, Path) else model)
        mw = cleanup_model(mw).transform(ConvertToChannelsLastAndClean())
        return cleanup_model(mw.transform(GemmToMatMul()))
    except Exception as exc:  # noqa: BLE001 - qonnx raises plain exceptions, assertions
        raise ModelImportError(f"qonnx cannot clean {what!r} for hls4ml's ONNX frontend: "
                               f"{type(exc).__name__}: {str(exc)[:200]}") from None


def check_hls4ml_types(hm, layers: list[OnnxLayer]) -> None:
    """Every layer of the converted ``hm`` is one of ``layers``, with fxp's types.

    Raises
    ------
    FormatError
        hls4ml built a layer fxp has no types for, left one out, or a type
        differs (the message names the layer, the type and both values).
    """
    convert = hm.config.backend.convert_precision_string
    built = {node.name: node for node in hm.get_layers()}
    want = {lay.built: lay for lay in layers}
    extra = [f"{n} ({built[n].class_name})" for n in built if n not in want]
    if extra or len(built) != len(want):
        raise FormatError(f"hls4ml built layers {extra[:6]} without fxp types, and not "
                          f"{[n for n in want if n not in built][:6]}; fxp expected {list(want)}")
    for name, lay in want.items():
        node = built[name]
        for var, text in lay.slot.precision.items():
            t = node.types.get(f"{var}_t")
            got, need = str(getattr(t, "precision", None)), str(convert(text))
            if got != need:
                raise FormatError(f"hls4ml layer {name!r} {var}_t is {got}, fxp's plan needs "
                                  f"{need} (layer {lay.slot.fxp_name[:200]!r})")
        out_t = node.get_output_variable().type.precision
        if "result" in lay.slot.precision and str(out_t) != str(convert(
                lay.slot.precision["result"])):
            raise FormatError(f"hls4ml layer {name!r} output is {out_t}, fxp's plan needs "
                              f"{lay.slot.precision['result']}")


def hls4ml_onnx_project(model, graph: Graph, plan: Plan, output_dir: str | Path, *,
                        compile: bool = False, write: bool = True,
                        io_type: str = "io_parallel", trace: bool = False):
    """Convert ONNX ``model`` with hls4ml's ONNX frontend under fxp's types.

    ``model`` is the ONNX file (or ``ModelProto``) fxp's ``graph`` was loaded
    from; it is cleaned with qonnx (:func:`clean_onnx_model`), hls4ml's own
    config is patched (:func:`patch_hls4ml_onnx_config`), converted with the
    Vivado backend, every fused Dense gets its bias ``Add``'s result type
    after hls4ml's precision inference, and :func:`check_hls4ml_types` proves
    every built layer carries fxp's types.  ``write`` writes the project into
    ``output_dir``, ``compile`` builds the C simulation (g++), ``trace`` marks
    every layer for ``trace``.  Returns ``(hls4ml ModelGraph, layers)``, the
    :class:`OnnxLayer` list naming which fxp tensor each layer computes.

    Raises
    ------
    MissingDependencyError
        hls4ml or qonnx is not installed.
    FormatError
        A layer hls4ml builds cannot carry fxp's types (see above).
    """
    try:
        import hls4ml
    except ImportError as exc:
        raise MissingDependencyError(f"hls4ml export needs hls4ml ({exc}); install it with "
                                     "pip install 'fxp[hls4ml]'") from None
    cleaned = clean_onnx_model(model)
    with contextlib.redirect_stdout(io.StringIO()):  # hls4ml prints its topology
        base = hls4ml.utils.config_from_onnx_model(cleaned, granularity="name",
                                                   backend="Vivado")
    cfg = patch_hls4ml_onnx_config(graph, plan, base)
    for entry in cfg["LayerName"].values():
        entry["Trace"] = bool(trace)
    layers = onnx_layers(cfg, hls4ml_slots(compile_plan(graph, plan)))
    run_cfg = {**copy.deepcopy(cfg), "Flows": []}  # the flows are applied below, in two steps
    with contextlib.redirect_stdout(io.StringIO()):
        hm = hls4ml.converters.convert_from_onnx_model(
            cleaned, hls_config=run_cfg, output_dir=str(output_dir), backend="Vivado",
            io_type=io_type)
        hm.apply_flow("optimize")  # qonnx parsing, conversion, precision inference
        for lay in layers:
            node = hm.graph.get(lay.built)
            if lay.bias_add is not None and node is not None:
                node.types["result_t"].precision = hm.config.backend.convert_precision_string(
                    lay.slot.precision["result"])
        default = hm.config.backend.get_default_flow()
        hm.apply_flow(default)
    hm.config.flows = [default]
    hm.config.config["HLSConfig"].pop("Flows", None)
    check_hls4ml_types(hm, layers)
    if compile:
        hm.compile()
    elif write:
        hm.write()
    return hm, layers
