"""Hypothesis strategies for fixed-point testing: draw the format first, then values inside it.

Every strategy draws the *shape* of a test case (format, geometry, shift)
before the values, and draws integers with ``st.integers(lo, hi)`` at the
exact bounds, so a failure shrinks to a small format, a small geometry and
small codes (the advice of hypothesis' "strategies that shrink" guide).

Numbers
    :func:`formats`, :func:`integer_formats`, :func:`codes`,
    :func:`boundary_codes`, :func:`code_lists`, :func:`code_arrays`,
    :func:`formats_and_codes`, :func:`formats_and_arrays`, :func:`int32s`,
    :func:`accumulators`, :func:`rounding_modes`, :func:`overflow_modes`.
Rounding ties
    :func:`tie_values` (reals exactly half an LSB between two codes of a
    format) and :func:`tie_integers` (accumulators exactly on a tie of a
    right shift), each optionally mixed with near-ties and exact values.
Requantization
    :func:`pow2_shifts`, :func:`quantized_multipliers` (TFLite
    ``(multiplier, exponent)`` pairs), :func:`requant_inputs` (accumulators
    aimed at the output range and at ties of the last rounding),
    :func:`float32_scales`.
Layers
    :func:`conv2d_geometries`, :func:`dense_geometries`,
    :func:`pool_geometries` (consistent shapes, strides, pads, dilations,
    groups) and :func:`tensor_specs`, :func:`layer_plans`, :func:`plans`.

Importing this module without hypothesis raises
:class:`~fxp.errors.MissingDependencyError`.

>>> from hypothesis import given
>>> @given(formats_and_codes(max_bits=16))
... def test_in_format(fc):
...     fmt, code = fc
...     assert fmt.min_code <= code <= fmt.max_code
>>> test_in_format()
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from fxp.errors import MissingDependencyError

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as exc:  # pragma: no cover - exercised only without hypothesis
    raise MissingDependencyError(
        "fxp.testing.strategies needs hypothesis: pip install 'hypothesis>=6.90' "
        "(or pip install 'fxp[test]')") from exc

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode

__all__ = [
    "DETERMINISTIC", "OVERFLOW", "ROUNDING", "ConvGeometry", "DenseGeometry", "PoolGeometry",
    "accumulators", "boundary_codes", "code_arrays", "code_lists", "codes", "conv2d_geometries",
    "dense_geometries", "float32_scales", "formats", "formats_and_arrays", "formats_and_codes",
    "int32s", "integer_formats", "layer_plans", "overflow_modes", "plans", "pool_geometries",
    "pow2_shifts", "quantized_multipliers", "requant_inputs", "rounding_modes", "tensor_specs",
    "tie_integers", "tie_values",
]

DETERMINISTIC = [m.value for m in RoundingMode if m is not RoundingMode.STOCHASTIC]
"""Canonical names of the deterministic rounding modes."""
ROUNDING = [m.value for m in RoundingMode]
"""Canonical names of every rounding mode (including ``stochastic``)."""
OVERFLOW = [m.value for m in OverflowMode]
"""Canonical names of the overflow modes."""

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# --------------------------------------------------------------------------- modes and formats
def rounding_modes(deterministic: bool = True):
    """A canonical rounding-mode name (``stochastic`` only with ``deterministic=False``)."""
    return st.sampled_from(DETERMINISTIC if deterministic else ROUNDING)


def overflow_modes():
    """A canonical overflow-mode name."""
    return st.sampled_from(OVERFLOW)


@st.composite
def formats(draw, min_bits: int = 1, max_bits: int = 64, frac_range=(-70, 140),
            signed: bool | None = None) -> QFormat:
    """A :class:`QFormat` with ``min_bits..max_bits`` bits (unsigned up to 63).

    ``frac_range`` bounds the fractional bits (inclusive); ``signed`` fixes the
    signedness (None draws it).  Shrinks toward ``fixed<min_bits, ...>`` with
    the smallest ``|frac_bits|`` in range.
    """
    sgn = draw(st.booleans()) if signed is None else signed
    top = max_bits if sgn else min(max_bits, 63)
    bits = draw(st.integers(min_bits, top))
    frac = draw(st.integers(*frac_range))
    return QFormat.from_frac(bits, frac, sgn)


def integer_formats(min_bits: int = 1, max_bits: int = 32, signed: bool | None = None):
    """Integer formats (``frac_bits == 0``): ``int8``, ``uint5``, ..."""
    return formats(min_bits, max_bits, (0, 0), signed)


# --------------------------------------------------------------------------- codes
def boundary_codes(fmt: QFormat) -> list[int]:
    """gemmlowp-style boundary set: +-2**i + {-2..2}, MIN, MIN+1, MIN+2, MAX-2..MAX."""
    vals = {fmt.min_code, fmt.min_code + 1, fmt.min_code + 2, fmt.max_code - 2,
            fmt.max_code - 1, fmt.max_code, 0, 1, -1}
    for i in range(fmt.bits):
        for d in (-2, -1, 0, 1, 2):
            vals.add((1 << i) + d)
            vals.add(-(1 << i) + d)
    return sorted(v for v in vals if fmt.contains_code(v))


def codes(fmt: QFormat):
    """One code of ``fmt``: boundary values or uniform."""
    return st.one_of(st.sampled_from(boundary_codes(fmt)),
                     st.integers(fmt.min_code, fmt.max_code))


@st.composite
def code_lists(draw, fmt: QFormat, max_size: int = 8) -> list[int]:
    """A non-empty list of codes of ``fmt``."""
    return draw(st.lists(codes(fmt), min_size=1, max_size=max_size))


def code_arrays(fmt: QFormat, shape=None, *, min_dims: int = 1, max_dims: int = 3,
                min_side: int = 1, max_side: int = 5):
    """int64 numpy arrays whose every element is a code of ``fmt``.

    ``shape`` is a tuple or a strategy of tuples; by default an array shape
    with ``min_dims..max_dims`` axes of ``min_side..max_side``.  Elements
    shrink toward 0 (or the format's bound nearest 0).
    """
    if shape is None:
        shape = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                                 max_side=max_side)
    return hnp.arrays(np.int64, shape, elements=st.integers(fmt.min_code, fmt.max_code))


@st.composite
def formats_and_codes(draw, **format_kwargs) -> tuple[QFormat, int]:
    """``(fmt, code)``: the format first (``format_kwargs`` go to :func:`formats`), then a code."""
    fmt = draw(formats(**format_kwargs))
    return fmt, draw(codes(fmt))


@st.composite
def formats_and_arrays(draw, shape=None, **format_kwargs) -> tuple[QFormat, np.ndarray]:
    """``(fmt, int64 array of codes)``; ``format_kwargs`` go to :func:`formats`."""
    fmt = draw(formats(**format_kwargs))
    return fmt, draw(code_arrays(fmt, shape))


def int32s():
    """int32 values with the edges weighted in (edges first: shrinks toward INT32_MIN)."""
    edges = [-(1 << 31), -(1 << 31) + 1, -(1 << 31) + 2, (1 << 31) - 1, (1 << 31) - 2, 0, 1, -1]
    return st.one_of(st.sampled_from(edges), st.integers(-(1 << 31), (1 << 31) - 1))


def accumulators(bits: int = 32, signed: bool = True):
    """Accumulator values of a ``bits``-wide register, edges weighted in.

    Unlike :func:`int32s` the uniform branch comes first, so failures shrink
    toward 0 rather than toward the most negative value.
    """
    fmt = QFormat.integer(bits, signed)
    edges = [fmt.min_code, fmt.min_code + 1, fmt.max_code, fmt.max_code - 1]
    return st.one_of(st.integers(fmt.min_code, fmt.max_code), st.sampled_from(edges))


# --------------------------------------------------------------------------- ties
def _tie_k_bounds(fmt: QFormat, extra_bits: int) -> tuple[int, int]:
    """Codes k such that (k + 1/2) * lsb (and nearby dyadics) are exact in float64."""
    cap = (1 << (52 - extra_bits)) - 1
    return max(fmt.min_code, -cap), min(fmt.max_code - 1, cap)


@st.composite
def tie_values(draw, fmt: QFormat, *, near: bool = True, as_fraction: bool = False):
    """A real value that lies exactly half an LSB between two adjacent codes of ``fmt``.

    The value is ``(k + 1/2) * 2**-frac_bits`` with ``k`` and ``k + 1`` both
    codes of ``fmt``, so only the tie rule decides how it rounds.  With
    ``near=True`` (default) about a third of the draws are exact ties, a
    third are a tiny dyadic step above or below a tie (so the tie rule must
    not leak into non-ties) and a third are exactly representable values.
    Returned as a float (exact: at most 52 significant bits) or, with
    ``as_fraction``, a :class:`fractions.Fraction`.
    """
    extra = 10 if near else 1
    lo, hi = _tie_k_bounds(fmt, extra)
    kind = draw(st.sampled_from(["tie", "near", "exact"])) if near else "tie"
    k = draw(st.integers(lo, hi))
    lsb = Fraction(2) ** -fmt.frac_bits
    if kind == "tie":
        v = (k + Fraction(1, 2)) * lsb
    elif kind == "near":
        j = draw(st.integers(2, extra))
        sign = draw(st.sampled_from([1, -1]))
        v = (k + Fraction(1, 2) + sign * Fraction(1, 1 << j)) * lsb
    else:
        v = (k + draw(st.integers(0, 1))) * lsb
    return v if as_fraction else float(v)


@st.composite
def tie_integers(draw, shift: int, min_value: int = INT32_MIN, max_value: int = INT32_MAX, *,
                 near: bool = True) -> int:
    """An integer ``x`` in ``[min_value, max_value]`` with ``x / 2**shift`` exactly on a tie.

    That is ``x mod 2**shift == 2**(shift-1)``: the discarded bits are exactly
    one half, so ``floor``, ``half_up``, ``half_away`` and ``half_even`` disagree
    only through their tie rule.  With ``near=True`` a third of the draws are
    ties, a third ``tie +- 1`` and a third arbitrary.  ``shift`` must be >= 1.
    """
    if shift < 1:
        raise ValueError(f"shift={shift}: a right shift by 0 has no ties")
    half = 1 << (shift - 1)
    q_lo = -((half - min_value) // (1 << shift))  # ceil((min - half) / 2**s)
    q_hi = (max_value - half) // (1 << shift)
    if q_lo > q_hi:
        raise ValueError(f"no tie of a shift by {shift} lies in [{min_value}, {max_value}]")
    kind = draw(st.sampled_from(["tie", "near", "any"])) if near else "tie"
    if kind == "any":
        return draw(st.integers(min_value, max_value))
    x = draw(st.integers(q_lo, q_hi)) * (1 << shift) + half
    if kind == "near":
        x += draw(st.sampled_from([1, -1]))
        x = min(max(x, min_value), max_value)
    return x


# --------------------------------------------------------------------------- requantization
def pow2_shifts(min_shift: int = 0, max_shift: int = 31):
    """A right-shift count for power-of-two requantization (shrinks toward ``min_shift``)."""
    return st.integers(min_shift, max_shift)


@st.composite
def quantized_multipliers(draw, scheme: str = "double", min_exponent: int = -31,
                          max_exponent: int | None = None) -> tuple[int, int]:
    """A TFLite ``(multiplier, exponent)`` pair: ``scale = multiplier * 2**(exponent - 31)``.

    ``multiplier`` is normalized (``2**30 <= M < 2**31``, as ``QuantizeMultiplier``
    produces), with the boundary values ``2**30``, ``2**30 + 1``, ``2**31 - 1``
    weighted in (``2**30`` first, so failures shrink to a plain halving).
    ``exponent`` lies in ``[min_exponent, max_exponent]``, default
    ``[-31, 31]`` for double rounding and ``[-31, 30]`` for single rounding;
    positive exponents are left shifts.  Shrinks toward exponent 0.
    """
    top = (30 if scheme == "single" else 31) if max_exponent is None else max_exponent
    exponent = draw(st.integers(min_exponent, top))
    multiplier = draw(st.one_of(st.sampled_from([1 << 30, (1 << 30) + 1, INT32_MAX]),
                                st.integers(1 << 30, INT32_MAX)))
    return multiplier, exponent


@st.composite
def requant_inputs(draw, out: QFormat | None = None, scheme: str = "double",
                   min_exponent: int = -31, max_exponent: int = 0) -> tuple[int, int, int]:
    """``(acc, multiplier, exponent)`` for ``MultiplyByQuantizedMultiplier`` + an ``out`` code.

    Uniform int32 accumulators mostly saturate an int8 output, and exact ties
    of the final rounding are rare among them; so after the parameters
    (:func:`quantized_multipliers`) this draws what to aim at: a third of the
    draws are *ties* (an output code ``q`` of ``out``, default int8, and an
    accumulator whose value entering the last rounding is exactly ``q + 1/2``:
    with double rounding, SRDHM's result sits exactly half-way for
    RoundingDivideByPOT; with single rounding, the nearest accumulator), a
    third land *inside* ``out`` at a random sixteenth, and a third are any
    int32.  Shrinks toward exponent 0, multiplier ``2**30`` and the tie at
    ``+-1/2``.  Accumulators always fit int32.
    """
    from fxp.testing import oracles

    out = out if out is not None else QFormat.integer(8)
    multiplier, exponent = draw(quantized_multipliers(scheme, min_exponent, max_exponent))
    kind = draw(st.sampled_from(["tie", "inside", "any"]))
    if kind == "any":
        return draw(accumulators(32)), multiplier, exponent
    right = max(-exponent, 0)
    if kind == "tie" and scheme == "double" and exponent < 0:
        room = 1 << max(30 - right, 0)  # keep the SRDHM target y inside int32
        q = draw(st.integers(max(out.min_code, -room), min(out.max_code, room - 1)))
        y = q * (1 << right) + (1 << (right - 1))  # SRDHM result that is a tie of RDBPOT
        approx = (y << 31) // multiplier
        for acc in (approx, approx + 1, approx - 1, approx + 2):
            if INT32_MIN <= acc <= INT32_MAX and oracles.srdhm(acc, multiplier) == y:
                return acc, multiplier, exponent
        return min(max(approx, INT32_MIN), INT32_MAX), multiplier, exponent
    q = draw(st.integers(out.min_code, out.max_code))
    t = Fraction(2 * q + 1, 2) if kind == "tie" else q + Fraction(draw(st.integers(0, 15)), 16)
    acc = round(t * Fraction(1 << 31) / (multiplier * Fraction(2) ** exponent))
    return min(max(acc, INT32_MIN), INT32_MAX), multiplier, exponent


def float32_scales(min_value: float = 2.0 ** -24, max_value: float = 1.0):
    """Positive float32 scales in ``[min_value, max_value]`` (as Python floats)."""
    return st.floats(min_value, max_value, width=32, allow_nan=False, allow_infinity=False)


# --------------------------------------------------------------------------- geometries
@dataclass(frozen=True)
class ConvGeometry:
    """A consistent conv2d geometry (NCHW input, ``[Co, C/groups, kh, kw]`` weights).

    ``strides``/``dilations`` are ``(along H, along W)``; ``pads`` is
    ``(top, left, bottom, right)``.
    """

    n: int
    c_in: int
    c_out: int
    h: int
    w: int
    kh: int
    kw: int
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]
    groups: int

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c_in, self.h, self.w)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.c_out, self.c_in // self.groups, self.kh, self.kw)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        ho = (self.h + self.pads[0] + self.pads[2] - ((self.kh - 1) * self.dilations[0] + 1)) \
            // self.strides[0] + 1
        wo = (self.w + self.pads[1] + self.pads[3] - ((self.kw - 1) * self.dilations[1] + 1)) \
            // self.strides[1] + 1
        return (self.n, self.c_out, ho, wo)

    def kwargs(self) -> dict:
        """Keyword arguments of :func:`fxp.ops.layers.conv2d_int`."""
        return dict(strides=self.strides, pads=self.pads, dilations=self.dilations,
                    groups=self.groups)


@dataclass(frozen=True)
class DenseGeometry:
    """``x [n, n_in] @ w [n_out, n_in]``."""

    n: int
    n_in: int
    n_out: int

    @property
    def x_shape(self) -> tuple[int, int]:
        return (self.n, self.n_in)

    @property
    def w_shape(self) -> tuple[int, int]:
        return (self.n_out, self.n_in)

    @property
    def out_shape(self) -> tuple[int, int]:
        return (self.n, self.n_out)


@dataclass(frozen=True)
class PoolGeometry:
    """A pooling window over an NCHW input."""

    n: int
    c: int
    h: int
    w: int
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.h, self.w)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        ho = (self.h + self.pads[0] + self.pads[2] - ((self.kernel[0] - 1) * self.dilations[0]
                                                      + 1)) // self.strides[0] + 1
        wo = (self.w + self.pads[1] + self.pads[3] - ((self.kernel[1] - 1) * self.dilations[1]
                                                      + 1)) // self.strides[1] + 1
        return (self.n, self.c, ho, wo)

    def kwargs(self) -> dict:
        """Keyword arguments of :func:`fxp.ops.layers.maxpool2d_int` / ``avgpool2d_int``."""
        return dict(strides=self.strides, pads=self.pads, dilations=self.dilations)


def _axis(draw, k: int, max_stride: int, max_dilation: int, max_pad: int, max_extra: int,
          stride=None, dilation=None, pads=None):
    """(size, stride, dilation, pad_begin, pad_end) along one axis: output length >= 1.

    ``stride``, ``dilation`` and ``pads`` (a pair) fix those values instead of drawing them.
    """
    stride = draw(st.integers(1, max_stride)) if stride is None else int(stride)
    if dilation is None:
        dilation = draw(st.integers(1, max_dilation)) if k > 1 else 1
    span = (k - 1) * dilation + 1
    if pads is None:
        top = min(max_pad, span - 1)  # a pad wider than the window only adds padding outputs
        pb = draw(st.integers(0, top))
        pe = draw(st.integers(0, top))
    else:
        pb, pe = (int(p) for p in pads)
    size = max(1, span - pb - pe) + draw(st.integers(0, max_extra))
    return size, stride, dilation, pb, pe


@st.composite
def conv2d_geometries(draw, *, max_batch: int = 2, max_channels: int = 4, max_groups: int = 2,
                      max_kernel: int = 3, max_stride: int = 2, max_dilation: int = 2,
                      max_pad: int = 2, max_extra: int = 4, kernel=None, strides=None,
                      pads=None, dilations=None, groups=None) -> ConvGeometry:
    """A :class:`ConvGeometry` whose output has at least one pixel.

    Draw order: groups, channels per group, kernel, then per axis stride,
    dilation, pads and the input size (the smallest size that fits the
    window plus ``0..max_extra``), then the batch.  Everything shrinks toward
    a one-pixel input, one channel, one group, stride 1, no padding.

    ``kernel=(kh, kw)``, ``strides=(sh, sw)``, ``pads=(top, left, bottom,
    right)``, ``dilations=(dh, dw)`` and ``groups`` fix those values (for a
    kernel written for one geometry, e.g. a 3x3 stride-1 SAME convolution).
    """
    g = draw(st.integers(1, max_groups)) if groups is None else int(groups)
    cg = draw(st.integers(1, max(1, max_channels // g)))
    cog = draw(st.integers(1, max(1, max_channels // g)))
    kh, kw = kernel if kernel is not None else (draw(st.integers(1, max_kernel)),
                                                draw(st.integers(1, max_kernel)))
    s, d = strides or (None, None), dilations or (None, None)
    p = pads or (None, None, None, None)
    ph = None if p[0] is None else (p[0], p[2])
    pw = None if p[1] is None else (p[1], p[3])
    h, sh, dh, pt, pb = _axis(draw, kh, max_stride, max_dilation, max_pad, max_extra,
                              s[0], d[0], ph)
    w, sw, dw, pl, pr = _axis(draw, kw, max_stride, max_dilation, max_pad, max_extra,
                              s[1], d[1], pw)
    n = draw(st.integers(1, max_batch))
    return ConvGeometry(n, g * cg, g * cog, h, w, kh, kw, (sh, sw), (pt, pl, pb, pr), (dh, dw), g)


@st.composite
def dense_geometries(draw, *, max_batch: int = 3, max_in: int = 16,
                     max_out: int = 8) -> DenseGeometry:
    """A :class:`DenseGeometry` (shrinks toward 1x1x1)."""
    return DenseGeometry(draw(st.integers(1, max_batch)), draw(st.integers(1, max_in)),
                         draw(st.integers(1, max_out)))


@st.composite
def pool_geometries(draw, *, max_batch: int = 2, max_channels: int = 3, max_kernel: int = 3,
                    max_stride: int = 3, max_dilation: int = 2, max_pad: int = 1,
                    max_extra: int = 4) -> PoolGeometry:
    """A :class:`PoolGeometry` whose output has at least one pixel."""
    c = draw(st.integers(1, max_channels))
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    h, sh, dh, pt, pb = _axis(draw, kh, max_stride, max_dilation, max_pad, max_extra)
    w, sw, dw, pl, pr = _axis(draw, kw, max_stride, max_dilation, max_pad, max_extra)
    n = draw(st.integers(1, max_batch))
    return PoolGeometry(n, c, h, w, (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw))


# --------------------------------------------------------------------------- plans
@st.composite
def tensor_specs(draw, kind: str | None = None, *, channels: int | None = None,
                 axis: int = 0, max_bits: int = 16, symmetric: bool = False):
    """A :class:`fxp.plan.TensorSpec`.

    ``kind="pow2"``: a power-of-two format (``fixed<W,I>``, 2..max_bits bits);
    ``kind="affine"``: an integer format with float32 scale(s) and a zero
    point (``channels`` scales along ``axis`` when given; ``symmetric`` forces
    zero point 0); None draws the kind.
    """
    from fxp.plan import TensorSpec

    if kind is None:
        kind = draw(st.sampled_from(["pow2", "affine"]))
    if kind == "pow2":
        return TensorSpec(draw(formats(2, max_bits, (-4, 2 * max_bits))))
    if kind != "affine":
        raise ValueError(f"kind must be 'pow2', 'affine' or None, got {kind!r}")
    fmt = draw(integer_formats(2, max_bits, signed=True if symmetric else None))
    n = channels if channels is not None else 1
    scales = tuple(draw(st.lists(float32_scales(2.0 ** -16, 4.0), min_size=n, max_size=n)))
    zp = 0 if symmetric else draw(st.integers(fmt.min_code, fmt.max_code))
    return TensorSpec(fmt, scales, zp, axis if n > 1 else None)


@st.composite
def layer_plans(draw, name: str = "layer0", kind: str | None = None, *, channels: int = 2,
                max_bits: int = 16):
    """A :class:`fxp.plan.LayerPlan` for a layer with weights.

    ``kind="pow2"``: power-of-two weight, bias (``F_b = F_w + F_x`` is up to
    the caller; here a wide format), output and ``requant="pow2"`` with a
    deterministic rounding mode.  ``kind="affine"``: symmetric per-channel
    weights (``channels`` scales on axis 0), an int32 bias, an affine output
    and a multiplier/float32 requantization.  None draws the kind.
    """
    from fxp.plan import LayerPlan, TensorSpec

    if kind is None:
        kind = draw(st.sampled_from(["pow2", "affine"]))
    acc_bits = draw(st.integers(16, 64))
    common = dict(acc_bits=acc_bits, acc_overflow=draw(st.sampled_from(["wrap", "saturate"])),
                  output_overflow=draw(st.sampled_from(["saturate", "wrap"])))
    if kind == "pow2":
        return LayerPlan(name, weight=draw(tensor_specs("pow2", max_bits=max_bits)),
                         bias=TensorSpec(draw(formats(acc_bits, acc_bits, (0, 2 * max_bits),
                                                      signed=True))),
                         output=draw(tensor_specs("pow2", max_bits=max_bits)),
                         rounding=draw(rounding_modes()), requant="pow2", **common)
    if kind != "affine":
        raise ValueError(f"kind must be 'pow2', 'affine' or None, got {kind!r}")
    weight = draw(tensor_specs("affine", channels=channels, axis=0, max_bits=min(max_bits, 8),
                               symmetric=True))
    bias = TensorSpec(QFormat.integer(32), tuple(draw(st.lists(
        float32_scales(2.0 ** -30, 1.0), min_size=channels, max_size=channels))), 0,
        0 if channels > 1 else None)
    output = draw(tensor_specs("affine", max_bits=min(max_bits, 8)))
    return LayerPlan(name, weight=weight, bias=bias, output=output,
                     requant=draw(st.sampled_from(["double", "single", "float32"])), **common)


@st.composite
def plans(draw, names=("conv1", "conv2", "fc"), *, kind: str | None = None,
          max_bits: int = 16):
    """A small :class:`fxp.plan.Plan`: one :func:`layer_plans` entry per name.

    ``kind`` fixes pow2/affine for every layer (None draws it once for the
    whole plan, as a real toolchain uses one convention).
    """
    from fxp.plan import Plan

    kind = kind if kind is not None else draw(st.sampled_from(["pow2", "affine"]))
    n = draw(st.integers(1, len(names)))
    layers = tuple(draw(layer_plans(nm, kind, max_bits=max_bits)) for nm in names[:n])
    return Plan(input=draw(tensor_specs(kind, max_bits=max_bits)), layers=layers,
                name=f"hypothesis-{kind}")
