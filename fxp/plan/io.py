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
``"dot"``, ``"threshold"``), ``alpha`` and ``beta`` (tensor objects)::

    {"name": "conv2", "weight": {"format": "binary"}, "alpha": {"format": "ufixed<8,0>"},
     "output": {"format": "ufixed<8,3>"}, "pad_value": 0, "binary_output": "scale", ...}

Shift-add (power-of-two weight) layers: a tensor may carry the optional key
``kind``: ``"fixed"`` (the default, never written) or ``"shift"``
(:meth:`TensorSpec.shift`; weights only, power-of-two formats only), meaning
every weight code is 0 or ``+-2**k`` and the layer multiplies by shifting::

    {"name": "conv1", "weight": {"format": "fixed<16,1>", "kind": "shift"}, ...}

A layer with weights may carry ``acc_order``: ``"fxp"`` (the default, never
written) or ``"hls4ml"`` (hls4ml's accumulation order, see
:class:`~fxp.plan.plan.LayerPlan`)::

    {"name": "conv1", "acc_bits": 18, "acc_overflow": "saturate", "acc_order": "hls4ml", ...}

A final Softmax may carry ``softmax`` (hls4ml's table softmax, see
:mod:`fxp.plan.softmax`) with an ``output`` format, and the plan may carry
``input_rounding`` / ``input_overflow`` (how the float input is converted;
defaults ``"half_even"`` / ``"saturate"``, never written)::

    {"name": "sm", "output": {"format": "ufixed<16,1>"}, "softmax": {"impl": "hls4ml"}, ...}

A power-of-two layer with weights may carry ``acc_frac_bits`` (an integer),
``acc_rounding``, ``weight_rounding`` / ``weight_overflow``, ``bias_rounding``
/ ``bias_overflow``, ``result_overflow`` (mode strings), ``result`` (a tensor
object) and ``param_decimals`` (a boolean), each
written only when it is not the default (see :class:`~fxp.plan.plan.LayerPlan`)::

    {"name": "fc1", "acc_bits": 16, "acc_frac_bits": 10, "weight_rounding": "floor",
     "weight_overflow": "wrap", "param_decimals": true, ...}

These keys are new but optional, so the schema version stays 1 and older
files load unchanged.

Reading is strict (:func:`plan_from_dict`): booleans must be JSON booleans
(``"float": "false"`` is refused, not read as true), integers JSON integers
(``zero_point: 1.5`` and ``acc_bits: "32"`` are refused, never rounded or
converted), numbers finite, strings strings and lists lists; unknown keys are
refused.  Every error is one :class:`~fxp.errors.PlanError` line naming the
file, the layer and the key.  :func:`load_plan` refuses files over
:data:`MAX_PLAN_BYTES`, non-UTF-8 text, duplicate object keys, ``NaN`` /
``Infinity`` and nesting too deep for the parser, also as a PlanError.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from fxp.core.format import QFormat
from fxp.errors import FxpError, PlanError
from fxp.fileio import write_text
from fxp.plan.plan import SCHEMA_VERSION, LayerPlan, Plan, TensorSpec
from fxp.plan.softmax import SoftmaxTable

__all__ = ["MAX_PLAN_BYTES", "load_plan", "plan_from_dict", "plan_to_dict", "save_plan"]

MAX_PLAN_BYTES = 64 << 20
"""Largest plan file :func:`load_plan` reads (64 MiB; a 50,000-layer plan is about 15 MiB)."""

MAX_NAME_CHARS = 1000
"""Longest plan or layer name accepted."""

_TOP_KEYS = {"schema", "schema_version", "name", "input", "layers", "input_rounding",
             "input_overflow"}
_LAYER_KEYS = {"name", "float", "input", "weight", "bias", "output", "acc_bits", "acc_overflow",
               "rounding", "output_overflow", "requant", "pad_value", "binary_output", "alpha",
               "beta", "acc_order", "softmax", "acc_frac_bits", "acc_rounding", "weight_rounding",
               "weight_overflow", "bias_rounding", "bias_overflow", "param_decimals", "result", "result_overflow"}
