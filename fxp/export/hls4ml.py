"""hls4ml configuration from a Plan, for hls4ml's PyTorch and ONNX frontends.

Three ways in, one set of types (:mod:`fxp.export.hls4ml_types`):

* :func:`patch_hls4ml_config` (preferred) takes the config hls4ml itself
  generated (``hls4ml.utils.config_from_pytorch_model`` /
  ``config_from_onnx_model``), so its keys are hls4ml's own layer names, and
  writes fxp's types into every entry, matched to fxp's layers in graph order;
  nothing hls4ml builds can be missed, and a layer that does not match is a
  :class:`~fxp.errors.FormatError` naming it;
* :func:`hls4ml_config` writes a complete config without hls4ml installed,
  with the layer names the chosen frontend uses (``InputShape`` and
  ``ChannelsLastConversion`` included for PyTorch);
* :func:`hls4ml_project` (hls4ml installed) does the first, converts, writes
  the project and, with ``compile=True``, builds the C simulation with g++;
  :func:`fxp.export.hls4ml_onnx.hls4ml_onnx_project` does the same through
  hls4ml's ONNX frontend (qonnx-cleaned model, qonnx names).

Names.  hls4ml turns layer names into C++ identifiers.  Its PyTorch frontend
names a layer after its module path (``features.0`` -> ``features_0``) and the
input after the ``forward`` argument; an ONNX file exported by torch names the
node ``/features/features.0/Conv``, so that is mapped to ``features_0`` (a fused
ReLU by its output tensor ``/relu1/Relu_output_0`` -> ``relu1``).  Its ONNX
frontend keeps node names, replacing ``.`` by ``_`` in input names and
prefixing a leading digit with the class name (``input.1`` -> ``input_1``).
A name that is still no C++ identifier after that mapping (``/conv1/Conv`` for
the ONNX frontend, which expects qonnx-cleaned names such as ``Conv_0``) is
refused with a :class:`~fxp.errors.PlanError` naming it: generate the config
with hls4ml and use :func:`patch_hls4ml_config`, which recognizes a config of
the ONNX frontend (``global_in``, ``Conv_0_param0``, ...) and patches it with
:func:`fxp.export.hls4ml_onnx.patch_hls4ml_onnx_config`.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import FormatError, MissingDependencyError, PlanError
from fxp.export.hls4ml_onnx import is_onnx_config, patch_hls4ml_onnx_config
from fxp.export.hls4ml_types import O_MODES, Q_MODES, Slot, hls4ml_slots
from fxp.export.names import is_c_identifier
from fxp.fileio import write_text
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan
from fxp.sim.compile import compile_plan

__all__ = ["FRONTENDS", "ap_type", "hls4ml_config", "hls4ml_layer_name", "hls4ml_project",
           "patch_hls4ml_config", "write_hls4ml_config"]

FRONTENDS = ("pytorch", "onnx")


def ap_type(fmt: QFormat, rounding: RoundingMode | None = None,
            overflow: OverflowMode | None = None) -> str:
    """``ap_fixed<W,I[,Q,O]>`` / ``ap_ufixed<...>`` for ``fmt`` with optional modes.

    >>> ap_type(QFormat(8, 3), RoundingMode.HALF_UP, OverflowMode.SATURATE)
    'ap_fixed<8,3,AP_RND,AP_SAT>'
    """
    base = f"ap_{'' if fmt.signed else 'u'}fixed<{fmt.bits},{fmt.int_bits}"
    if rounding is None and overflow is None:
        return base + ">"
    q = Q_MODES.get(RoundingMode.from_string(rounding or RoundingMode.FLOOR))
    if q is None:
        raise PlanError(f"rounding mode {rounding.value!r} has no ap_fixed equivalent")
    return f"{base},AP_{q},AP_{O_MODES[OverflowMode.from_string(overflow or 'wrap')]}>"


def hls4ml_layer_name(name: str, frontend: str, what: str = "layer",
                      class_name: str = "layer") -> str:
    """The name hls4ml's ``frontend`` gives the layer or input fxp knows as ``name``.

    >>> hls4ml_layer_name("/features/features.0/Conv", "pytorch")
    'features_0'
    >>> hls4ml_layer_name("input.1", "onnx", "input", "InputLayer")
    'input_1'

    Raises
    ------
    PlanError
        The mapped name is no C++ identifier (hls4ml could not compile it).
    """
    if frontend not in FRONTENDS:
        raise PlanError(f"frontend must be one of {FRONTENDS}, got {str(frontend)[:40]!r}")
    text = str(name)
    if frontend == "pytorch":
        if what == "input":
            text = re.sub(r"\.\d+$", "", text)  # torch's ONNX export names inputs 'x.1'
        else:
            text = re.sub(r"_output_\d+$", "", text)
            parts = text.split("/")
            if len(parts) >= 3 and parts[0] == "":
                text = parts[-2]  # /scope/module.path/OpType -> module.path
        out = text.replace(".", "_")
    else:
        out = text.replace(".", "_") if what == "input" else text
        if out[:1].isdigit():
            out = class_name.lower() + out
    if not is_c_identifier(out):
        raise PlanError(f"{what} {str(name)[:200]!r} is not a C++ identifier for hls4ml's "
                        f"{frontend} frontend (mapped to {out[:200]!r}; hls4ml uses layer "
                        "names as identifiers): rename it, or generate the config with "
                        "hls4ml and use patch_hls4ml_config")
    return out


def _names(slots: list[Slot], frontend: str, graph: Graph) -> list[str]:
    out = []
    for s in slots:
        if s.kind == "input":
            out.append(hls4ml_layer_name(s.fxp_name, frontend, "input", "InputLayer"))
        elif s.fused:  # a fused ReLU is known by its output tensor, '/relu1/Relu_output_0'
            node = re.sub(r"_output_\d+$", "", s.tensor)
            out.append(hls4ml_layer_name(node, frontend, "layer", "Activation"))
        else:
            out.append(hls4ml_layer_name(s.fxp_name, frontend, "layer", s.node_class))
    if len(set(out)) != len(out):
        dup = sorted({n for n in out if out.count(n) > 1})
        raise PlanError(f"layers map to the same hls4ml name {dup[:5]} for the {frontend} "
                        "frontend; generate the config with hls4ml and use patch_hls4ml_config")
    return out


def hls4ml_config(graph: Graph, plan: Plan, *, frontend: str = "pytorch",
                  reuse_factor: int = 1, strategy: str = "Latency") -> dict:
    """A complete hls4ml config for ``plan``, with the ``frontend``'s layer names.

    Every layer hls4ml builds gets ``Precision`` types with rounding and
    overflow modes (see :mod:`fxp.export.hls4ml_types`); the model default is
    the input type.  For ``"pytorch"`` the config also has ``InputShape``
    (C, H, W) and ``ChannelsLastConversion: "full"``.
    """
    model = compile_plan(graph, plan)
    slots = hls4ml_slots(model)
    names = _names(slots, frontend, model.graph)
    layers = {}
    for name, s in zip(names, slots, strict=True):
        entry = {"Trace": False, "Precision": dict(s.precision), **s.extra}
        if s.kind != "input":
            entry["ReuseFactor"] = reuse_factor
        layers[name] = entry
    cfg = {"Model": {"Precision": {"default": slots[0].precision["result"]},
                     "ReuseFactor": reuse_factor, "Strategy": strategy,
                     "BramFactor": 1_000_000_000, "TraceOutput": False},
           "LayerName": layers}
    if frontend == "pytorch":
        cfg["Model"].update(ChannelsLastConversion="full", TransposeOutputs=False)
        shape = model.graph.input_shapes.get(model.graph.inputs[0])
        if shape is None or any(not isinstance(d, int) for d in shape[1:]):
            raise PlanError(f"input {model.graph.inputs[0]!r} has no static shape {shape!r}; "
                            "hls4ml's PyTorch frontend needs InputShape")
        cfg["InputShape"] = list(shape[1:])
    return cfg


def _classify(i: int, entry: object, name: str) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("Precision", {}), dict):
        raise FormatError(f"hls4ml config LayerName {name[:200]!r}: expected an object with a "
                          "'Precision' object (a config from hls4ml.utils.config_from_*)")
    keys = set(entry.get("Precision", {}))
    if i == 0:
        return "input"
    if "weight" in keys:
        return "weighted"
    if keys & {"exp_table", "inv_table"}:
        return "softmax"
    if "table" in keys:
        return "relu"
    if "accum" in keys:
        return "pool"
    return "reshape"


def patch_hls4ml_config(graph: Graph, plan: Plan, config: dict) -> dict:
    """A copy of hls4ml's own ``config`` with fxp's types written into every layer.

    ``config`` is what ``hls4ml.utils.config_from_pytorch_model`` or
    ``config_from_onnx_model`` returned with ``granularity='name'``; its
    ``LayerName`` entries are matched, in order, to the layers hls4ml builds
    for fxp's graph (input, Conv2D/Dense, a ReLU, pooling, flatten, softmax).
    A config of the ONNX frontend (qonnx names) is patched by
    :func:`~fxp.export.hls4ml_onnx.patch_hls4ml_onnx_config`.

    Raises
    ------
    FormatError
        ``config`` has no per-layer entries, or an entry does not match the
        next fxp layer (the message names both).
    """
    if not isinstance(config, dict) or not isinstance(config.get("LayerName"), dict):
        raise FormatError("hls4ml config has no 'LayerName' object; generate it with "
                          "granularity='name'")
    if is_onnx_config(config):
        return patch_hls4ml_onnx_config(graph, plan, config)
    model = compile_plan(graph, plan)
    slots = hls4ml_slots(model)
    out = copy.deepcopy(config)
    entries = list(out["LayerName"].items())
    if len(entries) != len(slots):
        raise FormatError(f"hls4ml config has {len(entries)} layers "
                          f"{[str(n)[:40] for n, _ in entries][:12]}, fxp's graph makes "
                          f"{len(slots)} {[s.kind for s in slots]}: not the same model?")
    for i, ((name, entry), s) in enumerate(zip(entries, slots, strict=True)):
        kind = _classify(i, entry, str(name))
        if kind != s.kind:
            raise FormatError(f"hls4ml layer {str(name)[:200]!r} looks like a {kind} layer; "
                              f"fxp's next layer {s.fxp_name[:200]!r} is a {s.kind}")
        entry.setdefault("Precision", {}).update(s.precision)
        entry.update(s.extra)
    out.setdefault("Model", {})["Precision"] = {"default": slots[0].precision["result"]}
    return out


def write_hls4ml_config(graph: Graph, plan: Plan, path: str | Path, *,
                        frontend: str = "pytorch", base: dict | None = None) -> Path:
    """Write :func:`hls4ml_config` (or, with ``base``, :func:`patch_hls4ml_config`) as JSON
    (atomically; :class:`~fxp.errors.OutputError` if it cannot be written)."""
    cfg = patch_hls4ml_config(graph, plan, base) if base is not None \
        else hls4ml_config(graph, plan, frontend=frontend)
    return write_text(Path(path), json.dumps(cfg, indent=2) + "\n")


def hls4ml_project(graph: Graph, plan: Plan, torch_model, output_dir: str | Path, *,
                   compile: bool = False, write: bool = True, io_type: str = "io_parallel",
                   trace: bool = False):
    """Convert ``torch_model`` with hls4ml under fxp's types; the ``hls4ml`` ModelGraph.

    ``graph`` is fxp's graph of the same model (e.g. its ONNX export).  The
    config is hls4ml's own (``config_from_pytorch_model``) patched by
    :func:`patch_hls4ml_config`.  ``write`` writes the project into
    ``output_dir``; ``compile`` also builds the C simulation (g++), after
    which ``predict`` runs it; ``trace`` marks every layer for ``trace``.

    Raises
    ------
    MissingDependencyError
        hls4ml is not installed (``pip install 'fxp[hls4ml]'``).
    """
    try:
        import hls4ml
    except ImportError as exc:
        raise MissingDependencyError(f"hls4ml export needs hls4ml ({exc}); install it with "
                                     "pip install 'fxp[hls4ml]'") from None
    shape = compile_plan(graph, plan).graph.input_shapes[graph.inputs[0]]
    base = hls4ml.utils.config_from_pytorch_model(torch_model, tuple(shape[1:]),
                                                  granularity="name", backend="Vivado")
    cfg = patch_hls4ml_config(graph, plan, base)
    for entry in cfg["LayerName"].values():
        entry["Trace"] = bool(trace)
    hm = hls4ml.converters.convert_from_pytorch_model(
        torch_model, hls_config=cfg, output_dir=str(output_dir), backend="Vivado",
        io_type=io_type)
    if compile:
        hm.compile()
    elif write:
        hm.write()
    return hm
