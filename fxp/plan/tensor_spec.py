"""How one tensor is coded (:class:`TensorSpec`) and how an accumulator is requantized (:class:`RequantScheme`).

See :mod:`fxp.plan.plan` for the coding conventions (power-of-two, affine,
binary, shift).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import PlanError

__all__ = ["BINARY_FMT", "SPEC_KINDS", "RequantScheme", "TensorSpec", "container_format"]

SPEC_KINDS = ("fixed", "binary", "shift")
BINARY_FMT = QFormat(2, 2, True)
"""Container of binary codes: -1 and +1 in a 2-bit signed integer format."""


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
    FLOAT64 = "float64"
    """LiteRT's reference FULLY_CONNECTED: round(double(acc) * double scale), ties away from 0."""
    RUY = "ruy"
    """LiteRT's optimized x86 kernels: ruy's two ties-toward-+inf roundings (CONV_2D, FC),
    with their own ADD, MEAN, SOFTMAX and depthwise channel split (fxp.frontends.tflite_runtime)."""
    XNNPACK = "xnnpack"
    """XNNPACK qs8 fp32: as float32 for weighted layers; XNNPACK's own ADD, MEAN, clamp bounds."""

    @classmethod
    def from_string(cls, name: str | RequantScheme) -> RequantScheme:
        if isinstance(name, cls):
            return name
        for m in cls:
            if m.value == str(name).strip().lower():
                return m
        raise PlanError(f"unknown requant scheme {name!r}; use one of {[m.value for m in cls]}")


