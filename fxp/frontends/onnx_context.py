"""State shared by the ONNX op handlers while one model is converted.

The :class:`ImportContext` knows which tensors are constants (initializers,
Constant outputs) and which are activations (with their IR shape, batch
``None``), collects the emitted IR nodes, and builds error messages that name
the ONNX node, its op_type and the offending value.

Size limits.  Every IR node emitted goes through :meth:`ImportContext.emit`,
which infers its output shape and refuses (:class:`ModelImportError` naming
the node, the shape and the limit) a per-sample tensor with a dim below 1 or
more than :data:`MAX_SAMPLE_ELEMENTS` elements, and a layer with more than
:data:`MAX_LAYER_MACS` multiply-accumulates per sample, so a few hundred bytes
of model (``Conv pads=[2**20] * 4``) cannot make ``fxp plan`` allocate
terabytes.  Shapes are computed with Python integers (no int64 wrap-around).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fxp.errors import GraphError, ModelImportError, UnsupportedOpError
from fxp.frontends.onnx_attrs import Attr, read_attrs
from fxp.ir.nodes import Node, Shape
from fxp.ir.stats import node_macs

__all__ = ["MAX_LAYER_MACS", "MAX_SAMPLE_ELEMENTS", "ImportContext", "finite_float32",
           "same_pads"]

MAX_SAMPLE_ELEMENTS = 1 << 28
"""Largest element count of one sample of any tensor (268M: 1 GiB of float32 per sample)."""

MAX_LAYER_MACS = 1 << 32
"""Largest multiply-accumulate count of one layer per sample (4.3e9; VGG-16's largest
layer needs 1.9e9)."""


def finite_float32(what: str, values: np.ndarray) -> np.ndarray:
    """``values`` (any float dtype) as float32, or :class:`ModelImportError` naming ``what``.

    Refuses NaN, infinities and finite values that overflow float32 (the
    message gives the first bad index and its value).

    >>> finite_float32("w", np.array([1.0, 2.0])).dtype
    dtype('float32')
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(values).astype(np.float32)
    bad = ~np.isfinite(out)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ModelImportError(f"{what} is not finite in float32: value "
                               f"{np.asarray(values)[idx].item()!r} at index {idx}")
    return out


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
        self._index: dict[str, int] = {}  # output tensor -> position in self.nodes
        self.node_name = ""
        self.batch: int | None = None
        """The batch size the model declares (``None`` if symbolic); the IR batch is free."""

    # ------------------------------------------------------------- errors
    def fail(self, node: Any, msg: str, cls: type[Exception] = UnsupportedOpError) -> Exception:
        """An exception of type ``cls`` naming ``node`` (name and op_type) on one line."""
        op = node.op_type if node.op_type.isidentifier() else repr(node.op_type[:200])
        return cls(f"node {self.node_name[:200]!r} ({op}): {msg}")

    # --------------------------------------------------------- attributes
    def attrs(self, node: Any, **specs: Attr) -> dict[str, Any]:
        """Attribute values of ``node``, typed and checked (see :mod:`~fxp.frontends.onnx_attrs`).

        Names outside ``specs`` are refused; absent ones take the spec's default.
        """
        return read_attrs(node, specs, lambda msg, cls: self.fail(node, msg, cls),
                          self.base_dir)

    def ints(self, node: Any, what: str, value: tuple[int, ...], n: int,
             minimum: int) -> tuple[int, ...]:
        """Check an INTS attribute value has ``n`` entries, each ``>= minimum``."""
        value = tuple(value)
        if len(value) != n or any(v < minimum for v in value):
            raise self.fail(node, f"attribute {what}={list(value)[:8]} must be {n} integers "
                                  f">= {minimum}", ModelImportError)
        return value

    def pads(self, node: Any, a: dict[str, Any], size: tuple[int, ...],
             kernel: tuple[int, ...], strides: tuple[int, ...],
             dilations: tuple[int, ...]) -> tuple[int, ...]:
        """Resolve ``auto_pad`` / ``pads`` to ``(top, left, bottom, right)``."""
        mode = a["auto_pad"] or "NOTSET"
        if mode == "NOTSET":
            return self.ints(node, "pads", (0, 0, 0, 0) if a["pads"] is None else a["pads"], 4, 0)
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
            raise self.fail(node, f"input {i} ({name[:200]!r}) is a constant; only activations "
                                  f"are supported there")
        if name not in self.shapes:
            raise self.fail(node, f"input {name[:200]!r} is not produced before this node "
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
                raise self.fail(node, f"{what} {name[:200]!r} must be a constant (initializer or "
                                      f"Constant), but it is computed at run time")
            raise self.fail(node, f"{what} {name[:200]!r} is not an initializer nor produced "
                                  f"before this node (missing initializer?)", ModelImportError)
        return self.consts[name]

    def weight(self, node: Any, i: int, what: str, *, optional: bool = False) -> np.ndarray | None:
        """Constant input ``i`` as float32 (float16/float64 converted)."""
        arr = self.const(node, i, what, optional=optional)
        if arr is None:
            return None
        if arr.dtype.kind != "f":
            raise self.fail(node, f"{what} {node.input[i][:200]!r} has dtype {arr.dtype}, expected "
                                  f"a float tensor", ModelImportError)
        if arr.size == 0:
            raise self.fail(node, f"{what} {node.input[i][:200]!r} has no elements (shape "
                                  f"{arr.shape})", ModelImportError)
        return self.float32(node, f"{what} {node.input[i][:200]!r}", arr)

    def float32(self, node: Any, what: str, values: np.ndarray) -> np.ndarray:
        """``values`` as float32; NaN, Inf or float32 overflow raise ModelImportError."""
        try:
            return finite_float32(what, values)
        except ModelImportError as e:
            raise self.fail(node, str(e), ModelImportError) from None

    def sole_use(self, tensor: str) -> bool:
        """True if ``tensor`` is read by exactly one ONNX node and is not a graph output."""
        return self.uses.get(tensor, 0) == 1 and tensor not in self.graph_outputs

    # -------------------------------------------------------------- emitting
    def emit(self, node: Node) -> None:
        """Append an IR node, inferring its output shape and checking the size limits."""
        self.shapes[node.output] = self._shape(node)
        self._index[node.output] = len(self.nodes)
        self.nodes.append(node)

    def unemit_last(self) -> Node:
        """Remove and return the last emitted node (its output tensor disappears)."""
        node = self.nodes.pop()
        del self.shapes[node.output], self._index[node.output]
        return node

    def _shape(self, node: Node) -> Shape:
        try:
            shape = node.infer_shape(*(self.shapes[t] for t in node.inputs))
        except GraphError as e:
            raise ModelImportError(str(e)) from None
        dims = shape[1:]
        if any(d < 1 for d in dims):
            raise ModelImportError(f"node {node.name[:200]!r} ({node.op_type}): output shape "
                                   f"{shape} has an empty dim")
        size = math.prod(dims)
        if size > MAX_SAMPLE_ELEMENTS:
            raise ModelImportError(f"node {node.name[:200]!r} ({node.op_type}): output shape "
                                   f"{shape} has {size} elements per sample, above the limit "
                                   f"MAX_SAMPLE_ELEMENTS = {MAX_SAMPLE_ELEMENTS}")
        macs = node_macs(node, shape)
        if macs > MAX_LAYER_MACS:
            raise ModelImportError(f"node {node.name[:200]!r} ({node.op_type}): {macs} "
                                   f"multiply-accumulates per sample (output shape {shape}), "
                                   f"above the limit MAX_LAYER_MACS = {MAX_LAYER_MACS}")
        return shape

    def producer(self, tensor: str) -> Node | None:
        """The emitted IR node writing ``tensor`` (``None`` for the graph input)."""
        idx = self._index.get(tensor)
        return None if idx is None else self.nodes[idx]

    def rewrite(self, old: Node, new: Node) -> None:
        """Replace emitted node ``old`` by ``new`` (which may write a new tensor name)."""
        shape = self._shape(new)
        idx = self._index.pop(old.output)
        del self.shapes[old.output]
        self.shapes[new.output] = shape
        self._index[new.output] = idx
        self.nodes[idx] = new
