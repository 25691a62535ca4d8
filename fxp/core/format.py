"""Fixed-point formats: what an integer code means.

Bit-letter legend (a 8-bit signed format with 3 integer bits, ``fixed<8,3>``)::

    S I I . F F F F F        S = sign bit, I = integer bits, F = fractional bits
    |-int_bits-|             int_bits = 3 *includes* the sign bit (ap_fixed<W,I>)
    |--------- bits ------|  frac_bits = bits - int_bits = 5

A code ``c`` (an ``int64``) in format ``f`` stands for the real value
``c * 2**-f.frac_bits``.  Codes of a signed format are two's complement and lie
in ``[-2**(bits-1), 2**(bits-1) - 1]``; unsigned codes lie in ``[0, 2**bits - 1]``.

``int_bits`` may be negative or larger than ``bits`` (so ``frac_bits`` may be
negative or exceed ``bits``), exactly as ``ap_fixed<W,I>`` and APyTypes allow:
``fixed<4,-2>`` has LSB 2**-6 and holds values in [-2**-3, 2**-3 - 2**-6].

Text forms (parsed by :meth:`QFormat.parse`, printed by ``str``):

* ``ap_fixed<W,I>`` / ``fixed<W,I>`` -- signed, W total bits, I integer bits
  including the sign bit;
* ``ap_ufixed<W,I>`` / ``ufixed<W,I>`` -- unsigned;
* ``Qm.n`` -- signed, **m excludes the sign bit** (TI / ARM usage): Q0.7 is
  ``fixed<8,1>``, Q15 (= Q0.15) is ``fixed<16,1>``; ``UQm.n`` is unsigned with
  m integer bits: UQ8.0 is ``ufixed<8,8>``;
* ``int8`` .. ``int64``, ``uint8`` .. ``uint63``, ``intW`` / ``uintW``: integer formats.

Codes are held in int64, so signed formats go up to 64 bits and unsigned
formats up to 63 bits.

>>> f = QFormat.parse("ap_fixed<8,3>")
>>> f, f.frac_bits, f.min_code, f.max_code
(QFormat(bits=8, int_bits=3, signed=True), 5, -128, 127)
>>> str(f), f.to_qmn(), float(f.lsb), float(f.max_value)
('fixed<8,3>', 'Q2.5', 0.03125, 3.96875)
>>> QFormat.parse("Q0.7") == QFormat(8, 1)
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from fxp.errors import FormatError

__all__ = ["MAX_FORMAT_DIGITS", "MAX_SIGNED_BITS", "MAX_UNSIGNED_BITS", "QFormat"]

MAX_SIGNED_BITS = 64
"""Widest signed format: codes are held in int64."""
MAX_UNSIGNED_BITS = 63
"""Widest unsigned format: ``2**64 - 1`` does not fit an int64 code."""
INT_BITS_RANGE = (-1024, 1024)
"""Allowed ``int_bits`` (ap_fixed's own default limit on W is 1024)."""

MAX_FORMAT_DIGITS = 6
"""Longest number accepted in a format string (``fixed<W,I>``, ``Qm.n``, ``intW``).

Widths are at most 64 and ``int_bits`` lie in :data:`INT_BITS_RANGE`, so six digits
are plenty; longer numbers are refused before ``int()`` sees them."""
MAX_FORMAT_TEXT = 200
"""Longest format string parsed; longer text is refused before any matching."""

_AP_RE = re.compile(r"^\s*(ap_)?(u?)fixed\s*<\s*(-?\d+)\s*,\s*(-?\d+)\s*>\s*$",
                    re.IGNORECASE | re.ASCII)
_Q_RE = re.compile(r"^\s*(u?)q(\d+)(?:\.(\d+))?\s*$", re.IGNORECASE | re.ASCII)
_INT_RE = re.compile(r"^\s*(u?)int(\d+)\s*$", re.IGNORECASE | re.ASCII)


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer) and not isinstance(value, np.bool_):
                return int(value)
        except ImportError:  # pragma: no cover
            pass
        raise FormatError(f"{name} must be an integer, got {_shown(value)} "
                          f"({type(value).__name__})")
    return value


def _number(digits: str, text: str) -> int:
    """``int(digits)`` for a number matched in format ``text``, refusing absurd lengths first."""
    n = len(digits.lstrip("-"))
    if n > MAX_FORMAT_DIGITS:
        raise FormatError(f"format {text[:60]!r}{'...' if len(text) > 60 else ''} has a "
                          f"{n}-digit number; widths are 1..{MAX_SIGNED_BITS} and int_bits "
                          f"{INT_BITS_RANGE[0]}..{INT_BITS_RANGE[1]}")
    return int(digits)