_SPEC_KEYS = {"format", "scales", "zero_point", "axis", "kind", "channel_formats"}
_MODE_KEYS = {"acc_overflow": "wrap", "rounding": "half_up", "output_overflow": "saturate",
              "requant": "pow2", "binary_output": None, "acc_order": "fxp",
              "acc_rounding": "floor", "weight_rounding": "half_even",
              "weight_overflow": "saturate", "bias_rounding": "half_even",
              "bias_overflow": "saturate", "result_overflow": "saturate"}
"""String keys of a layer and their defaults when absent (an empty string is not absent)."""
_PARAM_MODES = ("acc_rounding", "weight_rounding", "weight_overflow", "bias_rounding",
                "bias_overflow", "result_overflow")


def _shown(value: object) -> str:
    """A one-line, bounded description of a JSON value for error messages."""
    if isinstance(value, dict):
        return f"an object with {len(value)} key{'s' if len(value) != 1 else ''}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def _json_type(value: object) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def _describe(value: object) -> str:
    """``string '32'``, ``number 1.5``, ``a list of 3 items``: the JSON type and the value."""
    if isinstance(value, (list, dict)):
        return _shown(value)
    if value is None:
        return "null"
    return f"{_json_type(value)} {_shown(value)}"


def _bad(where: str, key: str, want: str, value: object) -> PlanError:
    return PlanError(f"{where}: {key!r} must be {want}, got {_describe(value)}")


def _int(d: dict, key: str, where: str, lo: int, hi: int, default: int | None) -> int | None:
    """A JSON integer in ``lo..hi`` (not a bool, float or string) or ``default`` when absent."""
    if key not in d:
        return default
    v = d[key]
    if type(v) is not int:
        raise _bad(where, key, "an integer" if hi >= 1 << 62 else f"an integer in {lo}..{hi}", v)
    if not lo <= v <= hi:
        raise PlanError(f"{where}: {key}={_shown(v)} must be an int in {lo}..{hi}")
    return v


def _str(d: dict, key: str, where: str, default: str | None, max_len: int = 200
         ) -> str | None:
    """A JSON string of at most ``max_len`` characters or ``default`` when absent."""
    if key not in d:
        return default
    v = d[key]
    if not isinstance(v, str):
        raise _bad(where, key, "a string", v)
    if len(v) > max_len:
        raise PlanError(f"{where}: {key!r} is a string of {len(v)} characters (at most "
                        f"{max_len}): {v[:40]!r}...")
    return v


def _spec_to_dict(spec: TensorSpec | None) -> dict | None:
    if spec is None:
        return None
    if spec.is_binary:
        return {"format": "binary"}
    d: dict = {"format": str(spec.fmt)}
    if spec.is_shift:
        d["kind"] = "shift"
    if spec.channel_formats is not None:
        d["channel_formats"] = [str(f) for f in spec.channel_formats]
    if spec.scales is not None:
        d["scales"] = list(spec.scales)
        d["zero_point"] = spec.zero_point
        if spec.axis is not None:
            d["axis"] = spec.axis
    return d


def _spec_from_dict(d: object, where: str) -> TensorSpec:
    """One tensor object; ``where`` names the file, layer and key."""
    if not isinstance(d, dict):
        raise PlanError(f"{where}: expected an object with a 'format' key, got "
                        f"{_describe(d)}")
    extra = set(d) - _SPEC_KEYS
    if extra:
        raise PlanError(f"{where}: unknown keys {sorted(extra)[:10]} (allowed: "
                        f"{sorted(_SPEC_KEYS)})")
    fmt = _str(d, "format", where, None)
    if fmt is None:
        raise PlanError(f"{where}: missing the 'format' key")
    if fmt.strip().lower() == "binary":
        if set(d) != {"format"}:
            raise PlanError(f"{where}: a binary tensor takes no {sorted(set(d) - {'format'})}")
        return TensorSpec.binary()
    kind = _str(d, "kind", where, "fixed")
    if kind not in ("fixed", "shift"):
        raise PlanError(f"{where}: kind must be 'fixed' or 'shift' (binary tensors are "
                        f"{{\"format\": \"binary\"}}), got {kind!r}")
    scales = d.get("scales")
    if "scales" in d:
        if not isinstance(scales, list) or not scales:
            raise _bad(where, "scales", "a non-empty list of numbers", scales)
        for i, v in enumerate(scales):
            if type(v) not in (int, float):
                raise PlanError(f"{where}: scales[{i}] must be a number, got "
                                f"{_describe(v)}")
            if not math.isfinite(v) or v <= 0:
                raise PlanError(f"{where}: scales must be finite and > 0, got scales[{i}] = "
                                f"{_shown(v)}")
    elif "zero_point" in d or "axis" in d:
        raise PlanError(f"{where}: 'zero_point' and 'axis' are for affine tensors; give "
                        "'scales' too (a power-of-two tensor has only a 'format')")
    zero_point = _int(d, "zero_point", where, -(1 << 63), (1 << 63) - 1, 0)
    axis = _int(d, "axis", where, 0, 3, None)
    if scales is not None and len(scales) > 1 and axis is None:
        raise PlanError(f"{where}: {len(scales)} per-channel scales need an 'axis' (0: the "
                        "output channels of a weight)")
    chans = d.get("channel_formats")
    if "channel_formats" in d and (not isinstance(chans, list) or not chans
                                   or not all(isinstance(f, str) for f in chans)):
        raise _bad(where, "channel_formats", "a non-empty list of format strings", chans)
    try:
        return TensorSpec(QFormat.parse(fmt), None if scales is None else tuple(scales),
                          zero_point, axis, kind,
                          None if chans is None else tuple(QFormat.parse(f) for f in chans))
    except FxpError as exc:
        raise PlanError(f"{where}: {exc}") from None


