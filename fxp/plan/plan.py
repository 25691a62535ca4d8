"""The Plan: per-layer word lengths and arithmetic, frozen, beside an unchanged graph.

A :class:`Plan` says how every tensor of a model is coded and how every layer
computes.  It never modifies the :class:`~fxp.ir.graph.Graph`; the integer
executor reads both.  PTQ, the optimizer and a user's JSON file all produce
the same object (see :mod:`fxp.plan.io` for the file format).

Coding of a tensor (:class:`TensorSpec`)::

    real = scale * (code - zero_point)       code in [fmt.min_code, fmt.max_code]

* power-of-two (FPGA Qm.n): ``scales is None``, ``zero_point == 0`` and
  ``scale = 2**-fmt.frac_bits``;
* affine (MCU runtimes): ``fmt`` is an integer format (``frac_bits == 0``),
  ``scales`` holds float32 values, one per tensor or one per channel along
  ``axis``, and ``zero_point`` is a code.

A layer with weights (Conv2D, Dense) accumulates ``sum (x - zx) * (w - zw)``
in an ``acc_bits``-wide accumulator with ``acc_overflow`` (saturation order is
documented in :mod:`fxp.kernels.spec_layers`), adds the bias codes (which are
coded with scale ``s_x * s_w``), then requantizes into ``output`` with
``requant``: a power-of-two shift rounded with ``rounding``, a
multiplier+shift in double or single rounding, or a float32 scale.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

import numpy as np

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import PlanError

__all__ = ["SCHEMA_VERSION", "LayerPlan", "Plan", "RequantScheme", "TensorSpec"]

SCHEMA_VERSION = 1


class RequantScheme(enum.Enum):
    """How an accumulator is brought to the output format."""

    POW2 = "pow2"
    """Arithmetic shift by ``F_acc - F_out`` rounded with the layer's rounding mode (FPGA)."""
    DOUBLE = "double"
    """gemmlowp/TFLite reference: SRDHM then RoundingDivideByPOT (two roundings)."""
    SINGLE = "single"
    """TFLITE_SINGLE_ROUNDING / CMSIS-NN single rounding: one rounding, ties toward +inf."""
    FLOAT32 = "float32"
    """onnxruntime MLAS: float32(acc) * float32(scale), round half to even, + zero point."""

    @classmethod
    def from_string(cls, name: str | RequantScheme) -> RequantScheme:
        if isinstance(name, cls):
            return name
        for m in cls:
            if m.value == str(name).strip().lower():
                return m
        raise PlanError(f"unknown requant scheme {name!r}; use one of {[m.value for m in cls]}")


@dataclass(frozen=True)
class TensorSpec:
    """How one tensor is coded; see the module docstring.

    Parameters
    ----------
    fmt : QFormat
        Code range (bits, signedness) and, when ``scales`` is None, the scale.
    scales : tuple of float or None
        Affine scales (float32 values), per tensor (length 1) or per channel.
    zero_point : int
        Code of the real value 0 (affine only; 0 for power-of-two).
    axis : int or None
        Channel axis of per-channel scales (0 for weights, 1 for NCHW activations).
    """

    fmt: QFormat
    scales: tuple[float, ...] | None = None
    zero_point: int = 0
    axis: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fmt, QFormat):
            object.__setattr__(self, "fmt", QFormat.parse(self.fmt))
        if self.scales is not None:
            vals = tuple(float(np.float32(s)) for s in np.atleast_1d(np.asarray(self.scales)))
            if not vals or not all(np.isfinite(v) and v > 0 for v in vals):
                raise PlanError(f"scales must be finite and > 0, got {self.scales!r}")
            if self.fmt.frac_bits != 0:
                raise PlanError(f"affine scales need an integer format, got {self.fmt}")
            object.__setattr__(self, "scales", vals)
            if len(vals) > 1 and self.axis is None:
                raise PlanError(f"{len(vals)} per-channel scales need an axis")
        elif self.zero_point != 0:
            raise PlanError("a power-of-two tensor has zero_point 0; give scales for affine coding")
        if not self.fmt.contains_code(int(self.zero_point)):
            raise PlanError(f"zero_point={self.zero_point} is outside {self.fmt}")
        object.__setattr__(self, "zero_point", int(self.zero_point))

    @property
    def is_pow2(self) -> bool:
        """True for power-of-two (Qm.n) coding."""
        return self.scales is None

    def scale_array(self) -> np.ndarray:
        """Scales as float64 (per channel or length 1); ``2**-frac_bits`` for power-of-two."""
        if self.scales is None:
            return np.array([np.ldexp(1.0, -self.fmt.frac_bits)])
        return np.asarray(self.scales, np.float64)

    @classmethod
    def pow2(cls, bits: int, frac_bits: int, signed: bool = True) -> TensorSpec:
        """Power-of-two spec with ``bits`` total and ``frac_bits`` fractional bits."""
        return cls(QFormat.from_frac(bits, frac_bits, signed))