def _shown(value: object) -> str:
    """A short ``repr`` for messages (huge or deeply nested values are cut)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= 80 else text[:80] + "..."


@dataclass(frozen=True, order=False)
class QFormat:
    """A two's-complement fixed-point format.

    Parameters
    ----------
    bits : int
        Total word length W in bits: 1..64 signed, 1..63 unsigned.
    int_bits : int
        Integer bits I, *including the sign bit* for signed formats (as in
        ``ap_fixed<W,I>``).  May be negative or exceed ``bits``.
    signed : bool
        Two's complement (True) or unsigned (False).

    Raises
    ------
    FormatError
        For a non-integer or out-of-range width, naming the value and the limit.
    """

    bits: int
    int_bits: int
    signed: bool = True

    def __post_init__(self) -> None:
        bits = _check_int("bits", self.bits)
        int_bits = _check_int("int_bits", self.int_bits)
        if not isinstance(self.signed, bool):
            raise FormatError(f"signed must be a bool, got {_shown(self.signed)}")
        limit = MAX_SIGNED_BITS if self.signed else MAX_UNSIGNED_BITS
        if not 1 <= bits <= limit:
            kind = "signed" if self.signed else "unsigned"
            why = "" if self.signed else " (codes are int64, so 2**64-1 cannot be held)"
            raise FormatError(f"bits={bits} is outside 1..{limit} for a {kind} format{why}")
        lo, hi = INT_BITS_RANGE
        if not lo <= int_bits <= hi:
            raise FormatError(f"int_bits={int_bits} is outside {lo}..{hi}")
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "int_bits", int_bits)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def integer(cls, bits: int, signed: bool = True) -> QFormat:
        """Plain integer format (no fractional bits): ``int8`` is ``QFormat.integer(8)``."""
        return cls(bits, bits, signed)

    @classmethod
    def from_frac(cls, bits: int, frac_bits: int, signed: bool = True) -> QFormat:
        """Build from word length and fractional bits (``int_bits = bits - frac_bits``)."""
        return cls(bits, _check_int("bits", bits) - _check_int("frac_bits", frac_bits), signed)

    @classmethod
    def parse(cls, text: str) -> QFormat:
        """Parse ``ap_fixed<W,I>``, ``ap_ufixed<W,I>``, ``fixed<W,I>``, ``Qm.n``, ``UQm.n``, ``intW``.

        >>> QFormat.parse("ap_ufixed<6,2>")
        QFormat(bits=6, int_bits=2, signed=False)
        >>> QFormat.parse("Q15")
        QFormat(bits=16, int_bits=1, signed=True)
        """
        if isinstance(text, QFormat):
            return text
        if not isinstance(text, str):
            raise FormatError(f"a format must be a string like 'fixed<8,3>', got "
                              f"{_shown(text)} ({type(text).__name__})")
        if len(text) > MAX_FORMAT_TEXT:
            raise FormatError(f"format string of {len(text)} characters is too long (at most "
                              f"{MAX_FORMAT_TEXT}): {text[:40]!r}...")
        m = _AP_RE.match(text)
        if m:
            bits, ibits = _number(m.group(3), text), _number(m.group(4), text)
            return cls(bits, ibits, signed=not m.group(2))
        m = _Q_RE.match(text)
        if m:
            unsigned = bool(m.group(1))
            if m.group(3) is None:  # "Q15" means Q0.15
                ibits, fbits = 0, _number(m.group(2), text)
            else:
                ibits, fbits = _number(m.group(2), text), _number(m.group(3), text)
            if unsigned:
                return cls(ibits + fbits, ibits, signed=False)
            return cls(ibits + fbits + 1, ibits + 1, signed=True)
        m = _INT_RE.match(text)
        if m:
            return cls.integer(_number(m.group(2), text), signed=not m.group(1))
        raise FormatError(
            f"cannot parse format {text!r}: expected 'fixed<W,I>', 'ufixed<W,I>', "
            "'ap_fixed<W,I>', 'ap_ufixed<W,I>', 'Qm.n', 'UQm.n' or 'intW'/'uintW'"
        )

    # ------------------------------------------------------------------ derived values
    @property
    def frac_bits(self) -> int:
        """Fractional bits F = W - I (may be negative or exceed W)."""
        return self.bits - self.int_bits

    @property
    def lsb(self) -> Fraction:
        """Weight of one code step, ``2**-frac_bits``, exactly."""
        return Fraction(2) ** (-self.frac_bits)

    @property
    def min_code(self) -> int:
        """Smallest code: ``-2**(bits-1)`` signed, 0 unsigned."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        """Largest code: ``2**(bits-1) - 1`` signed, ``2**bits - 1`` unsigned."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def min_value(self) -> Fraction:
        """Smallest real value, exactly."""
        return self.min_code * self.lsb

    @property
    def max_value(self) -> Fraction:
        """Largest real value, exactly."""
        return self.max_code * self.lsb

    def contains_code(self, code: int) -> bool:
        """True when the integer ``code`` lies in ``[min_code, max_code]``."""
        return self.min_code <= code <= self.max_code

    def value_of(self, code: int) -> Fraction:
        """The exact real value of ``code`` (which must lie in the format)."""
        if not self.contains_code(int(code)):
            raise FormatError(f"code {code} is outside {self} [{self.min_code}, {self.max_code}]")
        return int(code) * self.lsb

    # ------------------------------------------------------------------ printing
    def __str__(self) -> str:
        return f"{'' if self.signed else 'u'}fixed<{self.bits},{self.int_bits}>"

    def to_ap_fixed(self) -> str:
        """Vitis HLS spelling: ``ap_fixed<W,I>`` or ``ap_ufixed<W,I>``."""
        return f"ap_{self}"

    def to_qmn(self) -> str:
        """``Qm.n`` spelling (m excludes the sign bit); ``UQm.n`` for unsigned.

        Raises FormatError when m or n would be negative (no Q spelling exists).
        """
        m = self.int_bits - 1 if self.signed else self.int_bits
        n = self.frac_bits
        if m < 0 or n < 0:
            raise FormatError(f"{self} has no Qm.n spelling (m={m}, n={n} must be >= 0)")
        return f"{'' if self.signed else 'U'}Q{m}.{n}"
