"""Base class and shared conventions of the IR nodes (see :mod:`fxp.ir.nodes`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Literal, Union

import numpy as np
import numpy.typing as npt

from fxp.errors import GraphError

__all__ = ["Activation", "FloatArray", "Node", "Shape", "check_activation", "check_ints",
           "conv_output_size", "float32_array"]

Shape = tuple[Union[int, None], ...]
"""A tensor shape; dim 0 is the batch and is ``None`` when free."""

Activation = Union[Literal["relu"], tuple[float, float], None]
"""A fused activation: ``None``, ``"relu"`` or clip bounds ``(min, max)``."""

FloatArray = npt.NDArray[np.float32]


def conv_output_size(size: int, kernel: int, stride: int, dilation: int,
                     pad_begin: int, pad_end: int) -> int:
    """Output length of a sliding window along one axis (floor mode).

    ``floor((size + pad_begin + pad_end - ((kernel - 1) * dilation + 1)) / stride) + 1``

    >>> conv_output_size(5, 3, 2, 1, 1, 1)
    3
    """
    span = (kernel - 1) * dilation + 1
    return (size + pad_begin + pad_end - span) // stride + 1


def float32_array(array: object) -> FloatArray:
    """Read-only, C-contiguous float32 copy of ``array``."""
    arr = np.array(array, dtype=np.float32, order="C", copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False, kw_only=True)
class Node:
    """Base of all nodes.

    Attributes
    ----------
    name : str
        Unique layer name.
    inputs : tuple of str
        Names of the activation tensors read (weights live on the node).
    outputs : tuple of str
        Names of the tensors written (one for every op here).
    """

    op_type: ClassVar[str] = "Node"
    n_inputs: ClassVar[int] = 1

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if len(self.outputs) != 1:
            raise GraphError(f"node {self.name!r} ({self.op_type}): expected 1 output, "
                             f"got {len(self.outputs)}")
        if self.n_inputs >= 0 and len(self.inputs) != self.n_inputs:
            raise GraphError(f"node {self.name!r} ({self.op_type}): expected {self.n_inputs} "
                             f"input(s), got {len(self.inputs)}")

    @property
    def output(self) -> str:
        """The single output tensor name."""
        return self.outputs[0]

    def with_io(self, inputs: tuple[str, ...] | None = None,
                outputs: tuple[str, ...] | None = None) -> Node:
        """Return a copy with rewired input and/or output tensor names."""
        return replace(self, inputs=self.inputs if inputs is None else tuple(inputs),
                       outputs=self.outputs if outputs is None else tuple(outputs))

    def infer_shape(self, *shapes: Shape) -> Shape:
        """Output shape from input shapes (same shape by default)."""
        return shapes[0]

    def _fail(self, msg: str) -> GraphError:
        return GraphError(f"node {self.name[:200]!r} ({self.op_type}): {msg}")

    def _need_rank(self, shape: Shape, ranks: tuple[int, ...]) -> None:
        if len(shape) not in ranks:
            raise self._fail(f"expected input rank in {ranks}, got shape {shape}")


def check_activation(node: Node, act: Activation) -> None:
    if act is None or act == "relu":
        return
    if (isinstance(act, tuple) and len(act) == 2
            and all(isinstance(v, float) for v in act) and act[0] <= act[1]):
        return
    raise node._fail(f"fused_activation must be None, 'relu' or (min, max) floats with "
                     f"min <= max, got {act!r}")


def check_ints(node: Node, what: str, value: tuple[int, ...], n: int, minimum: int) -> None:
    if len(value) != n or any(int(v) != v or v < minimum for v in value):
        raise node._fail(f"{what} must be {n} integers >= {minimum}, got {value!r}")
