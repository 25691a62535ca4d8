"""Typed layer nodes of the fxp model IR.

Every node is a frozen dataclass with typed attributes (never an attribute
dict).  Layout is NCHW: activations are ``[N, C, H, W]`` for images and
``[N, F]`` for vectors.  Weights are float32 numpy arrays stored on the node.
Shapes handled by :meth:`Node.infer_shape` carry the batch dimension as
``None`` (the batch is free: any ``N >= 1`` runs).

Conventions
-----------
* ``strides``, ``dilations``: ``(along H, along W)``, in pixels, all >= 1.
* ``pads``: ``(top, left, bottom, right)`` in pixels, each >= 0; asymmetric
  padding is allowed.  This is ONNX's ``[x1_begin, x2_begin, x1_end, x2_end]``.
* ``fused_activation`` on :class:`Conv2D` / :class:`Dense`: ``None`` (identity),
  ``"relu"``, or a ``(min, max)`` pair of floats for a clip (ReLU6 is
  ``(0.0, 6.0)``).  It is applied to the layer's output after the bias.

>>> import numpy as np
>>> d = Dense(name="fc", inputs=("x",), outputs=("y",),
...           weight=np.ones((3, 4), np.float32), bias=None)
>>> d.infer_shape((None, 4))
(None, 3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from fxp.ir.node_base import (
    Activation,
    FloatArray,
    Node,
    Shape,
    check_activation,
    check_ints,
    conv_output_size,
    float32_array,
)

__all__ = [
    "Activation",
    "Add",
    "AvgPool2D",
    "BatchNorm",
    "Clip",
    "Concat",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "HardSwish",
    "Identity",
    "MaxPool2D",
    "Mul",
    "Node",
    "LeakyRelu",
    "Pad",
    "ReLU",
    "Requantize",
    "Reshape",
    "Sigmoid",
    "Shape",
    "Softmax",
    "Tanh",
    "conv_output_size",
]


@dataclass(frozen=True, eq=False, kw_only=True)
class Conv2D(Node):
    """2-D cross-correlation (ONNX Conv), optionally grouped or depthwise.

    ``y[n, o, i, j] = bias[o] + sum_{c, p, q} weight[o, c, p, q] *
    xpad[n, g*Cin/groups + c, i*sh + p*dh, j*sw + q*dw]`` with ``g = o // (Cout/groups)``
    and zero padding.  Depthwise is ``groups == Cin`` with ``weight.shape[1] == 1``.

    Attributes
    ----------
    weight : float32 array [Cout, Cin/groups, kh, kw]
    bias : float32 array [Cout] or None
    strides, dilations : (int, int)
    pads : (top, left, bottom, right)
    groups : int
    fused_activation : None, "relu" or (min, max)
    """

    op_type: ClassVar[str] = "Conv2D"

    weight: FloatArray
    bias: FloatArray | None = None
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    groups: int = 1
    fused_activation: Activation = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "weight", float32_array(self.weight))
        if self.weight.ndim != 4:
            raise self._fail(f"weight must be [Cout, Cin/groups, kh, kw], got {self.weight.shape}")
        if self.bias is not None:
            object.__setattr__(self, "bias", float32_array(self.bias))
            if self.bias.shape != (self.weight.shape[0],):
                raise self._fail(f"bias shape {self.bias.shape} != ({self.weight.shape[0]},)")
        for what, n, lo in (("strides", 2, 1), ("pads", 4, 0), ("dilations", 2, 1)):
            value = tuple(int(v) for v in getattr(self, what))
            check_ints(self, what, value, n, lo)
            object.__setattr__(self, what, value)
        if self.groups < 1 or self.weight.shape[0] % self.groups:
            raise self._fail(f"groups={self.groups} must be >= 1 and divide "
                             f"Cout={self.weight.shape[0]}")
        check_activation(self, self.fused_activation)

    @property
    def kernel(self) -> tuple[int, int]:
        """Kernel size ``(kh, kw)``."""
        return (int(self.weight.shape[2]), int(self.weight.shape[3]))

    def infer_shape(self, *shapes: Shape) -> Shape:
        (shape,) = shapes
        self._need_rank(shape, (4,))
        cin = self.weight.shape[1] * self.groups
        if shape[1] != cin:
            raise self._fail(f"input has {shape[1]} channels, weight expects "
                             f"{self.weight.shape[1]} x groups {self.groups} = {cin}")
        out = [conv_output_size(shape[2 + a], self.kernel[a], self.strides[a],
                                self.dilations[a], self.pads[a], self.pads[2 + a])
               for a in range(2)]
        if min(out) < 1:
            raise self._fail(f"kernel {self.kernel} (dilations {self.dilations}) is larger "
                             f"than the padded input {shape[2:]} with pads {self.pads}")
        return (shape[0], int(self.weight.shape[0]), out[0], out[1])


@dataclass(frozen=True, eq=False, kw_only=True)
class Dense(Node):
    """Fully connected layer: ``y = x @ weight.T + bias`` on ``[N, in]`` inputs.

    Attributes
    ----------
    weight : float32 array [out, in]
    bias : float32 array [out] or None
    fused_activation : None, "relu" or (min, max)
    """

    op_type: ClassVar[str] = "Dense"

    weight: FloatArray
    bias: FloatArray | None = None
    fused_activation: Activation = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "weight", float32_array(self.weight))
        if self.weight.ndim != 2:
            raise self._fail(f"weight must be [out, in], got {self.weight.shape}")
        if self.bias is not None:
            object.__setattr__(self, "bias", float32_array(self.bias))
            if self.bias.shape != (self.weight.shape[0],):
                raise self._fail(f"bias shape {self.bias.shape} != ({self.weight.shape[0]},)")
        check_activation(self, self.fused_activation)

    def infer_shape(self, *shapes: Shape) -> Shape:
        (shape,) = shapes
        self._need_rank(shape, (2,))
        if shape[1] != self.weight.shape[1]:
            raise self._fail(f"input has {shape[1]} features, weight expects "
                             f"{self.weight.shape[1]}")
        return (shape[0], int(self.weight.shape[0]))


@dataclass(frozen=True, eq=False, kw_only=True)
class _Pool2D(Node):
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        for what, n, lo in (("kernel", 2, 1), ("strides", 2, 1), ("pads", 4, 0)):
            value = tuple(int(v) for v in getattr(self, what))
            check_ints(self, what, value, n, lo)
            object.__setattr__(self, what, value)
        if any(self.pads[a] >= self.kernel[a % 2] for a in range(4)):
            raise self._fail(f"pads {self.pads} must be smaller than the kernel {self.kernel}")

    def infer_shape(self, *shapes: Shape) -> Shape:
        (shape,) = shapes
        self._need_rank(shape, (4,))
        out = [conv_output_size(shape[2 + a], self.kernel[a], self.strides[a], 1,
                                self.pads[a], self.pads[2 + a]) for a in range(2)]
        if min(out) < 1:
            raise self._fail(f"kernel {self.kernel} is larger than the padded input "
                             f"{shape[2:]} with pads {self.pads}")
        return (shape[0], shape[1], out[0], out[1])


@dataclass(frozen=True, eq=False, kw_only=True)
class MaxPool2D(_Pool2D):
    """Max over each window; padded positions never win (they act as -inf).

    Floor-mode output size only (ONNX ``ceil_mode=0``).
    """

    op_type: ClassVar[str] = "MaxPool2D"


@dataclass(frozen=True, eq=False, kw_only=True)
class AvgPool2D(_Pool2D):
    """Mean over each window (floor-mode output size).

    With ``count_include_pad=True`` the divisor is always ``kh * kw`` (padding
    counts as zeros); otherwise it is the number of real input pixels in the
    window.
    """

    op_type: ClassVar[str] = "AvgPool2D"
    count_include_pad: bool = False


@dataclass(frozen=True, eq=False, kw_only=True)
class GlobalAvgPool(Node):
    """Mean over H and W: ``[N, C, H, W] -> [N, C, 1, 1]``."""

    op_type: ClassVar[str] = "GlobalAvgPool"

    def infer_shape(self, *shapes: Shape) -> Shape:
        (shape,) = shapes
        self._need_rank(shape, (4,))
        return (shape[0], shape[1], 1, 1)


@dataclass(frozen=True, eq=False, kw_only=True)
class ReLU(Node):
    """``max(x, 0)`` elementwise."""

    op_type: ClassVar[str] = "ReLU"


@dataclass(frozen=True, eq=False, kw_only=True)
class Clip(Node):
    """``min(max(x, min_value), max_value)`` elementwise; ReLU6 is ``Clip(0, 6)``.

    Bounds may be ``-inf`` / ``inf`` for a one-sided clip.
    """

    op_type: ClassVar[str] = "Clip"
    min_value: float = float("-inf")
    max_value: float = float("inf")

    def __post_init__(self) -> None:
        super().__post_init__()
        lo, hi = float(self.min_value), float(self.max_value)
        if np.isnan(lo) or np.isnan(hi) or lo > hi:
            raise self._fail(f"need min_value <= max_value, got ({lo}, {hi})")
        object.__setattr__(self, "min_value", lo)
        object.__setattr__(self, "max_value", hi)


@dataclass(frozen=True, eq=False, kw_only=True)
class Sigmoid(Node):
    """Logistic ``1 / (1 + exp(-x))`` elementwise (ONNX Sigmoid)."""

    op_type: ClassVar[str] = "Sigmoid"


@dataclass(frozen=True, eq=False, kw_only=True)
class Tanh(Node):
    """Hyperbolic tangent elementwise (ONNX Tanh, TFLite TANH)."""

    op_type: ClassVar[str] = "Tanh"


@dataclass(frozen=True, eq=False, kw_only=True)
class HardSwish(Node):
    """``x * min(max(x + 3, 0), 6) / 6`` elementwise (ONNX HardSwish, TFLite HARD_SWISH)."""

    op_type: ClassVar[str] = "HardSwish"


@dataclass(frozen=True, eq=False, kw_only=True)
class Requantize(Node):
    """The identity on real values; an integer plan gives its output its own coding.

    A re-coding point (TFLite ``QUANTIZE`` between integer types): the plan
    entry's ``output`` spec says into which coding the codes are requantized.
    """

    op_type: ClassVar[str] = "Requantize"


@dataclass(frozen=True, eq=False, kw_only=True)
class Pad(Node):
    """Constant padding of the spatial axes of ``[N, C, H, W]`` (ONNX Pad, TFLite PAD).

    ``pads`` are ``(top, left, bottom, right)`` in pixels (each >= 0);
    padded positions hold the real ``value`` (0.0: zero padding, the zero
    point in affine codes).
    """

    op_type: ClassVar[str] = "Pad"
    pads: tuple[int, int, int, int]
    value: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        value = tuple(int(v) for v in self.pads)
        check_ints(self, "pads", value, 4, 0)
        object.__setattr__(self, "pads", value)
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float, np.number)) \
                or not np.isfinite(float(self.value)):
            raise self._fail(f"value must be a finite number, got {self.value!r:.60}")
        object.__setattr__(self, "value", float(self.value))

    def infer_shape(self, *shapes: Shape) -> Shape:
        (shape,) = shapes
        self._need_rank(shape, (4,))
        t, left, b, r = self.pads
        return (shape[0], shape[1], shape[2] + t + b, shape[3] + left + r)


@dataclass(frozen=True, eq=False, kw_only=True)
class LeakyRelu(Node):
    """``x if x >= 0 else alpha * x`` elementwise (ONNX LeakyRelu; ``alpha`` finite)."""

    op_type: ClassVar[str] = "LeakyRelu"
    alpha: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float, np.number)) \
                or not np.isfinite(float(self.alpha)):
            raise self._fail(f"alpha must be a finite number, got {self.alpha!r:.60}")
        object.__setattr__(self, "alpha", float(self.alpha))


@dataclass(frozen=True, eq=False, kw_only=True)
class Add(Node):
    """Elementwise sum of two activations of identical shape (residual join)."""

    op_type: ClassVar[str] = "Add"
    n_inputs: ClassVar[int] = 2

    def infer_shape(self, *shapes: Shape) -> Shape:
        a, b = shapes
        if tuple(a[1:]) != tuple(b[1:]) or len(a) != len(b):
            raise self._fail(f"input shapes differ: {a} vs {b}")
        return a


@dataclass(frozen=True, eq=False, kw_only=True)
class Mul(Node):
    """Elementwise product of two activations (ONNX Mul), numpy broadcasting.

    Both inputs have the same rank; each non-batch dimension is equal or 1 in
    one of them (e.g. an SE gate ``[N, C, 1, 1]`` times ``[N, C, H, W]``).
    """

    op_type: ClassVar[str] = "Mul"
    n_inputs: ClassVar[int] = 2

    def infer_shape(self, *shapes: Shape) -> Shape:
        a, b = shapes
        if len(a) != len(b) or any(x != y and 1 not in (x, y) for x, y in zip(a[1:], b[1:])):
            raise self._fail(f"input shapes do not broadcast (same rank, each non-batch "
                             f"dimension equal or 1): {a} vs {b}")
        return (a[0], *(x if y == 1 else y for x, y in zip(a[1:], b[1:])))


@dataclass(frozen=True, eq=False, kw_only=True)
class Concat(Node):
    """Concatenation of >= 1 activations along a non-batch ``axis``."""

    op_type: ClassVar[str] = "Concat"
    n_inputs: ClassVar[int] = -1
    axis: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.inputs:
            raise self._fail("needs at least one input")

    def infer_shape(self, *shapes: Shape) -> Shape:
        rank = len(shapes[0])
        if not 1 <= self.axis < rank:
            raise self._fail(f"axis {self.axis} must be a non-batch axis of rank-{rank} inputs")
        for s in shapes[1:]:
            if len(s) != rank or any(s[a] != shapes[0][a] for a in range(1, rank)
                                     if a != self.axis):
                raise self._fail(f"input shapes {list(shapes)} differ outside axis {self.axis}")
        out = list(shapes[0])
        out[self.axis] = sum(int(s[self.axis]) for s in shapes)  # type: ignore[arg-type]
        return tuple(out)


@dataclass(frozen=True, eq=False, kw_only=True)
class Flatten(Node):
    """``[N, d1, d2, ...] -> [N, d1*d2*...]`` in C (row-major) order."""

    op_type: ClassVar[str] = "Flatten"

    def infer_shape(self, *shapes: Shape) -> Shape:
        (shape,) = shapes
        return (shape[0], math.prod(shape[1:]))


@dataclass(frozen=True, eq=False, kw_only=True)
class Reshape(Node):
    """Row-major reshape of each sample to ``shape`` (batch dim excluded).

    A pure relabelling of memory: no value changes.  Produced for layout-only
    ONNX Transpose/Reshape nodes.  ``shape`` never holds the batch: a sample
    ``[C, H, W]`` reshaped to ``shape`` gives ``[N, *shape]`` (every executor
    reshapes to ``(x.shape[0], *shape)``).
    """

    op_type: ClassVar[str] = "Reshape"
    shape: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if not self.shape:
            raise self._fail("shape must be the per-sample target shape (batch excluded), "
                             "got ()")

    def infer_shape(self, *shapes: Shape) -> Shape:
        (shape,) = shapes
        size = math.prod(shape[1:])
        if any(d < 1 for d in self.shape) or math.prod(self.shape) != size:
            raise self._fail(f"cannot reshape per-sample shape {shape[1:]} to {self.shape}")
        return (shape[0], *self.shape)


@dataclass(frozen=True, eq=False, kw_only=True)
class Softmax(Node):
    """``exp(x - max) / sum(exp(x - max))`` along one ``axis`` (ONNX opset 13 semantics)."""

    op_type: ClassVar[str] = "Softmax"
    axis: int = -1

    def infer_shape(self, *shapes: Shape) -> Shape:
        (shape,) = shapes
        axis = self.axis % len(shape)
        if axis == 0:
            raise self._fail("softmax over the batch axis is not supported")
        return shape


@dataclass(frozen=True, eq=False, kw_only=True)
class BatchNorm(Node):
    """Inference batch normalisation over channel axis 1 (before folding).

    ``y = (x - mean) / sqrt(var + epsilon) * scale + bias``; all vectors ``[C]``.
    """

    op_type: ClassVar[str] = "BatchNorm"
    scale: FloatArray
    bias: FloatArray
    mean: FloatArray
    var: FloatArray
    epsilon: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        for what in ("scale", "bias", "mean", "var"):
            object.__setattr__(self, what, float32_array(getattr(self, what)))
        n = self.scale.shape
        if len(n) != 1 or any(getattr(self, w).shape != n for w in ("bias", "mean", "var")):
            raise self._fail("scale, bias, mean and var must be 1-D of equal length")
        if np.any(self.var + np.float32(self.epsilon) <= 0):
            raise self._fail("var + epsilon must be > 0")

    def infer_shape(self, *shapes: Shape) -> Shape:
        (shape,) = shapes
        if len(shape) < 2 or shape[1] != self.scale.shape[0]:
            raise self._fail(f"input shape {shape} does not have {self.scale.shape[0]} "
                             f"channels on axis 1")
        return shape


@dataclass(frozen=True, eq=False, kw_only=True)
class Dropout(Node):
    """Inference dropout: the identity."""

    op_type: ClassVar[str] = "Dropout"


@dataclass(frozen=True, eq=False, kw_only=True)
class Identity(Node):
    """The identity."""

    op_type: ClassVar[str] = "Identity"