@dataclass(frozen=True)
class LayerPlan:
    """Arithmetic of one layer (a node of the graph, by name).

    Attributes
    ----------
    name : str
        Node name in the graph.
    float_layer : bool
        Run this layer in float: dequantize its input, compute in float32,
        quantize its output to ``output``.
    input : TensorSpec or None
        Coding of the layer's input: incoming float values (after a float
        layer) are quantized to it; incoming power-of-two codes are cast to
        it; None keeps the producer's coding.
    weight, bias : TensorSpec or None
        Weight and bias coding (layers with weights).
    output : TensorSpec or None
        Output coding (None keeps the input's coding, e.g. max-pool).
    acc_bits : int
        Accumulator width in bits (1..64).
    acc_overflow : OverflowMode
        Accumulator overflow (wrap or saturate, applied after each addition).
    rounding : RoundingMode
        Rounding of power-of-two requantization, casts and average pooling.
    output_overflow : OverflowMode
        Overflow when writing the output codes.
    requant : RequantScheme
        Requantization convention.
    """

    name: str
    float_layer: bool = False
    input: TensorSpec | None = None
    weight: TensorSpec | None = None
    bias: TensorSpec | None = None
    output: TensorSpec | None = None
    acc_bits: int = 32
    acc_overflow: OverflowMode = OverflowMode.WRAP
    rounding: RoundingMode = RoundingMode.HALF_UP
    output_overflow: OverflowMode = OverflowMode.SATURATE
    requant: RequantScheme = RequantScheme.POW2

    def __post_init__(self) -> None:
        object.__setattr__(self, "acc_overflow", OverflowMode.from_string(self.acc_overflow))
        object.__setattr__(self, "output_overflow", OverflowMode.from_string(self.output_overflow))
        object.__setattr__(self, "rounding", RoundingMode.from_string(self.rounding))
        object.__setattr__(self, "requant", RequantScheme.from_string(self.requant))
        if isinstance(self.acc_bits, bool) or not isinstance(self.acc_bits, int) \
                or not 1 <= self.acc_bits <= 64:
            raise PlanError(f"layer {self.name!r}: acc_bits={self.acc_bits!r} must be an int in 1..64")
        if self.rounding is RoundingMode.STOCHASTIC:
            raise PlanError(f"layer {self.name!r}: stochastic rounding is for quantizers, "
                            "not for the inference datapath")

    def with_(self, **changes) -> LayerPlan:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Plan:
    """Per-layer arithmetic for one model: frozen, schema-versioned, JSON-serialisable.

    Attributes
    ----------
    input : TensorSpec
        Coding of the graph input (floats are quantized half-to-even, saturating).
    layers : tuple of LayerPlan
        One entry per layer that needs one (layers with weights, pools that
        change format, adds); others pass codes through.
    name : str
        Free-form label (e.g. ``"ptq-pow2-w8a8"``).
    """

    input: TensorSpec
    layers: tuple[LayerPlan, ...] = ()
    name: str = "plan"
    schema_version: int = field(default=SCHEMA_VERSION)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        names = [lp.name for lp in self.layers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise PlanError(f"layers listed twice in the plan: {sorted(dup)}")
        if self.schema_version != SCHEMA_VERSION:
            raise PlanError(f"plan schema_version {self.schema_version} is not supported "
                            f"(this fxp reads version {SCHEMA_VERSION})")

    def layer(self, name: str) -> LayerPlan | None:
        """The plan of layer ``name`` or None."""
        for lp in self.layers:
            if lp.name == name:
                return lp
        return None

    def replace_layer(self, name: str, **changes) -> Plan:
        """A new plan with layer ``name`` changed."""
        if self.layer(name) is None:
            raise PlanError(f"no layer {name!r} in the plan; layers: {[lp.name for lp in self.layers]}")
        return replace(self, layers=tuple(lp.with_(**changes) if lp.name == name else lp
                                          for lp in self.layers))