def plan_to_dict(plan: Plan) -> dict:
    """The JSON-ready dictionary of ``plan``."""
    layers = []
    for lp in plan.layers:
        d = {"name": lp.name}
        if lp.float_layer:
            d["float"] = True
        for key in ("input", "weight", "bias", "output", "alpha", "beta", "result"):
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
        if lp.acc_order != "fxp":
            d["acc_order"] = lp.acc_order
        if lp.softmax is not None:
            d["softmax"] = lp.softmax.to_dict()
        if lp.acc_frac_bits is not None:
            d["acc_frac_bits"] = lp.acc_frac_bits
        for key in _PARAM_MODES:
            value = getattr(lp, key).value
            if value != _MODE_KEYS[key] and (key != "acc_rounding" or lp.acc_frac_bits is not None):
                d[key] = value
        if lp.param_decimals:
            d["param_decimals"] = True
        layers.append(d)
    out = {"schema": "fxp.plan", "schema_version": plan.schema_version, "name": plan.name,
           "input": _spec_to_dict(plan.input)}
    if plan.input_rounding.value != "half_even":
        out["input_rounding"] = plan.input_rounding.value
    if plan.input_overflow.value != "saturate":
        out["input_overflow"] = plan.input_overflow.value
    out["layers"] = layers
    return out


def _layer_from_dict(ld: object, i: int, source: str) -> LayerPlan:
    if not isinstance(ld, dict):
        raise PlanError(f"{source}: layers[{i}] must be an object with a 'name', got "
                        f"{_describe(ld)}")
    name = _str(ld, "name", f"{source}: layers[{i}]", None, MAX_NAME_CHARS)
    if not name:
        raise PlanError(f"{source}: layers[{i}] needs a non-empty string 'name'")
    where = f"{source}: layer {name!r}"
    extra = set(ld) - _LAYER_KEYS
    if extra:
        raise PlanError(f"{where}: unknown keys {sorted(extra)[:10]}")
    float_layer = ld.get("float", False)
    if type(float_layer) is not bool:
        raise _bad(where, "float", "a JSON boolean (true or false)", float_layer)
    specs = {key: _spec_from_dict(ld[key], f"{where} {key}") if ld.get(key) is not None else None
             for key in ("input", "weight", "bias", "output", "alpha", "beta", "result")}
    modes = {key: _str(ld, key, where, default) for key, default in _MODE_KEYS.items()}
    softmax = SoftmaxTable.from_dict(ld["softmax"], f"{where} softmax") \
        if ld.get("softmax") is not None else None
    decimals = ld.get("param_decimals", False)
    if type(decimals) is not bool:
        raise _bad(where, "param_decimals", "a JSON boolean (true or false)", decimals)
    try:
        return LayerPlan(name=name, float_layer=float_layer, **specs, **modes, softmax=softmax,
                         acc_bits=_int(ld, "acc_bits", where, 1, 64, 32),
                         pad_value=_int(ld, "pad_value", where, -1, 1, None),
                         acc_frac_bits=_int(ld, "acc_frac_bits", where, -64, 128, None),
                         param_decimals=decimals)
    except FxpError as exc:  # name the file and the layer once
        msg = str(exc)
        if not msg.startswith(source):
            msg = f"{source}: {msg}" if msg.startswith(f"layer {name!r}") else f"{where}: {msg}"
        raise PlanError(msg) from None