def _shown(value: object, limit: int = 80) -> str:
    """A short ``repr`` for messages: huge values are cut, deep nesting is not walked."""
    if isinstance(value, (list, tuple, dict)) and len(value) > 8:
        return f"<{type(value).__name__} of {len(value)} items>"
    try:
        text = repr(value)
    except RecursionError:
        return f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _strict_int(value: object, what: str) -> int:
    """``value`` as an int; bools, floats (even 1.0) and strings are refused, never rounded."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise PlanError(f"{what} must be an integer, got {_shown(value)} "
                        f"({type(value).__name__})")
    return int(value)


def _scale_values(scales: object) -> tuple[float, ...]:
    """Affine scales as float32 values; each must be a finite real number > 0 (not a string)."""
    items = scales.ravel().tolist() if isinstance(scales, np.ndarray) else scales
    if isinstance(items, (int, float, np.number)) and not isinstance(items, (bool, np.bool_)):
        items = [items]
    if not isinstance(items, (list, tuple)) or not items:
        raise PlanError(f"scales must be a non-empty list of numbers, got {_shown(scales)}")
    vals = []
    for i, v in enumerate(items):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                                  np.floating)):
            raise PlanError(f"scales[{i}] must be a number, got {_shown(v)} ({type(v).__name__})")
        with np.errstate(over="ignore"):
            f = float(np.float32(v))
        if not (np.isfinite(f) and f > 0):
            raise PlanError(f"scales must be finite and > 0 in float32, got scales[{i}] = "
                            f"{_shown(v)}")
        vals.append(f)
    return tuple(vals)


def container_format(formats) -> QFormat:
    """The power-of-two format that holds every channel format of a per-channel weight.

    Its LSB is the finest channel LSB (``F = max F_c``) and its integer bits the
    most any channel has (``I = max I_c``): channel ``c``'s code ``q`` is the
    container code ``q << (F - F_c)``, and ``|q| * 2**(F - F_c) <= 2**(I_c - 1 + F)``
    fits.  All formats must share one signedness.

    >>> str(container_format(["fixed<3,1>", "fixed<4,-1>"]))
    'fixed<6,1>'
    """
    fmts = [f if isinstance(f, QFormat) else QFormat.parse(f) for f in formats]
    if not fmts:
        raise PlanError("a per-channel weight needs at least one channel format")
    signed = {f.signed for f in fmts}
    if len(signed) != 1:
        raise PlanError(f"channel formats mix signed and unsigned codes: "
                        f"{_shown([str(f) for f in fmts])}")
    frac = max(f.frac_bits for f in fmts)
    ib = max(f.int_bits for f in fmts)
    return QFormat(ib + frac, ib, fmts[0].signed)


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
    kind : {"fixed", "binary", "shift"}
        ``"binary"``: codes are -1/+1 only (``fmt`` is ``fixed<2,2>``, no scales);
        build it with :meth:`binary` (or ``fmt="binary"``).  ``"shift"``:
        power-of-two coding whose codes are 0 or +-2**k (a shift-add weight);
        build it with :meth:`shift`.
    channel_formats : tuple of QFormat or None
        Power-of-two weights only: one format per output channel (axis 0), each
        with its own width and fraction bits.  ``fmt`` is then their
        :func:`container_format`, the common LSB the engine computes in: channel
        ``c``'s codes are its own codes shifted left by ``F - F_c`` (the
        integer arithmetic is the container's; only each channel's code range
        and LSB differ).  Build it with :meth:`per_channel`.
    """

    fmt: QFormat
    scales: tuple[float, ...] | None = None
    zero_point: int = 0
    axis: int | None = None
    kind: str = "fixed"
    channel_formats: tuple[QFormat, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.fmt, str) and self.fmt.strip().lower() == "binary":
            object.__setattr__(self, "fmt", BINARY_FMT)
            object.__setattr__(self, "kind", "binary")
        if not isinstance(self.fmt, QFormat):
            object.__setattr__(self, "fmt", QFormat.parse(self.fmt))
        if self.kind not in SPEC_KINDS:
            raise PlanError(f"tensor kind must be one of {SPEC_KINDS}, got {self.kind!r}")
        if self.kind == "binary":
            if self.fmt != BINARY_FMT or self.scales is not None or self.zero_point != 0 \
                    or self.axis is not None:
                raise PlanError(f"a binary tensor holds codes -1/+1 in {BINARY_FMT} with no "
                                f"scales, zero point or axis; got fmt {self.fmt}, scales "
                                f"{self.scales!r}, zero_point {self.zero_point!r}, axis "
                                f"{self.axis!r} (use TensorSpec.binary())")
        if self.kind == "shift" and (self.scales is not None or self.zero_point != 0
                                     or self.axis is not None):
            raise PlanError(f"a shift tensor is power-of-two coded (codes 0 or +-2**k in "
                            f"{self.fmt}) with no scales, zero point or axis; got scales "
                            f"{self.scales!r}, zero_point {self.zero_point!r}, axis {self.axis!r}")
        zp = _strict_int(self.zero_point, "zero_point")
        axis = None if self.axis is None else _strict_int(self.axis, "axis")
        if axis is not None and axis < 0:
            raise PlanError(f"axis must be >= 0, got {axis}")
        if self.scales is not None:
            vals = _scale_values(self.scales)
            if self.fmt.frac_bits != 0:
                raise PlanError(f"affine scales need an integer format, got {self.fmt}")
            object.__setattr__(self, "scales", vals)
            if len(vals) > 1 and axis is None:
                raise PlanError(f"{len(vals)} per-channel scales need an axis")
        elif zp != 0:
            raise PlanError("a power-of-two tensor has zero_point 0; give scales for affine coding")
        if not self.fmt.contains_code(zp):
            raise PlanError(f"zero_point={zp} is outside {self.fmt}")
        object.__setattr__(self, "zero_point", zp)
        object.__setattr__(self, "axis", axis)
        if self.channel_formats is not None:
            self._check_channel_formats()

    def _check_channel_formats(self) -> None:
        fmts = tuple(f if isinstance(f, QFormat) else QFormat.parse(f)
                     for f in self.channel_formats)
        if self.kind != "fixed" or self.scales is not None or self.axis is not None:
            raise PlanError(f"per-channel weight formats are for power-of-two 'fixed' tensors "
                            f"(no scales, axis or kind); got kind {self.kind!r}, scales "
                            f"{_shown(self.scales)}, axis {self.axis!r}")
        want = container_format(fmts)
        if self.fmt != want:
            raise PlanError(f"a per-channel weight's format must be the container of its "
                            f"channel formats, {want}; got {self.fmt} "
                            f"(use TensorSpec.per_channel())")
        object.__setattr__(self, "channel_formats", fmts)

    @property
    def is_per_channel(self) -> bool:
        """True when each output channel has its own format (:attr:`channel_formats`)."""
        return self.channel_formats is not None

    def channel_shifts(self) -> np.ndarray:
        """Left shift of each channel's codes to the container LSB, ``F - F_c`` (int64)."""
        if self.channel_formats is None:
            return np.zeros(1, np.int64)
        return np.array([self.fmt.frac_bits - f.frac_bits for f in self.channel_formats],
                        np.int64)

    @property
    def is_binary(self) -> bool:
        """True for a binary (+-1) tensor."""
        return self.kind == "binary"

    @property
    def is_shift(self) -> bool:
        """True for a shift tensor: power-of-two coding, codes 0 or +-2**k."""
        return self.kind == "shift"

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

    @classmethod
    def per_channel(cls, formats) -> TensorSpec:
        """Power-of-two weight spec with one format per output channel.

        >>> s = TensorSpec.per_channel(["fixed<3,1>", "fixed<2,-1>"])
        >>> str(s.fmt), s.channel_shifts().tolist()
        ('fixed<4,1>', [1, 0])
        """
        fmts = tuple(f if isinstance(f, QFormat) else QFormat.parse(f) for f in formats)
        return cls(container_format(fmts), channel_formats=fmts)

    @classmethod
    def binary(cls) -> TensorSpec:
        """Binary spec: codes -1 and +1 (real values -1 and +1) in ``fixed<2,2>``."""
        return cls(BINARY_FMT, kind="binary")

    @classmethod
    def shift(cls, fmt: QFormat | str) -> TensorSpec:
        """Shift spec: codes 0 or +-2**k of the power-of-two format ``fmt`` (shift-add weights)."""
        fmt = fmt if isinstance(fmt, QFormat) else QFormat.parse(fmt)
        return cls(fmt, kind="shift")
