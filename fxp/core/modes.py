"""Rounding and overflow modes: the one place where strings become enums.

Canonical names are the lower-case enum values (``"half_even"``, ``"saturate"``).
Foreign spellings are accepted by :meth:`RoundingMode.from_string` and
:meth:`OverflowMode.from_string` through one alias table, :data:`ROUNDING_ALIASES`.
A foreign name may be written with its convention as a prefix
(``"qonnx:HALF_UP"``, ``"matlab:Nearest"``, ``"ap:AP_RND"``, ``"ieee:roundTiesToEven"``);
without a prefix it is accepted only when every convention that knows the name
agrees on its meaning.  ``"HALF_UP"`` is the classic trap: ties toward +inf
in ap_fixed/CNL usage (fxp's ``half_up``), ties *away from zero* in QONNX, so
the upper-case bare spelling is refused with a message listing both.

Behaviour on the classic tie inputs (value to round -> result)::

    mode           2.5  -2.5  1.5  -1.5  -0.5  0.3  -0.3
    floor           2    -3    1    -2    -1    0    -1
    ceil            3    -2    2    -1     0    1     0
    to_zero         2    -2    1    -1     0    0     0
    away            3    -3    2    -2    -1    1    -1
    half_up         3    -2    2    -1     0    0     0
    half_down       2    -3    1    -2    -1    0     0
    half_to_zero    2    -2    1    -1     0    0     0
    half_away       3    -3    2    -2    -1    0     0
    half_even       2    -2    2    -2     0    0     0

>>> RoundingMode.from_string("AP_RND_CONV")
<RoundingMode.HALF_EVEN: 'half_even'>
>>> RoundingMode.from_string("qonnx:HALF_UP")
<RoundingMode.HALF_AWAY: 'half_away'>
>>> OverflowMode.from_string("AP_SAT_SYM")
<OverflowMode.SATURATE_SYMMETRIC: 'saturate_symmetric'>
"""

from __future__ import annotations

import enum

from fxp.errors import FormatError

__all__ = ["OVERFLOW_ALIASES", "ROUNDING_ALIASES", "OverflowMode", "RoundingMode"]


class RoundingMode(enum.Enum):
    """How the bits below the kept LSB are discarded (direction, then tie rule)."""

    FLOOR = "floor"
    """Toward -inf (truncation of two's-complement bits, ``>>``, AP_TRN); no ties."""
    CEIL = "ceil"
    """Toward +inf; no ties."""
    TO_ZERO = "to_zero"
    """Toward zero (C integer division, ``int()``, AP_TRN_ZERO); no ties."""
    AWAY = "away"
    """Away from zero (QONNX UP); no ties."""
    HALF_UP = "half_up"
    """To nearest, ties toward +inf (AP_RND, ``(x + 2**(s-1)) >> s``, TFLite single rounding)."""
    HALF_DOWN = "half_down"
    """To nearest, ties toward -inf (AP_RND_MIN_INF)."""
    HALF_TO_ZERO = "half_to_zero"
    """To nearest, ties toward zero (AP_RND_ZERO, QONNX HALF_DOWN)."""
    HALF_AWAY = "half_away"
    """To nearest, ties away from zero (AP_RND_INF, gemmlowp RoundingDivideByPOT, C ``round``)."""
    HALF_EVEN = "half_even"
    """To nearest, ties to even (convergent, AP_RND_CONV, IEEE default, ``np.rint``)."""
    STOCHASTIC = "stochastic"
    """Up with probability equal to the discarded fraction; needs an explicit seed."""

    @property
    def code(self) -> int:
        """Small integer passed to the Numba kernels (stable, see ``_ROUNDING_CODES``)."""
        return _ROUNDING_CODES[self]

    @classmethod
    def from_string(cls, name: str | RoundingMode) -> RoundingMode:
        """Parse a canonical or foreign rounding-mode name (see the module docstring)."""
        return _lookup(cls, name, ROUNDING_ALIASES)


class OverflowMode(enum.Enum):
    """What happens to a value outside the target format's code range."""

    WRAP = "wrap"
    """Keep the low ``bits`` bits (two's complement modulo 2**bits; AP_WRAP)."""
    SATURATE = "saturate"
    """Clamp to [min_code, max_code] (AP_SAT)."""
    SATURATE_SYMMETRIC = "saturate_symmetric"
    """Clamp to [-max_code, max_code], e.g. int8 [-127, 127] (AP_SAT_SYM, narrow range).

    For unsigned formats, and for signed 1-bit formats (whose symmetric range would
    be the single code 0), this equals SATURATE, as ap_ufixed's / ap_fixed<1,..>'s
    AP_SAT_SYM do."""
    SATURATE_ZERO = "saturate_zero"
    """Replace an out-of-range value by 0 (AP_SAT_ZERO)."""

    @property
    def code(self) -> int:
        """Small integer passed to the Numba kernels."""
        return _OVERFLOW_CODES[self]

    @classmethod
    def from_string(cls, name: str | OverflowMode) -> OverflowMode:
        """Parse a canonical or foreign overflow-mode name."""
        return _lookup(cls, name, OVERFLOW_ALIASES)


_ROUNDING_CODES = {m: i for i, m in enumerate(RoundingMode)}
_OVERFLOW_CODES = {m: i for i, m in enumerate(OverflowMode)}