def plan_from_dict(d: object, source: str = "plan") -> Plan:
    """Build a :class:`Plan` from its dictionary (the parsed JSON), strictly.

    Parameters
    ----------
    d : dict
        The plan object (see the module docstring for the schema).
    source : str
        Where it came from (a file name), the first word of every error.

    Raises
    ------
    PlanError
        A missing or unknown key, a value of the wrong JSON type (a string for a
        number, a float for an integer, a string for a boolean), out of range,
        or layers listed twice; the message names ``source``, the layer and the key.
    """
    if not isinstance(d, dict):
        raise PlanError(f"{source}: a plan must be a JSON object, got {_json_type(d)}")
    extra = set(d) - _TOP_KEYS
    if extra:
        raise PlanError(f"{source}: unknown top-level keys {sorted(map(str, extra))[:10]} "
                        f"(allowed: {sorted(_TOP_KEYS)})")
    schema = d.get("schema", "fxp.plan")
    if schema != "fxp.plan":
        raise PlanError(f"{source}: not an fxp plan (schema={_shown(schema)})")
    version = d.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise PlanError(f"{source}: schema_version {_shown(version)} is not supported "
                        f"(this fxp reads version {SCHEMA_VERSION})")
    name = _str(d, "name", source, "plan", MAX_NAME_CHARS)
    raw_layers = d.get("layers", [])
    if not isinstance(raw_layers, list):
        raise _bad(source, "layers", "a list of layer objects", raw_layers)
    layers = [_layer_from_dict(ld, i, source) for i, ld in enumerate(raw_layers)]
    if d.get("input") is None:
        raise PlanError(f"{source}: the plan has no 'input' coding")
    spec = _spec_from_dict(d["input"], f"{source}: input")
    in_modes = {key: _str(d, key, source, default) for key, default in
                (("input_rounding", "half_even"), ("input_overflow", "saturate"))}
    try:
        return Plan(input=spec, layers=tuple(layers), name=name, **in_modes)
    except FxpError as exc:
        raise PlanError(f"{source}: {exc}") from None


def save_plan(plan: Plan, path: str | Path) -> Path:
    """Write ``plan`` as JSON (atomically, :func:`fxp.fileio.write_text`); returns the path.

    Raises
    ------
    OutputError
        The file or its folder cannot be written.
    """
    return write_text(path, json.dumps(plan_to_dict(plan), indent=2) + "\n")


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _unique_keys(pairs: list) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k[:80]!r}")
        out[k] = v
    return out


def load_plan(path: str | Path) -> Plan:
    """Read a plan JSON file; every error is one :class:`PlanError` line naming the file.

    Raises
    ------
    PlanError
        The file is missing, unreadable, larger than :data:`MAX_PLAN_BYTES`,
        not UTF-8, not JSON (or uses ``NaN``, ``Infinity``, duplicate keys, or
        nesting too deep to parse), or not a valid plan (:func:`plan_from_dict`).
    """
    path = Path(path)
    cut = str(path) if len(str(path)) <= 200 else str(path)[:200] + "..."
    shown = cut if cut.isprintable() else repr(cut)  # the file, first word of every error
    try:
        with path.open("rb") as f:
            blob = f.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise PlanError(f"cannot read plan file {cut!r}: "
                        f"{exc.strerror or type(exc).__name__}") from None
    if len(blob) > MAX_PLAN_BYTES:
        raise PlanError(f"plan file {cut!r} is larger than {MAX_PLAN_BYTES:,} bytes; "
                        "refusing to read it")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(f"plan file {cut!r} is not UTF-8 text (byte {exc.start}: "
                        f"{blob[exc.start:exc.start + 1]!r})") from None
    try:
        d = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{shown}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise PlanError(f"{shown}: JSON nested too deeply to be a plan") from None
    except ValueError as exc:  # NaN/Infinity, duplicate keys, integers of > 4300 digits
        raise PlanError(f"{shown}: not a valid plan JSON ({str(exc)[:120]})") from None
    return plan_from_dict(d, shown)
