"""hls4ml configuration from a Plan: per-layer ``ap_fixed`` precisions.

The dictionary follows hls4ml's ``config_from_*`` layout (``Model`` defaults plus
``LayerName -> {Precision: {weight, bias, result, accum}}``) with fxp's rounding
and overflow modes spelled as ``ap_fixed<W,I,Q,O>`` quantization/overflow modes.
Only power-of-two layers map to ``ap_fixed``; affine (scaled) layers are refused
with a message, since hls4ml's fixed-point types carry no scale.

hls4ml turns layer names into C++ identifiers of its generated project, and
the config's keys must equal the names hls4ml reads from the model, so names
cannot be rewritten here: a layer or input name that is not a plain C++
identifier (``[A-Za-z_][A-Za-z0-9_]*``, no keyword, no reserved ``__``/``_X``
prefix) is refused with a :class:`~fxp.errors.PlanError` naming it.  The JSON
text itself is escaped by :func:`json.dumps`.
"""

from __future__ import annotations

import json
from pathlib import Path

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import PlanError
from fxp.export import fixed_point_steps
from fxp.export.names import is_c_identifier
from fxp.fileio import write_text
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan
from fxp.sim.compile import compile_plan

__all__ = ["ap_type", "hls4ml_config", "write_hls4ml_config"]

_Q = {RoundingMode.FLOOR: "AP_TRN", RoundingMode.TO_ZERO: "AP_TRN_ZERO",
      RoundingMode.HALF_UP: "AP_RND", RoundingMode.HALF_TO_ZERO: "AP_RND_ZERO",
      RoundingMode.HALF_DOWN: "AP_RND_MIN_INF", RoundingMode.HALF_AWAY: "AP_RND_INF",
      RoundingMode.HALF_EVEN: "AP_RND_CONV"}
_O = {OverflowMode.WRAP: "AP_WRAP", OverflowMode.SATURATE: "AP_SAT",
      OverflowMode.SATURATE_SYMMETRIC: "AP_SAT_SYM", OverflowMode.SATURATE_ZERO: "AP_SAT_ZERO"}


def ap_type(fmt: QFormat, rounding: RoundingMode | None = None,
            overflow: OverflowMode | None = None) -> str:
    """``ap_fixed<W,I[,Q,O]>`` / ``ap_ufixed<...>`` for ``fmt`` with optional modes.

    >>> ap_type(QFormat(8, 3), RoundingMode.HALF_UP, OverflowMode.SATURATE)
    'ap_fixed<8,3,AP_RND,AP_SAT>'
    """
    base = f"ap_{'' if fmt.signed else 'u'}fixed<{fmt.bits},{fmt.int_bits}"
    if rounding is None and overflow is None:
        return base + ">"
    q = _Q.get(rounding or RoundingMode.FLOOR)
    if q is None:
        raise PlanError(f"rounding mode {rounding.value!r} has no ap_fixed equivalent")
    return f"{base},{q},{_O[overflow or OverflowMode.WRAP]}>"


def _check_name(name: str, what: str) -> str:
    if not is_c_identifier(name):
        raise PlanError(f"{what} {str(name)[:200]!r} is not a C++ identifier "
                        "([A-Za-z_][A-Za-z0-9_]*, no keyword, no leading __ or _X); hls4ml "
                        "uses layer names as identifiers: rename it in the model first")
    return name


def hls4ml_config(graph: Graph, plan: Plan, *, reuse_factor: int = 1,
                  strategy: str = "Latency") -> dict:
    """The hls4ml config dictionary for ``plan`` (see the module docstring)."""
    model = compile_plan(graph, plan)
    if not plan.input.is_pow2:
        raise PlanError("hls4ml export needs a power-of-two plan (ap_fixed has no scale); "
                        f"plan {plan.name!r} codes its input with a scale")
    gin = _check_name(model.graph.inputs[0], "input")
    layers = {gin: {"Precision": {"result": ap_type(plan.input.fmt)}}}
    for step in fixed_point_steps(model):
        lp = step.plan
        if not (lp.weight.is_pow2 and lp.output.is_pow2):
            raise PlanError(f"layer {step.name!r} is affine (scaled); hls4ml export needs "
                            "power-of-two formats")
        # a shift weight (codes 0 or +-2**k) keeps its ap_fixed type: hls4ml has no shift
        # (power-of-two weight) type, so the shift-add meaning does not reach its config
        layers[_check_name(step.name, "layer")] = {"Precision": {
            "weight": ap_type(lp.weight.fmt),
            "bias": ap_type((lp.bias.fmt if lp.bias is not None else step.acc_fmt)),
            "accum": ap_type(step.acc_fmt, RoundingMode.FLOOR, lp.acc_overflow),
            "result": ap_type(lp.output.fmt, lp.rounding, lp.output_overflow)},
            "ReuseFactor": reuse_factor}
    return {"Model": {"Precision": ap_type(plan.input.fmt), "ReuseFactor": reuse_factor,
                      "Strategy": strategy},
            "LayerName": layers,
            "fxp": {"plan": plan.name, "note": "accum wraps/saturates after every addition in "
                    "fxp's documented order; result casts round then saturate"}}


def write_hls4ml_config(graph: Graph, plan: Plan, path: str | Path) -> Path:
    """Write :func:`hls4ml_config` as JSON (atomically; :class:`~fxp.errors.OutputError`
    if it cannot be written)."""
    return write_text(Path(path), json.dumps(hls4ml_config(graph, plan), indent=2) + "\n")