R = RoundingMode
#: (convention, foreign name) -> mode.  Names compare case-insensitively.
ROUNDING_ALIASES: dict[tuple[str, str], RoundingMode] = {
    # Vitis HLS ap_fixed quantization modes (UG1399)
    ("ap", "AP_TRN"): R.FLOOR,
    ("ap", "AP_TRN_ZERO"): R.TO_ZERO,
    ("ap", "AP_RND"): R.HALF_UP,
    ("ap", "AP_RND_ZERO"): R.HALF_TO_ZERO,
    ("ap", "AP_RND_MIN_INF"): R.HALF_DOWN,
    ("ap", "AP_RND_INF"): R.HALF_AWAY,
    ("ap", "AP_RND_CONV"): R.HALF_EVEN,
    # APyTypes QuantizationMode
    ("apytypes", "TRN"): R.FLOOR,
    ("apytypes", "TRN_INF"): R.CEIL,
    ("apytypes", "TRN_ZERO"): R.TO_ZERO,
    ("apytypes", "TRN_AWAY"): R.AWAY,
    ("apytypes", "RND"): R.HALF_UP,
    ("apytypes", "RND_ZERO"): R.HALF_TO_ZERO,
    ("apytypes", "RND_INF"): R.HALF_AWAY,
    ("apytypes", "RND_MIN_INF"): R.HALF_DOWN,
    ("apytypes", "RND_CONV"): R.HALF_EVEN,
    # MATLAB fi RoundingMethod
    ("matlab", "Floor"): R.FLOOR,
    ("matlab", "Zero"): R.TO_ZERO,
    ("matlab", "Fix"): R.TO_ZERO,
    ("matlab", "Ceiling"): R.CEIL,
    ("matlab", "Nearest"): R.HALF_UP,
    ("matlab", "Round"): R.HALF_AWAY,
    ("matlab", "Convergent"): R.HALF_EVEN,
    # QONNX Quant rounding_mode (Java RoundingMode names: HALF_UP = ties away!)
    ("qonnx", "ROUND"): R.HALF_EVEN,
    ("qonnx", "HALF_EVEN"): R.HALF_EVEN,
    ("qonnx", "CEIL"): R.CEIL,
    ("qonnx", "FLOOR"): R.FLOOR,
    ("qonnx", "UP"): R.AWAY,
    ("qonnx", "DOWN"): R.TO_ZERO,
    ("qonnx", "HALF_UP"): R.HALF_AWAY,
    ("qonnx", "HALF_DOWN"): R.HALF_TO_ZERO,
    # IEEE 754-2019 rounding-direction attributes
    ("ieee", "roundTiesToEven"): R.HALF_EVEN,
    ("ieee", "roundTiesToAway"): R.HALF_AWAY,
    ("ieee", "roundTowardPositive"): R.CEIL,
    ("ieee", "roundTowardNegative"): R.FLOOR,
    ("ieee", "roundTowardZero"): R.TO_ZERO,
    # common extra spellings
    ("fxp", "trunc"): R.FLOOR,
    ("fxp", "convergent"): R.HALF_EVEN,
    ("fxp", "rne"): R.HALF_EVEN,
    ("fxp", "nearest_even"): R.HALF_EVEN,
}
del R

O = OverflowMode
OVERFLOW_ALIASES: dict[tuple[str, str], OverflowMode] = {
    ("ap", "AP_WRAP"): O.WRAP,
    ("ap", "AP_SAT"): O.SATURATE,
    ("ap", "AP_SAT_SYM"): O.SATURATE_SYMMETRIC,
    ("ap", "AP_SAT_ZERO"): O.SATURATE_ZERO,
    ("apytypes", "WRAP"): O.WRAP,
    ("apytypes", "SAT"): O.SATURATE,
    ("matlab", "Wrap"): O.WRAP,
    ("matlab", "Saturate"): O.SATURATE,
    ("qonnx", "NARROW"): O.SATURATE_SYMMETRIC,
    ("fxp", "sat"): O.SATURATE,
    ("fxp", "narrow"): O.SATURATE_SYMMETRIC,
    ("fxp", "sat_sym"): O.SATURATE_SYMMETRIC,
}
del O


def _describe(mode: enum.Enum) -> str:
    return f"{mode.value!r}"


def _lookup(cls: type[enum.Enum], name: object, table: dict) -> enum.Enum:
    if isinstance(name, cls):
        return name
    if not isinstance(name, str):
        raise FormatError(f"{cls.__name__} must be given as a string, got {name!r}")
    canonical = {m.value: m for m in cls}
    text = name.strip().replace("-", "_") if ":" not in name else name.strip()
    if text in canonical:
        return canonical[text]
    if ":" in text:
        conv, _, foreign = text.partition(":")
        hits = {m for (c, n), m in table.items() if c == conv.lower() and n.lower() == foreign.lower()}
        if len(hits) == 1:
            return hits.pop()
        known = sorted({c for c, _ in table})
        raise FormatError(
            f"unknown {cls.__name__} {name!r}: convention {conv!r} has no mode {foreign!r} "
            f"(conventions: {', '.join(known)})"
        )
    matches = {(c, n): m for (c, n), m in table.items() if n.lower() == text.lower()}
    clash = canonical.get(text.lower())
    meanings = set(matches.values()) | ({clash} if clash is not None else set())
    if len(meanings) == 1:
        return meanings.pop()
    names = ", ".join(sorted(canonical))
    if not meanings:
        raise FormatError(f"unknown {cls.__name__} {name!r}; canonical names are: {names}")
    readings = [f"{c}:{n} = {_describe(m)}" for (c, n), m in sorted(matches.items())]
    if clash is not None:
        readings.insert(0, f"fxp {clash.value!r} (lower case) = {_describe(clash)}")
    raise FormatError(
        f"ambiguous {cls.__name__} {name!r}: " + "; ".join(readings)
        + ". Write the canonical lower-case name or prefix the convention, e.g. 'qonnx:HALF_UP'"
    )
