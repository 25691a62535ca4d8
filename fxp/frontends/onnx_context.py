"""State shared by the ONNX op handlers while one model is converted.

The :class:`ImportContext` knows which tensors are constants (initializers,
Constant outputs) and which are activations (with their IR shape, batch
``None``), collects the emitted IR nodes, and builds error messages that name
the ONNX node, its op_type and the offending value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fxp.errors import GraphError, ModelImportError, UnsupportedOpError
from fxp.frontends.onnx_tensors import tensor_to_array
from fxp.ir.nodes import Node, Shape

__all__ = ["ImportContext", "same_pads"]

# AttributeProto.AttributeType values
_FLOAT, _INT, _STRING, _TENSOR, _FLOATS, _INTS = 1, 2, 3, 4, 6, 7


def same_pads(mode: str, size: tuple[int, ...], kernel: tuple[int, ...],
              strides: tuple[int, ...], dilations: tuple[int, ...]) -> tuple[int, ...]:
    """ONNX ``auto_pad`` SAME_UPPER / SAME_LOWER pads as ``(top, left, bottom, right)``.

    Output size is ``ceil(size / stride)``; the total padding
    ``max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)`` is split
    with the odd pixel at the end (SAME_UPPER) or at the beginning (SAME_LOWER).

    >>> same_pads("SAME_UPPER", (5, 6), (3, 2), (2, 2), (1, 1))
    (1, 0, 1, 0)
    >>> same_pads("SAME_LOWER", (4, 4), (2, 2), (1, 1), (1, 1))
    (1, 1, 0, 0)
    """
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        out = -(-n // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
        small, big = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else big)
        end.append(big if mode == "SAME_UPPER" else small)
    return (*begin, *end)


class ImportContext:
    """Conversion state for one ONNX graph.

    Parameters
    ----------
    opset : int
        Version of the default ONNX domain.
    consts : dict str -> ndarray
        Initializers, decoded and checked.
    uses : dict str -> int
        Number of ONNX node inputs reading each tensor.
    graph_outputs : set of str
    base_dir : str or None
        Model folder, for external data in Constant nodes.
    """

    def __init__(self, opset: int, consts: dict[str, np.ndarray], uses: dict[str, int],
                 graph_outputs: set[str], base_dir: str | None) -> None:
        self.opset = opset
        self.consts = consts
        self.uses = uses
        self.graph_outputs = graph_outputs
        self.base_dir = base_dir
        self.shapes: dict[str, Shape] = {}
        self.nodes: list[Node] = []
        self.node_name = ""
        self.batch: int | None = None
        """The batch size the model declares (``None`` if symbolic); the IR batch is free."""

    # ------------------------------------------------------------- errors
    def fail(self, node: Any, msg: str, cls: type[Exception] = UnsupportedOpError) -> Exception:
        """An exception of type ``cls`` naming ``node`` (name and op_type)."""
        return cls(f"node {self.node_name!r} ({node.op_type}): {msg}")

    # --------------------------------------------------------- attributes
    def attrs(self, node: Any, **defaults: Any) -> dict[str, Any]:
        """Attribute values of ``node``; names outside ``defaults`` are refused.

        Strings are decoded to ``str``, INTS/FLOATS to tuples.
        """
        out = dict(defaults)
        for a in node.attribute:
            if a.name not in defaults:
                raise self.fail(node, f"attribute {a.name!r} is not supported; supported "
                                      f"attributes: {sorted(defaults)}")
            if a.type == _FLOAT:
                out[a.name] = float(a.f)
            elif a.type == _INT:
                out[a.name] = int(a.i)
            elif a.type == _STRING:
                out[a.name] = a.s.decode("utf-8", "replace")
            elif a.type == _FLOATS:
                out[a.name] = tuple(float(v) for v in a.floats)
            elif a.type == _INTS:
                out[a.name] = tuple(int(v) for v in a.ints)
            elif a.type == _TENSOR:
                out[a.name] = tensor_to_array(a.t, self.base_dir)
            else:
                raise self.fail(node, f"attribute {a.name!r} has unsupported type {a.type}")
        return out

    def ints(self, node: Any, what: str, value: Any, n: int, minimum: int) -> tuple[int, ...]:
        """Check an INTS attribute has ``n`` entries, each ``>= minimum``."""
        value = tuple(value)
        if len(value) != n or any(v < minimum for v in value):
            raise self.fail(node, f"attribute {what}={list(value)} must be {n} integers "
                                  f">= {minimum}")
        return value

    def pads(self, node: Any, a: dict[str, Any], size: tuple[int, ...],
             kernel: tuple[int, ...], strides: tuple[int, ...],
             dilations: tuple[int, ...]) -> tuple[int, ...]:
        """Resolve ``auto_pad`` / ``pads`` to ``(top, left, bottom, right)``."""
        mode = a["auto_pad"] or "NOTSET"
        if mode == "NOTSET":
            return self.ints(node, "pads", a["pads"] or (0, 0, 0, 0), 4, 0)
        if mode == "VALID":
            return (0, 0, 0, 0)
        if mode in ("SAME_UPPER", "SAME_LOWER"):
            if any(d != 1 for d in dilations):
                raise self.fail(node, f"auto_pad={mode} with dilations={list(dilations)} is "
                                      f"not supported (ambiguous across ONNX versions)")
            return same_pads(mode, size, kernel, strides, dilations)
        raise self.fail(node, f"auto_pad={mode!r} is not one of NOTSET, SAME_UPPER, "
                              f"SAME_LOWER, VALID")

    # ------------------------------------------------------------ tensors
    def is_const(self, name: str) -> bool:
        """True if ``name`` is an initializer or a Constant output."""
        return name in self.consts

    def activation(self, node: Any, i: int) -> str:
        """Name of input ``i``, which must be an activation (not a constant)."""
        if i >= len(node.input) or not node.input[i]:
            raise self.fail(node, f"input {i} is missing", ModelImportError)
        name = node.input[i]
        if name in self.consts:
            raise self.fail(node, f"input {i} ({name!r}) is a constant; only activations "
                                  f"are supported there")
        if name not in self.shapes:
            raise self.fail(node, f"input {name!r} is not produced before this node "
                                  f"(missing initializer, dangling input or cycle)",
                            ModelImportError)
        return name

    def const(self, node: Any, i: int, what: str, *, optional: bool = False) -> np.ndarray | None:
        """Input ``i`` as a constant array (``None`` if optional and absent)."""
        if i >= len(node.input) or not node.input[i]:
            if optional:
                return None
            raise self.fail(node, f"{what} (input {i}) is missing", ModelImportError)
        name = node.input[i]
        if name not in self.consts:
            if name in self.shapes:
                raise self.fail(node, f"{what} {name!r} must be a constant (initializer or "
                                      f"Constant), but it is computed at run time")
            raise self.fail(node, f"{what} {name!r} is not an initializer nor produced before "
                                  f"this node (missing initializer?)", ModelImportError)
        return self.consts[name]

    def weight(self, node: Any, i: int, what: str, *, optional: bool = False) -> np.ndarray | None:
        """Constant input ``i`` as float32 (float16/float64 converted)."""
        arr = self.const(node, i, what, optional=optional)
        if arr is None:
            return None
        if arr.dtype.kind != "f":
            raise self.fail(node, f"{what} {node.input[i]!r} has dtype {arr.dtype}, expected "
                                  f"a float tensor", ModelImportError)
        return arr.astype(np.float32)

    def sole_use(self, tensor: str) -> bool:
        """True if ``tensor`` is read by exactly one ONNX node and is not a graph output."""
        return self.uses.get(tensor, 0) == 1 and tensor not in self.graph_outputs

    # -------------------------------------------------------------- emitting
    def emit(self, node: Node) -> None:
        """Append an IR node, inferring its output shape."""
        try:
            shape = node.infer_shape(*(self.shapes[t] for t in node.inputs))
        except GraphError as e:
            raise ModelImportError(str(e)) from None
        self.shapes[node.output] = shape
        self.nodes.append(node)

    def producer(self, tensor: str) -> Node | None:
        """The emitted IR node writing ``tensor`` (``None`` for the graph input)."""
        for n in reversed(self.nodes):
            if n.output == tensor:
                return n
        return None

    def rewrite(self, old: Node, new: Node) -> None:
        """Replace emitted node ``old`` by ``new`` (which may write a new tensor name)."""
        idx = next(i for i, n in enumerate(self.nodes) if n is old)
        self.nodes[idx] = new
        del self.shapes[old.output]
        self.shapes[new.output] = new.infer_shape(*(self.shapes[t] for t in new.inputs))
