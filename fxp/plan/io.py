"""Plan <-> JSON.  The file format users' toolchains read.

Example (power-of-two layer; affine tensors carry ``scales`` and ``zero_point``)::

    {
      "schema": "fxp.plan", "schema_version": 1, "name": "ptq-pow2-w8a8",
      "input": {"format": "fixed<8,1>"},
      "layers": [
        {"name": "conv1", "weight": {"format": "fixed<8,0>"},
         "bias": {"format": "fixed<32,-6>"}, "output": {"format": "ufixed<8,3>"},
         "acc_bits": 32, "acc_overflow": "wrap", "rounding": "half_up",
         "output_overflow": "saturate", "requant": "pow2"}
      ]
    }

Formats are written as ``fixed<W,I>`` / ``ufixed<W,I>`` (I includes the sign
bit); scales as float32 values printed with ``repr`` (round-trip exact).

Binary (XNOR-popcount) layers, see :mod:`fxp.plan.plan`: a tensor
``{"format": "binary"}`` is :meth:`TensorSpec.binary`, and a layer may carry
the optional keys ``pad_value`` (0, 1, -1), ``binary_output`` (``"scale"``,
``"dot"``, ``"threshold"``) and ``alpha`` (a tensor object)::

    {"name": "conv2", "weight": {"format": "binary"}, "alpha": {"format": "ufixed<8,0>"},
     "output": {"format": "ufixed<8,3>"}, "pad_value": 0, "binary_output": "scale", ...}

Shift-add (power-of-two weight) layers: a tensor may carry the optional key
``kind``: ``"fixed"`` (the default, never written) or ``"shift"``
(:meth:`TensorSpec.shift`; weights only, power-of-two formats only), meaning
every weight code is 0 or ``+-2**k`` and the layer multiplies by shifting::

    {"name": "conv1", "weight": {"format": "fixed<16,1>", "kind": "shift"}, ...}

These keys are new but optional, so the schema version stays 1 and older
files load unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from fxp.core.format import QFormat
from fxp.errors import FxpError, PlanError
from fxp.plan.plan import SCHEMA_VERSION, LayerPlan, Plan, TensorSpec

__all__ = ["load_plan", "plan_from_dict", "plan_to_dict", "save_plan"]

_LAYER_KEYS = {"name", "float", "input", "weight", "bias", "output", "acc_bits", "acc_overflow",
               "rounding", "output_overflow", "requant", "pad_value", "binary_output", "alpha"}


def _spec_to_dict(spec: TensorSpec | None) -> dict | None:
    if spec is None:
        return None
    if spec.is_binary:
        return {"format": "binary"}
    d: dict = {"format": str(spec.fmt)}
    if spec.is_shift:
        d["kind"] = "shift"
    if spec.scales is not None:
        d["scales"] = list(spec.scales)
        d["zero_point"] = spec.zero_point
        if spec.axis is not None:
            d["axis"] = spec.axis
    return d


def _spec_from_dict(d: object, where: str) -> TensorSpec | None:
    if d is None:
        return None
    if not isinstance(d, dict) or "format" not in d:
        raise PlanError(f"{where}: expected an object with a 'format' key, got {d!r}")
    extra = set(d) - {"format", "scales", "zero_point", "axis", "kind"}
    if extra:
        raise PlanError(f"{where}: unknown keys {sorted(extra)}")
    if isinstance(d["format"], str) and d["format"].strip().lower() == "binary":
        if set(d) != {"format"}:
            raise PlanError(f"{where}: a binary tensor takes no {sorted(set(d) - {'format'})}")
        return TensorSpec.binary()
    kind = d.get("kind", "fixed")
    if kind not in ("fixed", "shift"):
        raise PlanError(f"{where}: kind must be 'fixed' or 'shift' (binary tensors are "
                        f"{{\"format\": \"binary\"}}), got {kind!r}")
    try:
        return TensorSpec(QFormat.parse(d["format"]), d.get("scales"), d.get("zero_point", 0),
                          d.get("axis"), kind)
    except FxpError as exc:
        raise PlanError(f"{where}: {exc}") from exc


def plan_to_dict(plan: Plan) -> dict:
    """The JSON-ready dictionary of ``plan``."""
    layers = []
    for lp in plan.layers:
        d = {"name": lp.name}
        if lp.float_layer:
            d["float"] = True
        for key in ("input", "weight", "bias", "output", "alpha"):
            spec = _spec_to_dict(getattr(lp, key))
            if spec is not None:
                d[key] = spec
        d.update(acc_bits=lp.acc_bits, acc_overflow=lp.acc_overflow.value,
                 rounding=lp.rounding.value, output_overflow=lp.output_overflow.value,
                 requant=lp.requant.value)
        if lp.pad_value is not None:
            d["pad_value"] = lp.pad_value
        if lp.binary_output is not None:
            d["binary_output"] = lp.binary_output
        layers.append(d)
    return {"schema": "fxp.plan", "schema_version": plan.schema_version, "name": plan.name,
            "input": _spec_to_dict(plan.input), "layers": layers}


def plan_from_dict(d: object, source: str = "plan") -> Plan:
    """Build a :class:`Plan` from its dictionary; errors name the layer and key."""
    if not isinstance(d, dict):
        raise PlanError(f"{source}: a plan must be a JSON object")
    if d.get("schema", "fxp.plan") != "fxp.plan":
        raise PlanError(f"{source}: not an fxp plan (schema={d.get('schema')!r})")
    version = d.get("schema_version")
    if version != SCHEMA_VERSION:
        raise PlanError(f"{source}: schema_version {version!r} is not supported "
                        f"(this fxp reads version {SCHEMA_VERSION})")
    layers = []
    for i, ld in enumerate(d.get("layers", [])):
        if not isinstance(ld, dict) or "name" not in ld:
            raise PlanError(f"{source}: layers[{i}] must be an object with a 'name'")
        where = f"{source}: layer {ld['name']!r}"
        extra = set(ld) - _LAYER_KEYS
        if extra:
            raise PlanError(f"{where}: unknown keys {sorted(extra)}")
        try:
            layers.append(LayerPlan(
                name=str(ld["name"]), float_layer=bool(ld.get("float", False)),
                input=_spec_from_dict(ld.get("input"), f"{where} input"),
                weight=_spec_from_dict(ld.get("weight"), f"{where} weight"),
                bias=_spec_from_dict(ld.get("bias"), f"{where} bias"),
                output=_spec_from_dict(ld.get("output"), f"{where} output"),
                acc_bits=ld.get("acc_bits", 32), acc_overflow=ld.get("acc_overflow", "wrap"),
                rounding=ld.get("rounding", "half_up"),
                output_overflow=ld.get("output_overflow", "saturate"),
                requant=ld.get("requant", "pow2"), pad_value=ld.get("pad_value"),
                binary_output=ld.get("binary_output"),
                alpha=_spec_from_dict(ld.get("alpha"), f"{where} alpha")))
        except PlanError:
            raise
        except FxpError as exc:
            raise PlanError(f"{where}: {exc}") from exc
    spec = _spec_from_dict(d.get("input"), f"{source}: input")
    if spec is None:
        raise PlanError(f"{source}: the plan has no 'input' coding")
    return Plan(input=spec, layers=tuple(layers), name=str(d.get("name", "plan")))


def save_plan(plan: Plan, path: str | Path) -> Path:
    """Write ``plan`` as JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan_to_dict(plan), indent=2) + "\n")
    return path


def load_plan(path: str | Path) -> Plan:
    """Read a plan JSON file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PlanError(f"cannot read plan file {str(path)!r}: {exc.strerror}") from exc
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    return plan_from_dict(d, str(path))
