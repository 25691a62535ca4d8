"""Typed ONNX attribute readers: each handler declares what it expects.

A handler passes one :class:`Attr` per attribute it understands, e.g.::

    a = ctx.attrs(node, group=int_attr(1, minimum=1), transB=bool_attr(),
                  alpha=float_attr(1.0), auto_pad=str_attr("NOTSET", choices=AUTO_PADS))

and :func:`read_attrs` returns plain Python values (``int``, ``float``,
``str``, tuples of ints or floats, a numpy array for a tensor) or refuses the
node.  The rules, each a one-line error naming the node, the attribute, what
was expected and what was got:

* an attribute the handler does not declare, an attribute referring to a
  function attribute (``ref_attr_name``), or a string outside its ``choices``
  -> :class:`~fxp.errors.UnsupportedOpError`;
* a stored type (``AttributeProto.type``) other than the declared one -- an
  INTS where an INT is expected, the STRING ``"0"`` for ``transB``, a FLOAT
  for an INT -- or a repeated attribute -> :class:`~fxp.errors.ModelImportError`;
* a float that is NaN or infinite, an int outside ``choices`` (booleans such as
  ``transA`` / ``transB`` are INT 0 or 1), an int below ``minimum``, an INTS of
  the wrong ``length`` -> :class:`~fxp.errors.ModelImportError`.

Tensor attributes are decoded by :func:`~fxp.frontends.onnx_tensors.tensor_to_array`
(dtype, size and finiteness checks).

>>> int_attr(1, minimum=1)
Attr(kind='int', default=1, minimum=1, choices=None, length=None, finite=True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fxp.errors import FxpError, ModelImportError, UnsupportedOpError
from fxp.frontends.onnx_tensors import tensor_to_array

__all__ = ["AUTO_PADS", "Attr", "bool_attr", "float_attr", "floats_attr", "int_attr",
           "ints_attr", "read_attrs", "str_attr", "tensor_attr"]

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
"""The ``auto_pad`` values ONNX defines."""

# AttributeProto.AttributeType
_TYPE_NAMES = {0: "UNDEFINED", 1: "FLOAT", 2: "INT", 3: "STRING", 4: "TENSOR", 5: "GRAPH",
               6: "FLOATS", 7: "INTS", 8: "STRINGS", 9: "TENSORS", 10: "GRAPHS",
               11: "SPARSE_TENSOR", 12: "SPARSE_TENSORS", 13: "TYPE_PROTO", 14: "TYPE_PROTOS"}
_KINDS = {"float": 1, "int": 2, "string": 3, "tensor": 4, "floats": 6, "ints": 7}

Fail = Callable[[str, type], Exception]
"""``fail(message, exception class)`` -> an exception naming the node."""


@dataclass(frozen=True)
class Attr:
    """What one attribute must be.

    Attributes
    ----------
    kind : {"int", "float", "string", "ints", "floats", "tensor"}
        The ONNX attribute type that is accepted (no other).
    default : any
        Value when the attribute is absent (``None``: absent).
    minimum : int or None
        ``int`` / ``ints``: every value must be ``>= minimum``.
    choices : tuple or None
        ``int`` / ``string``: the allowed values.
    length : int or None
        ``ints``: the exact number of entries.
    finite : bool
        ``float`` / ``floats``: refuse NaN and infinities (the default).
    """

    kind: str
    default: Any = None
    minimum: int | None = None
    choices: tuple | None = None
    length: int | None = None
    finite: bool = True


def int_attr(default: int | None = None, *, minimum: int | None = None,
             choices: tuple[int, ...] | None = None) -> Attr:
    """An INT attribute."""
    return Attr("int", default, minimum=minimum, choices=choices)


def bool_attr(default: int = 0) -> Attr:
    """An INT attribute that is a boolean: exactly 0 or 1."""
    return Attr("int", default, choices=(0, 1))


def float_attr(default: float | None = None, *, finite: bool = True) -> Attr:
    """A FLOAT attribute (finite unless ``finite=False``)."""
    return Attr("float", default, finite=finite)


def str_attr(default: str | None = None, *, choices: tuple[str, ...] | None = None) -> Attr:
    """A STRING attribute (decoded as UTF-8)."""
    return Attr("string", default, choices=choices)


def ints_attr(default: tuple[int, ...] | None = None, *, minimum: int | None = None,
              length: int | None = None) -> Attr:
    """An INTS attribute (a tuple of ints)."""
    return Attr("ints", default, minimum=minimum, length=length)


def floats_attr(default: tuple[float, ...] | None = None, *, finite: bool = True) -> Attr:
    """A FLOATS attribute (a tuple of floats, finite unless ``finite=False``)."""
    return Attr("floats", default, finite=finite)


def tensor_attr() -> Attr:
    """A TENSOR attribute (a checked numpy array)."""
    return Attr("tensor")


def _show(value: Any) -> str:
    """``repr`` of an attribute value, cut to 200 characters."""
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 200 else text[:200] + "..."


def read_attrs(node: Any, specs: dict[str, Attr], fail: Fail,
               base_dir: str | None) -> dict[str, Any]:
    """Attribute values of ONNX ``node`` checked against ``specs``; defaults filled in.

    Parameters
    ----------
    node : onnx.NodeProto
    specs : dict str -> Attr
        Every attribute the handler understands.
    fail : callable
        ``fail(message, cls)`` builds the exception (naming the node).
    base_dir : str or None
        Model folder, for external data in tensor attributes.

    Raises
    ------
    UnsupportedOpError, ModelImportError
        See the module docstring.
    """
    out = {k: s.default for k, s in specs.items()}
    seen: set[str] = set()
    for a in node.attribute:
        spec = specs.get(a.name)
        if spec is None:
            raise fail(f"attribute {a.name[:200]!r} is not supported; supported attributes: "
                       f"{sorted(specs)}", UnsupportedOpError)
        if a.name in seen:
            raise fail(f"attribute {a.name!r} is given twice", ModelImportError)
        seen.add(a.name)
        if a.ref_attr_name:
            raise fail(f"attribute {a.name!r} refers to function attribute "
                       f"{a.ref_attr_name[:200]!r}; only literal values are supported",
                       UnsupportedOpError)
        want = _KINDS[spec.kind]
        if a.type != want:
            got = _TYPE_NAMES.get(a.type, f"unknown type {a.type}")
            raise fail(f"attribute {a.name!r} must be of type {_TYPE_NAMES[want]}, got {got}",
                       ModelImportError)
        out[a.name] = _check(a.name, _decode(a, spec, fail, base_dir), spec, fail)
    return out


def _decode(a: Any, spec: Attr, fail: Fail, base_dir: str | None) -> Any:
    if spec.kind == "int":
        return int(a.i)
    if spec.kind == "float":
        return float(a.f)
    if spec.kind == "string":
        return a.s.decode("utf-8", "replace")
    if spec.kind == "ints":
        return tuple(int(v) for v in a.ints)
    if spec.kind == "floats":
        return tuple(float(v) for v in a.floats)
    try:
        return tensor_to_array(a.t, base_dir)
    except FxpError as e:
        raise fail(f"attribute {a.name!r}: {e}", type(e)) from None


def _check(name: str, value: Any, spec: Attr, fail: Fail) -> Any:
    floats = (value,) if spec.kind == "float" else value if spec.kind == "floats" else ()
    floats = floats if spec.finite else ()
    bad = next((v for v in floats if not math.isfinite(v)), None)
    if bad is not None:
        raise fail(f"attribute {name!r} must be finite, got {_show(value)}", ModelImportError)
    if spec.choices is not None and value not in spec.choices:
        cls = UnsupportedOpError if spec.kind == "string" else ModelImportError
        raise fail(f"attribute {name}={_show(value)} is not one of {list(spec.choices)}", cls)
    ints = (value,) if spec.kind == "int" else value if spec.kind == "ints" else ()
    if spec.length is not None and len(ints) != spec.length:
        raise fail(f"attribute {name}={_show(value)} must have {spec.length} entries, got "
                   f"{len(ints)}", ModelImportError)
    if spec.minimum is not None and any(v < spec.minimum for v in ints):
        raise fail(f"attribute {name}={_show(value)} must be >= {spec.minimum}",
                   ModelImportError)
    return value
